// A relying party that logs in through an upstream connector: openid-client builds the request (PKCE S256,
// state, nonce) and redeems the code; Debian's Chromium walks every page on the way, Portico's and the
// upstream's (an LDAP password form, a SAML IdP, an upstream OpenID Provider), as a person would.
// Reuses tests/e2e/rp/node_modules (relative imports: ESM ignores NODE_PATH).
//
// Input: BL_CONFIG, a JSON object:
//   issuer, clientId, clientSecret, redirectUri, scope, extraAuthParams {}  the client and its request
//   mode: "password" | "saml" | "oidc"     what the login pages are
//   username, password                     for "password" (Portico's form) and "oidc" (the OP's form)
//   samlFields {}                          IdP form fields to set before pressing its "Sign in"
//   javaScript: false                      browse with JavaScript off (the <noscript> paths)
//   refresh: true                          also run one refresh grant
//   upstreamLogout {postLogoutRedirectUri, state}
//                                          then, in the same browser: one more login with prompt=login
//                                          (the control: the upstream's session still stands), an
//                                          RP-initiated logout at Portico (answering the upstream's
//                                          logout question), and a last login (its trail shows whether
//                                          the upstream asked for the password again)
//   expectError: true                      the login is expected to end on a Portico error page (an
//                                          upstream down): its status, title and text are the result
//   resultFile, artifacts                  where the result (tokens included) and failure captures go
// Output: the result JSON in resultFile (mode 0600: it holds tokens); exit 0 on success.

import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import * as client from '../e2e/rp/node_modules/openid-client/build/index.js';
import { chromium } from '../e2e/rp/node_modules/playwright-core/index.mjs';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

const cfg = JSON.parse(process.env.BL_CONFIG ?? '{}');
const timeoutMs = Number(cfg.timeoutMs ?? 60000);

function leftHalfHash(alg, value) {
  const bits = { '256': 'sha256', '384': 'sha384', '512': 'sha512' }[alg.slice(-3)];
  const digest = createHash(bits).update(value, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

function checkAtHash(tokens, claims) {
  const { alg } = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString());
  if (claims.at_hash !== leftHalfHash(alg, tokens.access_token)) throw new Error('at_hash mismatch');
}

function listenForCallback(redirectUri) {
  const target = new URL(redirectUri);
  let resolveArrival;
  const arrival = new Promise((resolve) => { resolveArrival = resolve; });
  const server = createServer((req, res) => {
    const url = new URL(req.url, `${target.protocol}//${target.host}`);
    if (url.pathname !== target.pathname) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('callback received');
    resolveArrival(url);
  });
  const ready = new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(target.port), target.hostname, resolve);
  });
  return { server, ready, arrival };
}

async function saveArtifacts(page, tag) {
  if (!page || !cfg.artifacts) return;
  try {
    mkdirSync(cfg.artifacts, { recursive: true });
    await page.screenshot({ path: join(cfg.artifacts, `${tag}.png`), fullPage: true });
    writeFileSync(join(cfg.artifacts, `${tag}.html`), await page.content());
    writeFileSync(join(cfg.artifacts, `${tag}.url.txt`), page.url());
  } catch (err) {
    process.stderr.write(`could not save artifacts: ${err}\n`);
  }
}

// What the person acts on, per kind of login page; Portico's approval button is common to all.
const ACTIONS = {
  password: 'form:has(input[name="password"]) [type="submit"]',
  // With JavaScript off: Portico's and the IdP's <noscript> buttons stand in for their scripts.
  saml: '#btn-sign-in, #saml-post button[type="submit"], form[name="hiddenform"] input[type="submit"]',
  oidc: 'form:has(input[name="prompt"]) button[type="submit"]',
};

async function fillUpstream(page, trail) {
  if (cfg.mode === 'password') {
    const form = page.locator('form:has(input[name="password"])');
    await form.locator('input[name="login"]').fill(cfg.username);
    await form.locator('input[name="password"]').fill(cfg.password);
    trail.push(`password form ${new URL(page.url()).pathname}`);
  } else if (cfg.mode === 'saml') {
    if (!(await page.locator('#btn-sign-in').count())) {
      trail.push(`noscript button ${new URL(page.url()).origin}`);
      return;
    }
    // Set as the form would submit them (some of the IdP's inputs are hidden behind widgets).
    for (const [name, value] of Object.entries(cfg.samlFields ?? {})) {
      await page.locator(`form [name="${name}"]`).first().evaluate((el, v) => { el.value = v; }, value);
    }
    trail.push(`idp page ${new URL(page.url()).origin}`);
  } else {
    const login = page.locator('form input[name="login"]');
    if (await login.count()) {
      await login.fill(cfg.username);
      await page.locator('form input[name="password"]').fill(cfg.password ?? 'any password');
      trail.push(`upstream login ${new URL(page.url()).origin}`);
    } else {
      trail.push(`upstream consent ${new URL(page.url()).origin}`);
    }
  }
}

