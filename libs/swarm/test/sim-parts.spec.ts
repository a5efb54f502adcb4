import fc from 'fast-check';
import { completionBound, EventQueue, FLEET_SCALE_MODEL, fleetScenario, mulberry32, resolveSimOptions, sample, SwarmConfigError } from '../src';

describe('EventQueue', () => {
  test('pops in time order, same-time items in push order, through growth', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 3000 }), (times) => {
        const queue = new EventQueue<{ time: number; n: number }>();
        times.forEach((time, n) => queue.push(time, { time, n }));
        expect(queue.size).toBe(times.length);
        const out: { time: number; n: number }[] = [];
        for (let item = queue.pop(); item !== undefined; item = queue.pop()) out.push(item);
        const expected = times.map((time, n) => ({ time, n })).sort((a, b) => a.time - b.time || a.n - b.n);
        expect(out).toEqual(expected);
        expect(queue.size).toBe(0);
      }),
      { numRuns: 50 },
    );
  });

  test('interleaved pushes and pops keep the order', () => {
    const queue = new EventQueue<string>();
    queue.push(5, 'e');
    queue.push(1, 'a');
    expect(queue.pop()).toBe('a');
    queue.push(3, 'c');
    queue.push(3, 'd');
    queue.push(2, 'b');
    expect([queue.pop(), queue.pop(), queue.pop(), queue.pop(), queue.pop()]).toEqual(['b', 'c', 'd', 'e', undefined]);
  });
});

describe('simulation randomness', () => {
  test('mulberry32: the same seed gives the same stream, in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const c = mulberry32(43);
    const streamA = Array.from({ length: 1000 }, a);
    expect(Array.from({ length: 1000 }, b)).toEqual(streamA);
    expect(Array.from({ length: 1000 }, c)).not.toEqual(streamA);
    for (const x of streamA) expect(x >= 0 && x < 1).toBe(true);
  });

  test('sample: distinct items of the pool, at most count, the pool untouched', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer(), { maxLength: 60 }), fc.nat({ max: 80 }), fc.integer(), (pool, count, seed) => {
        const before = [...pool];
        const picked = sample(pool, count, mulberry32(seed));
        expect(picked).toHaveLength(Math.min(count, pool.length));
        expect(new Set(picked).size).toBe(picked.length);
        for (const x of picked) expect(pool).toContain(x);
        expect(pool).toEqual(before);
      }),
    );
  });
});

describe('completionBound (T*)', () => {
  const F = 1000;
  test('equal rates: N·F/(u_s + Σu) dominates only when the source is faster than the peers', () => {
    const peers = Array.from({ length: 9 }, () => ({ up: 10, down: 1000 }));
    expect(completionBound(F, 10, peers)).toBe(100); // F/u_s = 100, N·F/Σ = 9000/100 = 90
    expect(completionBound(F, 50, peers)).toBeCloseTo(9000 / 140); // F/u_s = 20 < 64.3
  });

  test('the slowest download bounds everyone', () => {
    expect(completionBound(F, 100, [{ up: 100, down: 1000 }, { up: 100, down: 4 }])).toBe(250);
  });
});

describe('simulation options', () => {
  const base = { seed: 1, peers: 10, fileBytes: 1 << 20, pieceLength: 1 << 16 };

  test('defaults: one seed, equal rates, download twice the upload, fast wire', () => {
    const o = resolveSimOptions(base);
    expect(o).toMatchObject({ source: 'seed', profile: 'equal', fast: true, origin: undefined, corruptPeers: 0, lateJoiners: 0 });
    expect(o.downloadBytesPerSecond).toBe(2 * o.uploadBytesPerSecond);
    expect(o.seedUploadBytesPerSecond).toBe(o.uploadBytesPerSecond);
    expect(resolveSimOptions({ ...base, profile: 'fast-seed' }).seedUploadBytesPerSecond).toBe(5 * o.uploadBytesPerSecond);
    expect(resolveSimOptions({ ...base, source: 'webseed' }).origin).toEqual({ uploadBytesPerSecond: o.uploadBytesPerSecond, concurrency: 64 });
  });

  test.each([
    [{ peers: 0 }, 'peers'],
    [{ peers: 2.5 }, 'peers'],
    [{ fileBytes: -1 }, 'fileBytes'],
    [{ pieceLength: Number.NaN }, 'pieceLength'],
    [{ uploadBytesPerSecond: 0 }, 'uploadBytesPerSecond'],
    [{ origin: { concurrency: 0 } }, 'origin.concurrency'],
    [{ latencyMs: -5 }, 'latencyMs'],
    [{ corruptPeers: 8, lateJoiners: 8 }, 'must not exceed peers'],
    [{ seedLeavesAfter: 0.3 }, 'needs a webseed'],
  ])('%j is refused, naming %s', (bad, named) => {
    expect(() => resolveSimOptions({ ...base, ...bad })).toThrow(SwarmConfigError);
    expect(() => resolveSimOptions({ ...base, ...bad })).toThrow(named);
  });

  test('fleetScenario: the scale model, whose swarm settings merge with the overrides', () => {
    const scenario = fleetScenario({ seed: 3, peers: 7, swarm: { maxPeers: 30 } });
    expect(scenario).toMatchObject({ seed: 3, peers: 7, fileBytes: 32 << 20, pieceLength: 64 << 10 });
    expect(scenario.swarm).toEqual({ ...FLEET_SCALE_MODEL, maxPeers: 30 });
  });
});
