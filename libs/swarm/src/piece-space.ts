import { BLOCK_SIZE } from '@shoal/torrent';
import { SwarmConfigError } from './errors';

/**
 * The pieces and blocks of one package as the swarm sees them: real piece sizes (v2 files are
 * piece-aligned, so the last piece of every file may be short) cut into 16 KiB blocks. Block keys
 * `index * blocksPerPiece + block` name a block in one number.
 */
export class PieceSpace {
  readonly numPieces: number;
  readonly blocksPerPiece: number;
  readonly totalBytes: number;
  private readonly sizes: Uint32Array;

  constructor(
    readonly pieceLength: number,
    pieceSizes: ArrayLike<number>,
  ) {
    if (!Number.isSafeInteger(pieceLength) || pieceLength < BLOCK_SIZE) {
      throw new SwarmConfigError(`pieceLength must be an integer >= ${BLOCK_SIZE}, not ${String(pieceLength)}`);
    }
    if (pieceSizes.length === 0) throw new SwarmConfigError('a package has at least one piece');
    this.numPieces = pieceSizes.length;
    this.blocksPerPiece = Math.ceil(pieceLength / BLOCK_SIZE);
    this.sizes = new Uint32Array(this.numPieces);
    let total = 0;
    for (let i = 0; i < this.numPieces; i++) {
      const size = pieceSizes[i] as number;
      if (!Number.isSafeInteger(size) || size < 1 || size > pieceLength) {
        throw new SwarmConfigError(`piece ${i} has size ${String(size)}: must be in 1..${pieceLength}`);
      }
      this.sizes[i] = size;
      total += size;
    }
    this.totalBytes = total;
  }

  /** Every piece full length but the last: a single-file package of `totalBytes`. */
  static uniform(totalBytes: number, pieceLength: number): PieceSpace {
    const n = Math.ceil(totalBytes / pieceLength);
    const sizes = new Array<number>(n).fill(pieceLength);
    if (n > 0) sizes[n - 1] = totalBytes - (n - 1) * pieceLength;
    return new PieceSpace(pieceLength, sizes);
  }

  pieceSize(index: number): number {
    return this.sizes[index] ?? 0;
  }

  blockCount(index: number): number {
    return Math.ceil(this.pieceSize(index) / BLOCK_SIZE);
  }

  blockLength(index: number, block: number): number {
    return Math.min(BLOCK_SIZE, this.pieceSize(index) - block * BLOCK_SIZE);
  }

  blockKey(index: number, block: number): number {
    return index * this.blocksPerPiece + block;
  }

  pieceOfKey(key: number): number {
    return Math.floor(key / this.blocksPerPiece);
  }

  /** The block a wire request names, or -1 when it is not one whole aligned block of the piece. */
  blockOf(index: number, begin: number, length: number): number {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.numPieces) return -1;
    const block = begin / BLOCK_SIZE;
    if (!Number.isInteger(block) || block < 0 || block >= this.blockCount(index)) return -1;
    return length === this.blockLength(index, block) ? block : -1;
  }
}
