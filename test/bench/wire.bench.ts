/**
 * Peer-wire throughput, layer by layer: where does the agent lose throughput against a plain TLS
 * socket? Every layer moves the same package over a real mutual-TLS 1.3 connection on loopback
 * (PeerServer / connectToPeer, as the agent uses them) and is divided by a plain TLS socket
 * measured in the same run (both of its ends in this process, as in the agent benchmark):
 *
 *   plain    a TLS socket pushing 1 MiB writes (the baseline)
 *   wire     two PeerConnections joined to the socket by PeerLink; the seed serves blocks from
 *            memory, the leech keeps --depth requests outstanding and drops what it receives
 *   read     as wire, but the seed reads each block from its PackageStore (at most 8 reads at
 *            once, as the session; --read-run N reads up to N queued consecutive blocks at once)
 *   write    as wire, but the leech assembles pieces (at most 16 in flight, as the session) and
 *            hands them to a fresh PackageStore's writePiece (SHA-256 verification + write)
 *   store    read and write together
 *   session  two PackageSessions (the agent's engine: swarm core, store I/O) over the same stores
 *
 * By default the seed runs in a child process and the leech here, as two agents would
 * (--processes 1 puts both in this process: the CPU profile then shows both ends). For each layer
 * the report gives the median MiB/s and ratio over --runs runs, and for each side its event
 * loop's busy fraction and CPU seconds per GiB moved (main thread / all threads); the write and
 * store layers add the leech's writePiece latency and the time it sat with every piece slot
 * taken. On a shared 2-core machine wall-clock figures swing with other load: the CPU seconds
 * per GiB are the steadier measure of what a layer costs.
 *
 * Usage: npm run bench -- wire [--size 256MiB] [--runs 3] [--piece-length 1M]
 *        [--layers wire,read,write,store,session] [--processes 1|2] [--profile DIR]
 *        [--depth 32] [--reads 8] [--read-run 1] [--pieces 16]   (link layers; defaults: the session's)
 *        [--sync-every N]  (leech store: fsync + DURABLE journal records every N pieces)
 *        [--swarm JSON]    (session layer: swarm settings, e.g. '{"seeding":"announce-all"}')
 * (--profile writes a CPU profile of each layer's first run to DIR, one per process)
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { type EventLoopUtilization, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { PackageStore } from '@shoal/store';
import { BLOCK_SIZE, type Metainfo, createPackage, parseMetainfo, truncatedInfoHash } from '@shoal/torrent';
import type { SwarmConfig } from '@shoal/swarm';
import { type BlockRequest, PeerConnection } from '@shoal/wire';
import { scratchDir } from '@shoal/testing';
import type { WirePackage } from '../../apps/agent/src/peer/admission';
import { type AdmittedConnection, PeerServer, type TlsIdentity, connectToPeer } from '../../apps/agent/src/peer/tls';
import { PackageGeometry, PackageSession } from '../../apps/agent/src/session';
import { PeerLink, type PeerLinkHooks } from '../../apps/agent/src/session/peer-link';
import { parseSize, writeRandomFile } from './agent.bench';
import { plainTlsSeconds } from './plain-tls';

const RESULTS_DIR = join(__dirname, 'results');
const MiB = 1024 * 1024;
const FLEET = 'bench';
const LAYERS = ['plain', 'wire', 'read', 'write', 'store', 'session'] as const;
type Layer = (typeof LAYERS)[number];
/** How the seed serves: from memory, from its store, or through a PackageSession. */
type SeedMode = 'memory' | 'store' | 'session';
/** Pipeline limits of the link layers; the defaults are the session's. */
interface Knobs {
  /** Leech: block requests outstanding (capped by the seed's reqq). */
  depth: number;
  /** Seed: store reads at once. */
  reads: number;
  /** Seed: up to this many queued requests for consecutive blocks of a piece are read with one readBlock. */
  readRun: number;
  /** Leech: pieces assembled or being written at once. */
  pieces: number;
  /** Leech store: journal.syncEveryPieces (undefined: the store's default). */
  syncEvery?: number;
  /** Session layer, both ends: swarm settings over the defaults. */
  swarm: Partial<SwarmConfig>;
}
const DEFAULT_KNOBS: Knobs = { depth: 32, reads: 8, readRun: 1, pieces: 16, swarm: {} };

