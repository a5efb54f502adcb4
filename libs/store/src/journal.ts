import { crc32 } from 'node:zlib';

/**
 * The resume journal: an append-only file of fixed-size records, one per event of one piece.
 *
 * Header (64 bytes, written once, atomically, when the partial folder is created):
 *
 *     0  "SHOALJNL"         magic
 *     8  u32 version = 1
 *    12  u32 record size = 12
 *    16  u32 piece length
 *    20  u32 number of pieces
 *    24  32-byte info-hash
 *    56  u32 reserved = 0
 *    60  u32 CRC-32 of bytes 0..59
 *
 * Record (12 bytes, big-endian):
 *
 *     0  u32 piece index
 *     4  u32 kind: 1 WRITTEN, 2 DURABLE, 3 DROPPED
 *     8  u32 CRC-32 of (info-hash, bytes 0..7)
 *
 * WRITTEN is appended (without fsync) as soon as a verified piece's data write returned, so a
 * process killed right after still finds it: its data is in the page cache, and the next open
 * re-hashes it before trusting it. DURABLE is appended only after the piece's file was
 * fdatasync'd, and the journal is fdatasync'd after each batch: the next open trusts it without
 * reading the data. DROPPED withdraws both (data found damaged, or lost with a truncated file).
 *
 * Every record stands alone: the CRC binds it to this package, so a torn or garbage record (a
 * crash in the middle of an append, a block of zeros after a power loss) is skipped and the
 * records around it are kept. Records are applied in file order.
 */
export const JOURNAL_MAGIC = Buffer.from('SHOALJNL', 'latin1');
export const JOURNAL_VERSION = 1;
export const JOURNAL_HEADER_SIZE = 64;
export const JOURNAL_RECORD_SIZE = 12;

export const RECORD_WRITTEN = 1;
export const RECORD_DURABLE = 2;
export const RECORD_DROPPED = 3;
export type RecordKind = typeof RECORD_WRITTEN | typeof RECORD_DURABLE | typeof RECORD_DROPPED;

/** What the journal says about a piece after replay. */
export const PIECE_UNKNOWN = 0;
export const PIECE_WRITTEN = 1;
export const PIECE_DURABLE = 2;

export interface JournalIdentity {
  infoHash: Buffer;
  pieceLength: number;
  numPieces: number;
}

export function encodeHeader(id: JournalIdentity): Buffer {
  const header = Buffer.alloc(JOURNAL_HEADER_SIZE);
  JOURNAL_MAGIC.copy(header, 0);
  header.writeUInt32BE(JOURNAL_VERSION, 8);
  header.writeUInt32BE(JOURNAL_RECORD_SIZE, 12);
  header.writeUInt32BE(id.pieceLength, 16);
  header.writeUInt32BE(id.numPieces, 20);
  id.infoHash.copy(header, 24);
  header.writeUInt32BE(crc32(header.subarray(0, 60)), 60);
  return header;
}

export function headerMatches(header: Buffer, id: JournalIdentity): boolean {
  return header.length >= JOURNAL_HEADER_SIZE && header.subarray(0, JOURNAL_HEADER_SIZE).equals(encodeHeader(id));
}

/** The CRC state after the info-hash: every record's checksum starts from it. */
export function recordSeed(infoHash: Buffer): number {
  return crc32(infoHash);
}

export function encodeRecords(seed: number, kind: RecordKind, indices: readonly number[]): Buffer {
  const out = Buffer.alloc(indices.length * JOURNAL_RECORD_SIZE);
  indices.forEach((index, i) => {
    const at = i * JOURNAL_RECORD_SIZE;
    out.writeUInt32BE(index, at);
    out.writeUInt32BE(kind, at + 4);
    out.writeUInt32BE(crc32(out.subarray(at, at + 8), seed), at + 8);
  });
  return out;
}

/** Piece states rebuilt from records; feed whole records in file order. */
export class JournalReplay {
  /** PIECE_UNKNOWN, PIECE_WRITTEN or PIECE_DURABLE per piece. */
  readonly state: Uint8Array;
  /** Records with a good checksum. */
  records = 0;
  /** Records skipped: bad checksum, unknown kind, or an index past the last piece. */
  badRecords = 0;

  constructor(
    private readonly seed: number,
    readonly numPieces: number,
  ) {
    this.state = new Uint8Array(numPieces);
  }

  apply(chunk: Buffer): void {
    for (let at = 0; at + JOURNAL_RECORD_SIZE <= chunk.length; at += JOURNAL_RECORD_SIZE) {
      const index = chunk.readUInt32BE(at);
      const kind = chunk.readUInt32BE(at + 4);
      const sum = chunk.readUInt32BE(at + 8);
      if (sum !== crc32(chunk.subarray(at, at + 8), this.seed) || index >= this.numPieces) {
        this.badRecords++;
        continue;
      }
      if (kind === RECORD_WRITTEN) {
        if (this.state[index] !== PIECE_DURABLE) this.state[index] = PIECE_WRITTEN;
      } else if (kind === RECORD_DURABLE) {
        this.state[index] = PIECE_DURABLE;
      } else if (kind === RECORD_DROPPED) {
        this.state[index] = PIECE_UNKNOWN;
      } else {
        this.badRecords++;
        continue;
      }
      this.records++;
    }
  }
}
