import { join } from 'node:path';
import type { Metainfo } from '@shoal/torrent';
import { isReuseSourceError } from './errors';
import type { AdoptSource, PackageStore } from './package-store';

/** A package this machine already holds whole, whose files may be reused by another package. */
export interface HeldPackage {
  metainfo: Metainfo;
  /**
   * Its files on disk as `verifyPackageData` wants them: the single file, or the package folder.
   * For a package finished in a store, `finishedPackagePath(storeRoot, metainfo)`.
   */
  packagePath: string;
}

/** A held file with the same pieces root and length as a file of the target package. */
export interface ReuseSource extends AdoptSource {
  /** The held package it belongs to, and its path there (for logs). */
  infoHashHex: string;
  filePath: string[];
}

export interface ReusableFile {
  /** Position of the file in the target's `files`. */
  fileIndex: number;
  /** Every held copy, in the order the packages were given: try the next when one fails. */
  sources: ReuseSource[];
}

/**
 * The target's files that held packages already have. A file's pieces root is the merkle root of
 * its content (independent of piece length and path): equal roots and lengths mean the same
 * bytes, so a file renamed or moved between versions is still found. Empty files are left out
 * (they have no content to copy), and so is the target itself. Nothing is read from disk: the
 * store checks and verifies each source when it adopts it.
 */
export function findReusableFiles(target: Metainfo, held: readonly HeldPackage[]): ReusableFile[] {
  const byContent = new Map<string, ReuseSource[]>();
  const seen = new Set<string>();
  for (const pkg of held) {
    if (pkg.metainfo.infoHash.equals(target.infoHash)) continue;
    const infoHashHex = pkg.metainfo.infoHash.toString('hex');
    for (const file of pkg.metainfo.files) {
      if (!file.piecesRoot) continue;
      const path = pkg.metainfo.singleFile ? pkg.packagePath : join(pkg.packagePath, ...file.path);
      if (seen.has(path)) continue;
      seen.add(path);
      const key = contentKey(file.piecesRoot, file.length);
      const list = byContent.get(key) ?? [];
      list.push({ path, piecesRoot: file.piecesRoot, length: file.length, infoHashHex, filePath: file.path });
      byContent.set(key, list);
    }
  }
  const out: ReusableFile[] = [];
  target.files.forEach((file, fileIndex) => {
    const sources = file.piecesRoot && byContent.get(contentKey(file.piecesRoot, file.length));
    if (sources) out.push({ fileIndex, sources: [...sources] });
  });
  return out;
}

function contentKey(piecesRoot: Buffer, length: number): string {
  return `${piecesRoot.toString('hex')}:${length}`;
}

/** What `reuseHeldFiles` did. */
export interface ReuseReport {
  /** Target files some held package has. */
  filesFound: number;
  /** Of those, files now wholly verified (before or by this call). */
  filesComplete: number;
  piecesAdopted: number;
  bytesAdopted: number;
  /** Pieces read from a source that did not verify (they are fetched unless another copy had them). */
  piecesRejected: number;
  /** Sources that could not be used at all: missing, another length, unreadable. */
  failures: { fileIndex: number; path: string; code: string; message: string }[];
}

/**
 * Adopts every target file that `held` packages have into `store`, trying each file's sources in
 * turn until the file is whole. A source at fault is noted in `failures` and skipped; a failure
 * of the store itself (disk full, closed) is thrown, with everything adopted so far kept. Call it
 * before handing the store to a download session, which reads the store's bitfield when it starts.
 */
export async function reuseHeldFiles(store: PackageStore, held: readonly HeldPackage[]): Promise<ReuseReport> {
  const found = findReusableFiles(store.metainfo, held);
  const report: ReuseReport = { filesFound: found.length, filesComplete: 0, piecesAdopted: 0, bytesAdopted: 0, piecesRejected: 0, failures: [] };
  for (const { fileIndex, sources } of found) {
    for (const source of sources) {
      try {
        const result = await store.adoptFile(fileIndex, source);
        report.piecesAdopted += result.adopted;
        report.bytesAdopted += result.adoptedBytes;
        report.piecesRejected += result.rejected;
        if (result.alreadyVerified + result.adopted === result.pieces) {
          report.filesComplete++;
          break;
        }
      } catch (err) {
        if (!isReuseSourceError(err)) throw err;
        report.failures.push({ fileIndex, path: source.path, code: err.code, message: err.message });
      }
    }
  }
  return report;
}
