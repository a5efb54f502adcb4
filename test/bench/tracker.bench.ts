/**
 * Tracker benchmark: announces per second and latency against one controller process with
 * Redis, the load generator in a separate process over mutual TLS (libs/testing/src/tracker-load.ts),
 * first with announces on Tracker.AnnounceStream (what agents use; the targets are judged on it),
 * then with unary Announce calls for comparison. Each has two phases: saturation (a closed loop of `inflight` announces per agent connection: the most
 * announces per second) and latency at a fixed offered rate (open loop, `rate` announces per
 * second, latency from the time each was due). Throughput is judged on the first, p99 on the
 * second: a closed loop at saturation only measures its own queue (latency = in flight /
 * throughput), while a fleet announces on its own schedule. Also reports where the CPU went
 * (controller, Redis, load generator), since all three share this machine's cores.
 *
 * Usage: npm run bench -- tracker [--agents 64] [--swarms 20] [--inflight 4] [--rate 10000] [--seconds 10] [--profile DIR]
 * (--profile writes the controller's CPU profile to DIR)
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CertificateAuthority, generateRsaKeyPair } from '@shoal/pki';
import { ensureRedis, redisDatabaseUrl, runShoal, scratchDir, startControllerProcess } from '@shoal/testing';
import { Redis } from 'ioredis';
// Type only: the module is the load generator's entry point (its main runs on import).
import type { PhaseResult } from '@shoal/testing/dist/tracker-load';

const RESULTS_DIR = join(__dirname, 'results');
const REDIS_DB = 14;
const TARGETS = { announcesPerSecond: 10_000, p99Ms: 20 };

interface LoadResult {
  saturation: PhaseResult;
  atRate: PhaseResult & { offeredPerSecond: number };
  /** Announces answered over the whole run, warm-ups included. */
  answered: number;
}

/** CPU seconds a process has used so far (utime + stime from /proc). */
function processCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu');
  const get = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return get('used_cpu_sys') + get('used_cpu_user');
}

