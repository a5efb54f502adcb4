import fc from 'fast-check';
import { BLOCK_SIZE, type Metainfo } from '@shoal/torrent';
import {
  BlockState,
  PieceDownload,
  blameAfterVerified,
  blameCorruptPiece,
  blockDigest,
  chooseUnchoked,
  inEndGame,
  mayRetryFrom,
  pickPiece,
  refillBatch,
  requestBudget,
} from '../src/session';
import { PackageGeometry } from '../src/session';

describe('pickPiece', () => {
  test('returns a candidate whenever there is one, and undefined when there is none', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 0, maxLength: 200 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (bits, r) => {
        const picked = pickPiece({ numPieces: bits.length, isCandidate: (i) => bits[i] === true, random: () => r });
        if (bits.includes(true)) expect(bits[picked as number]).toBe(true);
        else expect(picked).toBeUndefined();
      }),
    );
  });

  test('spreads picks over the candidates (random, not in order)', () => {
    const seen = new Set<number>();
    let x = 0.5;
    const random = (): number => (x = (x * 9301 + 0.49297) % 1);
    for (let k = 0; k < 400; k++) seen.add(pickPiece({ numPieces: 100, isCandidate: (i) => i % 2 === 0, random }) as number);
    expect(seen.size).toBeGreaterThan(40);
    for (const i of seen) expect(i % 2).toBe(0);
  });
});

test('requestBudget: our queue depth, capped by the peer reqq', () => {
  expect(requestBudget(32, 250, 0)).toBe(32);
  expect(requestBudget(32, 250, 30)).toBe(2);
  expect(requestBudget(32, 10, 4)).toBe(6);
  expect(requestBudget(32, 10, 12)).toBe(0);
  expect(refillBatch(32)).toBe(8);
  expect(refillBatch(2)).toBe(1);
});

test('inEndGame: only once every missing piece is in flight', () => {
  expect(inEndGame({ missingPieces: 10, piecesInFlight: 4 })).toBe(false);
  expect(inEndGame({ missingPieces: 4, piecesInFlight: 4 })).toBe(true);
  expect(inEndGame({ missingPieces: 0, piecesInFlight: 0 })).toBe(false);
});

test('chooseUnchoked keeps unchoked interested peers, fills up in order, chokes the uninterested', () => {
  const peers = [
    { id: 1, interested: true, unchoked: false },
    { id: 2, interested: false, unchoked: true },
    { id: 3, interested: true, unchoked: true },
    { id: 4, interested: true, unchoked: false },
    { id: 5, interested: true, unchoked: false },
  ];
  expect([...chooseUnchoked(peers, 2)]).toEqual([3, 1]);
  expect([...chooseUnchoked(peers, 8)].sort()).toEqual([1, 3, 4, 5]);
});

describe('blame', () => {
  test('a sole contributor is struck at once; a mixed piece waits', () => {
    expect(blameCorruptPiece(new Set(['a']))).toEqual(['a']);
    expect(blameCorruptPiece(new Set(['a', 'b']))).toEqual([]);
  });

  test('after the piece verifies, only senders of blocks that differ from the good data are blamed', () => {
    const good = Buffer.alloc(3 * BLOCK_SIZE, 7);
    const bad = Buffer.from(good);
    bad[BLOCK_SIZE + 5] = 0;
    const record = (b: number, sender: string, data: Buffer) => ({
      begin: b * BLOCK_SIZE,
      length: BLOCK_SIZE,
      sender,
      hash: blockDigest(data.subarray(b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE)),
    });
    const records = [record(0, 'honest', good), record(1, 'liar', bad), record(2, 'honest', good), record(1, 'liar', bad)];
    expect(blameAfterVerified(records, good)).toEqual(['liar']);
    expect(blameAfterVerified([record(0, 'honest', good)], good)).toEqual([]);
  });

  test('re-fetches prefer peers above suspicion', () => {
    const suspects = new Set(['a']);
    expect(mayRetryFrom('b', suspects, ['a', 'b'])).toBe(true);
    expect(mayRetryFrom('a', suspects, ['a', 'b'])).toBe(false);
    expect(mayRetryFrom('a', suspects, ['a'])).toBe(true);
  });
});

describe('PieceDownload', () => {
  test('tracks requested, released, received and duplicate blocks', () => {
    const pd = new PieceDownload<string>(3, 2 * BLOCK_SIZE + 100);
    expect(pd.numBlocks).toBe(3);
    expect(pd.blockLength(2)).toBe(100);
    pd.markRequested(0, 'p');
    pd.markRequested(0, 'q'); // end game duplicate
    expect(pd.unrequested).toBe(2);
    pd.release(0, 'q');
    expect(pd.state[0]).toBe(BlockState.Requested);
    pd.release(0, 'p');
    expect(pd.state[0]).toBe(BlockState.Missing);
    expect(pd.unrequested).toBe(3);

    pd.markRequested(1, 'p');
    pd.markRequested(1, 'q');
    expect(pd.receive(1, Buffer.alloc(BLOCK_SIZE, 1), 'q', 'q')).toEqual(['p']);
    expect(pd.receive(1, Buffer.alloc(BLOCK_SIZE, 2), 'p', 'p')).toBeNull();
    expect(pd.buffer[BLOCK_SIZE]).toBe(1);
    // A late block that was never (or no longer) requested still counts once.
    expect(pd.receive(2, Buffer.alloc(100, 3), 'p', 'p')).toEqual([]);
    expect(pd.received).toBe(2);
    expect(pd.unrequested).toBe(1);
    expect([...pd.contributors()].sort()).toEqual(['p', 'q']);

    expect(pd.discardFrom('q')).toBe(1);
    expect(pd.state[1]).toBe(BlockState.Missing);
    expect(pd.received).toBe(1);
    expect(pd.complete).toBe(false);
  });
});

test('PackageGeometry: real piece sizes per file, and libtorrent padded piece space on the wire', () => {
  const pieceLength = 64 * 1024;
  const meta = {
    numPieces: 4,
    pieceLength,
    files: [
      { path: ['a'], length: pieceLength + 10, firstPiece: 0, numPieces: 2 },
      { path: ['empty'], length: 0, firstPiece: 2, numPieces: 0 },
      { path: ['b'], length: 2 * pieceLength - 5, firstPiece: 2, numPieces: 2 },
    ],
  } as unknown as Metainfo;
  const g = new PackageGeometry(meta);
  expect([0, 1, 2, 3].map((i) => g.pieceSize(i))).toEqual([pieceLength, 10, pieceLength, pieceLength - 5]);
  expect(g.wireTotalLength).toBe(3 * pieceLength + pieceLength - 5);
  expect(g.totalBytes).toBe(3 * pieceLength + 5);
  expect(g.blockCount(1)).toBe(1);
  expect(g.blockLength(3, 3)).toBe(BLOCK_SIZE - 5);
  expect(g.blockKey(2, 1)).toBe(9);
});
