import type { ReleasePhase, ReleaseProgressMessage } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';
import type { VerifiedRelease } from '@shoal/trust';
import type { PackageGates, TrafficClass } from '../bandwidth';
import { type InstallHookResult, type InstallPolicy, type RunningInstallHook, chooseInstall, startInstallHook } from '../install';
import { type ReleaseState, type ReleaseStateChange, type ReleaseStates, progressOf, releaseKey } from './release-states';

/** A package session as deliveries see it (the daemon's active package). */
export interface DeliveredPackage {
  /** Where the finished package lies (valid once complete). */
  readonly packagePath: string;
  readonly gates: PackageGates;
  /** Counters of this session (since it started). */
  progress(): { verifiedPieces: number; totalPieces: number; bytesFromPeers: number; bytesFromOrigin: number };
  isComplete(): boolean;
  /** Resolves once complete, verified and finished on disk; rejects if the session stops first. */
  readonly completed: Promise<void>;
}

/** What deliveries need from the daemon. */
export interface DeliveryHost {
  /** Verifies the release with TUF. */
  verify(name: string, version: string): Promise<VerifiedRelease>;
  /** Adds the verified release to the catalog and starts its package session (or finds it running). */
  activate(release: VerifiedRelease, cls: TrafficClass): Promise<DeliveredPackage>;
  activeOf(name: string, version: string): DeliveredPackage | undefined;
  /** Stops an unfinished package's session (peers, announces, webseed), keeping its verified pieces. */
  stop(name: string, version: string): Promise<void>;
  /** Sends a progress report on the control stream (dropped while it is down: the hello carries the state). */
  report(progress: ReleaseProgressMessage): void;
}

export interface FetchRequest {
  name: string;
  version: string;
  install: boolean;
  cls: TrafficClass;
  rolloutId: string;
}

export interface CommandReply {
  ok: boolean;
  message: string;
}

interface Logger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface DeliveriesOptions {
  host: DeliveryHost;
  states: ReleaseStates;
  policy: InstallPolicy;
  log: Logger;
  /** Counts install hook runs by result. */
  countInstall(result: InstallHookResult): void;
  /** The environment install hooks inherit from the agent (PATH and HOME only). */
  baseEnv: Record<string, string>;
}

/** Progress reports while fetching: about once a second, and only when something moved. */
const REPORT_MS = 1000;
/**
 * How often those counters are also saved (with a disk sync) rather than only noted in memory:
 * a crash loses at most this much of their growth. Saving every report cost each fetching agent
 * a write, fdatasync and rename a second, for figures the piece journal does not need to resume
 * (in a 16-downloader lab run: fdatasync calls -25 %, renames -62 % machine-wide).
 */
const PROGRESS_SAVE_MS = 10_000;
/** How long a fetch waits for an unreachable TUF repository (a controller restart) before it fails. */
const VERIFY_PATIENCE_MS = 120_000;

/** The fetch command stopped because a cancel (or a stop of the agent) came first. */
export class FetchCancelledError extends ShoalError {
  constructor(release: string) {
    super('AGENT_FETCH_CANCELLED', `${release}: cancelled`);
  }
}

interface Fetched {
  pkg: DeliveredPackage;
  release: VerifiedRelease;
}

/** An install in progress: its hook once started, and whether a cancel came first. */
interface InstallRun {
  hook?: RunningInstallHook;
  cancelled: boolean;
}

interface Job {
  /** `wanted.cls`: the most urgent class any waiting command asked for. */
  fetch?: { promise: Promise<Fetched>; abort: AbortController; wanted: { cls: TrafficClass } };
  install?: { promise: Promise<CommandReply>; run: InstallRun };
}

/** A package session being watched: counters are reported on top of what earlier sessions fetched. */
interface Watched {
  name: string;
  version: string;
  pkg: DeliveredPackage;
  baseline: { bytesFromPeers: number; bytesFromOrigin: number };
  /** When its progress was last saved to disk rather than only noted (see PROGRESS_SAVE_MS). */
  savedAt: number;
}

