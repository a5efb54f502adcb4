/**
 * Load generator for the tracker benchmark (test/bench/tracker.bench.ts), run as its own process
 * so the controller's CPU is its own; compiled with this library so that it runs on plain Node
 * (ts-node's compiler in the heap made its major GCs stall answers for 30-50 ms). It opens one mutual-TLS HTTP/2 connection per agent identity and speaks gRPC on it
 * directly (node:http2: headers, a 5-byte length prefix, the message, trailers with
 * grpc-status). It shares the machine's two cores with the controller and Redis, and grpc-js's
 * client spent about 120 µs of CPU per call, more than the controller it was measuring; a bare
 * HTTP/2 request costs a fraction of that. Requests are encoded once per swarm, and only every
 * CHECK_EVERY-th answer is decoded and checked.
 *
 * Two phases, each after its own warm-up:
 *  - saturation: `inflight` announces kept going per connection (closed loop): the most
 *    announces per second the controller answers;
 *  - latency at a fixed rate: announces due on a schedule of `rate` per second whatever the
 *    answers do (open loop, as a fleet announces), each latency measured from the time it was
 *    due, so a stall is charged to every announce it delayed (no coordinated omission).
 * It prints one JSON line with both.
 */
import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as tls from 'node:tls';
import { type AnnounceResponse, type AnnounceStreamResponse, shoalV1 } from '@shoal/proto';
import type * as grpc from '@grpc/grpc-js';

const CHECK_EVERY = 100;
const ANNOUNCE_PATH = '/shoal.v1.Tracker/Announce';
const ANNOUNCE_STREAM_PATH = '/shoal.v1.Tracker/AnnounceStream';
const TICK_MS = 1;

interface LoadPlan {
  address: string;
  caPem: string;
  agents: { keyPem: string; certPem: string }[];
  swarms: number;
  inflightPerAgent: number;
  warmupSeconds: number;
  seconds: number;
  rate: number;
  /** 'stream': announces as messages on Tracker.AnnounceStream (what agents use); 'unary': one Announce call each. */
  method: 'stream' | 'unary';
}

export interface PhaseResult {
  announces: number;
  errors: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  loadGeneratorCpuSeconds: number;
}

class Recorder {
  latenciesUs: number[] = [];
  errors = 0;
  measuring = false;
  private cpuBefore = process.cpuUsage();
  private startedAt = 0n;

  start(): void {
    this.measuring = true;
    this.cpuBefore = process.cpuUsage();
    this.startedAt = process.hrtime.bigint();
  }

  finish(): PhaseResult {
    this.measuring = false;
    const seconds = Number(process.hrtime.bigint() - this.startedAt) / 1e9;
    const cpu = process.cpuUsage(this.cpuBefore);
    const sorted = Float64Array.from(this.latenciesUs).sort();
    const pct = (p: number) => (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN) / 1000;
    return {
      announces: sorted.length,
      errors: this.errors,
      seconds,
      perSecond: sorted.length / seconds,
      latencyMs: { p50: pct(50), p90: pct(90), p99: pct(99), max: pct(100) },
      loadGeneratorCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  }
}

/** One way of carrying announces over a connection; resolves when an OK answer comes back. */
type Announcer = () => Promise<void>;

/** A unary Announce call per announce: a new HTTP/2 stream, headers, message, trailers. */
function unaryAnnouncer(session: http2.ClientHttp2Session, nextFrame: () => Buffer, check: (answer: Buffer) => void): Announcer {
  return () =>
    new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': ANNOUNCE_PATH, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
      const chunks: Buffer[] = [];
      let status: string | undefined;
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('trailers', (trailers) => (status = String(trailers['grpc-status'])));
      stream.on('error', reject);
      stream.on('close', () => {
        if (status !== '0') return reject(new Error(`grpc-status ${status ?? 'missing'}`));
        check((chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)).subarray(5));
        resolve();
      });
      stream.end(nextFrame());
    });
}

