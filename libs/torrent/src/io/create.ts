import type { Stats } from 'node:fs';
import { type FileHandle, lstat, open, opendir } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { PackError, ShoalError } from '../errors';
import { FileMerkleHasher } from '../merkle';
import { type Metainfo, type PackageFileInput, buildMetainfo, defaultPieceLength } from '../metainfo';
import { checkComponent } from '../paths';

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
  /** Bytes read per call; two such buffers are the hasher's whole data footprint. */
  readChunkSize?: number;
}

interface SourceFile {
  absolute: string;
  path: string[];
  length: number;
  executable: boolean;
}

const DEFAULT_READ_CHUNK = 4 * 1024 * 1024;

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
  const buffers = [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)] as const;
  let bytesDone = 0;
  const files: PackageFileInput[] = [];
  for (const source of sources) {
    const hasher = newHasher(pieceLength);
    const display = source.path.join('/');
    await readWhole(source, buffers, (chunk) => {
      hasher.update(chunk);
      bytesDone += chunk.length;
      options.onProgress?.({ bytesDone, bytesTotal, file: display });
    });
    const digest = hasher.digest();
    files.push({
      path: source.path,
      length: digest.length,
      ...(digest.piecesRoot ? { piecesRoot: digest.piecesRoot } : {}),
      ...(digest.pieceLayer ? { pieceLayer: digest.pieceLayer } : {}),
      executable: source.executable,
    });
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

/**
 * Reads a file front to back with two alternating buffers: the next read is in flight on the
 * thread pool while the current chunk is hashed here.
 */
async function readWhole(
  source: SourceFile,
  buffers: readonly [Buffer, Buffer],
  onChunk: (chunk: Buffer) => void,
): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(source.absolute, 'r');
  } catch (err) {
    throw ioError(err, source.absolute);
  }
  try {
    const chunkSize = buffers[0].length;
    const readAt = (which: number, position: number) =>
      handle.read(buffers[which] as Buffer, 0, Math.min(chunkSize, source.length - position), position);
    let position = 0;
    let which = 0;
    let pending = source.length > 0 ? readAt(which, 0) : undefined;
    while (pending) {
      const { bytesRead, buffer } = await pending;
      if (bytesRead === 0) throw new PackError('PACK_FILE_CHANGED', 'file shrank while being hashed', source.absolute);
      position += bytesRead;
      which ^= 1;
      pending = position < source.length ? readAt(which, position) : undefined;
      onChunk(buffer.subarray(0, bytesRead));
    }
    const after = await handle.stat();
    if (after.size !== source.length) {
      throw new PackError('PACK_FILE_CHANGED', 'file changed size while being hashed', source.absolute);
    }
  } catch (err) {
    if (err instanceof ShoalError) throw err;
    throw ioError(err, source.absolute);
  } finally {
    await handle.close();
  }
}