const SEED_MODE: Record<Exclude<Layer, 'plain'>, SeedMode> = { wire: 'memory', read: 'store', write: 'memory', store: 'store', session: 'session' };

/** What both processes need, on disk or as text (the seed child gets it as JSON). */
interface FixtureSpec {
  caPem: string;
  seed: TlsIdentity;
  leech: TlsIdentity;
  metainfoBytes: string;
  payloadPath: string;
  seedStoreRoot: string;
}

/** One side's view: the spec, parsed, with the side's open resources. */
interface Side {
  spec: FixtureSpec;
  metainfo: Metainfo;
  geometry: PackageGeometry;
  pkg: WirePackage;
}

interface SeedSide extends Side {
  store: PackageStore;
  /** The package's bytes (single file: piece i at i * pieceLength), for the memory seed. */
  payload: Buffer;
  server: PeerServer;
  mode: SeedMode;
  knobs: Knobs;
  sessions: Set<PackageSession>;
}

/** Event loop and CPU use of one process over a measured span. */
interface Load {
  /** Event loop busy fraction (1 = never idle). */
  loopBusy: number;
  /** CPU seconds (all threads: main, libuv pool, V8 GC helpers) per wall second. */
  cpu: number;
  /** CPU seconds of the main thread alone per wall second. */
  mainCpu: number;
}

