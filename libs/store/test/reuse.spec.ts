import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type Metainfo, type PackageFile, createPackage, verifyPackageData } from '@shoal/torrent';
import {
  type AdoptSource,
  type FileSystem,
  type HeldPackage,
  PackageStore,
  StoreError,
  findReusableFiles,
  finishedPackagePath,
  isReuseSourceError,
  nodeFileSystem,
  reuseHeldFiles,
} from '../src';
import { KiB, MiB, cleanupTemp, faultyFs, flipBit, tempDir } from './support';

afterAll(cleanupTemp);

const PIECE = 16 * KiB;

/** A package version packed from files kept in memory (path joined with '/' -> bytes). */
interface Version {
  folder: string;
  metainfo: Metainfo;
  torrent: Buffer;
  files: Map<string, Buffer>;
}

async function pack(dir: string, name: string, files: Map<string, Buffer>, pieceLength = PIECE): Promise<Version> {
  const folder = join(dir, name);
  for (const [path, data] of files) {
    const target = join(folder, ...path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data);
  }
  const { bytes, metainfo } = await createPackage(folder, { pieceLength, hashThreads: 0 });
  return { folder, metainfo, torrent: bytes, files };
}

function fileNamed(meta: Metainfo, path: string): { file: PackageFile; index: number } {
  const index = meta.files.findIndex((f) => f.path.join('/') === path);
  if (index < 0) throw new Error(`no file ${path}`);
  return { file: meta.files[index] as PackageFile, index };
}

function piecesOf(file: PackageFile): number[] {
  return Array.from({ length: file.numPieces }, (_, i) => file.firstPiece + i);
}

function pieceData(version: Version, index: number): Buffer {
  const file = version.metainfo.files.find((f) => index >= f.firstPiece && index < f.firstPiece + f.numPieces) as PackageFile;
  const data = version.files.get(file.path.join('/')) as Buffer;
  const start = (index - file.firstPiece) * version.metainfo.pieceLength;
  return data.subarray(start, Math.min(start + version.metainfo.pieceLength, data.length));
}

/** Downloads `version` into the store at `root` and finishes it: what an agent holding it has. */
async function holdFinished(root: string, version: Version): Promise<HeldPackage> {
  const store = await PackageStore.open({ root, metainfo: version.metainfo });
  try {
    for (const i of store.have().missing()) await store.writePiece(i, pieceData(version, i));
    await store.finish();
  } finally {
    await store.close();
  }
  return { metainfo: version.metainfo, packagePath: finishedPackagePath(root, version.metainfo) };
}

function sourceOf(held: HeldPackage, path: string): AdoptSource {
  const { file } = fileNamed(held.metainfo, path);
  return { path: join(held.packagePath, ...file.path), piecesRoot: file.piecesRoot, length: file.length };
}

const SIZES = [0, 1, 777, PIECE, PIECE + 1, 40 * KiB, 64 * KiB, 100 * KiB + 3, 250 * KiB, MiB + 5];

/**
 * 50 files of the sizes above (5 of each, empty ones included) in 5 folders, no two non-empty
 * ones alike: the first byte is the file's number (five random 1-byte files matched each other
 * in about one run in 25, and equal files are sources of each other).
 */
function versionNFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 50; i++) {
    const data = randomBytes(SIZES[i % SIZES.length] as number);
    if (data.length > 0) data[0] = i;
    files.set(`dir${i % 5}/f${String(i).padStart(2, '0')}.bin`, data);
  }
  return files;
}

const CHANGED_SAME_SIZE = 'dir4/f09.bin';
const CHANGED_LENGTH = 'dir3/f23.bin';
const RENAMED_FROM = 'dir3/f48.bin';
const RENAMED_TO = 'moved/f48-renamed.bin';

/** Version N+1: one byte of a 1 MiB file changed, one file grown, one unchanged file renamed. */
function versionNextFiles(previous: Map<string, Buffer>): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const [path, data] of previous) {
    if (path === CHANGED_SAME_SIZE) {
      const edited = Buffer.from(data);
      edited[500 * KiB] = (edited[500 * KiB] as number) ^ 1;
      files.set(path, edited);
    } else if (path === CHANGED_LENGTH) {
      files.set(path, Buffer.concat([data, Buffer.from('appended')]));
    } else {
      files.set(path === RENAMED_FROM ? RENAMED_TO : path, data);
    }
  }
  return files;
}

