import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { connect, createServer } from 'node:tls';

const MiB = 1024 * 1024;

export interface PlainTlsOptions {
  /**
   * Also do on the receiving side the work any verifying downloader must do per byte: SHA-256
   * over every byte, each chunk written at its offset into this file (created, then removed),
   * one fdatasync at the end. Absent: received bytes are counted and dropped.
   */
  verifyAndWriteTo?: string;
}

export interface PlainTlsRun {
  seconds: number;
  /** CPU of this process (both ends and the receiver's work) while it ran. */
  cpuSeconds: number;
}

/**
 * One TLS 1.3 connection on loopback carrying `size` bytes, both ends in this process, the
 * server writing 1 MiB buffers: the baseline the peer-wire benchmarks divide by.
 */
export async function plainTls(size: number, caPem: string, server: { keyPem: string; certPem: string }, options: PlainTlsOptions = {}): Promise<PlainTlsRun> {
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
  const path = options.verifyAndWriteTo;
  const fd = path === undefined ? undefined : openSync(path, 'w');
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  try {
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost', minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
      let received = 0;
      socket.on('data', (d: Buffer) => {
        if (fd !== undefined) {
          createHash('sha256').update(d).digest();
          writeSync(fd, d, 0, d.length, received);
        }
        received += d.length;
      });
      socket.on('end', () => {
        if (fd !== undefined) fdatasyncSync(fd);
        if (received === size) resolve();
        else reject(new Error(`got ${received} of ${size}`));
      });
      socket.on('error', reject);
    });
  } finally {
    if (fd !== undefined) {
      closeSync(fd);
      unlinkSync(path as string);
    }
    tls.close();
  }
  const cpu = process.cpuUsage(cpuBefore);
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** Seconds of `plainTls` with nothing done to the received bytes. */
export async function plainTlsSeconds(size: number, caPem: string, server: { keyPem: string; certPem: string }): Promise<number> {
  return (await plainTls(size, caPem, server)).seconds;
}
