import { type FileHandle, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShoalError } from '../errors';
import { FileHashTree } from '../merkle';
import { type Metainfo, type PackageFile, diskPath, pieceLayerOf } from '../metainfo';
import { ioError } from './create';

export type FileStatus = 'ok' | 'missing' | 'wrong-size' | 'corrupt' | 'unreadable';

export interface FileReport {
  /** Path relative to the data location given to `verifyPackageData`. */
  path: string;
  status: FileStatus;
  /** Package-wide indices of the pieces that failed. */
  badPieces: number[];
  detail?: string;
}

export interface VerifyReport {
  ok: boolean;
  files: FileReport[];
  badPieces: number[];
  bytesChecked: number;
}

export interface VerifyProgress {
  bytesDone: number;
  bytesTotal: number;
  file: string;
}

/**
 * Checks data on disk against a package. `dataPath` is what was packed: the file of a
 * single-file package (or the folder holding it), or the package folder.
 */
export async function verifyPackageData(
  meta: Metainfo,
  dataPath: string,
  options: { onProgress?: (p: VerifyProgress) => void } = {},
): Promise<VerifyReport> {
  const root = await locateRoot(meta, dataPath);
  const files: FileReport[] = [];
  let bytesDone = 0;
  const piece = Buffer.allocUnsafe(meta.pieceLength);
  for (const file of meta.files) {
    const absolute = root.isFile ? root.path : join(root.path, ...file.path);
    const shown = diskPath(meta, file).join('/');
    const report = await verifyFile(meta, file, absolute, piece, (n) => {
      bytesDone += n;
      options.onProgress?.({ bytesDone, bytesTotal: meta.totalLength, file: shown });
    });
    files.push({ path: shown, ...report });
  }
  const badPieces = files.flatMap((f) => f.badPieces);
  return { ok: files.every((f) => f.status === 'ok'), files, badPieces, bytesChecked: bytesDone };
}

async function locateRoot(meta: Metainfo, dataPath: string): Promise<{ path: string; isFile: boolean }> {
  let info;
  try {
    info = await stat(dataPath);
  } catch (err) {
    throw ioError(err, dataPath);
  }
  if (meta.singleFile && info.isFile()) return { path: dataPath, isFile: true };
  if (!info.isDirectory()) {
    throw new ShoalError('VERIFY_NOT_A_FOLDER', `${dataPath}: is not a folder, and the package holds several files`);
  }
  return { path: dataPath, isFile: false };
}

function allPieces(file: PackageFile): number[] {
  return Array.from({ length: file.numPieces }, (_, i) => file.firstPiece + i);
}

async function verifyFile(
  meta: Metainfo,
  file: PackageFile,
  absolute: string,
  piece: Buffer,
  onBytes: (n: number) => void,
): Promise<Omit<FileReport, 'path'>> {
  let handle: FileHandle;
  try {
    handle = await open(absolute, 'r');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return {
      status: missing ? 'missing' : 'unreadable',
      badPieces: allPieces(file),
      ...(missing ? {} : { detail: (err as Error).message }),
    };
  }
  try {
    const { size } = await handle.stat();
    if (!file.piecesRoot) {
      return size === 0 ? { status: 'ok', badPieces: [] } : { status: 'wrong-size', badPieces: [], detail: `${size} bytes, expected 0` };
    }
    const tree = new FileHashTree(file.length, meta.pieceLength, file.piecesRoot, pieceLayerOf(meta, file));
    const bad: number[] = [];
    for (let i = 0; i < file.numPieces; i++) {
      const length = tree.pieceSize(i);
      const { bytesRead } = await handle.read(piece, 0, length, i * meta.pieceLength);
      onBytes(length);
      if (bytesRead !== length || !tree.verifyPiece(i, piece.subarray(0, length))) bad.push(file.firstPiece + i);
    }
    if (size !== file.length) {
      return { status: 'wrong-size', badPieces: bad, detail: `${size} bytes, expected ${file.length}` };
    }
    return { status: bad.length === 0 ? 'ok' : 'corrupt', badPieces: bad };
  } catch (err) {
    if (err instanceof ShoalError) throw err;
    throw ioError(err, absolute);
  } finally {
    await handle.close();
  }
}
