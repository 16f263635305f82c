// The benchmark's peer: node-oidc-provider configured for the same work as Portico's benchmark config
// (bench/README.md says what differs). Settings come from a JSON file the harness writes; it listens on
// 127.0.0.1 only and keeps its state in memory (BenchAdapter below), and, when the settings name a
// journal, on disk too: every change is appended to that file as it happens and replayed at start.
//
// Logins go through a small form handler of our own (devInteractions accepts any password): it checks
// a bcrypt hash of the same cost as Portico's staticPasswords, off the event loop (bcrypt's async API
// runs in libuv's thread pool, as Portico's runs in asyncio.to_thread), then finishes the login and
// the consent in one step, as Portico does with skipApprovalScreen.
import { existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:http';

import bcrypt from 'bcrypt';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const accounts = settings.accounts; // userID -> {email, username, hash, groups}
const byLogin = new Map(Object.entries(accounts).map(([id, account]) => [account.email, id]));
// Access tokens for this resource are JWTs: client_credentials always asks for it, so that grant signs
// one JWT, as Portico's does. An authorization request may name it too (`resource`, RFC 8707): its code
// and refresh token then give a JWT access token beside the ID token, two signatures per grant, the
// work Portico does (its access tokens are JWTs, as Dex's). Without it they give an opaque access token,
// oidc-provider's default, which its userinfo endpoint takes.
const RESOURCE = 'urn:portico-bench:api';

// oidc-provider's own development adapter is an LRU of 1,000 entries: a benchmark that prepares
// thousands of codes would see most of them evicted. This one is a plain Map (what Portico's SQLite
// keeps, it keeps), with expiry checked on read and the grant index that revocation needs.
const store = new Map(); // "Model:id" -> {payload, expiresAt (ms, 0 = never)}
const grantMembers = new Map(); // grantId -> Set of "Model:id"

// The journal: one JSON line per change, written with write(2) before the change is acknowledged and
// never fsync'ed. That is the durability of Portico's SQLite in WAL mode with synchronous=NORMAL: what
// was acknowledged survives the process being killed, not a power cut.
const journal = settings.journal || '';

function apply([op, key, a, b]) {
  if (op === 'u') {
    store.set(key, { payload: a, expiresAt: b });
    if (a.grantId) {
      if (!grantMembers.has(a.grantId)) {
        grantMembers.set(a.grantId, new Set());
      }
      grantMembers.get(a.grantId).add(key);
    }
  } else if (op === 'd') {
    const payload = store.get(key)?.payload;
    store.delete(key);
    if (payload?.grantId) {
      grantMembers.get(payload.grantId)?.delete(key);
    }
  } else if (op === 'c') {
    const entry = store.get(key);
    if (entry) {
      entry.payload.consumed = a;
    }
  } else if (op === 'r') {
    for (const member of grantMembers.get(key) ?? []) {
      store.delete(member);
    }
    grantMembers.delete(key);
  }
}

if (journal && existsSync(journal)) {
  for (const line of readFileSync(journal, 'utf8').split('\n')) {
    if (line) {
      apply(JSON.parse(line));
    }
  }
}
const journalFd = journal ? openSync(journal, 'a', 0o600) : null;

// Every change goes through here: applied in memory, and appended to the journal when there is one.
function change(entry) {
  if (journalFd !== null) {
    writeSync(journalFd, `${JSON.stringify(entry)}\n`);
  }
  apply(entry);
}

class BenchAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  static read(key) {
    const entry = store.get(key);
    if (!entry) {
      return undefined;
    }
    if (entry.expiresAt && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    change(['u', key, payload, expiresAt]);
    if (this.model === 'Session' && payload.uid) {
      change(['u', `sessionUid:${payload.uid}`, id, expiresAt]);
    }
    if (payload.userCode) {
      change(['u', `userCode:${payload.userCode}`, id, expiresAt]);
    }
  }

  async find(id) {
    return BenchAdapter.read(this.key(id));
  }

  async findByUid(uid) {
    const id = BenchAdapter.read(`sessionUid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = BenchAdapter.read(`userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    if (BenchAdapter.read(this.key(id))) {
      change(['c', this.key(id), Math.floor(Date.now() / 1000)]);
    }
  }

  async destroy(id) {
    change(['d', this.key(id)]);
  }

  async revokeByGrantId(grantId) {
    change(['r', grantId]);
  }
}

const provider = new Provider(settings.issuer, {
  adapter: BenchAdapter,
  clients: settings.clients,
  jwks: settings.jwks,
  cookies: { keys: settings.cookieKeys },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Dex (and so Portico) puts the scopes' claims into the ID token itself.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Any authenticated client may introspect, as in Portico.
    introspection: { enabled: true, allowedPolicy: () => true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx) => (ctx.oidc.params?.grant_type === 'client_credentials' ? RESOURCE : undefined),
      // A code or refresh token granted for the resource gives its access token for it, unasked.
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        audience: RESOURCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 86400,
        jwt: { sign: { alg: settings.alg } },
      }),
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => false },
  rotateRefreshToken: () => true,
  // Dex's default lifetimes: 24 h for ID and access tokens.
  ttl: {
    AccessToken: 86400, IdToken: 86400, ClientCredentials: 86400, AuthorizationCode: 1800,
    Interaction: 3600, Grant: 14 * 86400, Session: 14 * 86400, RefreshToken: 14 * 86400,
  },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: account.email,
          email_verified: true,
          name: account.username,
          preferred_username: account.username,
          groups: account.groups,
        };
      },
    };
  },
});

provider.on('server_error', (ctx, err) => {
  console.error('server_error', err);
});

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// A grant for everything the request asked for: the consent that skipApprovalScreen implies.
async function grantAll(details, accountId) {
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope || 'openid'));
  if (details.params.resource === RESOURCE) {
    grant.addResourceScope(RESOURCE, 'api');
  }
  return grant.save();
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    return send(res, 400, 'interaction mismatch');
  }
  if (req.method === 'GET' && !action) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    return res.end(`<form method="post" action="/interaction/${uid}/${details.prompt.name === 'login' ? 'login' : 'confirm'}">`
      + '<input name="login"><input name="password" type="password"><button>Sign in</button></form>');
  }
  if (req.method !== 'POST') {
    return send(res, 405, 'method not allowed');
  }
  const form = await readForm(req);
  let accountId = details.session?.accountId;
  const result = {};
  if (action === 'login') {
    const id = byLogin.get(form.get('login') || '');
    const ok = await bcrypt.compare(form.get('password') || '', id ? accounts[id].hash : settings.dummyHash);
    if (!id || !ok) {
      return send(res, 401, 'invalid username or password');
    }
    accountId = id;
    result.login = { accountId };
  } else if (action !== 'confirm' || !accountId) {
    return send(res, 400, 'unknown interaction step');
  }
  result.consent = { grantId: await grantAll(details, accountId) };
  return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm))?$/.exec(req.url.split('?')[0]);
  if (!match) {
    return callback(req, res);
  }
  return interaction(req, res, match[1], match[2]).catch((err) => {
    console.error('interaction error', err);
    if (!res.headersSent) {
      send(res, 400, 'interaction failed');
    }
  });
});
server.keepAliveTimeout = 75000; // as Portico's Hypercorn listener
server.listen(settings.port, '127.0.0.1', () => {
  console.log(`listening on ${settings.issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
