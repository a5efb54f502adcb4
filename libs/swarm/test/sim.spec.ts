import { fleetScenario, runSimulation, type SimOptions, type SimReport } from '../src';

/** Runs of a few hundred thousand events: generous limits, no timing is asserted. */
const LONG = 180_000;
const MiB = 1024 * 1024;

/** A small fleet: 8 MiB, 40 downloaders (T* = 8 s), the reference scale model otherwise. */
const small = (overrides: Partial<SimOptions> & Pick<SimOptions, 'seed'>): SimOptions =>
  fleetScenario({ peers: 40, fileBytes: 8 * MiB, ...overrides });

/** Every honest downloader finished; the figures the report derives agree with its hosts. */
function expectSound(report: SimReport): void {
  const honest = report.hosts.filter((h) => h.role === 'peer');
  expect(report.incomplete).toBe(0);
  expect(report.completed).toBe(honest.length);
  const times = honest.map((h) => h.completedAtMs as number);
  for (const [i, t] of times.entries()) {
    expect(t).toBeGreaterThan(honest[i]?.joinedAtMs ?? 0);
    // Nobody completes faster than its downlink allows.
    expect(t / 1000).toBeGreaterThanOrEqual(report.fileBytes / (honest[i]?.downloadBytesPerSecond ?? Infinity) - 1e-9);
  }
  expect(report.lastCompletionSeconds).toBeCloseTo(Math.max(...times) / 1000, 9);
  expect(report.efficiency).toBeCloseTo(report.boundSeconds / (report.lastCompletionSeconds as number), 9);
  expect(report.efficiency).toBeLessThanOrEqual(1);
  const uploaded = report.hosts.reduce((sum, h) => sum + h.uploadedBytes, 0);
  const received = report.hosts.reduce((sum, h) => sum + h.bytesFromPeers, 0);
  // Blocks still on the wire when the run stops were uploaded and not received.
  expect(received).toBeLessThanOrEqual(uploaded);
  expect(report.honestBanned).toBe(0);
}

describe('simulator: determinism', () => {
  test(
    'the same seed replays the same run; another seed gives another valid run',
    () => {
      const options = small({ seed: 7, peers: 30, fileBytes: 4 * MiB });
      const first = runSimulation(options);
      const again = runSimulation(options);
      const other = runSimulation({ ...options, seed: 8 });
      expect(again).toEqual(first);
      expectSound(first);
      expectSound(other);
      expect(other.hosts.map((h) => h.completedAtMs)).not.toEqual(first.hosts.map((h) => h.completedAtMs));
      expect(other.eventsProcessed).not.toBe(first.eventsProcessed);
    },
    LONG,
  );
});

describe('simulator: 200 peers, equal upload rates (the fleet scale model)', () => {
  let report: SimReport;
  beforeAll(() => {
    report = runSimulation(fleetScenario({ seed: 1, peers: 200 }));
  }, LONG);

  test('every downloader completes', () => {
    expectSound(report);
    expect(report.completed).toBe(200);
    expect(report.boundSeconds).toBeCloseTo(32, 9);
  });

  test('the last completes within 1.15 x T*', () => {
    expect(report.lastCompletionSeconds as number).toBeLessThanOrEqual(1.15 * report.boundSeconds);
  });

  test('super-seeding: the seed uploads about one copy (at most 1.1)', () => {
    expect(report.seedCopies).toBeGreaterThanOrEqual(1);
    expect(report.seedCopies).toBeLessThanOrEqual(1.1);
  });

  test('peers carry the load; end game wastes little', () => {
    const peers = report.hosts.filter((h) => h.role === 'peer');
    const uploaded = peers.reduce((sum, h) => sum + h.uploadedBytes, 0);
    expect(uploaded / report.fileBytes).toBeGreaterThan(195);
    expect(report.duplicateBlocks).toBeLessThan(0.01 * 200 * (report.fileBytes / 16384));
  });
});

describe('simulator: adversity', () => {
  test(
    'corrupt peers are banned by the peers they fed, and no honest peer is',
    () => {
      const report = runSimulation(small({ seed: 11, corruptPeers: 2 }));
      expectSound(report);
      expect(report.corruptPieces).toBeGreaterThan(0);
      const corrupt = new Set(report.hosts.filter((h) => h.role === 'corrupt').map((h) => h.name));
      const bannedBy = new Map<string, Set<string>>();
      for (const ban of report.bans) {
        expect(corrupt.has(ban.banned)).toBe(true);
        if (!bannedBy.has(ban.banned)) bannedBy.set(ban.banned, new Set());
        bannedBy.get(ban.banned)?.add(ban.by);
      }
      // Each corrupt host is banned, and by several peers.
      expect([...bannedBy.keys()].sort()).toEqual([...corrupt].sort());
      for (const by of bannedBy.values()) expect(by.size).toBeGreaterThan(1);
    },
    LONG,
  );

  test(
    'the seed leaves after uploading 30% of the package: the webseed fills in and everyone completes',
    () => {
      const report = runSimulation(small({ seed: 12, source: 'seed+webseed', seedLeavesAfter: 0.3 }));
      expectSound(report);
      expect(report.seedCopies).toBeGreaterThanOrEqual(0.3);
      expect(report.seedCopies).toBeLessThan(0.35);
      // The pieces the seed never sent came from the origin, at least once each.
      expect(report.originCopies).toBeGreaterThanOrEqual(0.65);
      expect(report.hosts.some((h) => h.bytesFromWebseed > 0)).toBe(true);
    },
    LONG,
  );

  test(
    'no seed at all: the origin alone serves the swarm',
    () => {
      const report = runSimulation(small({ seed: 13, source: 'webseed', origin: { uploadBytesPerSecond: 2 * MiB } }));
      expectSound(report);
      expect(report.seedCopies).toBe(0);
      expect(report.originCopies).toBeGreaterThanOrEqual(1);
      expect(report.hosts.every((h) => h.bytesFromPeers > 0)).toBe(true);
    },
    LONG,
  );

  test(
    'late joiners, mixed and fast-seed rates, a wire without the fast extension: everyone completes',
    () => {
      const late = runSimulation(small({ seed: 14, lateJoiners: 10, lateJoinWindowMs: 5000 }));
      expectSound(late);
      expect(late.hosts.filter((h) => h.joinedAtMs > 0)).toHaveLength(10);

      const mixed = runSimulation(small({ seed: 15, profile: 'mixed' }));
      expectSound(mixed);
      expect(new Set(mixed.hosts.map((h) => h.uploadBytesPerSecond)).size).toBeGreaterThan(1);

      const fastSeed = runSimulation(small({ seed: 16, profile: 'fast-seed' }));
      expectSound(fastSeed);
      expect(fastSeed.hosts.find((h) => h.role === 'seed')?.uploadBytesPerSecond).toBe(5 * MiB);
      // The seed is no longer the bottleneck: T* is the peers' aggregate upload.
      expect(fastSeed.boundSeconds).toBeCloseTo((40 * 8 * MiB) / (5 * MiB + 40 * MiB), 9);

      const plain = runSimulation(small({ seed: 17, fast: false }));
      expectSound(plain);
    },
    LONG,
  );
});
