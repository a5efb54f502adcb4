import { cp, mkdir, open, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { verifyPackageData } from '@shoal/torrent';
import { COMPLETE_MARKER, JOURNAL_HEADER_SIZE, JOURNAL_RECORD_SIZE, PackageStore, type PackageStoreOptions } from '../src';
import { KiB, type SourcePackage, cleanupTemp, faultyFs, flipBit, makePackage, range, shuffled, tempDir } from './support';

afterAll(cleanupTemp);

const journalOf = (store: PackageStore): string => join(store.dir, 'pieces.journal');

async function fill(store: PackageStore, pkg: SourcePackage, indices: number[]): Promise<void> {
  for (const i of indices) expect(await store.writePiece(i, await pkg.piece(i))).toBe('verified');
}

/** Opens, runs `fn`, closes. */
async function withStore<T>(options: PackageStoreOptions, fn: (store: PackageStore) => Promise<T>): Promise<T> {
  const store = await PackageStore.open(options);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

describe('resume from the journal', () => {
  let dir: string;
  let pkg: SourcePackage;
  beforeAll(async () => {
    dir = await tempDir();
    pkg = await makePackage(dir, 'r', { a: 600 * KiB + 17, b: 250 * KiB, e: 0 }, 16 * KiB);
  });
  const n = (): number => pkg.metainfo.numPieces;

  test('after a clean close every verified piece is trusted without reading it; the rest is fetched and finished', async () => {
    const root = join(dir, 'clean');
    const half = shuffled(range(n())).slice(0, Math.floor(n() / 2));
    await withStore({ root, metainfo: pkg.metainfo }, (s) => fill(s, pkg, half));
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ found: 'partial', trusted: half.length, rehashed: 0, verified: half.length, compacted: false });
      expect(s.have().indices()).toEqual([...half].sort((x, y) => x - y));
      await fill(s, pkg, s.have().missing());
      expect((await verifyPackageData(pkg.metainfo, await s.finish())).ok).toBe(true);
    });
  });

  test('pieces with only a WRITTEN record (crash before the batch sync) are re-hashed, not refetched; bad ones are dropped for good', async () => {
    const root = join(dir, 'live');
    const copy = join(dir, 'crashed');
    const written = range(10).map((i) => i * 2);
    const store = await PackageStore.open({ root, metainfo: pkg.metainfo, journal: { syncEveryPieces: 1000, syncIntervalMs: 1e9 } });
    await fill(store, pkg, written);
    // The state a kill -9 leaves: data and WRITTEN records in the page cache, no DURABLE record.
    await cp(join(root, 'partial'), join(copy, 'partial'), { recursive: true });
    await store.close();
    // Piece 4's bytes never reached the disk (a power loss would do this).
    const hex = pkg.metainfo.infoHash.toString('hex');
    const file = await open(join(copy, 'partial', hex, 'data', 'r', 'a'), 'r+');
    await file.write(Buffer.alloc(16 * KiB), 0, 16 * KiB, 4 * 16 * KiB);
    await file.close();

    await withStore({ root: copy, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ trusted: 0, rehashed: 10, rehashFailed: 1, verified: 9 });
      expect(s.hasPiece(4)).toBe(false);
    });
    await withStore({ root: copy, metainfo: pkg.metainfo }, async (s) => {
      // Re-hashed pieces got DURABLE records, the failed one a DROPPED record: nothing is read again.
      expect(s.resume).toMatchObject({ trusted: 9, rehashed: 0, verified: 9 });
    });
  });

  test('a torn last record is cut off and the records before it are kept', async () => {
    const root = join(dir, 'torn');
    const pieces = range(7);
    let journal = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, pieces);
      journal = journalOf(s);
    });
    const before = (await stat(journal)).size;
    // Half of a record: a crash in the middle of an append.
    await writeFile(journal, randomBytes(7), { flag: 'a' });
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ tornBytes: 7, badRecords: 0, trusted: 7, verified: 7 });
      expect((await stat(journal)).size).toBe(before);
      await fill(s, pkg, [20]);
    });
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ tornBytes: 0, badRecords: 0, trusted: 8 });
    });
  });

  test('garbage records in the middle are skipped; a piece loses trust only when none of its records is intact', async () => {
    const root = join(dir, 'garbage');
    let journal = '';
    // One sync per piece: the journal reads WRITTEN(0) DURABLE(0) WRITTEN(1) DURABLE(1) ...
    await withStore({ root, metainfo: pkg.metainfo, journal: { syncEveryPieces: 1 } }, async (s) => {
      await fill(s, pkg, range(6));
      journal = journalOf(s);
    });
    const bytes = await readFile(journal);
    const record = (k: number): number => JOURNAL_HEADER_SIZE + k * JOURNAL_RECORD_SIZE;
    randomBytes(JOURNAL_RECORD_SIZE).copy(bytes, record(3)); // DURABLE(1): piece 1 falls back to WRITTEN
    randomBytes(2 * JOURNAL_RECORD_SIZE).copy(bytes, record(6)); // WRITTEN(3) and DURABLE(3): nothing left for 3
    await writeFile(journal, bytes);
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ badRecords: 3, trusted: 4, rehashed: 1, rehashFailed: 0, verified: 5 });
      expect(s.have().indices()).toEqual([0, 1, 2, 4, 5]);
    });
  });

  test('a truncated data file loses the pieces past the cut for good; the ones before it are re-hashed', async () => {
    const root = join(dir, 'truncated');
    let path = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, range(n()));
      path = join(s.packagePath, 'a');
    });
    await truncate(path, 10 * 16 * KiB + 5);
    const inA = pkg.metainfo.files.find((f) => f.path[0] === 'a')!.numPieces;
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ rehashed: 10, rehashFailed: 0, lostWithFiles: inA - 10, filesRepaired: ['a'] });
      expect(s.verifiedCount).toBe(n() - (inA - 10));
      expect((await stat(path)).size).toBe(pkg.metainfo.files[0]!.length);
    });
    // The file has its size back (zeros past the cut): DROPPED records keep the journal from
    // vouching for those zeros.
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ rehashed: 0, filesRepaired: [] });
      expect(s.verifiedCount).toBe(n() - (inA - 10));
      await fill(s, pkg, s.have().missing());
      expect((await verifyPackageData(pkg.metainfo, await s.finish())).ok).toBe(true);
    });
  });

  test('a missing data file is recreated and its pieces are fetched again; dead records are compacted away', async () => {
    const root = join(dir, 'missing');
    let journal = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, range(n()));
      await rm(join(s.packagePath, 'b'));
      await rm(join(s.packagePath, 'e'));
      journal = journalOf(s);
    });
    const inB = pkg.metainfo.files.find((f) => f.path[0] === 'b')!.numPieces;
    await withStore({ root, metainfo: pkg.metainfo, journal: { compactSlack: 0 } }, async (s) => {
      expect(s.resume).toMatchObject({ lostWithFiles: inB, verified: n() - inB, compacted: true });
      expect(s.resume.filesRepaired.sort()).toEqual(['b', 'e']);
      expect((await stat(join(s.packagePath, 'b'))).size).toBe(250 * KiB);
      expect((await stat(join(s.packagePath, 'e'))).size).toBe(0);
      expect((await stat(journal)).size).toBe(JOURNAL_HEADER_SIZE + (n() - inB) * JOURNAL_RECORD_SIZE);
    });
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ trusted: n() - inB, rehashed: 0, journalRecords: n() - inB });
    });
  });

  test("recheck 'full' re-hashes everything and catches damage the journal cannot see", async () => {
    const root = join(dir, 'full');
    let path = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, range(n()));
      path = join(s.packagePath, 'b');
    });
    await flipBit(path, 3 * 16 * KiB + 9);
    const inA = pkg.metainfo.files[0]!.numPieces;
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      // The journal vouches for sizes and records, not for bytes changed behind the store's back.
      expect(s.resume).toMatchObject({ trusted: n(), rehashed: 0 });
    });
    await withStore({ root, metainfo: pkg.metainfo, recheck: 'full' }, async (s) => {
      expect(s.resume).toMatchObject({ trusted: 0, rehashed: n(), rehashFailed: 1, verified: n() - 1, compacted: true });
      expect(s.hasPiece(inA + 3)).toBe(false);
    });
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ trusted: n() - 1, rehashed: 0 });
    });
  });

  test('a foreign or missing journal vouches for nothing: the data is re-hashed and a new journal written', async () => {
    const root = join(dir, 'foreign');
    let journal = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, range(12));
      journal = journalOf(s);
    });
    const bytes = await readFile(journal);
    bytes[30] = (bytes[30] as number) ^ 1; // inside the info-hash of the header
    await writeFile(journal, bytes);
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ journalReset: true, trusted: 0, rehashed: n(), verified: 12 });
    });
    await rm(journal);
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ journalReset: true, rehashed: n(), verified: 12 });
    });
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ journalReset: false, trusted: 12, rehashed: 0 });
    });
  });

  test('batches become durable every N pieces or after T ms of the injected clock', async () => {
    const root = join(dir, 'batches');
    let clock = 1000;
    const durable: number[][] = [];
    await withStore(
      { root, metainfo: pkg.metainfo, now: () => clock, journal: { syncEveryPieces: 4, syncIntervalMs: 500 }, onDurable: (p) => durable.push([...p]) },
      async (s) => {
        await fill(s, pkg, [0, 1, 2]);
        expect(durable).toEqual([]);
        await fill(s, pkg, [3]);
        expect(durable).toEqual([[0, 1, 2, 3]]);
        await fill(s, pkg, [4]);
        clock += 499;
        await fill(s, pkg, [5]);
        expect(durable).toHaveLength(1);
        clock += 1;
        await fill(s, pkg, [6]);
        expect(durable).toEqual([[0, 1, 2, 3], [4, 5, 6]]);
        await fill(s, pkg, [7]);
        await s.flush();
        expect(durable[2]).toEqual([7]);
      },
    );
  });
});

