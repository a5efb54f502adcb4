import type { SwarmConfig } from '../config';
import { SwarmConfigError } from '../errors';

/**
 * Upload rates of the hosts: 'equal' (every host `uploadBytesPerSecond`), 'fast-seed' (the seed
 * uploads 5x), 'mixed' (each downloader draws 1/4, 1/2, 1 or 2x; the seed 1x).
 */
export type RateProfile = 'equal' | 'fast-seed' | 'mixed';

/** Where the package comes from at the start. */
export type SimSource = 'seed' | 'webseed' | 'seed+webseed';

export interface OriginOptions {
  uploadBytesPerSecond: number;
  /** Fetches the origin serves at once; more are refused (HTTP 503: the host backs off). */
  concurrency: number;
}

export interface SimOptions {
  /** PRNG seed: the same seed and options replay the same run. */
  seed: number;
  /** Downloaders (honest and corrupt). */
  peers: number;
  fileBytes: number;
  pieceLength: number;
  source?: SimSource;
  profile?: RateProfile;
  /** A downloader's upload rate (the unit the profiles scale), bytes/s. */
  uploadBytesPerSecond?: number;
  /** Every downloader's download rate, bytes/s (default 2x upload: asymmetric access links). */
  downloadBytesPerSecond?: number;
  /** Overrides the profile's seed upload rate. */
  seedUploadBytesPerSecond?: number;
  /** The webseed origin (source 'webseed' or 'seed+webseed'). */
  origin?: Partial<OriginOptions>;
  /** One-way latency of every link (and of the origin), ms. */
  latencyMs?: number;
  /** Downloaders that send bad data in every block they serve. */
  corruptPeers?: number;
  /** The seed disconnects once it has uploaded this share of the file (e.g. 0.3). */
  seedLeavesAfter?: number;
  /** This many downloaders join at uniform random times in (0, `lateJoinWindowMs`] instead of 0. */
  lateJoiners?: number;
  lateJoinWindowMs?: number;
  /** Connections speak the fast extension (BEP 6): dropped requests are rejected explicitly. */
  fast?: boolean;
  /** Requests a host queues per connection before rejecting more (the wire's reqq). */
  reqq?: number;
  /** Settings of every host's Swarm. */
  swarm?: Partial<SwarmConfig>;
  /** Interval of each host's `tick` (phases are random). */
  tickMs?: number;
  /** Peers the tracker hands out per announce. */
  announcePeers?: number;
  /** Re-announce interval while a host has fewer than half its maxPeers connections. */
  announceIntervalMs?: number;
  /** Virtual time after which the run stops (hosts still downloading are reported incomplete). */
  maxVirtualMs?: number;
}

export type ResolvedSimOptions = Required<Omit<SimOptions, 'origin' | 'seedUploadBytesPerSecond' | 'seedLeavesAfter' | 'maxVirtualMs' | 'swarm'>> & {
  origin: OriginOptions | undefined;
  seedUploadBytesPerSecond: number;
  seedLeavesAfter: number | undefined;
  maxVirtualMs: number | undefined;
  swarm: Partial<SwarmConfig>;
};

const MiB = 1024 * 1024;

