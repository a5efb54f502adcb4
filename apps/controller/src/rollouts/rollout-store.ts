import type { Redis } from 'ioredis';
import type { ReleasePhase } from '@shoal/proto';
import { KEY_PREFIX } from '../redis';
import type { BandwidthClassName, Gate } from './plan';

export type RolloutState = 'pending' | 'running' | 'paused' | 'succeeded' | 'failed' | 'aborted';

export const TERMINAL_STATES: ReadonlySet<RolloutState> = new Set(['succeeded', 'failed', 'aborted']);

/** What a rollout was asked to do, fixed at creation. */
export interface RolloutSpec {
  release: { name: string; version: string; infoHash: string };
  /** As given, normalised (parseSelector/formatSelector). */
  selector: string;
  /** As given, normalised (formatWave). */
  waves: string[];
  gate: Gate;
  /** HH:MM-HH:MM UTC, when set. */
  window: string | null;
  bandwidthClass: BandwidthClassName;
  /** Run the agents' install hooks once the release is verified. */
  install: boolean;
  createdBy: string;
}

export interface RolloutRecord {
  id: string;
  spec: RolloutSpec;
  state: RolloutState;
  /** Index of the wave in progress (or the last one, once finished). */
  wave: number;
  reason: string;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
}

export interface WaveRecord {
  members: string[];
  startedAt: number;
  passedAt: number | null;
  finishedAt: number | null;
}

/** Where one agent stands in a rollout, from its reports. */
export interface AgentOutcome {
  phase: ReleasePhase;
  message: string;
  exitCode: number;
  verifiedPieces: number;
  totalPieces: number;
  bytesFromPeers: number;
  bytesFromOrigin: number;
  at: number;
}

const SUCCESS_PHASES: ReadonlySet<ReleasePhase> = new Set(['RELEASE_PHASE_COMPLETE', 'RELEASE_PHASE_INSTALLED']);
const FAILURE_PHASES: ReadonlySet<ReleasePhase> = new Set(['RELEASE_PHASE_FAILED', 'RELEASE_PHASE_CANCELLED']);

export function outcomeKind(phase: ReleasePhase | undefined): 'succeeded' | 'failed' | 'pending' {
  if (phase === undefined) return 'pending';
  return SUCCESS_PHASES.has(phase) ? 'succeeded' : FAILURE_PHASES.has(phase) ? 'failed' : 'pending';
}

/** Wave index recorded for agents commanded after the final 100 % wave started (late joiners). */
export const LATE = -1;

const rolloutKey = (id: string) => `${KEY_PREFIX}rollout:${id}`;
const waveKey = (id: string, wave: number) => `${KEY_PREFIX}rollout:${id}:wave:${wave}`;
const commandedKey = (id: string) => `${KEY_PREFIX}rollout:${id}:commanded`;
const outcomesKey = (id: string) => `${KEY_PREFIX}rollout:${id}:outcomes`;
const INDEX = `${KEY_PREFIX}rollouts`;
/** Rollouts whose final 100 % wave has started: agents that join later and match get the release. */
const STANDING = `${KEY_PREFIX}rollouts:standing`;
/** Rollouts not yet in a terminal state, however old: what a restarted controller resumes. */
const LIVE = `${KEY_PREFIX}rollouts:live`;

/**
 * Moves a rollout to a new state only from one of the allowed ones, atomically: a pause racing
 * the wave job's "succeeded" must not resurrect a finished rollout. A terminal state also takes
 * it out of the live set.
 * KEYS[1] rollout, KEYS[2] live set; ARGV: allowed (comma list), new state, updatedAt, reason
 * ('' keeps), finishedAt ('' keeps), rollout id, '1' when the new state is terminal
 */
const TRANSITION = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == state then
    redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updatedAt', ARGV[3])
    if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
    if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'finishedAt', ARGV[5]) end
    if ARGV[7] == '1' then redis.call('SREM', KEYS[2], ARGV[6]) end
    return state
  end