describe('leftovers of a crash in the middle of an atomic replacement', () => {
  test('a half-built package folder and half-written temp files are removed at open; data files are not touched', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 't', { '.hidden.tmp': 20 * KiB, b: 1 }, 16 * KiB);
    const root = join(dir, 'store');
    let partialDir = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, range(pkg.metainfo.numPieces));
      partialDir = s.partialDir;
    });
    const hex = pkg.metainfo.infoHash.toString('hex');
    const halfBuilt = join(root, 'partial', `.${hex}.0badc0ffee00.tmp`);
    const otherPackage = join(root, 'partial', `.${'ab'.repeat(32)}.0badc0ffee00.tmp`);
    await mkdir(join(halfBuilt, 'data'), { recursive: true });
    await mkdir(otherPackage);
    await writeFile(join(partialDir, '.pieces.journal.0badc0ffee00.tmp'), 'half a journal');
    await writeFile(join(partialDir, `.${COMPLETE_MARKER}.0badc0ffee00.tmp`), '{"half');
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ trusted: pkg.metainfo.numPieces, rehashed: 0 });
      expect((await verifyPackageData(pkg.metainfo, s.packagePath)).ok).toBe(true);
    });
    expect((await readdir(partialDir)).sort()).toEqual(['data', 'pieces.journal']);
    expect(await stat(halfBuilt).catch(() => undefined)).toBeUndefined();
    // Another package's leftovers are that package's business.
    expect((await stat(otherPackage)).isDirectory()).toBe(true);
  });
});

