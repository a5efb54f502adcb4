import type { Stats } from 'node:fs';
import { type FileHandle, lstat, open, opendir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { PackError, ShoalError } from '../errors';
import { BLOCK_SIZE, FileMerkleHasher, blockHashes } from '../merkle';
import { type Metainfo, type PackageFileInput, buildMetainfo, defaultPieceLength } from '../metainfo';
import { checkComponent } from '../paths';
import { BlockHashPool, sharedBuffer } from './hash-pool';

export interface PackProgress {
  bytesDone: number;
  bytesTotal: number;
  /** Path of the file being hashed, relative to the package root. */
  file: string;
}

export interface CreatePackageOptions {
  /** Power of two >= 16 KiB; defaults to `defaultPieceLength(total size)`. */
  pieceLength?: number;
  /** Fleet CA certificate (PEM), stored as `info.ssl-cert`. */
  sslCert?: string;
  urlList?: string[];
  createdBy?: string;
  creationDate?: number;
  onProgress?: (progress: PackProgress) => void;
  /** Bytes read per call, a multiple of 16 KiB; max(2, 2 x threads) such buffers are in use. */
  readChunkSize?: number;
  /** Worker threads hashing blocks; 0 hashes on the calling thread. Default: cores, at most 4. */
  hashThreads?: number;
}

interface SourceFile {
  absolute: string;
  path: string[];
  length: number;
  executable: boolean;
}

const DEFAULT_READ_CHUNK = 4 * 1024 * 1024;
/** Below this, starting workers costs more than it saves. */
const MIN_BYTES_FOR_THREADS = 16 * 1024 * 1024;

function defaultHashThreads(): number {
  return Math.min(availableParallelism(), 4);
}

/**
 * Hashes a file or a folder into v2-only metainfo, streaming: memory stays at two read buffers
 * plus 32 bytes per piece, whatever the input size.
 */
export async function createPackage(
  inputPath: string,
  options: CreatePackageOptions = {},
): Promise<{ bytes: Buffer; metainfo: Metainfo }> {
  const rootPath = resolve(inputPath);
  const name = basename(rootPath);
  try {
    checkComponent(name, 'name');
  } catch (err) {
    throw new PackError('PACK_BAD_OPTION', `cannot name a package after this path: ${(err as Error).message}`, inputPath);
  }
  const rootStat = await lstatOrThrow(rootPath, inputPath);
  const sources: SourceFile[] = [];
  if (rootStat.isDirectory()) {
    await collect(rootPath, [], sources);
  } else if (rootStat.isFile()) {
    sources.push({ absolute: rootPath, path: [name], length: rootStat.size, executable: (rootStat.mode & 0o111) !== 0 });
  } else {
    throw new PackError('PACK_UNSUPPORTED_FILE', describeKind(rootStat), inputPath);
  }
  if (sources.length === 0) throw new PackError('PACK_EMPTY', 'contains no files', inputPath);

  const bytesTotal = sources.reduce((sum, s) => sum + s.length, 0);
  const pieceLength = options.pieceLength ?? defaultPieceLength(bytesTotal);
  const chunkSize = options.readChunkSize ?? DEFAULT_READ_CHUNK;
  if (chunkSize < BLOCK_SIZE || chunkSize % BLOCK_SIZE !== 0) {
    throw new PackError('PACK_BAD_OPTION', `read chunk size ${chunkSize} must be a positive multiple of ${BLOCK_SIZE}`);
  }
  const threads = bytesTotal < MIN_BYTES_FOR_THREADS ? 0 : (options.hashThreads ?? defaultHashThreads());
  const pool = threads > 0 ? new BlockHashPool(threads) : undefined;
  const buffers = Array.from({ length: Math.max(2, 2 * threads) }, () => sharedBuffer(chunkSize));
  let bytesDone = 0;
  const files: PackageFileInput[] = [];
  try {
    for (const source of sources) {
      const tree = newHasher(pieceLength);
      const display = source.path.join('/');
      await hashFile(source, buffers, pool ?? CALLING_THREAD, tree, (n) => {
        bytesDone += n;
        options.onProgress?.({ bytesDone, bytesTotal, file: display });
      });
      const digest = tree.digest();
      files.push({
      path: source.path,
        length: digest.length,
        ...(digest.piecesRoot ? { piecesRoot: digest.piecesRoot } : {}),
        ...(digest.pieceLayer ? { pieceLayer: digest.pieceLayer } : {}),
        executable: source.executable,
      });
    }
  } finally {
    await pool?.close();
  }
  return buildMetainfo({
    name,
    pieceLength,
    files,
    ...(options.sslCert !== undefined ? { sslCert: options.sslCert } : {}),
    ...(options.urlList ? { urlList: options.urlList } : {}),
    ...(options.createdBy !== undefined ? { createdBy: options.createdBy } : {}),
    ...(options.creationDate !== undefined ? { creationDate: options.creationDate } : {}),
  });
}

function newHasher(pieceLength: number): FileMerkleHasher {
  try {
    return new FileMerkleHasher(pieceLength);
  } catch (err) {
    throw new PackError('PACK_BAD_OPTION', `piece length ${pieceLength} must be a power of two >= 16384`, undefined, { cause: err });
  }
}

async function collect(dir: string, prefix: string[], out: SourceFile[]): Promise<void> {
  const names: string[] = [];
  try {
    for await (const entry of await opendir(dir)) names.push(entry.name);
  } catch (err) {
    throw ioError(err, dir);
  }
  // File-tree order (UTF-8 byte order), so progress and errors follow the package layout.
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const entryName of names) {
    const absolute = join(dir, entryName);
    const path = [...prefix, entryName];
    try {
      checkComponent(entryName, path.join('/'));
    } catch (err) {
      throw new PackError('PACK_UNSUPPORTED_FILE', (err as ShoalError).message, absolute);
    }
    const stat = await lstatOrThrow(absolute, absolute);
    if (stat.isDirectory()) await collect(absolute, path, out);
    else if (stat.isFile()) out.push({ absolute, path, length: stat.size, executable: (stat.mode & 0o111) !== 0 });
    else throw new PackError('PACK_UNSUPPORTED_FILE', describeKind(stat), absolute);
  }
}

