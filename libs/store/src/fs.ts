import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, chmod, copyFile, mkdir, open, opendir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * The store's only I/O dependency. `nodeFileSystem` is the real one; tests wrap it to inject
 * faults (a failing write, a rename that never happens). Methods throw Node errno errors
 * (`err.code` = 'ENOSPC', 'EACCES', ...); the store turns them into StoreErrors.
 */
export interface FileSystem {
  /** 'r' read only; 'r+' read-write, must exist; 'w+' create or truncate; 'wx' create, must not exist. */
  open(path: string, flags: 'r' | 'r+' | 'w+' | 'wx'): Promise<StoreFile>;
  /** undefined when nothing is there. */
  stat(path: string): Promise<FileStat | undefined>;
  /** Creates a folder and its parents; no error if it exists. */
  mkdir(path: string): Promise<void>;
  /** Entries of a folder, without `.` and `..`. */
  list(path: string): Promise<DirEntry[]>;
  rename(from: string, to: string): Promise<void>;
  /** Removes a file or a folder tree; no error if nothing is there. */
  remove(path: string): Promise<void>;
  /** fsync of a folder, so entries created or renamed in it survive a power loss. */
  syncDir(path: string): Promise<void>;
  /**
   * Replaces the bytes of the existing file `to` with those of `from`, in place: `to` keeps its
   * inode (handles open on it stay valid) and its mode. Shares extents where the filesystem can
   * (reflink on XFS, btrfs), copies inside the kernel otherwise. Nothing is synced.
   */
  copyInto(from: string, to: string): Promise<void>;
}

export interface StoreFile {
  /** Positional read; returns the bytes read (fewer at end of file). */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** Positional write; returns the bytes written (may be fewer: callers loop). */
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  truncate(length: number): Promise<void>;
  /** fdatasync: the data (and the size) reach the disk. */
  datasync(): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface FileStat {
  size: number;
  isFile: boolean;
  isDirectory: boolean;
  mtimeMs: number;
}

export interface DirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
}

class NodeFile implements StoreFile {
  constructor(private readonly handle: FileHandle) {}

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    return (await this.handle.read(buffer, offset, length, position)).bytesRead;
  }

  async write(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    return (await this.handle.write(buffer, offset, length, position)).bytesWritten;
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

export const nodeFileSystem: FileSystem = {
  async open(path, flags) {
    return new NodeFile(await open(path, flags, 0o644));
  },
  async stat(path) {
    try {
      const s = await stat(path);
      return { size: s.size, isFile: s.isFile(), isDirectory: s.isDirectory(), mtimeMs: s.mtimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  async mkdir(path) {
    await mkdir(path, { recursive: true });
  },
  async list(path) {
    const out: DirEntry[] = [];
    for await (const entry of await opendir(path)) {
      out.push({ name: entry.name, isFile: entry.isFile(), isDirectory: entry.isDirectory() });
    }
    return out;
  },
  rename(from, to) {
    return rename(from, to);
  },
  remove(path) {
    return rm(path, { recursive: true, force: true });
  },
  async syncDir(path) {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async copyInto(from, to) {
    const { mode } = await stat(to);
    // libuv truncates and rewrites an existing destination (same inode), then gives it the
    // source's mode: a read-only source would leave a data file the store cannot reopen 'r+'.
    try {
      await copyFile(from, to, constants.COPYFILE_FICLONE);
    } finally {
      await chmod(to, mode & 0o7777);
    }
  },
};

/** Writes all of `data` at `position`, looping over short writes. */
export async function writeFully(file: StoreFile, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    const n = await file.write(data, done, data.length - done, position + done);
    if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    done += n;
  }
}

/** Reads up to `length` bytes at `position`; returns how many were there (short at end of file). */
export async function readFully(file: StoreFile, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0;
  while (done < length) {
    const n = await file.read(buffer, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Replaces `path` with `data` so that a reader (or a restart after a crash or power loss) sees the
 * old bytes or the new ones, never a mix: temp file in the same folder, fdatasync, rename, folder
 * fsync.
 */
export async function writeFileAtomic(fs: FileSystem, path: string, data: Buffer): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const file = await fs.open(temp, 'wx');
    try {
      await writeFully(file, data, 0);
      await file.datasync();
    } finally {
      await file.close();
    }
    await fs.rename(temp, path);
  } catch (err) {
    await fs.remove(temp).catch(() => undefined);
    throw err;
  }
  await fs.syncDir(dirname(path));
}
