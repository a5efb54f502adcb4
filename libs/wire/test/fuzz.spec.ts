import fc from 'fast-check';
import { BLOCK_SIZE, type BValue } from '@shoal/torrent';
import {
  encodeMessage,
  FrameDecoder,
  PeerConnection,
  WireError,
  type ConnectionEvent,
  type WireMessage,
} from '../src';
import { FAST_EXT, GEOMETRY, makeConnection, NO_EXT, remoteHandshake, splitAt, wireMessage } from './support';

/** The largest frame the default limits let the decoder buffer for GEOMETRY. */
const FRAME_CAP = new FrameDecoder(GEOMETRY).maxMessageLength;

/** Records the size of every Buffer allocated through the public allocators while `fn` runs. */
function largestAllocation(fn: () => void): number {
  let largest = 0;
  const spies = (['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const).map((name) => {
    const original = Buffer[name].bind(Buffer) as (...a: unknown[]) => Buffer;
    return jest.spyOn(Buffer, name).mockImplementation(((size: number, ...rest: unknown[]) => {
      largest = Math.max(largest, size);
      return original(size, ...rest);
    }) as never);
  });
  try {
    fn();
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
  return largest;
}

/** Invariants after any input: no throw (checked by the caller), closed only with a typed reason, once, last. */
function checkOutcome(conn: PeerConnection, events: ConnectionEvent[]): void {
  const closes = events.filter((e) => e.type === 'closed');
  expect(closes.length).toBeLessThanOrEqual(1);
  if (conn.closed) {
    expect(closes).toHaveLength(1);
    expect(events[events.length - 1]).toBe(closes[0]);
    expect(conn.closeReason).toBeInstanceOf(WireError);
    expect(conn.closeReason?.code).toMatch(/^WIRE_/);
    expect(conn.closeReason?.code).not.toBe('WIRE_INTERNAL_ERROR');
  } else {
    expect(closes).toHaveLength(0);
  }
}

/** Feeds chunks (then a tick) and returns everything the connection produced. */
function feed(conn: PeerConnection, chunks: Buffer[]): ConnectionEvent[] {
  const events: ConnectionEvent[] = [];
  let now = 1;
  for (const chunk of chunks) {
    conn.receive(chunk, now++);
    events.push(...conn.drain().events);
  }
  conn.tick(now);
  events.push(...conn.drain().events);
  return events;
}

type Mutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'u32'; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  // Overwrites 4 bytes: most often lands on a length prefix or a u32 field.
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.oneof(fc.nat(0xffffffff), fc.nat(40)) }),
);

function mutate(input: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(input);
  for (const m of mutations) {
    if (bytes.length === 0) break;
    const at = m.at % bytes.length;
    switch (m.kind) {
      case 'flip':
        bytes[at] = m.value;
        break;
      case 'insert':
        bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]);
        break;
      case 'delete':
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]);
        break;
      case 'truncate':
        bytes = bytes.subarray(0, at);
        break;
      case 'u32':
        if (at + 4 <= bytes.length) bytes.writeUInt32BE(m.value, at);
        break;
    }
  }
  return bytes;
}

/** Messages that are valid in the state `prepared` sets up (pieces and rejects for our requests). */
const stateful: fc.Arbitrary<WireMessage> = fc.oneof(
  { weight: 3, arbitrary: wireMessage },
  fc.integer({ min: 0, max: 8 }).map((index): WireMessage => ({ type: 'piece', index, begin: 0, block: Buffer.alloc(BLOCK_SIZE, index) })),
  fc.integer({ min: 0, max: 8 }).map((index): WireMessage => ({ type: 'reject', index, begin: 0, length: BLOCK_SIZE })),
  fc.integer({ min: 0, max: 8 }).map((index): WireMessage => ({ type: 'request', index, begin: BLOCK_SIZE, length: BLOCK_SIZE })),
  fc.constant<WireMessage>({ type: 'extended', id: 0, payload: new Map<string, BValue>([['m', new Map([['ut_pex', 2]])], ['reqq', 10]]) }),
  fc.constant<WireMessage>({ type: 'extended', id: 1, payload: new Map([['added', Buffer.alloc(6)]]) }),
);

/**
 * A connection past the handshake with some state to poke at: we are unchoked by the peer and
 * have requested block 0 of pieces 0..8; we hold every piece and unchoke the peer.
 */
