import { BLOCK_SIZE, decode, type BDict } from '@shoal/torrent';
import {
  decodeFrames,
  encodeHandshake,
  encodeMessage,
  encodePieceHeader,
  PeerConnection,
  WireError,
  WireUsageError,
  type ConnectionEvent,
  type WireErrorCode,
  type WireMessage,
} from '../src';
import {
  closedWith,
  FAST_EXT,
  frames,
  GEOMETRY,
  INFO_HASH,
  LAST_PIECE,
  LAST_PIECE_SIZE,
  LOCAL_ID,
  makeConnection,
  messagesOf,
  NO_EXT,
  openConnection,
  OTHER_INFO_HASH,
  pump,
  REMOTE_ID,
  remoteHandshake,
} from './support';

const root = Buffer.alloc(32, 0x33);
const block = (length = BLOCK_SIZE, fill = 1): Buffer => Buffer.alloc(length, fill);

/** Frames our connection wrote, decoded (after the handshake). */
function sent(conn: PeerConnection): WireMessage[] {
  return decodeFrames(Buffer.concat(conn.drain().outgoing), GEOMETRY);
}

function closeEvent(events: ConnectionEvent[]): WireError | undefined {
  const e = events.find((x) => x.type === 'closed');
  return e?.type === 'closed' ? e.reason : undefined;
}

/** Two real connections talking to each other. */
function connectedPair(
  a: Parameters<typeof makeConnection>[0] = {},
  b: Parameters<typeof makeConnection>[0] = {},
): { ours: PeerConnection; theirs: PeerConnection; events: ReturnType<typeof pump> } {
  const ours = makeConnection({ role: 'initiator', ...a });
  const theirs = makeConnection({ role: 'acceptor', localPeerId: REMOTE_ID, ...b });
  const events = pump(ours, theirs);
  return { ours, theirs, events };
}

