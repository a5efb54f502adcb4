/**
 * Swarm simulator benchmark: the real Swarm core (libs/swarm) driven by its in-process
 * discrete-event simulator with one seed and N downloaders on the fleet scale model
 * (`fleetScenario`: 32 MiB in 64 KiB pieces, 1 MiB/s uploads, 10 ms latency; see its comment),
 * by default with 200 and 1,000 downloaders. For each run: T* (the fluid-model bound), T_last,
 * efficiency T* / T_last, the seed's upload in copies of the package, duplicate blocks, events,
 * and the CPU seconds of the run (process.cpuUsage: this process, GC threads included).
 *
 * Targets: T_last <= 1.15 T* (efficiency >= 0.87); 1,000 peers in under 60 s of CPU.
 *
 * Usage: npm run bench -- sim [--peers 200,1000] [--seed 1] [--size 32MiB] [--piece-length 64KiB]
 *        [--defaults]   (--defaults: the Swarm's default settings instead of the scale model's)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { FLEET_SCALE_MODEL, fleetScenario, runSimulation } from '@shoal/swarm';
import { parseSize } from './agent.bench';

const RESULTS_DIR = join(__dirname, 'results');
const MiB = 1024 * 1024;
const TARGETS = { efficiency: 1 / 1.15, cpuSecondsAt1000Peers: 60 };

interface SimRun {
  peers: number;
  boundSeconds: number;
  lastCompletionSeconds: number | null;
  meanCompletionSeconds: number | null;
  efficiency: number;
  seedCopies: number;
  duplicateBlocks: number;
  eventsProcessed: number;
  cpuSeconds: number;
  wallSeconds: number;
  eventsPerCpuSecond: number;
}

function measure(peers: number, seed: number, fileBytes: number, pieceLength: number, defaults: boolean): SimRun {
  const scenario = fleetScenario({ seed, peers, fileBytes, pieceLength });
  if (defaults) scenario.swarm = {};
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const report = runSimulation(scenario);
  const cpu = process.cpuUsage(cpuBefore);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    peers,
    boundSeconds: report.boundSeconds,
    lastCompletionSeconds: report.lastCompletionSeconds,
    meanCompletionSeconds: report.meanCompletionSeconds,
    efficiency: report.efficiency,
    seedCopies: report.seedCopies,
    duplicateBlocks: report.duplicateBlocks,
    eventsProcessed: report.eventsProcessed,
    cpuSeconds,
    wallSeconds: (performance.now() - wallBefore) / 1000,
    eventsPerCpuSecond: report.eventsProcessed / cpuSeconds,
  };
}

export async function simBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { peers: { type: 'string' }, seed: { type: 'string' }, size: { type: 'string' }, 'piece-length': { type: 'string' }, defaults: { type: 'boolean' } },
  });
  const peerCounts = (values.peers ?? '200,1000').split(',').map((p) => Number(p.trim()));
  if (peerCounts.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error(`--peers: a list of positive integers, not ${values.peers}`);
  const seed = Number(values.seed ?? 1);
  const fileBytes = parseSize(values.size ?? '32MiB');
  const pieceLength = parseSize(values['piece-length'] ?? '64KiB');
  const defaults = values.defaults === true;

  const runs: SimRun[] = [];
  for (const peers of peerCounts) {
    const run = measure(peers, seed, fileBytes, pieceLength, defaults);
    runs.push(run);
    console.log(
      `sim: ${String(peers).padStart(5)} peers  T* ${run.boundSeconds.toFixed(1)} s  T_last ${run.lastCompletionSeconds?.toFixed(1) ?? 'incomplete'} s  ` +
        `efficiency ${run.efficiency.toFixed(3)} (target >= ${TARGETS.efficiency.toFixed(3)})  seed ${run.seedCopies.toFixed(3)} copies  ` +
        `duplicates ${run.duplicateBlocks}  ${run.eventsProcessed} events  CPU ${run.cpuSeconds.toFixed(1)} s`,
    );
  }

  const at1000 = runs.find((r) => r.peers === 1000);
  const report = {
    startedAt: new Date().toISOString(),
    machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
    scenario: { seed, fileMiB: fileBytes / MiB, pieceKiB: pieceLength / 1024, swarm: defaults ? 'defaults' : FLEET_SCALE_MODEL },
    runs,
    targets: {
      efficiency: { atLeast: TARGETS.efficiency, pass: runs.every((r) => r.efficiency >= TARGETS.efficiency) },
      cpuSecondsAt1000Peers: at1000 ? { below: TARGETS.cpuSecondsAt1000Peers, pass: at1000.cpuSeconds < TARGETS.cpuSecondsAt1000Peers } : undefined,
    },
  };
  await mkdir(RESULTS_DIR, { recursive: true });
  const text = `${JSON.stringify(report, null, 2)}\n`;
  await writeFile(join(RESULTS_DIR, `sim-${report.startedAt.replace(/:/g, '-')}.json`), text);
  await writeFile(join(RESULTS_DIR, 'sim-latest.json'), text);
}
