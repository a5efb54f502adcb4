/**
 * One swarm scenario in the lab, measured: a seeding host (or the origin alone) and N downloaders
 * with shaped uplinks; every downloader is told to start at the same moment and the run ends when
 * the last one holds a verified copy. The swarm is made of one client's processes, one per lab
 * host: Shoal agents (here) or libtorrent peers (libtorrent-run.ts); both run next to the same
 * infrastructure (controller, Redis, the webseed origin: shoal-lab.ts) and are measured by the
 * same code. Bytes come from interface counters (not from the clients), completion times from the
 * clients' own reports (Shoal's "package complete and verified" log line, pino `time`; libtorrent's
 * finished alert; same machine clock), CPU from /proc. Every copy is checked with `shoal verify`,
 * and the lab is always torn down; the result says whether anything of it was left behind.
 *
 * The lower bound is the classic one for distributing a file of F bits from a source of upload
 * u_s to N peers with uploads u_i and downloads d_i:
 *   T* = max(F / u_s, F / d_min, N·F / (u_s + Σ u_i))
 * and efficiency is T* / T_last. With only the origin (scenario d) the origin's shaped uplink is
 * u_s. Link-layer overhead is not in T*: TCP/IP + Ethernet headers carry at most 1448 payload
 * bytes per 1514 on the wire (and TLS records plus piece headers cost a little more), so a perfect
 * swarm scores about `LINK_PAYLOAD_CEILING`, not 1.
 */
import { cpus } from 'node:os';
import { type Lab, type LabHost, type LabProcess, createLab, formatRate, listNamespaces, machineCpuSeconds } from './lab';
import { type LabAgent, type LabRelease, REST_PORT, type ShoalLab, sleep, startShoalLab } from './shoal-lab';

const MiB = 1024 * 1024;
/** Payload share of a full-sized TCP segment (MSS 1448 with timestamps, 1514-byte frame) times TLS + piece framing of a 16 KiB block. */
export const LINK_PAYLOAD_CEILING = (1448 / 1514) * (16384 / (16384 + 13 + 22));
const STATUS_POLL_MS = 200;
const TIMELINE_MS = 1000;

export interface SwarmScenario {
  /** Short label used in the report (`a-8`, `d`, ...). */
  name: string;
  description: string;
  sizeBytes: number;
  /** `shoal pack --piece-length`. */
  pieceLength: string;
  /** Upload of the seeding host (bit/s); absent: no seeding host, the origin alone serves. */
  seedUpload?: number;
  /** One entry per downloader: its upload (bit/s). */
  downloaderUploads: number[];
  /** Download cap of every lab host (bit/s); unshaped when absent. */
  download?: number;
  /**
   * Upload cap of the origin (bit/s): traffic from the controller's REST/origin port on the
   * infrastructure host; unshaped when absent. Without a seeding host it is the source.
   */
  originUpload?: number;
  /** Environment for every Shoal agent (e.g. SHOAL_SWARM). */
  agentEnv?: NodeJS.ProcessEnv;
  /** Writes a CPU profile of every Shoal agent into this folder (profile files are named by pid). */
  profileDir?: string;
  /** Give up after this long from the fetch commands; default max(120 s, 10 T*). */
  timeoutSeconds?: number;
}

export interface LowerBound {
  seconds: number;
  /** Which term binds: the source's uplink, the slowest downlink, or the total upload capacity. */
  bound: 'source-upload' | 'download' | 'aggregate-upload';
  terms: { sourceUpload: number; download: number; aggregateUpload: number };
}

export interface HostResult {
  host: string;
  address: string;
  role: 'seed' | 'downloader';
  uploadBitsPerSecond: number | null;
  /**
   * Seconds from the start commands to the release verified with TUF (Shoal only) / first
   * verified piece / complete.
   */
  tufVerifiedSeconds: number | null;
  firstPieceSeconds: number | null;
  completeSeconds: number | null;
  /** From the host's interface counters over the transfer. */
  sentBytes: number;
  receivedBytes: number;
  /** sentBytes / F: copies of the release this host uploaded. */
  sentCopies: number;
  /** sentBytes·8 / (upload · T_last): how busy its uplink was while the swarm ran. */
  uplinkUtilisation: number | null;
  /** What the client says (payload only; duplicates included in bytesFromPeers). */
  agentReported: PeerReport | null;
  cpuSeconds: number;
  verified: boolean | null;
  verifyDetail?: string;
}

