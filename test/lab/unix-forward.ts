/**
 * Runs inside a lab namespace: accepts connections on a unix socket and relays each one to
 * HOST:PORT as seen from that namespace. The benchmark driver lives in the root namespace, which
 * has no address on the lab network (by design); a unix socket in the file system is reachable
 * from both sides, so this is how the driver talks to the controller's REST API.
 *
 * Usage: node -r ts-node/register/transpile-only unix-forward.ts SOCKET HOST PORT
 */
import { connect, createServer } from 'node:net';
import { rmSync } from 'node:fs';

const [socketPath, host, port] = process.argv.slice(2);
if (!socketPath || !host || !port) {
  process.stderr.write('usage: unix-forward.ts SOCKET HOST PORT\n');
  process.exit(2);
}
rmSync(socketPath, { force: true });
const server = createServer((client) => {
  const upstream = connect(Number(port), host);
  client.pipe(upstream).pipe(client);
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
server.listen(socketPath, () => process.stdout.write(`forwarding ${socketPath} to ${host}:${port}\n`));
const stop = (): void => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
