import { MAX_NODES_PER_MESSAGE, MAX_VALUES_PER_MESSAGE } from './codec';
import { DhtError } from './errors';

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/**
 * The DHT's settings, with their defaults. The agent takes them as `dhtSettings`
 * (SHOAL_DHT_SETTINGS, a JSON object) in its configuration; every field is checked by `dhtConfig`.
 */
export interface DhtConfig {
  /**
   * Bucket size and replication factor (8..20): a lookup ends when the k closest nodes it knows
   * have answered, an announce goes to those k, replies carry 2k nodes (see `replyNodes`). 8 as in
   * BEP 5: fleet hosts are long-lived, so churn does not call for the paper's 20, and with 8 the
   * 10,000-node simulation meets every target (median 3 rounds, 100 % exact results with 20 %
   * dead or 10 % hostile nodes; test/sim.spec.ts). k = 20 saves little (median 3 rounds, p90 3
   * instead of 4) for 23 queries per lookup instead of 13 and 20 stored copies of each announce.
   */
  k: number;
  /** Queries a lookup keeps in flight at once (Kademlia's alpha). */
  alpha: number;
  /** Failed queries in a row after which a node is stale: replaced by any newcomer, evicted when a replacement waits. */
  maxFailures: number;
  /** A node not heard from for this long is questionable: pinged before a newcomer may take its place (BEP 5). */
  questionableAfterMs: number;
  /** A bucket untouched for this long is refreshed by a lookup of a random id in its range. */
  refreshIntervalMs: number;
  /** Verified nodes kept per bucket to take the place of nodes that go stale. */
  replacementCacheSize: number;
  /**
   * How nodes are grouped for the diversity limits: 'ip-prefix' (the /24 of an IPv4 address, the
   * /64 of an IPv6 address) or 'site' (the site label the adapter took from the node's verified
   * certificate; nodes without one fall back to their prefix). Loopback nodes are never limited:
   * they share this host, which is as trusted as this process.
   */
  diversity: 'ip-prefix' | 'site';
  /** Nodes of one group a bucket may hold (0: no limit). With 'site', raise it to about k / sites. */
  maxPerGroupPerBucket: number;
  /** Nodes of one group the whole table may hold (0: no limit). */
  maxPerGroupInTable: number;
  /** A query unanswered for this long has failed. */
  rpcTimeoutMs: number;
  /**
   * A query unanswered for this long no longer holds its lookup's slot: the lookup queries the next
   * node, and still takes the answer if it comes before `rpcTimeoutMs` (dead nodes cost this, not the full timeout).
   */
  rpcSlowMs: number;
  /** Queries in flight per node, all lookups and pings together (bounds memory). */
  maxPendingRpcs: number;
  /** Queries one lookup may send; a lookup that reaches it ends with `exhausted` set. */
  lookupMaxQueries: number;
  /**
   * A node whose referrals failed this many times before any of them answered is distrusted for the
   * rest of the lookup: contacts only it named are not queried. Stops a hostile node's invented
   * contacts from holding up a lookup one timeout at a time.
   */
  distrustAfterFailures: number;
  /** Token secrets rotate this often; a token stays valid for two rotations (BEP 5: 5 and 10 minutes). */
  tokenRotationMs: number;
  /** An announced peer is forgotten this long after its last announce. */
  peerTtlMs: number;
  /** The info-hashes this node announces are announced again this often (below `peerTtlMs`). */
  reannounceIntervalMs: number;
  /** Peers stored per info-hash; the oldest announce makes room for a new one. */
  maxPeersPerInfoHash: number;
  /** Peers stored in all; the oldest announce of any info-hash makes room. */
  maxStoredPeers: number;
  /** Peers returned in one get_peers reply (a random sample when more are stored). */
  maxPeersPerReply: number;
}

export const DEFAULT_DHT_CONFIG: Readonly<DhtConfig> = Object.freeze({
  k: 8,
  alpha: 3,
  maxFailures: 2,
  questionableAfterMs: 15 * MINUTE,
  refreshIntervalMs: 15 * MINUTE,
  replacementCacheSize: 8,
  diversity: 'ip-prefix',
  maxPerGroupPerBucket: 2,
  // A failed subnet takes at most 2 of a bucket's 8 nodes; no group holds more than about a sixth
  // of a table (about 90 nodes in the 10,000-node simulation).
  maxPerGroupInTable: 16,
  rpcTimeoutMs: 5 * SECOND,
  rpcSlowMs: 1 * SECOND,
  maxPendingRpcs: 256,
  // In the 10,000-node simulation a lookup sends 13 queries (p99 16); with 10 % hostile nodes 18
  // (p99 31), with 20 % dead and 10 % hostile 22 (p99 41). The cap only stops a runaway lookup.
  lookupMaxQueries: 160,
  distrustAfterFailures: 2,
  tokenRotationMs: 5 * MINUTE,
  peerTtlMs: 30 * MINUTE,
  reannounceIntervalMs: 15 * MINUTE,
  maxPeersPerInfoHash: 256,
  maxStoredPeers: 16_384,
  maxPeersPerReply: 32,
} satisfies DhtConfig);