/**
 * Announces as messages on one AnnounceStream per connection (what agents do), matched to their
 * answers by id. Each answer's id and status are read by walking its top-level fields; the
 * whole answer is decoded only when `check` wants it.
 */
function streamAnnouncer(session: http2.ClientHttp2Session, nextAnnounce: () => Buffer, check: (answer: Buffer) => void): Announcer {
  const stream = session.request({ ':method': 'POST', ':path': ANNOUNCE_STREAM_PATH, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
  const waiting = new Map<number, { resolve(): void; reject(err: Error): void }>();
  let nextId = 1;
  let buffered: Buffer = Buffer.alloc(0);
  const failAll = (err: Error) => {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  stream.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5) {
      const length = buffered.readUInt32BE(1);
      if (buffered.length < 5 + length) break;
      const answer = buffered.subarray(5, 5 + length);
      buffered = buffered.subarray(5 + length);
      const { id, status } = scanIdAndStatus(answer);
      const w = waiting.get(id);
      if (!w) continue;
      waiting.delete(id);
      if (status !== 0) w.reject(new Error(`announce status ${status}`));
      else {
        check(answer);
        w.resolve();
      }
    }
  });
  stream.on('error', failAll);
  stream.on('close', () => failAll(new Error('announce stream closed')));
  return () =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      stream.write(streamFrame(id, nextAnnounce()));
    });
}

/** AnnounceStreamRequest {id = 1, announce = 2} around an encoded AnnounceRequest, gRPC-framed. */
function streamFrame(id: number, announce: Buffer): Buffer {
  const head = [0x08, ...varint(id), 0x12, ...varint(announce.length)];
  const frame = Buffer.allocUnsafe(5 + head.length + announce.length);
  frame[0] = 0;
  frame.writeUInt32BE(head.length + announce.length, 1);
  frame.set(head, 5);
  announce.copy(frame, 5 + head.length);
  return frame;
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  for (; value > 0x7f; value = Math.floor(value / 128)) bytes.push((value % 128) | 0x80);
  bytes.push(value);
  return bytes;
}

/** Fields 1 (id) and 3 (status) of an AnnounceStreamResponse, skipping the others. */
function scanIdAndStatus(message: Buffer): { id: number; status: number } {
  let offset = 0;
  const read = (): number => {
    let value = 0;
    for (let shift = 1; ; shift *= 128) {
      const byte = message[offset++];
      if (byte === undefined) throw new Error('truncated answer');
      value += (byte & 0x7f) * shift;
      if (byte < 0x80) return value;
    }
  };
  let id = 0;
  let status = 0;
  while (offset < message.length) {
    const key = read();
    if ((key & 7) === 0) {
      const value = read();
      if (key >> 3 === 1) id = value;
      if (key >> 3 === 3) status = value;
    } else if ((key & 7) === 2) {
      const length = read();
      offset += length;
    }
    else throw new Error(`unexpected wire type in answer: ${key & 7}`);
  }
  return { id, status };
}

