import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import {
  Bitfield,
  JOURNAL_HEADER_SIZE,
  JOURNAL_RECORD_SIZE,
  JournalReplay,
  PIECE_DURABLE,
  PIECE_UNKNOWN,
  PIECE_WRITTEN,
  RECORD_DROPPED,
  RECORD_DURABLE,
  RECORD_WRITTEN,
  StoreError,
  encodeHeader,
  encodeRecords,
  headerMatches,
  recordSeed,
} from '../src';

describe('journal records', () => {
  const infoHash = randomBytes(32);
  const seed = recordSeed(infoHash);

  test('replay applies WRITTEN, DURABLE and DROPPED in order', () => {
    const replay = new JournalReplay(seed, 5);
    replay.apply(
      Buffer.concat([
        encodeRecords(seed, RECORD_WRITTEN, [0, 1, 2, 3]),
        encodeRecords(seed, RECORD_DURABLE, [0, 1]),
        encodeRecords(seed, RECORD_WRITTEN, [1]), // a late WRITTEN does not demote
        encodeRecords(seed, RECORD_DROPPED, [0, 2]),
      ]),
    );
    expect([...replay.state]).toEqual([PIECE_UNKNOWN, PIECE_DURABLE, PIECE_UNKNOWN, PIECE_WRITTEN, PIECE_UNKNOWN]);
    expect(replay.records).toBe(9);
    expect(replay.badRecords).toBe(0);
  });

  test("records of another package, past the last piece, of an unknown kind or with any flipped bit are skipped alone", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 * JOURNAL_RECORD_SIZE * 8 - 1 }), (bit) => {
        const good = encodeRecords(seed, RECORD_DURABLE, [7, 8, 9]);
        good[bit >> 3] = (good[bit >> 3] as number) ^ (1 << (bit & 7));
        const replay = new JournalReplay(seed, 10);
        replay.apply(good);
        expect(replay.badRecords).toBe(1);
        expect(replay.records).toBe(2);
      }),
    );
    const replay = new JournalReplay(seed, 10);
    const unknownKind = encodeRecords(seed, 9 as typeof RECORD_WRITTEN, [1]);
    replay.apply(Buffer.concat([encodeRecords(recordSeed(randomBytes(32)), RECORD_DURABLE, [1]), encodeRecords(seed, RECORD_DURABLE, [10]), unknownKind]));
    expect(replay.badRecords).toBe(3);
    expect([...replay.state].every((s) => s === PIECE_UNKNOWN)).toBe(true);
  });

  test('the header binds the journal to one package', () => {
    const id = { infoHash, pieceLength: 16384, numPieces: 12 };
    const header = encodeHeader(id);
    expect(header.length).toBe(JOURNAL_HEADER_SIZE);
    expect(header.subarray(0, 8).toString()).toBe('SHOALJNL');
    expect(headerMatches(header, id)).toBe(true);
    expect(headerMatches(header, { ...id, numPieces: 13 })).toBe(false);
    expect(headerMatches(header, { ...id, infoHash: randomBytes(32) })).toBe(false);
    expect(headerMatches(header.subarray(0, 63), id)).toBe(false);
  });
});

describe('Bitfield', () => {
  test('BEP 3 order: piece 0 is the high bit of byte 0; spare bits must be zero', () => {
    const bits = new Bitfield(10);
    bits.set(0);
    bits.set(9);
    expect(bits.toBuffer()).toEqual(Buffer.from([0x80, 0x40]));
    expect(bits.count).toBe(2);
    expect(bits.indices()).toEqual([0, 9]);
    expect(bits.missing()).toHaveLength(8);
    expect(bits.get(10)).toBe(false);
    expect(bits.get(-1)).toBe(false);
    expect(() => bits.set(10)).toThrow(StoreError);
    expect(new Bitfield(10, Buffer.from([0xff, 0xc0])).isFull).toBe(true);
    expect(() => new Bitfield(10, Buffer.from([0xff, 0xe0]))).toThrow(/spare bits/);
    expect(() => new Bitfield(10, Buffer.from([0xff]))).toThrow(StoreError);
    const copy = bits.clone();
    copy.set(0, false);
    expect(bits.get(0)).toBe(true);
    expect(copy.count).toBe(1);
  });
});