// Click, and wait until the page that held the button is gone (no second click on a stale page).
async function clickAndLeave(page, locator) {
  await Promise.all([page.waitForEvent('framenavigated', { timeout: 15000 }), locator.click()]);
}

async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.RP_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
  });
  const context = await browser.newContext({ javaScriptEnabled: cfg.javaScript !== false });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  const issuerOrigin = new URL(cfg.issuer).origin;
  const seen = { porticoPages: [], consoleErrors: [], navigations: [] };
  page.on('console', (msg) => { if (msg.type() === 'error') seen.consoleErrors.push(msg.text()); });
  page.on('response', (res) => {
    const url = new URL(res.url());
    if (url.origin === issuerOrigin && res.request().resourceType() === 'document') {
      seen.porticoPages.push({ path: url.pathname, method: res.request().method(), status: res.status(),
        csp: res.headers()['content-security-policy'] ?? null });
    }
  });
  // Every page the tab went to (origin and path; the query may hold tokens), in order.
  page.on('request', (req) => {
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      const url = new URL(req.url());
      seen.navigations.push(`${req.method()} ${url.origin}${url.pathname}`);
    }
  });
  return { browser, page, seen };
}

// What a Portico error page says (Error <status>, the title, the message), as the person reads it.
async function readErrorPage(page) {
  return {
    url: `${new URL(page.url()).origin}${new URL(page.url()).pathname}`,
    statusLine: (await page.locator('.status-code').innerText()).trim(),
    heading: (await page.locator('h1').first().innerText()).trim(),
    text: await page.locator('body').innerText(),
    title: await page.title(),
  };
}

// One login in the open tab: the pages on the way, until the RP's callback (or a Portico error page).
async function walk(page, authUrl, arrival) {
  const trail = [];
  let arrived = false;
  const landed = arrival.then((url) => { arrived = true; return url; });
  try {
    await page.goto(authUrl.href);
    let approvalPage = false;
    for (let step = 0; step < 10 && !arrived; step += 1) {
      const approve = page.locator('button[name="approval"][value="approve"]');
      const upstream = page.locator(ACTIONS[cfg.mode]).first();
      const failed = page.locator('.status-code');
      const which = await Promise.race([
        landed.then(() => 'callback'),
        approve.waitFor({ state: 'visible', timeout: 20000 }).then(() => 'approval'),
        upstream.waitFor({ state: 'visible', timeout: 20000 }).then(() => 'upstream'),
        failed.waitFor({ state: 'visible', timeout: 20000 }).then(() => 'error'),
      ]);
      if (which === 'callback') break;
      if (which === 'error') return { errorPage: await readErrorPage(page), approvalPage, trail };
      if (which === 'approval') {
        approvalPage = true;
        trail.push('portico approval');
        await approve.click();
        break;
      }
      await fillUpstream(page, trail);
      await clickAndLeave(page, upstream);
    }
    const callbackUrl = await landed;
    return { callbackUrl, approvalPage, trail };
  } catch (err) {
    await saveArtifacts(page, 'failure');
    throw new Error(`browser step failed at ${page.url()} after ${JSON.stringify(trail)}: ${err.message}`);
  }
}

