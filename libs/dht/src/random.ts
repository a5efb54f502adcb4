import { DhtError } from './errors';

/**
 * The DHT's only source of randomness, injected by the adapter (crypto.randomBytes in the agent, a
 * seeded generator in the simulator). Token secrets come from it, so in production it must be
 * cryptographically strong.
 */
export type RandomBytes = (size: number) => Buffer;

/** `randomBytes`, refusing a source that returns the wrong size (a short token secret would be silent damage). */
export function checkedRandomBytes(randomBytes: RandomBytes): RandomBytes {
  if (typeof randomBytes !== 'function') throw new DhtError('DHT_BAD_ARGUMENT', 'randomBytes must be a function (size) => Buffer', 'randomBytes');
  return (size) => {
    const bytes = randomBytes(size);
    if (!Buffer.isBuffer(bytes) || bytes.length !== size) {
      throw new DhtError('DHT_BAD_ARGUMENT', `randomBytes(${size}) must return a Buffer of ${size} bytes`, 'randomBytes');
    }
    return bytes;
  };
}

/** A uniform integer in [0, bound) for bound <= 2^32, by rejection (no modulo bias). */
export function randomBelow(bound: number, randomBytes: RandomBytes): number {
  const limit = Math.floor(0x1_0000_0000 / bound) * bound;
  for (;;) {
    const draw = randomBytes(4).readUInt32BE(0);
    if (draw < limit) return draw % bound;
  }
}

/** `count` distinct items chosen uniformly (partial Fisher-Yates over a copy). */
export function randomSample<T>(items: readonly T[], count: number, randomBytes: RandomBytes): T[] {
  const pool = items.slice();
  const n = Math.min(count, pool.length);
  for (let i = 0; i < n; i++) {
    const j = i + randomBelow(pool.length - i, randomBytes);
    const picked = pool[j] as T;
    pool[j] = pool[i] as T;
    pool[i] = picked;
  }
  pool.length = n;
  return pool;
}
