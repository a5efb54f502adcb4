import { BLOCK_SIZE, HASH_SIZE, isPowerOfTwo, MAX_HASH_REQUEST_LENGTH, type BDict } from '@shoal/torrent';
import { FrameDecoder, DEFAULT_MAX_EXTENDED_PAYLOAD, DEFAULT_MAX_FRAME_LENGTH } from './decoder';
import { WireError, WireUsageError } from './errors';
import { buildExtendedHandshake, MAX_REQQ, parseExtendedHandshake, type ExtendedHandshake } from './extension';
import {
  checkHandshakePrefix,
  encodeHandshake,
  HANDSHAKE_INFO_HASH_END,
  HANDSHAKE_LENGTH,
  hasReservedBit,
  parseHandshake,
  RESERVED_EXTENSION_PROTOCOL,
  RESERVED_FAST,
  RESERVED_V2,
  reservedBits,
  type ReservedBit,
} from './handshake';
import {
  encodeMessage,
  encodePieceHeader,
  EXTENDED_HANDSHAKE_ID,
  expectedHashCount,
  MAX_PROOF_LAYERS,
  type BlockRequest,
  type HashRequestHeader,
  type WireMessage,
} from './messages';
import { PEX_EXTENSION } from './pex';

export interface ConnectionLimits {
  /** Inbound requests queued at once; announced as `reqq`. Default 250. */
  maxInboundRequests: number;
  /** Close when no complete message arrives for this long. Default 120 s. */
  idleTimeoutMs: number;
  /** Send a keep-alive when nothing was sent for this long. Default 60 s. */
  keepAliveIntervalMs: number;
  /** Close when the peer's handshake is not complete this long after `now` at construction. Default 10 s. */
  handshakeTimeoutMs: number;
  /** Inbound hash requests awaiting an answer; more are answered with a hash reject. Default 64. */
  maxInboundHashRequests: number;
  /** See FrameLimits.maxFrameLength. Default BLOCK_SIZE + 13. */
  maxFrameLength: number;
  /** See FrameLimits.maxExtendedPayload. Default 16 KiB. */
  maxExtendedPayload: number;
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = {
  maxInboundRequests: 250,
  idleTimeoutMs: 120_000,
  keepAliveIntervalMs: 60_000,
  handshakeTimeoutMs: 10_000,
  maxInboundHashRequests: 64,
  maxFrameLength: DEFAULT_MAX_FRAME_LENGTH,
  maxExtendedPayload: DEFAULT_MAX_EXTENDED_PAYLOAD,
};

/** Extensions Shoal accepts by default (name -> the id we ask peers to use). */
export const DEFAULT_EXTENSIONS: Readonly<Record<string, number>> = { [PEX_EXTENSION]: 1 };

export interface PeerConnectionOptions {
  /** The torrent's 20-byte (truncated v2) info-hash. */
  infoHash20: Uint8Array;
  localPeerId: Uint8Array;
  numPieces: number;
  pieceLength: number;
  /**
   * Byte length of the torrent's piece space: every piece is `pieceLength` long but the last.
   * (For a v2 torrent with several files that is libtorrent's view: each file but the last padded
   * to a piece boundary.)
   */
  totalLength: number;
  role: 'initiator' | 'acceptor';
  /** When the transport connected (ms, any monotonic clock): starts the handshake timeout. */
  now: number;
  limits?: Partial<ConnectionLimits>;
  /** Pieces we hold at the start: bitfield bytes, 'all' or 'none' (default). */
  have?: Uint8Array | 'all' | 'none';
  /** Offer BEP 6 (default true). */
  fastExtension?: boolean;
  /** Offer BEP 10 (default true). */
  extensionProtocol?: boolean;
  /** Set the BEP 52 upgrade bit (default false: see RESERVED_V2). */
  v2UpgradeBit?: boolean;
  /** Extension messages we accept: name -> our id (1..255). Default DEFAULT_EXTENSIONS. */
  extensions?: Readonly<Record<string, number>>;
  /** Sent as `p` in the extended handshake. */
  listenPort?: number;
  /** Sent as `v` in the extended handshake. */
  clientVersion?: string;
  /** The peer's address as we see it (4 or 16 bytes), sent as `yourip`. */
  remoteIp?: Uint8Array;
}

export type ConnectionEvent =
  /** The peer's handshake arrived and checked out (ours is sent). */
  | { type: 'handshake'; peerId: Buffer; reserved: Buffer; fastExtension: boolean; extensionProtocol: boolean }
  /** The peer's BEP 10 handshake (it may send updated ones later). */
  | { type: 'extended-handshake'; handshake: ExtendedHandshake }
  /** An extension message under one of our announced ids. */
  | { type: 'extension'; name: string; payload: BDict }
  /**
   * A peer message, after checks and state updates. Not reported: keep-alives, extended messages
   * (see above), requests the connection answered itself (rejected or dropped: choked, piece not
   * announced, duplicate, queue full), cancels of requests no longer queued.
   */
  | { type: 'message'; message: WireMessage }
  /** The connection is over; nothing else follows. */
  | { type: 'closed'; reason: WireError };

export type ConnectionPhase = 'handshake' | 'open' | 'closed';

export interface Drained {
  /** Frames to write, in order. A piece frame holds its own copy of the block. */
  outgoing: Buffer[];
  events: ConnectionEvent[];
}

interface Outstanding extends BlockRequest {
  /** We sent a cancel (fast extension: a piece or a reject still answers it). */
  cancelled: boolean;
}

/** Late pieces tolerated after a cancel without the fast extension. */
const MAX_RECENTLY_CANCELLED = 1024;

function bitOf(bits: Uint8Array, index: number): boolean {
  return (((bits[index >> 3] ?? 0) >> (7 - (index & 7))) & 1) === 1;
}

function setBit(bits: Uint8Array, index: number): void {
  bits[index >> 3] = (bits[index >> 3] ?? 0) | (0x80 >> (index & 7));
}

function popcount(bits: Uint8Array): number {
  let n = 0;
  for (const b of bits) {
    let v = b;
    while (v) {
      v &= v - 1;
      n++;
    }
  }
  return n;
}

const blockKey = (r: BlockRequest): string => `${r.index}:${r.begin}:${r.length}`;
const offsetKey = (index: number, begin: number): string => `${index}:${begin}`;
const hashKey = (h: HashRequestHeader): string =>
  `${h.piecesRoot.toString('hex')}:${h.baseLayer}:${h.index}:${h.length}:${h.proofLayers}`;

function copyHeader(h: HashRequestHeader): HashRequestHeader {
  return {
    piecesRoot: Buffer.from(h.piecesRoot),
    baseLayer: h.baseLayer,
    index: h.index,
    length: h.length,
    proofLayers: h.proofLayers,
  };
}

/**
 * One peer-wire connection, sans-IO: bytes and time go in (`receive`, `tick`, the send methods),
 * frames and events come out (`drain`). Nothing here touches a socket or a clock.
 *
 * Driving it: after every `receive` / `tick` / send call, `drain()` and write `outgoing` to the
 * transport in order, then handle `events`; arm one timer for `nextTimeout()` and call
 * `tick(now)` when it fires; call `end()` when the transport reports EOF. A `closed` event is
 * final: destroy the transport (flushing what was drained first is optional).
 *
 * Peer misbehaviour never throws: it closes the connection with a typed WireError. Misuse by the
 * local caller (bad arguments, a fast-extension message without the fast extension, sending
 * before the handshake) throws WireUsageError. Sends after close are ignored and return false.
 *
 * Received messages may hold views into the buffers given to `receive` (piece blocks in
 * particular): do not reuse those buffers.
 */
export class PeerConnection {
  readonly role: 'initiator' | 'acceptor';
  readonly numPieces: number;
  readonly pieceLength: number;
  readonly totalLength: number;
  readonly limits: Readonly<ConnectionLimits>;