describe('PeerConnection: handshake', () => {
  it('initiator and acceptor negotiate fast + extension protocol and exchange extended handshakes', () => {
    const { ours, theirs, events } = connectedPair({ listenPort: 7000, have: 'all' }, { clientVersion: 'peer 1.0' });
    expect(ours.phase).toBe('open');
    expect(theirs.phase).toBe('open');
    expect(ours.fastExtension && ours.extensionProtocol && theirs.fastExtension && theirs.extensionProtocol).toBe(true);
    expect(events.a[0]).toMatchObject({ type: 'handshake', peerId: REMOTE_ID, fastExtension: true, extensionProtocol: true });
    expect(events.b[0]).toMatchObject({ type: 'handshake', peerId: LOCAL_ID });
    const ext = events.b.find((e) => e.type === 'extended-handshake');
    expect(ext).toEqual({
      type: 'extended-handshake',
      handshake: { m: new Map([['ut_pex', 1]]), listenPort: 7000, clientVersion: 'Shoal 0.1.0', reqq: 250 },
    });
    expect(ours.peerExtendedHandshake?.clientVersion).toBe('peer 1.0');
    expect(ours.peerRequestQueueLimit).toBe(250);
    // Availability: we are a seed (have all), they have nothing (have none).
    expect(messagesOf(events.b)).toEqual([{ type: 'have-all' }]);
    expect(messagesOf(events.a)).toEqual([{ type: 'have-none' }]);
    expect(theirs.peerIsSeed).toBe(true);
    expect(ours.peerPieceCount).toBe(0);
  });

  it('the acceptor answers once the info-hash is in, and sends nothing before', () => {
    const conn = makeConnection({ role: 'acceptor' });
    const hs = remoteHandshake();
    conn.receive(hs.subarray(0, 47), 0);
    expect(conn.drain().outgoing).toEqual([]);
    conn.receive(hs.subarray(47, 48), 0);
    const [answer] = conn.drain().outgoing;
    expect(answer).toEqual(encodeHandshake({ infoHash20: INFO_HASH, peerId20: LOCAL_ID, reserved: FAST_EXT }));
    expect(conn.phase).toBe('handshake');
    conn.receive(hs.subarray(48), 0);
    expect(conn.phase).toBe('open');
  });

  it('the initiator sends its handshake at once', () => {
    const conn = makeConnection({ role: 'initiator' });
    expect(conn.drain().outgoing).toEqual([encodeHandshake({ infoHash20: INFO_HASH, peerId20: LOCAL_ID, reserved: FAST_EXT })]);
  });

  it('sends extended handshake then availability; without fast a bitfield (or nothing when empty)', () => {
    const have = Buffer.from([0x80, 0x40]); // pieces 0 and 9
    const conn = makeConnection({ have });
    conn.receive(remoteHandshake(NO_EXT), 0);
    const out = conn.drain().outgoing;
    expect(out).toHaveLength(2); // handshake, bitfield (no extended handshake: peer lacks BEP 10)
    expect(decodeFrames(out[1] as Buffer, GEOMETRY)).toEqual([{ type: 'bitfield', bitfield: have }]);

    const empty = makeConnection();
    empty.receive(remoteHandshake(NO_EXT), 0);
    expect(empty.drain().outgoing).toHaveLength(1);

    const fast = makeConnection({ have });
    fast.receive(remoteHandshake(FAST_EXT), 0);
    const types = decodeFrames(Buffer.concat(fast.drain().outgoing.slice(1)), GEOMETRY).map((m) => m.type);
    expect(types).toEqual(['extended', 'bitfield']);
  });

  it('folds have() calls made before the handshake into the initial availability', () => {
    const conn = makeConnection();
    expect(conn.have(3, 0)).toBe(true);
    expect(conn.have(3, 0)).toBe(false);
    conn.receive(remoteHandshake(NO_EXT), 0);
    expect(decodeFrames(conn.drain().outgoing[1] as Buffer, GEOMETRY)).toEqual([
      { type: 'bitfield', bitfield: Buffer.from([0x10, 0x00]) },
    ]);
    expect(conn.have(4, 1)).toBe(true);
    expect(sent(conn)).toEqual([{ type: 'have', index: 4 }]);
  });

  it('handles the handshake and the first messages in one chunk', () => {
    const conn = makeConnection();
    conn.receive(Buffer.concat([remoteHandshake(), frames({ type: 'have-all' }, { type: 'unchoke' })]), 0);
    expect(conn.peerIsSeed).toBe(true);
    expect(conn.peerChoking).toBe(false);
  });

  it.each<[string, Buffer, WireErrorCode, number]>([
    ['a wrong length byte, on the first byte', Buffer.from([20]), 'WIRE_BAD_HANDSHAKE', 1],
    ['a wrong protocol string, on the first wrong byte', Buffer.from('\x13BitTorrent Protocol', 'latin1'), 'WIRE_BAD_HANDSHAKE', 13],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\n'), 'WIRE_BAD_HANDSHAKE', 1],
    ['another torrent', remoteHandshake(FAST_EXT, OTHER_INFO_HASH), 'WIRE_INFOHASH_MISMATCH', 48],
    ['our own peer id', remoteHandshake(FAST_EXT, INFO_HASH, LOCAL_ID), 'WIRE_SELF_CONNECTION', 68],
  ])('closes on %s', (_name, bytes, code, closesAt) => {
    const conn = makeConnection();
    conn.receive(bytes.subarray(0, closesAt - 1), 0);
    expect(conn.closed).toBe(false);
    conn.receive(bytes.subarray(closesAt - 1), 0);
    expect(closedWith(conn)).toBe(code);
    expect(conn.drain().outgoing).toHaveLength(code === 'WIRE_SELF_CONNECTION' ? 1 : 0); // our handshake went out at 48
  });

  it('times out a handshake that does not complete', () => {
    const conn = makeConnection({ now: 1000 });
    conn.receive(remoteHandshake().subarray(0, 30), 5000);
    expect(conn.nextTimeout()).toBe(11_000);
    conn.tick(10_999);
    expect(conn.closed).toBe(false);
    conn.tick(11_000);
    expect(closedWith(conn)).toBe('WIRE_HANDSHAKE_TIMEOUT');
  });

  it('reports the end of the stream, inside a frame or not', () => {
    const conn = openConnection();
    conn.receive(Buffer.from([0, 0, 0, 5, 4]), 0);
    conn.end();
    expect(closedWith(conn)).toBe('WIRE_PEER_CLOSED');
    expect(conn.closeReason?.message).toMatch(/inside a frame/);
  });
});