function describeKind(stat: { isSymbolicLink(): boolean }): string {
  return stat.isSymbolicLink()
    ? 'symbolic links are not supported in packages; copy the target in or remove the link'
    : 'only regular files and directories can be packed';
}

async function lstatOrThrow(path: string, shown: string): Promise<Stats> {
  try {
    return await lstat(path);
  } catch (err) {
    throw ioError(err, shown);
  }
}

export function ioError(err: unknown, path: string): PackError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new PackError('PACK_NOT_FOUND', 'no such file or directory', path, { cause: err });
  return new PackError('PACK_IO', (err as Error).message, path, { cause: err });
}

/** Turns chunks of a file into leaf hashes; may work off the calling thread. */
interface BlockHasher {
  hashBlocks(chunk: Buffer): Promise<Buffer>;
}

/**
 * Hashes on the calling thread, one macrotask later: by then the next read is already in flight
 * on libuv's thread pool, so reading and hashing still overlap.
 */
const CALLING_THREAD: BlockHasher = {
  hashBlocks: (chunk) => new Promise((resolve) => setImmediate(() => resolve(blockHashes(chunk)))),
};

/**
 * Streams one file through `hasher`: chunks are read ahead into `buffers` while earlier ones are
 * hashed, and leaf hashes are folded into the merkle tree in file order.
 */
async function hashFile(
  source: SourceFile,
  buffers: readonly Buffer[],
  hasher: BlockHasher,
  tree: FileMerkleHasher,
  onBytes: (n: number) => void,
): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(source.absolute, 'r');
  } catch (err) {
    throw ioError(err, source.absolute);
  }
  const inFlight: { hashes: Promise<Buffer>; length: number; buffer: Buffer }[] = [];
  try {
    const free = [...buffers];
    let position = 0;
    while (position < source.length || inFlight.length > 0) {
      while (position < source.length && free.length > 0) {
        const buffer = free.shift() as Buffer;
        const length = Math.min(buffer.length, source.length - position);
        await readFully(handle, buffer, length, position, source.absolute);
        inFlight.push({ hashes: hasher.hashBlocks(buffer.subarray(0, length)), length, buffer });
        position += length;
      }
      const job = inFlight.shift() as (typeof inFlight)[number];
      tree.updateHashed(await job.hashes, job.length);
      free.push(job.buffer);
      onBytes(job.length);
    }
    const after = await handle.stat();
    if (after.size !== source.length) {
      throw new PackError('PACK_FILE_CHANGED', 'file changed size while being hashed', source.absolute);
    }
  } catch (err) {
    // Let every hashing job settle before the buffers are released or reused.
    await Promise.allSettled(inFlight.map((job) => job.hashes));
    if (err instanceof ShoalError) throw err;
    throw ioError(err, source.absolute);
  } finally {
    await handle.close();
  }
}

async function readFully(handle: FileHandle, buffer: Buffer, length: number, position: number, path: string): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new PackError('PACK_FILE_CHANGED', 'file shrank while being hashed', path);
    done += bytesRead;
  }
}