function code(err: unknown): string | undefined {
  return err instanceof StoreError ? err.code : undefined;
}

describe('findReusableFiles: candidates by pieces root and length', () => {
  let dir: string;
  let n: Version;
  let next: Version;
  beforeAll(async () => {
    dir = await tempDir();
    n = await pack(dir, 'v1', versionNFiles());
    next = await pack(dir, 'v2', versionNextFiles(n.files));
  });

  test('every unchanged file is found (the renamed one too), changed and empty files are not', () => {
    const held: HeldPackage = { metainfo: n.metainfo, packagePath: '/held/v1' };
    const found = findReusableFiles(next.metainfo, [held]);
    const byPath = new Map(found.map((r) => [next.metainfo.files[r.fileIndex]?.path.join('/'), r]));
    const expected = next.metainfo.files
      .map((f) => f.path.join('/'))
      .filter((p) => p !== CHANGED_SAME_SIZE && p !== CHANGED_LENGTH && (next.files.get(p) as Buffer).length > 0);
    expect([...byPath.keys()].sort()).toEqual(expected.sort());
    expect(expected).toHaveLength(50 - 2 - 5);
    const renamed = byPath.get(RENAMED_TO);
    expect(renamed?.sources).toEqual([
      {
        path: join('/held/v1', RENAMED_FROM),
        piecesRoot: fileNamed(n.metainfo, RENAMED_FROM).file.piecesRoot,
        length: 250 * KiB,
        infoHashHex: n.metainfo.infoHash.toString('hex'),
        filePath: RENAMED_FROM.split('/'),
      },
    ]);
  });

  test('a package packed with another piece length still matches: the pieces root does not depend on it', async () => {
    const coarse = await pack(dir, 'v1-coarse', n.files, 64 * KiB);
    expect(coarse.metainfo.infoHash.equals(n.metainfo.infoHash)).toBe(false);
    const found = findReusableFiles(next.metainfo, [{ metainfo: coarse.metainfo, packagePath: '/held/coarse' }]);
    expect(found).toHaveLength(43);
  });

  test('sources come in the order of the held packages, without duplicates; the target itself is skipped', () => {
    const first: HeldPackage = { metainfo: n.metainfo, packagePath: '/a/v1' };
    const second: HeldPackage = { metainfo: n.metainfo, packagePath: '/b/v1' };
    const self: HeldPackage = { metainfo: next.metainfo, packagePath: '/a/v2' };
    const found = findReusableFiles(next.metainfo, [self, first, second, first]);
    expect(found).toHaveLength(43);
    for (const r of found) expect(r.sources.map((s) => s.path.slice(0, 3))).toEqual(['/a/', '/b/']);
    expect(findReusableFiles(next.metainfo, [self])).toEqual([]);
    expect(findReusableFiles(next.metainfo, [])).toEqual([]);
  });

  test('a single-file held package: its path is the file itself', async () => {
    const data = next.files.get(RENAMED_TO) as Buffer;
    const lone = join(dir, 'lone', 'image.bin');
    await mkdir(dirname(lone), { recursive: true });
    await writeFile(lone, data);
    const single = await createPackage(lone, { pieceLength: PIECE, hashThreads: 0 });
    expect(single.metainfo.singleFile).toBe(true);
    const found = findReusableFiles(next.metainfo, [{ metainfo: single.metainfo, packagePath: '/held/image.bin' }]);
    expect(found.map((r) => [r.fileIndex, r.sources.map((s) => s.path)])).toEqual([[fileNamed(next.metainfo, RENAMED_TO).index, ['/held/image.bin']]]);
  });

  test('same root but another length is not a candidate', () => {
    const { file } = fileNamed(n.metainfo, RENAMED_FROM);
    const liar: Metainfo = { ...n.metainfo, infoHash: randomBytes(32), files: [{ ...file, length: file.length + 1 }] };
    expect(findReusableFiles(next.metainfo, [{ metainfo: liar, packagePath: '/x' }])).toEqual([]);
  });
});

