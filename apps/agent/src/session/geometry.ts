import { PieceSpace } from '@shoal/swarm';
import { FileHashTree, type Metainfo, type PackageFile, pieceLayerOf } from '@shoal/torrent';

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
  readonly wireTotalLength: number;
  /** Real piece and block sizes, as the swarm core sees them. */
  readonly space: PieceSpace;
  private readonly trees = new Map<string, { file: PackageFile; tree: FileHashTree }>();

  constructor(readonly metainfo: Metainfo) {
    this.numPieces = metainfo.numPieces;
    this.pieceLength = metainfo.pieceLength;
    const sizes = new Uint32Array(this.numPieces);
    for (const file of metainfo.files) {
      for (let local = 0; local < file.numPieces; local++) {
        sizes[file.firstPiece + local] = Math.min(this.pieceLength, file.length - local * this.pieceLength);
      }
    }
    this.wireTotalLength = this.numPieces * this.pieceLength;
    this.space = new PieceSpace(this.pieceLength, sizes);
  }

  /** Real byte length of a piece. */
  pieceSize(index: number): number {
    return this.space.pieceSize(index);
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