async function main(): Promise<void> {
  const plan = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as LoadPlan;
  const service = shoalV1().Tracker.service;
  const announce = service.Announce as grpc.MethodDefinition<object, AnnounceResponse>;
  const streamAnswer = service.AnnounceStream as grpc.MethodDefinition<object, AnnounceStreamResponse>;
  const requests = Array.from({ length: plan.swarms }, (_, i) =>
    [0, 1000].map((left) => announce.requestSerialize({ infoHash: Buffer.alloc(20, i + 1), port: 6881, addresses: ['127.0.0.1'], left, numwant: 50 })),
  );
  const frames = requests.map((swarm) => swarm.map(grpcFrame));
  const sessions = await Promise.all(plan.agents.map((agent) => connect(plan, agent)));
  let checked = 0;
  let sent = 0;
  let answered = 0;
  /** Swarms in turn; a third of the announces from seeds. */
  const pick = <T>(bySwarm: T[][]): T => {
    const swarm = bySwarm[sent++ % bySwarm.length] as T[];
    return swarm[sent % 3 === 0 ? 0 : 1] as T;
  };
  const check = (answer: Buffer) => {
    if (answered % CHECK_EVERY !== 0) return;
    const decoded = plan.method === 'stream' ? streamAnswer.responseDeserialize(answer).announce : announce.responseDeserialize(answer);
    if (!decoded || decoded.intervalSeconds <= 0) throw new Error('answer without an interval');
    checked++;
  };
  const announcers: Announcer[] = sessions.map((session) =>
    plan.method === 'stream' ? streamAnnouncer(session, () => pick(requests), check) : unaryAnnouncer(session, () => pick(frames), check),
  );
  const timed = async (send: Announcer, since: bigint, recorder: Recorder) => {
    try {
      await send();
      answered++;
      if (recorder.measuring) recorder.latenciesUs.push(Number(process.hrtime.bigint() - since) / 1000);
    } catch {
      if (recorder.measuring) recorder.errors++;
    }
  };

  // Saturation: a closed loop per connection.
  const saturation = new Recorder();
  let running = true;
  const workers = announcers.flatMap((send) =>
    Array.from({ length: plan.inflightPerAgent }, async () => {
      while (running) await timed(send, process.hrtime.bigint(), saturation);
    }),
  );
  await sleep(plan.warmupSeconds * 1000);
  saturation.start();
  await sleep(plan.seconds * 1000);
  const saturationResult = saturation.finish();
  running = false;
  await Promise.all(workers);

  // Latency at a fixed rate: announces fall due every 1/rate s and are sent at once, up to as
  // many in flight as the saturation phase had; past that they wait here (not in the
  // controller's memory), and their latency still counts from when they were due.
  const atRate = new Recorder();
  const limit = sessions.length * plan.inflightPerAgent;
  const waiting: bigint[] = [];
  const pending = new Set<Promise<void>>();
  const startedAt = process.hrtime.bigint();
  const intervalNs = BigInt(Math.round(1e9 / plan.rate));
  let due = 0n;
  let next = 0;
  const launch = () => {
    while (pending.size < limit && waiting.length > 0) {
      const send = announcers[next++ % announcers.length] as Announcer;
      const p: Promise<void> = timed(send, waiting.shift() as bigint, atRate).finally(() => {
        pending.delete(p);
        launch();
      });
      pending.add(p);
    }
  };
  const ticker = setInterval(() => {
    const now = process.hrtime.bigint() - startedAt;
    for (; due <= now; due += intervalNs) waiting.push(startedAt + due);
    launch();
  }, TICK_MS);
  await sleep(plan.warmupSeconds * 1000);
  atRate.start();
  await sleep(plan.seconds * 1000);
  const atRateResult = atRate.finish();
  clearInterval(ticker);
  waiting.length = 0;
  while (pending.size > 0) await Promise.all(pending);

  // destroy, not close: close would wait for the announce streams, which never end by themselves.
  for (const session of sessions) session.destroy();
  process.stdout.write(`${JSON.stringify({ saturation: saturationResult, atRate: { ...atRateResult, offeredPerSecond: plan.rate }, answered, answersDecodedAndChecked: checked })}\n`);
}

/** A gRPC length-prefixed message: flag 0 (not compressed), 4-byte big-endian length, bytes. */
function grpcFrame(message: Buffer): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

function connect(plan: LoadPlan, agent: { keyPem: string; certPem: string }): Promise<http2.ClientHttp2Session> {
  const [host, port] = [plan.address.slice(0, plan.address.lastIndexOf(':')), Number(plan.address.slice(plan.address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://${plan.address}`, {
      peerMaxConcurrentStreams: 1000,
      createConnection: () => {
        const socket = tls.connect({ host, port, ca: plan.caPem, key: agent.keyPem, cert: agent.certPem, ALPNProtocols: ['h2'] });
        // Nagle off, as the controller does: a request's headers and message are separate writes.
        socket.setNoDelay(true);
        return socket;
      },
    });
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

main().catch((err: unknown) => {
  process.stderr.write(`load generator failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
