import { open, readFile, rename } from 'node:fs/promises';
import type { ReleasePhase, ReleaseProgressMessage } from '@shoal/proto';
import type { TrafficClass } from '../bandwidth';

/** Where one release stands on this agent: what the control stream reports, plus what the agent needs to stay idempotent. */
export interface ReleaseState extends ReleaseProgressMessage {
  bandwidthClass: TrafficClass;
  /** The last install hook run for this release, and the rollout that asked for it. */
  install?: { succeeded: boolean; rolloutId: string };
  /**
   * The rollout of an accepted fetch-and-install command whose install has not run yet: after a
   * restart the agent finishes the fetch and runs it, instead of reporting a bare COMPLETE that
   * the rollout would count as installed.
   */
  installOwed?: string;
  /** Milliseconds since the epoch of the last change. */
  updatedAt: number;
}

export type ReleaseStateChange = Partial<Omit<ReleaseState, 'name' | 'version' | 'updatedAt'>>;

interface Logger {
  warn(details: object, message: string): void;
}

/** Releases remembered; older ones are forgotten first. */
export const REMEMBERED_RELEASES = 64;
const FILE_VERSION = 1;
const MAX_MESSAGE_LENGTH = 8192;
const PHASES: readonly ReleasePhase[] = [
  'RELEASE_PHASE_UNSPECIFIED',
  'RELEASE_PHASE_FETCHING',
  'RELEASE_PHASE_COMPLETE',
  'RELEASE_PHASE_INSTALLING',
  'RELEASE_PHASE_INSTALLED',
  'RELEASE_PHASE_FAILED',
  'RELEASE_PHASE_CANCELLED',
];
const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const VERSION = /^[0-9A-Za-z.+-]{1,64}$/;
const ROLLOUT_ID = /^[\x21-\x7e]{0,128}$/;

/** Rollout ids the agent records: up to 128 printable ASCII characters ('' outside rollouts). */
export function isRolloutId(value: unknown): value is string {
  return typeof value === 'string' && ROLLOUT_ID.test(value);
}

export const releaseKey = (name: string, version: string): string => `${name}@${version}`;

/**
 * The release states of this agent, kept in one small JSON file in the data folder (written to a
 * temporary file, synced, then renamed over the old one), bounded to the newest
 * REMEMBERED_RELEASES. A file that does not parse is ignored with a warning: the agent then
 * starts with no memory of earlier releases rather than not at all.
 */
export class ReleaseStates {
  private readonly states = new Map<string, ReleaseState>();
  /** A write that has not started yet: later changes join it. */
  private queued: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Changes made with `note` that no write has taken yet. */
  private unsaved = false;

  private constructor(
    private readonly path: string,
    private readonly log: Logger,
    private readonly limit: number,
  ) {}

  static async load(path: string, log: Logger, limit = REMEMBERED_RELEASES): Promise<ReleaseStates> {
    const store = new ReleaseStates(path, log, limit);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ path, err: (err as Error).message }, 'release states unreadable; starting without them');
      return store;
    }
    let entries: unknown[];
    try {
      const parsed = JSON.parse(text) as { version?: unknown; releases?: unknown };
      if (parsed?.version !== FILE_VERSION || !Array.isArray(parsed.releases)) throw new Error(`not a version ${FILE_VERSION} release state file`);
      entries = parsed.releases;
    } catch (err) {
      log.warn({ path, err: (err as Error).message }, 'release states file is corrupt; ignoring it');
      return store;
    }
    let dropped = 0;
    for (const entry of entries) {
      const state = checkedState(entry);
      if (state) store.states.set(releaseKey(state.name, state.version), state);
      else dropped++;
    }
    if (dropped > 0) log.warn({ path, dropped }, 'ignored malformed entries of the release states file');
    store.trim();
    return store;
  }

  get(name: string, version: string): ReleaseState | undefined {
    return this.states.get(releaseKey(name, version));
  }

  /** Newest first. */
  list(): ReleaseState[] {
    return [...this.states.values()].sort((a, b) => b.updatedAt - a.updatedAt);
  }

  /**
   * Applies `change` (creating the state if needed) and saves; the promise settles once the
   * change is on disk. A failed save is logged here, so callers that need not wait may ignore it.
   */
  update(name: string, version: string, change: ReleaseStateChange): { state: ReleaseState; saved: Promise<void> } {
    const state = this.apply(name, version, change);
    return { state, saved: this.saveLogged() };
  }

  /**
   * Applies `change` in memory only: it reaches the disk with the next `update` or `flush`. For
   * figures a crash may lose a few seconds of (progress counters), so that they cost no disk sync.
   */
  note(name: string, version: string, change: ReleaseStateChange): ReleaseState {
    const state = this.apply(name, version, change);
    this.unsaved = true;
    return state;
  }

  /** Resolves once every change made so far, noted ones included, is saved (or failed to be). */
  flush(): Promise<void> {
    if (this.unsaved) void this.saveLogged();
    return this.chain;
  }

  private apply(name: string, version: string, change: ReleaseStateChange): ReleaseState {
    const key = releaseKey(name, version);
    const state: ReleaseState = { ...(this.states.get(key) ?? blankState(name, version)), ...change, updatedAt: Date.now() };
    if (state.message.length > MAX_MESSAGE_LENGTH) state.message = state.message.slice(-MAX_MESSAGE_LENGTH);
    this.states.set(key, state);
    this.trim();
    return state;
  }

  private saveLogged(): Promise<void> {
    const saved = this.save();
    saved.catch((err: Error) => this.log.warn({ path: this.path, err: err.message }, 'could not save release states'));
    return saved;
  }

  private save(): Promise<void> {
    if (this.queued) return this.queued;
    const write = this.chain.then(() => {
      this.queued = undefined;
      return this.write();
    });
    this.queued = write;
    this.chain = write.catch(() => undefined);
    return write;
  }

  private async write(): Promise<void> {
    this.unsaved = false;
    const bytes = JSON.stringify({ version: FILE_VERSION, releases: this.list() });
    const temporary = `${this.path}.${process.pid}.tmp`;
    const file = await open(temporary, 'w', 0o600);
    try {
      await file.writeFile(bytes);
      // On disk before it replaces the old file: an install recorded must survive a power cut.
      await file.datasync();
    } finally {
      await file.close();
    }
    await rename(temporary, this.path);
  }

  private trim(): void {
    if (this.states.size <= this.limit) return;
    for (const old of this.list().slice(this.limit)) this.states.delete(releaseKey(old.name, old.version));
  }
}

