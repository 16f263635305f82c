// End-to-end flows beyond the code flow, driven by the OpenID-Certified openid-client against a real
// Portico, with Debian's Chromium for the person's part. One flow per run, named by the first argument:
//   device    RFC 8628 with PKCE: the client polls while the browser types the code and logs in
//   logout    code flow, prompt=none (SSO), RP-initiated logout, then prompt=none -> login_required
//   fragment  implicit (id_token) and hybrid (code id_token) responses read from the fragment
//   grants    client_credentials, password, token exchange, introspection, revocation (no browser)
// Inputs come from the environment (FLOW_*), never argv. Prints one JSON line; exit 0 on success.
// The packages are tests/e2e/rp's (openid-client 6.9.0, playwright-core 1.65.1): resolved from there.

import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modulesFrom = process.env.FLOW_MODULES_FROM
  ?? new URL('../../e2e/rp/package.json', import.meta.url).pathname;
const requireFrom = createRequire(modulesFrom);
const client = await import(pathToFileURL(requireFrom.resolve('openid-client')).href);
const { chromium } = requireFrom('playwright-core'); // CommonJS: required, not imported

const env = process.env;
const flow = process.argv[2];
const TIMEOUT_MS = Number(env.FLOW_TIMEOUT_MS ?? 60000);
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

function need(name) {
  const value = env[name];
  if (!value) throw new Error(`missing input ${name}`);
  return value;
}

function fingerprint(token) {
  return token ? createHash('sha256').update(token).digest('base64url').slice(0, 16) : null;
}

async function discover(clientId, secret) {
  const auth = secret ? client.ClientSecretBasic(secret) : client.None();
  return client.discovery(new URL(need('FLOW_ISSUER')), clientId, undefined, auth, {
    execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
  });
}

// A server on the redirect URI's port: every browser arrival (any path) is queued, as an RP sees it.
function listen(redirectUri) {
  const target = new URL(redirectUri);
  const queue = [];
  const waiters = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, `${target.protocol}//${target.host}`);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('arrived');
    if (url.pathname === '/favicon.ico') return;
    if (waiters.length) waiters.shift()(url); else queue.push(url);
  });
  const ready = new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(target.port), target.hostname, resolve);
  });
  const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)));
  return { server, ready, next };
}

async function browser() {
  const instance = await chromium.launch({
    executablePath: env.FLOW_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
  });
  const page = await (await instance.newContext()).newPage();
  page.setDefaultTimeout(15000);
  return { instance, page };
}

async function saveArtifacts(page, tag) {
  if (!page || !env.FLOW_ARTIFACTS) return;
  try {
    mkdirSync(env.FLOW_ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(env.FLOW_ARTIFACTS, `${tag}.png`), fullPage: true });
    writeFileSync(join(env.FLOW_ARTIFACTS, `${tag}.html`), await page.content());
  } catch (err) {
    process.stderr.write(`could not save artifacts: ${err}\n`);
  }
}

// The login form (the only connector redirects straight to it), then the approval page if shown.
async function logIn(page) {
  const form = page.locator('form:has(input[name="login"])');
  await form.locator('input[name="login"]').fill(need('FLOW_USERNAME'));
  await form.locator('input[name="password"]').fill(need('FLOW_PASSWORD'));
  await form.locator('[type="submit"]').first().click();
}

async function approveIfAsked(page, done) {
  const approve = page.locator('button[name="approval"][value="approve"]');
  const next = await Promise.race([done.then(() => 'done'), approve.waitFor({ state: 'visible' }).then(() => 'approval')]);
  if (next === 'approval') {
    await approve.click();
    return true;
  }
  return false;
}

