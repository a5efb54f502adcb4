/**
 * Bytes per second over a sliding window, updated from the caller's clock: an exponentially
 * weighted average of per-second samples, as libtorrent's stat counters.
 */
export class RateMeter {
  private pending = 0;
  private windowStart: number;
  private current = 0;
  total = 0;

  constructor(
    now: number,
    /** Weight of the newest one-second sample (0..1]. */
    private readonly alpha = 0.4,
  ) {
    this.windowStart = now;
  }

  add(bytes: number, now: number): void {
    this.roll(now);
    this.pending += bytes;
    this.total += bytes;
  }

  /** Bytes per second. */
  rate(now: number): number {
    this.roll(now);
    return this.current;
  }

  private roll(now: number): void {
    const elapsed = now - this.windowStart;
    if (elapsed < 1000) return;
    const seconds = Math.floor(elapsed / 1000);
    // The first second holds the pending bytes; the others (idle) decay the average.
    this.current += this.alpha * (this.pending - this.current);
    for (let s = 1; s < Math.min(seconds, 30); s++) this.current -= this.alpha * this.current;
    if (seconds >= 30) this.current = 0;
    this.pending = 0;
    this.windowStart += seconds * 1000;
  }
}
