// End-to-end relying party: runs one OIDC authorization code flow (PKCE S256) against a real
// issuer with the OpenID-Certified openid-client, driving the real login and approval pages in
// Debian's Chromium, then refreshes and calls userinfo. Prints one JSON line; exit 0 on success.
//
// Inputs (flags override environment variables):
//   --issuer        RP_ISSUER         e.g. http://127.0.0.1:5556/dex
//   --client-id     RP_CLIENT_ID
//   --client-secret RP_CLIENT_SECRET
//   --redirect-uri  RP_REDIRECT_URI   http://127.0.0.1:PORT/callback (this process listens there)
//   --username      RP_USERNAME
//   --password      RP_PASSWORD
//   --approval      RP_APPROVAL       approve (default) | deny
//   --auth          RP_AUTH           basic (default) | post: token endpoint client authentication
//   --scope         RP_SCOPE          default "openid email profile groups offline_access"
//   --artifacts     RP_ARTIFACTS      folder for a screenshot and the page HTML when a step fails
//   --timeout-ms    RP_TIMEOUT_MS     whole-run deadline, default 60000

import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

function readOptions() {
  const { values } = parseArgs({
    options: {
      issuer: { type: 'string' },
      'client-id': { type: 'string' },
      'client-secret': { type: 'string' },
      'redirect-uri': { type: 'string' },
      username: { type: 'string' },
      password: { type: 'string' },
      approval: { type: 'string' },
      auth: { type: 'string' },
      scope: { type: 'string' },
      artifacts: { type: 'string' },
      'timeout-ms': { type: 'string' },
    },
    strict: true,
  });
  const env = process.env;
  const opts = {
    issuer: values.issuer ?? env.RP_ISSUER,
    clientId: values['client-id'] ?? env.RP_CLIENT_ID,
    clientSecret: values['client-secret'] ?? env.RP_CLIENT_SECRET,
    redirectUri: values['redirect-uri'] ?? env.RP_REDIRECT_URI,
    username: values.username ?? env.RP_USERNAME,
    password: values.password ?? env.RP_PASSWORD,
    approval: values.approval ?? env.RP_APPROVAL ?? 'approve',
    auth: values.auth ?? env.RP_AUTH ?? 'basic',
    scope: values.scope ?? env.RP_SCOPE ?? 'openid email profile groups offline_access',
    artifacts: values.artifacts ?? env.RP_ARTIFACTS,
    timeoutMs: Number(values['timeout-ms'] ?? env.RP_TIMEOUT_MS ?? 60000),
  };
  for (const key of ['issuer', 'clientId', 'clientSecret', 'redirectUri', 'username', 'password']) {
    if (!opts[key]) throw new Error(`missing input: ${key}`);
  }
  if (!['approve', 'deny'].includes(opts.approval)) throw new Error(`bad --approval: ${opts.approval}`);
  if (!['basic', 'post'].includes(opts.auth)) throw new Error(`bad --auth: ${opts.auth}`);
  return opts;
}

// Tokens are printed only as fingerprints: enough to tell two apart, useless to replay.
function fingerprint(token) {
  return token ? createHash('sha256').update(token).digest('base64url').slice(0, 16) : null;
}

// The shape of a token response: each field's type, and the values that are not secrets.
function shape(tokens) {
  const out = {};
  for (const [key, value] of Object.entries(tokens)) {
    if (typeof value === 'function') continue;
    out[key] = ['token_type', 'expires_in', 'scope'].includes(key) ? value : typeof value;
  }
  return out;
}

// OIDC Core 3.1.3.6: at_hash is the left half of the hash (the one named by the alg) of the
// ASCII access token, base64url. openid-client checks c_hash only for hybrid flows, never at_hash
// on the code flow, so it is checked here.
function leftHalfHash(alg, value) {
  const bits = { '256': 'sha256', '384': 'sha384', '512': 'sha512' }[alg.slice(-3)];
  if (!bits || alg === 'EdDSA') throw new Error(`no hash rule for alg ${alg}`);
  const digest = createHash(bits).update(value, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

function jwtHeader(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString('utf8'));
}

function checkAtHash(tokens, claims, label) {
  const { alg } = jwtHeader(tokens.id_token);
  if (typeof claims.at_hash !== 'string') throw new Error(`${label}: ID token has no at_hash`);
  if (claims.at_hash !== leftHalfHash(alg, tokens.access_token)) {
    throw new Error(`${label}: ID token at_hash does not match the access token`);
  }
  return alg;
}

// A tiny server on the redirect URI's port: the browser's arrival there is the authorization
// response, exactly as a real RP would receive it.
function listenForCallback(redirectUri) {
  const target = new URL(redirectUri);
  let resolveArrival;
  const arrival = new Promise((resolve) => { resolveArrival = resolve; });
  const server = createServer((req, res) => {
    const url = new URL(req.url, `${target.protocol}//${target.host}`);
    if (url.pathname !== target.pathname) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('callback received');
    resolveArrival(url);
  });
  const ready = new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(target.port), target.hostname, resolve);
  });
  return { server, ready, arrival };
}

async function saveArtifacts(page, dir, tag) {
  if (!page || !dir) return;
  try {
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, `${tag}.png`), fullPage: true });
    writeFileSync(join(dir, `${tag}.html`), await page.content());
    writeFileSync(join(dir, `${tag}.url.txt`), page.url());
  } catch (err) {
    process.stderr.write(`could not save artifacts: ${err}\n`);
  }
}

