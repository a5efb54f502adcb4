import { constants } from 'node:fs';
import { type FileHandle, open, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { ShoalError } from '@shoal/torrent';

/**
 * - ORIGIN_NOT_FOUND: no servable file at that path (missing, a folder, a dotfile, unsafe or
 *   escaping name); one answer for all of them, so probing says nothing about what exists (404)
 * - ORIGIN_BAD_PATH: the request path is not valid percent-encoding (400)
 * - ORIGIN_BAD_ROOT: the configured folder is not a folder (at start)
 */
export type OriginErrorCode = 'ORIGIN_NOT_FOUND' | 'ORIGIN_BAD_PATH' | 'ORIGIN_BAD_ROOT';

export class OriginError extends ShoalError {
  constructor(
    override readonly code: OriginErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** An open file ready to be served; the caller owns `handle` and must close it (or stream it). */
export interface OriginFile {
  handle: FileHandle;
  size: number;
  lastModified: Date;
  /** Strong entity tag from size and modification time (as nginx builds it). */
  etag: string;
}

const MAX_COMPONENTS = 64;

/**
 * The read-only view of the origin folder: turns a request path into an open regular file below
 * the folder, or refuses. Names are checked component by component after percent-decoding (no
 * empty, `.`-leading, separator- or NUL-bearing components: this covers `..`, `%2e%2e`, `%2f`,
 * absolute paths and dotfiles), then the real path (symbolic links resolved) must still lie below
 * the folder and contain no dotfile; the file is opened at that real path with O_NOFOLLOW and
 * O_NONBLOCK (a FIFO must not hang the request) and must be a regular file.
 */
export class OriginFiles {
  private constructor(readonly root: string) {}

  static async open(dir: string): Promise<OriginFiles> {
    try {
      const root = await realpath(dir);
      if (!(await stat(root)).isDirectory()) throw new Error('not a folder');
      return new OriginFiles(root);
    } catch (cause) {
      throw new OriginError('ORIGIN_BAD_ROOT', `origin folder ${dir}: ${(cause as Error).message}`, { cause });
    }
  }

  /** `encodedPath` is the request path below /origin/, still percent-encoded, without the query. */
  async resolve(encodedPath: string): Promise<OriginFile> {
    const components = encodedPath.split('/').map(decodeComponent);
    const shown = JSON.stringify(encodedPath.slice(0, 200));
    if (components.length > MAX_COMPONENTS || !components.every(isServableName)) throw notFound(shown);
    let real: string;
    try {
      real = await realpath(join(this.root, ...components));
    } catch {
      throw notFound(shown);
    }
    const inside = relative(this.root, real);
    if (!real.startsWith(this.root + sep) || !inside.split(sep).every(isServableName)) throw notFound(shown);
    let handle: FileHandle;
    try {
      handle = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      throw notFound(shown);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw notFound(shown);
      return {
        handle,
        size: info.size,
        lastModified: info.mtime,
        etag: `"${Math.floor(info.mtimeMs).toString(16)}-${info.size.toString(16)}"`,
      };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }
}

function decodeComponent(component: string): string {
  try {
    return decodeURIComponent(component);
  } catch {
    throw new OriginError('ORIGIN_BAD_PATH', `bad percent-encoding in ${JSON.stringify(component.slice(0, 80))}`);
  }
}

function isServableName(name: string): boolean {
  return name !== '' && !name.startsWith('.') && !/[/\\\0]/.test(name);
}

function notFound(shown: string): OriginError {
  return new OriginError('ORIGIN_NOT_FOUND', `no file ${shown} at this origin`);
}