const CHOICES: { [K in keyof DhtConfig]?: readonly string[] } = {
  diversity: ['ip-prefix', 'site'],
};

/** Inclusive integer ranges; the protocol caps bound what a message can carry. */
const RANGES: { [K in keyof DhtConfig]?: readonly [number, number] } = {
  k: [8, Math.min(20, MAX_NODES_PER_MESSAGE)],
  alpha: [1, 16],
  maxFailures: [1, 16],
  questionableAfterMs: [SECOND, 24 * 60 * MINUTE],
  refreshIntervalMs: [SECOND, 24 * 60 * MINUTE],
  replacementCacheSize: [0, 64],
  maxPerGroupPerBucket: [0, 1024],
  maxPerGroupInTable: [0, 1_000_000],
  rpcTimeoutMs: [10, 5 * MINUTE],
  rpcSlowMs: [10, 5 * MINUTE],
  maxPendingRpcs: [1, 65_536],
  lookupMaxQueries: [1, 10_000],
  distrustAfterFailures: [1, 1024],
  tokenRotationMs: [SECOND, 24 * 60 * MINUTE],
  peerTtlMs: [SECOND, 7 * 24 * 60 * MINUTE],
  reannounceIntervalMs: [SECOND, 7 * 24 * 60 * MINUTE],
  maxPeersPerInfoHash: [1, 1_000_000],
  maxStoredPeers: [1, 10_000_000],
  maxPeersPerReply: [1, MAX_VALUES_PER_MESSAGE],
};

/**
 * Nodes in a find_node or get_peers reply: 2k (BEP 5 says k), at most MAX_NODES_PER_MESSAGE. The
 * k closest nodes a responder knows include the silently dead ones it has not noticed yet; twice
 * as many still hold the k closest live ones, which is what lookups must find. In the 10,000-node
 * simulation with 20 % of nodes dead, replies of k let 69.6 % of lookups find exactly the k closest
 * live nodes (median 4 rounds); replies of 2k, all of them (median 3 rounds).
 */
export function replyNodes(config: Pick<DhtConfig, 'k'>): number {
  return Math.min(2 * config.k, MAX_NODES_PER_MESSAGE);
}

/** A refused value as a message shows it: JSON would print NaN and Infinity as null. */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return 'an object';
    }
  }
  return typeof value === 'function' ? 'a function' : String(value);
}

/** Defaults overlaid with `overrides`; every bad field is named in one DHT_BAD_CONFIG error. */
export function dhtConfig(overrides: Partial<DhtConfig> = {}): DhtConfig {
  // Settings come from a configuration file: `dht:` left empty parses as null.
  if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) {
    throw new DhtError('DHT_BAD_CONFIG', `bad dht settings: must be an object of settings, not ${shown(overrides)}`);
  }
  const config = { ...DEFAULT_DHT_CONFIG } as DhtConfig;
  const fields = config as unknown as Record<string, unknown>;
  const problems: string[] = [];
  for (const [key, value] of Object.entries(overrides) as [keyof DhtConfig, unknown][]) {
    if (value === undefined) continue;
    // Own keys only: `in` would take toString or __proto__ (from JSON) for settings.
    if (!Object.hasOwn(DEFAULT_DHT_CONFIG, key)) {
      problems.push(`${key}: unknown setting`);
      continue;
    }
    const choices = CHOICES[key];
    if (choices) {
      if (typeof value === 'string' && choices.includes(value)) fields[key] = value;
      else problems.push(`${key}: must be one of ${choices.join(', ')}, not ${shown(value)}`);
      continue;
    }
    const [min, max] = RANGES[key] as readonly [number, number];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      problems.push(`${key}: must be an integer in ${min}..${max}, not ${shown(value)}`);
      continue;
    }
    fields[key] = value;
  }
  if (config.alpha > config.k) problems.push(`alpha (${config.alpha}) must not exceed k (${config.k})`);
  if (config.rpcSlowMs > config.rpcTimeoutMs) problems.push(`rpcSlowMs (${config.rpcSlowMs}) must not exceed rpcTimeoutMs (${config.rpcTimeoutMs})`);
  if (config.reannounceIntervalMs >= config.peerTtlMs) {
    problems.push(`reannounceIntervalMs (${config.reannounceIntervalMs}) must be below peerTtlMs (${config.peerTtlMs}), or announced peers lapse between announces`);
  }
  if (config.maxPeersPerInfoHash > config.maxStoredPeers) {
    problems.push(`maxPeersPerInfoHash (${config.maxPeersPerInfoHash}) must not exceed maxStoredPeers (${config.maxStoredPeers})`);
  }
  if (problems.length > 0) throw new DhtError('DHT_BAD_CONFIG', `bad dht settings: ${problems.join('; ')}`);
  return config;
}
