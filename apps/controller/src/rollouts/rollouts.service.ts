import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DelayedError, type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type pino from 'pino';
import type { ReleasePhase, ReleaseProgressMessage } from '@shoal/proto';
import type { CommandResultEvent, ControlStreams, HelloEvent, ReleaseProgressEvent } from '../control/control-streams';
import type { AgentRegistry } from '../registry/agents.service';
import type { ReleasesService } from '../releases/releases.service';
import type { Metrics } from '../observability/metrics';
import {
  type BandwidthClassName,
  RolloutError,
  formatSelector,
  formatWave,
  formatWindow,
  judgeWave,
  msUntilWindowOpens,
  parseGate,
  parseSelector,
  parseWaves,
  parseWindow,
  rolloutOrder,
  selects,
  waveMembers,
} from './plan';
import { type AgentOutcome, LATE, type RolloutRecord, type RolloutSpec, type RolloutState, RolloutStore, TERMINAL_STATES, outcomeKind } from './rollout-store';

/** How often a wave job looks at its agents: the bound on how late a pause, a connect or a report is acted on. */
const STEP_MS = 250;
/** While the maintenance window is shut, the wave job looks again at most this late. */
const WINDOW_RECHECK_MS = 60_000;
/**
 * A wave job's lock: a controller killed mid-step holds it this long before another process (or
 * the restarted one) takes the job over. Steps are milliseconds long; the lock is renewed anyway.
 */
const LOCK_MS = 5_000;
/**
 * How long the worker waits before retrying a Redis call that failed on a lost connection.
 * BullMQ's default (15 s) stacks: a reconnection that cost two calls stalled a wave for 30 s,
 * while ioredis is back within milliseconds.
 */
const REDIS_RETRY_MS = 500;
/**
 * An agent reports each phase once; a report whose Redis writes failed (a lost connection) is
 * tried again this many times, REDIS_RETRY_MS apart, before it is given up and left to the
 * agent's next hello.
 */
const REPORT_ATTEMPTS = 120;
const QUEUE = 'rollouts';
const MAX_LISTED = 200;
/** Prefix of the command ids of rollout fetches: the agent echoes them in its result. */
const COMMAND_PREFIX = 'rollout/';

interface AgentReports {
  /** Reports not started yet, by kind, oldest first. */
  waiting: Map<string, () => Promise<void>>;
  draining: boolean;
}

export interface CreateRolloutInput {
  release: string;
  selector?: unknown;
  waves: unknown;
  gate?: unknown;
  window?: unknown;
  bandwidthClass?: unknown;
  install?: unknown;
}

