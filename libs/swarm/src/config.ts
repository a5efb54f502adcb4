import { SwarmConfigError } from './errors';
import { type Choker, FleetChoker, TitForTatChoker } from './policies/choker';
import { type PiecePicker, RandomPicker, RarestFirstPicker } from './policies/picker';
import { BandwidthDelayPipeline, FixedPipeline, type PipelinePolicy } from './policies/pipeline';
import { type PeerRanking, RandomRanking, TopologyRanking } from './policies/ranking';
import { AnnounceAllSeeding, type SeedingPolicy, SuperSeeding } from './policies/seeding';
import { AssistWebseed, FallbackWebseed, NeverWebseed, type WebseedPolicy } from './policies/webseed';

/**
 * The swarm's settings, with their defaults. Policies are chosen by name; the numbers tune them.
 * The agent exposes these under `swarm.*` in its configuration file.
 */
export interface SwarmConfig {
  /** 'rarest-first' (random for the first `randomFirstPieces`, then rarest) or 'random'. */
  picker: 'rarest-first' | 'random';
  randomFirstPieces: number;
  /** 'bandwidth-delay' (rate x `targetLatencyMs`, within min/max depth) or 'fixed' (`maxQueueDepth`). */
  pipeline: 'bandwidth-delay' | 'fixed';
  targetLatencyMs: number;
  minQueueDepth: number;
  maxQueueDepth: number;
  /** 'tit-for-tat' (leeching: best senders; seeding: round-robin; + optimistic) or 'fleet' (all interested up to the slots). */
  choker: 'tit-for-tat' | 'fleet';
  /** Regular unchoke slots (one optimistic slot comes on top). */
  unchokeSlots: number;
  /** How often the choker runs. */
  rechokeMs: number;
  /** 'super-seed' (reveal least-copied pieces peer by peer while seeding) or 'announce-all'. */
  seeding: 'super-seed' | 'announce-all';
  /** Pieces revealed to one peer at a time by a super-seed. */
  revealAhead: number;
  /** 'topology' (site > zone > region with a remote quota) or 'random': which peers to dial. */
  ranking: 'topology' | 'random';
  /** Share of dialled peers kept for remote sites. */
  remoteShare: number;
  /**
   * 'assist' (fallback, and the origin delivers its share of the pieces alongside the seeds),
   * 'fallback' (origin only when peers cannot serve) or 'never'.
   */
  webseed: 'assist' | 'fallback' | 'never';
  /** Origin requests in flight at once for this package. */
  webseedConcurrency: number;
  webseedNoPeersMs: number;
  webseedUnavailableMs: number;
  /** Below this peer download rate (bytes/s) for `webseedSlowMs`, the origin helps (0: never). */
  webseedSlowBytesPerSecond: number;
  webseedSlowMs: number;
  /** Connections per package; more are closed at once (PEER_LIMIT). */
  maxPeers: number;
  /** Pieces being assembled at once (memory: this x piece length). */
  maxPiecesInFlight: number;
  /** A peer that unchoked us but sent nothing for this long while we wait is snubbed. */
  snubMs: number;
  /** Strikes (pieces with bad blocks from a peer) before it is banned. */
  strikesToBan: number;
  /** At most this many peers fetch one block at a time in end game. */
  endGameRequesters: number;
  /** End game duplicates a block only once it has been outstanding this long (duplicates cost bytes). */
  endGameDelayMs: number;
}

export const DEFAULT_SWARM_CONFIG: Readonly<SwarmConfig> = Object.freeze({
  picker: 'rarest-first',
  randomFirstPieces: 4,
  pipeline: 'bandwidth-delay',
  // Enough to keep a fast loopback or LAN link busy while disk writes and hashing add latency.
  targetLatencyMs: 1000,
  minQueueDepth: 32,
  maxQueueDepth: 512,
  choker: 'tit-for-tat',
  // A piece reaches a new peer in (slots + 1) x piece / upload: on links that one connection can
  // fill (a fleet's LAN), fewer slots spread pieces sooner and leave fewer peers half-served.
  // Measured in the lab (npm run bench:swarm, 64 MiB, 20 Mbit/s uplinks): 16 downloaders 0.82
  // with 8 slots, 0.85-0.86 with 4 (0.80 with every interested peer unchoked); 8 downloaders
  // 0.87 with 8, 0.88-0.93 with 4.
  unchokeSlots: 4,
  rechokeMs: 10_000,
  seeding: 'super-seed',
  // The first window of each peer (it widens as the peer takes what it is shown). With 2, a seed
  // five times faster than its peers ran at half its uplink until every piece was out once (lab
  // scenario b: 0.76 of T*; 0.81-0.82 with 8); equal uplinks do the same with 2, 4 or 8.
  revealAhead: 8,
  ranking: 'topology',
  remoteShare: 0.2,
  // The design keeps the origin a fallback. 'assist' is faster where the origin's bandwidth is
  // there to use: in the simulator at the lab's scale (64 MiB, 20 Mbit/s, origin capped like a
  // host), 8 downloaders 27.7 -> 23.6 s, 16: 28.5 -> 26.0 s, for origin 0.07 -> 0.43 and 0.17 ->
  // 0.50 copies.
  webseed: 'fallback',
  webseedConcurrency: 4,
  webseedNoPeersMs: 3000,
  webseedUnavailableMs: 5000,
  webseedSlowBytesPerSecond: 0,
  webseedSlowMs: 10_000,
  maxPeers: 50,
  maxPiecesInFlight: 32,
  snubMs: 60_000,
  strikesToBan: 3,
  endGameRequesters: 2,
  endGameDelayMs: 1000,
} satisfies SwarmConfig);