async function runBrowserLogin(opts, authUrl, arrival) {
  const browser = await chromium.launch({
    executablePath: process.env.RP_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
  let page;
  try {
    const context = await browser.newContext();
    page = await context.newPage();
    page.setDefaultTimeout(15000);
    await page.goto(authUrl.href);
    // With only the local connector, /auth redirects straight to the password form.
    const form = page.locator('form:has(input[name="login"])');
    await form.locator('input[name="login"]').fill(opts.username);
    await form.locator('input[name="password"]').fill(opts.password);
    const csrfPresent = (await form.locator('input[type="hidden"][name="csrf_token"]').count()) === 1;
    await form.locator('[type="submit"]').first().click();

    // Either the approval page appears or the browser is already on its way to the callback.
    const approvalButton = page.locator(`button[name="approval"][value="${opts.approval}"]`);
    const next = await Promise.race([
      arrival.then(() => 'callback'),
      approvalButton.waitFor({ state: 'visible' }).then(() => 'approval'),
    ]);
    let approvalPage = false;
    if (next === 'approval') {
      approvalPage = true;
      // Dex's page has one form per button: check the form that holds the chosen one.
      const approvalForm = page.locator(`form:has(button[name="approval"][value="${opts.approval}"])`);
      for (const name of ['req', 'hmac', 'csrf_token']) {
        if ((await approvalForm.locator(`input[type="hidden"][name="${name}"]`).count()) !== 1) {
          throw new Error(`approval form lacks hidden input ${name}`);
        }
      }
      await approvalButton.click();
    }
    const callbackUrl = await arrival;
    return { callbackUrl, approvalPage, csrfPresent, page, browser };
  } catch (err) {
    await saveArtifacts(page, opts.artifacts, 'failure');
    await browser.close();
    throw new Error(`browser step failed at ${page?.url() ?? '(no page)'}: ${err.message}`, { cause: err });
  }
}

async function main() {
  const opts = readOptions();
  const started = Date.now();
  const clientAuth = opts.auth === 'basic'
    ? client.ClientSecretBasic(opts.clientSecret)
    : client.ClientSecretPost(opts.clientSecret);
  const config = await client.discovery(new URL(opts.issuer), opts.clientId, undefined, clientAuth, {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });
  const meta = config.serverMetadata();
  if (meta.issuer !== opts.issuer) throw new Error(`discovery issuer ${meta.issuer} != ${opts.issuer}`);

  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: opts.redirectUri,
    scope: opts.scope,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });

  const cb = listenForCallback(opts.redirectUri);
  await cb.ready;
  let login;
  try {
    login = await runBrowserLogin(opts, authUrl, cb.arrival);
  } finally {
    cb.server.close();
  }
  const { callbackUrl, approvalPage, csrfPresent, page, browser } = login;
  try {
    if (opts.approval === 'deny') {
      // A denied consent must come back as an OAuth error on the redirect URI, with our state.
      const error = callbackUrl.searchParams.get('error');
      if (callbackUrl.searchParams.get('state') !== state) throw new Error('denied response lost state');
      if (callbackUrl.searchParams.has('code')) throw new Error('denied response carries a code');
      return { outcome: 'denied', error, approval_page: approvalPage, csrf_token_in_form: csrfPresent };
    }

    const tokens = await client.authorizationCodeGrant(config, callbackUrl, {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const alg = checkAtHash(tokens, claims, 'code grant');
    if (!tokens.refresh_token) throw new Error('no refresh token although offline_access was asked');

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    const refreshedClaims = refreshed.id_token ? refreshed.claims() : null;
    if (refreshedClaims) {
      checkAtHash(refreshed, refreshedClaims, 'refresh grant');
      if (refreshedClaims.sub !== claims.sub) throw new Error('refreshed ID token changed sub');
    }

    // expectedSubject makes openid-client reject a userinfo answer about somebody else.
    const userinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
    const userinfoFirst = await client.fetchUserInfo(config, tokens.access_token, claims.sub);

    return {
      outcome: 'tokens',
      approval_page: approvalPage,
      csrf_token_in_form: csrfPresent,
      callback_params: [...callbackUrl.searchParams.keys()].sort(),
      id_token_alg: alg,
      claims,
      token_response: shape(tokens),
      refresh_response: shape(refreshed),
      refreshed_claims: refreshedClaims,
      fingerprints: {
        access_token: fingerprint(tokens.access_token),
        refresh_token: fingerprint(tokens.refresh_token),
        id_token: fingerprint(tokens.id_token),
        refreshed_access_token: fingerprint(refreshed.access_token),
        refreshed_refresh_token: fingerprint(refreshed.refresh_token),
        refreshed_id_token: fingerprint(refreshed.id_token),
      },
      userinfo,
      userinfo_first_access_token: userinfoFirst,
      discovery: {
        issuer: meta.issuer,
        code_challenge_methods_supported: meta.code_challenge_methods_supported,
        scopes_supported: meta.scopes_supported,
      },
      elapsed_ms: Date.now() - started,
    };
  } catch (err) {
    await saveArtifacts(page, opts.artifacts, 'failure');
    throw err;
  } finally {
    await browser.close();
  }
}

const opts = (() => { try { return readOptions(); } catch { return { timeoutMs: 60000 }; } })();
const deadline = setTimeout(() => {
  process.stderr.write(`rp: gave up after ${opts.timeoutMs} ms\n`);
  process.exit(3);
}, opts.timeoutMs);
deadline.unref();

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => {
    const detail = err?.code ? ` [${err.code}]` : '';
    const cause = err?.cause?.message ? ` (cause: ${err.cause.message})` : '';
    process.stderr.write(`rp: ${err?.message ?? err}${detail}${cause}\n`);
    if (err?.error) process.stderr.write(`rp: oauth error ${err.error}: ${err.error_description ?? ''}\n`);
    process.exit(1);
  },
);