export interface WaveView {
  index: number;
  size: string;
  state: 'waiting' | 'running' | 'soaking' | 'passed' | 'failed';
  members: number;
  commanded: number;
  succeeded: number;
  failed: number;
  inProgress: number;
  verifiedPieces: number;
  totalPieces: number;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface RolloutView {
  id: string;
  state: RolloutState;
  reason: string;
  release: string;
  infoHash: string;
  selector: string;
  waves: WaveView[];
  /** Agents that matched after the final 100 % wave had started. */
  late: { commanded: number; succeeded: number; failed: number };
  gate: RolloutSpec['gate'];
  window: string | null;
  bandwidthClass: BandwidthClassName;
  install: boolean;
  bytes: { fromPeers: number; fromOrigin: number };
  failures: { agentId: string; phase: ReleasePhase; exitCode: number; message: string }[];
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

interface WaveJob {
  rolloutId: string;
  wave: number;
}

/**
 * Rollouts: a release pushed to the agents a selector picks, wave by wave, each wave gated on
 * its agents' reports. Each wave is one BullMQ job that steps every STEP_MS (delaying itself in
 * between): it commands the wave's connected agents, judges the gate, and hands over to the next
 * wave's job. Every decision is recorded in Redis before it is acted on, and set once (wave
 * membership, each agent's command), so a job re-run after a crash or a controller restart
 * neither commands an agent twice nor skips a wave.
 *
 * Assumes one controller process holds the agents' control streams (the chart runs one replica).
 */
export class RolloutsService {
  private readonly store: RolloutStore;
  private readonly bull: Redis;
  private readonly queue: Queue<WaveJob>;
  private worker: Worker<WaveJob> | undefined;
  private reconcileTimer: NodeJS.Timeout | undefined;
  /** `name@version` -> ids of rollouts that may still take reports for it (live or standing). */
  private readonly byRelease = new Map<string, Set<string>>();
  /** Resolves once the first reconcile has rebuilt the report index: reports wait for it. */
  private readonly ready: Promise<void>;
  private markReady: () => void = () => undefined;
  /** Each agent's reports waiting to be handled (see `handle`). */
  private readonly reportQueues = new Map<string, AgentReports>();
  private closing = false;

  constructor(
    redis: Redis,
    redisUrl: string,
    private readonly control: ControlStreams,
    private readonly registry: AgentRegistry,
    private readonly releases: ReleasesService,
    private readonly metrics: Metrics,
    private readonly clock: () => number,
    private readonly log: pino.Logger,
  ) {
    this.store = new RolloutStore(redis);
    // BullMQ blocks on its connection and must never give up a command.
    this.bull = new Redis(redisUrl, { maxRetriesPerRequest: null, connectionName: 'shoal-rollouts' });
    this.bull.on('error', (err) => log.warn({ err: err.message }, 'rollouts: redis error'));
    this.queue = new Queue<WaveJob>(QUEUE, { connection: this.bull, prefix: 'shoal:bull' });
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    // Listening from construction, before the control streams' port opens: agents reconnecting
    // after a restart say hello at once, and a hello lost here is an outcome lost for good.
    control.on('hello', this.onHello);
    control.on('progress', this.onProgress);
    control.on('result', this.onResult);
  }

  private readonly onHello = (e: HelloEvent) => this.handle(e.agentId, 'hello', () => this.hello(e));
  private readonly onProgress = (e: ReleaseProgressEvent) =>
    this.handle(e.agentId, `progress ${e.progress.name}@${e.progress.version} ${e.progress.rolloutId}`, () => this.progress(e.agentId, e.progress));
  private readonly onResult = (e: CommandResultEvent) => this.handle(e.agentId, `result ${e.commandId}`, () => this.result(e));

  /**
   * An agent's reports are handled one at a time, in arrival order (a retried "fetching" must not
   * land after the "installed" that followed it), once the report index is rebuilt. Each report
   * is a snapshot, so a newer one of the same kind (`key`) replaces the one still waiting: while
   * Redis is away the queue holds one report per kind, not one per second per agent.
   */
  private handle(agentId: string, key: string, work: () => Promise<void>): void {
    let reports = this.reportQueues.get(agentId);
    if (!reports) {
      reports = { waiting: new Map(), draining: false };
      this.reportQueues.set(agentId, reports);
    }
    reports.waiting.delete(key);
    reports.waiting.set(key, work);
    if (!reports.draining) void this.drain(agentId, reports);
  }

  private async drain(agentId: string, reports: AgentReports): Promise<void> {
    reports.draining = true;
    await this.ready;
    for (let next = reports.waiting.entries().next(); !next.done; next = reports.waiting.entries().next()) {
      const [key, work] = next.value;
      reports.waiting.delete(key);
      await this.untilHandled(agentId, key, work);
    }
    reports.draining = false;
    this.reportQueues.delete(agentId);
  }

  /** Never rejects: a report that cannot be handled is logged and dropped after its attempts. */
  private async untilHandled(agentId: string, what: string, work: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await work();
        return;
      } catch (err) {
        if (this.closing || attempt >= REPORT_ATTEMPTS) {
          this.log.warn({ err, agentId, attempts: attempt }, `rollout: ${what} not handled`);
          return;
        }
        if (attempt === 1) this.log.warn({ err: (err as Error).message, agentId }, `rollout: ${what} not handled yet, retrying`);
        await sleep(REDIS_RETRY_MS);
      }
    }
  }

