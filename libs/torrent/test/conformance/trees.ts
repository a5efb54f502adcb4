import { createHash } from 'node:crypto';
import { chmod, mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * The trees Shoal's packer must hash exactly as libtorrent 2.0 does. Content is deterministic
 * (derived from the path), so committed vectors stay valid wherever the trees are rebuilt.
 */
export interface TreeSpec {
  /** What `pack` is pointed at: a file name, or a folder name that prefixes every path. */
  root: string;
  files: { path: string; length: number; executable?: boolean }[];
  pieceLengths: number[];
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const TREES: TreeSpec[] = [
  { root: 'single.bin', files: [{ path: 'single.bin', length: 100_000 }], pieceLengths: [16 * KiB, 64 * KiB] },
  { root: 'one-byte.bin', files: [{ path: 'one-byte.bin', length: 1 }], pieceLengths: [16 * KiB] },
  // libtorrent turns a folder holding one file into a single-file torrent named after the file.
  { root: 'onefile', files: [{ path: 'onefile/payload.bin', length: 200_000 }], pieceLengths: [16 * KiB, 64 * KiB] },
  {
    root: 'nested',
    files: [
      { path: 'nested/README', length: 1_000 },
      { path: 'nested/bin/tool', length: 50_000, executable: true },
      { path: 'nested/lib/a/b/c/deep.dat', length: 70_000 },
      { path: 'nested/lib/z.so', length: 300_000 },
      { path: 'nested/share/doc/x.txt', length: 10 },
      { path: 'nested/.hidden', length: 3 },
    ],
    pieceLengths: [16 * KiB, 64 * KiB],
  },
  {
    root: 'empties',
    files: [
      { path: 'empties/a.empty', length: 0 },
      { path: 'empties/b', length: 5_000 },
      { path: 'empties/sub/c.empty', length: 0 },
      { path: 'empties/sub/d', length: 1 },
    ],
    pieceLengths: [16 * KiB],
  },
  {
    root: 'block-edges',
    files: [16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 32 * KiB - 1, 32 * KiB, 32 * KiB + 1].map((length) => ({
      path: `block-edges/f${length}`,
      length,
    })),
    pieceLengths: [16 * KiB, 32 * KiB],
  },
  {
    root: 'piece-edges',
    files: [64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 128 * KiB - 1, 128 * KiB, 128 * KiB + 1, 192 * KiB].map((length) => ({
      path: `piece-edges/f${length}`,
      length,
    })),
    pieceLengths: [64 * KiB, 128 * KiB],
  },
  {
    root: 'unicode',
    files: [
      { path: 'unicode/données/日本語.txt', length: 4_000 },
      { path: 'unicode/café ü.bin', length: 20_000 },
      { path: 'unicode/emoji-🚀.dat', length: 33_000 },
      { path: 'unicode/Ελληνικά/файл', length: 17 },
    ],
    pieceLengths: [16 * KiB],
  },
  { root: 'big.bin', files: [{ path: 'big.bin', length: 1024 * MiB + 12_345 }], pieceLengths: [256 * KiB, 4 * MiB] },
];

/** Writes every file of `tree` under `dir` with content derived from its path. */
export async function writeTree(dir: string, tree: TreeSpec): Promise<void> {
  for (const file of tree.files) {
    const absolute = join(dir, file.path);
    await mkdir(dirname(absolute), { recursive: true });
    await writeDeterministic(absolute, file.path, file.length);
    if (file.executable) await chmod(absolute, 0o755);
  }
}

const PATTERN_SIZE = MiB;

async function writeDeterministic(path: string, seed: string, length: number): Promise<void> {
  const pattern = Buffer.alloc(PATTERN_SIZE);
  for (let i = 0; i < PATTERN_SIZE / 32; i++) {
    createHash('sha256').update(seed).update(String(i)).digest().copy(pattern, i * 32);
  }
  const handle = await open(path, 'w');
  try {
    // Stamp each MiB with its index so no two blocks of a large file are equal.
    for (let offset = 0, index = 0; offset < length; offset += PATTERN_SIZE, index++) {
      pattern.writeUInt32BE(index, 0);
      await handle.write(pattern, 0, Math.min(PATTERN_SIZE, length - offset), offset);
    }
  } finally {
    await handle.close();
  }
}
