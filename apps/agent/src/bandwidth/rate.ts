/**
 * Bandwidth settings: bytes per second as a number, or a number with a unit, optionally followed
 * by "/s": B, kB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of 1024), and bit, kbit, mbit,
 * gbit (bits, powers of 1000, as `tc` writes them). Units are case-insensitive. 0 is unlimited.
 */
const UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  bit: 1 / 8,
  kbit: 1e3 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
};

/** Below this a limit cannot pace 16 KiB wire blocks sensibly; above it, it is a typo. */
const MIN_RATE = 1024;
const MAX_RATE = 1e12;

const RATE = /^(\d+(?:\.\d+)?)\s*([a-z]*)(?:\/s)?$/;

/** Bytes per second of a setting (0: unlimited); throws with the reason. */
export function parseRate(raw: unknown): number {
  let value: number;
  if (typeof raw === 'number') {
    value = raw;
  } else if (typeof raw === 'string' && raw.length <= 32) {
    const match = RATE.exec(raw.trim().toLowerCase());
    const factor = match ? UNITS[match[2] as string] : undefined;
    if (!match || factor === undefined) throw new Error('must be bytes per second: a number, or one with a unit (e.g. 20mbit, 5MiB, 800kB; 0 = unlimited)');
    value = Number(match[1]) * factor;
  } else {
    throw new Error('must be bytes per second: a number, or a string such as "20mbit" or "5MiB"');
  }
  if (!Number.isFinite(value) || value < 0) throw new Error('must be a rate of 0 (unlimited) or more');
  const bytes = Math.round(value);
  if (bytes !== 0 && (bytes < MIN_RATE || bytes > MAX_RATE)) throw new Error(`must be 0 (unlimited) or from ${MIN_RATE} bytes/s (1 KiB/s) to 1 TB/s`);
  return bytes;
}