  async start(): Promise<void> {
    this.worker = new Worker<WaveJob>(QUEUE, (job, token) => this.runStep(job, token), {
      connection: this.bull,
      prefix: 'shoal:bull',
      concurrency: 32,
      lockDuration: LOCK_MS,
      stalledInterval: LOCK_MS / 2,
      maxStalledCount: Number.MAX_SAFE_INTEGER,
      runRetryDelay: REDIS_RETRY_MS,
    });
    this.worker.on('error', (err) => this.log.warn({ err: err.message }, 'rollouts: worker error'));
    this.worker.on('failed', (job, err) => this.log.error({ rollout: job?.data.rolloutId, wave: job?.data.wave, err: err.message }, 'rollout step failed'));
    await this.reconcile();
    this.markReady();
    // A job lost with Redis data (or never added, after a crash between two writes) is re-added here.
    this.reconcileTimer = setInterval(() => void this.reconcile().catch((err: unknown) => this.log.warn({ err }, 'rollout reconcile failed')), 30_000);
    this.reconcileTimer.unref();
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.control.off('hello', this.onHello);
    this.control.off('progress', this.onProgress);
    this.control.off('result', this.onResult);
    await this.worker?.close();
    await this.queue.close();
    this.bull.disconnect();
  }

  async create(input: CreateRolloutInput, createdBy: string): Promise<RolloutView> {
    const [name, version, extra] = typeof input.release === 'string' ? input.release.split('@') : [];
    if (!name || !version || extra !== undefined) throw new RolloutError('ROLLOUT_BAD_RELEASE', 'release: give it as NAME@VERSION');
    const waves = parseWaves(input.waves);
    const selector = parseSelector(input.selector ?? '');
    const gate = parseGate(input.gate);
    const window = input.window === undefined || input.window === null || input.window === '' ? null : formatWindow(parseWindow(input.window));
    const bandwidthClass = input.bandwidthClass ?? 'normal';
    if (bandwidthClass !== 'normal' && bandwidthClass !== 'background') throw new RolloutError('ROLLOUT_BAD_BANDWIDTH_CLASS', 'bandwidthClass: normal or background');
    if (input.install !== undefined && typeof input.install !== 'boolean') throw new RolloutError('ROLLOUT_BAD_INSTALL', 'install: true or false');
    // Only a release the TUF repository signed can be rolled out; the agents verify it again.
    const release = await this.releases.get(name, version);
    const eligible = await this.eligible(selector);
    if (eligible.length === 0) throw new RolloutError('ROLLOUT_NO_MATCH', `selector ${JSON.stringify(formatSelector(selector))} matches no active agent`);
    const now = this.clock();
    const record: RolloutRecord = {
      id: `ro-${randomBytes(6).toString('hex')}`,
      spec: {
        release: { name, version, infoHash: release.infoHash },
        selector: formatSelector(selector),
        waves: waves.map(formatWave),
        gate,
        window,
        bandwidthClass,
        install: input.install ?? true,
        createdBy,
      },
      state: 'pending',
      wave: 0,
      reason: '',
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    };
    await this.store.create(record);
    this.index(record);
    await this.enqueue(record.id, 0);
    this.log.info({ rollout: record.id, release: `${name}@${version}`, selector: record.spec.selector, waves: record.spec.waves, eligible: eligible.length }, 'rollout created');
    return this.view(record);
  }

  async list(): Promise<RolloutView[]> {
    return Promise.all((await this.store.list(MAX_LISTED)).map((r) => this.view(r)));
  }

  async get(id: string): Promise<RolloutView> {
    return this.view(await this.load(id));
  }

  async pause(id: string): Promise<RolloutView> {
    await this.load(id);
    if (!(await this.store.transition(id, ['pending', 'running'], 'paused', this.clock()))) throw await this.conflict(id, 'pause');
    this.log.info({ rollout: id }, 'rollout paused');
    return this.get(id);
  }

  async resume(id: string): Promise<RolloutView> {
    const record = await this.load(id);
    const started = (await this.store.wave(id, 0)) !== undefined;
    if (!(await this.store.transition(id, ['paused'], started ? 'running' : 'pending', this.clock()))) throw await this.conflict(id, 'resume');
    await this.enqueue(id, record.wave);
    this.log.info({ rollout: id }, 'rollout resumed');
    return this.get(id);
  }