export interface TimelinePoint {
  /** End of the interval, seconds from the start commands. */
  t: number;
  /** Upload rates over the interval in Mbit/s (from the switch ports' receive counters). */
  seedMbps: number | null;
  downloadersMbps: number;
  originMbps: number;
  /** Upload / capacity of every counted uplink (seed, downloaders, the origin when capped). */
  utilisation: number | null;
  /** CPU the client's processes used over the interval, in cores; and the busy share of the whole machine. */
  agentsCores: number;
  machineBusy: number;
  completed: number;
  /** Verified pieces of each downloader at the end of the interval (its own report; null: none). */
  verifiedPieces: Record<string, number | null>;
}

export interface SwarmReport {
  scenario: string;
  description: string;
  /** Which client made the swarm, and how it was run (peer discovery, settings, what t0 means). */
  client: SwarmClientName;
  clientNotes: string[];
  runId: string;
  downloaders: number;
  sizeBytes: number;
  pieceLength: string;
  rates: { seedUpload: string | null; downloaderUploads: string[]; download: string | null; originUpload: string | null };
  /** SHOAL_SWARM given to every Shoal agent, if any. */
  swarmSettings: string | null;
  setupSeconds: number;
  lowerBound: LowerBound;
  /**
   * The bound when the capped origin counts as a second source next to the seeding host
   * (u_s + u_origin in the first and third terms): the honest yardstick when the origin helps.
   */
  lowerBoundCountingOrigin: LowerBound | null;
  /** Seconds from the start commands to the first / median / last verified copy. */
  tFirst: number | null;
  tMedian: number | null;
  tLast: number | null;
  /** T* / T_last. */
  efficiency: number | null;
  /** efficiency / LINK_PAYLOAD_CEILING: how close to what the links can carry at all. */
  efficiencyOfAchievable: number | null;
  efficiencyCountingOrigin: number | null;
  origin: {
    /** shoal_origin_bytes_sent_total over the transfer, and that / F. */
    metricBytes: number;
    load: number;
    /** Infrastructure interface tx (origin plus control traffic, with TLS and TCP/IP overhead), and / F. */
    interfaceBytes: number;
    interfaceLoad: number;
  };
  /** Where the time went. */
  analysis: {
    /** T_last - T*. */
    lostSeconds: number | null;
    /** Part of T* that link framing costs at best: T* (1 / ceiling - 1). */
    framingSeconds: number;
    /** Earliest first verified piece: nothing can be relayed before it. */
    startupSeconds: number | null;
    medianTufVerifiedSeconds: number | null;
    medianFirstPieceSeconds: number | null;
    /** T_last - T_first: how long the slowest wait after the first is done. */
    tailSeconds: number | null;
    /** Seed (or origin) uplink use over T_last; the bottleneck when T* is source-bound. */
    sourceUtilisation: number | null;
    /** First timeline second at which the seed (or origin) uplink ran at >= 80 % of its rate. */
    sourceSaturatedAfterSeconds: number | null;
    /** Every counted uplink (seed, downloaders, the origin when capped) over T_last. */
    aggregateUtilisation: number | null;
    /** Aggregate uplink use in the first 10 %, middle 80 % and last 10 % of T_last (timeline). */
    utilisationByPhase: { first10: number | null; middle80: number | null; last10: number | null };
    /** Σ (bytes from peers + from webseed) - N·F, by the clients' own count. */
    duplicateBytes: number | null;
    duplicateShare: number | null;
    /** Bytes on every wire (all hosts and infra, interface counters) / (N·F). */
    wireBytesPerDeliveredByte: number;
  };
  cpu: {
    cores: number;
    /** Busy share of all cores over the transfer (from /proc/stat). */
    machineBusy: number;
    /** The client's processes (Shoal agents or libtorrent peers). */
    agentsSeconds: number;
    controllerSeconds: number;
    redisSeconds: number;
    /** This driver process (polling, counters). */
    driverSeconds: number;
    /** Busy CPU seconds of the machine not spent by the lab's processes or the driver: other work sharing the machine. */
    outsideSeconds: number;
  };
  hosts: HostResult[];
  timeline: TimelinePoint[];
  allVerified: boolean;
  /** Namespaces of this run still present after teardown (must be empty). */
  leftovers: string[];
  failure?: string;
}