async function deviceFlow() {
  const config = await discover(need('FLOW_CLIENT_ID'), env.FLOW_CLIENT_SECRET);
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const started = Date.now();
  const auth = await client.initiateDeviceAuthorization(config, {
    scope: 'openid email profile groups offline_access', code_challenge: challenge, code_challenge_method: 'S256',
  });
  // The device polls on its own from now on, as kubectl on a headless box would.
  const polling = client.pollDeviceAuthorizationGrant(config, auth, { code_verifier: verifier });
  polling.catch(() => {});
  const { instance, page } = await browser();
  let prefilled;
  let approval;
  try {
    await page.goto(auth.verification_uri_complete);
    prefilled = await page.locator('input[name="user_code"]').inputValue();
    await page.locator('form:has(input[name="user_code"]) [type="submit"]').click();
    await logIn(page);
    const success = page.getByText('Device connected');
    approval = await approveIfAsked(page, success.waitFor({ state: 'visible' }));
    await success.waitFor({ state: 'visible' });
  } catch (err) {
    await saveArtifacts(page, 'device-failure');
    throw err;
  } finally {
    await instance.close();
  }
  const tokens = await polling;
  const claims = tokens.claims();
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  return {
    outcome: 'tokens', user_code: auth.user_code, prefilled, approval_page: approval,
    verification_uri: auth.verification_uri, interval: auth.interval, claims,
    has_refresh_token: Boolean(tokens.refresh_token), refreshed_sub: refreshed.claims()?.sub,
    elapsed_ms: Date.now() - started,
  };
}

// One code flow in the browser (PKCE, state, nonce); `extra` adds e.g. prompt=none.
async function codeFlow(config, page, cb, extra = {}, { login = true } = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: need('FLOW_REDIRECT_URI'), scope: 'openid email profile', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
  });
  const arrival = cb.next();
  await page.goto(url.href);
  if (login) {
    await logIn(page);
    await approveIfAsked(page, arrival);
  }
  const callback = await arrival;
  if (callback.searchParams.get('error')) {
    return { error: callback.searchParams.get('error'), state_ok: callback.searchParams.get('state') === state };
  }
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  return { tokens, claims: tokens.claims() };
}

async function logoutFlow() {
  const config = await discover(need('FLOW_CLIENT_ID'), need('FLOW_CLIENT_SECRET'));
  const cb = listen(need('FLOW_REDIRECT_URI'));
  await cb.ready;
  const { instance, page } = await browser();
  try {
    const first = await codeFlow(config, page, cb);
    const silent = await codeFlow(config, page, cb, { prompt: 'none' }, { login: false });
    const state = client.randomState();
    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: first.tokens.id_token, post_logout_redirect_uri: need('FLOW_POST_LOGOUT_URI'), state,
    });
    const back = cb.next();
    await page.goto(endSession.href);
    const landed = await back;
    const after = await codeFlow(config, page, cb, { prompt: 'none' }, { login: false });
    return {
      outcome: 'logged_out',
      sid: first.claims.sid, sub: first.claims.sub, auth_time: first.claims.auth_time,
      sso_before_logout: silent.claims ? { sid: silent.claims.sid, auth_time: silent.claims.auth_time } : silent,
      end_session_endpoint: config.serverMetadata().end_session_endpoint,
      logout_landing: { path: landed.pathname, state_ok: landed.searchParams.get('state') === state },
      after_logout: after.claims ? 'tokens' : after,
    };
  } catch (err) {
    await saveArtifacts(page, 'logout-failure');
    throw err;
  } finally {
    await instance.close();
    cb.server.close();
  }
}

async function fragmentFlows() {
  const redirectUri = need('FLOW_REDIRECT_URI');
  const cb = listen(redirectUri);
  await cb.ready;
  const { instance, page } = await browser();
  try {
    // Implicit: response_type=id_token, the ID token in the fragment, checked by the library.
    const implicitConfig = await discover(need('FLOW_CLIENT_ID'), need('FLOW_CLIENT_SECRET'));
    client.useIdTokenResponseType(implicitConfig);
    let nonce = client.randomNonce();
    let state = client.randomState();
    let url = client.buildAuthorizationUrl(implicitConfig, { redirect_uri: redirectUri, scope: 'openid email', nonce, state });
    let arrival = cb.next();
    await page.goto(url.href);
    await logIn(page);
    await approveIfAsked(page, arrival);
    await arrival;
    const implicitUrl = new URL(page.url());
    const idToken = await client.implicitAuthentication(implicitConfig, implicitUrl, nonce, { expectedState: state });
    // Hybrid: code id_token; the library checks c_hash and redeems the code. The session logs in.
    const hybridConfig = await discover(need('FLOW_CLIENT_ID'), need('FLOW_CLIENT_SECRET'));
    client.useCodeIdTokenResponseType(hybridConfig);
    nonce = client.randomNonce();
    state = client.randomState();
    const verifier = client.randomPKCECodeVerifier();
    url = client.buildAuthorizationUrl(hybridConfig, {
      redirect_uri: redirectUri, scope: 'openid email', nonce, state,
      code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    });
    arrival = cb.next();
    await page.goto(url.href);
    await approveIfAsked(page, arrival);
    await arrival;
    const hybridUrl = new URL(page.url());
    const tokens = await client.authorizationCodeGrant(hybridConfig, hybridUrl, {
      pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state,
    });
    return {
      outcome: 'fragments',
      implicit: { query: implicitUrl.search, fragment_keys: [...new URLSearchParams(implicitUrl.hash.slice(1)).keys()].sort(), claims: idToken },
      hybrid: { query: hybridUrl.search, fragment_keys: [...new URLSearchParams(hybridUrl.hash.slice(1)).keys()].sort(),
        claims: tokens.claims(), access_token: fingerprint(tokens.access_token) },
    };
  } catch (err) {
    await saveArtifacts(page, 'fragment-failure');
    throw err;
  } finally {
    await instance.close();
    cb.server.close();
  }
}

