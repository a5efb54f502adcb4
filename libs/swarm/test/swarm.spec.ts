import { BLOCK_SIZE } from '@shoal/torrent';
import fc from 'fast-check';
import { PieceSpace, Swarm, type SwarmAction } from '../src';
import { bitsOf, block, type FakePeer, leaf, only, requested, Rig } from './support';

/** Small, deterministic pipelines: `depth` requests per peer. */
const fixedDepth = (depth: number) => ({ pipeline: 'fixed', minQueueDepth: 1, maxQueueDepth: depth }) as const;

describe('Swarm: requesting', () => {
  test('requests go to a peer once it announced pieces and unchoked us', () => {
    const rig = new Rig({ pieces: 4, blocksPerPiece: 2 });
    expect(rig.swarm.addPeer(1, { name: 'a' }, rig.now)).toBe('none');
    rig.swarm.peerOpened(1, { fast: true, reqq: 250 }, rig.now);
    expect(rig.take()).toEqual([]);
    rig.swarm.peerBitfield(1, 'all', rig.now);
    expect(rig.take()).toEqual([{ type: 'interested', peer: 1 }]);
    rig.swarm.peerChoke(1, false, rig.now);
    expect(requested(rig.take(), 1).sort()).toEqual(['0:0', '0:1', '1:0', '1:1', '2:0', '2:1', '3:0', '3:1']);
  });

  test('an unchoke before the bitfield requests nothing until the bitfield comes', () => {
    const rig = new Rig({ pieces: 2 });
    rig.swarm.addPeer(1, { name: 'a' }, rig.now);
    rig.swarm.peerOpened(1, { fast: true, reqq: 250 }, rig.now);
    rig.swarm.peerChoke(1, false, rig.now);
    expect(only(rig.take(), 'request')).toEqual([]);
    rig.swarm.peerBitfield(1, bitsOf(2, [1]), rig.now);
    expect(requested(rig.take(), 1).sort()).toEqual(['1:0', '1:1']);
  });

  test('no more requests in flight than the peer reqq allows', () => {
    const rig = new Rig({ pieces: 8 });
    const a = rig.peer(1, 'a', { reqq: 3 });
    expect(requested(a.unchoke(), 1)).toHaveLength(3);
    expect(a.stats().outstanding).toBe(3);
  });

  test('partial pieces are finished before new ones start', () => {
    const rig = new Rig({ pieces: 8, blocksPerPiece: 4, config: fixedDepth(2) });
    const a = rig.peer(1, 'a', { fast: false });
    const b = rig.peer(2, 'b');
    const first = only(a.unchoke(), 'request');
    const p = first[0]?.index as number;
    expect(requested(first, 1)).toEqual([`${p}:0`, `${p}:1`]);
    expect(requested(a.send(block(p, 0)).actions, 1)).toEqual([`${p}:2`]);
    a.choke();
    // Piece p holds one block and lacks three: b finishes it rather than starting another.
    expect(requested(b.unchoke(), 2)).toEqual([`${p}:1`, `${p}:2`]);
  });

  test('end game waits endGameDelayMs before duplicating a block on its way', () => {
    const rig = new Rig({ pieces: 1, blocksPerPiece: 2, config: { ...fixedDepth(2), endGameDelayMs: 500 } });
    const a = rig.peer(1, 'a');
    const b = rig.peer(2, 'b');
    expect(requested(a.unchoke(), 1)).toEqual(['0:0', '0:1']);
    expect(requested(b.unchoke(), 2)).toEqual([]);
    rig.now += 499;
    rig.swarm.tick(rig.now);
    expect(requested(rig.take(), 2)).toEqual([]);
    rig.now += 1;
    rig.swarm.tick(rig.now);
    expect(requested(rig.take(), 2)).toEqual(['0:0', '0:1']);
  });

  test('end game duplicates only outstanding blocks and cancels the losers', () => {
    const rig = new Rig({ pieces: 1, blocksPerPiece: 4, config: { ...fixedDepth(2), endGameDelayMs: 0 } });
    const a = rig.peer(1, 'a');
    const b = rig.peer(2, 'b');
    const c = rig.peer(3, 'c');
    expect(requested(a.unchoke(), 1)).toEqual(['0:0', '0:1']);
    expect(requested(a.send(block(0, 0)).actions, 1)).toEqual(['0:2']);
    // b takes the last unrequested block, then duplicates one outstanding at a.
    expect(requested(b.unchoke(), 2)).toEqual(['0:3', '0:1']);
    // c duplicates the blocks that have fewer than endGameRequesters (2) requesters; never the received 0:0.
    expect(requested(c.unchoke(), 3)).toEqual(['0:2', '0:3']);

    const won = c.send(block(0, 2));
    expect(won.kept).toBe(true);
    expect(only(won.actions, 'cancel')).toEqual([{ type: 'cancel', peer: 1, ...block(0, 2) }]);
    expect(only(b.send(block(0, 3)).actions, 'cancel')).toEqual([{ type: 'cancel', peer: 3, ...block(0, 3) }]);
    const last = a.send(block(0, 1)).actions;
    expect(only(last, 'cancel')).toEqual([{ type: 'cancel', peer: 2, ...block(0, 1) }]);
    expect(only(last, 'write')).toEqual([{ type: 'write', index: 0, recordLeaves: true, needGoodLeaves: false }]);
    // A loser's block that crossed the cancel is dropped.
    expect(c.send(block(0, 3)).kept).toBe(false);
  });

  test('end game respects endGameRequesters', () => {
    const rig = new Rig({ pieces: 1, blocksPerPiece: 2, config: { ...fixedDepth(2), endGameRequesters: 1 } });
    rig.peer(1, 'a').unchoke();
    expect(only(rig.peer(2, 'b').unchoke(), 'request')).toEqual([]);
  });

  test('a choke without the fast extension gives the blocks back at once', () => {
    const rig = new Rig({ pieces: 2, config: { ...fixedDepth(2), maxPiecesInFlight: 1 } });
    const a = rig.peer(1, 'a', { fast: false });
    const b = rig.peer(2, 'b');
    const asked = requested(a.unchoke(), 1);
    expect(asked).toHaveLength(2);
    expect(only(b.unchoke(), 'request')).toEqual([]);
    expect(requested(a.choke(), 2)).toEqual(asked);
    expect(a.stats().outstanding).toBe(0);
  });

  test('a choke with the fast extension waits for the rejects', () => {
    const rig = new Rig({ pieces: 2, config: { ...fixedDepth(2), maxPiecesInFlight: 1 } });
    const a = rig.peer(1, 'a', { fast: true });
    const b = rig.peer(2, 'b');
    const asked = only(a.unchoke(), 'request');
    b.unchoke();
    expect(only(a.choke(), 'request')).toEqual([]);
    expect(a.stats().outstanding).toBe(2);
    const [first, second] = asked;
    if (!first || !second) throw new Error('expected two requests');
    expect(requested(a.reject(first), 2)).toEqual([`${first.index}:${first.begin / BLOCK_SIZE}`]);
    expect(a.stats().outstanding).toBe(1);
    // The peer may still send what it did not reject.
    expect(a.send(second).kept).toBe(true);
  });

  test('a peer silent for snubMs is snubbed: its blocks go to others, it keeps one request', () => {
    const rig = new Rig({ pieces: 2, config: { ...fixedDepth(2), maxPiecesInFlight: 1, snubMs: 60_000 } });
    const a = rig.peer(1, 'a');
    const b = rig.peer(2, 'b');
    const asked = requested(a.unchoke(), 1);
    b.unchoke();
    expect(only(rig.tick(59_999), 'request')).toEqual([]);
    expect(a.stats().snubbed).toBe(false);
    const after = rig.tick(1);
    expect(a.stats().snubbed).toBe(true);
    expect(a.stats().outstanding).toBeLessThanOrEqual(1);
    const toB = requested(after, 2);
    expect(toB.length).toBeGreaterThan(0);
    expect(new Set([...toB, ...requested(after, 1)])).toEqual(new Set(asked));
    // A block ends the snub.
    a.send(block(Number(asked[0]?.split(':')[0]), 0));
    expect(a.stats().snubbed).toBe(false);
  });

  test('a choked peer is never snubbed (it owes us nothing)', () => {
    const rig = new Rig({ pieces: 2, config: { snubMs: 1000 } });
    const a = rig.peer(1, 'a', { fast: true });
    a.unchoke();
    a.choke();
    rig.tick(5000);
    expect(a.stats().snubbed).toBe(false);
  });
});

