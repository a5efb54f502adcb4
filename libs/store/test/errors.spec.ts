import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { mkdtempSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { verifyPackageData } from '@shoal/torrent';
import { PackageStore, StoreError, fsError } from '../src';
import { type FaultOp, KiB, MiB, type SourcePackage, cleanupTemp, faultyFs, makePackage, range, tempDir } from './support';

afterAll(cleanupTemp);

describe('fsError', () => {
  test.each([
    ['ENOSPC', 'STORE_DISK_FULL', /no space left on device/],
    ['EDQUOT', 'STORE_DISK_FULL', /disk quota exceeded/],
    ['EACCES', 'STORE_PERMISSION', /permission denied/],
    ['EPERM', 'STORE_PERMISSION', /permission denied/],
    ['EROFS', 'STORE_PERMISSION', /read-only filesystem/],
    ['EIO', 'STORE_IO', /failed/],
  ])('%s -> %s, one line naming the path', (errno, code, text) => {
    const err = fsError(Object.assign(new Error(`${errno}: boom\nsecond line`), { code: errno }), '/srv/shoal/x', 'writing piece 3');
    expect(err).toBeInstanceOf(StoreError);
    expect(err.code).toBe(code);
    expect(err.path).toBe('/srv/shoal/x');
    expect(err.message).toMatch(/^\/srv\/shoal\/x: /);
    expect(err.message).toMatch(text);
    expect(err.message).not.toContain('\n');
  });
});

describe('injected write failures keep the partial state usable', () => {
  let dir: string;
  let pkg: SourcePackage;
  beforeAll(async () => {
    dir = await tempDir();
    pkg = await makePackage(dir, 'w', { a: 200 * KiB, b: 100 * KiB }, 16 * KiB);
  });

  test.each([
    ['ENOSPC', 'STORE_DISK_FULL'],
    ['EDQUOT', 'STORE_DISK_FULL'],
    ['EACCES', 'STORE_PERMISSION'],
    ['EROFS', 'STORE_PERMISSION'],
    ['EIO', 'STORE_IO'],
  ])('%s writing data: %s naming the file, the piece not marked, the rest kept', async (errno, code) => {
    const root = join(dir, `data-${errno}`);
    let failing = false;
    const fs = faultyFs((op, path) => (failing && op === 'write' && path.endsWith('/b') ? errno : undefined));
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, fs });
    const inA = pkg.metainfo.files[0]!.numPieces;
    for (const i of range(inA + 2)) await store.writePiece(i, await pkg.piece(i));
    failing = true;
    const err = (await store.writePiece(inA + 2, await pkg.piece(inA + 2)).catch((e: unknown) => e)) as StoreError;
    expect(err).toBeInstanceOf(StoreError);
    expect(err.code).toBe(code);
    expect(err.path).toBe(join(store.packagePath, 'b'));
    expect(err.message).toContain(`writing piece ${inA + 2}`);
    expect(err.message).not.toContain('\n');
    expect(store.hasPiece(inA + 2)).toBe(false);
    expect(store.verifiedCount).toBe(inA + 2);
    // Verified pieces are still served; other files still take writes.
    expect((await store.readBlock(inA + 1, 0, 100)).equals((await pkg.piece(inA + 1)).subarray(0, 100))).toBe(true);
    failing = false;
    expect(await store.writePiece(inA + 2, await pkg.piece(inA + 2))).toBe('verified');
    await store.close();
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.resume).toMatchObject({ verified: inA + 3, badRecords: 0, rehashed: 0 });
    await again.close();
  });

  test('a short write to the journal, then a failed repair, does not shift later records off their boundaries', async () => {
    const root = join(dir, 'journal-short');
    let fault: Partial<Record<FaultOp, string>> = {};
    const fs = faultyFs((op, path) => (path.endsWith('pieces.journal') ? fault[op] : undefined));
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, fs, journal: { syncEveryPieces: 1 } });
    await store.writePiece(0, await pkg.piece(0));
    fault = { write: 'ENOSPC+partial', truncate: 'EIO' };
    await expect(store.writePiece(1, await pkg.piece(1))).rejects.toMatchObject({
      code: 'STORE_DISK_FULL',
      path: join(store.partialDir, 'pieces.journal'),
    });
    expect(store.hasPiece(1)).toBe(false);
    fault = {};
    await store.writePiece(2, await pkg.piece(2));
    await store.close();
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.resume).toMatchObject({ badRecords: 0, tornBytes: 0, trusted: 2 });
    expect(again.have().indices()).toEqual([0, 2]);
    await again.close();
  });

  test('a failed fdatasync un-marks the batch pieces of that file (their pages may be gone) and says which file', async () => {
    const root = join(dir, 'datasync');
    let failing = false;
    const fs = faultyFs((op, path) => (failing && op === 'datasync' && path.endsWith('/a') ? 'EIO' : undefined));
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, fs, journal: { syncEveryPieces: 3 } });
    const inA = pkg.metainfo.files[0]!.numPieces;
    await store.writePiece(0, await pkg.piece(0));
    await store.writePiece(inA, await pkg.piece(inA));
    failing = true;
    await expect(store.writePiece(1, await pkg.piece(1))).rejects.toMatchObject({ code: 'STORE_IO', path: join(store.packagePath, 'a') });
    expect(store.have().indices()).toEqual([inA]);
    failing = false;
    await store.flush();
    for (const i of [0, 1]) expect(await store.writePiece(i, await pkg.piece(i))).toBe('verified');
    await store.close();
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.have().indices()).toEqual([0, 1, inA]);
    await again.close();
  });

  test('a permission error while creating the package folder is typed and leaves nothing behind', async () => {
    const root = join(dir, 'eacces');
    const fs = faultyFs((op, path) => (op === 'open' && path.endsWith('pieces.journal') ? 'EACCES' : undefined));
    const err = (await PackageStore.open({ root, metainfo: pkg.metainfo, fs }).catch((e: unknown) => e)) as StoreError;
    expect(err).toMatchObject({ code: 'STORE_PERMISSION' });
    expect(err.message).toMatch(/permission denied while creating the package folder/);
    expect(await readdir(join(root, 'partial'))).toEqual([]);
    // Not left half-open either.
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(store.resume.found).toBe('new');
    await store.close();
  });
});

