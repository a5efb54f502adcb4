/**
 * mulberry32: a tiny seeded generator, uniform in [0, 1). The simulator's only source of
 * randomness: it feeds every virtual host's Swarm, so one seed replays the same run.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** A seed for a child generator, drawn from its parent (each host gets its own stream). */
export function childSeed(random: () => number): number {
  return Math.floor(random() * 0x1_0000_0000) >>> 0;
}

/** Fisher-Yates over a copy; `count` first elements of a uniform shuffle. */
export function sample<T>(items: readonly T[], count: number, random: () => number): T[] {
  const pool = items.slice();
  const n = Math.min(count, pool.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.min(pool.length - i - 1, Math.floor(random() * (pool.length - i)));
    const picked = pool[j] as T;
    pool[j] = pool[i] as T;
    pool[i] = picked;
  }
  pool.length = n;
  return pool;
}
