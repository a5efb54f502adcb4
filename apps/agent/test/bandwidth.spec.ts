import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { AgentBandwidth, TokenBucket, TrafficShaper, burstFor, pacedReads, parseRate } from '../src/bandwidth';

/** The bandwidth caps without sockets: time is a parameter. */
const MiB = 1024 * 1024;

describe('TokenBucket', () => {
  test('starts full, refills at its rate up to its capacity, and may be overdrawn', () => {
    const bucket = new TokenBucket(1000, 500, 0);
    expect(bucket.balance(0)).toBe(500);
    bucket.take(1500, 0);
    expect(bucket.balance(0)).toBe(-1000);
    expect(bucket.msUntil(0, 0)).toBe(1000);
    expect(bucket.balance(500)).toBe(-500);
    expect(bucket.msUntil(250, 500)).toBe(750);
    expect(bucket.balance(10_000)).toBe(500);
    // Asking for more than the capacity waits for the capacity, not forever.
    bucket.take(500, 10_000);
    expect(bucket.msUntil(10_000, 10_000)).toBe(500);
  });

  test('a clock that steps back adds no tokens and takes none', () => {
    const bucket = new TokenBucket(1000, 1000, 5000);
    bucket.take(1000, 5000);
    expect(bucket.balance(4000)).toBe(0);
    expect(bucket.balance(5500)).toBe(500);
  });

  test('refuses rates and capacities that are not positive numbers', () => {
    for (const [rate, capacity] of [
      [0, 1],
      [-1, 1],
      [Number.NaN, 1],
      [Number.POSITIVE_INFINITY, 1],
      [1, 0],
    ] as const) {
      expect(() => new TokenBucket(rate, capacity, 0)).toThrow(RangeError);
    }
  });

  test('over any schedule of takes, what passes never exceeds capacity + rate x time (+ the last take)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1000, max: 100 * MiB }), fc.array(fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 256 * 1024 })), { maxLength: 200 }), (rate, steps) => {
        const capacity = burstFor(rate);
        const bucket = new TokenBucket(rate, capacity, 0);
        let now = 0;
        let passed = 0;
        let last = 0;
        for (const [advance, bytes] of steps) {
          now += advance;
          // A well-behaved user: waits as told before the next transfer.
          now += bucket.msUntil(0, now);
          bucket.take(bytes, now);
          passed += bytes;
          last = bytes;
        }
        expect(passed).toBeLessThanOrEqual(capacity + (rate * now) / 1000 + last + 1e-6);
      }),
    );
  });
});

describe('TrafficShaper', () => {
  test('unlimited in both classes: nothing ever waits', () => {
    const shaper = new TrafficShaper({ limit: 0, backgroundLimit: 0 }, 0);
    shaper.record('normal', 10 * MiB, 0);
    shaper.record('background', 10 * MiB, 0);
    expect([shaper.delay('normal', 0), shaper.delay('background', 0)]).toEqual([0, 0]);
  });

  test('normal traffic keeps to the limit; background keeps to its own, lower limit', () => {
    const shaper = new TrafficShaper({ limit: 4 * MiB, backgroundLimit: MiB }, 0);
    shaper.record('normal', burstFor(4 * MiB) + 4 * MiB, 0);
    expect(shaper.delay('normal', 0)).toBe(1000);
    const alone = new TrafficShaper({ limit: 16 * MiB, backgroundLimit: MiB }, 0);
    alone.record('background', burstFor(MiB) + MiB, 0);
    expect(alone.delay('background', 0)).toBe(1000);
    // Background bytes count against the shared limit too, but the normal class is not held to the background one.
    expect(alone.delay('normal', 0)).toBe(0);
  });

  test('background traffic yields: while normal traffic keeps the shared bucket drained, it waits', () => {
    const shaper = new TrafficShaper({ limit: MiB, backgroundLimit: MiB }, 0);
    const step = 16 * 1024;
    let normalBytes = 0;
    let backgroundBytes = 0;
    // 10 s of both classes asking all the time, in 1 ms steps: whoever may move, moves a block.
    for (let now = 0; now < 10_000; now++) {
      if (shaper.delay('normal', now) === 0) {
        shaper.record('normal', step, now);
        normalBytes += step;
      }
      if (shaper.delay('background', now) === 0) {
        shaper.record('background', step, now);
        backgroundBytes += step;
      }
    }
    const budget = burstFor(MiB) + 10 * MiB;
    expect(normalBytes + backgroundBytes).toBeLessThanOrEqual(budget + 2 * step);
    // Only the initial burst reaches the background class.
    expect(backgroundBytes).toBeLessThanOrEqual(burstFor(MiB));
  });

  test('background traffic gets what normal traffic leaves', () => {
    const shaper = new TrafficShaper({ limit: 4 * MiB, backgroundLimit: 4 * MiB }, 0);
    const step = 16 * 1024;
    let normalBytes = 0;
    let backgroundBytes = 0;
    for (let now = 0; now < 10_000; now++) {
      // Normal traffic wants 1 MiB/s only.
      if (now % 16 === 0 && shaper.delay('normal', now) === 0) {
        shaper.record('normal', step, now);
        normalBytes += step;
      }
      if (shaper.delay('background', now) === 0) {
        shaper.record('background', step, now);
        backgroundBytes += step;
      }
    }
    expect(normalBytes).toBe(625 * step);
    // About 3 MiB/s are left over for 10 s.
    expect(backgroundBytes).toBeGreaterThan(25 * MiB);
    expect(normalBytes + backgroundBytes).toBeLessThanOrEqual(burstFor(4 * MiB) + 40 * MiB + 2 * step);
  });
});