  private phaseValue: ConnectionPhase = 'handshake';
  private reason: WireError | undefined;
  private readonly infoHash: Buffer;
  private readonly localPeerId: Buffer;
  private readonly localReserved: Buffer;
  private readonly offerFast: boolean;
  private readonly offerExtensions: boolean;
  private readonly localExtensions: Map<string, number>;
  private readonly localExtensionById: Map<number, string>;
  private readonly extendedHandshakeInit: { listenPort?: number; clientVersion?: string; yourIp?: Uint8Array };
  private readonly decoder: FrameDecoder;

  private handshakeBuf: Buffer = Buffer.alloc(HANDSHAKE_LENGTH);
  private handshakeFilled = 0;
  private sentHandshake = false;
  private remotePeerId: Buffer | undefined;
  private remoteReserved: Buffer | undefined;
  private fast = false;
  private extensionsOn = false;

  private readonly startedAt: number;
  private lastReceivedAt: number;
  private lastSentAt: number;

  private outgoing: Buffer[] = [];
  private events: ConnectionEvent[] = [];

  private amChokingValue = true;
  private amInterestedValue = false;
  private peerChokingValue = true;
  private peerInterestedValue = false;

  private readonly localHave: Uint8Array;
  private localHaveCount: number;
  private readonly peerHave: Uint8Array;
  private peerHaveCount = 0;
  private availabilityReceived = false;
  private messagesSinceHandshake = false;

  private readonly outstanding = new Map<string, Outstanding>();
  private readonly recentlyCancelled = new Set<string>();
  private readonly inbound = new Map<string, BlockRequest>();
  private readonly localAllowedFast = new Set<number>();
  private readonly peerAllowedFast = new Set<number>();
  private readonly outstandingHashes = new Map<string, HashRequestHeader>();
  private readonly inboundHashes = new Map<string, HashRequestHeader>();

  private peerExtensionIds = new Map<string, number>();
  private peerExtended: ExtendedHandshake | undefined;