describe('Swarm: blame and bans', () => {
  /** Peers a and b each send one block of the same piece; c holds it too but chokes us. */
  function mixedPiece(config = {}) {
    const rig = new Rig({ pieces: 2, config: { ...fixedDepth(1), ...config } });
    const a = rig.peer(1, 'a');
    const b = rig.peer(2, 'b');
    const c = rig.peer(3, 'c');
    const p = only(a.unchoke(), 'request')[0]?.index as number;
    expect(requested(b.unchoke(), 2)).toEqual([`${p}:1`]);
    a.send(block(p, 0));
    const write = only(b.send(block(p, 1)).actions, 'write');
    expect(write).toEqual([{ type: 'write', index: p, recordLeaves: true, needGoodLeaves: false }]);
    return { rig, a, b, c, p };
  }

  test('a corrupt piece from one sender strikes it', () => {
    const rig = new Rig({ pieces: 2 });
    const a = rig.peer(1, 'a');
    a.unchoke();
    a.send(block(0, 0));
    expect(only(a.send(block(0, 1)).actions, 'write')).toEqual([{ type: 'write', index: 0, recordLeaves: false, needGoodLeaves: false }]);
    rig.swarm.pieceCorrupt(0, rig.now);
    const actions = rig.take();
    expect(only(actions, 'piece-failed')).toEqual([{ type: 'piece-failed', index: 0, senders: ['a'] }]);
    expect(only(actions, 'request-block-hashes')).toEqual([]);
    expect(rig.swarm.strikesOf('a')).toBe(1);
    expect(rig.swarm.progress.corruptPieces).toBe(1);
    // The piece is wanted again.
    expect(requested(actions, 1).sort()).toEqual(['0:0', '0:1']);
  });

  test('a mixed corrupt piece asks block hashes from a peer above suspicion and strikes only the bad block sender', () => {
    const { rig, p } = mixedPiece();
    rig.swarm.pieceCorrupt(p, rig.now, [leaf(1), leaf(2)]);
    const actions = rig.take();
    expect(only(actions, 'piece-failed')).toEqual([{ type: 'piece-failed', index: p, senders: ['a', 'b'] }]);
    expect(only(actions, 'request-block-hashes')).toEqual([{ type: 'request-block-hashes', peer: 3, index: p }]);
    expect(rig.swarm.strikesOf('a')).toBe(0);
    expect(rig.swarm.strikesOf('b')).toBe(0);

    rig.swarm.blockHashes(p, [leaf(1), leaf(9)], rig.now);
    expect(rig.swarm.strikesOf('a')).toBe(0);
    expect(rig.swarm.strikesOf('b')).toBe(1);
  });

  test('without a hash answer, blame settles when a later attempt verifies', () => {
    const { rig, a, b, p } = mixedPiece();
    const q = 1 - p;
    rig.swarm.pieceCorrupt(p, rig.now, [leaf(1), leaf(2)]);
    // The hash request goes unanswered: the peer refused.
    rig.swarm.blockHashes(p, undefined, rig.now);
    rig.take();
    // Only suspects can serve it (c chokes us): a re-fetches it alone.
    expect(requested(a.send(block(q, 0)).actions, 1)).toEqual([`${p}:0`]);
    expect(requested(a.send(block(p, 0)).actions, 1)).toEqual([`${p}:1`]);
    expect(only(b.send(block(q, 1)).actions, 'request').filter((r) => r.index === p)).toEqual([]);
    expect(only(a.send(block(p, 1)).actions, 'write')).toEqual([{ type: 'write', index: p, recordLeaves: false, needGoodLeaves: true }]);
    rig.swarm.pieceVerified(p, rig.now, [leaf(1), leaf(9)]);
    expect(rig.swarm.strikesOf('a')).toBe(0);
    expect(rig.swarm.strikesOf('b')).toBe(1);
  });

  test('a peer above suspicion takes the re-fetch; suspects keep off it', () => {
    const { rig, a, c, p } = mixedPiece();
    const q = 1 - p;
    rig.swarm.pieceCorrupt(p, rig.now, [leaf(1), leaf(2)]);
    rig.take();
    expect(requested(c.unchoke(), 3)).toEqual([`${p}:0`]);
    expect(only(a.send(block(q, 0)).actions, 'request').filter((r) => r.index === p)).toEqual([]);
  });

  test('strikesToBan strikes close the peer, drop its blocks and refuse it from then on', () => {
    const rig = new Rig({ pieces: 4, blocksPerPiece: 1, config: { strikesToBan: 2 } });
    const a = rig.peer(1, 'a');
    rig.peer(2, 'b');
    a.unchoke();
    a.send(block(0, 0));
    rig.swarm.pieceCorrupt(0, rig.now);
    expect(only(rig.take(), 'close')).toEqual([]);
    a.send(block(1, 0));
    rig.swarm.pieceCorrupt(1, rig.now);
    const actions = rig.take();
    expect(only(actions, 'close')).toEqual([{ type: 'close', peer: 1, code: 'PEER_BANNED', message: expect.stringContaining('a') }]);
    expect(only(actions, 'banned')).toEqual([{ type: 'banned', name: 'a', strikes: 2 }]);
    expect(rig.swarm.isBanned('a')).toBe(true);
    expect(rig.swarm.peerStats(rig.now).map((p) => p.name)).toEqual(['b']);
    expect(rig.swarm.addPeer(7, { name: 'a' }, rig.now)).toEqual({ refused: 'PEER_BANNED', message: expect.stringContaining('banned') });
    // Its late blocks are dropped.
    expect(rig.swarm.blockReceived(1, block(2, 0), rig.now)).toBe(false);
  });
});

