import type { HashRequestHeader } from '@shoal/wire';
import type { PackageGeometry } from './geometry';

/** Signals that `hashesFor` needs the leaf hashes of one piece (file-local index). */
class NeedLeaves {
  constructor(readonly piece: number) {}
}

/**
 * Answers a BEP 52 hash request from what we hold: the piece layers (in the metainfo) for requests
 * at or above the piece layer, and the leaf hashes of verified pieces (read from the store) below
 * it. Resolves to the `hashes` payload, or undefined for a hash reject (unknown file, a shape the
 * tree does not allow, a piece we do not hold, a read failure).
 */
export async function answerHashRequest(
  geometry: PackageGeometry,
  request: HashRequestHeader,
  leafHashesOf: (globalPiece: number) => Promise<Buffer> | undefined,
): Promise<Buffer[] | undefined> {
  const entry = geometry.fileByRoot(request.piecesRoot);
  if (!entry) return undefined;
  const { file, tree } = entry;
  const leaves = new Map<number, Buffer>();
  // Each round fetches one more piece's leaves; a request never needs more than the file's pieces.
  for (let round = 0; round <= tree.numPieces; round++) {
    let need: number | undefined;
    try {
      return tree.hashesFor(request, (piece) => {
        const got = leaves.get(piece);
        if (got) return got;
        throw new NeedLeaves(piece);
      });
    } catch (err) {
      if (!(err instanceof NeedLeaves)) return undefined;
      need = err.piece;
    }
    const pending = leafHashesOf(file.firstPiece + need);
    if (!pending) return undefined;
    try {
      leaves.set(need, await pending);
    } catch {
      return undefined;
    }
  }
  return undefined;
}
