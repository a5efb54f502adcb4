import { PieceSpace } from '@shoal/swarm';
import { BLOCK_SIZE, FileHashTree, type Metainfo, type PackageFile, pieceLayerOf } from '@shoal/torrent';

/**
 * Piece and block sizes of a package. v2 files are piece-aligned, so the last piece of every file
 * may be short: `pieceSize` is the real size (what the store hashes and what we request), while
 * `wireTotalLength` is the piece space as libtorrent and PeerConnection see it: every piece full
 * length, the very last one too (libtorrent >= 2.0.4 pads every file of a v2 torrent to a piece
 * boundary, arvidn/libtorrent#6153, and asks for the padding; we answer it with zeros).
 */
export class PackageGeometry {
  readonly numPieces: number;
  readonly pieceLength: number;
  /** Blocks in a full piece: block keys are `index * blocksPerPiece + block`. */
  readonly blocksPerPiece: number;
  readonly wireTotalLength: number;
  /** Sum of the real piece sizes (the package's bytes). */
  readonly totalBytes: number;
  /** The same pieces as the swarm core sees them. */
  readonly space: PieceSpace;
  private readonly sizes: Uint32Array;
  private readonly trees = new Map<string, { file: PackageFile; tree: FileHashTree }>();

  constructor(readonly metainfo: Metainfo) {
    this.numPieces = metainfo.numPieces;
    this.pieceLength = metainfo.pieceLength;
    this.blocksPerPiece = Math.max(1, Math.ceil(metainfo.pieceLength / BLOCK_SIZE));
    this.sizes = new Uint32Array(this.numPieces);
    let total = 0;
    for (const file of metainfo.files) {
      for (let local = 0; local < file.numPieces; local++) {
        const size = Math.min(this.pieceLength, file.length - local * this.pieceLength);
        this.sizes[file.firstPiece + local] = size;
        total += size;
      }
    }
    this.totalBytes = total;
    this.wireTotalLength = this.numPieces * this.pieceLength;
    this.space = new PieceSpace(this.pieceLength, this.sizes);
  }

  /** Real byte length of a piece. */
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

  /** The merkle tree of the file whose pieces root this is (for BEP 52 hash requests). */
  fileByRoot(piecesRoot: Buffer): { file: PackageFile; tree: FileHashTree } | undefined {
    const key = piecesRoot.toString('hex');
    let entry = this.trees.get(key);
    if (!entry) {
      const file = this.metainfo.files.find((f) => f.piecesRoot?.equals(piecesRoot));
      if (!file?.piecesRoot) return undefined;
      entry = { file, tree: new FileHashTree(file.length, this.pieceLength, file.piecesRoot, pieceLayerOf(this.metainfo, file)) };
      this.trees.set(key, entry);
    }
    return entry;
  }

  /** The file a piece belongs to, its merkle tree and the piece's index inside the file. */
  fileOfPiece(index: number): { file: PackageFile; tree: FileHashTree; localPiece: number } | undefined {
    const file = this.metainfo.files.find((f) => f.numPieces > 0 && index >= f.firstPiece && index < f.firstPiece + f.numPieces);
    if (!file?.piecesRoot) return undefined;
    const entry = this.fileByRoot(file.piecesRoot);
    return entry ? { ...entry, localPiece: index - file.firstPiece } : undefined;
  }
}
