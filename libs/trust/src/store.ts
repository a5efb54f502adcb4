import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TrustError } from './errors';

/**
 * Where a TufRepository keeps its files, by name: metadata (`root.json`, `7.targets.json`, ...)
 * and target bytes (`targets/NAME/SHA256.VERSION.torrent`). Names use `/` between components.
 * A write must be atomic: a reader sees the old bytes or the new ones, never a mix.
 */
export interface MetadataStore {
  read(name: string): Promise<Buffer | undefined>;
  write(name: string, bytes: Buffer): Promise<void>;
}

// Components never start with a dot, so `.`, `..` and hidden temp files cannot be named.
const STORE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*(?:\/[A-Za-z0-9][A-Za-z0-9._+-]*)*$/;

/** A MetadataStore in a directory; each write goes to a temp file that is renamed into place. */
export class FileMetadataStore implements MetadataStore {
  constructor(readonly dir: string) {}

  async read(name: string): Promise<Buffer | undefined> {
    try {
      return await readFile(this.pathOf(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async write(name: string, bytes: Buffer): Promise<void> {
    const path = this.pathOf(name);
    await mkdir(dirname(path), { recursive: true });
    const temp = join(dirname(path), `.${randomBytes(8).toString('hex')}.tmp`);
    try {
      const file = await open(temp, 'wx', 0o644);
      try {
        await file.writeFile(bytes);
        // Without the sync, a crash after the rename could leave an empty file under the name.
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  private pathOf(name: string): string {
    if (!STORE_NAME.test(name)) throw new TrustError('TRUST_BAD_STORE_NAME', `not a store name: ${JSON.stringify(name)}`);
    return join(this.dir, ...name.split('/'));
  }
}