/**
 * What the controller's fetch and cancel commands do on this agent, and the release states the
 * control stream reports (see release-states.ts).
 *
 * - A fetch joins one already in flight for the same release; a release already complete is not
 *   fetched again (its session is found running).
 * - An install runs at most once per release: once it succeeded, later commands are answered
 *   with the recorded result; a failed install is run again only for another rollout id. An
 *   install the agent was stopped in the middle of counts as failed (it may have done part of its
 *   work). After a restart an unfinished fetch resumes, but its install waits for the controller
 *   to command it again: the rollout may have been aborted meanwhile.
 * - A cancel stops the package session (the verified pieces stay: a later fetch resumes) and
 *   kills a running install hook; a cancelled fetch is not resumed when the agent restarts.
 */
export class Deliveries {
  private readonly host: DeliveryHost;
  private readonly states: ReleaseStates;
  private readonly jobs = new Map<string, Job>();
  private readonly watched = new Map<string, Watched>();
  private readonly ticker: NodeJS.Timeout;
  private closing = false;

  constructor(private readonly options: DeliveriesOptions) {
    this.host = options.host;
    this.states = options.states;
    this.ticker = setInterval(() => this.reportProgress(), REPORT_MS);
    this.ticker.unref();
  }

  /**
   * At start, before any package resumes: an install the agent stopped in the middle of is
   * recorded as failed; a fetch that never reached the catalog cannot resume and failed.
   */
  recover(inCatalog: (name: string, version: string) => boolean): void {
    for (const state of this.states.list()) {
      if (state.phase === 'RELEASE_PHASE_INSTALLING') {
        this.states.update(state.name, state.version, {
          phase: 'RELEASE_PHASE_FAILED',
          message: 'the agent stopped while the install hook was running; it is not run again for the same rollout',
          exitCode: -1,
          install: { succeeded: false, rolloutId: state.rolloutId },
          installOwed: undefined,
        });
      } else if (state.phase === 'RELEASE_PHASE_FETCHING' && !inCatalog(state.name, state.version)) {
        this.states.update(state.name, state.version, { phase: 'RELEASE_PHASE_FAILED', message: 'the agent stopped before the release was verified', exitCode: -1 });
      }
    }
  }

  /** Whether a package of the catalog resumes at start: not when its fetch was cancelled. */
  shouldResume(name: string, version: string): boolean {
    const state = this.states.get(name, version);
    return !(state?.phase === 'RELEASE_PHASE_CANCELLED' && state.install === undefined);
  }

  /** The traffic class a resumed package keeps. */
  classOf(name: string, version: string): TrafficClass {
    return this.states.get(name, version)?.bandwidthClass ?? 'normal';
  }

  /** Progress of every remembered release, for the hello. */
  snapshot(): ReleaseProgressMessage[] {
    return this.states.list().map((state) => progressOf(this.withCounters(state)));
  }

  /** Every remembered state, with live counters (for the status API). */
  list(): ReleaseState[] {
    return this.states.list().map((state) => this.withCounters(state));
  }

