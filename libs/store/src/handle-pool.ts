import type { FileSystem, StoreFile } from './fs';

interface Entry {
  file: Promise<StoreFile>;
  users: number;
}

/**
 * Open data files, keyed by file number, at most `max` idle ones kept (least recently used closed
 * first), so a package of 100,000 files does not hold 100,000 descriptors. A handle in use is
 * never closed under its user.
 */
export class HandlePool {
  /** Map order is use order: the first entries are the least recently used. */
  private readonly entries = new Map<number, Entry>();

  constructor(
    private readonly fs: FileSystem,
    private readonly max: number,
    private readonly pathOf: (key: number) => string,
  ) {}

  async use<T>(key: number, fn: (file: StoreFile) => Promise<T>): Promise<T> {
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
    } else {
      entry = { file: this.fs.open(this.pathOf(key), 'r+'), users: 0 };
      // A failed open is not cached: the next use tries again.
      entry.file.catch(() => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      });
    }
    this.entries.set(key, entry);
    entry.users++;
    try {
      return await fn(await entry.file);
    } finally {
      entry.users--;
      await this.trim();
    }
  }

  private async trim(): Promise<void> {
    if (this.entries.size <= this.max) return;
    const closing: Promise<void>[] = [];
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.max) break;
      if (entry.users > 0) continue;
      this.entries.delete(key);
      closing.push(close(entry));
    }
    await Promise.all(closing);
  }

  /** Closes every handle; the pool can be used again afterwards (handles reopen). */
  async closeAll(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map(close));
  }
}

async function close(entry: Entry): Promise<void> {
  try {
    await (await entry.file).close();
  } catch {
    // Nothing to close when the open failed; a failed close loses nothing we still need.
  }
}
