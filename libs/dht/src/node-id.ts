import { createHash } from 'node:crypto';
import { DhtError } from './errors';

/**
 * A node id: 256 bits, the SHA-256 of the node certificate's public key (SubjectPublicKeyInfo,
 * DER). Binding the id to the key is what makes the DHT private: a node cannot pick where it sits
 * in the key space, and every message's claimed id can be checked against the certificate of the
 * connection it came on.
 */
export type NodeId = Buffer;

export const NODE_ID_BYTES = 32;
export const NODE_ID_BITS = NODE_ID_BYTES * 8;
/** Info-hashes travel truncated to 20 bytes, as BEP 52 says for the wire and the tracker. */
export const INFO_HASH_BYTES = 20;

/** DER tag of a SEQUENCE: every SubjectPublicKeyInfo starts with one. */
const DER_SEQUENCE = 0x30;
/** Far above any RSA-16384 or EC key: a larger input is not a public key. */
const MAX_SPKI_BYTES = 8192;

export function isNodeId(value: unknown): value is NodeId {
  return Buffer.isBuffer(value) && value.length === NODE_ID_BYTES;
}

/**
 * The node id of a certificate's public key. `spkiDer` is what Node's
 * `x509.publicKey.export({ type: 'spki', format: 'der' })` returns. The structural check catches
 * the usual mistakes (PEM text, a truncated key); the adapter owns certificate validation.
 */
export function nodeIdFromPublicKeyDer(spkiDer: Uint8Array): NodeId {
  if (!(spkiDer instanceof Uint8Array) || spkiDer.length < 2 || spkiDer.length > MAX_SPKI_BYTES) {
    throw new DhtError('DHT_BAD_ARGUMENT', `a SubjectPublicKeyInfo of 2..${MAX_SPKI_BYTES} DER bytes is required`, 'spkiDer');
  }
  if (spkiDer[0] !== DER_SEQUENCE || derLength(spkiDer) !== spkiDer.length) {
    throw new DhtError('DHT_BAD_ARGUMENT', 'not one DER SEQUENCE (pass the DER SubjectPublicKeyInfo, not PEM)', 'spkiDer');
  }
  return createHash('sha256').update(spkiDer).digest();
}

/** Total length (header + content) of the DER element at the start of `der`, or -1 if malformed. */
function derLength(der: Uint8Array): number {
  const first = der[1] as number;
  if (first < 0x80) return 2 + first;
  const octets = first & 0x7f;
  if (octets === 0 || octets > 3 || der.length < 2 + octets) return -1;
  let length = 0;
  for (let i = 0; i < octets; i++) length = length * 256 + (der[2 + i] as number);
  return 2 + octets + length;
}

export function nodeIdFromHex(hex: string, field = 'id'): NodeId {
  if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) {
    throw new DhtError('DHT_BAD_ARGUMENT', 'a node id is 64 lowercase hex digits', field);
  }
  return Buffer.from(hex, 'hex');
}

/** The lookup target of a 20-byte info-hash: the hash itself, zero-padded to 256 bits. */
export function infoHashTarget(infoHash: Uint8Array): NodeId {
  requireInfoHash(infoHash);
  const target = Buffer.alloc(NODE_ID_BYTES);
  target.set(infoHash);
  return target;
}

export function requireInfoHash(infoHash: Uint8Array, field = 'infoHash'): void {
  if (!(infoHash instanceof Uint8Array) || infoHash.length !== INFO_HASH_BYTES) {
    throw new DhtError('DHT_BAD_ARGUMENT', `an info-hash is ${INFO_HASH_BYTES} bytes (the v2 hash truncated)`, field);
  }
}

export function requireNodeId(id: unknown, field = 'id'): asserts id is NodeId {
  if (!isNodeId(id)) throw new DhtError('DHT_BAD_ARGUMENT', `a node id is a Buffer of ${NODE_ID_BYTES} bytes`, field);
}

export function xorDistance(a: NodeId, b: NodeId): Buffer {
  const out = Buffer.allocUnsafe(NODE_ID_BYTES);
  for (let i = 0; i < NODE_ID_BYTES; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

/** Negative when `a` is closer to `target` than `b`, positive when farther, 0 when a equals b. */
export function compareDistance(a: NodeId, b: NodeId, target: NodeId): number {
  for (let i = 0; i < NODE_ID_BYTES; i++) {
    const t = target[i] as number;
    const da = (a[i] as number) ^ t;
    const db = (b[i] as number) ^ t;
    if (da !== db) return da - db;
  }
  return 0;
}

/** Leading bits `a` and `b` share: 256 for equal ids. */
export function commonPrefixLength(a: NodeId, b: NodeId): number {
  for (let i = 0; i < NODE_ID_BYTES; i++) {
    const x = (a[i] as number) ^ (b[i] as number);
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  return NODE_ID_BITS;
}

/** Bit `bit` (0 = most significant) of `id`. */
export function bitAt(id: NodeId, bit: number): number {
  return ((id[bit >> 3] as number) >> (7 - (bit & 7))) & 1;
}

/**
 * A random id sharing the first `prefixBits` bits with `prefix`; with `flipNext`, the bit after
 * the prefix differs from `prefix`'s (an id inside the sibling subtree: a bucket's range).
 */
export function randomIdWithPrefix(prefix: NodeId, prefixBits: number, flipNext: boolean, randomBytes: (size: number) => Buffer): NodeId {
  const id = Buffer.from(randomBytes(NODE_ID_BYTES).subarray(0, NODE_ID_BYTES));
  const whole = prefixBits >> 3;
  prefix.copy(id, 0, 0, whole);
  const rest = prefixBits & 7;
  if (rest > 0) {
    const mask = (0xff << (8 - rest)) & 0xff;
    id[whole] = ((prefix[whole] as number) & mask) | ((id[whole] as number) & ~mask & 0xff);
  }
  if (flipNext && prefixBits < NODE_ID_BITS) {
    const byte = prefixBits >> 3;
    const bitMask = 0x80 >> (prefixBits & 7);
    id[byte] = ((id[byte] as number) & ~bitMask & 0xff) | (~(prefix[byte] as number) & bitMask);
  }
  return id;
}
