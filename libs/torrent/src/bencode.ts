import { BencodeError } from './errors';

/**
 * Bencode (BEP 3) with a strict decoder: only canonical encodings are accepted, so a decoded
 * value re-encodes to exactly the bytes it came from (BEP 52 relies on this for info-hashes).
 *
 * Byte strings decode to Buffers that are views into the input (no copy). Dictionary keys are
 * "binary strings": one JS char per byte (latin1), so arbitrary bytes — piece-layer keys are raw
 * SHA-256 digests — survive, ASCII keys read naturally, and JS string order is byte order.
 */
export type BValue = number | Buffer | BValue[] | BDict;
export type BDict = Map<string, BValue>;

/** What `encode` accepts: decoded values, plus JS strings (encoded as UTF-8). */
export type BEncodable = number | string | Uint8Array | readonly BEncodable[] | ReadonlyMap<string, BEncodable>;

export interface DecodeLimits {
  /** Reject inputs longer than this many bytes. */
  maxInputLength: number;
  /** Reject any single byte string longer than this. */
  maxStringLength: number;
  /** Reject lists/dicts nested deeper than this (the top-level container is depth 1). */
  maxDepth: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = {
  maxInputLength: 64 * 1024 * 1024,
  maxStringLength: 32 * 1024 * 1024,
  maxDepth: 64,
};

const CH_I = 0x69;
const CH_L = 0x6c;
const CH_D = 0x64;
const CH_E = 0x65;
const CH_COLON = 0x3a;
const CH_MINUS = 0x2d;
const CH_0 = 0x30;
const CH_9 = 0x39;
/** Digits of Number.MAX_SAFE_INTEGER: anything longer cannot be exact. */
const MAX_SAFE_DIGITS = 16;

export function decode(input: Uint8Array, limits: Partial<DecodeLimits> = {}): BValue {
  const lim = { ...DEFAULT_DECODE_LIMITS, ...limits };
  if (input.length > lim.maxInputLength) {
    throw new BencodeError(
      'BENCODE_INPUT_TOO_LARGE',
      `input of ${input.length} bytes exceeds the limit of ${lim.maxInputLength}`,
      lim.maxInputLength,
    );
  }
  const buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.length);
  const decoder = new StrictDecoder(buf, lim);
  const value = decoder.value(0);
  if (decoder.pos !== buf.length) {
    throw new BencodeError('BENCODE_TRAILING_BYTES', `${buf.length - decoder.pos} bytes after the value`, decoder.pos);
  }
  return value;
}

class StrictDecoder {
  pos = 0;

  constructor(
    private readonly buf: Buffer,
    private readonly limits: DecodeLimits,
  ) {}

  value(depth: number): BValue {
    const c = this.peek();
    if (c === CH_I) return this.integer();
    if (c === CH_L) return this.list(depth + 1);
    if (c === CH_D) return this.dict(depth + 1);
    if (c >= CH_0 && c <= CH_9) return this.string();
    throw this.unexpected();
  }

  private peek(): number {
    const c = this.buf[this.pos];
    if (c === undefined) throw new BencodeError('BENCODE_TRUNCATED', 'input ends inside a value', this.pos);
    return c;
  }

  private unexpected(): BencodeError {
    return new BencodeError(
      'BENCODE_UNEXPECTED_BYTE',
      `unexpected byte 0x${this.peek().toString(16).padStart(2, '0')}`,
      this.pos,
    );
  }

  private enter(depth: number): void {
    if (depth > this.limits.maxDepth) {
      throw new BencodeError('BENCODE_TOO_DEEP', `nesting deeper than ${this.limits.maxDepth}`, this.pos);
    }
    this.pos++;
  }