end
return false
`;

/** Advances the wave index from ARGV[1] to ARGV[2] only if it still is ARGV[1] and the rollout is live. */
const ADVANCE = `
local wave = redis.call('HGET', KEYS[1], 'wave')
local state = redis.call('HGET', KEYS[1], 'state')
if wave ~= ARGV[1] or (state ~= 'running' and state ~= 'paused') then return 0 end
redis.call('HSET', KEYS[1], 'wave', ARGV[2], 'updatedAt', ARGV[3])
return 1
`;

/** The rollouts' records in Redis. Every write that decides something is atomic or set-once. */
export class RolloutStore {
  constructor(private readonly redis: Redis) {
    redis.defineCommand('shoalRolloutTransition', { numberOfKeys: 2, lua: TRANSITION });
    redis.defineCommand('shoalRolloutAdvance', { numberOfKeys: 1, lua: ADVANCE });
  }

  async create(record: RolloutRecord): Promise<void> {
    await this.redis
      .multi()
      .hset(rolloutKey(record.id), {
        spec: JSON.stringify(record.spec),
        state: record.state,
        wave: String(record.wave),
        reason: record.reason,
        createdAt: String(record.createdAt),
        updatedAt: String(record.updatedAt),
        finishedAt: '',
      })
      .zadd(INDEX, record.createdAt, record.id)
      .sadd(LIVE, record.id)
      .exec();
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const fields = await this.redis.hgetall(rolloutKey(id));
    return fields.spec ? recordOf(id, fields) : undefined;
  }

  /** Newest first. */
  async list(limit: number): Promise<RolloutRecord[]> {
    const ids = await this.redis.zrevrange(INDEX, 0, limit - 1);
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(rolloutKey(id));
    const results = (await pipeline.exec()) ?? [];
    return results.flatMap(([, fields], i) => {
      const f = fields as Record<string, string>;
      return f.spec ? [recordOf(ids[i] as string, f)] : [];
    });
  }

  /** The previous state when the move happened; undefined when the rollout is not in one of `from`. */
  async transition(id: string, from: RolloutState[], to: RolloutState, now: number, options: { reason?: string; finished?: boolean } = {}): Promise<RolloutState | undefined> {
    const previous = (await (this.redis as unknown as Scripts).shoalRolloutTransition(
      rolloutKey(id),
      LIVE,
      from.join(','),
      to,
      String(now),
      options.reason ?? '',
      options.finished ? String(now) : '',
      id,
      TERMINAL_STATES.has(to) ? '1' : '0',
    )) as RolloutState | null;
    return previous ?? undefined;
  }

  async advance(id: string, fromWave: number, now: number): Promise<boolean> {
    return (await (this.redis as unknown as Scripts).shoalRolloutAdvance(rolloutKey(id), String(fromWave), String(fromWave + 1), String(now))) === 1;
  }

  /** The wave's record, creating it with `members` if it was never started: its membership is decided once. */
  async startWave(id: string, wave: number, members: () => Promise<string[]>, now: number): Promise<WaveRecord> {
    const existing = await this.wave(id, wave);
    if (existing) return existing;
    const chosen = await members();
    // One transaction: a reader (the status API) must never see members without a start time.
    await this.redis.multi().hsetnx(waveKey(id, wave), 'members', JSON.stringify(chosen)).hsetnx(waveKey(id, wave), 'startedAt', String(now)).exec();
    return (await this.wave(id, wave)) as WaveRecord;
  }

  async wave(id: string, wave: number): Promise<WaveRecord | undefined> {
    const f = await this.redis.hgetall(waveKey(id, wave));
    if (!f.members) return undefined;
    return {
      members: JSON.parse(f.members) as string[],
      startedAt: Number(f.startedAt),
      passedAt: f.passedAt ? Number(f.passedAt) : null,
      finishedAt: f.finishedAt ? Number(f.finishedAt) : null,
    };
  }

  /** When the wave first passed its gate (set once: a soak counts from there). */
  async markWavePassed(id: string, wave: number, now: number): Promise<number> {
    await this.redis.hsetnx(waveKey(id, wave), 'passedAt', String(now));
    return Number(await this.redis.hget(waveKey(id, wave), 'passedAt'));
  }

  async finishWave(id: string, wave: number, now: number): Promise<void> {
    await this.redis.hsetnx(waveKey(id, wave), 'finishedAt', String(now));
  }

  /** Claims the right to command `agentId` in this rollout: true exactly once per agent, ever. */
  async claimCommand(id: string, agentId: string, wave: number, now: number): Promise<boolean> {
    return (await this.redis.hsetnx(commandedKey(id), agentId, `${wave}:${now}`)) === 1;
  }

  /** The agent's claim: the wave it was commanded in (LATE for late joiners) and when. */
  async claim(id: string, agentId: string): Promise<CommandClaim | undefined> {
    const raw = await this.redis.hget(commandedKey(id), agentId);
    return raw ? claimOf(raw) : undefined;
  }

  /** agentId -> the wave it was commanded in (LATE for late joiners). */
  async commanded(id: string): Promise<Map<string, number>> {
    const raw = await this.redis.hgetall(commandedKey(id));
    return new Map(Object.entries(raw).map(([agent, value]) => [agent, claimOf(value).wave]));
  }

  async isCommanded(id: string, agentId: string): Promise<boolean> {
    return (await this.redis.hexists(commandedKey(id), agentId)) === 1;
  }

  async recordOutcome(id: string, agentId: string, outcome: AgentOutcome): Promise<void> {
    await this.redis.hset(outcomesKey(id), agentId, JSON.stringify(outcome));
  }

  async outcomes(id: string): Promise<Map<string, AgentOutcome>> {
    const raw = await this.redis.hgetall(outcomesKey(id));
    const outcomes = new Map<string, AgentOutcome>();
    for (const [agent, json] of Object.entries(raw)) outcomes.set(agent, JSON.parse(json) as AgentOutcome);
    return outcomes;
  }

  async outcome(id: string, agentId: string): Promise<AgentOutcome | undefined> {
    const json = await this.redis.hget(outcomesKey(id), agentId);
    return json ? (JSON.parse(json) as AgentOutcome) : undefined;
  }

  async addStanding(id: string): Promise<void> {
    await this.redis.sadd(STANDING, id);
  }

  async removeStanding(id: string): Promise<void> {
    await this.redis.srem(STANDING, id);
  }

  async standing(): Promise<string[]> {
    return this.redis.smembers(STANDING);
  }

  /** Ids of the rollouts not in a terminal state. */
  async live(): Promise<string[]> {
    return this.redis.smembers(LIVE);
  }
}

export interface CommandClaim {
  wave: number;
  at: number;
}

function claimOf(raw: string): CommandClaim {
  const [wave, at] = raw.split(':');
  return { wave: Number(wave), at: Number(at) };
}

interface Scripts {
  shoalRolloutTransition(key: string, live: string, from: string, to: string, now: string, reason: string, finishedAt: string, id: string, terminal: string): Promise<unknown>;
  shoalRolloutAdvance(key: string, from: string, to: string, now: string): Promise<unknown>;
}

function recordOf(id: string, f: Record<string, string>): RolloutRecord {
  return {
    id,
    spec: JSON.parse(f.spec as string) as RolloutSpec,
    state: f.state as RolloutState,
    wave: Number(f.wave),
    reason: f.reason ?? '',
    createdAt: Number(f.createdAt),
    updatedAt: Number(f.updatedAt),
    finishedAt: f.finishedAt ? Number(f.finishedAt) : null,
  };
}
