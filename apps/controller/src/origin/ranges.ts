/**
 * What to answer to a GET/HEAD of a file, from its request headers (RFC 9110 sections 13 and 14).
 * Pure: the caller passes the headers and the file's size and validators.
 */
export type RangeAnswer =
  /** 200 with the whole file. */
  | { kind: 'full' }
  /** 206 with bytes `start`..`end` inclusive. */
  | { kind: 'partial'; start: number; end: number }
  /** 416 with `Content-Range: bytes *\/size`. */
  | { kind: 'unsatisfiable'; reason: string };

/**
 * Resolves a Range header against a file of `size` bytes.
 *
 * - No header, or a unit other than `bytes`: the whole file (RFC 9110 says to ignore ranges in
 *   units the server does not know).
 * - One `bytes=` range: `a-b`, `a-` or `-suffix`, clamped to the file.
 * - Several ranges (`bytes=0-1,5-6`) are refused with 416 rather than answered with the whole
 *   file: this origin stands in for a CDN whose bytes are counted, and a client must not turn a
 *   small multi-range request into a full-file transfer. Webseed clients (BEP 19) send one range.
 * - A `bytes=` value that does not parse, a range that starts past the end, `-0`, and any range of
 *   an empty file are unsatisfiable (416).
 */
export function resolveRange(header: string | undefined, size: number): RangeAnswer {
  if (header === undefined) return { kind: 'full' };
  const unit = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)=(.*)$/s.exec(header);
  if (!unit || (unit[1] as string).toLowerCase() !== 'bytes') return { kind: 'full' };
  const spec = unit[2] as string;
  if (spec.includes(',')) return { kind: 'unsatisfiable', reason: 'multiple ranges are not served; ask for one range per request' };
  const match = /^\s*(\d*)-(\d*)\s*$/.exec(spec);
  if (!match || (match[1] === '' && match[2] === '')) return { kind: 'unsatisfiable', reason: `malformed range ${JSON.stringify(header.slice(0, 80))}` };
  if (size === 0) return { kind: 'unsatisfiable', reason: 'the file is empty' };
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return { kind: 'unsatisfiable', reason: 'an empty suffix range' };
    return { kind: 'partial', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const last = match[2] === '' ? Infinity : Number(match[2]);
  if (last < start) return { kind: 'unsatisfiable', reason: 'the range ends before it starts' };
  if (start >= size) return { kind: 'unsatisfiable', reason: `the range starts at or past the end of the file (${size} bytes)` };
  return { kind: 'partial', start, end: Math.min(last, size - 1) };
}

export interface Validators {
  /** Strong entity tag, quoted. */
  etag: string;
  lastModified: Date;
}

/** True when If-None-Match / If-Modified-Since say the client's copy is current (answer 304). */
export function notModified(headers: { ifNoneMatch?: string | undefined; ifModifiedSince?: string | undefined }, validators: Validators): boolean {
  if (headers.ifNoneMatch !== undefined) {
    // Weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter here.
    const tags = headers.ifNoneMatch.split(',').map((tag) => tag.trim().replace(/^W\//, ''));
    return tags.includes('*') || tags.includes(validators.etag);
  }
  if (headers.ifModifiedSince !== undefined) {
    const since = Date.parse(headers.ifModifiedSince);
    return Number.isFinite(since) && wholeSeconds(validators.lastModified) <= since;
  }
  return false;
}

/**
 * True when a Range may be honoured under If-Range: absent, or naming the current version
 * (strong comparison for an entity tag, exact match for a date). Otherwise the whole file is sent.
 */
export function rangeStillValid(ifRange: string | undefined, validators: Validators): boolean {
  if (ifRange === undefined) return true;
  const value = ifRange.trim();
  if (value.startsWith('"') || value.startsWith('W/')) return value === validators.etag;
  const date = Date.parse(value);
  return Number.isFinite(date) && date === wholeSeconds(validators.lastModified);
}

/** HTTP dates carry whole seconds. */
function wholeSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000) * 1000;
}