  /** Called by the daemon for every package session it starts: phases follow the session. */
  track(name: string, version: string, pkg: DeliveredPackage): void {
    const key = releaseKey(name, version);
    const state = this.states.get(name, version);
    if (pkg.isComplete()) {
      if (!state || state.phase === 'RELEASE_PHASE_FETCHING' || state.phase === 'RELEASE_PHASE_UNSPECIFIED') {
        const { verifiedPieces, totalPieces } = pkg.progress();
        this.setPhase(name, version, { phase: settledPhase(state), verifiedPieces, totalPieces });
      }
      this.payOwedInstall(name, version);
      return;
    }
    this.watched.set(key, { name, version, pkg, baseline: { bytesFromPeers: state?.bytesFromPeers ?? 0, bytesFromOrigin: state?.bytesFromOrigin ?? 0 }, savedAt: Date.now() });
    this.setPhase(name, version, { phase: 'RELEASE_PHASE_FETCHING', ...this.countersOf(key), ...(state?.phase === 'RELEASE_PHASE_FETCHING' ? {} : { message: '', exitCode: -1 }) });
    pkg.completed.then(
      () => {
        const counters = this.countersOf(key);
        this.watched.delete(key);
        this.setPhase(name, version, { phase: settledPhase(this.states.get(name, version)), message: '', ...counters });
        this.payOwedInstall(name, version);
      },
      (err: Error) => {
        const counters = this.countersOf(key);
        this.watched.delete(key);
        if (this.closing) return;
        if (err instanceof FetchCancelledError) this.setPhase(name, version, { phase: 'RELEASE_PHASE_CANCELLED', message: 'cancelled', installOwed: undefined, ...counters });
        else this.setPhase(name, version, { phase: 'RELEASE_PHASE_FAILED', message: err.message, exitCode: -1, ...counters });
      },
    );
  }

  /** A FetchRelease command; resolves with its CommandResult. */
  async fetch(request: FetchRequest): Promise<CommandReply> {
    const key = releaseKey(request.name, request.version);
    const recorded = this.recordedInstall(request);
    if (recorded) return recorded;
    if (request.install) this.states.update(request.name, request.version, { installOwed: request.rolloutId });
    let fetched: Fetched;
    try {
      fetched = await this.fetchPackage(request);
    } catch (err) {
      return { ok: false, message: err instanceof FetchCancelledError ? 'cancelled' : (err as Error).message };
    }
    if (!request.install) return { ok: true, message: `${key} complete` };
    return this.install(request, fetched);
  }

  /** A CancelFetch command. */
  async cancel(name: string, version: string): Promise<CommandReply> {
    const key = releaseKey(name, version);
    const job = this.jobs.get(key);
    const stopped: string[] = [];
    if (job?.install) {
      job.install.run.cancelled = true;
      job.install.run.hook?.cancel();
      stopped.push('install hook');
    }
    if (job?.fetch) {
      job.fetch.abort.abort();
      stopped.push('fetch');
    } else if (this.host.activeOf(name, version)?.isComplete() === false) {
      // Resumed at start, with no command waiting on it.
      await this.host.stop(name, version);
      stopped.push('fetch');
    }
    await Promise.allSettled([job?.fetch?.promise, job?.install?.promise]);
    if (stopped.length === 0) return { ok: true, message: `${key}: nothing to cancel` };
    this.options.log.info({ release: key, stopped }, 'cancelled');
    return { ok: true, message: `${key}: cancelled ${stopped.join(' and ')}` };
  }