  /** Stops the rollout for good and tells every agent still fetching its release to cancel. */
  async abort(id: string): Promise<RolloutView> {
    const record = await this.load(id);
    if (!(await this.store.transition(id, ['pending', 'running', 'paused'], 'aborted', this.clock(), { reason: 'aborted by request', finished: true }))) {
      throw await this.conflict(id, 'abort');
    }
    await this.store.removeStanding(id);
    this.metrics.rolloutsFinished.inc({ state: 'aborted' });
    const outcomes = await this.store.outcomes(id);
    let cancelled = 0;
    for (const agentId of (await this.store.commanded(id)).keys()) {
      if (outcomeKind(outcomes.get(agentId)?.phase) !== 'pending') continue;
      if (this.control.send(agentId, { cancel: { name: record.spec.release.name, version: record.spec.release.version } })) cancelled++;
    }
    this.log.info({ rollout: id, cancelled }, 'rollout aborted');
    return this.get(id);
  }

  private async load(id: string): Promise<RolloutRecord> {
    const record = /^ro-[0-9a-f]{12}$/.test(id) ? await this.store.get(id) : undefined;
    if (!record) throw new RolloutError('ROLLOUT_NOT_FOUND', `no rollout ${JSON.stringify(id.slice(0, 80))}`);
    return record;
  }

  private async conflict(id: string, action: string): Promise<RolloutError> {
    const state = (await this.store.get(id))?.state;
    return new RolloutError('ROLLOUT_STATE_CONFLICT', `cannot ${action} rollout ${id}: it is ${state}`);
  }

  /** Active agents the selector picks, in this rollout's order. */
  private async eligible(selector: ReturnType<typeof parseSelector>): Promise<string[]> {
    return (await this.registry.list()).filter((a) => a.state === 'active' && selects(selector, a.labels)).map((a) => a.id);
  }

  private async enqueue(rolloutId: string, wave: number): Promise<void> {
    await this.queue.add(
      'wave',
      { rolloutId, wave },
      // The job id makes adding idempotent: a wave has one job however often this runs.
      { jobId: `${rolloutId}-wave-${wave}`, removeOnComplete: true, removeOnFail: { age: 86_400 }, attempts: 1_000_000, backoff: { type: 'fixed', delay: 1000 } },
    );
  }

  /** Makes sure every live rollout has the job of its current wave, and rebuilds the report index. */
  private async reconcile(): Promise<void> {
    // Every live rollout, however old (not only the newest listed), and the standing ones.
    const ids = new Set([...(await this.store.live()), ...(await this.store.standing())]);
    this.byRelease.clear();
    for (const id of ids) {
      const record = await this.store.get(id);
      if (!record) continue;
      this.index(record);
      if (!TERMINAL_STATES.has(record.state)) await this.enqueue(record.id, record.wave);
    }
  }

  private index(record: RolloutRecord): void {
    const key = `${record.spec.release.name}@${record.spec.release.version}`;
    const ids = this.byRelease.get(key) ?? new Set<string>();
    ids.add(record.id);
    this.byRelease.set(key, ids);
  }

  private async runStep(job: Job<WaveJob>, token: string | undefined): Promise<void> {
    const delay = await this.step(job.data.rolloutId, job.data.wave);
    if (delay === undefined) return;
    await job.moveToDelayed(this.clock() + delay, token);
    throw new DelayedError();
  }