describe('AgentBandwidth', () => {
  test("a package's gates follow its class as it changes; packages share the agent's caps", () => {
    let now = 0;
    const bandwidth = new AgentBandwidth({ upload: { limit: 0, backgroundLimit: 0 }, download: { limit: 4 * MiB, backgroundLimit: MiB / 4 } }, () => now);
    const first = bandwidth.gatesFor('background');
    const second = bandwidth.gatesFor('normal');
    first.download.record(burstFor(MiB / 4) + MiB / 4);
    expect(first.download.delay()).toBe(1000);
    expect(second.download.delay()).toBe(0);
    first.cls = 'normal';
    expect(first.download.delay()).toBe(0);
    second.download.record(burstFor(4 * MiB));
    expect(first.download.delay()).toBeGreaterThan(0);
    now = 2000;
    expect(first.download.delay()).toBe(0);
    first.upload.record(100 * MiB);
    expect(second.upload.delay()).toBe(0);
  });
});

describe('parseRate', () => {
  test('numbers and units, decimal, binary and bits, with or without /s', () => {
    const cases: Array<[unknown, number]> = [
      [0, 0],
      ['0', 0],
      [2048, 2048],
      ['2048', 2048],
      ['20mbit', 2_500_000],
      ['20Mbit/s', 2_500_000],
      ['5MiB', 5 * MiB],
      ['5 mib/s', 5 * MiB],
      ['800kB', 800_000],
      ['1.5GB', 1.5e9],
      ['16kbit', 2000],
      ['1gbit', 125_000_000],
      ['2KiB', 2048],
      ['  3MB  ', 3e6],
    ];
    for (const [raw, bytes] of cases) expect([raw, parseRate(raw)]).toEqual([raw, bytes]);
  });

  test('garbage, negative, truncated, tiny and huge values are refused with the reason', () => {
    const bad: unknown[] = ['', ' ', 'fast', '5 MiB per second', '-5MiB', '5XB', 'MiB', '5.', '.5MiB', '1e9', '20 mbps', '8kbit', -1, Number.NaN, Number.POSITIVE_INFINITY, '100', 100, '2 TB', null, {}, ['5MiB'], '9'.repeat(40), true];
    for (const raw of bad) expect(() => parseRate(raw)).toThrow(/must be/);
  });

  test('any string either parses to 0 or a rate within bounds, or throws an Error', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^[0-9]{1,12}(\.[0-9]{1,3})? ?(b|kb|MB|gib|kbit|Mbit|x)?(\/s)?$/)), (raw) => {
        let rate: number | undefined;
        try {
          rate = parseRate(raw);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return;
        }
        expect(rate === 0 || (rate >= 1024 && rate <= 1e12 && Number.isSafeInteger(rate))).toBe(true);
      }),
    );
  });
});

describe('pacedReads', () => {
  test('pauses a stream while the gate says wait and resumes it after', async () => {
    const stream = new PassThrough();
    let waitMs = 0;
    let recorded = 0;
    const paced = pacedReads(stream, { record: (n) => (recorded += n), delay: () => waitMs });
    const got: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => got.push(chunk));
    stream.write(Buffer.alloc(10));
    await new Promise((r) => setImmediate(r));
    expect([recorded, paced.paused, stream.isPaused()]).toEqual([10, false, false]);
    waitMs = 30;
    stream.write(Buffer.alloc(20));
    await new Promise((r) => setImmediate(r));
    expect([recorded, paced.paused, stream.isPaused()]).toEqual([30, true, true]);
    stream.write(Buffer.alloc(5));
    await new Promise((r) => setImmediate(r));
    // Held back while paused: not delivered, not counted.
    expect(recorded).toBe(30);
    waitMs = 0;
    await new Promise((r) => setTimeout(r, 60));
    expect([recorded, paced.paused, got.length]).toEqual([35, false, 3]);
    stream.destroy();
  });
});
