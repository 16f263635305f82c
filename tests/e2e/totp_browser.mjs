// One browser login with a TOTP second factor, driven line by line by the Python test (which plays the
// authenticator app with pyotp): openid-client builds the request (PKCE S256, state, nonce) and
// redeems the code; Debian's Chromium walks Portico's pages as a person would.
// Reuses tests/e2e/rp/node_modules (relative imports: ESM ignores NODE_PATH).
//
// Input: TB_CONFIG, a JSON object {issuer, clientId, clientSecret, redirectUri, username, password,
//        artifacts?, timeoutMs?}.
// Protocol: one JSON object per line. This process writes
//   {"page":"enrol","secret":"..."} or {"page":"verify","error":bool}  and reads back {"code":"..."};
//   {"page":"recovery","codes":[...]}                                 (nothing to read back);
//   {"result":{...}} last, then exits 0.

import { createInterface } from 'node:readline';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

import * as client from './rp/node_modules/openid-client/build/index.js';
import { chromium } from './rp/node_modules/playwright-core/index.mjs';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

const cfg = JSON.parse(process.env.TB_CONFIG ?? '{}');
const replies = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

async function ask(message) {
  say(message);
  const { value, done } = await replies.next();
  if (done) throw new Error('the test closed stdin');
  return JSON.parse(value);
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
  } catch (err) {
    process.stderr.write(`could not save artifacts: ${err}\n`);
  }
}

// Which of Portico's pages is showing (after the password form), or the arrival at the callback.
async function pageKind(page, arrival) {
  const any = '#totp-secret, input[name="code"], button[value="continue"], button[name="approval"]';
  const first = await Promise.race([
    arrival.then(() => 'callback'),
    page.locator(any).first().waitFor({ state: 'visible' }).then(() => 'page'),
  ]);
  if (first === 'callback') return first;
  if (await page.locator('#totp-secret').count()) return 'enrol';
  if (await page.locator('input[name="code"]').count()) return 'verify';
  if (await page.locator('button[value="continue"]').count()) return 'recovery';
  return 'approval';
}

async function submitAndLeave(page, button) {
  await Promise.all([page.waitForEvent('framenavigated', { timeout: 15000 }), button.click()]);
}

async function browse(authUrl, arrival) {
  const browser = await chromium.launch({
    executablePath: process.env.RP_CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
  });
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);
  const cspViolations = [];
  page.on('console', (msg) => {
    if (/Content Security Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
  const trail = [];
  try {
    await page.goto(authUrl.href);
    const form = page.locator('form:has(input[name="password"])');
    await form.locator('input[name="login"]').fill(cfg.username);
    await form.locator('input[name="password"]').fill(cfg.password);
    await submitAndLeave(page, form.locator('[type="submit"]'));
    let qrPixels = 0;
    for (let steps = 0; steps < 10; steps += 1) {
      const kind = await pageKind(page, arrival);
      trail.push(kind);
      if (kind === 'callback') break;
      if (kind === 'enrol') {
        // The QR code must have been drawn (a data: image the page's CSP allows), not just referenced.
        qrPixels = await page.locator('#totp-qr').evaluate((img) => img.complete ? img.naturalWidth : 0);
        const secret = (await page.locator('#totp-secret').innerText()).replace(/\s+/g, '');
        const { code } = await ask({ page: 'enrol', secret, qr_width: qrPixels });
        await page.locator('input[name="code"]').fill(code);
        await submitAndLeave(page, page.locator('button[value="verify"]'));
      } else if (kind === 'verify') {
        const error = (await page.locator('#code-error').count()) > 0;
        const { code } = await ask({ page: 'verify', error });
        await page.locator('input[name="code"]').fill(code);
        await submitAndLeave(page, page.locator('button[value="verify"]'));
      } else if (kind === 'recovery') {
        const codes = await page.locator('#recovery-codes code').allInnerTexts();
        say({ page: 'recovery', codes });
        await submitAndLeave(page, page.locator('button[value="continue"]'));
      } else {
        await submitAndLeave(page, page.locator('button[name="approval"][value="approve"]'));
      }
    }
    const callbackUrl = await Promise.race([
      arrival, new Promise((_, reject) => setTimeout(() => reject(new Error('no callback')), 15000)),
    ]);
    return { callbackUrl, trail, cspViolations, qrPixels, browser, page };
  } catch (err) {
    await saveArtifacts(page, `failure-${Date.now()}`);
    await browser.close();
    throw new Error(`browser step failed at ${page.url()} after ${trail.join(' > ')}: ${err.message}`);
  }
}

async function main() {
  const config = await client.discovery(new URL(cfg.issuer), cfg.clientId, undefined,
    client.ClientSecretBasic(cfg.clientSecret), { execute: [client.allowInsecureRequests] });
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: cfg.redirectUri, scope: 'openid email profile', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256',
  });
  const cb = listenForCallback(cfg.redirectUri);
  await cb.ready;
  let run;
  try {
    run = await browse(authUrl, cb.arrival);
  } finally {
    cb.server.close();
  }
  try {
    const tokens = await client.authorizationCodeGrant(config, run.callbackUrl, {
      pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    });
    return { trail: run.trail, csp_violations: run.cspViolations, claims: tokens.claims() };
  } finally {
    await run.browser.close();
  }
}

const deadline = setTimeout(() => {
  process.stderr.write(`totp_browser: gave up after ${cfg.timeoutMs ?? 90000} ms\n`);
  process.exit(3);
}, Number(cfg.timeoutMs ?? 90000));
deadline.unref();

main().then(
  (result) => { say({ result }); process.exit(0); },
  (err) => { process.stderr.write(`totp_browser: ${err?.message ?? err}\n`); process.exit(1); },
);
