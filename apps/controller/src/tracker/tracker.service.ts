import type { Redis } from 'ioredis';
import type { AnnounceRequest, AnnounceResponse, PeerMessage, ScrapeRequest, ScrapeResponse } from '@shoal/proto';
import { type LocatedPeer, type Location, PeerIndex } from '@shoal/topology';
import { TrackerError } from './tracker.errors';
import { type SwarmCounts, type SwarmKeys, TrackerStore } from './tracker.store';
import { validateAnnounce, validateAnnouncer, validateScrape } from './tracker.validation';

export interface TrackerOptions {
  /** Announce interval told to agents. */
  intervalSeconds: number;
  /** A peer that has not announced for this long is dead (may be fractional). */
  peerTtlSeconds: number;
  /** Peers returned when the request asks for 0. */
  defaultNumwant: number;
  /** Upper bound on peers returned. */
  maxNumwant: number;
  /** Share (0..1) of the returned peers kept for peers outside the announcer's region. */
  remoteShare: number;
  /** How stale the in-memory peer list of a swarm may get (default 1000 ms; 0: always fresh). */
  snapshotMs?: number;
  /** Prefix of every Redis key, e.g. 'shoal:'. */
  keyPrefix: string;
}

/** Who is announcing: taken from the client certificate (and the registry), never from the request. */
export interface Announcer {
  agentId: string;
  location: Location;
}

/** The JSON stored per peer in the records HASH. */
export interface PeerRecord {
  addresses: string[];
  port: number;
  seed: boolean;
  region: string;
  zone: string;
  site: string;
}

export interface TrackerStats {
  announces: number;
  scrapes: number;
  /** Peer-list reads from Redis (snapshot refreshes). */
  refreshes: number;
  /** Swarms with an in-memory snapshot. */
  cachedSwarms: number;
}

interface SwarmPeer extends LocatedPeer {
  readonly expiresAt: number;
  readonly message: PeerMessage;
}

interface Snapshot {
  readonly index: PeerIndex<SwarmPeer>;
  /** Clock time just before the read was sent: the snapshot holds every write before it. */
  readonly fetchedAt: number;
}

interface SwarmCache {
  snapshot?: Snapshot;
  refreshing?: Promise<Snapshot>;
  refreshesStarted: number;
  /**
   * Agents that sent STOPPED through this process since the snapshot was read, so that they
   * disappear at once here: agentId -> refreshesStarted when Redis confirmed the removal
   * (Infinity while in flight). A refresh that started later reflects the removal and clears it.
   */
  stopped: Map<string, number>;
}

/** Idle swarm caches examined for eviction per announce, at most. */
const EVICT_LIMIT = 4;

/**
 * The tracker: announce and scrape over Redis, with topology-aware peer lists.
 *
 * Writes: announces are applied by an atomic Lua script that prunes a bounded number of expired
 * members, upserts or removes each announcer, refreshes the keys' PEXPIRE and returns the live
 * seed / peer counts; the announces of one event-loop round share one call (TrackerStore). Any
 * number of controller processes can share one Redis.
 *
 * Reads: the peer list of a swarm is served from an in-memory snapshot of all its live peers
 * (indexed by PeerIndex, so choosing `numwant` peers costs O(numwant), not O(swarm)), read from
 * Redis at most once per `snapshotMs` per swarm and process; concurrent announces that find the
 * snapshot stale share one read (single-flight). This is what lets one process answer well over
 * 10,000 announces/s. A STARTED or COMPLETED announce (a new member, a new seed) drops the
 * snapshot, so the next announce reads afresh: agents started together find each other at once.
 * The trade-off left: a record changed by a periodic announce (new addresses, say) becomes
 * visible to other agents up to `snapshotMs` late. Peers never go the other way: an
 * expired peer is filtered by its expiry on every call, and a STOPPED sent through this process
 * hides the agent at once (through another process: within `snapshotMs`). The announcer is never
 * handed its own record. Seed / leech counts in responses come from the write, so they are fresh.
 *
 * Identity: the announcer is `announcer.agentId`, from the client certificate. No request field
 * names an agent, so a request can only create, refresh or remove the caller's own record.
 */
export class TrackerService {
  private readonly swarms = new Map<string, SwarmCache>();
  private readonly ttlMs: number;
  private readonly snapshotMs: number;
  private readonly idleMs: number;
  private readonly counters = { announces: 0, scrapes: 0, refreshes: 0 };
  private readonly store: TrackerStore;

