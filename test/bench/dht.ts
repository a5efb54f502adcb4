/**
 * DHT lookup benchmark: the real DHT core (libs/dht) in its simulator. 10,000 nodes by default,
 * routing tables filled by direct insertion, one-way latencies of 10..50 ms, 1,000 find_node
 * lookups of random ids from random live honest nodes, in four networks: all live, 20 % silently
 * dead, 10 % hostile (bogus contacts), and both. For each: the rounds distribution (see
 * LookupResult.rounds), the share of lookups that found exactly the k closest answering nodes,
 * queries and virtual duration per lookup, and the CPU seconds of the run (table building
 * included).
 *
 * Targets (issue 8): median <= 4 rounds; >= 99 % success with 20 % dead and with 10 % hostile.
 *
 * Usage: npm run bench -- dht [--nodes 10000] [--lookups 1000] [--seed 1] [--k 8]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { type LookupSimReport, runLookupSimulation } from '@shoal/dht';

const RESULTS_DIR = join(__dirname, 'results');
const TARGETS = { medianRounds: 4, successShare: 0.99 };
const NETWORKS = [
  { name: 'all live', deadShare: 0, hostileShare: 0 },
  { name: '20 % dead', deadShare: 0.2, hostileShare: 0 },
  { name: '10 % hostile', deadShare: 0, hostileShare: 0.1 },
  { name: '20 % dead + 10 % hostile', deadShare: 0.2, hostileShare: 0.1 },
] as const;

interface DhtRun {
  network: string;
  report: LookupSimReport;
  cpuSeconds: number;
  wallSeconds: number;
}

export async function dhtBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { nodes: { type: 'string' }, lookups: { type: 'string' }, seed: { type: 'string' }, k: { type: 'string' } },
  });
  const nodes = Number(values.nodes ?? 10_000);
  const lookups = Number(values.lookups ?? 1000);
  const seed = Number(values.seed ?? 1);
  const k = Number(values.k ?? 8);
  for (const [name, value] of Object.entries({ nodes, lookups, seed, k })) {
    if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--${name}: a positive integer, not ${String(value)}`);
  }

  const runs: DhtRun[] = [];
  for (const network of NETWORKS) {
    const cpuBefore = process.cpuUsage();
    const wallBefore = performance.now();
    const report = runLookupSimulation({
      seed,
      nodes,
      hostsPerSubnet: 50,
      latencyMs: [10, 50],
      deadShare: network.deadShare,
      hostileShare: network.hostileShare,
      lookups,
      lookupSpacingMs: 20,
      config: { k },
    });
    const cpu = process.cpuUsage(cpuBefore);
    const run = { network: network.name, report, cpuSeconds: (cpu.user + cpu.system) / 1e6, wallSeconds: (performance.now() - wallBefore) / 1000 };
    runs.push(run);
    const { rounds, queries, durationMs } = report;
    console.log(
      `dht: ${network.name.padEnd(26)} rounds median ${rounds.median} p90 ${rounds.p90} max ${rounds.max} ${JSON.stringify(rounds.histogram)}  ` +
        `exact ${(100 * report.exactShare).toFixed(1)} %  closest ${(100 * report.closestShare).toFixed(1)} %  ` +
        `queries mean ${queries.mean.toFixed(1)} p99 ${queries.p99}  duration median ${durationMs.median.toFixed(0)} ms p99 ${durationMs.p99.toFixed(0)} ms  ` +
        `CPU ${run.cpuSeconds.toFixed(1)} s`,
    );
  }

  const startedAt = new Date().toISOString();
  const result = {
    startedAt,
    machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
    scenario: { seed, nodes, lookups, k, latencyMs: [10, 50], hostsPerSubnet: 50 },
    runs,
    targets: {
      medianRounds: { atMost: TARGETS.medianRounds, pass: runs.every((r) => r.report.rounds.median <= TARGETS.medianRounds) },
      successShare: { atLeast: TARGETS.successShare, pass: runs.every((r) => r.report.exactShare >= TARGETS.successShare) },
    },
  };
  await mkdir(RESULTS_DIR, { recursive: true });
  const text = `${JSON.stringify(result, null, 2)}\n`;
  await writeFile(join(RESULTS_DIR, `dht-${startedAt.replace(/:/g, '-')}.json`), text);
  await writeFile(join(RESULTS_DIR, 'dht-latest.json'), text);
}
