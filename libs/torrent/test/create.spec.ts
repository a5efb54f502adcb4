import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  BLOCK_SIZE,
  BlockHashPool,
  FileMerkleHasher,
  MerkleError,
  PackError,
  blockHashes,
  createPackage,
  sharedBuffer,
  verifyPackageData,
} from '../src';

const MiB = 1024 * 1024;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-create-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function tree(name: string, files: Record<string, Buffer>): Promise<string> {
  const root = join(dir, name);
  for (const [path, data] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), data);
  }
  return root;
}

describe('FileMerkleHasher.updateHashed', () => {
  const data = randomBytes(5 * BLOCK_SIZE + 123);

  test('leaf hashes computed elsewhere give the same tree as hashing here', () => {
    const here = new FileMerkleHasher(2 * BLOCK_SIZE);
    here.update(data);
    const elsewhere = new FileMerkleHasher(2 * BLOCK_SIZE);
    elsewhere.updateHashed(blockHashes(data.subarray(0, 3 * BLOCK_SIZE)), 3 * BLOCK_SIZE);
    elsewhere.updateHashed(blockHashes(data.subarray(3 * BLOCK_SIZE)), data.length - 3 * BLOCK_SIZE);
    expect(elsewhere.digest()).toEqual(here.digest());
  });

  test('refuses a hash count that does not match the byte count, and data after a short block', () => {
    const hasher = new FileMerkleHasher(BLOCK_SIZE);
    expect(() => hasher.updateHashed(blockHashes(data.subarray(0, BLOCK_SIZE)), 2 * BLOCK_SIZE)).toThrow(MerkleError);
    hasher.updateHashed(blockHashes(data.subarray(0, 100)), 100);
    expect(() => hasher.update(data)).toThrow(/after the short final block/);
    expect(() => hasher.updateHashed(blockHashes(data.subarray(0, BLOCK_SIZE)), BLOCK_SIZE)).toThrow(MerkleError);
  });

  test('refuses to mix with a partial block fed through update', () => {
    const hasher = new FileMerkleHasher(BLOCK_SIZE);
    hasher.update(data.subarray(0, 10));
    expect(() => hasher.updateHashed(blockHashes(data.subarray(0, BLOCK_SIZE)), BLOCK_SIZE)).toThrow(MerkleError);
  });
});

describe('BlockHashPool', () => {
  test('hashes blocks in shared memory exactly as blockHashes does, in submission order', async () => {
    const pool = new BlockHashPool(2);
    try {
      const chunks = [3 * BLOCK_SIZE, BLOCK_SIZE + 7, 1].map((n) => {
        const b = sharedBuffer(n);
        randomBytes(n).copy(b);
        return b;
      });
      const results = await Promise.all(chunks.map((c) => pool.hashBlocks(c)));
      results.forEach((hashes, i) => expect(hashes.equals(blockHashes(chunks[i] as Buffer))).toBe(true));
    } finally {
      await pool.close();
    }
  });

  test('refuses memory it cannot share and sizes that are not thread counts', async () => {
    const pool = new BlockHashPool(1);
    try {
      await expect(pool.hashBlocks(Buffer.alloc(10))).rejects.toMatchObject({ code: 'HASH_POOL_NOT_SHARED' });
    } finally {
      await pool.close();
    }
    expect(() => new BlockHashPool(0)).toThrow(/positive integer/);
  });
});

describe('createPackage', () => {
  test('worker threads, thread counts and chunk sizes do not change the package', async () => {
    const root = await tree('threads', {
      'a.bin': randomBytes(9 * MiB + 5),
      'sub/b.bin': randomBytes(8 * MiB),
      'sub/c.bin': randomBytes(BLOCK_SIZE - 1),
      'empty': Buffer.alloc(0),
    });
    const variants = [
      { hashThreads: 0 },
      { hashThreads: 1 },
      { hashThreads: 3, readChunkSize: BLOCK_SIZE },
      { hashThreads: 2, readChunkSize: 5 * BLOCK_SIZE },
      {},
    ];
    const hashes = [];
    for (const variant of variants) {
      const { bytes } = await createPackage(root, { pieceLength: 64 * 1024, ...variant });
      hashes.push(bytes.toString('hex'));
    }
    expect(new Set(hashes).size).toBe(1);
  });

  test('reports progress up to the total, file by file', async () => {
    const root = await tree('progress', { 'x': randomBytes(3 * MiB), 'y': randomBytes(1000) });
    const seen: { bytesDone: number; file: string }[] = [];
    const { metainfo } = await createPackage(root, { readChunkSize: MiB, onProgress: (p) => seen.push(p) });
    expect(seen.map((p) => p.bytesDone)).toEqual([MiB, 2 * MiB, 3 * MiB, 3 * MiB + 1000]);
    expect(seen.map((p) => p.file)).toEqual(['x', 'x', 'x', 'y']);
    expect(metainfo.totalLength).toBe(3 * MiB + 1000);
  });

  test('typed errors for what cannot be packed', async () => {
    const code = (p: Promise<unknown>) => p.then(() => 'resolved', (err: PackError) => err.code);
    expect(await code(createPackage(join(dir, 'absent')))).toBe('PACK_NOT_FOUND');
    await mkdir(join(dir, 'hollow', 'empty-dir'), { recursive: true });
    expect(await code(createPackage(join(dir, 'hollow')))).toBe('PACK_EMPTY');
    const withLink = await tree('with-link', { real: Buffer.from('x') });
    await symlink(join(withLink, 'real'), join(withLink, 'link'));
    expect(await code(createPackage(withLink))).toBe('PACK_UNSUPPORTED_FILE');
    const withFifo = await tree('with-fifo', { real: Buffer.from('x') });
    execFileSync('mkfifo', [join(withFifo, 'pipe')]);
    expect(await code(createPackage(withFifo))).toBe('PACK_UNSUPPORTED_FILE');
    const fine = await tree('fine', { f: Buffer.from('data') });
    expect(await code(createPackage(fine, { pieceLength: 1000 }))).toBe('PACK_BAD_OPTION');
    expect(await code(createPackage(fine, { readChunkSize: 1000 }))).toBe('PACK_BAD_OPTION');
    expect(await code(createPackage(fine, { urlList: ['file:///etc/passwd'] }))).toBe('METAINFO_BAD_URL');
  });
});

describe('verifyPackageData', () => {
  test('says which files are missing, short or corrupt and which pieces are bad', async () => {
    const files = { 'a': randomBytes(3 * 64 * 1024), 'b': randomBytes(70_000), 'c': randomBytes(10) };
    const root = await tree('verify', files);
    const { metainfo } = await createPackage(root, { pieceLength: 64 * 1024 });
    expect((await verifyPackageData(metainfo, root)).ok).toBe(true);
    const damaged = Buffer.from(files.a);
    damaged[64 * 1024 + 1] = (damaged[64 * 1024 + 1] as number) ^ 1;
    await writeFile(join(root, 'a'), damaged);
    await truncate(join(root, 'b'), 60_000);
    await rm(join(root, 'c'));
    const report = await verifyPackageData(metainfo, root);
    expect(report.ok).toBe(false);
    expect(report.files).toEqual([
      { path: 'verify/a', status: 'corrupt', badPieces: [1] },
      { path: 'verify/b', status: 'wrong-size', badPieces: [3, 4], detail: '60000 bytes, expected 70000' },
      { path: 'verify/c', status: 'missing', badPieces: [5] },
    ]);
    expect(report.badPieces).toEqual([1, 3, 4, 5]);
  });
});
