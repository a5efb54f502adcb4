import { BLOCK_SIZE, encode, HASH_SIZE, MAX_HASH_REQUEST_LENGTH, type BDict } from '@shoal/torrent';
import { WireUsageError } from './errors';

/** Message ids (BEP 3, BEP 5 port, BEP 6, BEP 10, BEP 52). Every other id closes the connection. */
export const MessageId = {
  choke: 0,
  unchoke: 1,
  interested: 2,
  notInterested: 3,
  have: 4,
  bitfield: 5,
  request: 6,
  piece: 7,
  cancel: 8,
  port: 9,
  suggest: 13,
  haveAll: 14,
  haveNone: 15,
  reject: 16,
  allowedFast: 17,
  extended: 20,
  hashRequest: 21,
  hashes: 22,
  hashReject: 23,
} as const;

/** Extended message id 0 is the BEP 10 handshake. */
export const EXTENDED_HANDSHAKE_ID = 0;

/** Bytes of a piece message before the block: id + index + begin. */
export const PIECE_HEADER_LENGTH = 9;
/** Bytes of a hash request / hashes / hash reject header after the id: root + 4 x u32. */
export const HASH_HEADER_LENGTH = HASH_SIZE + 16;
/**
 * Proof layers a hash message may name. A 16 KiB-leaf tree of 2^53 bytes is 39 layers high, so
 * anything above 64 describes no possible file; the cap bounds a hashes message.
 */
export const MAX_PROOF_LAYERS = 64;
/**
 * libtorrent accepts hash requests of up to 8192 base hashes (a 128 MiB piece). Requests between
 * 513 and 8192 are well formed and answered with a hash reject by the serving side (merkle.ts
 * caps at MAX_HASH_REQUEST_LENGTH); anything larger closes the connection.
 */
export const MAX_HASH_REQUEST_COUNT_ON_WIRE = 8192;

/** A block request (request, cancel and reject share it). */
export interface BlockRequest {
  index: number;
  begin: number;
  length: number;
}

/** The header of hash request / hashes / hash reject; structurally a merkle.ts `HashRequest`. */
export interface HashRequestHeader {
  piecesRoot: Buffer;
  baseLayer: number;
  index: number;
  length: number;
  proofLayers: number;
}

export type KeepAliveMessage = { type: 'keep-alive' };
export type ChokeMessage = { type: 'choke' };
export type UnchokeMessage = { type: 'unchoke' };
export type InterestedMessage = { type: 'interested' };
export type NotInterestedMessage = { type: 'not-interested' };
export type HaveMessage = { type: 'have'; index: number };
/** Raw bitfield bytes, high bit of byte 0 = piece 0 (the decoder checks length and spare bits). */
export type BitfieldMessage = { type: 'bitfield'; bitfield: Buffer };
export type RequestMessage = { type: 'request' } & BlockRequest;
/** `block` is a view into received bytes on decode; Connection sends it as given, after encodePieceHeader. */
export type PieceMessage = { type: 'piece'; index: number; begin: number; block: Buffer };
export type CancelMessage = { type: 'cancel' } & BlockRequest;
/** BEP 5 DHT port. Decoded and reported; Shoal does not send it (its DHT is private). */
export type PortMessage = { type: 'port'; port: number };
export type SuggestMessage = { type: 'suggest'; index: number };
export type HaveAllMessage = { type: 'have-all' };
export type HaveNoneMessage = { type: 'have-none' };
export type RejectMessage = { type: 'reject' } & BlockRequest;
export type AllowedFastMessage = { type: 'allowed-fast'; index: number };
/** BEP 10: `id` 0 is the extended handshake; every payload Shoal speaks is one bencoded dict. */
export type ExtendedMessage = { type: 'extended'; id: number; payload: BDict };
export type HashRequestMessage = { type: 'hash-request' } & HashRequestHeader;
/** `hashes`: the base hashes then the uncle hashes, 32 bytes each (views on decode). */
export type HashesMessage = { type: 'hashes'; hashes: Buffer[] } & HashRequestHeader;
export type HashRejectMessage = { type: 'hash-reject' } & HashRequestHeader;

export type WireMessage =
  | KeepAliveMessage
  | ChokeMessage
  | UnchokeMessage
  | InterestedMessage
  | NotInterestedMessage
  | HaveMessage
  | BitfieldMessage
  | RequestMessage
  | PieceMessage
  | CancelMessage
  | PortMessage
  | SuggestMessage
  | HaveAllMessage
  | HaveNoneMessage
  | RejectMessage
  | AllowedFastMessage
  | ExtendedMessage
  | HashRequestMessage
  | HashesMessage
  | HashRejectMessage;

export type WireMessageType = WireMessage['type'];

/**
 * Number of hashes a `hashes` message carries for a header: the `length` base hashes plus one
 * uncle per proof layer above the subtree they span (the first log2(length) - 1 proof layers are
 * implied by the base hashes). Same rule as libtorrent's on_hashes and merkle.ts.
 */
export function expectedHashCount(header: Pick<HashRequestHeader, 'length' | 'proofLayers'>): number {
  // libtorrent: proof_layers - (merkle_num_layers(merkle_num_leafs(count)) - 1), at least 0.
  const implied = Math.max(0, Math.ceil(Math.log2(Math.max(1, header.length))) - 1);
  return header.length + Math.max(0, header.proofLayers - implied);
}

/** Largest number of hashes a `hashes` message may carry. */
export const MAX_HASHES_PER_MESSAGE = MAX_HASH_REQUEST_LENGTH + MAX_PROOF_LAYERS;