  /** One look at a wave: returns in how many ms to look again, or undefined when this wave's job is done. */
  private async step(id: string, waveIndex: number): Promise<number | undefined> {
    const record = await this.store.get(id);
    if (!record || TERMINAL_STATES.has(record.state) || record.wave !== waveIndex) return undefined;
    if (record.state === 'paused') return STEP_MS;
    const now = this.clock();
    const { spec } = record;
    let wave = await this.store.wave(id, waveIndex);
    if (!wave) {
      const shut = spec.window ? msUntilWindowOpens(parseWindow(spec.window), now) : 0;
      if (shut > 0) return Math.min(shut, WINDOW_RECHECK_MS);
      const size = parseWaves(spec.waves)[waveIndex];
      if (!size) return undefined;
      wave = await this.store.startWave(id, waveIndex, () => this.chooseMembers(record, waveIndex), now);
      await this.store.transition(id, ['pending'], 'running', now);
      this.log.info({ rollout: id, wave: waveIndex, size: formatWave(size), members: wave.members.length }, 'rollout wave started');
      if (waveIndex === spec.waves.length - 1 && 'percent' in size && size.percent === 100) await this.makeStanding(record);
    }
    const commanded = await this.store.commanded(id);
    const windowOpen = !spec.window || msUntilWindowOpens(parseWindow(spec.window), now) === 0;
    if (windowOpen) {
      for (const agentId of wave.members) {
        if (!commanded.has(agentId) && this.control.isConnected(agentId)) await this.command(record, agentId, waveIndex);
      }
    }
    const outcomes = await this.store.outcomes(id);
    let succeeded = 0;
    let failed = 0;
    for (const agentId of wave.members) {
      const kind = outcomeKind(outcomes.get(agentId)?.phase);
      if (kind === 'succeeded') succeeded++;
      else if (kind === 'failed') failed++;
    }
    const timedOut = now - wave.startedAt > spec.gate.waveTimeoutSeconds * 1000;
    const verdict = judgeWave({ members: wave.members.length, succeeded, failed }, spec.gate, timedOut);
    if (verdict.verdict === 'pending') return STEP_MS;
    if (verdict.verdict === 'failed') {
      await this.store.finishWave(id, waveIndex, now);
      if (await this.store.transition(id, ['running'], 'failed', now, { reason: `wave ${waveIndex + 1}: ${verdict.reason}`, finished: true })) {
        await this.store.removeStanding(id);
        this.metrics.rolloutsFinished.inc({ state: 'failed' });
        this.log.warn({ rollout: id, wave: waveIndex, reason: verdict.reason }, 'rollout failed its gate');
      }
      return undefined;
    }
    const passedAt = await this.store.markWavePassed(id, waveIndex, now);
    const soakLeft = passedAt + spec.gate.soakSeconds * 1000 - now;
    if (soakLeft > 0) return Math.min(soakLeft, STEP_MS);
    await this.store.finishWave(id, waveIndex, now);
    if (waveIndex === spec.waves.length - 1) {
      if (await this.store.transition(id, ['running'], 'succeeded', now, { finished: true })) {
        this.metrics.rolloutsFinished.inc({ state: 'succeeded' });
        this.log.info({ rollout: id }, 'rollout succeeded');
      }
      return undefined;
    }
    // Advance first: if this process dies before the next job is added, reconcile adds it.
    if (await this.store.advance(id, waveIndex, now)) {
      this.log.info({ rollout: id, wave: waveIndex }, 'rollout wave passed');
      await this.enqueue(id, waveIndex + 1);
    }
    return undefined;
  }

  private async chooseMembers(record: RolloutRecord, waveIndex: number): Promise<string[]> {
    const ordered = rolloutOrder(record.id, await this.eligible(parseSelector(record.spec.selector)));
    const earlier = new Set<string>();
    for (let i = 0; i < waveIndex; i++) for (const id of (await this.store.wave(record.id, i))?.members ?? []) earlier.add(id);
    const size = parseWaves(record.spec.waves)[waveIndex];
    return size ? waveMembers(size, ordered, earlier) : [];
  }

  /** The rollout reached its 100 % wave: from now on agents that match later get the release too. */
  private async makeStanding(record: RolloutRecord): Promise<void> {
    await this.store.addStanding(record.id);
  }

  /**
   * Per package, the standing rollout late joiners follow: the newest one still running or
   * succeeded (aborting a newer rollout falls back to the one before it).
   */
  private async standingByPackage(): Promise<Map<string, RolloutRecord>> {
    const newest = new Map<string, RolloutRecord>();
    for (const id of await this.store.standing()) {
      const record = await this.store.get(id);
      if (!record || (record.state !== 'running' && record.state !== 'succeeded')) continue;
      const current = newest.get(record.spec.release.name);
      if (!current || current.createdAt < record.createdAt) newest.set(record.spec.release.name, record);
    }
    return newest;
  }

  /** Commands `agentId` once in this rollout's life: the claim is recorded before the command leaves. */
  private async command(record: RolloutRecord, agentId: string, wave: number): Promise<void> {
    if (!(await this.store.claimCommand(record.id, agentId, wave, this.clock()))) return;
    this.send(record, agentId);
  }