describe('PeerConnection: timers', () => {
  it('closes an idle connection via tick and sends keep-alives', () => {
    const conn = openConnection({}, FAST_EXT);
    expect(conn.nextTimeout()).toBe(60_000);
    conn.tick(59_999);
    expect(conn.drain().outgoing).toEqual([]);
    conn.tick(60_000);
    expect(conn.drain().outgoing).toEqual([Buffer.alloc(4)]);
    expect(conn.nextTimeout()).toBe(120_000);
    conn.tick(119_999);
    expect(conn.closed).toBe(false);
    conn.tick(120_000);
    expect(closedWith(conn)).toBe('WIRE_IDLE_TIMEOUT');
    expect(conn.nextTimeout()).toBeUndefined();
  });

  it('a keep-alive from the peer resets the idle timer; our traffic delays our keep-alive', () => {
    const conn = openConnection();
    conn.receive(Buffer.alloc(4), 100_000);
    conn.interested(50_000);
    conn.drain();
    conn.tick(109_999);
    expect(conn.drain().outgoing).toEqual([]);
    conn.tick(110_000);
    expect(conn.drain().outgoing).toEqual([Buffer.alloc(4)]);
    conn.tick(219_999);
    expect(conn.closed).toBe(false);
    conn.tick(220_000);
    expect(closedWith(conn)).toBe('WIRE_IDLE_TIMEOUT');
  });

  it('a frame that trickles in does not count as activity until complete', () => {
    const conn = openConnection();
    const have = encodeMessage({ type: 'have', index: 1 });
    conn.receive(have.subarray(0, 3), 100_000);
    conn.tick(120_000);
    expect(closedWith(conn)).toBe('WIRE_IDLE_TIMEOUT');
  });
});

describe('PeerConnection: exchanging blocks', () => {
  it('request -> piece between two connections', () => {
    const { ours, theirs } = connectedPair({}, { have: 'all' });
    ours.interested(1);
    expect(pump(ours, theirs).b).toEqual([{ type: 'message', message: { type: 'interested' } }]);
    theirs.unchoke(2);
    pump(ours, theirs);
    expect(ours.peerChoking).toBe(false);
    expect(ours.request({ index: LAST_PIECE, begin: BLOCK_SIZE, length: LAST_PIECE_SIZE - BLOCK_SIZE }, 3)).toBe(true);
    const { b } = pump(ours, theirs);
    expect(messagesOf(b)).toEqual([{ type: 'request', index: LAST_PIECE, begin: BLOCK_SIZE, length: LAST_PIECE_SIZE - BLOCK_SIZE }]);
    expect(theirs.inboundRequests()).toHaveLength(1);
    expect(theirs.piece(LAST_PIECE, BLOCK_SIZE, block(LAST_PIECE_SIZE - BLOCK_SIZE, 9), 4)).toBe(true);
    const { a } = pump(ours, theirs);
    expect(messagesOf(a)).toEqual([{ type: 'piece', index: LAST_PIECE, begin: BLOCK_SIZE, block: block(LAST_PIECE_SIZE - BLOCK_SIZE, 9) }]);
    expect(ours.outstandingRequests()).toEqual([]);
    expect(theirs.inboundRequests()).toEqual([]);
  });

  it('does not request while choked (unless allowed fast) or pieces the peer lacks', () => {
    const conn = openConnection({}, FAST_EXT, { type: 'bitfield', bitfield: Buffer.from([0x80, 0x00]) });
    expect(conn.request({ index: 0, begin: 0, length: BLOCK_SIZE }, 0)).toBe(false); // choked
    conn.receive(frames({ type: 'allowed-fast', index: 0 }), 0);
    expect(conn.request({ index: 0, begin: 0, length: BLOCK_SIZE }, 0)).toBe(true);
    expect(conn.request({ index: 0, begin: 0, length: BLOCK_SIZE }, 0)).toBe(false); // already outstanding
    conn.receive(frames({ type: 'unchoke' }), 0);
    expect(conn.request({ index: 1, begin: 0, length: BLOCK_SIZE }, 0)).toBe(false); // peer lacks piece 1
  });

  it('with fast: a cancelled request stays outstanding until the peer rejects or serves it', () => {
    const conn = openConnection();
    conn.receive(frames({ type: 'unchoke' }), 0);
    const r = { index: 2, begin: 0, length: BLOCK_SIZE };
    conn.request(r, 0);
    expect(conn.cancel(r, 0)).toBe(true);
    expect(sent(conn).map((m) => m.type)).toEqual(['request', 'cancel']);
    conn.receive(frames({ type: 'reject', ...r }), 0);
    expect(conn.closed).toBe(false);
    conn.receive(frames({ type: 'reject', ...r }), 0);
    expect(closedWith(conn)).toBe('WIRE_UNSOLICITED_REJECT');
  });

  it('without fast: a choke drops our requests, and a late piece after a cancel is accepted once', () => {
    const conn = openConnection({}, NO_EXT, { type: 'bitfield', bitfield: Buffer.from([0xff, 0xc0]) });
    conn.receive(frames({ type: 'unchoke' }), 0);
    const r = { index: 1, begin: 0, length: BLOCK_SIZE };
    conn.request(r, 0);
    conn.cancel(r, 0);
    expect(conn.outstandingRequests()).toEqual([]);
    conn.receive(frames({ type: 'piece', index: 1, begin: 0, block: block() }), 0);
    expect(conn.closed).toBe(false);
    conn.request({ index: 3, begin: 0, length: BLOCK_SIZE }, 0);
    conn.receive(frames({ type: 'choke' }), 0);
    expect(conn.outstandingRequests()).toEqual([]);
    conn.receive(frames({ type: 'piece', index: 1, begin: 0, block: block() }), 0);
    expect(closedWith(conn)).toBe('WIRE_UNSOLICITED_PIECE');
  });

  it('hash request round trip, and unsolicited hashes close', () => {
    const { ours, theirs } = connectedPair({}, { have: 'all' });
    const header = { piecesRoot: root, baseLayer: 0, index: 0, length: 4, proofLayers: 2 };
    expect(ours.hashRequest(header, 0)).toBe(true);
    expect(ours.hashRequest(header, 0)).toBe(false);
    const { b } = pump(ours, theirs);
    expect(messagesOf(b)).toEqual([{ type: 'hash-request', ...header }]);
    const hashes = Array.from({ length: 5 }, (_, i) => Buffer.alloc(32, i));
    expect(theirs.hashes(header, hashes, 0)).toBe(true);
    expect(theirs.hashes(header, hashes, 0)).toBe(false); // answered already
    const { a } = pump(ours, theirs);
    expect(messagesOf(a)).toEqual([{ type: 'hashes', ...header, hashes }]);
    theirs.hashRequest({ ...header, index: 4 }, 0);
    pump(ours, theirs);
    expect(ours.hashReject({ ...header, index: 4 }, 0)).toBe(true);
    pump(ours, theirs);
    expect(theirs.closed).toBe(false);
    ours.receive(frames({ type: 'hashes', ...header, hashes }), 0);
    expect(closedWith(ours)).toBe('WIRE_UNSOLICITED_HASHES');
  });

  it('answers hash requests beyond its cap with a hash reject', () => {
    const conn = openConnection({ limits: { maxInboundHashRequests: 2 } });
    const reqs = [0, 2, 4].map((index) => ({ type: 'hash-request' as const, piecesRoot: root, baseLayer: 0, index, length: 2, proofLayers: 0 }));
    conn.receive(frames(...reqs), 0);
    const { events, outgoing } = conn.drain();
    expect(messagesOf(events)).toHaveLength(2);
    expect(decodeFrames(Buffer.concat(outgoing), GEOMETRY)).toEqual([{ ...reqs[2], type: 'hash-reject' }]);
  });

  it('sends and receives extension messages under the announced ids', () => {
    const { ours, theirs } = connectedPair({ extensions: { ut_pex: 3 } }, { extensions: { ut_pex: 7 } });
    const payload: BDict = new Map([['added', Buffer.from([10, 0, 0, 1, 0x1a, 0xe1])]]);
    expect(ours.extended('ut_pex', payload, 0)).toBe(true);
    expect(ours.extended('ut_metadata', payload, 0)).toBe(false);
    const out = ours.drain().outgoing;
    expect(out[0]?.[5]).toBe(7); // their id
    for (const chunk of out) theirs.receive(chunk, 0);
    expect(theirs.drain().events).toEqual([{ type: 'extension', name: 'ut_pex', payload }]);
  });
});

