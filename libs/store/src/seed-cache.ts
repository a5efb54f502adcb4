import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { StoreError, fsError } from './errors';
import { type FileSystem, nodeFileSystem, readFully, writeFileAtomic } from './fs';
import { COMPLETE_MARKER } from './package-store';

export interface SeedCacheOptions {
  /** The store root shared with PackageStore: the cache manages `<root>/complete/`. */
  root: string;
  /** Bytes the finished packages may use together; `evict` brings the total back under it. */
  quotaBytes: number;
  /** Clock in milliseconds, for packages found on disk without a recorded use. Default Date.now. */
  now?: () => number;
  fs?: FileSystem;
}

export interface CacheEntry {
  infoHash: string;
  /** Bytes of the package folder (data, journal, marker). */
  bytes: number;
  lastUsed: number;
  pinned: boolean;
}

export interface EvictResult {
  /** Info-hashes removed, least recently used first. */
  removed: string[];
  freedBytes: number;
  totalBytes: number;
  /** Still above quota: everything left is pinned. */
  overQuota: boolean;
}

interface StateFile {
  version: 1;
  entries: Record<string, { lastUsed: number; bytes: number }>;
}

const STATE_FILE = 'seed-cache.json';
const INFOHASH_HEX = /^[0-9a-f]{64}$/;

class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * Finished packages kept for seeding, under a byte quota. Packages are removed least recently used
 * first, never while pinned (open for seeding, being installed). The LRU order survives restarts
 * in `<root>/seed-cache.json`, replaced atomically on `save` and `evict`; `touch` only updates
 * memory, so it is cheap enough to call on every use.
 *
 * Removal is a rename into `<root>/trash/` followed by a delete: a crash never leaves half a
 * package under `complete/` (the trash is emptied on the next open).
 */
export class SeedCache {
  readonly root: string;
  private readonly fs: FileSystem;
  private readonly now: () => number;
  private readonly entries = new Map<string, { lastUsed: number; bytes: number }>();
  private readonly pins = new Map<string, number>();
  private readonly lock = new Mutex();
  private quota: number;
  /** The state file was unreadable and was rebuilt from the folders on disk. */
  stateRecovered = false;

  private constructor(options: SeedCacheOptions) {
    this.root = resolve(options.root);
    this.fs = options.fs ?? nodeFileSystem;
    this.now = options.now ?? Date.now;
    this.quota = options.quotaBytes;
  }

  static async open(options: SeedCacheOptions): Promise<SeedCache> {
    if (typeof options.root !== 'string' || options.root.length === 0) {
      throw new StoreError('STORE_BAD_OPTION', 'root must be a folder path');
    }
    checkQuota(options.quotaBytes);
    const cache = new SeedCache(options);
    await cache.step(cache.root, 'creating the store folders', async () => {
      await cache.fs.mkdir(cache.completeRoot);
      await cache.fs.remove(cache.trashRoot);
    });
    await cache.loadState();
    await cache.refresh();
    return cache;
  }

  private get completeRoot(): string {
    return join(this.root, 'complete');
  }

  private get trashRoot(): string {
    return join(this.root, 'trash');
  }

  private get statePath(): string {
    return join(this.root, STATE_FILE);
  }

  get quotaBytes(): number {
    return this.quota;
  }

  set quotaBytes(bytes: number) {
    checkQuota(bytes);
    this.quota = bytes;
  }

