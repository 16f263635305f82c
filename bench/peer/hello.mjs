// The peer side's do-nothing route: node:http answering fixed bytes the size of a discovery document,
// the floor under every oidc-provider endpoint. Usage: node hello.mjs PORT
import { createServer } from 'node:http';

const body = Buffer.from(JSON.stringify({ issuer: 'http://127.0.0.1:5556/dex', padding: 'x'.repeat(1400) }));
const server = createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 75000;
server.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
