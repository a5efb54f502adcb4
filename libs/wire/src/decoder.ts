import { BLOCK_SIZE, decode, HASH_SIZE, isPowerOfTwo, MAX_HASH_REQUEST_LENGTH, type BDict, type BValue } from '@shoal/torrent';
import { WireError, WireUsageError } from './errors';
import {
  expectedHashCount,
  HASH_HEADER_LENGTH,
  MAX_HASH_REQUEST_COUNT_ON_WIRE,
  MAX_HASHES_PER_MESSAGE,
  MAX_PROOF_LAYERS,
  MessageId,
  PIECE_HEADER_LENGTH,
  type BlockRequest,
  type HashRequestHeader,
  type WireMessage,
} from './messages';

/** Default frame cap, 4-byte prefix included: a piece message carrying one 16 KiB block. */
export const DEFAULT_MAX_FRAME_LENGTH = BLOCK_SIZE + 13;
/**
 * Default cap on an extended payload (bytes after the extended id). The extensions Shoal speaks
 * are small: a libtorrent extended handshake is a few hundred bytes, a ut_pex message carries at
 * most 50 + 50 peers.
 */
export const DEFAULT_MAX_EXTENDED_PAYLOAD = 16 * 1024;
/** Nesting the extension dictionaries may use (handshake: top dict + `m`). */
export const EXTENDED_MAX_DEPTH = 4;

export interface FrameLimits {
  /** Pieces in the torrent: the exact bitfield length and the bound on every piece index. */
  numPieces: number;
  /**
   * Largest frame, 4-byte prefix included, for message types without a size of their own (piece
   * messages; fixed-size messages are far below). Default BLOCK_SIZE + 13 = 16397.
   */
  maxFrameLength?: number;
  /** Largest extended payload after the extended id byte. Default 16 KiB. */
  maxExtendedPayload?: number;
}

/** Message lengths (the prefix value: id + payload) of the fixed-size messages. */
const FIXED_LENGTH: ReadonlyMap<number, number> = new Map([
  [MessageId.choke, 1],
  [MessageId.unchoke, 1],
  [MessageId.interested, 1],
  [MessageId.notInterested, 1],
  [MessageId.have, 5],
  [MessageId.request, 13],
  [MessageId.cancel, 13],
  [MessageId.port, 3],
  [MessageId.suggest, 5],
  [MessageId.haveAll, 1],
  [MessageId.haveNone, 1],
  [MessageId.reject, 13],
  [MessageId.allowedFast, 5],
  [MessageId.hashRequest, 1 + HASH_HEADER_LENGTH],
  [MessageId.hashReject, 1 + HASH_HEADER_LENGTH],
]);

const MIN_HASHES_LENGTH = 1 + HASH_HEADER_LENGTH + 2 * HASH_SIZE;
const MAX_HASHES_LENGTH = 1 + HASH_HEADER_LENGTH + MAX_HASHES_PER_MESSAGE * HASH_SIZE;

/**
 * The payload of an extended message (after its id byte): one strictly bencoded dictionary of at
 * most `maxLength` bytes, nested no deeper than EXTENDED_MAX_DEPTH. Anything else throws
 * WIRE_BAD_EXTENDED.
 */
export function decodeExtendedPayload(bytes: Buffer, maxLength: number = DEFAULT_MAX_EXTENDED_PAYLOAD): BDict {
  let value: BValue;
  try {
    value = decode(bytes, { maxInputLength: maxLength, maxStringLength: maxLength, maxDepth: EXTENDED_MAX_DEPTH });
  } catch (e) {
    throw new WireError('WIRE_BAD_EXTENDED', `extended payload is not strict bencode: ${(e as Error).message}`, { cause: e });
  }
  if (!(value instanceof Map)) throw new WireError('WIRE_BAD_EXTENDED', 'extended payload is not a dictionary');
  return value;
}

/**
 * Incremental, zero-copy-where-possible frame decoder: `push` arbitrary chunks, then call `next`
 * until it returns null. A frame that lies inside one chunk is returned as views into that chunk
 * (do not reuse input buffers); a frame spread over chunks is copied once into a buffer of its
 * exact size, which the caps below bound.
 *
 * Every cap is enforced as early as the bytes allow: the length prefix alone is checked against
 * the largest frame any type may have, and the id byte against that type's exact size or cap, so
 * a hostile length is refused before a single payload byte is buffered. Violations throw
 * WireError; after one, the decoder is poisoned and throws the same error again.
 */
