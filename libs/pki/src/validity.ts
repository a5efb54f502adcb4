import { PkiInputError } from './errors';
import { describeValue } from './names';

/** How far notBefore is moved back, so hosts whose clocks run a little slow accept a new certificate. */
export const CLOCK_SKEW_SECONDS = 5 * 60;

// X.509 times carry whole seconds and four-digit years (RFC 5280 4.1.2.5).
const LAST_ENCODABLE_INSTANT = Date.UTC(9999, 11, 31, 23, 59, 59);

/**
 * Checks a caller-supplied instant and truncates it to whole seconds, so the dates a function
 * returns are exactly the dates written into the certificate.
 */
export function wholeSecondsOf(now: unknown, field = 'now'): number {
  if (!(now instanceof Date) || !(now.getTime() >= 0 && now.getTime() <= LAST_ENCODABLE_INSTANT)) {
    throw new PkiInputError('PKI_INVALID_ARGUMENT', `${field} must be a valid Date from 1970 to 9999, got ${describeValue(now)}`);
  }
  return Math.floor(now.getTime() / 1000) * 1000;
}

export function requirePositiveInteger(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new PkiInputError('PKI_INVALID_ARGUMENT', `${field} must be an integer from 1 to ${max}; got ${describeValue(value)}`);
  }
  return value;
}
