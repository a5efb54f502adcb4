import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type Metainfo, type PackageFile, createPackage } from '@shoal/torrent';
import { type FileSystem, type StoreFile, nodeFileSystem } from '../src';

export const KiB = 1024;
export const MiB = 1024 * KiB;

const made: string[] = [];

/** A fresh temp folder, removed by `cleanupTemp` (call it from afterAll). */
export async function tempDir(prefix = 'shoal-store-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function cleanupTemp(): Promise<void> {
  await Promise.all(made.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

export interface SourcePackage {
  /** What was packed: the folder, or the single file. */
  source: string;
  metainfo: Metainfo;
  torrent: Buffer;
  /** The bytes of piece `index`, read from the source. */
  piece(index: number): Promise<Buffer>;
  /** Source bytes of each file, by path joined with '/'. */
  files: Map<string, Buffer>;
}

/**
 * Writes `files` (path -> length) of random bytes under `dir/name` and packs them. A single entry
 * whose path has no '/' and `single` set packs the file alone (a single-file package).
 */
export async function makePackage(
  dir: string,
  name: string,
  files: Record<string, number>,
  pieceLength: number,
  options: { single?: boolean } = {},
): Promise<SourcePackage> {
  const folder = join(dir, name);
  const contents = new Map<string, Buffer>();
  for (const [path, length] of Object.entries(files)) {
    const data = randomBytes(length);
    contents.set(path, data);
    const target = options.single ? join(dir, path) : join(folder, ...path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data);
  }
  const source = options.single ? join(dir, Object.keys(files)[0] as string) : folder;
  const { bytes, metainfo } = await createPackage(source, { pieceLength, hashThreads: 0 });
  const piece = async (index: number): Promise<Buffer> => {
    const file = metainfo.files.find((f) => index >= f.firstPiece && index < f.firstPiece + f.numPieces) as PackageFile;
    const data = contents.get(options.single ? (file.path[0] as string) : file.path.join('/')) as Buffer;
    const start = (index - file.firstPiece) * pieceLength;
    return Buffer.from(data.subarray(start, Math.min(start + pieceLength, data.length)));
  };
  return { source, metainfo, torrent: bytes, piece, files: contents };
}

/** Fisher-Yates with Math.random: tests that care about order log or check every order. */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Flips one bit of a file in place. */
export async function flipBit(path: string, position: number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, position);
    byte[0] = (byte[0] as number) ^ 0x10;
    await file.write(byte, 0, 1, position);
  } finally {
    await file.close();
  }
}

export type FaultOp = 'write' | 'datasync' | 'truncate' | 'rename' | 'open' | 'syncDir' | 'copyInto';

/**
 * The real filesystem with a switch: while `fault` returns an errno for an operation on a path,
 * that operation fails with it (as the kernel would), touching nothing. An errno with a
 * '+partial' suffix makes a write put down half its bytes first (a short write, then the error).
 */
export function faultyFs(fault: (op: FaultOp, path: string) => string | undefined): FileSystem {
  const error = (code: string, op: FaultOp, path: string): Error =>
    Object.assign(new Error(`${code}: injected fault, ${op} '${path}'`), { code, syscall: op, path });
  const fail = (op: FaultOp, path: string): void => {
    const code = fault(op, path);
    if (code) throw error(code.replace('+partial', ''), op, path);
  };
  const wrap = (file: StoreFile, path: string): StoreFile => ({
    read: (b, o, l, p) => file.read(b, o, l, p),
    write: async (b, o, l, p) => {
      const code = fault('write', path);
      if (code?.endsWith('+partial') && l > 1) {
        await file.write(b, o, Math.floor(l / 2), p);
        throw error(code.replace('+partial', ''), 'write', path);
      }
      fail('write', path);
      return file.write(b, o, l, p);
    },
    truncate: async (l) => {
      fail('truncate', path);
      return file.truncate(l);
    },
    datasync: async () => {
      fail('datasync', path);
      return file.datasync();
    },
    size: () => file.size(),
    close: () => file.close(),
  });
  return {
    open: async (path, flags) => {
      fail('open', path);
      return wrap(await nodeFileSystem.open(path, flags), path);
    },
    stat: (path) => nodeFileSystem.stat(path),
    mkdir: (path) => nodeFileSystem.mkdir(path),
    list: (path) => nodeFileSystem.list(path),
    rename: async (from, to) => {
      fail('rename', from);
      return nodeFileSystem.rename(from, to);
    },
    remove: (path) => nodeFileSystem.remove(path),
    syncDir: async (path) => {
      fail('syncDir', path);
      return nodeFileSystem.syncDir(path);
    },
    copyInto: async (from, to) => {
      fail('copyInto', to);
      return nodeFileSystem.copyInto(from, to);
    },
  };
}