  constructor(options: PeerConnectionOptions) {
    const { numPieces, pieceLength, totalLength } = options;
    if (options.infoHash20.length !== 20) throw new WireUsageError('infoHash20 must be 20 bytes');
    if (options.localPeerId.length !== 20) throw new WireUsageError('localPeerId must be 20 bytes');
    if (!Number.isSafeInteger(pieceLength) || pieceLength < 1) throw new WireUsageError('pieceLength must be a positive integer');
    if (!Number.isSafeInteger(totalLength) || totalLength < 1) throw new WireUsageError('totalLength must be a positive integer');
    if (numPieces !== Math.ceil(totalLength / pieceLength)) {
      throw new WireUsageError(`numPieces ${numPieces} does not match totalLength / pieceLength`);
    }
    if (!Number.isFinite(options.now)) throw new WireUsageError('now must be a number');
    const limits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
    for (const [key, value] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new WireUsageError(`limits.${key} must be a positive integer`);
    }
    if (limits.maxInboundRequests > MAX_REQQ) throw new WireUsageError(`limits.maxInboundRequests above ${MAX_REQQ}`);

    this.role = options.role;
    this.numPieces = numPieces;
    this.pieceLength = pieceLength;
    this.totalLength = totalLength;
    this.limits = Object.freeze(limits);
    this.infoHash = Buffer.from(options.infoHash20);
    this.localPeerId = Buffer.from(options.localPeerId);
    this.offerFast = options.fastExtension ?? true;
    this.offerExtensions = options.extensionProtocol ?? true;
    const bits: ReservedBit[] = [];
    if (this.offerFast) bits.push(RESERVED_FAST);
    if (this.offerExtensions) bits.push(RESERVED_EXTENSION_PROTOCOL);
    if (options.v2UpgradeBit) bits.push(RESERVED_V2);
    this.localReserved = reservedBits(...bits);

    this.localExtensions = new Map(Object.entries(options.extensions ?? DEFAULT_EXTENSIONS));
    this.localExtensionById = new Map();
    for (const [name, id] of this.localExtensions) {
      if (!Number.isInteger(id) || id < 1 || id > 255) throw new WireUsageError(`extension ${name}: id must be in 1..255`);
      if (this.localExtensionById.has(id)) throw new WireUsageError(`extension id ${id} used twice`);
      this.localExtensionById.set(id, name);
    }
    this.extendedHandshakeInit = {};
    if (options.listenPort !== undefined) this.extendedHandshakeInit.listenPort = options.listenPort;
    if (options.clientVersion !== undefined) this.extendedHandshakeInit.clientVersion = options.clientVersion;
    if (options.remoteIp !== undefined) this.extendedHandshakeInit.yourIp = options.remoteIp;
    // Validates the fields now rather than at handshake time.
    this.buildExtendedHandshake();

    this.decoder = new FrameDecoder({
      numPieces,
      maxFrameLength: limits.maxFrameLength,
      maxExtendedPayload: limits.maxExtendedPayload,
    });

    const bitfieldLength = Math.ceil(numPieces / 8);
    this.peerHave = new Uint8Array(bitfieldLength);
    this.localHave = new Uint8Array(bitfieldLength);
    const have = options.have ?? 'none';
    if (have === 'all') {
      for (let i = 0; i < numPieces; i++) setBit(this.localHave, i);
    } else if (have !== 'none') {
      const spare = bitfieldLength * 8 - numPieces;
      if (have.length !== bitfieldLength || (spare > 0 && ((have[bitfieldLength - 1] ?? 0) & ((1 << spare) - 1)) !== 0)) {
        throw new WireUsageError(`have must be a bitfield of ${bitfieldLength} bytes with spare bits clear`);
      }
      this.localHave.set(have);
    }
    this.localHaveCount = popcount(this.localHave);

    this.startedAt = options.now;
    this.lastReceivedAt = options.now;
    this.lastSentAt = options.now;
    if (this.role === 'initiator') this.sendHandshake(options.now);
  }

  // ---------------------------------------------------------------- state

  get phase(): ConnectionPhase {
    return this.phaseValue;
  }
  get closed(): boolean {
    return this.phaseValue === 'closed';
  }
  get closeReason(): WireError | undefined {
    return this.reason;
  }
  get peerId(): Buffer | undefined {
    return this.remotePeerId;
  }
  get peerReserved(): Buffer | undefined {
    return this.remoteReserved;
  }
  /** BEP 6 negotiated (both sides set the bit). */
  get fastExtension(): boolean {
    return this.fast;
  }
  /** BEP 10 negotiated (both sides set the bit). */
  get extensionProtocol(): boolean {
    return this.extensionsOn;
  }
  get amChoking(): boolean {
    return this.amChokingValue;
  }
  get amInterested(): boolean {
    return this.amInterestedValue;
  }
  get peerChoking(): boolean {
    return this.peerChokingValue;
  }
  get peerInterested(): boolean {
    return this.peerInterestedValue;
  }
  /** The peer's latest extended handshake. */
  get peerExtendedHandshake(): ExtendedHandshake | undefined {
    return this.peerExtended;
  }
  /** The peer's `reqq`, or 250 (libtorrent's assumption for peers that do not say). */
  get peerRequestQueueLimit(): number {
    return this.peerExtended?.reqq ?? 250;
  }
  get peerPieceCount(): number {
    return this.peerHaveCount;
  }
  get peerIsSeed(): boolean {
    return this.peerHaveCount === this.numPieces;
  }
  peerHas(index: number): boolean {
    return index >= 0 && index < this.numPieces && bitOf(this.peerHave, index);
  }
  /** A copy of the peer's bitfield. */
  peerBitfield(): Buffer {
    return Buffer.from(this.peerHave);
  }
  /** Whether we announced (or will announce at handshake) this piece. */
  weHave(index: number): boolean {
    return index >= 0 && index < this.numPieces && bitOf(this.localHave, index);
  }
  /** Pieces the peer lets us request while it chokes us (BEP 6). */
  get peerAllowedFastSet(): ReadonlySet<number> {
    return this.peerAllowedFast;
  }
  /** Our requests the peer has not answered yet (cancelled ones included until answered, with fast). */
  outstandingRequests(): BlockRequest[] {
    return [...this.outstanding.values()].map(({ index, begin, length }) => ({ index, begin, length }));
  }
  /** Peer requests queued for us to serve, oldest first. */
  inboundRequests(): BlockRequest[] {
    return [...this.inbound.values()];
  }
  /** The byte length of a piece (the last one may be short). */
  pieceSize(index: number): number {
    return Math.min(this.pieceLength, this.totalLength - index * this.pieceLength);
  }

