/**
 * Load generator for tracker.bench.ts, run as its own process so the controller's CPU is its
 * own: opens one mutual-TLS channel per agent identity and keeps `inflight` announces going per
 * channel for `seconds`, then prints one JSON line with the count and latency percentiles.
 *
 * It shares the machine with the controller, so it spends as little CPU as it can: requests are
 * encoded once per swarm, and only every CHECK_EVERY-th answer is decoded and checked.
 */
const CHECK_EVERY = 100;
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { type AnnounceResponse, shoalV1 } from '@shoal/proto';

interface LoadPlan {
  address: string;
  caPem: string;
  agents: { keyPem: string; certPem: string }[];
  swarms: number;
  inflightPerAgent: number;
  warmupSeconds: number;
  seconds: number;
}

async function main(): Promise<void> {
  const plan = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as LoadPlan;
  const v1 = shoalV1();
  const clients = plan.agents.map(
    (agent) =>
      new v1.Tracker(plan.address, grpc.credentials.createSsl(Buffer.from(plan.caPem), Buffer.from(agent.keyPem), Buffer.from(agent.certPem)), {
        // One connection per identity: the tracker is keyed by the client certificate.
        'grpc.use_local_subchannel_pool': 1,
      }),
  );
  const announce = v1.Tracker.service.Announce as grpc.MethodDefinition<object, AnnounceResponse>;
  const requests = Array.from({ length: plan.swarms }, (_, i) =>
    [0, 1000].map((left) => announce.requestSerialize({ infoHash: Buffer.alloc(20, i + 1), port: 6881, addresses: ['127.0.0.1'], left, numwant: 50 })),
  );
  const raw = (bytes: Buffer) => bytes;
  const send = (client: grpc.Client, request: Buffer) =>
    new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(announce.path, raw, raw, request, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, response) =>
        err || !response ? reject(err ?? new Error('no response')) : resolve(response),
      ),
    );
  let checked = 0;
  const latenciesUs: number[] = [];
  let errors = 0;
  let measuring = false;
  let running = true;
  const worker = async (client: grpc.Client, seed: number) => {
    let i = seed;
    while (running) {
      const started = process.hrtime.bigint();
      try {
        const swarm = requests[i++ % requests.length] as Buffer[];
        const response = await send(client, swarm[i % 3 === 0 ? 0 : 1] as Buffer);
        if (measuring) latenciesUs.push(Number(process.hrtime.bigint() - started) / 1000);
        if (i % CHECK_EVERY === 0) {
          const decoded = announce.responseDeserialize(response);
          if (decoded.intervalSeconds <= 0) throw new Error('answer without an interval');
          checked++;
        }
      } catch {
        if (measuring) errors++;
      }
    }
  };
  const workers = clients.flatMap((client, a) => Array.from({ length: plan.inflightPerAgent }, (_, k) => worker(client, a * 7 + k)));
  await new Promise((r) => setTimeout(r, plan.warmupSeconds * 1000));
  measuring = true;
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, plan.seconds * 1000));
  measuring = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  running = false;
  await Promise.all(workers);
  for (const client of clients) client.close();
  latenciesUs.sort((a, b) => a - b);
  const pct = (p: number) => (latenciesUs[Math.min(latenciesUs.length - 1, Math.floor((p / 100) * latenciesUs.length))] ?? NaN) / 1000;
  process.stdout.write(
    `${JSON.stringify({
      announces: latenciesUs.length,
      errors,
      seconds: elapsed,
      perSecond: latenciesUs.length / elapsed,
      latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: pct(100) },
      loadGeneratorCpuSeconds: (cpu.user + cpu.system) / 1e6,
      answersDecodedAndChecked: checked,
    })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`load generator failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