describe('Swarm: super-seeding', () => {
  /** Serves every block of `index` to the peer; returns the actions of the last one. */
  function serveWhole(rig: Rig, peer: FakePeer, index: number): SwarmAction[] {
    let last: SwarmAction[] = [];
    for (const ref of rig.blocksOf(index)) {
      expect(only(peer.request(ref), 'serve')).toEqual([{ type: 'serve', peer: peer.key, ...ref }]);
      last = peer.served(ref);
    }
    return last;
  }

  const revealed = (actions: readonly SwarmAction[], peer: number) => only(actions, 'have', peer).map((h) => h.index);

  /** What a newcomer would be told, without keeping it connected. */
  function advertisementToNewcomer(rig: Rig): unknown {
    const advertised = rig.swarm.addPeer(1000, { name: 'newcomer' }, rig.now);
    rig.swarm.peerClosed(1000, rig.now);
    rig.take();
    return advertised;
  }

  test('new peers get have-none, then revealAhead pieces each, different pieces for different peers', () => {
    const rig = new Rig({ pieces: 6, have: 'all', config: { revealAhead: 2 } });
    expect(rig.swarm.addPeer(1, { name: 'a' }, rig.now)).toBe('none');
    rig.swarm.peerOpened(1, { fast: true, reqq: 250 }, rig.now);
    expect(rig.take()).toEqual([]);
    rig.swarm.peerBitfield(1, 'none', rig.now);
    const toA = revealed(rig.take(), 1);
    expect(new Set(toA).size).toBe(2);
    rig.peer(2, 'b', { bits: 'none' });
    const toB = revealed(rig.take(), 2);
    expect(new Set(toB).size).toBe(2);
    for (const index of toB) expect(toA).not.toContain(index);
  });

  test('with an origin that shares the work (assist), its pieces are revealed after the others', () => {
    const rig = new Rig({ pieces: 8, have: 'all', webseed: true, config: { revealAhead: 6, webseed: 'assist' } });
    rig.peer(1, 'a', { bits: 'none' });
    const toA = revealed(rig.take(), 1);
    expect(toA.filter((i) => i % 2 === 0).sort()).toEqual([0, 2, 4, 6]);
    expect(toA.filter((i) => i % 2 === 1)).toHaveLength(2);
    // Without an origin there is nothing to defer: the draw decides.
    const plain = new Rig({ pieces: 8, have: 'all', webseed: false, config: { revealAhead: 4, webseed: 'assist' } });
    plain.peer(1, 'a', { bits: 'none' });
    expect(revealed(plain.take(), 1).filter((i) => i % 2 === 1).length).toBeGreaterThan(0);
  });

  test('reveals the least-copied pieces: ones no peer holds and nobody was offered', () => {
    const rig = new Rig({ pieces: 6, have: 'all', config: { revealAhead: 2 } });
    rig.peer(1, 'b', { bits: bitsOf(6, [4, 5]) });
    const toB = revealed(rig.take(), 1);
    expect(toB).toHaveLength(2);
    rig.peer(2, 'a', { bits: 'none' });
    const toA = revealed(rig.take(), 2);
    expect(toA.sort()).toEqual([0, 1, 2, 3].filter((i) => !toB.includes(i)));
  });

  test('a fully sent piece makes room for the next reveal; every piece out once ends super-seeding', () => {
    const rig = new Rig({ pieces: 4, have: 'all', config: { revealAhead: 1 } });
    const a = rig.peer(1, 'a', { bits: 'none' });
    const b = rig.peer(2, 'b', { bits: 'none' });
    const told = new Map<number, Set<number>>([
      [1, new Set()],
      [2, new Set()],
    ]);
    const tell = (actions: readonly SwarmAction[]) => {
      for (const h of only(actions, 'have')) told.get(h.peer)?.add(h.index);
      return revealed(actions, 1).concat(revealed(actions, 2));
    };
    tell(rig.take());
    const [x0] = [...(told.get(1) as Set<number>)];
    const [y0] = [...(told.get(2) as Set<number>)];
    if (x0 === undefined || y0 === undefined) throw new Error('one reveal each expected');
    expect(x0).not.toBe(y0);
    a.interested();
    b.interested();

    // The last block of x0 went out: a is offered a piece nobody has seen yet.
    const [x1] = tell(serveWhole(rig, a, x0));
    expect(x1).toBeDefined();
    expect([x0, y0]).not.toContain(x1);
    tell(a.have(x0));
    const [z] = tell(serveWhole(rig, b, y0));
    expect([x0, y0, x1]).not.toContain(z);
    tell(b.have(y0));
    tell(serveWhole(rig, a, x1 as number));
    tell(a.have(x1 as number));
    expect(advertisementToNewcomer(rig)).toBe('none');

    // The fourth and last piece leaves the seed: super-seeding ends, everybody hears of everything.
    tell(serveWhole(rig, b, z as number));
    expect(advertisementToNewcomer(rig)).toBe('all');
    for (const [peer, heard] of told) {
      const holds = peer === 1 ? [x0, x1] : [y0];
      expect(new Set([...heard, ...holds])).toEqual(new Set([0, 1, 2, 3]));
    }
  });

  test('a peer announcing a revealed piece it got elsewhere is offered another', () => {
    const rig = new Rig({ pieces: 4, have: 'all', config: { revealAhead: 1 } });
    const a = rig.peer(1, 'a', { bits: 'none' });
    const [first] = revealed(rig.take(), 1);
    const next = revealed(a.have(first as number), 1);
    expect(next).toHaveLength(1);
    expect(next[0]).not.toBe(first);
  });

  test('never reveals a piece the seed no longer holds', () => {
    const rig = new Rig({ pieces: 3, blocksPerPiece: 1, have: 'all', random: () => 0, config: { revealAhead: 2 } });
    rig.swarm.pieceLost(0, rig.now);
    rig.peer(1, 'a', { bits: 'none' });
    expect(revealed(rig.take(), 1).sort()).toEqual([1, 2]);
  });

  test('announce-all seeds announce everything', () => {
    const rig = new Rig({ pieces: 4, have: 'all', config: { seeding: 'announce-all' } });
    expect(rig.swarm.addPeer(1, { name: 'a' }, rig.now)).toBe('all');
  });
});

