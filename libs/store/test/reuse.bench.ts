/**
 * File reuse benchmark: how fast `PackageStore.adoptFile` takes one large file from a held copy,
 * by each copy method, against two references on the same file:
 *   - copy only: `fs.copyFile` (reflink where the filesystem can), nothing verified;
 *   - hash only: reading the file and hashing it as pieces, nothing written.
 * 'clone' is the method adoptFile uses for a file with no verified piece; 'pieces' the one for a
 * partly present file (forced here by verifying the first piece beforehand). Times include making
 * the adopted pieces durable (`flush`). Also reports the free space each method used: a reflink
 * shares the source's extents.
 *
 * Usage (no build needed):
 *   node -r ./libs/store/test/fixtures/ts-register.js libs/store/test/reuse.bench.ts \
 *     [--dir /var/tmp] [--size-mib 256] [--piece-kib 128] [--runs 3] [--cold]
 * --cold drops the page cache before each timed run (needs root; affects the whole machine).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FileHashTree, createPackage, pieceLayerOf } from '@shoal/torrent';
import { type AdoptSource, PackageStore } from '../src';

const MiB = 1024 * 1024;

async function dropCaches(cold: boolean): Promise<void> {
  if (!cold) return;
  const control = await open('/proc/sys/vm/drop_caches', 'w');
  try {
    await control.write('3\n');
  } finally {
    await control.close();
  }
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Everything a run left in `work`, so runs do not add up (a small filesystem fills up). */
async function removeRunFiles(work: string, keep: string): Promise<void> {
  for (const entry of await readdir(work)) {
    const path = join(work, entry);
    if (!keep.startsWith(`${path}/`)) await rm(path, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string', default: tmpdir() },
      'size-mib': { type: 'string', default: '256' },
      'piece-kib': { type: 'string', default: '128' },
      runs: { type: 'string', default: '3' },
      cold: { type: 'boolean', default: false },
    },
  });
  const size = Number(values['size-mib']) * MiB;
  const pieceLength = Number(values['piece-kib']) * 1024;
  const runs = Number(values.runs);
  const work = await mkdtemp(join(values.dir, 'shoal-reuse-bench-'));
  try {
    // The held copy: the file alone. The target: the same file next to a new one, another package.
    const held = join(work, 'held', 'payload.bin');
    await mkdir(join(work, 'held'));
    const chunk = randomBytes(16 * MiB);
    const out = await open(held, 'w');
    for (let done = 0; done < size; done += chunk.length) {
      chunk.writeUInt32LE(done / chunk.length, 0);
      await out.write(chunk, 0, Math.min(chunk.length, size - done), done);
    }
    await out.close();
    await mkdir(join(work, 'v2'));
    await copyFile(held, join(work, 'v2', 'payload.bin'));
    await writeFile(join(work, 'v2', 'VERSION'), '2\n');
    const { metainfo } = await createPackage(join(work, 'v2'), { pieceLength });
    const fileIndex = metainfo.files.findIndex((f) => f.path[0] === 'payload.bin');
    const file = metainfo.files[fileIndex];
    if (!file?.piecesRoot) throw new Error('payload.bin not packed');
    await rm(join(work, 'v2'), { recursive: true });
    const source: AdoptSource = { path: held, piecesRoot: file.piecesRoot, length: file.length };
    const tree = new FileHashTree(file.length, pieceLength, file.piecesRoot, pieceLayerOf(metainfo, file));

    const contenders: Record<string, (run: number) => Promise<number>> = {
      'adoptFile clone': async (run) => {
        const store = await PackageStore.open({ root: join(work, `clone-${run}`), metainfo });
        await dropCaches(values.cold);
        const start = process.hrtime.bigint();
        const result = await store.adoptFile(fileIndex, source);
        await store.flush();
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        await store.close();
        if (result.method !== 'clone' || result.adopted !== file.numPieces) throw new Error(JSON.stringify(result));
        return ms;
      },
      'adoptFile pieces': async (run) => {
        const store = await PackageStore.open({ root: join(work, `pieces-${run}`), metainfo });
        const first = Buffer.alloc(tree.pieceSize(0));
        const input = await open(held, 'r');
        await input.read(first, 0, first.length, 0);
        await input.close();
        await store.writePiece(file.firstPiece, first);
        await store.flush();
        await dropCaches(values.cold);
        const start = process.hrtime.bigint();
        const result = await store.adoptFile(fileIndex, source);
        await store.flush();
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        await store.close();
        if (result.method !== 'pieces' || result.adopted !== file.numPieces - 1) throw new Error(JSON.stringify(result));
        return ms;
      },
      'copy only (copyFile, FICLONE)': async (run) => {
        const target = join(work, `copy-${run}.bin`);
        await dropCaches(values.cold);
        const start = process.hrtime.bigint();
        await copyFile(held, target, constants.COPYFILE_FICLONE);
        const handle = await open(target, 'r+');
        await handle.datasync();
        await handle.close();
        return Number(process.hrtime.bigint() - start) / 1e6;
      },
      'hash only (read + verify pieces)': async () => {
        await dropCaches(values.cold);
        const start = process.hrtime.bigint();
        const input = await open(held, 'r');
        const piece = Buffer.allocUnsafe(pieceLength);
        for (let local = 0; local < file.numPieces; local++) {
          const length = tree.pieceSize(local);
          await input.read(piece, 0, length, local * pieceLength);
          if (!tree.verifyPiece(local, piece.subarray(0, length))) throw new Error(`piece ${local} does not verify`);
        }
        await input.close();
        return Number(process.hrtime.bigint() - start) / 1e6;
      },
    };

    console.log(`${size / MiB} MiB file, ${pieceLength / 1024} KiB pieces (${file.numPieces}), ${runs} runs, ${values.cold ? 'cold' : 'warm'} page cache, in ${work}`);
    for (const [name, run] of Object.entries(contenders)) {
      const times: number[] = [];
      let used = 0;
      for (let i = 0; i < runs; i++) {
        const free = await freeBytes(work);
        times.push(await run(i));
        used = Math.max(used, free - (await freeBytes(work)));
        await removeRunFiles(work, held);
      }
      const best = Math.min(...times);
      const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)] as number;
      console.log(
        `${name.padEnd(34)} best ${best.toFixed(0).padStart(5)} ms (${((size / MiB / best) * 1000).toFixed(0).padStart(4)} MiB/s)  ` +
          `median ${median.toFixed(0).padStart(5)} ms (${((size / MiB / median) * 1000).toFixed(0).padStart(4)} MiB/s)  ` +
          `free space used ${(used / MiB).toFixed(0)} MiB`,
      );
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