  constructor(
    private readonly redis: Redis,
    private readonly options: TrackerOptions,
    private readonly clock: () => number,
    private readonly random: () => number,
  ) {
    validateOptions(options);
    this.ttlMs = Math.ceil(options.peerTtlSeconds * 1000);
    this.snapshotMs = options.snapshotMs ?? 1000;
    this.idleMs = Math.max(this.ttlMs, this.snapshotMs) * 2;
    this.store = new TrackerStore(redis, (swarm) => this.keys(swarm), this.ttlMs);
  }

  /** The Redis keys of a swarm (info-hash as lowercase hex). */
  keys(swarm: string): SwarmKeys {
    const base = `${this.options.keyPrefix}tracker:{${swarm}}:`;
    return { peers: `${base}peers`, records: `${base}records`, seeds: `${base}seeds` };
  }

  stats(): TrackerStats {
    return { ...this.counters, cachedSwarms: this.swarms.size };
  }

  async announce(announcer: Announcer, request: AnnounceRequest, observedAddress: string): Promise<AnnounceResponse> {
    const { agentId, location } = validateAnnouncer(announcer);
    const valid = validateAnnounce(request, observedAddress, this.options);
    this.counters.announces += 1;
    const now = this.clock();
    const record: PeerRecord = { addresses: valid.addresses, port: valid.port, seed: valid.seed, ...location };
    const write = (): Promise<SwarmCounts> =>
      this.store.write({ swarm: valid.swarm, agentId, now, record: JSON.stringify(record), seed: valid.seed, stopped: valid.stopped });

    if (valid.stopped) {
      const cache = this.swarms.get(valid.swarm);
      cache?.stopped.set(agentId, Infinity);
      try {
        const counts = await write();
        if (cache?.stopped.get(agentId) === Infinity) cache.stopped.set(agentId, cache.refreshesStarted);
        return { intervalSeconds: this.options.intervalSeconds, peers: [], ...counts };
      } catch (err) {
        if (cache?.stopped.get(agentId) === Infinity) cache.stopped.delete(agentId);
        throw unavailable(err);
      }
    }

    const cache = this.cacheFor(valid.swarm, now);
    cache.stopped.delete(agentId);
    let counts: SwarmCounts;
    let snapshot: Snapshot;
    try {
      [counts, snapshot] = await Promise.all([write(), this.snapshotOf(valid.swarm, cache, now)]);
    } catch (err) {
      throw unavailable(err);
    }
    // A join or a new seed must not wait out the snapshot: agents that start together (a rollout
    // wave) would all be told "nobody" and retry a second later. Periodic announces keep it.
    if (valid.changed) cache.snapshot = undefined;
    const stopped = cache.stopped;
    const chosen = snapshot.index.select({
      asker: location,
      askerId: agentId,
      count: valid.numwant,
      remoteShare: this.options.remoteShare,
      random: this.random,
      exclude: stopped.size === 0 ? (p) => p.expiresAt <= now : (p) => p.expiresAt <= now || stopped.has(p.id),
    });
    return { intervalSeconds: this.options.intervalSeconds, peers: chosen.map((p) => p.message), ...counts };
  }

  async scrape(request: ScrapeRequest): Promise<ScrapeResponse> {
    const hashes = validateScrape(request);
    this.counters.scrapes += 1;
    if (hashes.length === 0) return { swarms: [] };
    const live = `(${this.clock()}`;
    const pipeline = this.redis.pipeline();
    for (const hash of hashes) {
      const keys = this.keys(hash.toString('hex'));
      pipeline.zcount(keys.peers, live, '+inf');
      pipeline.zcount(keys.seeds, live, '+inf');
    }
    let results: [Error | null, unknown][] | null;
    try {
      results = await pipeline.exec();
    } catch (err) {
      throw unavailable(err);
    }
    if (!results) throw unavailable(new Error('pipeline aborted'));
    return {
      swarms: hashes.map((infoHash, i) => {
        const peers = replyNumber(results[2 * i]);
        const seeders = replyNumber(results[2 * i + 1]);
        return { infoHash, seeders, leechers: Math.max(0, peers - seeders) };
      }),
    };
  }

  /** The cache entry of a swarm, created on first use; evicts a few long-idle entries. */
  private cacheFor(swarm: string, now: number): SwarmCache {
    let evicted = 0;
    for (const [key, entry] of this.swarms) {
      if (evicted >= EVICT_LIMIT || key === swarm || entry.refreshing) break;
      if (entry.snapshot && now - entry.snapshot.fetchedAt <= this.idleMs) break;
      this.swarms.delete(key);
      evicted += 1;
    }
    let cache = this.swarms.get(swarm);
    if (!cache) this.swarms.set(swarm, (cache = { refreshesStarted: 0, stopped: new Map() }));
    return cache;
  }