async function expectError(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    return err.error ?? err.code ?? String(err.message);
  }
}

async function grantsFlow() {
  const svc = await discover(need('FLOW_SVC_ID'), need('FLOW_SVC_SECRET'));
  const cc = await client.clientCredentialsGrant(svc, { scope: 'openid profile groups' });
  const rp = await discover(need('FLOW_CLIENT_ID'), need('FLOW_CLIENT_SECRET'));
  const password = await client.genericGrantRequest(rp, 'password', {
    username: need('FLOW_USERNAME'), password: need('FLOW_PASSWORD'), scope: 'openid email groups offline_access',
  });
  const badPassword = await expectError(client.genericGrantRequest(rp, 'password', {
    username: need('FLOW_USERNAME'), password: 'wrong', scope: 'openid',
  }));
  const exchanged = await client.genericGrantRequest(rp, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: need('FLOW_SUBJECT_TOKEN'), subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
    connector_id: need('FLOW_CONNECTOR_ID'), scope: 'openid email groups',
  });
  const active = await client.tokenIntrospection(rp, password.access_token);
  const activeRefresh = await client.tokenIntrospection(rp, password.refresh_token);
  const junk = await client.tokenIntrospection(rp, 'not-a-token');
  await client.tokenRevocation(rp, password.refresh_token);
  const afterRevoke = await client.tokenIntrospection(rp, password.refresh_token);
  const accessAfterRevoke = await client.tokenIntrospection(rp, password.access_token);
  const refreshError = await expectError(client.refreshTokenGrant(rp, password.refresh_token));
  const userinfoError = await expectError(client.fetchUserInfo(rp, password.access_token, password.claims().sub));
  return {
    outcome: 'grants',
    client_credentials: { claims: cc.claims(), has_refresh_token: Boolean(cc.refresh_token) },
    password: { claims: password.claims(), has_refresh_token: Boolean(password.refresh_token), bad_password: badPassword },
    exchange: { issued_token_type: exchanged.issued_token_type, token_type: exchanged.token_type, access_token: exchanged.access_token },
    introspection: { active, active_refresh: activeRefresh, junk },
    revocation: { refresh_after: afterRevoke, access_after: accessAfterRevoke, refresh_error: refreshError, userinfo_error: userinfoError },
  };
}

const flows = { device: deviceFlow, logout: logoutFlow, fragment: fragmentFlows, grants: grantsFlow };
const deadline = setTimeout(() => {
  process.stderr.write(`flows: gave up after ${TIMEOUT_MS} ms\n`);
  process.exit(3);
}, TIMEOUT_MS);
deadline.unref();

if (!flows[flow]) {
  process.stderr.write(`unknown flow ${flow}; one of ${Object.keys(flows).join(', ')}\n`);
  process.exit(2);
}
flows[flow]().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => {
    const cause = err?.cause?.message ? ` (cause: ${err.cause.message})` : '';
    process.stderr.write(`flows ${flow}: ${err?.message ?? err}${err?.code ? ` [${err.code}]` : ''}${cause}\n`);
    if (err?.error) process.stderr.write(`flows: oauth error ${err.error}: ${err.error_description ?? ''}\n`);
    process.exit(1);
  },
);