  private send(record: RolloutRecord, agentId: string): void {
    const { release, install, bandwidthClass } = record.spec;
    const sent = this.control.send(
      agentId,
      {
        fetch: {
          name: release.name,
          version: release.version,
          install,
          bandwidthClass: bandwidthClass === 'background' ? 'BANDWIDTH_CLASS_BACKGROUND' : 'BANDWIDTH_CLASS_NORMAL',
          rolloutId: record.id,
        },
      },
      `${COMMAND_PREFIX}${record.id}/${agentId}`,
    );
    if (sent) this.metrics.rolloutCommands.inc();
  }

  /**
   * An agent (re)connected. Its hello lists the releases it remembers: that settles outcomes
   * reported while this controller was away. A command claimed before this stream opened that
   * the agent does not know was lost in flight: it is sent again (the agent never saw it).
   * Agents matching a standing rollout that never had the release get it now.
   */
  private async hello(event: HelloEvent): Promise<void> {
    const { agentId } = event;
    const known = new Map(event.releases.map((r) => [`${r.name}@${r.version}`, r]));
    // An agent that was away when its rollout was aborted missed the cancel: it gets it now.
    for (const reported of event.releases) {
      if (!reported.rolloutId || reported.phase === 'RELEASE_PHASE_UNSPECIFIED' || outcomeKind(reported.phase) !== 'pending') continue;
      const record = /^ro-[0-9a-f]{12}$/.test(reported.rolloutId) ? await this.store.get(reported.rolloutId) : undefined;
      if (record?.state === 'aborted' && record.spec.release.name === reported.name && record.spec.release.version === reported.version) {
        this.control.send(agentId, { cancel: { name: reported.name, version: reported.version } });
      }
    }
    const connectedAt = this.control.connectedAt(agentId) ?? this.clock();
    const standing = await this.standingByPackage();
    for (const [release, ids] of this.byRelease) {
      const reported = known.get(release);
      for (const id of ids) {
        const record = await this.store.get(id);
        if (!record) continue;
        const claim = await this.store.claim(id, agentId);
        if (claim) {
          if (reported && reported.phase !== 'RELEASE_PHASE_UNSPECIFIED') await this.recordOutcome(id, agentId, reported);
          else if (!TERMINAL_STATES.has(record.state) && record.state !== 'paused' && claim.at < connectedAt && !(await this.store.outcome(id, agentId))) this.send(record, agentId);
        } else if (standing.get(record.spec.release.name)?.id === id && (await this.takesLateJoiner(record, agentId))) {
          if (reported && outcomeKind(reported.phase) === 'succeeded') {
            if (await this.store.claimCommand(id, agentId, LATE, this.clock())) await this.recordOutcome(id, agentId, reported);
          } else {
            await this.command(record, agentId, LATE);
          }
        }
      }
    }
  }

  private async takesLateJoiner(record: RolloutRecord, agentId: string): Promise<boolean> {
    // A member of the final wave not yet commanded belongs to that wave's job, not here.
    if (record.state === 'running' && (await this.store.wave(record.id, record.wave))?.members.includes(agentId)) return false;
    const agent = await this.registry.get(agentId);
    return agent !== undefined && agent.state === 'active' && selects(parseSelector(record.spec.selector), agent.labels);
  }

  private async progress(agentId: string, progress: ReleaseProgressMessage): Promise<void> {
    const ids = progress.rolloutId ? [progress.rolloutId] : [...(this.byRelease.get(`${progress.name}@${progress.version}`) ?? [])];
    for (const id of ids) {
      if (await this.store.isCommanded(id, agentId)) await this.recordOutcome(id, agentId, progress);
    }
  }

  /** A rollout command's result settles the agent's outcome when no progress report did (a release it already held). */
  private async result(event: CommandResultEvent): Promise<void> {
    if (!event.commandId.startsWith(COMMAND_PREFIX)) return;
    const [id, agentId] = event.commandId.slice(COMMAND_PREFIX.length).split('/');
    if (!id || agentId !== event.agentId || !(await this.store.isCommanded(id, agentId))) return;
    const current = await this.store.outcome(id, agentId);
    if (current && outcomeKind(current.phase) !== 'pending') return;
    await this.store.recordOutcome(id, agentId, {
      ...(current ?? { verifiedPieces: 0, totalPieces: 0, bytesFromPeers: 0, bytesFromOrigin: 0, exitCode: -1 }),
      phase: event.ok ? 'RELEASE_PHASE_COMPLETE' : 'RELEASE_PHASE_FAILED',
      message: event.message,
      at: this.clock(),
    });
  }