  // ---------------------------------------------------------------- driving

  /** Feeds bytes from the transport. Never throws for anything the peer sends. */
  receive(bytes: Uint8Array, now: number): void {
    if (this.phaseValue === 'closed' || bytes.length === 0) return;
    this.guard(() => {
      let data: Buffer | null = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
      if (this.phaseValue === 'handshake') {
        data = this.readHandshake(data, now);
        if (data === null || data.length === 0) return;
      }
      this.decoder.push(data);
      while (this.phaseValue === 'open') {
        const msg = this.decoder.next();
        if (msg === null) break;
        this.lastReceivedAt = Math.max(this.lastReceivedAt, now);
        this.handle(msg, now);
      }
    });
  }

  /** Timeouts and keep-alives. Call at `nextTimeout()` (calling more often is harmless). */
  tick(now: number): void {
    if (this.phaseValue === 'closed') return;
    if (this.phaseValue === 'handshake') {
      if (now - this.startedAt >= this.limits.handshakeTimeoutMs) {
        this.closeWith(new WireError('WIRE_HANDSHAKE_TIMEOUT', `no handshake within ${this.limits.handshakeTimeoutMs} ms`));
      }
      return;
    }
    if (now - this.lastReceivedAt >= this.limits.idleTimeoutMs) {
      this.closeWith(new WireError('WIRE_IDLE_TIMEOUT', `nothing received for ${now - this.lastReceivedAt} ms`));
      return;
    }
    if (now - this.lastSentAt >= this.limits.keepAliveIntervalMs) this.queue({ type: 'keep-alive' }, now);
  }

  /** When `tick` next has something to do, or undefined once closed. */
  nextTimeout(): number | undefined {
    if (this.phaseValue === 'closed') return undefined;
    if (this.phaseValue === 'handshake') return this.startedAt + this.limits.handshakeTimeoutMs;
    return Math.min(this.lastReceivedAt + this.limits.idleTimeoutMs, this.lastSentAt + this.limits.keepAliveIntervalMs);
  }

  /** Takes the frames to write and the events to handle, in order. */
  drain(): Drained {
    const out = { outgoing: this.outgoing, events: this.events };
    this.outgoing = [];
    this.events = [];
    return out;
  }

  /** The transport reported end of stream. */
  end(): void {
    if (this.phaseValue === 'closed') return;
    const pending = this.phaseValue === 'handshake' ? this.handshakeFilled : this.decoder.buffered;
    this.closeWith(
      new WireError('WIRE_PEER_CLOSED', pending > 0 ? `peer closed the stream inside a frame (${pending} bytes)` : 'peer closed the stream'),
    );
  }