function prepared(reserved: Buffer, fast: boolean): { conn: PeerConnection } {
  const conn = makeConnection({ have: 'all', limits: { maxInboundRequests: 8 } });
  const availability = encodeMessage(fast ? { type: 'have-all' } : { type: 'bitfield', bitfield: Buffer.from([0xff, 0xc0]) });
  conn.receive(Buffer.concat([remoteHandshake(reserved), availability, encodeMessage({ type: 'unchoke' })]), 0);
  conn.unchoke(0);
  for (let index = 0; index <= 8; index++) conn.request({ index, begin: 0, length: BLOCK_SIZE }, 0);
  conn.drain();
  return { conn };
}

describe('wire fuzzing: random and mutated frames into PeerConnection', () => {
  it('random bytes from the first byte on: closes with a typed reason or waits, never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 5 }), (bytes, cuts) => {
        const conn = makeConnection();
        const events = feed(conn, splitAt(Buffer.from(bytes), cuts));
        checkOutcome(conn, events);
      }),
      { numRuns: 300 },
    );
  });

  it('random bytes after a valid handshake: never throws, never allocates beyond the frame cap', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(FAST_EXT, NO_EXT),
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (reserved, bytes, cuts) => {
          const conn = makeConnection({ have: 'all' });
          let events: ConnectionEvent[] = [];
          const largest = largestAllocation(() => {
            events = feed(conn, [remoteHandshake(reserved), ...splitAt(Buffer.from(bytes), cuts)]);
          });
          checkOutcome(conn, events);
          expect(largest).toBeLessThanOrEqual(FRAME_CAP);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('mutated valid streams: continue or close with a WireError, never throw, bounded allocation', () => {
    const codes = new Map<string, number>();
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(stateful, { maxLength: 12 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (fast, messages, mutations, cuts) => {
          const { conn } = prepared(fast ? FAST_EXT : NO_EXT, fast);
          const stream = mutate(Buffer.concat(messages.map(encodeMessage)), mutations);
          let events: ConnectionEvent[] = [];
          const largest = largestAllocation(() => {
            events = feed(conn, splitAt(stream, cuts));
          });
          checkOutcome(conn, events);
          expect(largest).toBeLessThanOrEqual(FRAME_CAP);
          const code = conn.closeReason?.code ?? 'open';
          codes.set(code, (codes.get(code) ?? 0) + 1);
        },
      ),
      { numRuns: 3000 },
    );
    // The fuzzer reached a good spread of outcomes, not one failure mode over and over.
    expect(codes.size).toBeGreaterThanOrEqual(10);
  });

  it('unmutated streams give the same outcome however they are chunked', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(stateful, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }), (fast, messages, cuts) => {
        const stream = Buffer.concat(messages.map(encodeMessage));
        const whole = prepared(fast ? FAST_EXT : NO_EXT, fast).conn;
        whole.receive(stream, 1);
        const chunked = prepared(fast ? FAST_EXT : NO_EXT, fast).conn;
        for (const chunk of splitAt(stream, cuts)) chunked.receive(chunk, 1);
        const a = whole.drain();
        const b = chunked.drain();
        expect(Buffer.concat(b.outgoing).equals(Buffer.concat(a.outgoing))).toBe(true);
        const summary = (events: ConnectionEvent[]) =>
          events.map((e) => (e.type === 'message' ? e.message.type : e.type === 'closed' ? e.reason.code : e.type));
        expect(summary(b.events)).toEqual(summary(a.events));
      }),
      { numRuns: 300 },
    );
  });

  it('a hostile length prefix closes on the prefix alone, before any payload is buffered', () => {
    fc.assert(
      fc.property(fc.integer({ min: FRAME_CAP + 1, max: 0xffffffff }), fc.constantFrom(FAST_EXT, NO_EXT), (length, reserved) => {
        const conn = makeConnection({ have: 'all' });
        conn.receive(remoteHandshake(reserved), 0);
        conn.drain();
        const prefix = Buffer.alloc(4);
        prefix.writeUInt32BE(length);
        const largest = largestAllocation(() => conn.receive(prefix, 1));
        expect(conn.closeReason?.code).toBe('WIRE_FRAME_TOO_LARGE');
        expect(largest).toBeLessThan(1024);
      }),
      { numRuns: 200 },
    );
  });
});