  /** The current snapshot, refreshed (single-flight) once older than snapshotMs. */
  private snapshotOf(swarm: string, cache: SwarmCache, now: number): Promise<Snapshot> {
    const current = cache.snapshot;
    if (current && now >= current.fetchedAt && now - current.fetchedAt < this.snapshotMs) return Promise.resolve(current);
    if (!cache.refreshing) {
      const refreshing: Promise<Snapshot> = this.refresh(swarm, cache).finally(() => {
        if (cache.refreshing === refreshing) cache.refreshing = undefined;
      });
      cache.refreshing = refreshing;
    }
    return cache.refreshing;
  }

  private async refresh(swarm: string, cache: SwarmCache): Promise<Snapshot> {
    cache.refreshesStarted += 1;
    const generation = cache.refreshesStarted;
    this.counters.refreshes += 1;
    const fetchedAt = this.clock();
    const { peersWithExpiry: flat, records } = await this.store.read(swarm, fetchedAt);
    const peers: SwarmPeer[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const id = flat[i] as string;
      const json = records[id];
      const record = json === undefined ? undefined : parseRecord(json);
      if (!record) continue; // stopped between the two reads, or damaged: skip
      const message: PeerMessage = Object.freeze({
        agentId: id,
        addresses: Object.freeze([...record.addresses]) as string[],
        port: record.port,
        region: record.region,
        zone: record.zone,
        site: record.site,
        seed: record.seed,
      });
      peers.push({ id, location: { region: record.region, zone: record.zone, site: record.site }, expiresAt: Number(flat[i + 1]), message });
    }
    const snapshot: Snapshot = { index: new PeerIndex(peers), fetchedAt };
    cache.snapshot = snapshot;
    for (const [id, confirmedAt] of cache.stopped) if (confirmedAt < generation) cache.stopped.delete(id);
    if (this.swarms.get(swarm) === cache) {
      // Most recently refreshed last: idle swarms gather at the front, where cacheFor evicts.
      this.swarms.delete(swarm);
      this.swarms.set(swarm, cache);
    }
    return snapshot;
  }
}

function parseRecord(json: string): PeerRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  const ok =
    Array.isArray(r.addresses) &&
    r.addresses.every((a) => typeof a === 'string') &&
    typeof r.port === 'number' &&
    typeof r.seed === 'boolean' &&
    typeof r.region === 'string' &&
    typeof r.zone === 'string' &&
    typeof r.site === 'string';
  return ok ? (r as unknown as PeerRecord) : undefined;
}

function replyNumber(entry: [Error | null, unknown] | undefined): number {
  if (!entry) throw unavailable(new Error('missing pipeline reply'));
  const [err, value] = entry;
  if (err) throw unavailable(err);
  return Number(value);
}

function unavailable(err: unknown): TrackerError {
  if (err instanceof TrackerError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new TrackerError('TRACKER_UNAVAILABLE', `tracker store (Redis) failed: ${message}`, { cause: err });
}

function validateOptions(options: TrackerOptions): void {
  const problems: [string, string][] = [];
  const integer = (field: keyof TrackerOptions, min: number): void => {
    const v = options[field];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) problems.push([field, `must be an integer >= ${min}`]);
  };
  integer('intervalSeconds', 1);
  integer('defaultNumwant', 0);
  integer('maxNumwant', 0);
  if (options.snapshotMs !== undefined) integer('snapshotMs', 0);
  if (typeof options.peerTtlSeconds !== 'number' || !Number.isFinite(options.peerTtlSeconds) || options.peerTtlSeconds * 1000 < 1) {
    problems.push(['peerTtlSeconds', 'must be a number >= 0.001']);
  }
  if (typeof options.remoteShare !== 'number' || !(options.remoteShare >= 0 && options.remoteShare <= 1)) {
    problems.push(['remoteShare', 'must be a number from 0 to 1']);
  }
  if (typeof options.keyPrefix !== 'string') problems.push(['keyPrefix', 'must be a string']);
  if (problems.length === 0 && options.defaultNumwant > options.maxNumwant) problems.push(['defaultNumwant', 'must not exceed maxNumwant']);
  const first = problems[0];
  if (first) {
    throw new TrackerError('TRACKER_BAD_OPTIONS', `invalid tracker options: ${problems.map(([f, p]) => `${f} ${p}`).join('; ')}`, { field: first[0] });
  }
}