  /** Closes locally (default reason WIRE_LOCAL_CLOSE). */
  close(reason?: WireError): void {
    this.closeWith(reason ?? new WireError('WIRE_LOCAL_CLOSE', 'closed locally'));
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends any message a caller may send, through the same checks and state updates as the
   * methods below (which it calls). Bitfield / have all / have none are sent by the connection
   * itself (from the `have` option and `have()` calls) and throw here, as does `port`.
   */
  send(msg: WireMessage, now: number): boolean {
    switch (msg.type) {
      case 'keep-alive':
        if (!this.ready('keep-alive')) return false;
        this.queue(msg, now);
        return true;
      case 'choke':
        return this.choke(now);
      case 'unchoke':
        return this.unchoke(now);
      case 'interested':
        return this.interested(now);
      case 'not-interested':
        return this.notInterested(now);
      case 'have':
        return this.have(msg.index, now);
      case 'request':
        return this.request(msg, now);
      case 'cancel':
        return this.cancel(msg, now);
      case 'reject':
        return this.reject(msg, now);
      case 'piece':
        return this.piece(msg.index, msg.begin, msg.block, now);
      case 'suggest':
        return this.suggest(msg.index, now);
      case 'allowed-fast':
        return this.allowedFast(msg.index, now);
      case 'hash-request':
        return this.hashRequest(msg, now);
      case 'hashes':
        return this.hashes(msg, msg.hashes, now);
      case 'hash-reject':
        return this.hashReject(msg, now);
      case 'extended': {
        if (msg.id === EXTENDED_HANDSHAKE_ID) throw new WireUsageError('the extended handshake is sent by the connection');
        for (const [name, id] of this.peerExtensionIds) if (id === msg.id) return this.extended(name, msg.payload, now);
        throw new WireUsageError(`the peer announced no extension under id ${msg.id}`);
      }
      case 'bitfield':
      case 'have-all':
      case 'have-none':
        throw new WireUsageError(`${msg.type} is sent by the connection after the handshake (use the have option and have())`);
      case 'port':
        throw new WireUsageError('Shoal does not send DHT port messages');
      default: {
        const never: never = msg;
        throw new WireUsageError(`unknown message type ${(never as { type: string }).type}`);
      }
    }
  }

  choke(now: number): boolean {
    if (!this.ready('choke') || this.amChokingValue) return false;
    this.amChokingValue = true;
    this.queue({ type: 'choke' }, now);
    // BEP 3: a choke discards the peer's queued requests. BEP 6: each is rejected explicitly,
    // except those for allowed-fast pieces, which stay queued.
    for (const [key, r] of this.inbound) {
      if (this.fast && this.localAllowedFast.has(r.index)) continue;
      this.inbound.delete(key);
      if (this.fast) this.queue({ type: 'reject', ...r }, now);
    }
    return true;
  }

  unchoke(now: number): boolean {
    if (!this.ready('unchoke') || !this.amChokingValue) return false;
    this.amChokingValue = false;
    this.queue({ type: 'unchoke' }, now);
    return true;
  }

  interested(now: number): boolean {
    if (!this.ready('interested') || this.amInterestedValue) return false;
    this.amInterestedValue = true;
    this.queue({ type: 'interested' }, now);
    return true;
  }

  notInterested(now: number): boolean {
    if (!this.ready('not interested') || !this.amInterestedValue) return false;
    this.amInterestedValue = false;
    this.queue({ type: 'not-interested' }, now);
    return true;
  }

  /**
   * Announces a verified piece. Before the handshake completes it is folded into the initial
   * bitfield; false when already announced.
   */
  have(index: number, now: number): boolean {
    this.checkIndex(index);
    if (this.phaseValue === 'closed' || bitOf(this.localHave, index)) return false;
    setBit(this.localHave, index);
    this.localHaveCount++;
    if (this.phaseValue === 'open') this.queue({ type: 'have', index }, now);
    return true;
  }

  /**
   * Requests a block. False (nothing sent) when the peer chokes us and the piece is not allowed
   * fast, when the peer has not announced the piece, or when that offset is already requested.
   */
  request(r: BlockRequest, now: number): boolean {
    this.checkBlock(r);
    if (!this.ready('request')) return false;
    if (this.peerChokingValue && !(this.fast && this.peerAllowedFast.has(r.index))) return false;
    if (!bitOf(this.peerHave, r.index)) return false;
    const key = offsetKey(r.index, r.begin);
    if (this.outstanding.has(key)) return false;
    this.recentlyCancelled.delete(blockKey(r));
    this.outstanding.set(key, { index: r.index, begin: r.begin, length: r.length, cancelled: false });
    this.queue({ type: 'request', index: r.index, begin: r.begin, length: r.length }, now);
    return true;
  }

  /**
   * Cancels one of our requests. With the fast extension the request stays outstanding until the
   * peer answers it (piece or reject, BEP 6); without, it is forgotten, and a late piece for it is
   * still accepted.
   */
  cancel(r: BlockRequest, now: number): boolean {
    this.checkBlock(r);
    if (!this.ready('cancel')) return false;
    const key = offsetKey(r.index, r.begin);
    const o = this.outstanding.get(key);
    if (!o || o.length !== r.length || o.cancelled) return false;
    this.queue({ type: 'cancel', index: r.index, begin: r.begin, length: r.length }, now);
    if (this.fast) {
      o.cancelled = true;
    } else {
      this.outstanding.delete(key);
      this.rememberCancelled(r);
    }
    return true;
  }

  /**
   * Serves a queued request. The block is not copied: it goes into `outgoing` as given, after its
   * header, so it must not change until written. False when the request is no longer queued
   * (cancelled, or dropped by a choke): the caller simply discards the data.
   */
  piece(index: number, begin: number, block: Buffer, now: number): boolean {
    const r = { index, begin, length: block.length };
    this.checkBlock(r);
    if (!this.ready('piece')) return false;
    const key = blockKey(r);
    if (!this.inbound.delete(key)) return false;
    this.queue({ type: 'piece', index, begin, block }, now);
    return true;
  }

  /** Declines a queued request (e.g. a read failed): a reject with the fast extension, else dropped. */
  reject(r: BlockRequest, now: number): boolean {
    this.checkBlock(r);
    if (!this.ready('reject')) return false;
    if (!this.inbound.delete(blockKey(r))) return false;
    if (this.fast) this.queue({ type: 'reject', index: r.index, begin: r.begin, length: r.length }, now);
    return true;
  }

  suggest(index: number, now: number): boolean {
    this.checkIndex(index);
    if (!this.ready('suggest')) return false;
    this.requireLocalFast('suggest');
    this.queue({ type: 'suggest', index }, now);
    return true;
  }

  /** Lets the peer request this piece while we choke it (BEP 6). */
  allowedFast(index: number, now: number): boolean {
    this.checkIndex(index);
    if (!this.ready('allowed fast')) return false;
    this.requireLocalFast('allowed fast');
    if (this.localAllowedFast.has(index)) return false;
    this.localAllowedFast.add(index);
    this.queue({ type: 'allowed-fast', index }, now);
    return true;
  }

  /** Asks for hashes (BEP 52): 2..512 base hashes, a power of two, index a multiple of length. */
  hashRequest(h: HashRequestHeader, now: number): boolean {
    if (h.piecesRoot.length !== HASH_SIZE) throw new WireUsageError('pieces root must be 32 bytes');
    if (!isPowerOfTwo(h.length) || h.length < 2 || h.length > MAX_HASH_REQUEST_LENGTH) {
      throw new WireUsageError(`hash request length must be a power of two in 2..${MAX_HASH_REQUEST_LENGTH}`);
    }
    if (!Number.isInteger(h.index) || h.index < 0 || h.index % h.length !== 0) {
      throw new WireUsageError('hash request index must be a non-negative multiple of its length');
    }
    for (const field of ['baseLayer', 'proofLayers'] as const) {
      if (!Number.isInteger(h[field]) || h[field] < 0 || h[field] > MAX_PROOF_LAYERS) {
        throw new WireUsageError(`hash request ${field} must be in 0..${MAX_PROOF_LAYERS}`);
      }
    }
    if (!this.ready('hash request')) return false;
    const key = hashKey(h);
    if (this.outstandingHashes.has(key)) return false;
    const header = copyHeader(h);
    this.outstandingHashes.set(key, header);
    this.queue({ type: 'hash-request', ...header }, now);
    return true;
  }

  /** Answers a pending hash request with `expectedHashCount(h)` hashes (merkle.ts `hashesFor`). */
  hashes(h: HashRequestHeader, hashes: readonly Buffer[], now: number): boolean {
    if (hashes.length !== expectedHashCount(h)) {
      throw new WireUsageError(`a hashes answer to this request carries ${expectedHashCount(h)} hashes, not ${hashes.length}`);
    }
    if (!this.ready('hashes')) return false;
    const key = hashKey(h);
    const header = this.inboundHashes.get(key);
    if (!header) return false;
    this.inboundHashes.delete(key);
    this.queue({ type: 'hashes', ...header, hashes: [...hashes] }, now);
    return true;
  }

  /** Declines a pending hash request. */
  hashReject(h: HashRequestHeader, now: number): boolean {
    if (!this.ready('hash reject')) return false;
    const key = hashKey(h);
    const header = this.inboundHashes.get(key);
    if (!header) return false;
    this.inboundHashes.delete(key);
    this.queue({ type: 'hash-reject', ...header }, now);
    return true;
  }

  /**
   * Sends an extension message under the id the peer announced for `name`; false when the peer
   * did not announce it (or has not sent its extended handshake yet).
   */
  extended(name: string, payload: BDict, now: number): boolean {
    if (!this.ready('extended')) return false;
    if (!this.extensionsOn) throw new WireUsageError('the extension protocol was not negotiated');
    const id = this.peerExtensionIds.get(name);
    if (id === undefined) return false;
    this.queue({ type: 'extended', id, payload }, now);
    return true;
  }

  // ---------------------------------------------------------------- internals

  private ready(what: string): boolean {
    if (this.phaseValue === 'closed') return false;
    if (this.phaseValue === 'handshake') throw new WireUsageError(`${what} sent before the handshake completed`);
    return true;
  }

  private requireLocalFast(what: string): void {
    if (!this.fast) throw new WireUsageError(`${what} needs the fast extension, which was not negotiated`);
  }

  private checkIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.numPieces) {
      throw new WireUsageError(`piece index ${index} outside 0..${this.numPieces - 1}`);
    }
  }

