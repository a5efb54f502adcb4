/**
 * Rollout benchmark: time from `POST /v1/rollouts` to every one of N agents (control-stream
 * clients with real certificates over mTLS, in this process) having received its fetch command,
 * and to the rollout's end. The baseline, measured in the same run, is the controller's bare
 * fan-out: the time from revoking one agent to every other agent receiving the new revocation
 * list, which the controller pushes to all streams in one loop.
 *
 * Usage: npm run bench -- rollout [--agents 1000] [--waves 100%]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateRsaKeyPair } from '@shoal/pki';
import { SimulatedControlAgent, runShoal, scratchDir, startTestFleet } from '@shoal/testing';

const RESULTS_DIR = join(__dirname, 'results');
const REDIS_DB = 14;
const TARGET_ALL_COMMANDED_MS = 5000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

export async function rolloutBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { agents: { type: 'string' }, waves: { type: 'string' } } });
  const count = Number(values.agents ?? 1000);
  const waves = values.waves ?? '100%';
  const fleet = await startTestFleet(REDIS_DB, 'rollout-bench');
  const scratch = await scratchDir('rollout-bench');
  const agents: SimulatedControlAgent[] = [];
  try {
    const content = join(scratch.path, 'app');
    await mkdir(content);
    await writeFile(join(content, 'payload.bin'), Buffer.alloc(64 * 1024, 1));
    const pkg = join(scratch.path, 'app.torrent');
    if (runShoal(['pack', content, '-o', pkg, '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status !== 0) throw new Error('pack failed');
    if (runShoal(['publish', pkg, '--name', 'app', '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]).status !== 0) throw new Error('publish failed');

    // Real enrollments (the registry is what the selector reads); one key for all, keys are slow to make.
    const key = generateRsaKeyPair(2048);
    const token = await fleet.rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: { uses: count, labels: { role: 'edge' } } });
    const enrollStarted = Date.now();
    const received = new Map<string, number>();
    const revocationsAt = new Map<string, number>();
    let rolloutStartedAt = 0;
    let revokedAt = 0;
    for (let next = 0; next < count; ) {
      const batch = Array.from({ length: Math.min(25, count - next) }, () => fleet.enroll({ key, bootstrapToken: token.body.token }));
      next += batch.length;
      for (const enrolled of await Promise.all(batch)) {
        agents.push(
          new SimulatedControlAgent(enrolled.agentId, {
            grpcAddress: fleet.controller.grpcAddress,
            caPem: fleet.caPem,
            keyPem: enrolled.keyPem,
            certPem: enrolled.certPem,
            onCommand: (command) => {
              if (command.fetch && rolloutStartedAt > 0) received.set(enrolled.agentId, Date.now() - rolloutStartedAt);
              if (command.revocations && revokedAt > 0) revocationsAt.set(enrolled.agentId, Date.now() - revokedAt);
            },
          }),
        );
      }
    }
    const enrollSeconds = (Date.now() - enrollStarted) / 1000;
    const connectStarted = Date.now();
    for (let i = 0; i < agents.length; i += 50) await Promise.all(agents.slice(i, i + 50).map((a) => a.connect()));
    const connectSeconds = (Date.now() - connectStarted) / 1000;
    console.log(`rollout bench: ${count} agents enrolled in ${enrollSeconds.toFixed(1)} s, control streams open in ${connectSeconds.toFixed(1)} s`);

    // Baseline: the controller's bare fan-out of one message to every stream.
    const victim = agents.pop() as SimulatedControlAgent;
    victim.close();
    revokedAt = Date.now();
    await fleet.rest('POST', `/v1/agents/${victim.agentId}/revoke`, { json: {} });
    await until(() => revocationsAt.size === agents.length, 30_000, 'revocation fan-out');
    const fanOutMs = Math.max(...revocationsAt.values());

    rolloutStartedAt = Date.now();
    const created = await fleet.rest<{ id: string }>('POST', '/v1/rollouts', { json: { release: 'app@1.0.0', selector: 'role=edge', waves } });
    if (!created.body.id) throw new Error(`rollout create failed: ${JSON.stringify(created.body)}`);
    const createAnsweredMs = Date.now() - rolloutStartedAt;
    await until(() => received.size === agents.length, 60_000, 'every agent commanded');
    const times = [...received.values()].sort((a, b) => a - b);
    const allCommandedMs = times.at(-1) as number;
    let finishedMs = Number.NaN;
    await until(
      async () => {
        const view = await fleet.rest<{ state: string }>('GET', `/v1/rollouts/${created.body.id}`);
        if (view.body.state === 'succeeded') finishedMs = Date.now() - rolloutStartedAt;
        return view.body.state !== 'running' && view.body.state !== 'pending';
      },
      60_000,
      'rollout to finish',
    );
    const report = {
      startedAt: new Date().toISOString(),
      machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
      plan: { agents: agents.length, waves },
      result: {
        createAnsweredMs,
        commandReceivedMs: { p50: percentile(times, 50), p90: percentile(times, 90), max: allCommandedMs },
        rolloutSucceededMs: finishedMs,
        baselineFanOutMs: fanOutMs,
        allCommandedOverFanOut: allCommandedMs / fanOutMs,
      },
      targets: { allCommandedMs: { below: TARGET_ALL_COMMANDED_MS, value: allCommandedMs, pass: allCommandedMs < TARGET_ALL_COMMANDED_MS } },
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    const text = `${JSON.stringify(report, null, 2)}\n`;
    await writeFile(join(RESULTS_DIR, `rollout-${report.startedAt.replace(/:/g, '-')}.json`), text);
    await writeFile(join(RESULTS_DIR, 'rollout-latest.json'), text);
    console.log(
      `rollout: ${agents.length} agents commanded ${allCommandedMs} ms after create (target < ${TARGET_ALL_COMMANDED_MS}; p50 ${report.result.commandReceivedMs.p50} ms), ` +
        `succeeded after ${finishedMs} ms; bare fan-out baseline ${fanOutMs} ms (ratio ${report.result.allCommandedOverFanOut.toFixed(1)})`,
    );
  } finally {
    for (const agent of agents) agent.close();
    await fleet.stop();
    await scratch.remove();
  }
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

if (require.main === module) {
  rolloutBench(process.argv.slice(2)).catch((err: unknown) => {
    console.error(`rollout benchmark failed: ${(err as Error).message}`);
    process.exitCode = 1;
  });
}