describe('finishing is atomic', () => {
  test('a crash before the rename leaves partial/ whole and complete/ absent; finishing again works', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'f', { a: 100 * KiB, b: 3 }, 16 * KiB);
    const root = join(dir, 'store');
    let crash = true;
    const fs = faultyFs((op, path) => (crash && op === 'rename' && path.endsWith(pkg.metainfo.infoHash.toString('hex')) ? 'EIO' : undefined));
    await withStore({ root, metainfo: pkg.metainfo, fs }, async (s) => {
      await fill(s, pkg, range(pkg.metainfo.numPieces));
      await expect(s.finish()).rejects.toMatchObject({ code: 'STORE_IO', path: s.completeDir });
      expect(s.finished).toBe(false);
      expect(await stat(s.completeDir).catch(() => undefined)).toBeUndefined();
      // The marker written just before the rename is harmless in partial/.
      expect((await stat(join(s.partialDir, COMPLETE_MARKER))).isFile()).toBe(true);
      expect((await verifyPackageData(pkg.metainfo, s.packagePath)).ok).toBe(true);
    });
    crash = false;
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume).toMatchObject({ found: 'partial', trusted: pkg.metainfo.numPieces });
      expect(s.isComplete()).toBe(true);
      const path = await s.finish();
      expect((await verifyPackageData(pkg.metainfo, path)).ok).toBe(true);
    });
  });

  test('a finished package whose file was cut short goes back to partial/ at open', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'g', { a: 100 * KiB }, 16 * KiB);
    const root = join(dir, 'store');
    let path = '';
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      await fill(s, pkg, range(pkg.metainfo.numPieces));
      path = await s.finish();
    });
    expect(pkg.metainfo.singleFile).toBe(true);
    await truncate(path, 50 * KiB);
    await withStore({ root, metainfo: pkg.metainfo }, async (s) => {
      expect(s.resume.found).toBe('complete');
      expect(s.finished).toBe(false);
      expect(await stat(s.completeDir).catch(() => undefined)).toBeUndefined();
      expect(s.have().missing()).toEqual([3, 4, 5, 6]);
      await fill(s, pkg, s.have().missing());
      expect((await verifyPackageData(pkg.metainfo, await s.finish())).ok).toBe(true);
    });
  });
});