// A whole login in the open tab: the browser part, then the code grant (unless it ends on an error page).
async function login(page, config, extra = {}) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: cfg.redirectUri,
    scope: cfg.scope ?? 'openid email profile groups offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...(cfg.extraAuthParams ?? {}),
    ...extra,
  });
  const cb = listenForCallback(cfg.redirectUri);
  await cb.ready;
  let visit;
  try {
    visit = await walk(page, authUrl, cb.arrival);
  } finally {
    cb.server.close();
  }
  if (visit.errorPage) return visit;
  const tokens = await client.authorizationCodeGrant(config, visit.callbackUrl, {
    pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  checkAtHash(tokens, claims);
  return { approvalPage: visit.approvalPage, trail: visit.trail, tokens, claims };
}

// RP-initiated logout at Portico with the RP's ID token, through whatever the upstream asks (its
// "sign out?" question is answered yes), back to the RP's post-logout URL.
async function logout(page, config, seen, idToken) {
  const opts = cfg.upstreamLogout;
  const back = listenForCallback(opts.postLogoutRedirectUri);
  await back.ready;
  const out = { upstreamQuestion: null };
  const firstNavigation = seen.navigations.length;
  try {
    const url = new URL(config.serverMetadata().end_session_endpoint);
    url.searchParams.set('id_token_hint', idToken);
    url.searchParams.set('post_logout_redirect_uri', opts.postLogoutRedirectUri);
    url.searchParams.set('state', opts.state);
    await page.goto(url.href);
    const yes = page.locator('button[name="logout"][value="yes"]');
    const which = await Promise.race([
      back.arrival.then(() => 'back'),
      yes.waitFor({ state: 'visible', timeout: 20000 }).then(() => 'upstream'),
    ]);
    if (which === 'upstream') {
      out.upstreamQuestion = new URL(page.url()).origin;
      await clickAndLeave(page, yes);
    }
    const arrived = await back.arrival;
    out.returnedTo = `${arrived.origin}${arrived.pathname}`;
    out.returnedState = arrived.searchParams.get('state');
  } catch (err) {
    await saveArtifacts(page, 'logout-failure');
    throw new Error(`logout failed at ${page.url()}: ${err.message}`);
  } finally {
    back.server.close();
  }
  out.navigations = seen.navigations.slice(firstNavigation);
  return out;
}

async function main() {
  const started = Date.now();
  const config = await client.discovery(new URL(cfg.issuer), cfg.clientId, undefined,
    client.ClientSecretBasic(cfg.clientSecret),
    { execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks] });
  const { browser, page, seen } = await launch();
  try {
    const first = await login(page, config);
    if (first.errorPage && !cfg.expectError) {
      throw new Error(`Portico showed an error page: ${JSON.stringify(first.errorPage)}`);
    }
    if (cfg.expectError) {
      // A failed login: what the person saw is the result (the test decides whether it was expected).
      const { errorPage, trail } = first;
      writeFileSync(cfg.resultFile, JSON.stringify({ errorPage: errorPage ?? null, trail, ...seen }),
        { mode: 0o600 });
      return;
    }
    const { tokens, claims } = first;
    const result = {
      ...seen,
      approvalPage: first.approvalPage,
      trail: first.trail,
      loginMs: Date.now() - started,
      claims,
      tokens: { access_token: tokens.access_token, id_token: tokens.id_token,
        refresh_token: tokens.refresh_token ?? null },
    };
    if (cfg.refresh) {
      const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
      const refreshedClaims = refreshed.claims();
      if (refreshedClaims.sub !== claims.sub) throw new Error('refresh changed sub');
      result.refreshedClaims = refreshedClaims;
      result.tokens.refreshed_refresh_token = refreshed.refresh_token ?? null;
      result.userinfo = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
    }
    if (cfg.upstreamLogout) {
      // The control: with the upstream's session alive, logging in there again needs no password.
      const control = await login(page, config, { prompt: 'login' });
      result.controlTrail = control.trail;
      result.controlClaims = control.claims;
      result.logout = await logout(page, config, seen, control.tokens.id_token);
      // And after the logout: does the upstream ask for the password again?
      const again = await login(page, config);
      result.againTrail = again.trail;
      result.againClaims = again.claims;
    }
    result.elapsedMs = Date.now() - started;
    writeFileSync(cfg.resultFile, JSON.stringify(result), { mode: 0o600 });
  } catch (err) {
    await saveArtifacts(page, 'failure');
    throw err;
  } finally {
    await browser.close();
  }
}

const deadline = setTimeout(() => {
  process.stderr.write(`browser_login: gave up after ${timeoutMs} ms\n`);
  process.exit(3);
}, timeoutMs);
deadline.unref();

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`browser_login: ${err?.message ?? err}${err?.code ? ` [${err.code}]` : ''}\n`);
    if (err?.error) process.stderr.write(`browser_login: oauth error ${err.error}: ${err.error_description ?? ''}\n`);
    process.exit(1);
  },
);
