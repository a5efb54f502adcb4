import { X509Certificate } from 'node:crypto';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DEFAULT_METAINFO_LIMITS, type Metainfo, ShoalError, parseMetainfo } from '@shoal/torrent';

/** Where a command writes: injectable so tests can run commands in-process. */
export interface Output {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WriteStream;
}

export class InputError extends ShoalError {
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super('CLI_BAD_INPUT', `${path}: ${message}`, options);
  }
}

/** Reads and validates a package file, refusing oversized input before reading it. */
export async function readPackage(path: string): Promise<Metainfo> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw new InputError(path, describeFsError(err), { cause: err });
  }
  if (size > DEFAULT_METAINFO_LIMITS.maxInputLength) {
    throw new InputError(path, `${size} bytes is larger than any package file may be (${DEFAULT_METAINFO_LIMITS.maxInputLength})`);
  }
  const bytes = await readFile(path).catch((err: unknown) => {
    throw new InputError(path, describeFsError(err), { cause: err });
  });
  try {
    return parseMetainfo(bytes);
  } catch (err) {
    if (err instanceof ShoalError) throw new InputError(path, `not a valid package: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Reads a CA certificate (PEM) and checks it is one, so a package never carries a wrong anchor. */
export async function readCaCertificate(path: string): Promise<string> {
  const pem = await readFile(path, 'utf8').catch((err: unknown) => {
    throw new InputError(path, describeFsError(err), { cause: err });
  });
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new InputError(path, 'not a PEM certificate', { cause: err });
  }
  if (!cert.ca) throw new InputError(path, `certificate "${cert.subject.replace(/\n/g, ', ')}" is not a CA certificate`);
  return pem;
}

/** Writes a file atomically: a reader sees the old file or the complete new one. */
export async function writeFileAtomic(path: string, data: Uint8Array): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    await writeFile(temporary, data);
    await rename(temporary, path);
  } catch (err) {
    await unlink(temporary).catch(() => undefined);
    throw new InputError(path, describeFsError(err), { cause: err });
  }
}

export function describeFsError(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
      return 'no such file or directory';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory';
    case 'ENOTDIR':
      return 'a parent is not a directory';
    case 'ENOSPC':
      return 'no space left on device';
    default:
      return (err as Error).message;
  }
}