export async function trackerBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { agents: { type: 'string' }, swarms: { type: 'string' }, inflight: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' }, profile: { type: 'string' } },
  });
  const plan = {
    agents: Number(values.agents ?? 64),
    swarms: Number(values.swarms ?? 20),
    inflightPerAgent: Number(values.inflight ?? 4),
    rate: Number(values.rate ?? TARGETS.announcesPerSecond),
    seconds: Number(values.seconds ?? 10),
    warmupSeconds: 2,
  };
  await ensureRedis();
  const redisUrl = redisDatabaseUrl(REDIS_DB);
  const redis = new Redis(redisUrl);
  await redis.flushdb();
  const scratch = await scratchDir('tracker-bench');
  const dataDir = join(scratch.path, 'data');
  try {
    if (runShoal(['controller', 'init', '--data-dir', dataDir, '--fleet', 'bench']).status !== 0) throw new Error('controller init failed');
    const controller = await startControllerProcess({
      dataDir,
      redisUrl,
      ...(values.profile ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] } : {}),
    });
    try {
      const caPem = await readFile(join(dataDir, 'ca', 'ca.pem'), 'utf8');
      // Certificates straight from the CA: enrollment is not what this measures.
      const ca = CertificateAuthority.load(caPem, await readFile(join(dataDir, 'ca', 'ca-key.pem'), 'utf8'));
      const key = generateRsaKeyPair();
      const agents = Array.from({ length: plan.agents }, (_, i) => ({
        keyPem: key.keyPem,
        certPem: ca.issueAgentCertificate({ agentId: `bench-${i}`, publicKeyPem: key.publicKeyPem, packageScopes: ['*'], now: new Date() }).certPem,
      }));
      const controllerPid = controller.process.pid as number;
      const measure = async (method: 'stream' | 'unary') => {
        const planFile = join(scratch.path, `plan-${method}.json`);
        await writeFile(planFile, JSON.stringify({ ...plan, method, address: controller.grpcAddress, caPem, agents }));
        const controllerCpuBefore = processCpuSeconds(controllerPid);
        const redisCpuBefore = await redisCpuSeconds(redis);
        const load = await runLoadGenerator(planFile);
        const controllerCpu = processCpuSeconds(controllerPid) - controllerCpuBefore;
        const redisCpu = (await redisCpuSeconds(redis)) - redisCpuBefore;
        const wall = 2 * (plan.warmupSeconds + plan.seconds);
        return {
          method,
          result: load,
          // Over both phases with their warm-ups: cores each process kept busy on average.
          coresBusy: {
            controller: controllerCpu / wall,
            redis: redisCpu / wall,
            loadGeneratorAtSaturation: load.saturation.loadGeneratorCpuSeconds / load.saturation.seconds,
          },
          controllerCpuMicrosecondsPerAnnounce: (controllerCpu * 1e6) / load.answered,
          redisCpuMicrosecondsPerAnnounce: (redisCpu * 1e6) / load.answered,
        };
      };
      // Agents announce on Tracker.AnnounceStream: the targets are judged on it. Unary Announce
      // calls (kept for any other client) are measured after it, for comparison.
      const stream = await measure('stream');
      const unary = await measure('unary');
      const { saturation, atRate } = stream.result;
      const report = {
        startedAt: new Date().toISOString(),
        machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
        plan,
        stream,
        unary,
        targets: {
          method: 'stream',
          announcesPerSecond: { atLeast: TARGETS.announcesPerSecond, value: saturation.perSecond, pass: saturation.perSecond >= TARGETS.announcesPerSecond },
          p99Ms: {
            below: TARGETS.p99Ms,
            atOfferedPerSecond: atRate.offeredPerSecond,
            answeredPerSecond: atRate.perSecond,
            value: atRate.latencyMs.p99,
            pass: atRate.latencyMs.p99 < TARGETS.p99Ms && atRate.perSecond >= 0.99 * atRate.offeredPerSecond,
          },
        },
      };
      await mkdir(RESULTS_DIR, { recursive: true });
      const text = `${JSON.stringify(report, null, 2)}\n`;
      await writeFile(join(RESULTS_DIR, `tracker-${report.startedAt.replace(/:/g, '-')}.json`), text);
      await writeFile(join(RESULTS_DIR, 'tracker-latest.json'), text);
      const latency = (r: PhaseResult) => `p50 ${r.latencyMs.p50.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms, max ${r.latencyMs.max.toFixed(1)} ms`;
      for (const m of [stream, unary]) {
        const r = m.result;
        const judged = m === stream;
        console.log(
          `tracker (${m.method}) saturation: ${r.saturation.perSecond.toFixed(0)} announces/s${judged ? ` (target >= ${TARGETS.announcesPerSecond})` : ''}; ` +
            `${latency(r.saturation)} with ${plan.agents * plan.inflightPerAgent} in flight`,
        );
        console.log(
          `tracker (${m.method}) at ${r.atRate.offeredPerSecond}/s offered: ${r.atRate.perSecond.toFixed(0)}/s answered, ${latency(r.atRate)}${judged ? ` (target p99 < ${TARGETS.p99Ms})` : ''}`,
        );
        console.log(
          `  cores busy: controller ${m.coresBusy.controller.toFixed(2)}, redis ${m.coresBusy.redis.toFixed(2)}, ` +
            `load generator ${m.coresBusy.loadGeneratorAtSaturation.toFixed(2)} at saturation (of ${cpus().length}); ` +
            `CPU per announce: controller ${m.controllerCpuMicrosecondsPerAnnounce.toFixed(0)} µs, redis ${m.redisCpuMicrosecondsPerAnnounce.toFixed(0)} µs`,
        );
      }
      const errors = [stream, unary].reduce((n, m) => n + m.result.saturation.errors + m.result.atRate.errors, 0);
      if (errors > 0) throw new Error(`${errors} announces failed`);
    } finally {
      await controller.stop();
    }
  } finally {
    await redis.flushdb();
    redis.disconnect();
    await scratch.remove();
  }
}

function runLoadGenerator(planFile: string): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    // A larger young generation: fewer scavenges promoting in-flight requests to the old space.
    const child = spawn(process.execPath, ['--max-semi-space-size=32', require.resolve('@shoal/testing/dist/tracker-load.js'), planFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop() as string) as LoadResult) : reject(new Error(`load generator exited ${code}`))));
  });
}

if (require.main === module) {
  trackerBench(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`tracker benchmark failed: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