const U32_MAX = 0xffffffff;

function u32(value: number, field: string): number {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new WireUsageError(`${field} must be an integer in 0..2^32-1, got ${value}`);
  }
  return value;
}

/**
 * The 13 bytes a piece message starts with (length prefix, id, index, begin), for a block of
 * `blockLength` bytes that follows them on the wire: a sender that writes the block as it is
 * (Connection does) copies it once less than one building the whole message.
 */
export function encodePieceHeader(index: number, begin: number, blockLength: number): Buffer {
  if (!Number.isInteger(blockLength) || blockLength < 1 || blockLength > BLOCK_SIZE) {
    throw new WireUsageError(`a piece block must hold 1..${BLOCK_SIZE} bytes, got ${blockLength}`);
  }
  const out = frame(8 + blockLength, MessageId.piece, 13);
  out.writeUInt32BE(u32(index, 'index'), 5);
  out.writeUInt32BE(u32(begin, 'begin'), 9);
  return out;
}

function frame(payloadLength: number, id: number, bytes = 5 + payloadLength): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  out.writeUInt32BE(1 + payloadLength, 0);
  out[4] = id;
  return out;
}

function writeBlockRequest(id: number, r: BlockRequest): Buffer {
  const out = frame(12, id);
  out.writeUInt32BE(u32(r.index, 'index'), 5);
  out.writeUInt32BE(u32(r.begin, 'begin'), 9);
  out.writeUInt32BE(u32(r.length, 'length'), 13);
  return out;
}

function writeIndex(id: number, index: number): Buffer {
  const out = frame(4, id);
  out.writeUInt32BE(u32(index, 'index'), 5);
  return out;
}

function writeHashHeader(id: number, h: HashRequestHeader, extra: number): Buffer {
  if (!Buffer.isBuffer(h.piecesRoot) || h.piecesRoot.length !== HASH_SIZE) {
    throw new WireUsageError('pieces root must be a 32-byte Buffer');
  }
  const out = frame(HASH_HEADER_LENGTH + extra, id);
  h.piecesRoot.copy(out, 5);
  let at = 5 + HASH_SIZE;
  for (const field of ['baseLayer', 'index', 'length', 'proofLayers'] as const) {
    out.writeUInt32BE(u32(h[field], field), at);
    at += 4;
  }
  return out;
}

const EMPTY_IDS: Partial<Record<WireMessageType, number>> = {
  choke: MessageId.choke,
  unchoke: MessageId.unchoke,
  interested: MessageId.interested,
  'not-interested': MessageId.notInterested,
  'have-all': MessageId.haveAll,
  'have-none': MessageId.haveNone,
};

/**
 * One complete frame (4-byte big-endian length, id, payload). Validates field ranges and shapes
 * (throws WireUsageError), not protocol state: that is PeerConnection's job.
 */
export function encodeMessage(msg: WireMessage): Buffer {
  switch (msg.type) {
    case 'keep-alive':
      return Buffer.alloc(4);
    case 'choke':
    case 'unchoke':
    case 'interested':
    case 'not-interested':
    case 'have-all':
    case 'have-none':
      return frame(0, EMPTY_IDS[msg.type] as number);
    case 'have':
      return writeIndex(MessageId.have, msg.index);
    case 'suggest':
      return writeIndex(MessageId.suggest, msg.index);
    case 'allowed-fast':
      return writeIndex(MessageId.allowedFast, msg.index);
    case 'bitfield': {
      const out = frame(msg.bitfield.length, MessageId.bitfield);
      out.set(msg.bitfield, 5);
      return out;
    }
    case 'request':
      return writeBlockRequest(MessageId.request, msg);
    case 'cancel':
      return writeBlockRequest(MessageId.cancel, msg);
    case 'reject':
      return writeBlockRequest(MessageId.reject, msg);
    case 'piece':
      return Buffer.concat([encodePieceHeader(msg.index, msg.begin, msg.block.length), msg.block]);
    case 'port': {
      if (!Number.isInteger(msg.port) || msg.port < 0 || msg.port > 0xffff) {
        throw new WireUsageError(`port must be in 0..65535, got ${msg.port}`);
      }
      const out = frame(2, MessageId.port);
      out.writeUInt16BE(msg.port, 5);
      return out;
    }
    case 'extended': {
      if (!Number.isInteger(msg.id) || msg.id < 0 || msg.id > 255) {
        throw new WireUsageError(`extended message id must be in 0..255, got ${msg.id}`);
      }
      const body = encode(msg.payload);
      const out = frame(1 + body.length, MessageId.extended);
      out[5] = msg.id;
      body.copy(out, 6);
      return out;
    }
    case 'hash-request':
      return writeHashHeader(MessageId.hashRequest, msg, 0);
    case 'hash-reject':
      return writeHashHeader(MessageId.hashReject, msg, 0);
    case 'hashes': {
      const out = writeHashHeader(MessageId.hashes, msg, msg.hashes.length * HASH_SIZE);
      let at = 5 + HASH_HEADER_LENGTH;
      for (const h of msg.hashes) {
        if (h.length !== HASH_SIZE) throw new WireUsageError('every hash must be 32 bytes');
        out.set(h, at);
        at += HASH_SIZE;
      }
      return out;
    }
    default: {
      const never: never = msg;
      throw new WireUsageError(`unknown message type ${(never as { type: string }).type}`);
    }
  }
}
