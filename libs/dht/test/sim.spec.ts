import { type LookupSimOptions, type LookupSimReport, runLookupSimulation } from '../src';

/**
 * The checks, on the real core in the simulator: 10,000 nodes whose routing tables are
 * filled by direct insertion (DhtSimNetwork.populateTables: as if every node had long been part of
 * the DHT), one-way latencies of 10..50 ms, 1,000 find_node lookups of random ids from random live
 * honest nodes, 20 ms apart (about 15 run at once). A lookup succeeds when its result is exactly
 * the k closest nodes that answer queries. `npm run bench -- dht` prints the full distributions.
 *
 * Measured with seed 1 (default config, k = 8); rounds as histogram rounds:lookups:
 *   all live      median 3 (1:2 2:77 3:648 4:270 5:3), exact 100 %, 13.1 queries per lookup, 284 ms
 *   20 % dead     median 3 (2:42 3:467 4:433 5:57 6:1), exact 100 %, 14.8 queries, 1.35 s (dead nodes
 *                 cost rpcSlowMs each)
 *   10 % hostile  median 3 (1:2 2:75 3:584 4:327 5:12), exact 100 %, 18.4 queries (p99 31), 1.29 s
 */
const LONG = 120_000;

function simulate(overrides: Partial<LookupSimOptions>): LookupSimReport {
  return runLookupSimulation({
    seed: 1,
    nodes: 10_000,
    hostsPerSubnet: 50,
    latencyMs: [10, 50],
    deadShare: 0,
    hostileShare: 0,
    lookups: 1000,
    lookupSpacingMs: 20,
    ...overrides,
  });
}

function expectSound(report: LookupSimReport): void {
  expect(report.lookups).toBe(1000);
  expect(report.unfinished).toBe(0);
  expect(report.exhausted).toBe(0);
  const histogramTotal = Object.values(report.rounds.histogram).reduce((sum, n) => sum + n, 0);
  expect(histogramTotal).toBe(1000);
}

describe('simulation: 10,000 nodes', () => {
  test(
    'all live: median lookup <= 4 rounds, and every lookup finds the k closest nodes',
    () => {
      const report = simulate({});
      expectSound(report);
      expect(report.rounds.median).toBeLessThanOrEqual(4);
      expect(report.rounds.p90).toBeLessThanOrEqual(5);
      expect(report.exactShare).toBeGreaterThanOrEqual(0.99);
      expect(report.closestShare).toBe(1);
      expect(report.failures.max).toBe(0);
    },
    LONG,
  );

  test(
    '20 % of nodes silently dead: >= 99 % of lookups still find the k closest live nodes',
    () => {
      const report = simulate({ deadShare: 0.2 });
      expectSound(report);
      expect(report.dead).toBe(2000);
      expect(report.exactShare).toBeGreaterThanOrEqual(0.99);
      expect(report.closestShare).toBeGreaterThanOrEqual(0.99);
      expect(report.rounds.median).toBeLessThanOrEqual(4);
    },
    LONG,
  );

  test(
    '10 % hostile nodes answering with bogus contacts: >= 99 % of lookups succeed',
    () => {
      const report = simulate({ hostileShare: 0.1 });
      expectSound(report);
      expect(report.hostile).toBe(1000);
      expect(report.exactShare).toBeGreaterThanOrEqual(0.99);
      expect(report.rounds.median).toBeLessThanOrEqual(4);
      // Invented contacts cost queries and time, bounded by distrust: far from lookupMaxQueries.
      expect(report.queries.p99).toBeLessThan(60);
    },
    LONG,
  );
});

describe('simulation: small runs', () => {
  test('the same seed gives the same report; another seed another valid one', () => {
    const small = { nodes: 500, lookups: 100, deadShare: 0.1, hostileShare: 0.05 };
    const first = simulate({ ...small, seed: 5 });
    expect(simulate({ ...small, seed: 5 })).toEqual(first);
    const other = simulate({ ...small, seed: 6 });
    expect(other).not.toEqual(first);
    expect(first.exactShare).toBeGreaterThanOrEqual(0.95);
    expect(other.exactShare).toBeGreaterThanOrEqual(0.95);
  });
});