export function lowerBound(sizeBytes: number, downloaders: number, sourceUpload: number, downloaderUploads: number[], download?: number): LowerBound {
  const bits = sizeBytes * 8;
  const terms = {
    sourceUpload: bits / sourceUpload,
    download: download === undefined ? 0 : bits / download,
    aggregateUpload: (downloaders * bits) / (sourceUpload + downloaderUploads.reduce((a, b) => a + b, 0)),
  };
  const [bound, seconds] = (Object.entries(terms) as [keyof typeof terms, number][]).reduce((best, entry) => (entry[1] > best[1] ? entry : best));
  const names = { sourceUpload: 'source-upload', download: 'download', aggregateUpload: 'aggregate-upload' } as const;
  return { seconds, bound: names[bound], terms };
}

// ---- clients: what the measuring code needs from the processes that make the swarm ---------

export type SwarmClientName = 'shoal' | 'libtorrent';

/** A client's own account of one host (payload only; duplicates included in bytesFromPeers). */
export interface PeerReport {
  bytesFromPeers: number;
  bytesFromWebseed: number;
  bytesUploaded: number;
  corruptPieces: number;
}

/** Epoch milliseconds (machine clock) of a downloader's milestones; each rejects when its process exits or the time is up. */
export interface DownloaderMilestones {
  /** The release's signature checked (Shoal: TUF); absent for a client without that step. */
  releaseVerified?: Promise<number>;
  /** The first verified piece, when the client says so itself; otherwise polled with `verifiedPieces`. */
  firstPiece?: Promise<number>;
  complete: Promise<number>;
}

/** One lab host's participant: the one process that speaks for the client there. */
export interface SwarmPeer {
  name: string;
  host: LabHost;
  process: LabProcess;
  /** Called once per downloader, before the start commands. */
  milestones(timeoutMs: number): DownloaderMilestones;
  verifiedPieces(): Promise<number | undefined>;
  report(): Promise<PeerReport | null>;
  /** Where the finished copy is (the release's file), once the client has settled. */
  copyPath(): Promise<string | undefined>;
}

