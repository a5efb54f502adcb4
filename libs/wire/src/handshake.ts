import { WireError, WireUsageError } from './errors';

/** The BEP 3 protocol string. */
export const PROTOCOL_STRING = 'BitTorrent protocol';
const PSTR = Buffer.from(PROTOCOL_STRING, 'latin1');
/** 1 + 19 + 8 reserved + 20 info-hash + 20 peer id. */
export const HANDSHAKE_LENGTH = 68;
export const INFO_HASH_LENGTH = 20;
export const PEER_ID_LENGTH = 20;
export const RESERVED_LENGTH = 8;

const RESERVED_OFFSET = 1 + PSTR.length;
const INFO_HASH_OFFSET = RESERVED_OFFSET + RESERVED_LENGTH;
const PEER_ID_OFFSET = INFO_HASH_OFFSET + INFO_HASH_LENGTH;

/** One bit of the 8 reserved handshake bytes. */
export interface ReservedBit {
  readonly byte: number;
  readonly mask: number;
}

/** BEP 10 extension protocol: reserved[5] & 0x10. */
export const RESERVED_EXTENSION_PROTOCOL: ReservedBit = { byte: 5, mask: 0x10 };
/** BEP 6 fast extension: reserved[7] & 0x04. */
export const RESERVED_FAST: ReservedBit = { byte: 7, mask: 0x04 };
/**
 * BEP 52 "upgrade to v2": reserved[7] & 0x10. It lets a v1 connection of a hybrid torrent switch
 * to v2; on a v2-only swarm the (truncated v2) info-hash already selects v2, and libtorrent does
 * not set it there, so Shoal neither sets it by default nor requires it for the hash messages.
 */
export const RESERVED_V2: ReservedBit = { byte: 7, mask: 0x10 };
/** BEP 5 DHT (the `port` message): reserved[7] & 0x01. Shoal's DHT is private: not set. */
export const RESERVED_DHT: ReservedBit = { byte: 7, mask: 0x01 };

export function hasReservedBit(reserved: Uint8Array, bit: ReservedBit): boolean {
  return ((reserved[bit.byte] ?? 0) & bit.mask) !== 0;
}

/** The 8 reserved bytes with the given bits set. */
export function reservedBits(...bits: ReservedBit[]): Buffer {
  const out = Buffer.alloc(RESERVED_LENGTH);
  for (const bit of bits) out[bit.byte] = (out[bit.byte] ?? 0) | bit.mask;
  return out;
}

export interface Handshake {
  reserved: Buffer;
  infoHash20: Buffer;
  peerId20: Buffer;
}

export interface HandshakeInit {
  infoHash20: Uint8Array;
  peerId20: Uint8Array;
  /** 8 bytes; default: all zero. */
  reserved?: Uint8Array;
}

/** `19 "BitTorrent protocol" reserved[8] info_hash[20] peer_id[20]` (BEP 3). */
export function encodeHandshake(init: HandshakeInit): Buffer {
  const reserved = init.reserved ?? Buffer.alloc(RESERVED_LENGTH);
  if (init.infoHash20.length !== INFO_HASH_LENGTH) throw new WireUsageError('info-hash must be 20 bytes');
  if (init.peerId20.length !== PEER_ID_LENGTH) throw new WireUsageError('peer id must be 20 bytes');
  if (reserved.length !== RESERVED_LENGTH) throw new WireUsageError('reserved must be 8 bytes');
  const out = Buffer.allocUnsafe(HANDSHAKE_LENGTH);
  out[0] = PSTR.length;
  PSTR.copy(out, 1);
  out.set(reserved, RESERVED_OFFSET);
  out.set(init.infoHash20, INFO_HASH_OFFSET);
  out.set(init.peerId20, PEER_ID_OFFSET);
  return out;
}

/**
 * Checks as many leading handshake bytes as are present (the protocol string is checked byte by
 * byte, so a wrong peer is refused on its first wrong byte). Throws WIRE_BAD_HANDSHAKE.
 */
export function checkHandshakePrefix(bytes: Uint8Array): void {
  const n = Math.min(bytes.length, RESERVED_OFFSET);
  if (n >= 1 && bytes[0] !== PSTR.length) {
    throw new WireError('WIRE_BAD_HANDSHAKE', `handshake protocol length byte is ${bytes[0]}, not 19`);
  }
  for (let i = 1; i < n; i++) {
    if (bytes[i] !== PSTR[i - 1]) throw new WireError('WIRE_BAD_HANDSHAKE', 'protocol string is not "BitTorrent protocol"');
  }
}

/** Parses exactly 68 handshake bytes; the fields are views into `bytes`. */
export function parseHandshake(bytes: Uint8Array): Handshake {
  if (bytes.length !== HANDSHAKE_LENGTH) {
    throw new WireError('WIRE_BAD_HANDSHAKE', `handshake is ${bytes.length} bytes, not ${HANDSHAKE_LENGTH}`);
  }
  checkHandshakePrefix(bytes);
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  return {
    reserved: buf.subarray(RESERVED_OFFSET, INFO_HASH_OFFSET),
    infoHash20: buf.subarray(INFO_HASH_OFFSET, PEER_ID_OFFSET),
    peerId20: buf.subarray(PEER_ID_OFFSET, HANDSHAKE_LENGTH),
  };
}

/** Bytes of the handshake up to and including the info-hash: enough to decide whether to answer. */
export const HANDSHAKE_INFO_HASH_END = PEER_ID_OFFSET;