/** Why a tmpfs cannot be mounted here, or undefined when it can. */
function tmpfsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `platform is ${process.platform}`;
  if (process.getuid?.() !== 0) return 'not running as root';
  const probe = mkdtempSync(join(tmpdir(), 'shoal-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
  } finally {
    rmdirSync(probe);
  }
}

const unavailable = tmpfsUnavailable();
if (unavailable) console.warn(`SKIPPED: the real disk-full test needs a tmpfs mount (${unavailable})`);
const tmpfsTest = unavailable ? test.skip : test;

describe('a real full disk (1 MiB tmpfs)', () => {
  tmpfsTest('ENOSPC is STORE_DISK_FULL naming the path; verified pieces stay; after more space the package completes', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'big', { 'big.bin': 3 * MiB }, 64 * KiB, { single: true });
    const mountPoint = await mkdtemp(join(tmpdir(), 'shoal-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint]);
    try {
      const root = join(mountPoint, 'store');
      const store = await PackageStore.open({ root, metainfo: pkg.metainfo, journal: { syncEveryPieces: 4 } });
      let error: unknown;
      let next = 0;
      for (; next < pkg.metainfo.numPieces; next++) {
        try {
          await store.writePiece(next, await pkg.piece(next));
        } catch (err) {
          error = err;
          break;
        }
      }
      expect(error).toBeInstanceOf(StoreError);
      expect(error).toMatchObject({ code: 'STORE_DISK_FULL' });
      const err = error as StoreError;
      expect(err.path?.startsWith(store.partialDir)).toBe(true);
      expect(err.message).toMatch(/no space left on device/);
      const held = store.verifiedCount;
      expect(held).toBeGreaterThan(5);
      expect(held).toBeLessThan(pkg.metainfo.numPieces);
      expect(store.hasPiece(next)).toBe(false);
      // Still full: the next attempt fails the same way and marks nothing.
      await expect(store.writePiece(next, await pkg.piece(next))).rejects.toMatchObject({ code: 'STORE_DISK_FULL' });
      for (const i of store.have().indices()) {
        expect((await store.readBlock(i, 0, store.pieceSize(i))).equals(await pkg.piece(i))).toBe(true);
      }
      // The journal's page is already allocated: the DURABLE records of the last batch still fit.
      await store.close();

      execFileSync('mount', ['-o', 'remount,size=8m', mountPoint]);
      const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
      expect(again.verifiedCount).toBeGreaterThanOrEqual(held);
      for (const i of again.have().missing()) await again.writePiece(i, await pkg.piece(i));
      const path = await again.finish();
      expect((await verifyPackageData(pkg.metainfo, path)).ok).toBe(true);
      expect((await stat(path)).size).toBe(3 * MiB);
      await again.close();
    } finally {
      try {
        execFileSync('umount', [mountPoint], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', mountPoint], { stdio: 'pipe' });
      }
      await rm(mountPoint, { recursive: true, force: true });
    }
  });
});
