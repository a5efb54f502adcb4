/**
 * A token bucket on the caller's clock (milliseconds): tokens (bytes) accrue at `rate` per second
 * up to `capacity`. Taking may overdraw the bucket: bytes that already arrived on a socket cannot
 * be refused, so the debt is paid back by waiting before the next read or write.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    /** Bytes per second, > 0. */
    readonly rate: number,
    /** Most bytes that may pass at once after an idle spell, > 0. */
    readonly capacity: number,
    now: number,
  ) {
    if (!(Number.isFinite(rate) && rate > 0)) throw new RangeError(`rate must be a positive number of bytes per second, not ${rate}`);
    if (!(Number.isFinite(capacity) && capacity > 0)) throw new RangeError(`capacity must be a positive number of bytes, not ${capacity}`);
    this.tokens = capacity;
    this.updatedAt = now;
  }

  /** Tokens at `now`; negative while the bucket is in debt. */
  balance(now: number): number {
    this.refill(now);
    return this.tokens;
  }

  take(bytes: number, now: number): void {
    this.refill(now);
    this.tokens -= bytes;
  }

  /** Milliseconds from `now` until the balance reaches `level` (at most `capacity`); 0 once it has. */
  msUntil(level: number, now: number): number {
    this.refill(now);
    const target = Math.min(level, this.capacity);
    return this.tokens >= target ? 0 : ((target - this.tokens) / this.rate) * 1000;
  }

  private refill(now: number): void {
    // A clock that steps back (or repeats) adds nothing rather than draining the bucket.
    if (now <= this.updatedAt) return;
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.updatedAt) * this.rate) / 1000);
    this.updatedAt = now;
  }
}