export class FrameDecoder {
  readonly numPieces: number;
  readonly maxFrameLength: number;
  readonly maxExtendedPayload: number;
  /** Largest message length (prefix value) any type may have. */
  readonly maxMessageLength: number;
  private readonly bitfieldLength: number;
  /** Pending chunks from index `first` on; `head` is the read offset into chunks[first]. */
  private chunks: Buffer[] = [];
  private first = 0;
  private head = 0;
  private available = 0;
  private failure: WireError | undefined;

  constructor(limits: FrameLimits) {
    const { numPieces } = limits;
    if (!Number.isSafeInteger(numPieces) || numPieces < 1 || numPieces > 0xffffffff) {
      throw new WireUsageError(`numPieces must be an integer in 1..2^32-1, got ${numPieces}`);
    }
    const maxFrameLength = limits.maxFrameLength ?? DEFAULT_MAX_FRAME_LENGTH;
    if (!Number.isSafeInteger(maxFrameLength) || maxFrameLength < 4 + 1 + HASH_HEADER_LENGTH) {
      throw new WireUsageError(`maxFrameLength must be an integer >= ${5 + HASH_HEADER_LENGTH}, got ${maxFrameLength}`);
    }
    const maxExtendedPayload = limits.maxExtendedPayload ?? DEFAULT_MAX_EXTENDED_PAYLOAD;
    if (!Number.isSafeInteger(maxExtendedPayload) || maxExtendedPayload < 2) {
      throw new WireUsageError(`maxExtendedPayload must be an integer >= 2, got ${maxExtendedPayload}`);
    }
    this.numPieces = numPieces;
    this.maxFrameLength = maxFrameLength;
    this.maxExtendedPayload = maxExtendedPayload;
    this.bitfieldLength = Math.ceil(numPieces / 8);
    this.maxMessageLength = Math.max(
      maxFrameLength - 4,
      1 + this.bitfieldLength,
      2 + maxExtendedPayload,
      MAX_HASHES_LENGTH,
    );
  }

  /** Largest buffer the decoder may ever allocate for one frame (prefix excluded). */
  get maxFrameBytes(): number {
    return this.maxMessageLength;
  }

  /** Bytes received and not yet returned as messages. */
  get buffered(): number {
    return this.available;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.available += chunk.length;
  }

  /** The next complete message, or null when more bytes are needed. Throws WireError. */
  next(): WireMessage | null {
    if (this.failure) throw this.failure;
    try {
      return this.step();
    } catch (e) {
      if (e instanceof WireError) this.failure = e;
      throw e;
    }
  }

  private step(): WireMessage | null {
    if (this.available < 4) return null;
    const length = ((this.byteAt(0) << 24) | (this.byteAt(1) << 16) | (this.byteAt(2) << 8) | this.byteAt(3)) >>> 0;
    if (length === 0) {
      this.skip(4);
      return { type: 'keep-alive' };
    }
    if (length > this.maxMessageLength) {
      throw new WireError('WIRE_FRAME_TOO_LARGE', `length prefix ${length} exceeds the cap of ${this.maxMessageLength}`);
    }
    if (this.available < 5) return null;
    const id = this.byteAt(4);
    this.checkLength(id, length);
    if (this.available < 4 + length) return null;
    this.skip(4);
    return this.parse(this.take(length));
  }

