import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PackageStore, SeedCache, StoreError } from '../src';
import { KiB, cleanupTemp, makePackage, range, tempDir } from './support';

afterAll(cleanupTemp);

interface Finished {
  hex: string;
  bytes: number;
}

/** Finishes packages of the given data sizes in `root`, completed at times 1000, 2000, ... */
async function finishedPackages(dir: string, root: string, sizes: number[]): Promise<Finished[]> {
  const out: Finished[] = [];
  for (const [k, size] of sizes.entries()) {
    const pkg = await makePackage(dir, `pkg${k}`, { data: size, 'more/x': 100 }, 16 * KiB);
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, now: () => (k + 1) * 1000 });
    for (const i of range(pkg.metainfo.numPieces)) await store.writePiece(i, await pkg.piece(i));
    await store.finish();
    await store.close();
    out.push({ hex: pkg.metainfo.infoHash.toString('hex'), bytes: await folderBytes(store.completeDir) });
  }
  return out;
}

async function folderBytes(path: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    total += entry.isDirectory() ? await folderBytes(child) : (await stat(child)).size;
  }
  return total;
}

const exists = (path: string): Promise<boolean> => stat(path).then(
  () => true,
  () => false,
);

describe('SeedCache', () => {
  test('evicts least recently used first until under quota, never a pinned package, and remembers the order across restarts', async () => {
    const dir = await tempDir();
    const root = join(dir, 'store');
    const [a, b, c, d] = (await finishedPackages(dir, root, [40 * KiB, 80 * KiB, 120 * KiB, 20 * KiB])) as [Finished, Finished, Finished, Finished];
    const total = a.bytes + b.bytes + c.bytes + d.bytes;

    let cache = await SeedCache.open({ root, quotaBytes: total, now: () => 9999 });
    // Found on disk: sized from the folders, ordered by completion time.
    expect(cache.list().map((e) => [e.infoHash, e.bytes, e.lastUsed])).toEqual([
      [a.hex, a.bytes, 1000],
      [b.hex, b.bytes, 2000],
      [c.hex, c.bytes, 3000],
      [d.hex, d.bytes, 4000],
    ]);
    expect(cache.totalBytes).toBe(total);
    expect(await cache.evict(10_000)).toEqual({ removed: [], freedBytes: 0, totalBytes: total, overQuota: false });

    cache.touch(a.hex, 20_000); // a is now the most recently used
    cache.touch(Buffer.from(b.hex, 'hex'), 15_000);
    cache.pin(c.hex); // c is the oldest after d, but it is in use
    cache.quotaBytes = a.bytes + b.bytes + c.bytes;
    expect(await cache.evict(21_000)).toEqual({ removed: [d.hex], freedBytes: d.bytes, totalBytes: a.bytes + b.bytes + c.bytes, overQuota: false });
    cache.quotaBytes = a.bytes + c.bytes;
    expect(await cache.evict(21_000)).toEqual({ removed: [b.hex], freedBytes: b.bytes, totalBytes: a.bytes + c.bytes, overQuota: false });
    expect(await exists(join(root, 'complete', d.hex))).toBe(false);
    expect(await exists(join(root, 'complete', b.hex))).toBe(false);
    expect(await readdir(join(root, 'trash'))).toEqual([]);

    // The LRU state survives a restart (atomically written JSON).
    const state = JSON.parse(await readFile(join(root, 'seed-cache.json'), 'utf8')) as { entries: Record<string, { lastUsed: number }> };
    expect(Object.keys(state.entries).sort()).toEqual([a.hex, c.hex].sort());
    expect(state.entries[a.hex]?.lastUsed).toBe(20_000);
    cache = await SeedCache.open({ root, quotaBytes: 0 });
    expect(cache.list().map((e) => e.infoHash)).toEqual([c.hex, a.hex]);
    expect(cache.isPinned(c.hex)).toBe(false); // pins belong to the process that took them
    cache.pin(a.hex);
    cache.pin(a.hex);
    cache.unpin(a.hex);
    expect(await cache.evict(30_000)).toMatchObject({ removed: [c.hex], totalBytes: a.bytes, overQuota: true });
    await expect(cache.remove(a.hex)).rejects.toMatchObject({ code: 'STORE_PINNED' });
    cache.unpin(a.hex);
    expect(await cache.remove(a.hex)).toBe(true);
    expect(await cache.remove(a.hex)).toBe(false);
    expect(cache.list()).toEqual([]);
  });

  test('an evicted package is gone for PackageStore too, and a package finished later is picked up', async () => {
    const dir = await tempDir();
    const root = join(dir, 'store');
    const pkg = await makePackage(dir, 'p', { f: 50 * KiB }, 16 * KiB);
    const cache = await SeedCache.open({ root, quotaBytes: 0 });
    expect(cache.list()).toEqual([]);
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    for (const i of range(pkg.metainfo.numPieces)) await store.writePiece(i, await pkg.piece(i));
    await store.finish();
    await store.close();
    await cache.refresh();
    expect(cache.list()).toHaveLength(1);
    expect((await cache.evict(1)).removed).toEqual([pkg.metainfo.infoHash.toString('hex')]);
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.resume.found).toBe('new');
    expect(again.verifiedCount).toBe(0);
    await again.close();
  });

  test('a damaged state file is rebuilt from the folders; an interrupted removal is finished at open', async () => {
    const dir = await tempDir();
    const root = join(dir, 'store');
    const [a] = (await finishedPackages(dir, root, [30 * KiB])) as [Finished];
    await writeFile(join(root, 'seed-cache.json'), '{"version": 1, "entries": ');
    await mkdir(join(root, 'trash', `${a.hex}.deadbeef`, 'data'), { recursive: true });
    const cache = await SeedCache.open({ root, quotaBytes: 1e9 });
    expect(cache.stateRecovered).toBe(true);
    expect(cache.list()).toEqual([{ infoHash: a.hex, bytes: a.bytes, lastUsed: 1000, pinned: false }]);
    expect(await exists(join(root, 'trash'))).toBe(false);
    await cache.save();
    expect(JSON.parse(await readFile(join(root, 'seed-cache.json'), 'utf8'))).toEqual({ version: 1, entries: { [a.hex]: { lastUsed: 1000, bytes: a.bytes } } });
  });

  test('bad input is typed', async () => {
    const dir = await tempDir();
    await expect(SeedCache.open({ root: dir, quotaBytes: -1 })).rejects.toMatchObject({ code: 'STORE_BAD_OPTION' });
    await expect(SeedCache.open({ root: '', quotaBytes: 1 })).rejects.toMatchObject({ code: 'STORE_BAD_OPTION' });
    const cache = await SeedCache.open({ root: dir, quotaBytes: 1 });
    expect(() => cache.touch('abc', 1)).toThrow(StoreError);
    expect(() => cache.pin(Buffer.alloc(20))).toThrow(/not a 32-byte v2 info-hash/);
    expect(() => {
      cache.quotaBytes = 1.5;
    }).toThrow(StoreError);
  });
});