describe('PeerConnection: serving requests', () => {
  const request = (index: number, begin = 0, length = BLOCK_SIZE): WireMessage => ({ type: 'request', index, begin, length });

  it('queues requests only while unchoked, rejecting the rest with fast', () => {
    const conn = openConnection({ have: 'all' });
    conn.receive(frames(request(0)), 0);
    expect(sent(conn)).toEqual([{ type: 'reject', index: 0, begin: 0, length: BLOCK_SIZE }]);
    conn.unchoke(0);
    conn.drain();
    conn.receive(frames(request(0), request(0), request(1)), 0);
    expect(conn.inboundRequests()).toEqual([
      { index: 0, begin: 0, length: BLOCK_SIZE },
      { index: 1, begin: 0, length: BLOCK_SIZE },
    ]);
    expect(messagesOf(conn.drain().events)).toHaveLength(2); // the duplicate is dropped
  });

  it('sends a served block as given, after its 13-byte header: no copy, same bytes as encodeMessage', () => {
    const conn = openConnection({ have: 'all' });
    conn.unchoke(0);
    conn.drain();
    conn.receive(frames(request(1, BLOCK_SIZE, 100)), 0);
    conn.drain();
    const data = Buffer.alloc(100, 7);
    expect(conn.piece(1, BLOCK_SIZE, data, 0)).toBe(true);
    const { outgoing } = conn.drain();
    expect(outgoing).toHaveLength(2);
    expect(outgoing[0]).toEqual(encodePieceHeader(1, BLOCK_SIZE, 100));
    expect(outgoing[1]).toBe(data);
    expect(Buffer.concat(outgoing)).toEqual(encodeMessage({ type: 'piece', index: 1, begin: BLOCK_SIZE, block: data }));
  });

  it('a piece header is refused for an empty or oversized block, or an index past 2^32', () => {
    expect(() => encodePieceHeader(0, 0, 0)).toThrow(WireUsageError);
    expect(() => encodePieceHeader(0, 0, BLOCK_SIZE + 1)).toThrow(WireUsageError);
    expect(() => encodePieceHeader(2 ** 32, 0, 1)).toThrow(WireUsageError);
    expect(encodePieceHeader(3, 0, BLOCK_SIZE)).toEqual(Buffer.from([0, 0, 0x40, 0x09, 7, 0, 0, 0, 3, 0, 0, 0, 0]));
  });

  it('rejects requests for pieces we never announced', () => {
    const conn = openConnection({ have: Buffer.from([0x80, 0]) });
    conn.unchoke(0);
    conn.drain();
    conn.receive(frames(request(1)), 0);
    expect(sent(conn)).toEqual([{ type: 'reject', index: 1, begin: 0, length: BLOCK_SIZE }]);
    expect(conn.inboundRequests()).toEqual([]);
  });

  it('after we choke, pending requests are rejected (fast), except allowed-fast pieces', () => {
    const conn = openConnection({ have: 'all' });
    conn.allowedFast(2, 0);
    conn.unchoke(0);
    conn.drain();
    conn.receive(frames(request(0), request(1), request(2)), 0);
    conn.drain();
    expect(conn.choke(0)).toBe(true);
    expect(sent(conn)).toEqual([
      { type: 'choke' },
      { type: 'reject', index: 0, begin: 0, length: BLOCK_SIZE },
      { type: 'reject', index: 1, begin: 0, length: BLOCK_SIZE },
    ]);
    expect(conn.piece(0, 0, block(), 0)).toBe(false);
    expect(conn.piece(2, 0, block(), 0)).toBe(true);
    // While choked, allowed-fast requests are still served.
    conn.receive(frames(request(2, BLOCK_SIZE)), 0);
    expect(conn.inboundRequests()).toEqual([{ index: 2, begin: BLOCK_SIZE, length: BLOCK_SIZE }]);
  });

  it('without fast, a choke silently drops pending requests', () => {
    const conn = openConnection({ have: 'all' }, NO_EXT, null);
    conn.unchoke(0);
    conn.receive(frames(request(0), request(1)), 0);
    conn.drain();
    conn.choke(0);
    expect(sent(conn)).toEqual([{ type: 'choke' }]);
    expect(conn.inboundRequests()).toEqual([]);
    conn.receive(frames(request(0)), 0); // while choked: dropped, not an error
    expect(conn.inboundRequests()).toEqual([]);
    expect(conn.closed).toBe(false);
  });

  it('a cancel removes a queued request and is answered with a reject (fast)', () => {
    const conn = openConnection({ have: 'all' });
    conn.unchoke(0);
    conn.receive(frames(request(3)), 0);
    conn.drain();
    conn.receive(frames({ type: 'cancel', index: 3, begin: 0, length: BLOCK_SIZE }), 0);
    expect(sent(conn)).toEqual([{ type: 'reject', index: 3, begin: 0, length: BLOCK_SIZE }]);
    expect(conn.piece(3, 0, block(), 0)).toBe(false);
    conn.receive(frames({ type: 'cancel', index: 3, begin: 0, length: BLOCK_SIZE }), 0); // stale: ignored
    expect(conn.drain()).toEqual({ outgoing: [], events: [] });
  });

  it('rejects beyond reqq with fast; closes with WIRE_REQUEST_QUEUE_FULL without', () => {
    const limits = { maxInboundRequests: 4 };
    const many = Array.from({ length: 5 }, (_, i) => request(i % 9, Math.floor(i / 9) * BLOCK_SIZE));

    const fast = openConnection({ have: 'all', limits });
    fast.unchoke(0);
    fast.drain();
    fast.receive(frames(...many), 0);
    expect(fast.inboundRequests()).toHaveLength(4);
    expect(sent(fast)).toEqual([{ type: 'reject', index: 4, begin: 0, length: BLOCK_SIZE }]);
    expect(fast.closed).toBe(false);

    const plain = openConnection({ have: 'all', limits }, NO_EXT, null);
    plain.unchoke(0);
    plain.receive(frames(...many), 0);
    expect(closedWith(plain)).toBe('WIRE_REQUEST_QUEUE_FULL');
  });

  it('the default queue cap (250) closes a flood of 251 requests without fast', () => {
    const conn = openConnection({ have: 'all' }, NO_EXT, null);
    conn.unchoke(0);
    const flood: WireMessage[] = [];
    for (let i = 0; i < 251; i++) flood.push(request(i % 9, (Math.floor(i / 9) % 2) * BLOCK_SIZE, 1 + Math.floor(i / 18)));
    conn.receive(frames(...flood), 0);
    expect(closedWith(conn)).toBe('WIRE_REQUEST_QUEUE_FULL');
  });

  it('reject() declines a queued request', () => {
    const conn = openConnection({ have: 'all' });
    conn.unchoke(0);
    conn.receive(frames(request(5)), 0);
    conn.drain();
    expect(conn.reject({ index: 5, begin: 0, length: BLOCK_SIZE }, 0)).toBe(true);
    expect(sent(conn)).toEqual([{ type: 'reject', index: 5, begin: 0, length: BLOCK_SIZE }]);
    expect(conn.reject({ index: 5, begin: 0, length: BLOCK_SIZE }, 0)).toBe(false);
  });
});