describe('PackageStore.adoptFile / reuseHeldFiles: version N+1 from version N on the same machine', () => {
  let dir: string;
  let n: Version;
  let next: Version;
  let held: HeldPackage;
  beforeAll(async () => {
    dir = await tempDir();
    n = await pack(dir, 'v1', versionNFiles());
    next = await pack(dir, 'v2', versionNextFiles(n.files));
    held = await holdFinished(join(dir, 'held-store'), n);
  });

  const unchangedPieces = (): number[] =>
    next.metainfo.files.filter((f) => ![CHANGED_SAME_SIZE, CHANGED_LENGTH].includes(f.path.join('/'))).flatMap(piecesOf);
  const changedPieces = (): number[] =>
    [CHANGED_SAME_SIZE, CHANGED_LENGTH].flatMap((p) => piecesOf(fileNamed(next.metainfo, p).file)).sort((a, b) => a - b);

  test('every unchanged file (the renamed one too) is verified without a peer; the changed ones are left to fetch; then the package completes', async () => {
    const root = join(dir, 'agent');
    await holdFinished(root, n);
    const local: HeldPackage = { metainfo: n.metainfo, packagePath: finishedPackagePath(root, n.metainfo) };
    const store = await PackageStore.open({ root, metainfo: next.metainfo });
    try {
      const report = await reuseHeldFiles(store, [local]);
      expect(report).toEqual({
        filesFound: 43,
        filesComplete: 43,
        piecesAdopted: unchangedPieces().length,
        bytesAdopted: next.metainfo.totalLength - (next.files.get(CHANGED_SAME_SIZE) as Buffer).length - (next.files.get(CHANGED_LENGTH) as Buffer).length,
        piecesRejected: 0,
        failures: [],
      });
      expect(store.have().indices()).toEqual(unchangedPieces());
      expect(store.have().missing()).toEqual(changedPieces());
      // Served like downloaded pieces.
      const renamed = fileNamed(next.metainfo, RENAMED_TO).file;
      const block = await store.readBlock(renamed.firstPiece + 1, 0, 100);
      expect(block.equals((next.files.get(RENAMED_TO) as Buffer).subarray(PIECE, PIECE + 100))).toBe(true);

      for (const i of store.have().missing()) expect(await store.writePiece(i, pieceData(next, i))).toBe('verified');
      const path = await store.finish();
      expect((await verifyPackageData(next.metainfo, path)).ok).toBe(true);
      for (const [p, data] of next.files) expect((await readFile(join(path, ...p.split('/')))).equals(data)).toBe(true);
    } finally {
      await store.close();
    }
    // The held version is untouched.
    expect((await verifyPackageData(n.metainfo, local.packagePath)).ok).toBe(true);
  });

  test('a fresh file is cloned whole; a file with verified pieces gets only its missing pieces, through writePiece', async () => {
    const store = await PackageStore.open({ root: join(dir, 'methods'), metainfo: next.metainfo });
    try {
      const big = fileNamed(next.metainfo, 'dir4/f19.bin');
      const first = await store.adoptFile(big.index, sourceOf(held, 'dir4/f19.bin'));
      expect(first).toEqual({ pieces: big.file.numPieces, alreadyVerified: 0, adopted: big.file.numPieces, adoptedBytes: MiB + 5, rejected: 0, method: 'clone' });
      // Again: nothing to do.
      expect(await store.adoptFile(big.index, sourceOf(held, 'dir4/f19.bin'))).toMatchObject({ alreadyVerified: big.file.numPieces, adopted: 0, method: 'none' });

      const partly = fileNamed(next.metainfo, RENAMED_TO);
      const some = [partly.file.firstPiece + 2, partly.file.firstPiece + 5];
      for (const i of some) await store.writePiece(i, pieceData(next, i));
      const result = await store.adoptFile(partly.index, sourceOf(held, RENAMED_FROM));
      expect(result).toEqual({ pieces: 16, alreadyVerified: 2, adopted: 14, adoptedBytes: 250 * KiB - 2 * PIECE, rejected: 0, method: 'pieces' });
      expect(piecesOf(partly.file).every((i) => store.hasPiece(i))).toBe(true);
    } finally {
      await store.close();
    }
  });

  test('empty files: nothing to copy, but the source is still checked', async () => {
    const store = await PackageStore.open({ root: join(dir, 'empty'), metainfo: next.metainfo });
    try {
      const empty = fileNamed(next.metainfo, 'dir0/f00.bin');
      const source = sourceOf(held, 'dir0/f00.bin');
      expect(await store.adoptFile(empty.index, source)).toEqual({ pieces: 0, alreadyVerified: 0, adopted: 0, adoptedBytes: 0, rejected: 0, method: 'none' });
      await expect(store.adoptFile(empty.index, sourceOf(held, 'dir1/f01.bin'))).rejects.toMatchObject({ code: 'STORE_REUSE_MISMATCH' });
      await expect(store.adoptFile(empty.index, { ...source, path: join(dir, 'nothing') })).rejects.toMatchObject({ code: 'STORE_REUSE_MISSING' });
    } finally {
      await store.close();
    }
  });

  test('a tampered source (same size, a byte flipped): the pieces it spoils stay missing, by either copy method', async () => {
    const tampered = join(dir, 'tampered.bin');
    await cp(sourceOf(held, 'dir4/f29.bin').path, tampered);
    await flipBit(tampered, 3 * PIECE + 10);
    await flipBit(tampered, MiB + 2);
    const source = { ...sourceOf(held, 'dir4/f29.bin'), path: tampered };
    const target = fileNamed(next.metainfo, 'dir4/f29.bin');
    const bad = [target.file.firstPiece + 3, target.file.firstPiece + target.file.numPieces - 1];

    const fresh = await PackageStore.open({ root: join(dir, 'tampered-clone'), metainfo: next.metainfo });
    try {
      expect(await fresh.adoptFile(target.index, source)).toMatchObject({ method: 'clone', adopted: target.file.numPieces - 2, rejected: 2 });
      expect(piecesOf(target.file).filter((i) => !fresh.hasPiece(i))).toEqual(bad);
      await expect(fresh.readBlock(bad[0] as number, 0, 1)).rejects.toMatchObject({ code: 'STORE_PIECE_NOT_VERIFIED' });
      // The good copy fills the gaps, piece by piece now.
      expect(await fresh.adoptFile(target.index, sourceOf(held, 'dir4/f29.bin'))).toMatchObject({ method: 'pieces', alreadyVerified: target.file.numPieces - 2, adopted: 2 });
      for (const i of fresh.have().missing()) await fresh.writePiece(i, pieceData(next, i));
      expect((await verifyPackageData(next.metainfo, await fresh.finish())).ok).toBe(true);
    } finally {
      await fresh.close();
    }

    const partly = await PackageStore.open({ root: join(dir, 'tampered-pieces'), metainfo: next.metainfo });
    try {
      await partly.writePiece(target.file.firstPiece, pieceData(next, target.file.firstPiece));
      expect(await partly.adoptFile(target.index, source)).toMatchObject({ method: 'pieces', alreadyVerified: 1, adopted: target.file.numPieces - 3, rejected: 2 });
      expect(piecesOf(target.file).filter((i) => !partly.hasPiece(i))).toEqual(bad);
    } finally {
      await partly.close();
    }
  });

  test('a source shorter, longer, missing, a folder, or claiming another root: typed error, nothing lost, the file still completes', async () => {
    const root = join(dir, 'bad-sources');
    const target = fileNamed(next.metainfo, 'dir3/f38.bin');
    const good = sourceOf(held, 'dir3/f38.bin');
    const short = join(dir, 'short.bin');
    const long = join(dir, 'long.bin');
    await cp(good.path, short);
    await truncate(short, good.length - 1);
    await cp(good.path, long);
    await truncate(long, good.length + 1);
    const store = await PackageStore.open({ root, metainfo: next.metainfo });
    try {
      const kept = [target.file.firstPiece + 1, fileNamed(next.metainfo, 'dir0/f05.bin').file.firstPiece];
      for (const i of kept) await store.writePiece(i, pieceData(next, i));
      const cases: [AdoptSource, string][] = [
        [{ ...good, path: short }, 'STORE_REUSE_MISMATCH'],
        [{ ...good, path: long }, 'STORE_REUSE_MISMATCH'],
        [{ ...good, path: join(dir, 'gone.bin') }, 'STORE_REUSE_MISSING'],
        [{ ...good, path: join(dir, 'no-such-folder', 'x.bin') }, 'STORE_REUSE_MISSING'],
        [{ ...good, path: dir }, 'STORE_REUSE_MISSING'],
        [{ ...good, piecesRoot: randomBytes(32) }, 'STORE_REUSE_MISMATCH'],
        [{ ...good, piecesRoot: undefined }, 'STORE_REUSE_MISMATCH'],
        [{ ...good, length: good.length + 1 }, 'STORE_REUSE_MISMATCH'],
      ];
      for (const [source, expected] of cases) {
        const err = await store.adoptFile(target.index, source).catch((e: unknown) => e);
        expect([code(err), isReuseSourceError(err), (err as StoreError).path]).toEqual([expected, true, source.path]);
        expect(store.have().indices()).toEqual(kept.sort((a, b) => a - b));
      }
      await expect(store.adoptFile(next.metainfo.files.length, good)).rejects.toMatchObject({ code: 'STORE_BAD_RANGE' });
      await expect(store.adoptFile(-1, good)).rejects.toMatchObject({ code: 'STORE_BAD_RANGE' });
      expect((await stat(join(store.packagePath, 'dir3', 'f38.bin'))).size).toBe(good.length);
      expect(await store.adoptFile(target.index, good)).toMatchObject({ adopted: target.file.numPieces - 1, rejected: 0 });
    } finally {
      await store.close();
    }
  });

  test('reuseHeldFiles skips a copy that is gone or damaged and takes the next one', async () => {
    const brokenRoot = join(dir, 'broken-held');
    const broken = await holdFinished(brokenRoot, n);
    await rm(join(broken.packagePath, 'dir2'), { recursive: true });
    await truncate(join(broken.packagePath, 'dir1', 'f16.bin'), 10);
    await flipBit(join(broken.packagePath, 'dir0', 'f05.bin'), 100);
    const store = await PackageStore.open({ root: join(dir, 'fallback'), metainfo: next.metainfo });
    try {
      const report = await reuseHeldFiles(store, [broken, held]);
      // dir0/f05.bin: two pieces from the damaged copy, the spoiled one from the good copy.
      expect(report).toMatchObject({ filesFound: 43, filesComplete: 43, piecesAdopted: unchangedPieces().length, piecesRejected: 1 });
      expect(report.failures.map((f) => [f.path.slice(broken.packagePath.length + 1), f.code])).toEqual([
        ['dir1/f16.bin', 'STORE_REUSE_MISMATCH'],
        ...[2, 7, 12, 17, 22, 27, 32, 37, 42, 47].map((i) => [`dir2/f${String(i).padStart(2, '0')}.bin`, 'STORE_REUSE_MISSING']),
      ]);
      expect(store.have().indices()).toEqual(unchangedPieces());
    } finally {
      await store.close();
    }
  });

  test('journal: after a clean close the adopted pieces are trusted; in the state kill -9 leaves they are re-hashed and kept', async () => {
    const root = join(dir, 'journal');
    const killed = join(dir, 'journal-killed');
    const store = await PackageStore.open({ root, metainfo: next.metainfo, journal: { syncEveryPieces: 1_000_000, syncIntervalMs: 1e12 } });
    const report = await reuseHeldFiles(store, [held]);
    expect(report.piecesAdopted).toBe(unchangedPieces().length);
    // Data and WRITTEN records are in the page cache, no DURABLE record yet: what a kill -9 leaves.
    await cp(join(root, 'partial'), join(killed, 'partial'), { recursive: true });
    await store.close();

    for (const [where, trusted, rehashed] of [
      [root, unchangedPieces().length, 0],
      [killed, 0, unchangedPieces().length],
    ] as const) {
      const again = await PackageStore.open({ root: where, metainfo: next.metainfo });
      try {
        expect(again.resume).toMatchObject({ found: 'partial', trusted, rehashed, rehashFailed: 0, journalReset: false });
        expect(again.have().indices()).toEqual(unchangedPieces());
        const bad = new Set((await verifyPackageData(next.metainfo, again.packagePath)).badPieces);
        expect(unchangedPieces().filter((i) => bad.has(i))).toEqual([]);
      } finally {
        await again.close();
      }
    }
  });

  test('a write to a file being cloned waits for the clone, so the clone cannot overwrite it', async () => {
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let copying = (): void => undefined;
    const started = new Promise<void>((resolve) => (copying = resolve));
    const gated: FileSystem = {
      ...nodeFileSystem,
      copyInto: async (from, to) => {
        copying();
        await gate;
        return nodeFileSystem.copyInto(from, to);
      },
    };
    const tampered = join(dir, 'race.bin');
    const target = fileNamed(next.metainfo, 'dir4/f39.bin');
    await cp(sourceOf(held, 'dir4/f39.bin').path, tampered);
    await flipBit(tampered, 7 * PIECE);
    const store = await PackageStore.open({ root: join(dir, 'race'), metainfo: next.metainfo, fs: gated });
    try {
      const adoption = store.adoptFile(target.index, { ...sourceOf(held, 'dir4/f39.bin'), path: tampered });
      await started;
      const piece = target.file.firstPiece + 7;
      let written = false;
      const write = store.writePiece(piece, pieceData(next, piece)).then((r) => {
        written = true;
        return r;
      });
      await new Promise((resolve) => setImmediate(resolve));
      expect(written).toBe(false);
      release();
      expect(await adoption).toMatchObject({ method: 'clone', rejected: 1 });
      expect(await write).toBe('verified');
      const bad = new Set((await verifyPackageData(next.metainfo, store.packagePath)).badPieces);
      expect(bad.has(piece)).toBe(false);
      expect(piecesOf(target.file).every((i) => store.hasPiece(i))).toBe(true);
    } finally {
      await store.close();
    }
  });

  test('a copy that fails half way (disk full): STORE_DISK_FULL, the file keeps its size, nothing verified is lost', async () => {
    let full = true;
    const halfThenFull: FileSystem = {
      ...nodeFileSystem,
      copyInto: async (from, to) => {
        await nodeFileSystem.copyInto(from, to);
        if (!full) return;
        await truncate(to, 1000);
        throw Object.assign(new Error('ENOSPC: no space left on device, copyfile'), { code: 'ENOSPC' });
      },
    };
    const target = fileNamed(next.metainfo, 'dir4/f49.bin');
    const other = fileNamed(next.metainfo, 'dir0/f05.bin');
    const store = await PackageStore.open({ root: join(dir, 'full'), metainfo: next.metainfo, fs: halfThenFull });
    try {
      await store.writePiece(other.file.firstPiece, pieceData(next, other.file.firstPiece));
      const err = await store.adoptFile(target.index, sourceOf(held, 'dir4/f49.bin')).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'STORE_DISK_FULL', path: join(store.packagePath, 'dir4', 'f49.bin') });
      expect(isReuseSourceError(err)).toBe(false);
      expect(store.have().indices()).toEqual([other.file.firstPiece]);
      expect((await stat(join(store.packagePath, 'dir4', 'f49.bin'))).size).toBe(target.file.length);
      full = false;
      expect(await store.adoptFile(target.index, sourceOf(held, 'dir4/f49.bin'))).toMatchObject({ method: 'clone', adopted: target.file.numPieces });
    } finally {
      await store.close();
    }

    // An injected fault before any byte moves is the same case.
    const failing = await PackageStore.open({ root: join(dir, 'full-2'), metainfo: next.metainfo, fs: faultyFs((op) => (op === 'copyInto' ? 'EDQUOT' : undefined)) });
    try {
      await expect(failing.adoptFile(target.index, sourceOf(held, 'dir4/f49.bin'))).rejects.toMatchObject({ code: 'STORE_DISK_FULL' });
      expect(failing.verifiedCount).toBe(0);
    } finally {
      await failing.close();
    }
  });

  test('a read-only source leaves the data file writable (its mode is kept)', async () => {
    const readOnly = join(dir, 'read-only.bin');
    await cp(sourceOf(held, 'dir1/f06.bin').path, readOnly);
    await chmod(readOnly, 0o444);
    const root = join(dir, 'mode');
    const store = await PackageStore.open({ root, metainfo: next.metainfo });
    const target = fileNamed(next.metainfo, 'dir1/f06.bin');
    const before = (await stat(join(store.packagePath, 'dir1', 'f06.bin'))).mode;
    try {
      expect(await store.adoptFile(target.index, { ...sourceOf(held, 'dir1/f06.bin'), path: readOnly })).toMatchObject({ method: 'clone', adopted: target.file.numPieces });
      expect((await stat(join(store.packagePath, 'dir1', 'f06.bin'))).mode).toBe(before);
    } finally {
      await store.close();
    }
  });

  test('an adoption cut short by close says so; what it adopted stays', async () => {
    const root = join(dir, 'closing');
    const store = await PackageStore.open({ root, metainfo: next.metainfo });
    const big = fileNamed(next.metainfo, 'dir4/f19.bin');
    const adoption = store.adoptFile(big.index, sourceOf(held, 'dir4/f19.bin')).catch((e: unknown) => e);
    await store.close();
    expect(code(await adoption)).toBe('STORE_CLOSED');
    const again = await PackageStore.open({ root, metainfo: next.metainfo });
    try {
      expect(again.verifiedCount).toBeGreaterThan(0);
      expect(again.verifiedCount).toBeLessThan(big.file.numPieces);
      const bad = new Set((await verifyPackageData(next.metainfo, again.packagePath)).badPieces);
      expect(again.have().indices().filter((i) => bad.has(i))).toEqual([]);
    } finally {
      await again.close();
    }
  });
});