  private checkBlock(r: BlockRequest): void {
    this.checkIndex(r.index);
    if (!Number.isInteger(r.length) || r.length < 1 || r.length > BLOCK_SIZE) {
      throw new WireUsageError(`block length ${r.length} outside 1..${BLOCK_SIZE}`);
    }
    if (!Number.isInteger(r.begin) || r.begin < 0 || r.begin + r.length > this.pieceSize(r.index)) {
      throw new WireUsageError(`block ${r.begin}+${r.length} runs past piece ${r.index}`);
    }
  }

  private queue(msg: WireMessage, now: number): void {
    if (msg.type === 'piece') this.outgoing.push(encodePieceHeader(msg.index, msg.begin, msg.block.length), msg.block);
    else this.outgoing.push(encodeMessage(msg));
    this.lastSentAt = Math.max(this.lastSentAt, now);
  }

  private emit(event: ConnectionEvent): void {
    this.events.push(event);
  }

  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.closeWith(
        e instanceof WireError
          ? e
          : new WireError('WIRE_INTERNAL_ERROR', `internal error while handling input: ${(e as Error)?.message}`, { cause: e }),
      );
    }
  }

  private closeWith(reason: WireError): void {
    if (this.phaseValue === 'closed') return;
    this.phaseValue = 'closed';
    this.reason = reason;
    this.inbound.clear();
    this.outstanding.clear();
    this.recentlyCancelled.clear();
    this.inboundHashes.clear();
    this.outstandingHashes.clear();
    this.handshakeBuf = Buffer.alloc(0);
    this.emit({ type: 'closed', reason });
  }

  private buildExtendedHandshake(): BDict {
    return buildExtendedHandshake({ m: this.localExtensions, reqq: this.limits.maxInboundRequests, ...this.extendedHandshakeInit });
  }

  private sendHandshake(now: number): void {
    this.outgoing.push(encodeHandshake({ infoHash20: this.infoHash, peerId20: this.localPeerId, reserved: this.localReserved }));
    this.sentHandshake = true;
    this.lastSentAt = Math.max(this.lastSentAt, now);
  }

  /** Accumulates the 68-byte handshake; returns the bytes after it, or null until complete. */
  private readHandshake(data: Buffer, now: number): Buffer | null {
    const take = Math.min(HANDSHAKE_LENGTH - this.handshakeFilled, data.length);
    data.copy(this.handshakeBuf, this.handshakeFilled, 0, take);
    const before = this.handshakeFilled;
    this.handshakeFilled += take;
    checkHandshakePrefix(this.handshakeBuf.subarray(0, this.handshakeFilled));
    if (before < HANDSHAKE_INFO_HASH_END && this.handshakeFilled >= HANDSHAKE_INFO_HASH_END) {
      const theirs = this.handshakeBuf.subarray(HANDSHAKE_INFO_HASH_END - 20, HANDSHAKE_INFO_HASH_END);
      if (!theirs.equals(this.infoHash)) {
        throw new WireError('WIRE_INFOHASH_MISMATCH', `peer asked for info-hash ${theirs.toString('hex')}`);
      }
      // As libtorrent: the acceptor answers once it knows the torrent is the right one.
      if (!this.sentHandshake) this.sendHandshake(now);
    }
    if (this.handshakeFilled < HANDSHAKE_LENGTH) return null;

    const hs = parseHandshake(this.handshakeBuf);
    if (hs.peerId20.equals(this.localPeerId)) throw new WireError('WIRE_SELF_CONNECTION', 'connected to ourselves');
    this.remotePeerId = Buffer.from(hs.peerId20);
    this.remoteReserved = Buffer.from(hs.reserved);
    this.handshakeBuf = Buffer.alloc(0);
    this.fast = this.offerFast && hasReservedBit(hs.reserved, RESERVED_FAST);
    this.extensionsOn = this.offerExtensions && hasReservedBit(hs.reserved, RESERVED_EXTENSION_PROTOCOL);
    this.phaseValue = 'open';
    this.lastReceivedAt = Math.max(this.lastReceivedAt, now);
    this.emit({
      type: 'handshake',
      peerId: this.remotePeerId,
      reserved: this.remoteReserved,
      fastExtension: this.fast,
      extensionProtocol: this.extensionsOn,
    });
    // libtorrent's order: extended handshake, then the availability message.
    if (this.extensionsOn) this.queue({ type: 'extended', id: EXTENDED_HANDSHAKE_ID, payload: this.buildExtendedHandshake() }, now);
    this.sendAvailability(now);
    return data.subarray(take);
  }

  private sendAvailability(now: number): void {
    if (this.fast && this.localHaveCount === this.numPieces) this.queue({ type: 'have-all' }, now);
    else if (this.fast && this.localHaveCount === 0) this.queue({ type: 'have-none' }, now);
    else if (this.localHaveCount > 0) this.queue({ type: 'bitfield', bitfield: Buffer.from(this.localHave) }, now);
    // BEP 3: a peer with no pieces and no fast extension may skip the bitfield.
  }

  private requireFast(type: string): void {
    if (!this.fast) throw new WireError('WIRE_NOT_NEGOTIATED', `${type} without the fast extension`);
  }

  /**
   * The first message after the handshake (extended messages, keep-alives and port aside) may be
   * the peer's availability; with the fast extension it must be (BEP 6).
   */
  private ordinaryMessage(type: string): void {
    if (this.messagesSinceHandshake) return;
    this.messagesSinceHandshake = true;
    if (this.fast && !this.availabilityReceived) {
      throw new WireError('WIRE_OUT_OF_ORDER', `${type} before bitfield / have all / have none (fast extension)`);
    }
  }

  private availability(type: string): void {
    if (this.availabilityReceived || this.messagesSinceHandshake) {
      throw new WireError('WIRE_OUT_OF_ORDER', `${type} is only allowed once, right after the handshake`);
    }
    this.availabilityReceived = true;
  }

  private handle(msg: WireMessage, now: number): void {
    switch (msg.type) {
      case 'keep-alive':
        return;
      case 'port':
        this.emit({ type: 'message', message: msg });
        return;
      case 'extended':
        this.handleExtended(msg.id, msg.payload);
        return;
      case 'bitfield':
        this.availability(msg.type);
        this.peerHave.set(msg.bitfield);
        this.peerHaveCount = popcount(this.peerHave);
        break;
      case 'have-all':
      case 'have-none':
        this.requireFast(msg.type);
        this.availability(msg.type);
        if (msg.type === 'have-all') {
          for (let i = 0; i < this.numPieces; i++) setBit(this.peerHave, i);
          this.peerHaveCount = this.numPieces;
        }
        break;
      case 'choke':
        this.ordinaryMessage(msg.type);
        this.peerChokingValue = true;
        // BEP 3: a choke drops every pending request; BEP 6 makes rejects explicit instead.
        if (!this.fast) this.outstanding.clear();
        break;
      case 'unchoke':
        this.ordinaryMessage(msg.type);
        this.peerChokingValue = false;
        break;
      case 'interested':
        this.ordinaryMessage(msg.type);
        this.peerInterestedValue = true;
        break;
      case 'not-interested':
        this.ordinaryMessage(msg.type);
        this.peerInterestedValue = false;
        break;
      case 'have':
        this.ordinaryMessage(msg.type);
        if (!bitOf(this.peerHave, msg.index)) {
          setBit(this.peerHave, msg.index);
          this.peerHaveCount++;
        }
        break;
      case 'request':
        this.ordinaryMessage(msg.type);
        if (!this.handleRequest(msg, now)) return;
        break;
      case 'piece':
        this.ordinaryMessage(msg.type);
        this.handlePiece(msg.index, msg.begin, msg.block.length);
        break;
      case 'cancel':
        this.ordinaryMessage(msg.type);
        if (!this.inbound.delete(blockKey(msg))) return;
        if (this.fast) this.queue({ type: 'reject', index: msg.index, begin: msg.begin, length: msg.length }, now);
        break;
      case 'suggest':
        this.requireFast(msg.type);
        this.ordinaryMessage(msg.type);
        break;
      case 'reject':
        this.requireFast(msg.type);
        this.ordinaryMessage(msg.type);
        this.handleReject(msg);
        break;
      case 'allowed-fast':
        this.requireFast(msg.type);
        this.ordinaryMessage(msg.type);
        this.peerAllowedFast.add(msg.index);
        break;
      case 'hash-request': {
        this.ordinaryMessage(msg.type);
        const key = hashKey(msg);
        if (this.inboundHashes.has(key)) return;
        if (this.inboundHashes.size >= this.limits.maxInboundHashRequests) {
          this.queue({ ...msg, type: 'hash-reject' }, now);
          return;
        }
        this.inboundHashes.set(key, copyHeader(msg));
        break;
      }
      case 'hashes':
      case 'hash-reject':
        this.ordinaryMessage(msg.type);
        if (!this.outstandingHashes.delete(hashKey(msg))) {
          throw new WireError('WIRE_UNSOLICITED_HASHES', `${msg.type} for a hash request we did not make`);
        }
        break;
      default: {
        const never: never = msg;
        throw new WireError('WIRE_UNKNOWN_MESSAGE', `unhandled message ${(never as { type: string }).type}`);
      }
    }
    this.emit({ type: 'message', message: msg });
  }

  /** Queues a peer request; false when it was answered here (rejected or dropped). */
  private handleRequest(r: BlockRequest, now: number): boolean {
    if (r.begin + r.length > this.pieceSize(r.index)) {
      throw new WireError('WIRE_BAD_REQUEST', `request ${r.begin}+${r.length} runs past piece ${r.index} (${this.pieceSize(r.index)} bytes)`);
    }
    const allowed = bitOf(this.localHave, r.index) && (!this.amChokingValue || (this.fast && this.localAllowedFast.has(r.index)));
    const key = blockKey(r);
    if (allowed && this.inbound.has(key)) return false; // duplicate
    if (allowed && this.inbound.size < this.limits.maxInboundRequests) {
      this.inbound.set(key, { index: r.index, begin: r.begin, length: r.length });
      return true;
    }
    if (this.fast) {
      this.queue({ type: 'reject', index: r.index, begin: r.begin, length: r.length }, now);
      return false;
    }
    if (allowed) {
      throw new WireError('WIRE_REQUEST_QUEUE_FULL', `more than ${this.limits.maxInboundRequests} queued requests (our reqq)`);
    }
    return false; // BEP 3: requests while choked (or for pieces we never announced) are dropped
  }

  private handlePiece(index: number, begin: number, length: number): void {
    const key = offsetKey(index, begin);
    const o = this.outstanding.get(key);
    if (o) {
      if (o.length !== length) {
        throw new WireError('WIRE_BAD_PIECE_LENGTH', `piece ${index}@${begin} of ${length} bytes; we requested ${o.length}`);
      }
      this.outstanding.delete(key);
      return;
    }
    if (this.recentlyCancelled.delete(blockKey({ index, begin, length }))) return;
    throw new WireError('WIRE_UNSOLICITED_PIECE', `piece ${index}@${begin}+${length} was not requested`);
  }

  private handleReject(r: BlockRequest): void {
    const key = offsetKey(r.index, r.begin);
    const o = this.outstanding.get(key);
    if (!o || o.length !== r.length) {
      throw new WireError('WIRE_UNSOLICITED_REJECT', `reject of ${r.index}@${r.begin}+${r.length}, which we did not request`);
    }
    this.outstanding.delete(key);
  }

  private rememberCancelled(r: BlockRequest): void {
    this.recentlyCancelled.add(blockKey(r));
    if (this.recentlyCancelled.size > MAX_RECENTLY_CANCELLED) {
      const oldest = this.recentlyCancelled.values().next().value as string;
      this.recentlyCancelled.delete(oldest);
    }
  }

  private handleExtended(id: number, payload: BDict): void {
    if (!this.extensionsOn) throw new WireError('WIRE_NOT_NEGOTIATED', 'extended message without the extension protocol');
    if (id === EXTENDED_HANDSHAKE_ID) {
      const handshake = parseExtendedHandshake(payload);
      this.peerExtended = handshake;
      this.peerExtensionIds = handshake.m;
      this.emit({ type: 'extended-handshake', handshake });
      return;
    }
    const name = this.localExtensionById.get(id);
    if (name === undefined) throw new WireError('WIRE_UNKNOWN_EXTENSION', `extended message id ${id} was not announced`);
    this.emit({ type: 'extension', name, payload });
  }
}