/** The progress message of a state (what the control stream carries). */
export function progressOf(state: ReleaseState): ReleaseProgressMessage {
  const { name, version, phase, verifiedPieces, totalPieces, bytesFromPeers, bytesFromOrigin, message, rolloutId, exitCode } = state;
  return { name, version, phase, verifiedPieces, totalPieces, bytesFromPeers, bytesFromOrigin, message, rolloutId, exitCode };
}

function blankState(name: string, version: string): ReleaseState {
  return {
    name,
    version,
    phase: 'RELEASE_PHASE_UNSPECIFIED',
    verifiedPieces: 0,
    totalPieces: 0,
    bytesFromPeers: 0,
    bytesFromOrigin: 0,
    message: '',
    rolloutId: '',
    exitCode: -1,
    bandwidthClass: 'normal',
    updatedAt: 0,
  };
}

/** A state read back from the file, or undefined when the entry is malformed. */
function checkedState(entry: unknown): ReleaseState | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  const count = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  const ok =
    typeof e.name === 'string' &&
    NAME.test(e.name) &&
    typeof e.version === 'string' &&
    VERSION.test(e.version) &&
    PHASES.includes(e.phase as ReleasePhase) &&
    [e.verifiedPieces, e.totalPieces, e.bytesFromPeers, e.bytesFromOrigin, e.updatedAt].every(count) &&
    typeof e.message === 'string' &&
    e.message.length <= MAX_MESSAGE_LENGTH &&
    isRolloutId(e.rolloutId) &&
    typeof e.exitCode === 'number' &&
    Number.isSafeInteger(e.exitCode) &&
    (e.bandwidthClass === 'normal' || e.bandwidthClass === 'background') &&
    (e.install === undefined || isInstallRecord(e.install)) &&
    (e.installOwed === undefined || isRolloutId(e.installOwed));
  if (!ok) return undefined;
  const state: ReleaseState = {
    name: e.name as string,
    version: e.version as string,
    phase: e.phase as ReleasePhase,
    verifiedPieces: e.verifiedPieces as number,
    totalPieces: e.totalPieces as number,
    bytesFromPeers: e.bytesFromPeers as number,
    bytesFromOrigin: e.bytesFromOrigin as number,
    message: e.message as string,
    rolloutId: e.rolloutId as string,
    exitCode: e.exitCode as number,
    bandwidthClass: e.bandwidthClass as TrafficClass,
    updatedAt: e.updatedAt as number,
  };
  if (e.install !== undefined) {
    const { succeeded, rolloutId } = e.install as { succeeded: boolean; rolloutId: string };
    state.install = { succeeded, rolloutId };
  }
  if (e.installOwed !== undefined) state.installOwed = e.installOwed as string;
  return state;
}

function isInstallRecord(value: unknown): value is { succeeded: boolean; rolloutId: string } {
  if (typeof value !== 'object' || value === null) return false;
  const { succeeded, rolloutId } = value as Record<string, unknown>;
  return typeof succeeded === 'boolean' && isRolloutId(rolloutId);
}