describe('Swarm: webseed', () => {
  const fetches = (actions: readonly SwarmAction[]) => only(actions, 'webseed-fetch');

  test('alone: the origin after noPeersMs, up to webseedConcurrency pieces at once', () => {
    const rig = new Rig({ pieces: 8, webseed: true, config: { webseedNoPeersMs: 3000, webseedConcurrency: 3 } });
    expect(fetches(rig.tick(2999))).toEqual([]);
    const first = fetches(rig.tick(1));
    expect(first).toHaveLength(3);
    expect(new Set(first.map((f) => f.index)).size).toBe(3);
    for (const f of first) expect(f.reason).toBe('no-peers');
    // A verified origin piece frees a slot for the next.
    rig.swarm.pieceVerified(first[0]?.index as number, rig.now);
    const next = fetches(rig.take());
    expect(next).toHaveLength(1);
    expect(first.map((f) => f.index)).not.toContain(next[0]?.index);
    expect(rig.swarm.progress.bytesFromWebseed).toBe(rig.space.pieceSize(0));
    expect(rig.swarm.progress.webseedFetches).toBe(4);
  });

  test('no webseed, or the never policy: no origin fetch whatever happens', () => {
    for (const options of [{ webseed: false }, { webseed: true, config: { webseed: 'never' as const } }]) {
      const rig = new Rig({ pieces: 4, ...options });
      expect(fetches(rig.tick(600_000))).toEqual([]);
    }
  });

  test('a failed origin fetch backs off, doubling', () => {
    const rig = new Rig({ pieces: 4, webseed: true, config: { webseedNoPeersMs: 0, webseedConcurrency: 1 } });
    const [first] = fetches(rig.tick(1));
    expect(first).toBeDefined();
    rig.swarm.webseedFailed(first?.index as number, rig.now);
    expect(fetches(rig.take())).toEqual([]);
    expect(fetches(rig.tick(999))).toEqual([]);
    const [second] = fetches(rig.tick(1));
    expect(second).toBeDefined();
    rig.swarm.webseedFailed(second?.index as number, rig.now);
    expect(fetches(rig.tick(1999))).toEqual([]);
    expect(fetches(rig.tick(1))).toHaveLength(1);
  });

  test('corrupt origin data is reported against the webseed and backs off', () => {
    const rig = new Rig({ pieces: 4, webseed: true, config: { webseedNoPeersMs: 0, webseedConcurrency: 1 } });
    const [first] = fetches(rig.tick(1));
    rig.swarm.pieceCorrupt(first?.index as number, rig.now);
    const actions = rig.take();
    expect(only(actions, 'piece-failed')).toEqual([{ type: 'piece-failed', index: first?.index, senders: ['webseed'] }]);
    expect(fetches(actions)).toEqual([]);
    expect(fetches(rig.tick(1000))).toHaveLength(1);
  });

  test('pieces no peer holds: the responsible peer fetches at once, the others after unavailableMs', () => {
    const rig = new Rig({ pieces: 12, webseed: true, selfName: 'agent-1', config: { webseed: 'fallback', webseedConcurrency: 12, webseedUnavailableMs: 5000 } });
    // b holds piece 0 only (so we are not peerless) and chokes us.
    rig.peer(1, 'agent-2', { bits: bitsOf(12, [0]) });
    const atOnce = fetches(rig.take());
    for (const f of atOnce) expect(f.reason).toBe('piece-unavailable');
    expect(fetches(rig.tick(4999))).toEqual([]);
    const later = fetches(rig.tick(1));
    for (const f of later) expect(f.reason).toBe('piece-unavailable');
    const mine = atOnce.map((f) => f.index);
    const theirs = later.map((f) => f.index);
    expect(mine.length).toBeGreaterThan(0);
    expect(theirs.length).toBeGreaterThan(0);
    expect([...mine, ...theirs].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  test('unavailableMs counts from when nobody held the piece, even while the origin was busy', () => {
    const rig = new Rig({ pieces: 12, webseed: true, selfName: 'agent-1', config: { webseedConcurrency: 1, webseedUnavailableMs: 5000 } });
    rig.peer(1, 'agent-2', { bits: bitsOf(12, [0]) });
    let inFlight = fetches(rig.take());
    expect(inFlight).toHaveLength(1);
    // At 5 s every piece but 0 has been unavailable for unavailableMs: each origin slot that
    // frees takes the next one, until all are fetched.
    rig.now = 5000;
    const fetched: number[] = [];
    for (let f = inFlight[0]; f !== undefined; f = inFlight[0]) {
      fetched.push(f.index);
      rig.swarm.pieceVerified(f.index, rig.now);
      inFlight = fetches(rig.take());
    }
    expect(fetched.sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  test('exactly one agent among a set of connected agents is responsible for each unavailable piece', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 1, max: 40 }), (names, pieces) => {
        const owners = new Map<number, string[]>();
        for (const self of names) {
          // 'fallback': 'assist' keeps one fetch in flight while peers are connected.
          const swarm = new Swarm({ space: PieceSpace.uniform(pieces * BLOCK_SIZE, BLOCK_SIZE), have: 'none', selfName: self, random: () => 0.5, now: 0, webseed: true, config: { webseed: 'fallback', webseedConcurrency: pieces } });
          const others = names.filter((n) => n !== self);
          others.forEach((name, key) => swarm.addPeer(key, { name }, 0));
          others.forEach((_, key) => swarm.peerOpened(key, { fast: true, reqq: 250 }, 0));
          others.forEach((_, key) => swarm.peerBitfield(key, 'none', 0));
          if (others.length === 0) swarm.tick(0);
          for (const f of only(swarm.takeActions(), 'webseed-fetch')) {
            if (others.length > 0) expect(f.reason).toBe('piece-unavailable');
            owners.set(f.index, [...(owners.get(f.index) ?? []), self]);
          }
        }
        // Alone, nobody is "responsible": the no-peers timer decides instead.
        if (names.length === 1) return expect(owners.size).toBe(0);
        for (let i = 0; i < pieces; i++) expect(owners.get(i)).toHaveLength(1);
      }),
    );
  });

  test('slow peers: the origin helps after webseedSlowMs below webseedSlowBytesPerSecond', () => {
    const rig = new Rig({ pieces: 64, blocksPerPiece: 1, webseed: true, config: { ...fixedDepth(4), webseedSlowBytesPerSecond: 1000, webseedSlowMs: 5000, webseedConcurrency: 1 } });
    const a = rig.peer(1, 'a');
    a.unchoke();
    expect(fetches(rig.tick(4999))).toEqual([]);
    const slow = fetches(rig.tick(1));
    expect(slow).toEqual([{ type: 'webseed-fetch', index: expect.any(Number), reason: 'slow-peers' }]);
  });

  test('no slow-peers fetch without a threshold, even with webseedSlowMs = 0', () => {
    const rig = new Rig({ pieces: 64, blocksPerPiece: 1, webseed: true, config: { ...fixedDepth(4), webseedSlowMs: 0 } });
    const a = rig.peer(1, 'a');
    expect(fetches([...rig.take(), ...a.unchoke(), ...rig.tick(1000), ...rig.tick(60_000)])).toEqual([]);
  });

  test('webseedNoPeersMs = 0 fetches as soon as peers have nothing, never while they hold what we want', () => {
    const rig = new Rig({ pieces: 8, webseed: true, config: { webseedNoPeersMs: 0 } });
    const a = rig.peer(1, 'a');
    expect(fetches([...rig.take(), ...rig.tick(1000)])).toEqual([]);
    expect(fetches(a.close()).map((f) => f.reason)).toEqual(['no-peers', 'no-peers', 'no-peers', 'no-peers']);
  });
});

describe('Swarm: local results', () => {
  test('a store write failure stops downloading; serving goes on', () => {
    const rig = new Rig({ pieces: 4, have: [1, 0, 0, 0] });
    const a = rig.peer(1, 'a');
    a.unchoke();
    a.send(block(1, 0));
    a.send(block(1, 1));
    rig.swarm.pieceWriteFailed(1, rig.now);
    const actions = rig.take();
    expect(only(actions, 'not-interested')).toEqual([{ type: 'not-interested', peer: 1 }]);
    expect(requested(actions, 1, 'cancel').sort()).toEqual(['2:0', '2:1', '3:0', '3:1']);
    expect(a.stats().outstanding).toBe(0);
    // Nothing re-requests, whatever the peers do.
    a.choke();
    expect(only([...a.unchoke(), ...a.have(2), ...rig.tick(60_000)], 'request')).toEqual([]);
    expect(only(rig.peer(2, 'b').unchoke(), 'request')).toEqual([]);
    // Serving continues.
    expect(only(a.interested(), 'unchoke')).toEqual([{ type: 'unchoke', peer: 1 }]);
    expect(only(a.request(block(0, 0)), 'serve')).toEqual([{ type: 'serve', peer: 1, ...block(0, 0) }]);
  });

  test('a piece lost on disk is fetched again', () => {
    const rig = new Rig({ pieces: 4, have: 'all', config: { seeding: 'announce-all' } });
    const a = rig.peer(1, 'a');
    expect(rig.take()).toEqual([]);
    rig.swarm.pieceLost(2, rig.now);
    expect(rig.swarm.isComplete()).toBe(false);
    expect(rig.swarm.hasPiece(2)).toBe(false);
    expect(only(rig.take(), 'interested')).toEqual([{ type: 'interested', peer: 1 }]);
    expect(requested(a.unchoke(), 1).sort()).toEqual(['2:0', '2:1']);
    a.send(block(2, 0));
    expect(only(a.send(block(2, 1)).actions, 'write')).toHaveLength(1);
    rig.swarm.pieceVerified(2, rig.now);
    const done = rig.take();
    expect(only(done, 'complete')).toHaveLength(1);
    expect(only(done, 'not-interested')).toEqual([{ type: 'not-interested', peer: 1 }]);
    expect(rig.swarm.isComplete()).toBe(true);
  });

  test('completion cancels outstanding requests, turns not-interested and says complete', () => {
    const rig = new Rig({ pieces: 2 });
    const a = rig.peer(1, 'a');
    const b = rig.peer(2, 'b', { bits: bitsOf(2, [1]) });
    a.unchoke();
    a.send(block(0, 0));
    a.send(block(0, 1));
    rig.swarm.pieceVerified(0, rig.now);
    rig.take();
    // The store reports the last piece verified (found on disk) while a still fetches it.
    rig.swarm.pieceVerified(1, rig.now);
    const actions = rig.take();
    expect(requested(actions, 1, 'cancel').sort()).toEqual(['1:0', '1:1']);
    expect(only(actions, 'not-interested').map((a) => a.peer).sort()).toEqual([1, 2]);
    expect(actions[actions.length - 1]).toEqual({ type: 'complete' });
    expect(a.stats().outstanding).toBe(0);
    expect(a.send(block(1, 0)).kept).toBe(false);
    expect(only(b.unchoke(), 'request')).toEqual([]);
    expect(rig.swarm.progress.verifiedPieces).toBe(2);
  });

  test('a verified piece is announced to every open peer that lacks it (no redundant HAVE)', () => {
    const rig = new Rig({ pieces: 2 });
    const a = rig.peer(1, 'a');
    rig.peer(2, 'b', { bits: 'none' });
    a.unchoke();
    a.send(block(0, 0));
    a.send(block(0, 1));
    rig.swarm.pieceVerified(0, rig.now);
    expect(only(rig.take(), 'have')).toEqual([{ type: 'have', peer: 2, index: 0 }]);
  });

  test('a seed the tracker listed still gets the HAVE: a super-seed counts copies by them', () => {
    const space = PieceSpace.uniform(2 * 16 * 1024, 16 * 1024);
    const swarm = new Swarm({ space, have: 'none', selfName: 'self', random: () => 0.5, now: 0 });
    swarm.addPeer(1, { name: 'seed', seed: true }, 0);
    swarm.peerOpened(1, { fast: true, reqq: 250 }, 0);
    swarm.peerBitfield(1, 'none', 0);
    swarm.peerHave(1, 0, 0);
    swarm.takeActions();
    swarm.pieceVerified(0, 1);
    expect(swarm.takeActions().filter((a) => a.type === 'have')).toEqual([{ type: 'have', peer: 1, index: 0 }]);
  });
});

describe('Swarm: peers', () => {
  test('maxPeers refuses more connections with PEER_LIMIT, and takes them again once one leaves', () => {
    const rig = new Rig({ pieces: 2, config: { maxPeers: 2 } });
    rig.peer(1, 'a');
    const b = rig.peer(2, 'b');
    expect(rig.swarm.addPeer(3, { name: 'c' }, rig.now)).toEqual({ refused: 'PEER_LIMIT', message: expect.stringContaining('maxPeers') });
    b.close();
    expect(rig.swarm.addPeer(3, { name: 'c' }, rig.now)).toBe('none');
  });

  test('a seed advertises have-all, a partial peer its bitfield', () => {
    expect(new Rig({ pieces: 2, have: 'all', config: { seeding: 'announce-all' } }).swarm.addPeer(1, { name: 'a' }, 0)).toBe('all');
    expect(new Rig({ pieces: 10, have: [0, 1, 0, 0, 0, 0, 0, 0, 0, 1] }).swarm.addPeer(1, { name: 'a' }, 0)).toEqual(bitsOf(10, [1, 9]));
  });

  test('interested peers are unchoked up to the slots plus one optimistic', () => {
    const rig = new Rig({ pieces: 2, have: 'all', config: { unchokeSlots: 2, seeding: 'announce-all' } });
    const unchoked = new Set<number>();
    for (let key = 1; key <= 6; key++) {
      const peer = rig.peer(key, `p${key}`, { bits: 'none' });
      for (const u of only(peer.interested(), 'unchoke')) unchoked.add(u.peer);
    }
    expect(unchoked.size).toBe(3);
  });

  test('a closed peer gives its blocks back to the others', () => {
    const rig = new Rig({ pieces: 2, config: { ...fixedDepth(2), maxPiecesInFlight: 1 } });
    const a = rig.peer(1, 'a');
    const b = rig.peer(2, 'b');
    const asked = requested(a.unchoke(), 1);
    b.unchoke();
    expect(requested(a.close(), 2)).toEqual(asked);
  });
});

describe('Swarm: announcing', () => {
  test('a piece verified while a connection is still handshaking is announced once it opens', () => {
    const space = PieceSpace.uniform(4 * 16 * 1024, 16 * 1024);
    const swarm = new Swarm({ space, have: [1, 0, 0, 0], selfName: 'self', random: () => 0.5, now: 0 });
    const advertised = swarm.addPeer(1, { name: 'late' }, 0);
    expect(advertised).toBeInstanceOf(Uint8Array);
    swarm.pieceVerified(2, 1);
    expect(swarm.takeActions().filter((a) => a.type === 'have')).toEqual([]);
    swarm.peerOpened(1, { fast: true, reqq: 250 }, 2);
    expect(swarm.takeActions().filter((a) => a.type === 'have')).toEqual([{ type: 'have', peer: 1, index: 2 }]);
  });
});

describe('Swarm: webseed with a hidden seed', () => {
  test('fallback: a peer the tracker lists as a seed (super-seeding: have-none) keeps the origin idle; once it leaves, the origin fills in', () => {
    const space = PieceSpace.uniform(8 * 16 * 1024, 16 * 1024);
    const swarm = new Swarm({ space, have: 'none', selfName: 'self', random: () => 0.5, now: 0, webseed: true, config: { webseed: 'fallback' } });
    swarm.addPeer(1, { name: 'seed', seed: true }, 0);
    swarm.peerOpened(1, { fast: true, reqq: 250 }, 0);
    swarm.peerBitfield(1, 'none', 0);
    swarm.tick(60_000);
    expect(swarm.takeActions().filter((a) => a.type === 'webseed-fetch')).toEqual([]);
    swarm.peerClosed(1, 61_000);
    swarm.tick(65_000);
    expect(swarm.takeActions().filter((a) => a.type === 'webseed-fetch').length).toBeGreaterThan(0);
  });

  test('assist: with a hidden seed connected, the origin is asked for its share only (every other piece)', () => {
    const space = PieceSpace.uniform(8 * 16 * 1024, 16 * 1024);
    const swarm = new Swarm({ space, have: 'none', selfName: 'self', random: () => 0.5, now: 0, webseed: true, config: { webseed: 'assist', webseedConcurrency: 8 } });
    swarm.addPeer(1, { name: 'seed', seed: true }, 0);
    swarm.peerOpened(1, { fast: true, reqq: 250 }, 0);
    swarm.peerBitfield(1, 'none', 0);
    const fetched: number[] = [];
    swarm.tick(1000);
    // One at a time while peers are connected, whatever webseedConcurrency allows.
    for (let next = only(swarm.takeActions(), 'webseed-fetch'); next.length > 0; next = only(swarm.takeActions(), 'webseed-fetch')) {
      expect(next).toHaveLength(1);
      const [fetch] = next as [Extract<SwarmAction, { type: 'webseed-fetch' }>];
      expect(fetch.reason).toBe('origin-share');
      fetched.push(fetch.index);
      swarm.pieceVerified(fetch.index, 2000);
    }
    // The seed wins the rendezvous for some pieces (it sends those); the rest of the share is ours.
    expect(fetched.length).toBeGreaterThan(0);
    expect(fetched.every((index) => index % 2 === 1)).toBe(true);
  });
});
