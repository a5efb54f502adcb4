import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { BLOCK_SIZE, FileHashTree, blockHashes, pieceLayerOf, verifyPackageData } from '@shoal/torrent';
import { COMPLETE_MARKER, PackageStore, StoreError } from '../src';
import { KiB, MiB, type SourcePackage, cleanupTemp, faultyFs, flipBit, makePackage, range, shuffled, tempDir } from './support';

afterAll(cleanupTemp);

async function writeAll(store: PackageStore, pkg: SourcePackage, order = shuffled(range(pkg.metainfo.numPieces))): Promise<void> {
  for (const index of order) expect(await store.writePiece(index, await pkg.piece(index))).toBe('verified');
}

async function expectSameFiles(pkg: SourcePackage, packagePath: string): Promise<void> {
  for (const [path, data] of pkg.files) {
    const onDisk = await readFile(pkg.metainfo.singleFile ? packagePath : join(packagePath, ...path.split('/')));
    expect(onDisk.equals(data)).toBe(true);
  }
}

function code(err: unknown): string | undefined {
  return err instanceof StoreError ? err.code : undefined;
}

describe('PackageStore: a package from nothing to complete', () => {
  test('multi-file package with empty and nested files: random order, finish, byte-identical, verifyPackageData passes', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(
      dir,
      'app',
      { 'bin/app': 3 * MiB + 5, 'empty.txt': 0, 'lib/a/b/c.so': 100 * KiB, 'lib/empty': 0, 'README': 1000, 'tiny': 1 },
      32 * KiB,
    );
    const root = join(dir, 'store');
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(store.resume.found).toBe('new');
    // Files exist at their final sizes from the start (sparse), empty files included.
    for (const file of pkg.metainfo.files) {
      const info = await stat(join(store.packagePath, ...file.path));
      expect(info.size).toBe(file.length);
    }
    const big = await stat(join(store.packagePath, 'bin', 'app'));
    expect(big.blocks * 512).toBeLessThan(big.size);

    await writeAll(store, pkg);
    expect(store.isComplete()).toBe(true);
    expect(store.finished).toBe(false);
    const path = await store.finish();
    expect(path).toBe(join(root, 'complete', pkg.metainfo.infoHash.toString('hex'), 'data', 'app'));
    expect(store.finished).toBe(true);
    expect(await stat(store.partialDir).catch(() => undefined)).toBeUndefined();
    await expectSameFiles(pkg, path);
    const report = await verifyPackageData(pkg.metainfo, path);
    expect(report.ok).toBe(true);
    const marker = JSON.parse(await readFile(join(store.completeDir, COMPLETE_MARKER), 'utf8')) as Record<string, unknown>;
    expect(marker).toMatchObject({ infoHash: pkg.metainfo.infoHash.toString('hex'), name: 'app', numPieces: pkg.metainfo.numPieces });

    // Idempotent, and still serving from the stable path.
    expect(await store.finish()).toBe(path);
    expect((await store.readBlock(0, 0, 100)).equals((await pkg.piece(0)).subarray(0, 100))).toBe(true);
    await store.close();

    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.resume).toMatchObject({ found: 'complete', rehashed: 0, trusted: pkg.metainfo.numPieces });
    expect(again.finished && again.isComplete()).toBe(true);
    expect(await again.finish()).toBe(path);
    const last = pkg.metainfo.numPieces - 1;
    expect((await again.readBlock(last, 0, again.pieceSize(last))).equals(await pkg.piece(last))).toBe(true);
    await again.close();
  });

  test('single-file package (stored as data/<file>) with a short last piece', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'x', { 'image.bin': 2 * MiB + 3 * KiB + 7 }, 64 * KiB, { single: true });
    expect(pkg.metainfo.singleFile).toBe(true);
    const root = join(dir, 'store');
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    const last = pkg.metainfo.numPieces - 1;
    expect(store.pieceSize(last)).toBe(3 * KiB + 7);
    await writeAll(store, pkg);
    const path = await store.finish();
    expect(path).toBe(join(store.completeDir, 'data', 'image.bin'));
    await expectSameFiles(pkg, path);
    expect((await verifyPackageData(pkg.metainfo, path)).ok).toBe(true);
    await store.close();
  });

  test('a package of only empty files is complete at once', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'nothing', { a: 0, 'b/c': 0 }, 16 * KiB);
    const store = await PackageStore.open({ root: join(dir, 'store'), metainfo: pkg.metainfo });
    expect(pkg.metainfo.numPieces).toBe(0);
    expect(store.isComplete()).toBe(true);
    const path = await store.finish();
    expect((await verifyPackageData(pkg.metainfo, path)).ok).toBe(true);
    await store.close();
  });

  test('finish refuses while pieces are missing, and leaves nothing under complete/', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'p', { f: 200 * KiB }, 16 * KiB);
    const store = await PackageStore.open({ root: join(dir, 'store'), metainfo: pkg.metainfo });
    await writeAll(store, pkg, range(pkg.metainfo.numPieces - 1));
    await expect(store.finish()).rejects.toMatchObject({ code: 'STORE_NOT_COMPLETE', message: expect.stringMatching(/1 of 13 pieces/) });
    expect(await stat(store.completeDir).catch(() => undefined)).toBeUndefined();
    await store.close();
  });

  test('concurrent writes, duplicates included, all land once and survive a reopen', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'c', { a: MiB, b: 300 * KiB }, 16 * KiB);
    const root = join(dir, 'store');
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, journal: { syncEveryPieces: 5 } });
    const order = shuffled([...range(pkg.metainfo.numPieces), ...range(20)]);
    const results = await Promise.all(order.map(async (i) => store.writePiece(i, await pkg.piece(i))));
    expect(results.every((r) => r === 'verified')).toBe(true);
    expect(store.isComplete()).toBe(true);
    await store.close();
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.resume).toMatchObject({ trusted: pkg.metainfo.numPieces, rehashed: 0, badRecords: 0 });
    await again.close();
  });

  test('pieces that land together share journal appends (group commit), and all survive a reopen', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'g', { a: MiB }, 16 * KiB);
    const root = join(dir, 'store');
    let journalWrites = 0;
    const fs = faultyFs((op, path) => {
      if (op === 'write' && path.endsWith('pieces.journal')) journalWrites++;
      return undefined;
    });
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, fs, journal: { syncEveryPieces: 1000, syncIntervalMs: 3_600_000 } });
    const pieces = range(24);
    const data = await Promise.all(pieces.map((i) => pkg.piece(i)));
    const before = journalWrites;
    expect(await Promise.all(pieces.map((i) => store.writePiece(i, data[i] as Buffer)))).toEqual(pieces.map(() => 'verified'));
    expect(journalWrites - before).toBeLessThan(pieces.length / 2);
    expect(store.have().indices()).toEqual(pieces);
    await store.close();
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.resume).toMatchObject({ trusted: pieces.length, rehashed: 0, badRecords: 0 });
    expect(again.have().indices()).toEqual(pieces);
    await again.close();
  });
});