  /** Reads ASCII digits up to `terminator`, enforcing canonical form; returns the value. */
  private digits(terminator: number, allowNegative: boolean): number {
    const start = this.pos;
    let negative = false;
    if (allowNegative && this.peek() === CH_MINUS) {
      negative = true;
      this.pos++;
    }
    const first = this.pos;
    let value = 0;
    for (;;) {
      const c = this.peek();
      if (c === terminator) break;
      if (c < CH_0 || c > CH_9) throw this.unexpected();
      // Checked digit by digit, so a long run of zeros is a leading zero, not a range error.
      if (this.pos > first && this.buf[first] === CH_0) {
        throw new BencodeError('BENCODE_LEADING_ZERO', 'number with a leading zero', start);
      }
      if (this.pos - first >= MAX_SAFE_DIGITS) {
        throw new BencodeError('BENCODE_INTEGER_RANGE', 'integer does not fit in 53 bits', start);
      }
      value = value * 10 + (c - CH_0);
      this.pos++;
    }
    const count = this.pos - first;
    if (count === 0) throw this.unexpected();
    if (negative && value === 0) throw new BencodeError('BENCODE_NEGATIVE_ZERO', 'negative zero', start);
    if (!Number.isSafeInteger(value)) {
      throw new BencodeError('BENCODE_INTEGER_RANGE', 'integer does not fit in 53 bits', start);
    }
    this.pos++; // terminator
    return negative ? -value : value;
  }

  private integer(): number {
    this.pos++; // 'i'
    return this.digits(CH_E, true);
  }

  private string(): Buffer {
    const start = this.pos;
    const length = this.digits(CH_COLON, false);
    if (length > this.limits.maxStringLength) {
      throw new BencodeError(
        'BENCODE_STRING_TOO_LONG',
        `string of ${length} bytes exceeds the limit of ${this.limits.maxStringLength}`,
        start,
      );
    }
    if (this.pos + length > this.buf.length) {
      throw new BencodeError('BENCODE_TRUNCATED', `string of ${length} bytes runs past the end`, start);
    }
    const s = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return s;
  }

  private list(depth: number): BValue[] {
    this.enter(depth);
    const out: BValue[] = [];
    while (this.peek() !== CH_E) out.push(this.value(depth));
    this.pos++;
    return out;
  }

  private dict(depth: number): BDict {
    this.enter(depth);
    const out: BDict = new Map();
    let previous: Buffer | undefined;
    while (this.peek() !== CH_E) {
      const keyStart = this.pos;
      const c = this.peek();
      if (c < CH_0 || c > CH_9) throw this.unexpected();
      const key = this.string();
      if (previous) {
        const order = Buffer.compare(previous, key);
        if (order === 0) throw new BencodeError('BENCODE_DUPLICATE_KEY', 'duplicate dictionary key', keyStart);
        if (order > 0) throw new BencodeError('BENCODE_KEY_ORDER', 'dictionary keys out of order', keyStart);
      }
      previous = key;
      out.set(key.toString('latin1'), this.value(depth));
    }
    this.pos++;
    return out;
  }
}

export function encode(value: BEncodable): Buffer {
  const parts: Buffer[] = [];
  write(value, parts);
  return Buffer.concat(parts);
}

function write(value: BEncodable, out: Buffer[]): void {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new BencodeError('BENCODE_UNENCODABLE', `cannot encode ${value}: not a safe integer`, -1);
    }
    out.push(Buffer.from(`i${value}e`, 'latin1'));
  } else if (typeof value === 'string') {
    writeBytes(Buffer.from(value, 'utf8'), out);
  } else if (value instanceof Uint8Array) {
    writeBytes(value, out);
  } else if (Array.isArray(value)) {
    out.push(Buffer.from('l', 'latin1'));
    for (const item of value as readonly BEncodable[]) write(item, out);
    out.push(Buffer.from('e', 'latin1'));
  } else if (value instanceof Map) {
    out.push(Buffer.from('d', 'latin1'));
    // Binary-string keys: JS code-unit order is byte order.
    const keys = [...(value as ReadonlyMap<string, BEncodable>).keys()].sort();
    for (const key of keys) {
      if (!isBinaryKey(key)) {
        throw new BencodeError('BENCODE_UNENCODABLE', 'dictionary key is not a binary string (see utf8Key)', -1);
      }
      writeBytes(Buffer.from(key, 'latin1'), out);
      write((value as ReadonlyMap<string, BEncodable>).get(key) as BEncodable, out);
    }
    out.push(Buffer.from('e', 'latin1'));
  } else {
    throw new BencodeError('BENCODE_UNENCODABLE', `cannot encode a value of type ${typeof value}`, -1);
  }
}

function writeBytes(bytes: Uint8Array, out: Buffer[]): void {
  out.push(Buffer.from(`${bytes.length}:`, 'latin1'));
  out.push(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
}

/** A dictionary key for a UTF-8 text (e.g. a file name), in the binary-string form keys use. */
export function utf8Key(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

function isBinaryKey(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) > 0xff) return false;
  return true;
}
