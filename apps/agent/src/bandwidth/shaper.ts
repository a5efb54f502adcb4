import { TokenBucket } from './token-bucket';

/** Traffic class of a package (FetchRelease.bandwidth_class). */
export type TrafficClass = 'normal' | 'background';

/** Limits of one direction in bytes per second; 0 means unlimited. */
export interface DirectionLimits {
  limit: number;
  backgroundLimit: number;
}

/**
 * A bucket holds this many seconds of its rate (at least MIN_BURST_BYTES): short enough that the
 * rate holds over a second or two, long enough to smooth TLS records and disk reads.
 */
const BURST_SECONDS = 0.25;
const MIN_BURST_BYTES = 64 * 1024;

export function burstFor(rate: number): number {
  return Math.max(MIN_BURST_BYTES, rate * BURST_SECONDS);
}

/**
 * The caps of one direction (upload or download) for every package of the agent. Normal traffic
 * draws on the shared bucket (the normal limit). Background traffic draws on its own, lower
 * bucket and on the shared one, where it has strict low priority: it moves only while the shared
 * bucket holds at least half its burst, which normal traffic, let in as soon as the bucket is out
 * of debt, never leaves it while normal transfers want the whole limit. So background transfers
 * get what normal ones leave.
 *
 * Only traffic counted here is seen: other programs' traffic on the link is not detected, and
 * with no normal limit there is no shared budget to yield from (background traffic then keeps to
 * its own cap only).
 */
export class TrafficShaper {
  private readonly shared: TokenBucket | undefined;
  private readonly background: TokenBucket | undefined;

  constructor(limits: DirectionLimits, now: number) {
    this.shared = limits.limit > 0 ? new TokenBucket(limits.limit, burstFor(limits.limit), now) : undefined;
    this.background = limits.backgroundLimit > 0 ? new TokenBucket(limits.backgroundLimit, burstFor(limits.backgroundLimit), now) : undefined;
  }

  /** Counts bytes that moved (or are about to move) in this class. */
  record(cls: TrafficClass, bytes: number, now: number): void {
    this.shared?.take(bytes, now);
    if (cls === 'background') this.background?.take(bytes, now);
  }

  /** Milliseconds this class waits before moving more bytes (0: it may now). */
  delay(cls: TrafficClass, now: number): number {
    if (cls === 'normal') return this.shared?.msUntil(0, now) ?? 0;
    const own = this.background?.msUntil(0, now) ?? 0;
    const leftOver = this.shared ? this.shared.msUntil(this.shared.capacity / 2, now) : 0;
    return Math.max(own, leftOver);
  }
}
