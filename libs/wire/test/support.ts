import fc from 'fast-check';
import { BLOCK_SIZE, type BDict, type BValue } from '@shoal/torrent';
import {
  encodeHandshake,
  encodeMessage,
  expectedHashCount,
  PeerConnection,
  RESERVED_EXTENSION_PROTOCOL,
  RESERVED_FAST,
  reservedBits,
  type ConnectionEvent,
  type PeerConnectionOptions,
  type WireMessage,
} from '../src';

export const INFO_HASH = Buffer.alloc(20, 0xab);
export const OTHER_INFO_HASH = Buffer.alloc(20, 0xcd);
export const LOCAL_ID = Buffer.from('-SH0100-localpeer001', 'latin1');
export const REMOTE_ID = Buffer.from('-SH0100-remotepeer01', 'latin1');

/** 10 pieces of 32 KiB, the last one 20000 bytes (two blocks: 16384 + 3616). */
export const GEOMETRY = { numPieces: 10, pieceLength: 32 * 1024, totalLength: 9 * 32 * 1024 + 20000 };
export const LAST_PIECE = 9;
export const LAST_PIECE_SIZE = 20000;

export const FAST_EXT = reservedBits(RESERVED_FAST, RESERVED_EXTENSION_PROTOCOL);
export const NO_EXT = reservedBits();

export function makeConnection(options: Partial<PeerConnectionOptions> = {}): PeerConnection {
  return new PeerConnection({
    infoHash20: INFO_HASH,
    localPeerId: LOCAL_ID,
    ...GEOMETRY,
    role: 'acceptor',
    now: 0,
    clientVersion: 'Shoal 0.1.0',
    ...options,
  });
}

export function remoteHandshake(reserved: Buffer = FAST_EXT, infoHash: Buffer = INFO_HASH, peerId: Buffer = REMOTE_ID): Buffer {
  return encodeHandshake({ infoHash20: infoHash, peerId20: peerId, reserved });
}

export function frames(...messages: WireMessage[]): Buffer {
  return Buffer.concat(messages.map(encodeMessage));
}

/**
 * A connection (ours) whose scripted remote peer has completed the handshake with `reserved`
 * (and, when `availability` is given, sent it). Drained, so tests see only what follows.
 */
export function openConnection(
  options: Partial<PeerConnectionOptions> = {},
  reserved: Buffer = FAST_EXT,
  availability: WireMessage | null = { type: 'have-all' },
): PeerConnection {
  const conn = makeConnection(options);
  const bytes = [remoteHandshake(reserved)];
  if (availability) bytes.push(encodeMessage(availability));
  conn.receive(Buffer.concat(bytes), 0);
  conn.drain();
  if (conn.closed) throw new Error(`setup closed the connection: ${conn.closeReason?.message}`);
  return conn;
}

export function closedWith(conn: PeerConnection): string | undefined {
  return conn.closeReason?.code;
}

/** Shuttles bytes between two connections until neither has anything to say. */
export function pump(a: PeerConnection, b: PeerConnection, now = 0): { a: ConnectionEvent[]; b: ConnectionEvent[] } {
  const events = { a: [] as ConnectionEvent[], b: [] as ConnectionEvent[] };
  for (let rounds = 0; rounds < 100; rounds++) {
    const da = a.drain();
    const db = b.drain();
    events.a.push(...da.events);
    events.b.push(...db.events);
    if (da.outgoing.length === 0 && db.outgoing.length === 0) return events;
    for (const chunk of da.outgoing) b.receive(chunk, now);
    for (const chunk of db.outgoing) a.receive(chunk, now);
  }
  throw new Error('pump did not settle');
}

export function messagesOf(events: ConnectionEvent[]): WireMessage[] {
  return events.flatMap((e) => (e.type === 'message' ? [e.message] : []));
}

// ------------------------------------------------------------ arbitraries

const index = fc.integer({ min: 0, max: GEOMETRY.numPieces - 1 });
const u32 = fc.nat({ max: 0xffffffff });
const blockLength = fc.integer({ min: 1, max: BLOCK_SIZE });
const hash32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));

/** A dictionary nested no deeper than the decoder's extended-payload cap. */
const extendedPayload: fc.Arbitrary<BDict> = fc
  .uniqueArray(
    fc.tuple(
      fc.constantFrom('m', 'p', 'v', 'reqq', 'added', 'x'),
      fc.oneof(fc.integer({ min: -5, max: 70000 }), fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)), fc.constant(new Map<string, BValue>([['ut_pex', 1]]) as BValue)),
    ),
    { maxLength: 4, selector: ([k]) => k },
  )
  .map((entries) => new Map(entries.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))));

const hashHeader = fc.record({
  piecesRoot: hash32,
  baseLayer: fc.integer({ min: 0, max: 64 }),
  index: u32,
  length: fc.integer({ min: 1, max: 8192 }),
  proofLayers: fc.integer({ min: 0, max: 64 }),
});

const hashesMessage = fc
  .record({
    piecesRoot: hash32,
    baseLayer: fc.integer({ min: 0, max: 64 }),
    index: u32,
    length: fc.constantFrom(2, 4, 8, 16, 512),
    proofLayers: fc.integer({ min: 0, max: 12 }),
    seed: hash32,
  })
  .map(({ seed, ...header }): WireMessage => {
    const hashes = Array.from({ length: expectedHashCount(header) }, (_, i) => {
      const h = Buffer.from(seed);
      h.writeUInt32BE(i, 0);
      return h;
    });
    return { type: 'hashes', ...header, hashes };
  });

/** Any message the decoder accepts for GEOMETRY (not necessarily valid in a connection's state). */
export const wireMessage: fc.Arbitrary<WireMessage> = fc.oneof(
  fc.constantFrom<WireMessage>(
    { type: 'keep-alive' },
    { type: 'choke' },
    { type: 'unchoke' },
    { type: 'interested' },
    { type: 'not-interested' },
    { type: 'have-all' },
    { type: 'have-none' },
  ),
  index.map((i): WireMessage => ({ type: 'have', index: i })),
  index.map((i): WireMessage => ({ type: 'suggest', index: i })),
  index.map((i): WireMessage => ({ type: 'allowed-fast', index: i })),
  fc.tuple(fc.nat(255), fc.nat(255)).map(([a, b]): WireMessage => ({ type: 'bitfield', bitfield: Buffer.from([a, b & 0xc0]) })),
  fc.tuple(fc.constantFrom('request' as const, 'cancel' as const, 'reject' as const), index, u32, blockLength).map(
    ([type, i, begin, length]): WireMessage => ({ type, index: i, begin, length }),
  ),
  fc
    .tuple(index, u32, fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constant(BLOCK_SIZE)), fc.nat(255))
    .map(([i, begin, n, fill]): WireMessage => ({ type: 'piece', index: i, begin, block: Buffer.alloc(n, fill) })),
  fc.nat(65535).map((port): WireMessage => ({ type: 'port', port })),
  fc.tuple(fc.nat(255), extendedPayload).map(([id, payload]): WireMessage => ({ type: 'extended', id, payload })),
  fc.tuple(fc.constantFrom('hash-request' as const, 'hash-reject' as const), hashHeader).map(([type, h]): WireMessage => ({ type, ...h })),
  hashesMessage,
);

/** Splits `bytes` at the given cut points (any values; taken modulo the length). */
export function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    out.push(bytes.subarray(last, p));
    last = p;
  }
  out.push(bytes.subarray(last));
  return out;
}
