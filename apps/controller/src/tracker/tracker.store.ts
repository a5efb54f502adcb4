import type { Redis } from 'ioredis';
import { ANNOUNCE_BATCH_LUA, ANNOUNCE_BATCH_SHA } from './tracker.scripts';

/** The Redis keys of one swarm; `{hex}` is a hash tag, so one swarm lives in one cluster slot. */
export interface SwarmKeys {
  /** ZSET agentId -> expiry (ms since the epoch, the controller clock). */
  peers: string;
  /** HASH agentId -> compact JSON {addresses, port, seed, region, zone, site}. */
  records: string;
  /** ZSET agentId -> expiry, seeds only (left == 0). */
  seeds: string;
}

/** One announce's change to its swarm. */
export interface AnnounceWrite {
  swarm: string;
  agentId: string;
  /** The controller clock when the announce arrived; the record expires ttl after it. */
  now: number;
  /** The record JSON (ignored when stopped). */
  record: string;
  seed: boolean;
  stopped: boolean;
}

/** Live members of a swarm right after a batch of writes. */
export interface SwarmCounts {
  seeders: number;
  leechers: number;
}

/** A swarm's live peers as Redis holds them: ids with their expiry, and the records by id. */
export interface SwarmRead {
  /** [agentId, expiry, agentId, expiry, ...] */
  peersWithExpiry: string[];
  records: Record<string, string>;
}

/** Expired members pruned per swarm and batch, at most (bounded work; the rest go on later calls). */
export const PRUNE_LIMIT = 64;
/**
 * Announces per script call, at most. Redis runs a script alone: 256 announces hold it for
 * about a millisecond. A flush with more sends several calls in the same round trip.
 */
export const MAX_WRITES_PER_SCRIPT = 256;

interface Deferred<T> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

interface PendingWrite extends Deferred<SwarmCounts> {
  write: AnnounceWrite;
}

interface PendingRead extends Deferred<SwarmRead> {
  swarm: string;
  /** Members expiring at or before this are not read. */
  now: number;
}

interface ScriptCall {
  writes: PendingWrite[];
  /** Swarm index of each write, into `keys` (three keys per swarm). */
  swarmOf: number[];
  keys: string[];
  args: (string | number)[];
}

type PipelineResult = [Error | null, unknown][];

/**
 * The tracker's Redis round trips, coalesced. Writes and peer-list reads asked for while the
 * event loop handles one round of I/O are sent together when it ends (setImmediate), as one
 * pipeline: the announces of all swarms as one script call (per MAX_WRITES_PER_SCRIPT), then the
 * reads, so a read sees every write queued before it. An announce used to be a script call of
 * its own; the per-command work of the client (building the command, its promise, its reply) and
 * of Redis (running a script) was a sixth of the controller's CPU and most of Redis's.
 *
 * One Redis, not a cluster: one script call touches the keys of several swarms.
 */
export class TrackerStore {
  private writes: PendingWrite[] = [];
  private reads: PendingRead[] = [];
  private flushScheduled = false;
  private scriptLoaded = false;

  constructor(
    private readonly redis: Redis,
    private readonly keysOf: (swarm: string) => SwarmKeys,
    private readonly ttlMs: number,
  ) {}

  /** Applies an announce; resolves with its swarm's live counts after the batch it went in. */
  write(write: AnnounceWrite): Promise<SwarmCounts> {
    return new Promise((resolve, reject) => {
      this.writes.push({ write, resolve, reject });
      this.scheduleFlush();
    });
  }