  private async recordOutcome(id: string, agentId: string, p: ReleaseProgressMessage): Promise<void> {
    const outcome: AgentOutcome = {
      phase: p.phase,
      message: p.message.slice(-4096),
      exitCode: p.exitCode,
      verifiedPieces: p.verifiedPieces,
      totalPieces: p.totalPieces,
      bytesFromPeers: p.bytesFromPeers,
      bytesFromOrigin: p.bytesFromOrigin,
      at: this.clock(),
    };
    await this.store.recordOutcome(id, agentId, outcome);
  }

  private async view(record: RolloutRecord): Promise<RolloutView> {
    const { id, spec } = record;
    const [commanded, outcomes] = await Promise.all([this.store.commanded(id), this.store.outcomes(id)]);
    const waves: WaveView[] = [];
    for (let index = 0; index < spec.waves.length; index++) {
      const wave = await this.store.wave(id, index);
      const tally = { commanded: 0, succeeded: 0, failed: 0, inProgress: 0, verifiedPieces: 0, totalPieces: 0 };
      for (const agentId of wave?.members ?? []) {
        if (commanded.has(agentId)) tally.commanded++;
        const outcome = outcomes.get(agentId);
        const kind = outcomeKind(outcome?.phase);
        if (kind === 'succeeded') tally.succeeded++;
        else if (kind === 'failed') tally.failed++;
        else if (commanded.has(agentId)) tally.inProgress++;
        tally.verifiedPieces += outcome?.verifiedPieces ?? 0;
        tally.totalPieces += outcome?.totalPieces ?? 0;
      }
      let state: WaveView['state'] = 'waiting';
      if (wave) {
        if (index < record.wave || (wave.finishedAt !== null && record.state === 'succeeded')) state = 'passed';
        else if (record.state === 'failed' && index === record.wave) state = 'failed';
        else if (wave.passedAt !== null) state = wave.finishedAt === null ? 'soaking' : 'passed';
        else state = 'running';
      }
      waves.push({
        index,
        size: spec.waves[index] as string,
        state,
        members: wave?.members.length ?? 0,
        ...tally,
        startedAt: wave ? new Date(wave.startedAt).toISOString() : null,
        finishedAt: wave?.finishedAt ? new Date(wave.finishedAt).toISOString() : null,
      });
    }
    const late = { commanded: 0, succeeded: 0, failed: 0 };
    for (const [agentId, wave] of commanded) {
      if (wave !== LATE) continue;
      late.commanded++;
      const kind = outcomeKind(outcomes.get(agentId)?.phase);
      if (kind === 'succeeded') late.succeeded++;
      else if (kind === 'failed') late.failed++;
    }
    const bytes = { fromPeers: 0, fromOrigin: 0 };
    const failures: RolloutView['failures'] = [];
    for (const [agentId, outcome] of outcomes) {
      bytes.fromPeers += outcome.bytesFromPeers;
      bytes.fromOrigin += outcome.bytesFromOrigin;
      if (outcomeKind(outcome.phase) === 'failed' && failures.length < 20) failures.push({ agentId, phase: outcome.phase, exitCode: outcome.exitCode, message: outcome.message });
    }
    return {
      id,
      state: record.state,
      reason: record.reason,
      release: `${spec.release.name}@${spec.release.version}`,
      infoHash: spec.release.infoHash,
      selector: spec.selector,
      waves,
      late,
      gate: spec.gate,
      window: spec.window,
      bandwidthClass: spec.bandwidthClass,
      install: spec.install,
      bytes,
      failures,
      createdBy: spec.createdBy,
      createdAt: new Date(record.createdAt).toISOString(),
      updatedAt: new Date(record.updatedAt).toISOString(),
      finishedAt: record.finishedAt === null ? null : new Date(record.finishedAt).toISOString(),
    };
  }
}