describe('PeerConnection: every violation closes with its code', () => {
  const cases: [string, Parameters<typeof openConnection>, Buffer, WireErrorCode][] = [
    ['an oversized frame', [], Buffer.from([0, 1, 0, 0]), 'WIRE_FRAME_TOO_LARGE'],
    ['a 4 GiB length prefix', [], Buffer.from([0xff, 0xff, 0xff, 0xff]), 'WIRE_FRAME_TOO_LARGE'],
    ['a have of the wrong length', [], Buffer.from([0, 0, 0, 6, 4, 0, 0, 0, 0, 1]), 'WIRE_BAD_PAYLOAD_LENGTH'],
    ['an interested with a payload', [], Buffer.from([0, 0, 0, 2, 2, 0]), 'WIRE_BAD_PAYLOAD_LENGTH'],
    ['an unknown message id', [], Buffer.from([0, 0, 0, 1, 10]), 'WIRE_UNKNOWN_MESSAGE'],
    ['bitfield spare bits', [{}, FAST_EXT, null], Buffer.from([0, 0, 0, 3, 5, 0xff, 0xff]), 'WIRE_BAD_BITFIELD'],
    ['a bitfield of the wrong length', [{}, FAST_EXT, null], Buffer.from([0, 0, 0, 2, 5, 0xff]), 'WIRE_BAD_BITFIELD'],
    ['a bitfield after other messages', [{}, NO_EXT, null], frames({ type: 'interested' }, { type: 'bitfield', bitfield: Buffer.from([0, 0]) }), 'WIRE_OUT_OF_ORDER'],
    ['a second availability message', [], frames({ type: 'have-none' }), 'WIRE_OUT_OF_ORDER'],
    ['fast peer skipping availability', [{}, FAST_EXT, null], frames({ type: 'interested' }), 'WIRE_OUT_OF_ORDER'],
    ['have all without fast', [{}, NO_EXT, null], frames({ type: 'have-all' }), 'WIRE_NOT_NEGOTIATED'],
    ['reject without fast', [{}, NO_EXT, null], frames({ type: 'reject', index: 0, begin: 0, length: 1 }), 'WIRE_NOT_NEGOTIATED'],
    ['suggest without fast', [{}, NO_EXT, null], frames({ type: 'suggest', index: 0 }), 'WIRE_NOT_NEGOTIATED'],
    ['allowed fast without fast', [{}, NO_EXT, null], frames({ type: 'allowed-fast', index: 0 }), 'WIRE_NOT_NEGOTIATED'],
    ['extended without BEP 10', [{}, NO_EXT, null], frames({ type: 'extended', id: 0, payload: new Map() }), 'WIRE_NOT_NEGOTIATED'],
    ['a have beyond the last piece', [], Buffer.from([0, 0, 0, 5, 4, 0, 0, 0, 10]), 'WIRE_BAD_PIECE_INDEX'],
    ['a request over 16 KiB', [], frames({ type: 'request', index: 0, begin: 0, length: BLOCK_SIZE }).fill(0x40, 15, 16).fill(1, 16, 17), 'WIRE_REQUEST_TOO_LARGE'],
    ['a request of zero bytes', [], Buffer.from([0, 0, 0, 13, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 'WIRE_BAD_REQUEST'],
    ['a request past the end of the last piece', [], frames({ type: 'request', index: LAST_PIECE, begin: BLOCK_SIZE, length: BLOCK_SIZE }), 'WIRE_BAD_REQUEST'],
    ['a request past the end of a piece', [], frames({ type: 'request', index: 0, begin: 2 * BLOCK_SIZE, length: 1 }), 'WIRE_BAD_REQUEST'],
    ['an unsolicited piece', [], frames({ type: 'piece', index: 0, begin: 0, block: block() }), 'WIRE_UNSOLICITED_PIECE'],
    ['an unsolicited reject', [], frames({ type: 'reject', index: 0, begin: 0, length: BLOCK_SIZE }), 'WIRE_UNSOLICITED_REJECT'],
    ['unsolicited hashes', [], frames({ type: 'hashes', piecesRoot: root, baseLayer: 0, index: 0, length: 2, proofLayers: 0, hashes: [root, root] }), 'WIRE_UNSOLICITED_HASHES'],
    ['an unsolicited hash reject', [], frames({ type: 'hash-reject', piecesRoot: root, baseLayer: 0, index: 0, length: 2, proofLayers: 0 }), 'WIRE_UNSOLICITED_HASHES'],
    ['a hash request for 0 hashes', [], frames({ type: 'hash-request', piecesRoot: root, baseLayer: 0, index: 0, length: 0, proofLayers: 0 }), 'WIRE_BAD_HASH_REQUEST'],
    ['hashes whose count disagrees with the header', [], frames({ type: 'hashes', piecesRoot: root, baseLayer: 0, index: 0, length: 2, proofLayers: 1, hashes: [root, root] }), 'WIRE_BAD_HASHES'],
    ['hashes for more than 512', [], frames({ type: 'hashes', piecesRoot: root, baseLayer: 0, index: 0, length: 1024, proofLayers: 0, hashes: [root, root] }), 'WIRE_BAD_HASHES'],
    ['a garbage extended payload', [], Buffer.concat([Buffer.from([0, 0, 0, 6, 20, 0]), Buffer.from('d1:a')]), 'WIRE_BAD_EXTENDED'],
    ['an extended message under an id we never announced', [], frames({ type: 'extended', id: 9, payload: new Map() }), 'WIRE_UNKNOWN_EXTENSION'],
    ['a malformed extended handshake', [], frames({ type: 'extended', id: 0, payload: new Map([['m', new Map([['ut_pex', 300]])]]) }), 'WIRE_BAD_EXTENDED_HANDSHAKE'],
  ];

  it.each(cases)('%s', (_name, setup, bytes, code) => {
    const conn = openConnection(...setup);
    conn.receive(bytes, 10);
    expect(closedWith(conn)).toBe(code);
    const { events } = conn.drain();
    expect(events[events.length - 1]).toEqual({ type: 'closed', reason: expect.any(WireError) });
    expect(closeEvent(events)?.code).toBe(code);
  });

  it('a piece with the wrong length for a requested offset', () => {
    const conn = openConnection();
    conn.receive(frames({ type: 'unchoke' }), 0);
    conn.request({ index: 0, begin: 0, length: BLOCK_SIZE }, 0);
    conn.receive(frames({ type: 'piece', index: 0, begin: 0, block: block(100) }), 0);
    expect(closedWith(conn)).toBe('WIRE_BAD_PIECE_LENGTH');
  });

  it('processes the messages before a violation, then nothing after', () => {
    const conn = openConnection();
    conn.receive(Buffer.concat([frames({ type: 'unchoke' }, { type: 'have', index: 1 }), Buffer.from([0, 0, 0, 1, 99]), frames({ type: 'choke' })]), 0);
    const { events } = conn.drain();
    expect(events.map((e) => (e.type === 'message' ? e.message.type : e.type))).toEqual(['unchoke', 'have', 'closed']);
    expect(conn.peerChoking).toBe(false);
  });
});

describe('PeerConnection: after close', () => {
  it('ignores input and produces nothing more', () => {
    const conn = openConnection();
    conn.receive(Buffer.from([0, 0, 0, 1, 99]), 0);
    conn.drain();
    conn.receive(frames({ type: 'unchoke' }), 1);
    conn.tick(1_000_000);
    conn.end();
    conn.close();
    expect(conn.send({ type: 'interested' }, 2)).toBe(false);
    expect(conn.have(1, 2)).toBe(false);
    expect(conn.drain()).toEqual({ outgoing: [], events: [] });
    expect(closedWith(conn)).toBe('WIRE_UNKNOWN_MESSAGE');
  });

  it('close() uses WIRE_LOCAL_CLOSE or the given reason', () => {
    const a = openConnection();
    a.close();
    expect(closedWith(a)).toBe('WIRE_LOCAL_CLOSE');
    const b = openConnection();
    b.close(new WireError('WIRE_PROTOCOL_VIOLATION', 'sent a block that failed verification'));
    expect(closedWith(b)).toBe('WIRE_PROTOCOL_VIOLATION');
  });
});

describe('PeerConnection: local misuse throws', () => {
  it('sending before the handshake', () => {
    const conn = makeConnection();
    expect(() => conn.interested(0)).toThrow(WireUsageError);
    expect(() => conn.send({ type: 'keep-alive' }, 0)).toThrow(WireUsageError);
  });

  it('fast-extension messages without the fast extension, extended without BEP 10', () => {
    const conn = openConnection({}, NO_EXT, null);
    expect(() => conn.suggest(1, 0)).toThrow(WireUsageError);
    expect(() => conn.allowedFast(1, 0)).toThrow(WireUsageError);
    expect(() => conn.extended('ut_pex', new Map(), 0)).toThrow(WireUsageError);
  });

  it('bad arguments and automatic messages', () => {
    const conn = openConnection();
    expect(() => conn.request({ index: 10, begin: 0, length: 1 }, 0)).toThrow(WireUsageError);
    expect(() => conn.request({ index: 0, begin: 0, length: BLOCK_SIZE + 1 }, 0)).toThrow(WireUsageError);
    expect(() => conn.request({ index: LAST_PIECE, begin: LAST_PIECE_SIZE, length: 1 }, 0)).toThrow(WireUsageError);
    expect(() => conn.have(-1, 0)).toThrow(WireUsageError);
    expect(() => conn.send({ type: 'bitfield', bitfield: Buffer.alloc(2) }, 0)).toThrow(WireUsageError);
    expect(() => conn.send({ type: 'port', port: 1 }, 0)).toThrow(WireUsageError);
    expect(() => conn.hashRequest({ piecesRoot: root, baseLayer: 0, index: 0, length: 3, proofLayers: 0 }, 0)).toThrow(WireUsageError);
    expect(() => conn.hashRequest({ piecesRoot: root, baseLayer: 0, index: 2, length: 4, proofLayers: 0 }, 0)).toThrow(WireUsageError);
  });

  it('bad options', () => {
    expect(() => makeConnection({ numPieces: 11 })).toThrow(WireUsageError);
    expect(() => makeConnection({ infoHash20: Buffer.alloc(32) })).toThrow(WireUsageError);
    expect(() => makeConnection({ limits: { maxInboundRequests: 0 } })).toThrow(WireUsageError);
    expect(() => makeConnection({ have: Buffer.from([0xff, 0xff]) })).toThrow(WireUsageError);
    expect(() => makeConnection({ extensions: { a: 1, b: 1 } })).toThrow(WireUsageError);
  });
});

describe('PeerConnection: state', () => {
  it('tracks choke and interest both ways, and only sends on change', () => {
    const conn = openConnection();
    expect([conn.amChoking, conn.amInterested, conn.peerChoking, conn.peerInterested]).toEqual([true, false, true, false]);
    expect(conn.unchoke(0)).toBe(true);
    expect(conn.unchoke(0)).toBe(false);
    expect(conn.interested(0)).toBe(true);
    expect(conn.interested(0)).toBe(false);
    expect(sent(conn)).toEqual([{ type: 'unchoke' }, { type: 'interested' }]);
    conn.receive(frames({ type: 'unchoke' }, { type: 'interested' }), 0);
    expect([conn.amChoking, conn.amInterested, conn.peerChoking, conn.peerInterested]).toEqual([false, true, false, true]);
  });

  it('tracks the peer bitfield through have messages', () => {
    const conn = openConnection({}, FAST_EXT, { type: 'have-none' });
    conn.receive(frames({ type: 'have', index: 9 }, { type: 'have', index: 9 }, { type: 'have', index: 0 }), 0);
    expect(conn.peerPieceCount).toBe(2);
    expect(conn.peerBitfield()).toEqual(Buffer.from([0x80, 0x40]));
    expect(conn.peerHas(9) && conn.peerHas(0) && !conn.peerHas(1)).toBe(true);
  });

  it('the extended handshake it sends decodes to what it announced', () => {
    const conn = makeConnection({ listenPort: 6881, remoteIp: Buffer.from([10, 1, 2, 3]), limits: { maxInboundRequests: 100 } });
    conn.receive(remoteHandshake(), 0);
    const [, ext] = conn.drain().outgoing;
    expect(ext?.[4]).toBe(20);
    expect(ext?.[5]).toBe(0);
    expect(decode((ext as Buffer).subarray(6))).toEqual(
      new Map<string, unknown>([
        ['m', new Map([['ut_pex', 1]])],
        ['p', 6881],
        ['reqq', 100],
        ['v', Buffer.from('Shoal 0.1.0')],
        ['yourip', Buffer.from([10, 1, 2, 3])],
      ]),
    );
  });
});
