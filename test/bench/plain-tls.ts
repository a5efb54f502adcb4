import { randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:tls';

const MiB = 1024 * 1024;

/**
 * Seconds for one TLS 1.3 connection on loopback to carry `size` bytes, both ends in this
 * process, the server writing 1 MiB buffers: the baseline the peer-wire benchmarks divide by.
 */
export async function plainTlsSeconds(size: number, caPem: string, server: { keyPem: string; certPem: string }): Promise<number> {
  const tls = createServer({ key: server.keyPem, cert: server.certPem, minVersion: 'TLSv1.3' }, (socket) => {
    const block = randomBytes(MiB);
    let sent = 0;
    const pump = () => {
      while (sent < size) {
        const n = Math.min(block.length, size - sent);
        sent += n;
        if (!socket.write(n === block.length ? block : block.subarray(0, n))) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', () => resolve()));
  const port = (tls.address() as { port: number }).port;
  const started = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost', minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('end', () => (received === size ? resolve() : reject(new Error(`got ${received} of ${size}`))));
    socket.on('error', reject);
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  tls.close();
  return seconds;
}
