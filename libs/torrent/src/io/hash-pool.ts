import { Worker } from 'node:worker_threads';
import { ShoalError } from '../errors';

/**
 * Worker threads that hash 16 KiB blocks: a chunk goes in (in shared memory, so nothing is
 * copied), its leaf hashes come back. The merkle layers above the leaves stay on the caller's
 * thread; they are about 1/500 of the hashing work.
 *
 * The worker's source is inline so it runs the same from compiled output and from TypeScript
 * sources under jest, with no file to locate.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { hash } = require('node:crypto');
const BLOCK = ${16 * 1024};
parentPort.on('message', ({ id, buffer, offset, length }) => {
  const data = new Uint8Array(buffer, offset, length);
  const count = Math.ceil(length / BLOCK);
  const out = new Uint8Array(count * 32);
  for (let i = 0; i < count; i++) {
    out.set(hash('sha256', data.subarray(i * BLOCK, (i + 1) * BLOCK), 'buffer'), i * 32);
  }
  parentPort.postMessage({ id, hashes: out.buffer }, [out.buffer]);
});
`;

interface Pending {
  resolve: (hashes: Buffer) => void;
  reject: (err: Error) => void;
}

export class BlockHashPool {
  private readonly workers: Worker[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private next = 0;
  private failed: Error | undefined;

  constructor(readonly threads: number) {
    if (!Number.isSafeInteger(threads) || threads < 1) {
      throw new ShoalError('HASH_POOL_BAD_SIZE', `hash threads must be a positive integer, not ${threads}`);
    }
    this.workers = Array.from({ length: threads }, () => {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.on('message', ({ id, hashes }: { id: number; hashes: ArrayBuffer }) => {
        const job = this.pending.get(id);
        this.pending.delete(id);
        job?.resolve(Buffer.from(hashes));
      });
      worker.on('error', (err) => this.fail(err));
      return worker;
    });
  }

  /**
   * Leaf hashes of the blocks in `chunk`, which must live in a SharedArrayBuffer (see
   * `sharedBuffer`) and must not be reused until the promise settles.
   */
  hashBlocks(chunk: Buffer): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    if (!(chunk.buffer instanceof SharedArrayBuffer)) {
      return Promise.reject(new ShoalError('HASH_POOL_NOT_SHARED', 'chunks must be backed by a SharedArrayBuffer'));
    }
    const id = this.nextId++;
    const worker = this.workers[this.next] as Worker;
    this.next = (this.next + 1) % this.workers.length;
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, buffer: chunk.buffer, offset: chunk.byteOffset, length: chunk.length });
    });
  }

  private fail(err: Error): void {
    this.failed = err;
    for (const job of this.pending.values()) job.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** A Buffer over fresh shared memory, for chunks handed to a `BlockHashPool`. */
export function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}