describe('PackageStore: verify before write, serve only verified', () => {
  let dir: string;
  let pkg: SourcePackage;
  beforeAll(async () => {
    dir = await tempDir();
    pkg = await makePackage(dir, 'v', { one: 700 * KiB + 3, two: 40 * KiB }, 64 * KiB);
  });

  test('a piece with a flipped bit is reported corrupt, never marked, never served; the good one then lands', async () => {
    const store = await PackageStore.open({ root: join(dir, 's1'), metainfo: pkg.metainfo });
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: pkg.metainfo.numPieces - 1 }), fc.nat(), fc.integer({ min: 0, max: 7 }), async (index, at, bit) => {
        const data = await pkg.piece(index);
        data[at % data.length] = (data[at % data.length] as number) ^ (1 << bit);
        expect(await store.writePiece(index, data)).toBe('corrupt');
        expect(store.hasPiece(index)).toBe(false);
        await expect(store.readBlock(index, 0, 1)).rejects.toMatchObject({ code: 'STORE_PIECE_NOT_VERIFIED' });
        await expect(store.leafHashes(index)).rejects.toMatchObject({ code: 'STORE_PIECE_NOT_VERIFIED' });
      }),
      { numRuns: 40 },
    );
    expect(store.have().count).toBe(0);
    // Wrong lengths are corrupt too.
    const first = await pkg.piece(0);
    expect(await store.writePiece(0, first.subarray(1))).toBe('corrupt');
    expect(await store.writePiece(0, Buffer.concat([first, Buffer.alloc(1)]))).toBe('corrupt');
    // A good piece after bad ones verifies; a bad copy of a piece already held still says corrupt.
    expect(await store.writePiece(0, first)).toBe('verified');
    const bad = Buffer.from(first);
    bad[5] = (bad[5] as number) ^ 1;
    expect(await store.writePiece(0, bad)).toBe('corrupt');
    expect((await store.readBlock(0, 0, first.length)).equals(first)).toBe(true);
    await store.close();
  });

  test('readBlock: exactly the verified bytes for valid ranges, typed errors for anything else', async () => {
    const store = await PackageStore.open({ root: join(dir, 's2'), metainfo: pkg.metainfo });
    const n = pkg.metainfo.numPieces;
    const held = new Set(range(n).filter((i) => i % 2 === 0));
    for (const i of held) await store.writePiece(i, await pkg.piece(i));
    const sizes = range(n).map((i) => store.pieceSize(i));
    const int = fc.oneof(fc.integer({ min: -5, max: 70 * KiB }), fc.constantFrom(0, 1, BLOCK_SIZE, 64 * KiB, 40 * KiB, 3, 2 ** 53), fc.double());
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.integer({ min: -2, max: n + 1 }), fc.double()), int, int, async (index, begin, length) => {
        const size = sizes[index as number];
        const validRange =
          Number.isSafeInteger(index) && size !== undefined && Number.isSafeInteger(begin) && Number.isSafeInteger(length) && begin >= 0 && length >= 1 && begin + length <= size;
        let result: Buffer | undefined;
        let error: unknown;
        try {
          result = await store.readBlock(index, begin, length);
        } catch (err) {
          error = err;
        }
        if (!validRange) expect(code(error)).toBe('STORE_BAD_RANGE');
        else if (!held.has(index)) expect(code(error)).toBe('STORE_PIECE_NOT_VERIFIED');
        else expect((result as Buffer).equals((await pkg.piece(index)).subarray(begin, begin + length))).toBe(true);
      }),
      { numRuns: 400 },
    );
    await expect(store.writePiece(n, Buffer.alloc(1))).rejects.toMatchObject({ code: 'STORE_BAD_RANGE' });
    await expect(store.writePiece(-1, Buffer.alloc(1))).rejects.toMatchObject({ code: 'STORE_BAD_RANGE' });
    await expect(store.writePiece(0.5, Buffer.alloc(1))).rejects.toMatchObject({ code: 'STORE_BAD_RANGE' });
    await store.close();
  });

  test('leafHashes are the 16 KiB block hashes and serve BEP 52 hash requests', async () => {
    const store = await PackageStore.open({ root: join(dir, 's3'), metainfo: pkg.metainfo });
    await writeAll(store, pkg);
    const file = pkg.metainfo.files[0]!;
    const tree = new FileHashTree(file.length, pkg.metainfo.pieceLength, file.piecesRoot!, pieceLayerOf(pkg.metainfo, file));
    const leaves = new Map<number, Buffer>();
    for (let i = 0; i < file.numPieces; i++) {
      const got = await store.leafHashes(i);
      expect(got.equals(blockHashes(await pkg.piece(i)))).toBe(true);
      leaves.set(i, got);
    }
    // A request for the leaves of piece 1 with proof up to the piece layer and beyond.
    const req = { piecesRoot: file.piecesRoot!, baseLayer: 0, index: 4, length: 4, proofLayers: 4 };
    const hashes = tree.hashesFor(req, (p) => leaves.get(p) as Buffer);
    expect(tree.verifyHashes(req, hashes)).toHaveLength(4);
    await store.close();
  });

  test('data that rots on disk after verification is caught by leafHashes and dropped, also after a reopen', async () => {
    const root = join(dir, 's4');
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    await writeAll(store, pkg);
    const path = await store.finish();
    await flipBit(join(path, 'one'), 64 * KiB + 100);
    await expect(store.leafHashes(1)).rejects.toMatchObject({ code: 'STORE_DATA_DAMAGED' });
    expect(store.hasPiece(1)).toBe(false);
    // No longer complete: the package left complete/ for partial/.
    expect(store.finished).toBe(false);
    expect(await stat(store.completeDir).catch(() => undefined)).toBeUndefined();
    await expect(stat(join(store.partialDir, COMPLETE_MARKER))).rejects.toThrow();
    await expect(store.readBlock(1, 0, 10)).rejects.toMatchObject({ code: 'STORE_PIECE_NOT_VERIFIED' });
    await store.close();
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    expect(again.hasPiece(1)).toBe(false);
    expect(again.verifiedCount).toBe(pkg.metainfo.numPieces - 1);
    expect(await again.writePiece(1, await pkg.piece(1))).toBe('verified');
    expect((await verifyPackageData(pkg.metainfo, await again.finish())).ok).toBe(true);
    await again.close();
  });
});

