import { StoreError } from './errors';

/**
 * One bit per piece, in BEP 3 `bitfield` order: piece 0 is the high bit of byte 0, spare bits at
 * the end are zero.
 */
export class Bitfield {
  private readonly bytes: Buffer;
  private ones = 0;

  constructor(
    readonly size: number,
    bytes?: Uint8Array,
  ) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new StoreError('STORE_BAD_OPTION', `bitfield size must be a non-negative integer, not ${size}`);
    }
    const length = Math.ceil(size / 8);
    this.bytes = Buffer.alloc(length);
    if (bytes) {
      if (bytes.length !== length) {
        throw new StoreError('STORE_BAD_RANGE', `a bitfield of ${size} pieces has ${length} bytes, not ${bytes.length}`);
      }
      this.bytes.set(bytes);
      const spare = length * 8 - size;
      if (spare > 0 && ((this.bytes[length - 1] as number) & ((1 << spare) - 1)) !== 0) {
        throw new StoreError('STORE_BAD_RANGE', 'bitfield has spare bits set past the last piece');
      }
      for (const byte of this.bytes) this.ones += popcount(byte);
    }
  }

  get(index: number): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) return false;
    return (((this.bytes[index >> 3] as number) >> (7 - (index & 7))) & 1) === 1;
  }

  /** Returns true when the bit changed. */
  set(index: number, value = true): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new StoreError('STORE_BAD_RANGE', `piece ${index} is outside 0..${this.size - 1}`);
    }
    if (this.get(index) === value) return false;
    const mask = 1 << (7 - (index & 7));
    const byte = this.bytes[index >> 3] as number;
    this.bytes[index >> 3] = value ? byte | mask : byte & ~mask;
    this.ones += value ? 1 : -1;
    return true;
  }

  /** Number of set bits. */
  get count(): number {
    return this.ones;
  }

  get isFull(): boolean {
    return this.ones === this.size;
  }

  /** Indices of set bits, ascending. */
  indices(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.get(i)) out.push(i);
    return out;
  }

  /** Indices of clear bits, ascending. */
  missing(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (!this.get(i)) out.push(i);
    return out;
  }

  /** A copy of the bytes, ready for a BEP 3 `bitfield` message. */
  toBuffer(): Buffer {
    return Buffer.from(this.bytes);
  }

  clone(): Bitfield {
    return new Bitfield(this.size, this.bytes);
  }
}

function popcount(byte: number): number {
  let n = 0;
  for (let b = byte; b !== 0; b &= b - 1) n++;
  return n;
}