/** CPU seconds the main thread has used (Linux /proc; NaN elsewhere). */
function mainThreadCpuSeconds(): number {
  try {
    const fields = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime (stat fields 14 and 15, clock ticks of 10 ms): indexes 11 and 12 once "pid (comm) " is cut off.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

interface LeechStats {
  /** writePiece latency, ms. */
  writeP50Ms?: number;
  writeMaxMs?: number;
  /** Seconds the leech had every piece slot taken and nothing outstanding: starved by the store. */
  slotStallSeconds?: number;
}

interface Sample extends LeechStats {
  seconds: number;
  leech: Load;
  seed: Load;
}

const peerIdOf = (name: string): Buffer => Buffer.from(`-SH0100-${name}`.padEnd(20, '-').slice(0, 20), 'latin1');
const clock = (): number => performance.now();

function sideOf(spec: FixtureSpec): Side {
  const metainfo = parseMetainfo(Buffer.from(spec.metainfoBytes, 'base64'));
  return { spec, metainfo, geometry: new PackageGeometry(metainfo), pkg: { name: 'bench', infoHash: metainfo.infoHash } };
}

// ------------------------------------------------------------------ load and profiles

class LoadMeter {
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private cpu = process.cpuUsage();
  private mainCpu = mainThreadCpuSeconds();
  private started = process.hrtime.bigint();
  private profiler: Session | undefined;

  async start(profilePath: string | undefined): Promise<void> {
    if (profilePath) {
      this.profiler = new Session();
      this.profiler.connect();
      await post(this.profiler, 'Profiler.enable');
      await post(this.profiler, 'Profiler.start');
    }
    this.elu = performance.eventLoopUtilization();
    this.cpu = process.cpuUsage();
    this.mainCpu = mainThreadCpuSeconds();
    this.started = process.hrtime.bigint();
  }

  async stop(profilePath: string | undefined): Promise<Load> {
    const seconds = Number(process.hrtime.bigint() - this.started) / 1e9;
    const used = process.cpuUsage(this.cpu);
    const load = {
      loopBusy: performance.eventLoopUtilization(this.elu).utilization,
      cpu: (used.user + used.system) / 1e6 / seconds,
      mainCpu: (mainThreadCpuSeconds() - this.mainCpu) / seconds,
    };
    if (this.profiler && profilePath) {
      const { profile } = (await post(this.profiler, 'Profiler.stop')) as { profile: unknown };
      await writeFile(profilePath, JSON.stringify(profile));
      this.profiler.disconnect();
      this.profiler = undefined;
    }
    return load;
  }
}

function post(session: Session, method: string): Promise<unknown> {
  return new Promise((resolve, reject) => session.post(method, (err, result) => (err ? reject(err) : resolve(result))));
}

// ------------------------------------------------------------------ the seed

function connection(side: Side, role: 'initiator' | 'acceptor', have: 'all' | 'none'): PeerConnection {
  return new PeerConnection({
    infoHash20: truncatedInfoHash(side.metainfo.infoHash),
    localPeerId: peerIdOf(role),
    numPieces: side.geometry.numPieces,
    pieceLength: side.geometry.pieceLength,
    totalLength: side.geometry.wireTotalLength,
    role,
    now: clock(),
    have,
  });
}

/** Unchokes on interest and serves every request, from memory or from the store. */
function serveLink(seed: SeedSide, socket: AdmittedConnection['socket'], fromStore: boolean): void {
  const { reads: maxReads, readRun } = seed.knobs;
  const serveQueue: BlockRequest[] = [];
  let reads = 0;
  const serve = (link: PeerLink): void => {
    while (!link.closed && !link.congested && serveQueue.length > 0 && (!fromStore || reads < maxReads)) {
      const r = serveQueue.shift() as BlockRequest;
      if (!fromStore) {
        const at = r.index * seed.geometry.pieceLength + r.begin;
        link.conn.piece(r.index, r.begin, seed.payload.subarray(at, at + r.length), clock());
        continue;
      }
      // The queued requests that continue this one in the same piece join its read.
      const run = [r];
      let end = r.begin + r.length;
      while (run.length < readRun && serveQueue[0]?.index === r.index && serveQueue[0].begin === end) {
        const next = serveQueue.shift() as BlockRequest;
        run.push(next);
        end += next.length;
      }
      reads++;
      seed.store.readBlock(r.index, r.begin, end - r.begin).then(
        (data) => {
          reads--;
          for (const q of run) link.conn.piece(q.index, q.begin, data.subarray(q.begin - r.begin, q.begin - r.begin + q.length), clock());
          link.flush();
          serve(link);
        },
        (err: unknown) => link.socket.destroy(err as Error),
      );
    }
    link.flush();
  };
  const hooks: PeerLinkHooks = {
    event: (link, e) => {
      if (e.type !== 'message') return;
      if (e.message.type === 'interested') link.conn.unchoke(clock());
      if (e.message.type === 'request') {
        serveQueue.push({ index: e.message.index, begin: e.message.begin, length: e.message.length });
        // Served once the chunk's other requests are queued too, so runs can form.
        if (serveQueue.length === 1) queueMicrotask(() => serve(link));
      }
    },
    writable: (link) => serve(link),
  };
  new PeerLink(1, 'leech', socket, connection(seed, 'acceptor', 'all'), clock, hooks).start();
}

async function openSeed(spec: FixtureSpec): Promise<SeedSide> {
  const side = sideOf(spec);
  const store = await PackageStore.open({ root: spec.seedStoreRoot, metainfo: side.metainfo });
  const server = new PeerServer({
    identity: spec.seed,
    fleet: FLEET,
    packageFor: (hex) => (hex === truncatedInfoHash(side.metainfo.infoHash).toString('hex') ? side.pkg : undefined),
    isRevoked: () => false,
  });
  const seed: SeedSide = { ...side, store, payload: await readFile(spec.payloadPath), server, mode: 'memory', knobs: DEFAULT_KNOBS, sessions: new Set() };
  server.on('connection', (c: AdmittedConnection) => {
    if (seed.mode !== 'session') return serveLink(seed, c.socket, seed.mode === 'store');
    const session = new PackageSession({ metainfo: seed.metainfo, store, peerId: peerIdOf('seed'), swarm: seed.knobs.swarm });
    seed.sessions.add(session);
    session.attach(c.socket, 'acceptor', c.peer.agentId);
  });
  return seed;
}

/** Readies the seed for the next layer: how to serve, with which knobs; sessions of earlier layers closed. */
async function beginSeed(seed: SeedSide, mode: SeedMode, knobs: Knobs): Promise<void> {
  await Promise.all([...seed.sessions].map((s) => s.close()));
  seed.sessions.clear();
  seed.mode = mode;
  seed.knobs = knobs;
}

async function closeSeed(seed: SeedSide): Promise<void> {
  await Promise.all([...seed.sessions].map((s) => s.close()));
  await seed.server.close();
  await seed.store.close();
}

/** The seed's side of one layer, wherever it runs. */
interface SeedHandle {
  port: number;
  begin(mode: SeedMode, knobs: Knobs, profilePath: string | undefined): Promise<void>;
  end(profilePath: string | undefined): Promise<Load>;
  close(): Promise<void>;
}

async function localSeed(spec: FixtureSpec): Promise<SeedHandle> {
  const seed = await openSeed(spec);
  const { port } = await seed.server.listen(0, '127.0.0.1');
  return {
    port,
    begin: (mode, knobs) => beginSeed(seed, mode, knobs),
    // Both ends share this process: its load is the leech's.
    end: async () => ({ loopBusy: NaN, cpu: NaN, mainCpu: NaN }),
    close: async () => {
      for (const c of seed.server.connections()) c.socket.destroy();
      await closeSeed(seed);
    },
  };
}

type SeedRequest = { op: 'begin'; mode: SeedMode; knobs: Knobs; profilePath?: string } | { op: 'end'; profilePath?: string } | { op: 'close' };

/** The seed in a child process (this file, run by ts-node), driven over IPC. */
async function childSeed(spec: FixtureSpec): Promise<SeedHandle> {
  const child: ChildProcess = fork(join(__dirname, 'wire-seed.ts'), [], {
    execArgv: ['-r', 'ts-node/register'],
    env: { ...process.env, TS_NODE_PROJECT: join(__dirname, '..', 'tsconfig.json') },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const replies: ((value: unknown) => void)[] = [];
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`seed process exited (${code})`))));
  exited.catch(() => undefined);
  child.on('message', (m) => replies.shift()?.(m));
  const ask = (request: SeedRequest | { op: 'open'; spec: FixtureSpec }): Promise<unknown> =>
    Promise.race([new Promise((resolve) => replies.push(resolve) && child.send(request)), exited]);
  const { port } = (await ask({ op: 'open', spec })) as { port: number };
  return {
    port,
    begin: async (mode, knobs, profilePath) => void (await ask({ op: 'begin', mode, knobs, ...(profilePath ? { profilePath } : {}) })),
    end: async (profilePath) => (await ask({ op: 'end', ...(profilePath ? { profilePath } : {}) })) as Load,
    close: async () => {
      await ask({ op: 'close' });
      child.disconnect();
    },
  };
}

