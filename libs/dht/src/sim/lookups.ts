import type { LookupResult } from '../lookup';
import { DhtSimNetwork, type SimHost, type SimNetworkOptions } from './network';

export interface LookupSimOptions extends SimNetworkOptions {
  /** Share of hosts that go silent after the tables are built (they stay in everyone's table). */
  deadShare: number;
  /** Share of hosts that answer find_node and get_peers with bogus contacts. */
  hostileShare: number;
  /** find_node lookups of random ids, each from a random live honest host. */
  lookups: number;
  /** Lookups start this many ms apart, so several run at once. */
  lookupSpacingMs: number;
}

/** Nearest-rank statistics (the median of 1, 2, 3, 4 is 2). */
export interface Distribution {
  mean: number;
  median: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LookupSimReport {
  nodes: number;
  dead: number;
  hostile: number;
  k: number;
  lookups: number;
  /** Lookups that had not finished when the run ended. */
  unfinished: number;
  /**
   * Lookups whose result (the k closest nodes that answered) is exactly the k closest hosts that
   * answer queries, dead hosts excluded, hostile ones included (they answer).
   */
  exactShare: number;
  /** Lookups whose result starts with the closest host that answers. */
  closestShare: number;
  /** Mean share of those k closest hosts the results held. */
  meanOverlap: number;
  /** See LookupResult.rounds; histogram: rounds -> lookups. */
  rounds: Distribution & { histogram: Record<number, number> };
  queries: Distribution;
  failures: Distribution;
  durationMs: Distribution;
  /** Lookups stopped by lookupMaxQueries. */
  exhausted: number;
  messages: number;
  virtualSeconds: number;
}

/**
 * Builds a network, lets `deadShare` of it die and `hostileShare` turn hostile, runs `lookups`
 * find_node lookups from random live honest hosts and compares each result with the true closest
 * hosts. Deterministic for a seed.
 */
export function runLookupSimulation(options: LookupSimOptions): LookupSimReport {
  const net = new DhtSimNetwork(options);
  net.populateTables();
  const dead = net.assign('dead', Math.round(options.deadShare * options.nodes)).length;
  const hostile = net.assign('hostile', Math.round(options.hostileShare * options.nodes)).length;
  const runs: { host: SimHost; lookup: number; target: Buffer; startedAt: number }[] = [];
  for (let i = 0; i < options.lookups; i++) {
    const host = net.pickHost((h) => h.state === 'live');
    const run = { host, lookup: -1, target: net.randomId(), startedAt: i * options.lookupSpacingMs };
    runs.push(run);
    net.at(run.startedAt, host, (core, now) => {
      run.lookup = core.findNode(now, run.target);
    });
  }
  net.runUntil(() => net.lookupsFinished >= runs.length);

  const results: { result: LookupResult; truth: SimHost[] }[] = [];
  for (const run of runs) {
    const result = run.lookup >= 0 ? net.result(run.host, run.lookup) : undefined;
    if (result) results.push({ result, truth: net.closestAnswering(run.target, net.k, run.host) });
  }
  let exact = 0;
  let closest = 0;
  let overlap = 0;
  for (const { result, truth } of results) {
    const found = new Set(result.closest.map((c) => c.id.toString('hex')));
    const hits = truth.filter((h) => found.has(h.contact.id.toString('hex'))).length;
    overlap += truth.length === 0 ? 1 : hits / truth.length;
    if (hits === truth.length && result.closest.length === truth.length) exact++;
    if (truth[0] && result.closest[0]?.id.equals(truth[0].contact.id)) closest++;
  }
  const histogram: Record<number, number> = {};
  for (const { result } of results) histogram[result.rounds] = (histogram[result.rounds] ?? 0) + 1;
  const n = Math.max(1, results.length);
  return {
    nodes: options.nodes,
    dead,
    hostile,
    k: net.k,
    lookups: runs.length,
    unfinished: runs.length - results.length,
    exactShare: exact / n,
    closestShare: closest / n,
    meanOverlap: overlap / n,
    rounds: { ...distribution(results.map((r) => r.result.rounds)), histogram },
    queries: distribution(results.map((r) => r.result.queries)),
    failures: distribution(results.map((r) => r.result.failures)),
    durationMs: distribution(results.map((r) => r.result.finishedAt - r.result.startedAt)),
    exhausted: results.filter((r) => r.result.exhausted).length,
    messages: net.messages,
    virtualSeconds: net.now / 1000,
  };
}

export function distribution(values: readonly number[]): Distribution {
  if (values.length === 0) return { mean: 0, median: 0, p90: 0, p99: 0, max: 0 };
  const sorted = values.slice().sort((a, b) => a - b);
  const rank = (p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] as number;
  return {
    mean: sorted.reduce((sum, v) => sum + v, 0) / sorted.length,
    median: rank(0.5),
    p90: rank(0.9),
    p99: rank(0.99),
    max: sorted[sorted.length - 1] as number,
  };
}
