// The peer side's physical limits on one core (the harness pins this process): JWT-style signatures per
// second with node:crypto (what oidc-provider's jose calls), and bcrypt checks per second (native bcrypt,
// as peer.mjs uses). Prints one JSON object: {RS256, ES256, bcrypt}.
import { generateKeyPairSync, sign } from 'node:crypto';

import bcrypt from 'bcrypt';

const seconds = Number(process.argv[2] || '1');
const cost = Number(process.argv[3] || '10');
const claims = Buffer.from(JSON.stringify({
  iss: 'http://127.0.0.1:5556', sub: 'user-0001', aud: 'bench', exp: 1795995779, iat: 1795909379,
  at_hash: 'x'.repeat(22), email: 'bench0@example.com', email_verified: true, name: 'bench0',
  preferred_username: 'bench0', groups: ['bench'],
})).toString('base64url');
const input = Buffer.from(`${Buffer.from('{"alg":"RS256","kid":"bench"}').toString('base64url')}.${claims}`);

function rate(step) {
  step();
  let count = 0;
  const started = performance.now();
  let elapsed = 0;
  while ((elapsed = (performance.now() - started) / 1000) < seconds) {
    step();
    count += 1;
  }
  return count / elapsed;
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const hash = bcrypt.hashSync('bench-password', cost);
console.log(JSON.stringify({
  RS256: rate(() => sign('sha256', input, rsa)),
  ES256: rate(() => sign('sha256', input, { key: ec, dsaEncoding: 'ieee-p1363' })),
  bcrypt: rate(() => bcrypt.compareSync('bench-password', hash)),
}));