  /** The agent is stopping: running install hooks are ended (and recorded as failed). */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.ticker);
    const installs = [...this.jobs.values()].flatMap((job) => (job.install ? [job.install] : []));
    for (const install of installs) install.run.hook?.cancel();
    await Promise.allSettled(installs.map((install) => install.promise));
    await this.states.flush();
  }

  // ---------------------------------------------------------------- fetching

  private fetchPackage(request: FetchRequest): Promise<Fetched> {
    const { name, version, cls, rolloutId } = request;
    const key = releaseKey(name, version);
    const job = this.job(key);
    if (job.fetch) {
      // One normal-class command waiting is enough to lift the package out of the background.
      if (cls === 'normal' && job.fetch.wanted.cls === 'background') {
        job.fetch.wanted.cls = 'normal';
        const active = this.host.activeOf(name, version);
        if (active) active.gates.cls = 'normal';
        this.states.update(name, version, { bandwidthClass: 'normal' });
      }
      return job.fetch.promise;
    }
    const abort = new AbortController();
    const wanted = { cls };
    const promise = (async (): Promise<Fetched> => {
      const active = this.host.activeOf(name, version);
      if (active?.isComplete()) this.states.update(name, version, { rolloutId });
      else this.setPhase(name, version, { phase: 'RELEASE_PHASE_FETCHING', message: '', exitCode: -1, rolloutId, bandwidthClass: cls });
      if (active && cls === 'normal') active.gates.cls = 'normal';
      try {
        const release = await this.verifyPatiently(name, version, abort.signal);
        // The class as it stands now: a normal command may have joined while TUF verified.
        const pkg = await this.host.activate(release, wanted.cls);
        abort.signal.throwIfAborted();
        await Promise.race([pkg.completed, whenAborted(abort.signal)]);
        // A release fetched before may still show how an earlier command ended (failed, cancelled).
        const state = this.states.get(name, version);
        const settled = settledPhase(state);
        if (state && state.phase !== settled && state.phase !== 'RELEASE_PHASE_INSTALLING') this.setPhase(name, version, { phase: settled, message: '' });
        return { pkg, release };
      } catch (err) {
        if (this.closing) throw err;
        if (!abort.signal.aborted) {
          // A release already here (and maybe installed) stays as it is: only this command failed (TUF unreachable, say).
          if (!this.host.activeOf(name, version)?.isComplete()) this.setPhase(name, version, { phase: 'RELEASE_PHASE_FAILED', message: (err as Error).message, exitCode: -1 });
          throw err;
        }
        await this.host.stop(name, version);
        if (this.states.get(name, version)?.phase !== 'RELEASE_PHASE_CANCELLED') this.setPhase(name, version, { phase: 'RELEASE_PHASE_CANCELLED', message: 'cancelled', installOwed: undefined });
        throw new FetchCancelledError(key);
      }
    })();
    const entry = { promise, abort, wanted };
    job.fetch = entry;
    const done = () => {
      if (job.fetch === entry) job.fetch = undefined;
      this.forgetIdle(key, job);
    };
    promise.then(done, done);
    return promise;
  }

  /**
   * TUF verification, retried while the repository is unreachable (TRUST_UNAVAILABLE: the
   * controller restarting, a network blip) for up to VERIFY_PATIENCE_MS; anything else the
   * verifier says (bad signature, unknown release, expired metadata) fails at once.
   */
  private async verifyPatiently(name: string, version: string, signal: AbortSignal): Promise<VerifiedRelease> {
    const giveUpAt = Date.now() + VERIFY_PATIENCE_MS;
    for (let delay = 500; ; delay = Math.min(delay * 2, 8000)) {
      try {
        const release = await this.host.verify(name, version);
        signal.throwIfAborted();
        return release;
      } catch (err) {
        signal.throwIfAborted();
        if ((err as ShoalError).code !== 'TRUST_UNAVAILABLE' || Date.now() + delay > giveUpAt || this.closing) throw err;
        this.options.log.info({ release: releaseKey(name, version), err: (err as Error).message, retryMs: delay }, 'TUF repository unreachable; retrying');
        await Promise.race([new Promise((resolve) => setTimeout(resolve, delay)), whenAborted(signal)]);
      }
    }
  }

  // ---------------------------------------------------------------- installing

  /** The recorded result when this install must not run (again), else undefined. */
  private recordedInstall(request: FetchRequest): CommandReply | undefined {
    if (!request.install) return undefined;
    const state = this.states.get(request.name, request.version);
    const install = state?.install;
    if (!state || !install) return undefined;
    const key = releaseKey(request.name, request.version);
    const byRollout = install.rolloutId ? ` by rollout ${install.rolloutId}` : '';
    if (install.succeeded) {
      this.host.report(progressOf(state));
      return { ok: true, message: `${key} already installed${byRollout}` };
    }
    if (install.rolloutId !== request.rolloutId) return undefined;
    this.host.report(progressOf(state));
    return { ok: false, message: `${key}: the install failed before${byRollout} and is not run again for it: ${firstLine(state.message)}` };
  }

  private install(request: FetchRequest, fetched: Fetched): Promise<CommandReply> {
    const key = releaseKey(request.name, request.version);
    const job = this.job(key);
    if (job.install) return job.install.promise;
    // Checked again: another command may have installed it while this one waited for the fetch.
    const recorded = this.recordedInstall(request);
    if (recorded) return Promise.resolve(recorded);
    const chosen = chooseInstall(this.options.policy, request.name, fetched.release.install);
    if ('none' in chosen) {
      this.setPhase(request.name, request.version, { phase: 'RELEASE_PHASE_COMPLETE', message: chosen.none, rolloutId: request.rolloutId, installOwed: undefined });
      return Promise.resolve({ ok: true, message: `${key} complete; ${chosen.none}` });
    }
    const run: InstallRun = { cancelled: false };
    const entry = { promise: this.runInstall(request, fetched, chosen, run), run };
    job.install = entry;
    const done = () => {
      if (job.install === entry) job.install = undefined;
      this.forgetIdle(key, job);
    };
    entry.promise.then(done, done);
    return entry.promise;
  }

  private async runInstall(
    request: FetchRequest,
    { pkg, release }: Fetched,
    chosen: { command: string; timeoutSeconds: number; source: 'agent' | 'release' },
    run: InstallRun,
  ): Promise<CommandReply> {
    const { name, version, rolloutId } = request;
    const key = releaseKey(name, version);
    const started = this.setPhase(name, version, { phase: 'RELEASE_PHASE_INSTALLING', message: '', exitCode: -1, rolloutId });
    try {
      // Recorded before the hook runs: an agent stopped during it must not run it twice.
      await started;
    } catch (err) {
      this.setPhase(name, version, { phase: 'RELEASE_PHASE_FAILED', message: `the install was not started: ${(err as Error).message}`, exitCode: -1 });
      return { ok: false, message: `${key}: the install state could not be saved: ${(err as Error).message}` };
    }
    if (run.cancelled || this.closing) {
      this.setPhase(name, version, { phase: 'RELEASE_PHASE_CANCELLED', message: 'cancelled before the install hook started', exitCode: -1, ...(this.closing ? {} : { installOwed: undefined }) });
      return { ok: false, message: 'cancelled' };
    }
    this.options.log.info({ release: key, source: chosen.source, rolloutId }, 'running the install hook');
    run.hook = startInstallHook({
      command: chosen.command,
      cwd: pkg.packagePath,
      env: {
        ...this.options.baseEnv,
        SHOAL_PACKAGE_PATH: pkg.packagePath,
        SHOAL_RELEASE_NAME: name,
        SHOAL_RELEASE_VERSION: version,
        SHOAL_RELEASE_CHANNEL: release.channel,
        SHOAL_INFO_HASH: release.infoHash,
        SHOAL_ROLLOUT_ID: rolloutId,
      },
      timeoutMs: chosen.timeoutSeconds * 1000,
    });
    const outcome = await run.hook.outcome;
    this.options.countInstall(outcome.result);
    const succeeded = outcome.result === 'succeeded';
    const stoppedByAgent = outcome.result === 'cancelled' && this.closing;
    const reason = stoppedByAgent ? 'the agent stopped while the install hook was running' : outcome.reason;
    const phase: ReleasePhase = succeeded ? 'RELEASE_PHASE_INSTALLED' : outcome.result === 'cancelled' && !stoppedByAgent ? 'RELEASE_PHASE_CANCELLED' : 'RELEASE_PHASE_FAILED';
    await this.setPhase(name, version, {
      phase,
      message: succeeded ? outcome.output : `${reason}\n${outcome.output}`.trimEnd(),
      exitCode: outcome.exitCode,
      install: { succeeded, rolloutId },
      installOwed: undefined,
    }).catch(() => undefined);
    this.options.log.info({ release: key, result: outcome.result, exitCode: outcome.exitCode }, 'install hook finished');
    if (succeeded) return { ok: true, message: `${key} installed` };
    return { ok: false, message: outcome.result === 'cancelled' && !stoppedByAgent ? 'cancelled' : `${key}: ${reason}` };
  }

  /**
   * A release that completed with an install still owed and no command waiting on it (the agent
   * restarted since the command came): the install runs now, as the command asked.
   */
  private payOwedInstall(name: string, version: string): void {
    const state = this.states.get(name, version);
    const owed = state?.installOwed;
    if (owed === undefined || this.closing || this.jobs.get(releaseKey(name, version))) return;
    this.options.log.info({ release: releaseKey(name, version), rolloutId: owed }, 'running the install a command asked for before the agent restarted');
    void this.fetch({ name, version, install: true, cls: state?.bandwidthClass ?? 'normal', rolloutId: owed }).then((reply) =>
      this.options.log.info({ release: releaseKey(name, version), ...reply }, 'owed install finished'),
    );
  }

  // ---------------------------------------------------------------- states and reports

  /** Applies a change, reports it, and resolves once it is saved. */
  private setPhase(name: string, version: string, change: ReleaseStateChange): Promise<void> {
    const { state, saved } = this.states.update(name, version, change);
    this.host.report(progressOf(state));
    return saved;
  }

  private reportProgress(): void {
    for (const [key, watched] of this.watched) {
      const { name, version, pkg } = watched;
      const state = this.states.get(name, version);
      if (!state || state.phase !== 'RELEASE_PHASE_FETCHING' || pkg.isComplete()) continue;
      const counters = this.countersOf(key);
      if (counters.verifiedPieces === state.verifiedPieces && counters.bytesFromPeers === state.bytesFromPeers && counters.bytesFromOrigin === state.bytesFromOrigin) continue;
      const now = Date.now();
      if (now - watched.savedAt >= PROGRESS_SAVE_MS) {
        watched.savedAt = now;
        this.setPhase(name, version, counters).catch(() => undefined);
      } else {
        this.host.report(progressOf(this.states.note(name, version, counters)));
      }
    }
  }

  /** Counters of a watched package, on top of what earlier sessions fetched; none when not watched. */
  private countersOf(key: string): Partial<ReleaseState> {
    const watched = this.watched.get(key);
    if (!watched) return {};
    const live = watched.pkg.progress();
    return {
      verifiedPieces: live.verifiedPieces,
      totalPieces: live.totalPieces,
      bytesFromPeers: watched.baseline.bytesFromPeers + live.bytesFromPeers,
      bytesFromOrigin: watched.baseline.bytesFromOrigin + live.bytesFromOrigin,
    };
  }

  private withCounters(state: ReleaseState): ReleaseState {
    return { ...state, ...this.countersOf(releaseKey(state.name, state.version)) };
  }

  private job(key: string): Job {
    let job = this.jobs.get(key);
    if (!job) {
      job = {};
      this.jobs.set(key, job);
    }
    return job;
  }

  private forgetIdle(key: string, job: Job): void {
    if (!job.fetch && !job.install && this.jobs.get(key) === job) this.jobs.delete(key);
  }
}

/**
 * The phase of a complete release: what its last install left, or COMPLETE; still FETCHING while
 * an install is owed (a rollout must not count it as delivered before its install ran).
 */
function settledPhase(state: ReleaseState | undefined): ReleasePhase {
  if (state?.installOwed !== undefined) return 'RELEASE_PHASE_FETCHING';
  if (!state?.install) return 'RELEASE_PHASE_COMPLETE';
  return state.install.succeeded ? 'RELEASE_PHASE_INSTALLED' : 'RELEASE_PHASE_FAILED';
}

function whenAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? '';
}