  get totalBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.bytes;
    return total;
  }

  /** Known packages, least recently used first. */
  list(): CacheEntry[] {
    return [...this.entries]
      .map(([infoHash, e]) => ({ infoHash, bytes: e.bytes, lastUsed: e.lastUsed, pinned: this.isPinned(infoHash) }))
      .sort((a, b) => a.lastUsed - b.lastUsed || (a.infoHash < b.infoHash ? -1 : 1));
  }

  /** Records a use. A package not seen yet is tracked from now on (its size is read on `refresh`). */
  touch(infoHash: Buffer | string, now: number): void {
    const hex = toHex(infoHash);
    const entry = this.entries.get(hex);
    if (entry) entry.lastUsed = Math.max(entry.lastUsed, now);
    else this.entries.set(hex, { lastUsed: now, bytes: -1 });
  }

  /** Protects a package from eviction until as many `unpin` calls. */
  pin(infoHash: Buffer | string): void {
    const hex = toHex(infoHash);
    this.pins.set(hex, (this.pins.get(hex) ?? 0) + 1);
  }

  unpin(infoHash: Buffer | string): void {
    const hex = toHex(infoHash);
    const count = this.pins.get(hex) ?? 0;
    if (count <= 1) this.pins.delete(hex);
    else this.pins.set(hex, count - 1);
  }

  isPinned(infoHash: Buffer | string): boolean {
    return (this.pins.get(toHex(infoHash)) ?? 0) > 0;
  }

  /**
   * Syncs with `complete/`: packages that appeared are added (last use = their completion time),
   * packages that left are forgotten.
   */
  refresh(): Promise<void> {
    return this.lock.run(() => this.refreshLocked());
  }

  /** Removes unpinned packages, least recently used first, until the total is within quota. */
  evict(now: number): Promise<EvictResult> {
    return this.lock.run(async () => {
      await this.refreshLocked(now);
      let total = this.totalBytes;
      const removed: string[] = [];
      let freedBytes = 0;
      for (const entry of this.list()) {
        if (total <= this.quota) break;
        if (entry.pinned) continue;
        await this.removeLocked(entry.infoHash);
        removed.push(entry.infoHash);
        freedBytes += entry.bytes;
        total -= entry.bytes;
      }
      await this.saveLocked();
      return { removed, freedBytes, totalBytes: total, overQuota: total > this.quota };
    });
  }

  /** Removes one package now; refuses a pinned one (STORE_PINNED). False when it was not there. */
  remove(infoHash: Buffer | string): Promise<boolean> {
    const hex = toHex(infoHash);
    return this.lock.run(async () => {
      if (this.isPinned(hex)) throw new StoreError('STORE_PINNED', `package ${hex} is pinned (in use)`, join(this.completeRoot, hex));
      const there = await this.removeLocked(hex);
      await this.saveLocked();
      return there;
    });
  }

  /** Writes the LRU state (atomically). */
  save(): Promise<void> {
    return this.lock.run(() => this.saveLocked());
  }

  private async removeLocked(hex: string): Promise<boolean> {
    const from = join(this.completeRoot, hex);
    const to = join(this.trashRoot, `${hex}.${randomBytes(6).toString('hex')}`);
    let there = true;
    await this.step(from, 'removing a cached package', async () => {
      await this.fs.mkdir(this.trashRoot);
      try {
        await this.fs.rename(from, to);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        there = false;
      }
      this.entries.delete(hex);
      if (there) {
        await this.fs.syncDir(this.completeRoot);
        await this.fs.remove(to);
      }
    });
    return there;
  }

  private async refreshLocked(now = this.now()): Promise<void> {
    const listed = await this.step(this.completeRoot, 'listing finished packages', () => this.fs.list(this.completeRoot));
    const present = new Set(listed.filter((e) => e.isDirectory && INFOHASH_HEX.test(e.name)).map((e) => e.name));
    for (const hex of [...this.entries.keys()]) if (!present.has(hex)) this.entries.delete(hex);
    for (const hex of present) {
      const known = this.entries.get(hex);
      if (known && known.bytes >= 0) continue;
      const folder = join(this.completeRoot, hex);
      const bytes = await this.step(folder, 'measuring a finished package', () => this.sizeOf(folder));
      const lastUsed = known ? known.lastUsed : ((await this.completedAt(folder)) ?? now);
      this.entries.set(hex, { lastUsed, bytes });
    }
  }

  private async sizeOf(path: string): Promise<number> {
    let total = 0;
    for (const entry of await this.fs.list(path)) {
      const child = join(path, entry.name);
      if (entry.isDirectory) total += await this.sizeOf(child);
      else total += (await this.fs.stat(child))?.size ?? 0;
    }
    return total;
  }

  private async completedAt(folder: string): Promise<number | undefined> {
    try {
      const file = await this.fs.open(join(folder, COMPLETE_MARKER), 'r');
      try {
        const buffer = Buffer.alloc(64 * 1024);
        const n = await readFully(file, buffer, buffer.length, 0);
        const at = Date.parse((JSON.parse(buffer.subarray(0, n).toString('utf8')) as { completedAt?: string }).completedAt ?? '');
        return Number.isFinite(at) ? at : undefined;
      } finally {
        await file.close();
      }
    } catch {
      return undefined;
    }
  }

  private async loadState(): Promise<void> {
    let text: string;
    try {
      const file = await this.fs.open(this.statePath, 'r');
      try {
        const size = await file.size();
        const buffer = Buffer.alloc(size);
        await readFully(file, buffer, size, 0);
        text = buffer.toString('utf8');
      } finally {
        await file.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fsError(err, this.statePath, 'reading the seed cache state');
    }
    // The state only orders evictions: when it is damaged, rebuild it from the folders on disk.
    try {
      const state = JSON.parse(text) as StateFile;
      if (state.version !== 1 || typeof state.entries !== 'object' || state.entries === null) throw new Error('unknown format');
      for (const [hex, e] of Object.entries(state.entries)) {
        if (!INFOHASH_HEX.test(hex) || !Number.isFinite(e?.lastUsed) || !Number.isSafeInteger(e?.bytes)) continue;
        this.entries.set(hex, { lastUsed: e.lastUsed, bytes: e.bytes });
      }
    } catch {
      this.stateRecovered = true;
      this.entries.clear();
    }
  }

  private async saveLocked(): Promise<void> {
    const state: StateFile = { version: 1, entries: {} };
    for (const [hex, e] of this.entries) if (e.bytes >= 0) state.entries[hex] = { lastUsed: e.lastUsed, bytes: e.bytes };
    await this.step(this.statePath, 'saving the seed cache state', () =>
      writeFileAtomic(this.fs, this.statePath, Buffer.from(`${JSON.stringify(state, null, 1)}\n`)),
    );
  }

  private async step<T>(path: string, action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw fsError(err, path, action);
    }
  }
}

function toHex(infoHash: Buffer | string): string {
  const hex = Buffer.isBuffer(infoHash) ? infoHash.toString('hex') : String(infoHash).toLowerCase();
  if (!INFOHASH_HEX.test(hex)) {
    throw new StoreError('STORE_BAD_INFOHASH', `not a 32-byte v2 info-hash: ${JSON.stringify(hex.slice(0, 80))}`);
  }
  return hex;
}

function checkQuota(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new StoreError('STORE_BAD_OPTION', `quotaBytes must be a non-negative integer, not ${bytes}`);
  }
}