describe('PackageStore: lifecycle and options', () => {
  test('one store per package per process; closed stores refuse work; bad options are typed', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'l', { f: 20 * KiB }, 16 * KiB);
    const root = join(dir, 'store');
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    await expect(PackageStore.open({ root, metainfo: pkg.metainfo })).rejects.toMatchObject({ code: 'STORE_BUSY' });
    await store.close();
    await store.close();
    await expect(store.writePiece(0, await pkg.piece(0))).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await expect(store.readBlock(0, 0, 1)).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await expect(store.finish()).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    for (const bad of [
      { root: '' },
      { recheck: 'sometimes' },
      { journal: { syncEveryPieces: 0 } },
      { journal: { syncIntervalMs: -1 } },
      { maxOpenFiles: 1.5 },
    ]) {
      await expect(PackageStore.open({ root, metainfo: pkg.metainfo, ...(bad as object) })).rejects.toMatchObject({ code: 'STORE_BAD_OPTION' });
    }
    const hostile = { ...pkg.metainfo, files: [{ ...pkg.metainfo.files[0]!, path: ['..', 'escape'] }] };
    await expect(PackageStore.open({ root, metainfo: hostile })).rejects.toMatchObject({ code: 'STORE_BAD_OPTION', message: expect.stringMatching(/relative reference/) });
    // Reopens fine after close.
    const again = await PackageStore.open({ root, metainfo: pkg.metainfo });
    await again.close();
  });

  test('a file where the package folder goes is a typed layout error', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'y', { f: 20 * KiB }, 16 * KiB);
    const root = join(dir, 'store');
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    const partialDir = store.partialDir;
    await store.close();
    await rm(partialDir, { recursive: true });
    await writeFile(partialDir, 'not a folder');
    await expect(PackageStore.open({ root, metainfo: pkg.metainfo })).rejects.toMatchObject({ code: 'STORE_LAYOUT', path: partialDir });
  });

  test('many files with few handles: the handle pool closes idle files and reopens them', async () => {
    const dir = await tempDir();
    const files = Object.fromEntries(range(12).map((i) => [`f${i}`, 20 * KiB + i]));
    const pkg = await makePackage(dir, 'many', files, 16 * KiB);
    const store = await PackageStore.open({ root: join(dir, 'store'), metainfo: pkg.metainfo, maxOpenFiles: 2 });
    await Promise.all(shuffled(range(pkg.metainfo.numPieces)).map(async (i) => store.writePiece(i, await pkg.piece(i))));
    const path = await store.finish();
    expect((await verifyPackageData(pkg.metainfo, path)).ok).toBe(true);
    await store.close();
  });
});
