/**
 * Tracker benchmark: announces per second and latency against one controller process with
 * Redis, the load generator in a separate process over mutual TLS. Also reports where the CPU
 * went (controller, Redis, load generator), since all three share this machine's cores.
 *
 * Usage: npm run bench -- tracker [--agents 64] [--swarms 20] [--inflight 4] [--seconds 10] [--profile DIR]
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

const RESULTS_DIR = join(__dirname, 'results');
const REDIS_DB = 14;
const TARGETS = { announcesPerSecond: 10_000, p99Ms: 20 };

interface LoadResult {
  announces: number;
  errors: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  loadGeneratorCpuSeconds: number;
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
    options: { agents: { type: 'string' }, swarms: { type: 'string' }, inflight: { type: 'string' }, seconds: { type: 'string' }, profile: { type: 'string' } },
  });
  const plan = {
    agents: Number(values.agents ?? 64),
    swarms: Number(values.swarms ?? 20),
    inflightPerAgent: Number(values.inflight ?? 4),
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
      const planFile = join(scratch.path, 'plan.json');
      await writeFile(planFile, JSON.stringify({ ...plan, address: controller.grpcAddress, caPem, agents }));
      const controllerPid = controller.process.pid as number;
      const controllerCpuBefore = processCpuSeconds(controllerPid);
      const redisCpuBefore = await redisCpuSeconds(redis);
      const load = await runLoadGenerator(planFile);
      const controllerCpu = processCpuSeconds(controllerPid) - controllerCpuBefore;
      const redisCpu = (await redisCpuSeconds(redis)) - redisCpuBefore;
      const wall = plan.warmupSeconds + load.seconds;
      const report = {
        startedAt: new Date().toISOString(),
        machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
        plan,
        result: load,
        // Over warm-up + measurement: cores each process kept busy on average.
        coresBusy: { controller: controllerCpu / wall, redis: redisCpu / wall, loadGenerator: load.loadGeneratorCpuSeconds / load.seconds },
        controllerCpuMicrosecondsPerAnnounce: (controllerCpu / wall) * 1e6 / load.perSecond,
        targets: {
          announcesPerSecond: { atLeast: TARGETS.announcesPerSecond, value: load.perSecond, pass: load.perSecond >= TARGETS.announcesPerSecond },
          p99Ms: { below: TARGETS.p99Ms, value: load.latencyMs.p99, pass: load.latencyMs.p99 < TARGETS.p99Ms },
        },
      };
      await mkdir(RESULTS_DIR, { recursive: true });
      const text = `${JSON.stringify(report, null, 2)}\n`;
      await writeFile(join(RESULTS_DIR, `tracker-${report.startedAt.replace(/:/g, '-')}.json`), text);
      await writeFile(join(RESULTS_DIR, 'tracker-latest.json'), text);
      console.log(
        `tracker: ${load.perSecond.toFixed(0)} announces/s (target >= ${TARGETS.announcesPerSecond}), ` +
          `p50 ${load.latencyMs.p50.toFixed(2)} ms, p99 ${load.latencyMs.p99.toFixed(2)} ms (target < ${TARGETS.p99Ms}), errors ${load.errors}`,
      );
      console.log(
        `cores busy: controller ${report.coresBusy.controller.toFixed(2)}, redis ${report.coresBusy.redis.toFixed(2)}, ` +
          `load generator ${report.coresBusy.loadGenerator.toFixed(2)} (of ${cpus().length}); ` +
          `controller CPU per announce ${report.controllerCpuMicrosecondsPerAnnounce.toFixed(0)} µs`,
      );
      if (load.errors > 0) throw new Error(`${load.errors} announces failed`);
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
    const child = spawn(process.execPath, [require.resolve('ts-node/dist/bin.js'), '-P', join(__dirname, '..', 'tsconfig.json'), join(__dirname, 'tracker-load.ts'), planFile], {
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