export function resolveSimOptions(options: SimOptions): ResolvedSimOptions {
  const problems: string[] = [];
  const positive = (name: string, value: number | undefined): void => {
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) problems.push(`${name} must be a positive number, not ${String(value)}`);
  };
  const count = (name: string, value: number | undefined): void => {
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) problems.push(`${name} must be an integer >= 0, not ${String(value)}`);
  };
  count('peers', options.peers);
  if (options.peers < 1) problems.push('peers must be at least 1');
  positive('fileBytes', options.fileBytes);
  positive('pieceLength', options.pieceLength);
  positive('uploadBytesPerSecond', options.uploadBytesPerSecond);
  positive('downloadBytesPerSecond', options.downloadBytesPerSecond);
  positive('seedUploadBytesPerSecond', options.seedUploadBytesPerSecond);
  positive('origin.uploadBytesPerSecond', options.origin?.uploadBytesPerSecond);
  positive('origin.concurrency', options.origin?.concurrency);
  positive('tickMs', options.tickMs);
  positive('maxVirtualMs', options.maxVirtualMs);
  count('corruptPeers', options.corruptPeers);
  count('lateJoiners', options.lateJoiners);
  count('announcePeers', options.announcePeers);
  if (options.latencyMs !== undefined && !(Number.isFinite(options.latencyMs) && options.latencyMs >= 0)) problems.push('latencyMs must be >= 0');
  if (options.seedLeavesAfter !== undefined && !(options.seedLeavesAfter >= 0)) problems.push('seedLeavesAfter must be >= 0');
  const source = options.source ?? 'seed';
  if (source === 'seed' && options.seedLeavesAfter !== undefined) problems.push('a seed that leaves needs a webseed to fall back on (source seed+webseed)');
  if ((options.corruptPeers ?? 0) + (options.lateJoiners ?? 0) > options.peers) problems.push('corruptPeers + lateJoiners must not exceed peers');
  if (problems.length > 0) throw new SwarmConfigError(`bad simulation options: ${problems.join('; ')}`);

  const upload = options.uploadBytesPerSecond ?? 4 * MiB;
  const profile = options.profile ?? 'equal';
  return {
    seed: options.seed,
    peers: options.peers,
    fileBytes: options.fileBytes,
    pieceLength: options.pieceLength,
    source,
    profile,
    uploadBytesPerSecond: upload,
    downloadBytesPerSecond: options.downloadBytesPerSecond ?? 2 * upload,
    seedUploadBytesPerSecond: options.seedUploadBytesPerSecond ?? (profile === 'fast-seed' ? 5 * upload : upload),
    origin: source === 'seed' ? undefined : { uploadBytesPerSecond: options.origin?.uploadBytesPerSecond ?? upload, concurrency: options.origin?.concurrency ?? 64 },
    latencyMs: options.latencyMs ?? 10,
    corruptPeers: options.corruptPeers ?? 0,
    seedLeavesAfter: options.seedLeavesAfter,
    lateJoiners: options.lateJoiners ?? 0,
    lateJoinWindowMs: options.lateJoinWindowMs ?? 10_000,
    fast: options.fast ?? true,
    reqq: options.reqq ?? 500,
    swarm: options.swarm ?? {},
    tickMs: options.tickMs ?? 1000,
    announcePeers: options.announcePeers ?? 50,
    announceIntervalMs: options.announceIntervalMs ?? 30_000,
    maxVirtualMs: options.maxVirtualMs,
  };
}

/** A downloader's upload rate under the profile ('mixed' draws from `random`). */
export function downloaderUpload(options: ResolvedSimOptions, random: () => number): number {
  if (options.profile !== 'mixed') return options.uploadBytesPerSecond;
  const factors = [0.25, 0.5, 1, 2];
  return options.uploadBytesPerSecond * (factors[Math.min(factors.length - 1, Math.floor(random() * factors.length))] as number);
}

/**
 * The completion-time lower bound of the fluid model (Kumar and Ross), seconds:
 * T* = max(F/u_s, F/d_min, N·F/(u_s + Σu_i)), with u_s the sources' upload (seed + origin), d_min
 * the slowest download, N and u_i over the honest downloaders (a corrupt peer's upload is useless).
 * It holds for a simultaneous start with sources that stay; late joiners and a leaving seed only
 * make the real optimum later.
 */
export function completionBound(fileBytes: number, sourceUpload: number, downloaders: readonly { up: number; down: number }[]): number {
  let uploadSum = sourceUpload;
  let slowestDownload = Infinity;
  for (const d of downloaders) {
    uploadSum += d.up;
    slowestDownload = Math.min(slowestDownload, d.down);
  }
  return Math.max(fileBytes / sourceUpload, fileBytes / slowestDownload, (downloaders.length * fileBytes) / uploadSum);
}