  /** A swarm's peers alive after `now`, read after the writes already queued. */
  read(swarm: string, now: number): Promise<SwarmRead> {
    return new Promise((resolve, reject) => {
      this.reads.push({ swarm, now, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const calls: ScriptCall[] = [];
    for (let i = 0; i < this.writes.length; i += MAX_WRITES_PER_SCRIPT) calls.push(this.scriptCall(this.writes.slice(i, i + MAX_WRITES_PER_SCRIPT)));
    const reads = this.reads;
    this.writes = [];
    this.reads = [];
    const pipeline = this.redis.pipeline();
    const loaded = this.scriptLoaded;
    for (const call of calls) {
      if (loaded) pipeline.evalsha(ANNOUNCE_BATCH_SHA, call.keys.length, ...call.keys, ...call.args);
      else pipeline.eval(ANNOUNCE_BATCH_LUA, call.keys.length, ...call.keys, ...call.args);
    }
    for (const read of reads) {
      const keys = this.keysOf(read.swarm);
      pipeline.zrangebyscore(keys.peers, `(${read.now}`, '+inf', 'WITHSCORES');
      pipeline.hgetall(keys.records);
    }
    const failAll = (err: unknown) => {
      for (const call of calls) for (const w of call.writes) w.reject(err);
      for (const read of reads) read.reject(err);
    };
    pipeline
      .exec()
      .then((results) => {
        if (!results) throw new Error('pipeline aborted');
        calls.forEach((call, i) => this.settleScriptCall(call, results[i]));
        reads.forEach((read, i) => settleRead(read, results, calls.length + 2 * i));
      })
      .catch(failAll); // settled promises ignore the second settlement
  }

  private scriptCall(writes: PendingWrite[]): ScriptCall {
    const index = new Map<string, number>();
    const keys: string[] = [];
    const swarmOf: number[] = [];
    let now = Infinity;
    const perWrite: (string | number)[] = [];
    for (const { write } of writes) {
      let swarm = index.get(write.swarm);
      if (swarm === undefined) {
        swarm = index.size;
        index.set(write.swarm, swarm);
        const k = this.keysOf(write.swarm);
        keys.push(k.peers, k.records, k.seeds);
      }
      swarmOf.push(swarm);
      now = Math.min(now, write.now);
      perWrite.push(swarm, write.agentId, write.now + this.ttlMs, write.stopped ? '' : write.record, write.stopped ? 'x' : write.seed ? 's' : 'l');
    }
    // Pruning and counting use the earliest clock of the batch: nothing is pruned, or left
    // uncounted, that was still alive for one of its announces.
    return { writes, swarmOf, keys, args: [now, this.ttlMs, PRUNE_LIMIT, ...perWrite] };
  }

  private settleScriptCall(call: ScriptCall, result: [Error | null, unknown] | undefined): void {
    const [err, reply] = result ?? [new Error('missing pipeline reply'), undefined];
    if (err && err.message.startsWith('NOSCRIPT')) {
      // The script cache was flushed (restart, failover): EVAL loads it again.
      this.scriptLoaded = false;
      this.redis.eval(ANNOUNCE_BATCH_LUA, call.keys.length, ...call.keys, ...call.args).then(
        (again) => this.settleCounts(call, again),
        (evalErr: unknown) => {
          for (const w of call.writes) w.reject(evalErr);
        },
      );
      return;
    }
    if (err) {
      for (const w of call.writes) w.reject(err);
      return;
    }
    this.settleCounts(call, reply);
  }

  private settleCounts(call: ScriptCall, reply: unknown): void {
    this.scriptLoaded = true;
    const swarms = call.keys.length / 3;
    if (!Array.isArray(reply) || reply.length !== 2 * swarms || !reply.every((n) => typeof n === 'number')) {
      const err = new Error(`unexpected announce script reply ${JSON.stringify(reply)}`);
      for (const w of call.writes) w.reject(err);
      return;
    }
    const counts = reply as number[];
    call.writes.forEach((w, i) => {
      const swarm = call.swarmOf[i] as number;
      const peers = counts[2 * swarm] as number;
      const seeders = counts[2 * swarm + 1] as number;
      w.resolve({ seeders, leechers: Math.max(0, peers - seeders) });
    });
  }
}

function settleRead(read: PendingRead, results: PipelineResult, at: number): void {
  const [zerr, flat] = results[at] ?? [new Error('missing pipeline reply'), undefined];
  const [herr, records] = results[at + 1] ?? [new Error('missing pipeline reply'), undefined];
  if (zerr || herr) return read.reject(zerr ?? herr);
  read.resolve({ peersWithExpiry: flat as string[], records: records as Record<string, string> });
}