/** Entry point of the seed child process (wire-seed.ts). */
export function seedChildMain(): void {
  let seed: SeedSide | undefined;
  const meter = new LoadMeter();
  process.on('message', (m: SeedRequest | { op: 'open'; spec: FixtureSpec }) => {
    const reply = (value: unknown): void => void process.send?.(value ?? {});
    const handle = async (): Promise<unknown> => {
      switch (m.op) {
        case 'open':
          seed = await openSeed(m.spec);
          return { port: (await seed.server.listen(0, '127.0.0.1')).port };
        case 'begin':
          await beginSeed(seed as SeedSide, m.mode, m.knobs);
          await meter.start(m.profilePath);
          return {};
        case 'end':
          return meter.stop(m.profilePath);
        case 'close':
          if (seed) await closeSeed(seed);
          return {};
      }
    };
    handle().then(reply, (err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  });
}

// ------------------------------------------------------------------ the leech

/** Dials the seed and returns the admitted socket. */
function dial(side: Side, port: number): Promise<AdmittedConnection> {
  return connectToPeer({ host: '127.0.0.1', port, pkg: side.pkg, identity: side.spec.leech, fleet: FLEET, isRevoked: () => false });
}

/**
 * A minimal leech on a PeerLink: requests blocks in order, `depth` outstanding, topped up in
 * batches as the session does. With a store it assembles pieces (at most `pieces`, those being
 * written included) and writes each whole piece with writePiece; without, it drops the blocks.
 */
async function linkLeech(side: Side, port: number, knobs: Knobs, store: PackageStore | undefined): Promise<LeechStats> {
  const admitted = await dial(side, port);
  const g = side.geometry;
  const writeMs: number[] = [];
  let stallSince: number | undefined;
  let stalled = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let outstanding = 0;
      let nextPiece = 0;
      let nextBlock = 0;
      let piecesInFlight = 0;
      let piecesDone = 0;
      const buffers = new Map<number, { data: Buffer; missing: number }>();
      const fill = (link: PeerLink): void => {
        const now = clock();
        const depth = Math.min(knobs.depth, link.conn.peerRequestQueueLimit);
        // As the session: top up once a quarter of the queue is free, several requests per write.
        if (depth - outstanding < Math.max(1, depth >> 2) && outstanding > 0) return;
        while (outstanding < depth && nextPiece < g.numPieces) {
          if (nextBlock === 0 && store) {
            if (piecesInFlight >= knobs.pieces) break;
            piecesInFlight++;
            buffers.set(nextPiece, { data: Buffer.allocUnsafe(g.pieceSize(nextPiece)), missing: g.space.blockCount(nextPiece) });
          }
          link.conn.request({ index: nextPiece, begin: nextBlock * BLOCK_SIZE, length: g.space.blockLength(nextPiece, nextBlock) }, now);
          outstanding++;
          if (++nextBlock === g.space.blockCount(nextPiece)) {
            nextBlock = 0;
            nextPiece++;
          }
        }
        if (outstanding === 0 && nextPiece < g.numPieces) stallSince ??= now;
        link.flush();
      };
      const pieceDone = (link: PeerLink): void => {
        piecesDone++;
        if (stallSince !== undefined) {
          stalled += clock() - stallSince;
          stallSince = undefined;
        }
        if (piecesDone === g.numPieces) resolve();
        else fill(link);
      };
      const write = (link: PeerLink, index: number, data: Buffer): void => {
        const started = clock();
        (store as PackageStore).writePiece(index, data).then((verdict) => {
          if (verdict !== 'verified') return reject(new Error(`piece ${index} ${verdict}`));
          writeMs.push(clock() - started);
          piecesInFlight--;
          pieceDone(link);
        }, reject);
      };
      const hooks: PeerLinkHooks = {
        event: (link, e) => {
          if (e.type === 'closed') {
            if (piecesDone < g.numPieces) reject(e.reason);
            return;
          }
          if (e.type !== 'message') return;
          const m = e.message;
          if (m.type === 'have-all' || m.type === 'bitfield') link.conn.interested(clock());
          if (m.type === 'unchoke') fill(link);
          if (m.type === 'reject') reject(new Error(`the seed rejected ${m.index}@${m.begin}`));
          if (m.type !== 'piece') return;
          outstanding--;
          if (!store) {
            if (m.begin + m.block.length === g.pieceSize(m.index)) pieceDone(link);
          } else {
            const piece = buffers.get(m.index) as { data: Buffer; missing: number };
            m.block.copy(piece.data, m.begin);
            if (--piece.missing === 0) {
              buffers.delete(m.index);
              write(link, m.index, piece.data);
            }
          }
          fill(link);
        },
        writable: () => undefined,
      };
      new PeerLink(2, 'seed', admitted.socket, connection(side, 'initiator', 'none'), clock, hooks).start();
    });
  } finally {
    admitted.socket.destroy();
  }
  if (!store) return {};
  const sorted = writeMs.sort((a, b) => a - b);
  return { writeP50Ms: sorted[sorted.length >> 1], writeMaxMs: sorted[sorted.length - 1], slotStallSeconds: stalled / 1000 };
}

