import { ShoalError } from '@shoal/torrent';

export type StoreErrorCode =
  /** No space left (ENOSPC) or a disk quota reached (EDQUOT). */
  | 'STORE_DISK_FULL'
  /** Not allowed to write there: EACCES, EPERM, or a read-only filesystem (EROFS). */
  | 'STORE_PERMISSION'
  /** Any other filesystem failure (EIO, ENOENT on a file the store created, ...). */
  | 'STORE_IO'
  /** A piece, block or leaf-hash request for a piece that is not verified: never served. */
  | 'STORE_PIECE_NOT_VERIFIED'
  /** A piece index or a block range outside the package. */
  | 'STORE_BAD_RANGE'
  /** Data that was verified no longer matches on disk (bit rot, outside tampering): dropped. */
  | 'STORE_DATA_DAMAGED'
  /** `finish()` while pieces are missing. */
  | 'STORE_NOT_COMPLETE'
  /** The store folder holds something the store did not put there (a file where a folder goes). */
  | 'STORE_LAYOUT'
  /** The same package is already open in this process. */
  | 'STORE_BUSY'
  | 'STORE_CLOSED'
  | 'STORE_BAD_OPTION'
  | 'STORE_BAD_INFOHASH'
  /** The seed cache was asked to remove a package that is pinned (in use or being installed). */
  | 'STORE_PINNED'
  /** A file offered for reuse (`adoptFile`) is not there, or is not a regular file. */
  | 'STORE_REUSE_MISSING'
  /** A file offered for reuse is not the same file: another pieces root, or another length on disk. */
  | 'STORE_REUSE_MISMATCH'
  /** A file offered for reuse could not be read (or copied from). */
  | 'STORE_REUSE_UNREADABLE';

/** A store operation that failed; `path` names the file or folder at fault when there is one. */
export class StoreError extends ShoalError {
  constructor(
    override readonly code: StoreErrorCode,
    message: string,
    readonly path?: string,
    options?: { cause?: unknown },
  ) {
    super(code, path ? `${path}: ${message}` : message, options);
  }
}

const DISK_FULL = new Set(['ENOSPC', 'EDQUOT']);
const PERMISSION = new Set(['EACCES', 'EPERM', 'EROFS']);

/**
 * Maps a filesystem error to a StoreError with a one-line message naming `path` and what the store
 * was doing. StoreErrors pass through unchanged.
 */
export function fsError(err: unknown, path: string, action: string): StoreError {
  if (err instanceof StoreError) return err;
  const errno = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  const detail = oneLine(err instanceof Error ? err.message : String(err));
  if (DISK_FULL.has(errno)) {
    const what = errno === 'EDQUOT' ? 'disk quota exceeded' : 'no space left on device';
    return new StoreError('STORE_DISK_FULL', `${what} while ${action} (${errno})`, path, { cause: err });
  }
  if (PERMISSION.has(errno)) {
    const what = errno === 'EROFS' ? 'read-only filesystem' : 'permission denied';
    return new StoreError('STORE_PERMISSION', `${what} while ${action} (${errno})`, path, { cause: err });
  }
  return new StoreError('STORE_IO', `${action} failed: ${detail}`, path, { cause: err });
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** The file offered for reuse was at fault, not this store: try another copy or fetch the file. */
export function isReuseSourceError(err: unknown): err is StoreError {
  return err instanceof StoreError && (err.code === 'STORE_REUSE_MISSING' || err.code === 'STORE_REUSE_MISMATCH' || err.code === 'STORE_REUSE_UNREADABLE');
}
