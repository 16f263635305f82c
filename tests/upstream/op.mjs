// The upstream OpenID Provider of Portico's oidc/oauth connector tests: node-oidc-provider, configured
// from a JSON file that the Python fixture writes (tests/upstream/op.py), on 127.0.0.1 only.
//
// Accounts are read from their own JSON file on every lookup, so a test can change a user's claims
// between a login and a refresh without restarting the provider (a restart loses its in-memory grants).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function accounts() {
  return JSON.parse(readFileSync(settings.accountsFile, 'utf8'));
}

const provider = new Provider(settings.issuer, {
  clients: settings.clients,
  jwks: settings.jwks,
  cookies: { keys: settings.cookieKeys },
  // Claims are released per scope; `department` and `nickname` exist so userinfo-only claims can be tested.
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'nickname', 'org', 'team', 'department', 'login', 'uid_number'],
    groups: ['groups'],
  },
  // Put the scope's claims into the ID token too (the default keeps them for userinfo only), as most
  // real providers (Keycloak, Okta, Azure AD) do and as Dex's connector expects unless getUserInfo is on.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    // Off for the tests of an upstream without end_session_endpoint.
    rpInitiatedLogout: { enabled: settings.endSession !== false },
    userinfo: { enabled: true },
  },
  pkce: { required: () => false },
  rotateRefreshToken: () => true,
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) {
      return undefined;
    }
    return {
      accountId: id,
      async claims(use) {
        const claims = { sub: id, ...account.claims };
        if (use === 'userinfo') {
          Object.assign(claims, account.userinfo || {});
        }
        return claims;
      },
    };
  },
});

// Some providers (Okta, for one) refuse client_secret_basic; these clients stand in for them.
const postOnly = new Set(settings.postOnlyClients || []);
provider.use(async (ctx, next) => {
  const auth = ctx.get('authorization');
  if (ctx.path === '/token' && auth.toLowerCase().startsWith('basic ')) {
    const id = decodeURIComponent(Buffer.from(auth.slice(6), 'base64').toString().split(':')[0]);
    if (postOnly.has(id)) {
      ctx.status = 401;
      ctx.body = { error: 'invalid_client', error_description: 'this client must use client_secret_post' };
      return;
    }
  }
  await next();
});

provider.on('server_error', (ctx, err) => {
  console.error('server_error', err);
});

// With `tls` (PEM file paths) it serves HTTPS, for the rootCAs / insecureSkipVerify tests.
const server = settings.tls
  ? createServer({
    cert: readFileSync(settings.tls.cert),
    key: readFileSync(settings.tls.key),
  }, provider.callback())
  : provider;
server.listen(settings.port, '127.0.0.1', () => {
  console.log(`listening on ${settings.issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