async function sessionLeech(side: Side, port: number, store: PackageStore, swarm: Partial<SwarmConfig>): Promise<void> {
  const leech = new PackageSession({ metainfo: side.metainfo, store, peerId: peerIdOf('leech'), swarm });
  const failed = new Promise<never>((_, reject) => {
    leech.on('session-error', reject);
    leech.on('store-error', reject);
  });
  const complete = new Promise<void>((resolve) => leech.once('complete', resolve));
  try {
    const admitted = await dial(side, port);
    leech.attach(admitted.socket, 'initiator', admitted.peer.agentId);
    await Promise.race([complete, failed]);
  } finally {
    await leech.close();
  }
}

// ------------------------------------------------------------------ the runs

async function setUp(size: number, pieceLength: number | undefined, scratch: string): Promise<{ spec: FixtureSpec; plainServer: { keyPem: string; certPem: string } }> {
  const material = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
  const ca = CertificateAuthority.load(material.certPem, material.keyPem);
  const identity = (agentId: string): TlsIdentity => {
    const key = generateRsaKeyPair();
    const issued = ca.issueAgentCertificate({ agentId, publicKeyPem: key.publicKeyPem, packageScopes: ['*'], now: new Date() });
    return { keyPem: key.keyPem, certPem: issued.certPem, caPem: material.certPem };
  };
  const serverKey = generateRsaKeyPair();
  const serverCert = ca.issueControllerCertificate({ dnsNames: ['localhost'], ipAddresses: [], publicKeyPem: serverKey.publicKeyPem, now: new Date() });

  const release = join(scratch, 'release');
  mkdirSync(release);
  const payloadPath = join(release, 'payload.bin');
  writeRandomFile(payloadPath, size);
  const { bytes, metainfo } = await createPackage(release, { sslCert: material.certPem, ...(pieceLength ? { pieceLength } : {}) });
  const seedStoreRoot = join(scratch, 'seed');
  const store = await PackageStore.open({ root: seedStoreRoot, metainfo });
  const file = await open(payloadPath, 'r');
  try {
    const piece = Buffer.allocUnsafe(metainfo.pieceLength);
    for (let i = 0; i < metainfo.numPieces; i++) {
      const { bytesRead } = await file.read(piece, 0, metainfo.pieceLength, i * metainfo.pieceLength);
      if ((await store.writePiece(i, piece.subarray(0, bytesRead))) !== 'verified') throw new Error(`piece ${i} does not verify`);
    }
    await store.finish();
  } finally {
    await file.close();
    await store.close();
  }
  return {
    spec: { caPem: material.certPem, seed: identity('seed'), leech: identity('leech'), metainfoBytes: bytes.toString('base64'), payloadPath, seedStoreRoot },
    plainServer: { keyPem: serverKey.keyPem, certPem: serverCert.certPem },
  };
}