/** A client's swarm in the lab, every process started and ready (the seed holding the release). */
export interface SwarmClient {
  seed: SwarmPeer | undefined;
  downloaders: SwarmPeer[];
  /** Tells every participant to begin, all at once: this is t0. */
  start(): Promise<void>;
  /** After the last measurement, before the copies are verified (e.g. let processes close their files). */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export interface SwarmClientKind {
  name: SwarmClientName;
  /** How this client runs in the lab (peer discovery, settings, what t0 and completion mean), for the report. */
  notes(scenario: SwarmScenario): string[];
  /** Starts one participant per lab host (host 1 seeds when the scenario has a seeding host). */
  start(infra: ShoalLab, release: LabRelease, scenario: SwarmScenario, timeoutMs: number): Promise<SwarmClient>;
}

interface Snapshot {
  sent: Map<string, number>;
  received: Map<string, number>;
  originMetric: number;
  cpu: Map<string, number>;
  machine: { busy: number; total: number };
  driver: number;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Epoch milliseconds of a pino JSON log line. */
function logTime(line: string): number {
  return (JSON.parse(line) as { time: number }).time;
}

/**
 * Shoal agents: host 1 imports the release before it starts (scenarios with a seeding host), the
 * downloaders get a fetch command each from the controller.
 */
export const shoalAgents: SwarmClientKind = {
  name: 'shoal',
  notes: (scenario) => [
    "peers from the controller's tracker (gRPC over mTLS); webseed fallback to the origin (url-list)",
    't0: the fetch commands through the controller; each agent then checks the release with TUF and fetches its metainfo',
    'first piece: the agent\'s "first piece verified" log line; completion: its "package complete and verified" line',
    ...(scenario.agentEnv ? [`agent environment: ${JSON.stringify(scenario.agentEnv)}`] : []),
  ],
  async start(infra, release, scenario) {
    const seeded = scenario.seedUpload !== undefined;
    const specs = infra.lab.hosts.map((host, i) => {
      const seed = seeded && i === 0;
      return {
        name: seed ? 'seed' : `dl-${seeded ? i : i + 1}`,
        host,
        labels: { region: 'lab', zone: 'lab-1', site: 'lab-1', role: seed ? 'seed' : 'downloader' },
        ...(seed ? { seed: release } : {}),
        ...(scenario.agentEnv ? { env: scenario.agentEnv } : {}),
        ...(scenario.profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${scenario.profileDir}`, `--cpu-prof-name=${seed ? 'seed' : `dl-${seeded ? i : i + 1}`}.cpuprofile`] } : {}),
      };
    });
    const agents = await infra.startAgents(specs);
    const seedAgent = seeded ? agents[0] : undefined;
    const downloaders = seeded ? agents.slice(1) : agents;
    if (seedAgent) await untilSeeding(infra, seedAgent, release);
    const status = (agent: LabAgent) => infra.packageStatus(agent, release);
    const peer = (agent: LabAgent): SwarmPeer => ({
      name: agent.name,
      host: agent.host,
      process: agent.process,
      milestones: (timeoutMs) => ({
        releaseVerified: agent.process.waitForLine((l) => l.includes('release verified with TUF'), timeoutMs).then(logTime),
        firstPiece: agent.process.waitForLine((l) => l.includes('first piece verified'), timeoutMs).then(logTime),
        complete: agent.process.waitForLine((l) => l.includes('package complete and verified'), timeoutMs).then(logTime),
      }),
      verifiedPieces: async () => (await status(agent).catch(() => undefined))?.verifiedPieces,
      async report() {
        const s = await status(agent);
        return s ? { bytesFromPeers: s.bytesDownloaded, bytesFromWebseed: s.bytesFromWebseed, bytesUploaded: s.bytesUploaded, corruptPieces: s.corruptPieces } : null;
      },
      copyPath: async () => (await status(agent))?.path ?? undefined,
    });
    return {
      seed: seedAgent && peer(seedAgent),
      downloaders: downloaders.map(peer),
      start: async () => {
        await Promise.all(downloaders.map((agent) => infra.fetch(agent, release)));
      },
      settle: async () => undefined,
      // The agents belong to the Shoal lab, which stops them.
      stop: async () => undefined,
    };
  },
};

/** Shoal agents in the lab: what `npm run bench:swarm` and the CI smoke test run. */
export function runSwarmScenario(scenario: SwarmScenario, log: (line: string) => void = () => undefined): Promise<SwarmReport> {
  return runScenario(scenario, shoalAgents, log);
}

/**
 * Builds the lab for `scenario` (fresh namespaces, the same shapes for every client), starts the
 * infrastructure (controller, Redis, origin), publishes the release, lets `kind` start its
 * participants, measures the transfer and tears everything down, also on failure.
 */
export async function runScenario(scenario: SwarmScenario, kind: SwarmClientKind, log: (line: string) => void = () => undefined): Promise<SwarmReport> {
  const seeded = scenario.seedUpload !== undefined;
  const sourceUpload = scenario.seedUpload ?? scenario.originUpload;
  if (sourceUpload === undefined) throw new Error(`scenario ${scenario.name}: with no seeding host the origin needs an upload cap (originUpload), or T* is unbounded`);
  const n = scenario.downloaderUploads.length;
  const F = scenario.sizeBytes;
  const bound = lowerBound(F, n, sourceUpload, scenario.downloaderUploads, scenario.download);
  const boundCountingOrigin = seeded && scenario.originUpload ? lowerBound(F, n, sourceUpload + scenario.originUpload, scenario.downloaderUploads, scenario.download) : null;
  const timeoutMs = (scenario.timeoutSeconds ?? Math.max(120, 10 * bound.seconds)) * 1000;
  const setupStarted = Date.now();
  const shapes = [...(seeded ? [scenario.seedUpload] : []), ...scenario.downloaderUploads].map((upload) => ({ upload, ...(scenario.download ? { download: scenario.download } : {}) }));
  const lab = await createLab({ hosts: shapes, ...(scenario.originUpload ? { infra: { sourcePortUploads: [{ port: REST_PORT, upload: scenario.originUpload }] } } : {}) });
  log(`${kind.name}: lab ${lab.runId}: ${lab.hosts.length} hosts + infra (${lab.prefix}*); T* = ${bound.seconds.toFixed(1)} s (${bound.bound})`);
  let infra: ShoalLab | undefined;
  let client: SwarmClient | undefined;
  const report: Partial<SwarmReport> = {};
  try {
    infra = await startShoalLab(lab);
    const release = await infra.publish('bench', '1.0.0', F, { pieceLength: scenario.pieceLength });
    client = await kind.start(infra, release, scenario, timeoutMs);
    const setupSeconds = (Date.now() - setupStarted) / 1000;
    log(`setup ${setupSeconds.toFixed(1)} s; fetching ${(F / MiB).toFixed(0)} MiB on ${n} downloaders`);
    Object.assign(report, await transfer(lab, infra, release, client, scenario, bound, timeoutMs, log));
    report.setupSeconds = setupSeconds;
  } catch (err) {
    report.failure = (err as Error).message;
    log(`FAILED: ${report.failure}`);
  } finally {
    await client?.stop().catch((err: Error) => log(`stopping ${kind.name}: ${err.message}`));
    await infra?.stop().catch((err: Error) => log(`stopping the lab infrastructure: ${err.message}`));
    await lab.teardown();
  }
  const leftovers = listNamespaces().filter((name) => name.startsWith(lab.prefix));
  return {
    scenario: scenario.name,
    description: scenario.description,
    client: kind.name,
    clientNotes: kind.notes(scenario),
    runId: lab.runId,
    downloaders: n,
    sizeBytes: F,
    pieceLength: scenario.pieceLength,
    rates: {
      seedUpload: scenario.seedUpload === undefined ? null : formatRate(scenario.seedUpload),
      downloaderUploads: scenario.downloaderUploads.map(formatRate),
      download: scenario.download === undefined ? null : formatRate(scenario.download),
      originUpload: scenario.originUpload === undefined ? null : formatRate(scenario.originUpload),
    },
    swarmSettings: kind === shoalAgents ? (scenario.agentEnv?.SHOAL_SWARM ?? null) : null,
    setupSeconds: report.setupSeconds ?? 0,
    lowerBound: bound,
    lowerBoundCountingOrigin: boundCountingOrigin,
    tFirst: null,
    tMedian: null,
    tLast: null,
    efficiency: null,
    efficiencyOfAchievable: null,
    efficiencyCountingOrigin: null,
    origin: { metricBytes: 0, load: 0, interfaceBytes: 0, interfaceLoad: 0 },
    analysis: emptyAnalysis(bound),
    cpu: { cores: cpus().length, machineBusy: 0, agentsSeconds: 0, controllerSeconds: 0, redisSeconds: 0, driverSeconds: 0, outsideSeconds: 0 },
    hosts: [],
    timeline: [],
    allVerified: false,
    ...report,
    ...(boundCountingOrigin && report.tLast ? { efficiencyCountingOrigin: boundCountingOrigin.seconds / report.tLast } : {}),
    leftovers,
  };
}

function emptyAnalysis(bound: LowerBound): SwarmReport['analysis'] {
  return {
    lostSeconds: null,
    framingSeconds: bound.seconds * (1 / LINK_PAYLOAD_CEILING - 1),
    startupSeconds: null,
    medianTufVerifiedSeconds: null,
    medianFirstPieceSeconds: null,
    tailSeconds: null,
    sourceUtilisation: null,
    sourceSaturatedAfterSeconds: null,
    aggregateUtilisation: null,
    utilisationByPhase: { first10: null, middle80: null, last10: null },
    duplicateBytes: null,
    duplicateShare: null,
    wireBytesPerDeliveredByte: 0,
  };
}

async function untilSeeding(shoal: ShoalLab, seed: LabAgent, release: LabRelease): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await shoal.packageStatus(seed, release))?.complete) {
    if (Date.now() > deadline) throw new Error(`${seed.name} never reported the imported release as complete`);
    await sleep(100);
  }
}

async function snapshot(lab: Lab, infra: ShoalLab, peers: SwarmPeer[]): Promise<Snapshot> {
  const sent = new Map<string, number>();
  const received = new Map<string, number>();
  await Promise.all(
    [lab.infra, ...lab.hosts].map(async (host) => {
      const bytes = await lab.interfaceBytes(host);
      sent.set(host.name, bytes.txBytes);
      received.set(host.name, bytes.rxBytes);
    }),
  );
  const cpu = new Map<string, number>(peers.map((p) => [p.host.name, p.process.cpuSeconds()]));
  cpu.set('controller', infra.controller.cpuSeconds());
  cpu.set('redis', infra.redis.cpuSeconds());
  const usage = process.cpuUsage();
  return { sent, received, originMetric: await infra.originBytes(), cpu, machine: machineCpuSeconds(), driver: (usage.user + usage.system) / 1e6 };
}

async function transfer(
  lab: Lab,
  infra: ShoalLab,
  release: LabRelease,
  client: SwarmClient,
  scenario: SwarmScenario,
  bound: LowerBound,
  timeoutMs: number,
  log: (line: string) => void,
): Promise<Partial<SwarmReport>> {
  const F = scenario.sizeBytes;
  const { seed, downloaders } = client;
  const n = downloaders.length;
  const all = seed ? [seed, ...downloaders] : downloaders;
  const before = await snapshot(lab, infra, all);
  const completeAt = new Map<string, number>();
  const tufAt = new Map<string, number>();
  const firstPieceAt = new Map<string, number>();

  const milestones = new Map(downloaders.map((p) => [p, p.milestones(timeoutMs)]));
  const t0 = Date.now();
  const watchers = downloaders.map(async (p) => {
    const m = milestones.get(p) as DownloaderMilestones;
    // Reported, not awaited: a downloader that never says so is polled below instead.
    m.firstPiece?.then((at) => firstPieceAt.set(p.host.name, at - t0)).catch(() => undefined);
    const [verifiedAt, doneAt] = await Promise.all([m.releaseVerified, m.complete]);
    if (verifiedAt !== undefined) tufAt.set(p.host.name, verifiedAt - t0);
    completeAt.set(p.host.name, doneAt - t0);
  });
  // A watcher that fails (timeout, process exit) ends the run; the others are abandoned.
  let failure: Error | undefined;
  void Promise.all(watchers).catch((err: Error) => (failure = err));
  await client.start();

  const timeline: TimelinePoint[] = [];
  // Uplinks that count as capacity: the seed, the downloaders, and the origin when it is capped.
  const uplinks: Uplink[] = [
    ...all.map((p) => ({ host: p.host.name, rate: p.host.upload ?? 0 })),
    ...(scenario.originUpload ? [{ host: lab.infra.name, rate: scenario.originUpload }] : []),
  ];
  const source: Uplink = seed ? { host: seed.host.name, rate: seed.host.upload ?? 0 } : { host: lab.infra.name, rate: scenario.originUpload ?? 0 };
  const view: TimelineView = { seed: seed?.host.name, downloaders: downloaders.map((p) => p.host.name), infra: lab.infra.name, uplinks };
  const takeSample = async (): Promise<Sample> => ({
    t: (Date.now() - t0) / 1000,
    sent: await lab.sentBySwitchPort(),
    agentsCpu: all.reduce((sum, p) => sum + p.process.cpuSeconds(), 0),
    machine: machineCpuSeconds(),
  });
  let lastSample = await takeSample();
  let nextSample = t0 + TIMELINE_MS;
  let lastProgress = t0;
  while (completeAt.size < n && !failure) {
    await sleep(STATUS_POLL_MS);
    const now = Date.now();
    await Promise.all(
      downloaders
        .filter((p) => !firstPieceAt.has(p.host.name) && !milestones.get(p)?.firstPiece)
        .map(async (p) => {
          if (((await p.verifiedPieces()) ?? 0) > 0) firstPieceAt.set(p.host.name, now - t0);
        }),
    );
    if (now >= nextSample) {
      nextSample += TIMELINE_MS;
      const sample = await takeSample();
      const point = timelinePoint(lastSample, sample, view, completeAt.size);
      await Promise.all(
        downloaders.map(async (p) => {
          point.verifiedPieces[p.host.name] = (await p.verifiedPieces()) ?? null;
        }),
      );
      timeline.push(point);
      lastSample = sample;
    }
    if (now - lastProgress >= 5000) {
      lastProgress = now;
      log(`  ${((now - t0) / 1000).toFixed(0).padStart(4)} s  ${completeAt.size}/${n} complete`);
    }
    if (now - t0 > timeoutMs) failure = new Error(`not every downloader completed within ${timeoutMs / 1000} s: ${completeAt.size}/${n}`);
  }
  if (failure) throw failure;
  const tLast = Math.max(...completeAt.values()) / 1000;
  const after = await snapshot(lab, infra, all);
  timeline.push(timelinePoint(lastSample, await takeSample(), view, completeAt.size));

  const reports = new Map(await Promise.all(all.map(async (p) => [p.host.name, await p.report()] as const)));
  await client.settle();
  log(`all ${n} complete after ${tLast.toFixed(1)} s; verifying every copy`);
  const verified = new Map<string, { ok: boolean; detail?: string }>();
  for (const p of downloaders) {
    const path = await p.copyPath();
    const result = path ? await infra.verifyCopy(release, path) : { status: 1, stdout: '', stderr: `${p.name} reports no finished copy` };
    verified.set(p.host.name, result.status === 0 ? { ok: true } : { ok: false, detail: `${result.stdout}${result.stderr}`.trim() });
  }

  const delta = (m: 'sent' | 'received', host: string): number => (after[m].get(host) ?? 0) - (before[m].get(host) ?? 0);
  const cpuDelta = (key: string): number => (after.cpu.get(key) ?? 0) - (before.cpu.get(key) ?? 0);
  const hosts: HostResult[] = all.map((p) => {
    const name = p.host.name;
    const sentBytes = delta('sent', name);
    const check = verified.get(name);
    return {
      host: name,
      address: p.host.address,
      role: p === seed ? 'seed' : 'downloader',
      uploadBitsPerSecond: p.host.upload ?? null,
      tufVerifiedSeconds: msToSeconds(tufAt.get(name)),
      firstPieceSeconds: msToSeconds(firstPieceAt.get(name)),
      completeSeconds: msToSeconds(completeAt.get(name)),
      sentBytes,
      receivedBytes: delta('received', name),
      sentCopies: sentBytes / F,
      uplinkUtilisation: p.host.upload ? (sentBytes * 8) / (p.host.upload * tLast) : null,
      agentReported: reports.get(name) ?? null,
      cpuSeconds: cpuDelta(name),
      verified: check ? check.ok : null,
      ...(check?.detail ? { verifyDetail: check.detail } : {}),
    };
  });

  const completions = [...completeAt.values()].map((ms) => ms / 1000);
  const tFirst = Math.min(...completions);
  const originMetricBytes = after.originMetric - before.originMetric;
  const infraSent = delta('sent', lab.infra.name);
  const capacity = uplinks.reduce((sum, u) => sum + u.rate, 0);
  const uplinksSent = uplinks.reduce((sum, u) => sum + delta('sent', u.host), 0);
  const wireSent = [lab.infra, ...lab.hosts].reduce((sum, h) => sum + delta('sent', h.name), 0);
  const delivered = downloaders.map((p) => reports.get(p.host.name)).reduce((sum, r) => sum + (r ? r.bytesFromPeers + r.bytesFromWebseed : 0), 0);
  const phase = (from: number, to: number): number | null => phaseUtilisation(timeline, from * tLast, to * tLast);
  const efficiency = bound.seconds / tLast;
  const firstPieces = [...firstPieceAt.values()].map((ms) => ms / 1000);
  const machineTotal = after.machine.total - before.machine.total;
  const machineBusySeconds = after.machine.busy - before.machine.busy;
  const agentsSeconds = all.reduce((sum, p) => sum + cpuDelta(p.host.name), 0);
  const driverSeconds = after.driver - before.driver;

  return {
    tFirst,
    tMedian: median(completions),
    tLast,
    efficiency,
    efficiencyOfAchievable: efficiency / LINK_PAYLOAD_CEILING,
    origin: { metricBytes: originMetricBytes, load: originMetricBytes / F, interfaceBytes: infraSent, interfaceLoad: infraSent / F },
    analysis: {
      lostSeconds: tLast - bound.seconds,
      framingSeconds: bound.seconds * (1 / LINK_PAYLOAD_CEILING - 1),
      startupSeconds: firstPieces.length ? Math.min(...firstPieces) : null,
      medianTufVerifiedSeconds: median([...tufAt.values()].map((ms) => ms / 1000)),
      medianFirstPieceSeconds: median(firstPieces),
      tailSeconds: tLast - tFirst,
      sourceUtilisation: source.rate ? (delta('sent', source.host) * 8) / (source.rate * tLast) : null,
      sourceSaturatedAfterSeconds: timeline.find((p) => ((seed ? p.seedMbps : p.originMbps) ?? 0) * 1e6 >= 0.8 * source.rate)?.t ?? null,
      aggregateUtilisation: capacity > 0 ? (uplinksSent * 8) / (capacity * tLast) : null,
      utilisationByPhase: { first10: phase(0, 0.1), middle80: phase(0.1, 0.9), last10: phase(0.9, 1) },
      duplicateBytes: delivered - n * F,
      duplicateShare: (delivered - n * F) / (n * F),
      wireBytesPerDeliveredByte: wireSent / (n * F),
    },
    cpu: {
      cores: cpus().length,
      machineBusy: machineTotal > 0 ? machineBusySeconds / machineTotal : 0,
      agentsSeconds,
      controllerSeconds: cpuDelta('controller'),
      redisSeconds: cpuDelta('redis'),
      driverSeconds,
      outsideSeconds: Math.max(0, machineBusySeconds - agentsSeconds - cpuDelta('controller') - cpuDelta('redis') - driverSeconds),
    },
    hosts,
    timeline,
    allVerified: [...verified.values()].every((v) => v.ok) && verified.size === n,
  };
}

function msToSeconds(ms: number | undefined): number | null {
  return ms === undefined ? null : ms / 1000;
}

interface Uplink {
  host: string;
  /** bit/s */
  rate: number;
}

interface TimelineView {
  seed: string | undefined;
  downloaders: string[];
  infra: string;
  uplinks: Uplink[];
}

interface Sample {
  /** Seconds from the fetch commands. */
  t: number;
  sent: Map<string, number>;
  agentsCpu: number;
  machine: { busy: number; total: number };
}

function timelinePoint(from: Sample, to: Sample, view: TimelineView, completed: number): TimelinePoint {
  const seconds = Math.max(to.t - from.t, 1e-3);
  const bitsPerSecond = (host: string): number => (((to.sent.get(host) ?? 0) - (from.sent.get(host) ?? 0)) * 8) / seconds;
  const capacity = view.uplinks.reduce((sum, u) => sum + u.rate, 0);
  const used = view.uplinks.reduce((sum, u) => sum + bitsPerSecond(u.host), 0);
  return {
    t: to.t,
    seedMbps: view.seed === undefined ? null : bitsPerSecond(view.seed) / 1e6,
    downloadersMbps: view.downloaders.reduce((sum, h) => sum + bitsPerSecond(h), 0) / 1e6,
    originMbps: bitsPerSecond(view.infra) / 1e6,
    utilisation: capacity > 0 ? used / capacity : null,
    agentsCores: (to.agentsCpu - from.agentsCpu) / seconds,
    machineBusy: to.machine.total > from.machine.total ? (to.machine.busy - from.machine.busy) / (to.machine.total - from.machine.total) : 0,
    completed,
    verifiedPieces: {},
  };
}

/** Mean aggregate utilisation of the timeline intervals ending within (from, to]. */
function phaseUtilisation(timeline: TimelinePoint[], from: number, to: number): number | null {
  const points = timeline.filter((p) => p.t > from && p.t <= to && p.utilisation !== null);
  if (points.length === 0) return null;
  return points.reduce((sum, p) => sum + (p.utilisation as number), 0) / points.length;
}