describe('kill -9 during reuse (a real child process)', () => {
  test('every piece the store calls verified is right, nothing made durable is lost, and reuse finishes the job', async () => {
    const dir = await tempDir();
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 10; i++) files.set(`big/${i}.bin`, randomBytes(2 * MiB + i * 1000));
    for (let i = 0; i < 20; i++) files.set(`small/${i}.bin`, randomBytes(i * 3000));
    const n = await pack(dir, 'v1', files);
    const nextFiles = new Map(files);
    nextFiles.set('big/0.bin', randomBytes(2 * MiB));
    const next = await pack(dir, 'v2', nextFiles);
    const root = join(dir, 'store');
    const held = await holdFinished(root, n);
    // One held file spoiled: its bad piece must never be vouched for, whenever the kill lands.
    await flipBit(join(held.packagePath, 'big', '3.bin'), MiB);
    const nextTorrent = join(dir, 'v2.torrent');
    const heldTorrent = join(dir, 'v1.torrent');
    await writeFile(nextTorrent, next.torrent);
    await writeFile(heldTorrent, n.torrent);
    const cache = join(dir, 'ts-cache');
    await mkdir(cache);
    const spoiled = fileNamed(next.metainfo, 'big/3.bin').file.firstPiece + MiB / PIECE;
    const reusable = next.metainfo.files.filter((f) => f.path.join('/') !== 'big/0.bin').flatMap(piecesOf).filter((i) => i !== spoiled);

    const log: string[] = [];
    let before: number[] = [];
    let kills = 0;
    let done = false;
    for (let round = 0; round < 40 && !done; round++) {
      // About 1,300 pieces to adopt, a journal sync every 16: early kills land within the first
      // files, and the window grows each round so that a busy machine still gets to the end.
      const delay = round === 0 ? 0 : Math.floor(Math.random() * (20 + 10 * round));
      const run = await runChild(join(__dirname, 'fixtures', 'adopter.js'), [root, nextTorrent, heldTorrent, held.packagePath, '16'], cache, delay);
      if (run.killed) kills++;
      else expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      const durable = run.lines.filter((l) => l.startsWith('D ')).flatMap((l) => l.slice(2).split(',').map(Number));
      const store = await PackageStore.open({ root, metainfo: next.metainfo });
      try {
        const have = store.have();
        expect(before.filter((i) => !have.get(i))).toEqual([]);
        expect(durable.filter((i) => !have.get(i))).toEqual([]);
        const bad = new Set((await verifyPackageData(next.metainfo, store.packagePath)).badPieces);
        expect(have.indices().filter((i) => bad.has(i))).toEqual([]);
        expect(have.get(spoiled)).toBe(false);
        log.push(`round ${round}: ${run.killed ? `SIGKILL ${delay} ms after OPENING` : 'ran to the end'}; ${durable.length} made durable; reopen: ${have.count} verified (${store.resume.trusted} trusted, ${store.resume.rehashed} re-hashed)`);
        done = run.lines.some((l) => l.startsWith('DONE '));
        before = have.indices();
      } finally {
        await store.close();
      }
    }
    console.log(`kill -9 during reuse:\n${log.join('\n')}`);
    expect(done).toBe(true);
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(before).toEqual(reusable);
  }, 60_000);
});

interface Run {
  lines: string[];
  killed: boolean;
  code: number | null;
  stderr: string;
}

/** Runs a fixture; SIGKILLs it `killAfterMs` after it prints OPEN (unless it is done by then). */
function runChild(script: string, args: string[], cache: string, killAfterMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, SHOAL_TS_CACHE: cache }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!timer && out.includes('OPEN ')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      resolve({ lines: out.split('\n').filter((l) => l.length > 0), killed: signal === 'SIGKILL', code: exitCode, stderr });
    });
  });
}