interface RunContext {
  side: Side;
  seed: SeedHandle;
  scratch: string;
  knobs: Knobs;
  profileDir: string | undefined;
}

async function runLayer(ctx: RunContext, layer: Exclude<Layer, 'plain'>, run: number): Promise<Sample> {
  const profile = (who: string): string | undefined => (ctx.profileDir && run === 0 ? join(ctx.profileDir, `wire-${layer}-${who}.cpuprofile`) : undefined);
  const root = join(ctx.scratch, `leech-${layer}-${run}`);
  const journal = ctx.knobs.syncEvery === undefined ? {} : { journal: { syncEveryPieces: ctx.knobs.syncEvery } };
  const store = layer === 'write' || layer === 'store' || layer === 'session' ? await PackageStore.open({ root, metainfo: ctx.side.metainfo, ...journal }) : undefined;
  const meter = new LoadMeter();
  try {
    await ctx.seed.begin(SEED_MODE[layer], ctx.knobs, profile('seed'));
    await meter.start(profile('leech'));
    const started = process.hrtime.bigint();
    const stats = layer === 'session' ? (await sessionLeech(ctx.side, ctx.seed.port, store as PackageStore, ctx.knobs.swarm), {}) : await linkLeech(ctx.side, ctx.seed.port, ctx.knobs, store);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const leech = await meter.stop(profile('leech'));
    const seed = await ctx.seed.end(profile('seed'));
    return { seconds, leech, seed, ...stats };
  } finally {
    await store?.close();
    await rm(root, { recursive: true, force: true });
  }
}