  /** Refuses a frame on its prefix and id, before its payload is buffered. */
  private checkLength(id: number, length: number): void {
    const fixed = FIXED_LENGTH.get(id);
    if (fixed !== undefined) {
      if (length !== fixed) {
        throw new WireError('WIRE_BAD_PAYLOAD_LENGTH', `message id ${id} must be ${fixed} bytes long, got ${length}`);
      }
      return;
    }
    switch (id) {
      case MessageId.bitfield:
        if (length !== 1 + this.bitfieldLength) {
          throw new WireError(
            'WIRE_BAD_BITFIELD',
            `bitfield of ${length - 1} bytes; ${this.numPieces} pieces need ${this.bitfieldLength}`,
          );
        }
        return;
      case MessageId.piece:
        if (length <= PIECE_HEADER_LENGTH) {
          throw new WireError('WIRE_BAD_PAYLOAD_LENGTH', `piece message of ${length} bytes carries no block`);
        }
        if (length + 4 > this.maxFrameLength || length - PIECE_HEADER_LENGTH > BLOCK_SIZE) {
          throw new WireError(
            'WIRE_FRAME_TOO_LARGE',
            `piece block of ${length - PIECE_HEADER_LENGTH} bytes exceeds ${Math.min(BLOCK_SIZE, this.maxFrameLength - 13)}`,
          );
        }
        return;
      case MessageId.extended:
        if (length < 2) throw new WireError('WIRE_BAD_PAYLOAD_LENGTH', 'extended message without an extended id');
        if (length - 2 > this.maxExtendedPayload) {
          throw new WireError(
            'WIRE_FRAME_TOO_LARGE',
            `extended payload of ${length - 2} bytes exceeds the cap of ${this.maxExtendedPayload}`,
          );
        }
        return;
      case MessageId.hashes:
        if (length > MAX_HASHES_LENGTH) {
          throw new WireError('WIRE_FRAME_TOO_LARGE', `hashes message of ${length} bytes exceeds ${MAX_HASHES_LENGTH}`);
        }
        if (length < MIN_HASHES_LENGTH || (length - 1 - HASH_HEADER_LENGTH) % HASH_SIZE !== 0) {
          throw new WireError('WIRE_BAD_PAYLOAD_LENGTH', `hashes message of ${length} bytes is not a header plus hashes`);
        }
        return;
      default:
        throw new WireError('WIRE_UNKNOWN_MESSAGE', `unknown message id ${id}`);
    }
  }

  private parse(p: Buffer): WireMessage {
    const id = p[0];
    switch (id) {
      case MessageId.choke:
        return { type: 'choke' };
      case MessageId.unchoke:
        return { type: 'unchoke' };
      case MessageId.interested:
        return { type: 'interested' };
      case MessageId.notInterested:
        return { type: 'not-interested' };
      case MessageId.haveAll:
        return { type: 'have-all' };
      case MessageId.haveNone:
        return { type: 'have-none' };
      case MessageId.have:
        return { type: 'have', index: this.pieceIndex(p.readUInt32BE(1)) };
      case MessageId.suggest:
        return { type: 'suggest', index: this.pieceIndex(p.readUInt32BE(1)) };
      case MessageId.allowedFast:
        return { type: 'allowed-fast', index: this.pieceIndex(p.readUInt32BE(1)) };
      case MessageId.bitfield:
        return { type: 'bitfield', bitfield: this.bitfield(p.subarray(1)) };
      case MessageId.request:
        return { type: 'request', ...this.blockRequest(p, 'request') };
      case MessageId.cancel:
        return { type: 'cancel', ...this.blockRequest(p, 'cancel') };
      case MessageId.reject:
        return { type: 'reject', ...this.blockRequest(p, 'reject') };
      case MessageId.piece:
        return {
          type: 'piece',
          index: this.pieceIndex(p.readUInt32BE(1)),
          begin: p.readUInt32BE(5),
          block: p.subarray(PIECE_HEADER_LENGTH),
        };
      case MessageId.port:
        return { type: 'port', port: p.readUInt16BE(1) };
      case MessageId.extended:
        return { type: 'extended', id: p[1] as number, payload: decodeExtendedPayload(p.subarray(2), this.maxExtendedPayload) };
      case MessageId.hashRequest:
        return { type: 'hash-request', ...this.hashHeader(p, 'WIRE_BAD_HASH_REQUEST') };
      case MessageId.hashReject:
        return { type: 'hash-reject', ...this.hashHeader(p, 'WIRE_BAD_HASH_REQUEST') };
      case MessageId.hashes:
        return this.hashes(p);
      default:
        // checkLength has refused every other id already.
        throw new WireError('WIRE_UNKNOWN_MESSAGE', `unknown message id ${id}`);
    }
  }

  private pieceIndex(index: number): number {
    if (index >= this.numPieces) {
      throw new WireError('WIRE_BAD_PIECE_INDEX', `piece index ${index} beyond the ${this.numPieces} pieces`);
    }
    return index;
  }

  private bitfield(bits: Buffer): Buffer {
    const spare = this.bitfieldLength * 8 - this.numPieces;
    const last = bits[bits.length - 1] as number;
    if (spare > 0 && (last & ((1 << spare) - 1)) !== 0) {
      throw new WireError('WIRE_BAD_BITFIELD', 'bitfield has spare bits set past the last piece');
    }
    return bits;
  }