const CHOICES: { [K in keyof SwarmConfig]?: readonly string[] } = {
  picker: ['rarest-first', 'random'],
  pipeline: ['bandwidth-delay', 'fixed'],
  choker: ['tit-for-tat', 'fleet'],
  seeding: ['super-seed', 'announce-all'],
  ranking: ['topology', 'random'],
  webseed: ['assist', 'fallback', 'never'],
};

const MINIMA: { [K in keyof SwarmConfig]?: number } = {
  randomFirstPieces: 0,
  targetLatencyMs: 1,
  minQueueDepth: 1,
  maxQueueDepth: 1,
  unchokeSlots: 1,
  rechokeMs: 1,
  revealAhead: 1,
  webseedConcurrency: 1,
  webseedNoPeersMs: 0,
  webseedUnavailableMs: 0,
  webseedSlowBytesPerSecond: 0,
  webseedSlowMs: 0,
  maxPeers: 1,
  maxPiecesInFlight: 1,
  snubMs: 1,
  strikesToBan: 1,
  endGameRequesters: 1,
  endGameDelayMs: 0,
};

/** A refused value as a message shows it: JSON would print NaN and Infinity as null, and throws on a bigint. */
function shown(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'object':
      try {
        return JSON.stringify(value);
      } catch {
        return 'an object';
      }
    case 'function':
      return 'a function';
    default:
      return String(value);
  }
}

/** Defaults overlaid with `overrides`; every bad field is named in one SwarmConfigError. */
export function swarmConfig(overrides: Partial<SwarmConfig> = {}): SwarmConfig {
  // Settings come from a configuration file: `swarm:` left empty parses as null.
  if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) {
    throw new SwarmConfigError(`bad swarm settings: must be an object of settings, not ${shown(overrides)}`);
  }
  const config = { ...DEFAULT_SWARM_CONFIG } as SwarmConfig;
  const problems: string[] = [];
  for (const [key, value] of Object.entries(overrides) as [keyof SwarmConfig, unknown][]) {
    if (value === undefined) continue;
    // Own keys only: `in` would take toString or __proto__ (from JSON) for settings.
    if (!Object.hasOwn(DEFAULT_SWARM_CONFIG, key)) {
      problems.push(`${key}: unknown setting`);
      continue;
    }
    const choices = CHOICES[key];
    if (choices) {
      if (typeof value !== 'string' || !choices.includes(value)) problems.push(`${key}: must be one of ${choices.join(', ')}, not ${shown(value)}`);
      else (config as unknown as Record<string, unknown>)[key] = value;
      continue;
    }
    const min = MINIMA[key] ?? 0;
    const integer = key !== 'remoteShare';
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isSafeInteger(value)) || (key === 'remoteShare' && value > 1)) {
      problems.push(`${key}: must be ${key === 'remoteShare' ? 'a number in 0..1' : `an integer >= ${min}`}, not ${shown(value)}`);
      continue;
    }
    (config as unknown as Record<string, unknown>)[key] = value;
  }
  if (config.minQueueDepth > config.maxQueueDepth) problems.push(`minQueueDepth (${config.minQueueDepth}) must not exceed maxQueueDepth (${config.maxQueueDepth})`);
  if (problems.length > 0) throw new SwarmConfigError(`bad swarm settings: ${problems.join('; ')}`);
  return config;
}

function webseedPolicy(config: SwarmConfig): WebseedPolicy {
  const timings = { noPeersMs: config.webseedNoPeersMs, unavailableMs: config.webseedUnavailableMs, slowMs: config.webseedSlowMs };
  if (config.webseed === 'never') return new NeverWebseed();
  return config.webseed === 'assist' ? new AssistWebseed(timings) : new FallbackWebseed(timings);
}

/** The policy objects a config names. */
export interface SwarmPolicies {
  picker: PiecePicker;
  pipeline: PipelinePolicy;
  choker: Choker;
  seeding: SeedingPolicy;
  ranking: PeerRanking;
  webseed: WebseedPolicy;
}

export function policiesOf(config: SwarmConfig): SwarmPolicies {
  return {
    picker: config.picker === 'random' ? new RandomPicker() : new RarestFirstPicker(config.randomFirstPieces),
    pipeline:
      config.pipeline === 'fixed'
        ? new FixedPipeline(config.maxQueueDepth)
        : new BandwidthDelayPipeline(config.targetLatencyMs, config.minQueueDepth, config.maxQueueDepth),
    choker: config.choker === 'fleet' ? new FleetChoker() : new TitForTatChoker(),
    seeding: config.seeding === 'announce-all' ? new AnnounceAllSeeding() : new SuperSeeding(config.revealAhead),
    ranking: config.ranking === 'random' ? new RandomRanking() : new TopologyRanking(config.remoteShare),
    webseed: webseedPolicy(config),
  };
}