const median = (values: number[]): number => {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** Loop busy fraction, and CPU seconds per GiB moved: main thread / all threads. */
function describeLoad(load: Load, seconds: number, size: number): string {
  if (Number.isNaN(load.loopBusy)) return '(in this process)';
  const perGiB = (perSecond: number): string => ((perSecond * seconds) / (size / (1024 * MiB))).toFixed(1);
  return `loop ${(load.loopBusy * 100).toFixed(0).padStart(3)}% cpu/GiB ${perGiB(load.mainCpu)}/${perGiB(load.cpu)} s`;
}

export async function wireBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      size: { type: 'string' },
      runs: { type: 'string' },
      depth: { type: 'string' },
      reads: { type: 'string' },
      'read-run': { type: 'string' },
      'sync-every': { type: 'string' },
      swarm: { type: 'string' },
      pieces: { type: 'string' },
      'piece-length': { type: 'string' },
      layers: { type: 'string' },
      processes: { type: 'string' },
      profile: { type: 'string' },
    },
  });
  const size = parseSize(values.size ?? '256MiB');
  const runs = Number(values.runs ?? 3);
  const knobs: Knobs = {
    depth: Number(values.depth ?? DEFAULT_KNOBS.depth),
    reads: Number(values.reads ?? DEFAULT_KNOBS.reads),
    readRun: Number(values['read-run'] ?? DEFAULT_KNOBS.readRun),
    ...(values['sync-every'] ? { syncEvery: Number(values['sync-every']) } : {}),
    swarm: values.swarm ? (JSON.parse(values.swarm) as Partial<SwarmConfig>) : {},
    pieces: Number(values.pieces ?? DEFAULT_KNOBS.pieces),
  };
  const processes = Number(values.processes ?? 2);
  const layers = (values.layers ?? 'wire,read,write,store,session').split(',').filter((l) => l !== 'plain') as Exclude<Layer, 'plain'>[];
  for (const layer of layers) if (!LAYERS.includes(layer)) throw new Error(`unknown layer "${layer}"; known: ${LAYERS.join(', ')}`);
  if (processes !== 1 && processes !== 2) throw new Error('--processes is 1 or 2');
  if (values.profile) await mkdir(values.profile, { recursive: true });

  const scratch = await scratchDir('wire-bench');
  let seed: SeedHandle | undefined;
  try {
    const { spec, plainServer } = await setUp(size, values['piece-length'] ? parseSize(values['piece-length']) : undefined, scratch.path);
    const side = sideOf(spec);
    seed = processes === 2 ? await childSeed(spec) : await localSeed(spec);
    const ctx: RunContext = { side, seed, scratch: scratch.path, knobs, profileDir: values.profile };
    const plain: number[] = [];
    const samples = new Map(layers.map((l) => [l, [] as Sample[]]));
    const ratios = new Map(layers.map((l) => [l, [] as number[]]));
    for (let run = 0; run < runs; run++) {
      const plainSeconds = await plainTlsSeconds(side.geometry.space.totalBytes, spec.caPem, plainServer);
      plain.push(plainSeconds);
      console.log(`  run ${run + 1} plain   ${(size / MiB / plainSeconds).toFixed(0).padStart(5)} MiB/s`);
      for (const layer of layers) {
        const s = await runLayer(ctx, layer, run);
        samples.get(layer)?.push(s);
        ratios.get(layer)?.push(plainSeconds / s.seconds);
        const writes = s.writeP50Ms === undefined ? '' : `  writePiece p50 ${s.writeP50Ms.toFixed(1)} max ${s.writeMaxMs?.toFixed(0)} ms, slots full ${s.slotStallSeconds?.toFixed(2)} s`;
        console.log(
          `  run ${run + 1} ${layer.padEnd(7)} ${(size / MiB / s.seconds).toFixed(0).padStart(5)} MiB/s  ratio ${(plainSeconds / s.seconds).toFixed(2)}  ` +
            `leech ${describeLoad(s.leech, s.seconds, size)}  seed ${describeLoad(s.seed, s.seconds, size)}${writes}`,
        );
      }
    }

    const summary = Object.fromEntries(
      layers.map((layer) => {
        const s = samples.get(layer) as Sample[];
        return [
          layer,
          {
            MiBps: median(s.map((x) => size / MiB / x.seconds)),
            ratioVsPlainTls: median(ratios.get(layer) as number[]),
            leechLoopBusy: median(s.map((x) => x.leech.loopBusy)),
            leechCpuSecondsPerGiB: median(s.map((x) => (x.leech.cpu * x.seconds * 1024 * MiB) / size)),
            leechMainCpuSecondsPerGiB: median(s.map((x) => (x.leech.mainCpu * x.seconds * 1024 * MiB) / size)),
            seedLoopBusy: median(s.map((x) => x.seed.loopBusy)),
            seedCpuSecondsPerGiB: median(s.map((x) => (x.seed.cpu * x.seconds * 1024 * MiB) / size)),
            seedMainCpuSecondsPerGiB: median(s.map((x) => (x.seed.mainCpu * x.seconds * 1024 * MiB) / size)),
            runs: s,
          },
        ];
      }),
    );
    const report = {
      startedAt: new Date().toISOString(),
      machine: { cpuModel: cpus()[0]?.model ?? 'unknown', cpuCount: cpus().length, node: process.version },
      sizeMiB: size / MiB,
      pieceLength: side.metainfo.pieceLength,
      knobs,
      processes,
      note: 'medians over runs; ratio = plain TLS seconds / layer seconds, plain measured at the start of the same run',
      plainTls: { MiBps: median(plain.map((x) => size / MiB / x)), runs: plain },
      layers: summary,
    };
    await mkdir(RESULTS_DIR, { recursive: true });
    const text = `${JSON.stringify(report, null, 2)}\n`;
    await writeFile(join(RESULTS_DIR, `wire-${report.startedAt.replace(/:/g, '-')}.json`), text);
    await writeFile(join(RESULTS_DIR, 'wire-latest.json'), text);
    console.log(
      `wire (${report.sizeMiB} MiB, ${JSON.stringify(knobs)}, ${processes} process${processes === 2 ? 'es' : ''}, medians of ${runs}): plain ${report.plainTls.MiBps.toFixed(0)} MiB/s; ` +
        layers.map((l) => `${l} ${summary[l]?.MiBps.toFixed(0)} MiB/s (${summary[l]?.ratioVsPlainTls.toFixed(2)})`).join(', '),
    );
  } finally {
    await seed?.close();
    await scratch.remove();
  }
}