  private blockRequest(p: Buffer, what: string): BlockRequest {
    const index = this.pieceIndex(p.readUInt32BE(1));
    const begin = p.readUInt32BE(5);
    const length = p.readUInt32BE(9);
    if (length === 0) throw new WireError('WIRE_BAD_REQUEST', `${what} of zero bytes`);
    if (length > BLOCK_SIZE) {
      throw new WireError('WIRE_REQUEST_TOO_LARGE', `${what} of ${length} bytes exceeds the ${BLOCK_SIZE}-byte block`);
    }
    return { index, begin, length };
  }

  private hashHeader(p: Buffer, code: 'WIRE_BAD_HASH_REQUEST' | 'WIRE_BAD_HASHES'): HashRequestHeader {
    const header: HashRequestHeader = {
      piecesRoot: p.subarray(1, 1 + HASH_SIZE),
      baseLayer: p.readUInt32BE(1 + HASH_SIZE),
      index: p.readUInt32BE(5 + HASH_SIZE),
      length: p.readUInt32BE(9 + HASH_SIZE),
      proofLayers: p.readUInt32BE(13 + HASH_SIZE),
    };
    if (header.baseLayer > MAX_PROOF_LAYERS || header.proofLayers > MAX_PROOF_LAYERS) {
      throw new WireError(code, `hash header layers (base ${header.baseLayer}, proof ${header.proofLayers}) above ${MAX_PROOF_LAYERS}`);
    }
    if (header.length < 1 || header.length > MAX_HASH_REQUEST_COUNT_ON_WIRE) {
      throw new WireError(code, `hash header length ${header.length} outside 1..${MAX_HASH_REQUEST_COUNT_ON_WIRE}`);
    }
    return header;
  }

  private hashes(p: Buffer): WireMessage {
    const header = this.hashHeader(p, 'WIRE_BAD_HASHES');
    // Shoal only asks for what merkle.ts serves: a power-of-two run of 2..512 base hashes.
    if (header.length < 2 || header.length > MAX_HASH_REQUEST_LENGTH || !isPowerOfTwo(header.length)) {
      throw new WireError('WIRE_BAD_HASHES', `hashes for a length of ${header.length}: not a power of two in 2..${MAX_HASH_REQUEST_LENGTH}`);
    }
    const count = (p.length - 1 - HASH_HEADER_LENGTH) / HASH_SIZE;
    const expected = expectedHashCount(header);
    if (count !== expected) {
      throw new WireError('WIRE_BAD_HASHES', `hashes message carries ${count} hashes; its header calls for ${expected}`);
    }
    const hashes: Buffer[] = [];
    for (let at = 1 + HASH_HEADER_LENGTH; at < p.length; at += HASH_SIZE) hashes.push(p.subarray(at, at + HASH_SIZE));
    return { type: 'hashes', ...header, hashes };
  }

  private byteAt(offset: number): number {
    let at = this.head + offset;
    for (let i = this.first; i < this.chunks.length; i++) {
      const chunk = this.chunks[i] as Buffer;
      if (at < chunk.length) return chunk[at] as number;
      at -= chunk.length;
    }
    throw new Error('FrameDecoder: read past the buffered bytes');
  }

  private skip(n: number): void {
    this.available -= n;
    while (n > 0) {
      const chunk = this.chunks[this.first] as Buffer;
      const left = chunk.length - this.head;
      if (n < left) {
        this.head += n;
        return;
      }
      n -= left;
      this.first++;
      this.head = 0;
    }
    // Drop consumed chunks in bulk (no per-chunk shift: a peer may trickle single bytes).
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first >= 64 && this.first * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[this.first] as Buffer;
    if (first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n);
      this.skip(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[this.first] as Buffer;
      const count = Math.min(n - filled, chunk.length - this.head);
      chunk.copy(out, filled, this.head, this.head + count);
      filled += count;
      this.skip(count);
    }
    return out;
  }
}

/** Decodes a byte string holding whole frames only (tests, tools). Throws WireError. */
export function decodeFrames(bytes: Uint8Array, limits: FrameLimits): WireMessage[] {
  const decoder = new FrameDecoder(limits);
  decoder.push(bytes);
  const out: WireMessage[] = [];
  for (let m = decoder.next(); m !== null; m = decoder.next()) out.push(m);
  if (decoder.buffered > 0) throw new WireError('WIRE_PEER_CLOSED', `${decoder.buffered} bytes of an incomplete frame at the end`);
  return out;
}
