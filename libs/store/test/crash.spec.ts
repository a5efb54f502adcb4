import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { verifyPackageData } from '@shoal/torrent';
import { Bitfield, PackageStore } from '../src';
import { KiB, MiB, cleanupTemp, makePackage, tempDir } from './support';

afterAll(cleanupTemp);

const WRITER = join(__dirname, 'fixtures', 'writer.js');
const CONNECTIONS = 4;
const SYNC_EVERY = 8;

interface Run {
  lines: string[];
  killed: boolean;
  code: number | null;
  stderr: string;
}

/** Runs the writer; SIGKILLs it `killAfterMs` after it starts opening the store (unless it is done). */
function runWriter(args: string[], cache: string, killAfterMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, ...args], {
      env: { ...process.env, SHOAL_TS_CACHE: cache },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!timer && out.includes('OPENING\n')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(guard);
      resolve({ lines: out.split('\n').filter((l) => l.length > 0), killed: signal === 'SIGKILL', code, stderr });
    });
  });
}

describe('kill -9 at random moments (a real child process)', () => {
  test('no piece reported written or durable is lost, every piece reported verified verifies, and the package completes', async () => {
    const dir = await tempDir();
    const pkg = await makePackage(dir, 'crash', { 'payload.bin': 8 * MiB }, 16 * KiB, { single: true });
    const n = pkg.metainfo.numPieces;
    const torrent = join(dir, 'payload.torrent');
    await writeFile(torrent, pkg.torrent);
    const cache = join(dir, 'ts-cache');
    await mkdir(cache);
    const root = join(dir, 'store');
    const args = [root, torrent, pkg.source, String(CONNECTIONS), String(SYNC_EVERY)];

    const log: string[] = [];
    let before = new Bitfield(n);
    let kills = 0;
    let finished = false;
    for (let round = 0; round < 30 && !finished; round++) {
      // Round 0 dies inside open; the rest anywhere from open to finish. A child writes about 3
      // pieces per ms here, so 40 ms at most keeps the 512 pieces spread over several kills.
      const delay = round === 0 ? 0 : Math.floor(Math.random() * 40);
      const run = await runWriter(args, cache, delay);
      if (!run.killed) {
        expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      } else {
        kills++;
      }
      const started = run.lines.filter((l) => l.startsWith('S ')).map((l) => Number(l.slice(2)));
      const written = run.lines.filter((l) => l.startsWith('W ')).map((l) => Number(l.slice(2)));
      const durable = run.lines.filter((l) => l.startsWith('D ')).flatMap((l) => l.slice(2).split(',').map(Number));
      const phase = !run.lines.some((l) => l.startsWith('OPEN '))
        ? 'during open'
        : run.lines.includes('FINISHED')
          ? 'after finishing'
          : written.length + before.count >= n
            ? 'during finish'
            : 'while writing';

      const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
      try {
        const have = store.have();
        // Nothing verified before this round, nothing it wrote, nothing it made durable is gone.
        expect(before.indices().filter((i) => !have.get(i))).toEqual([]);
        expect(written.filter((i) => !have.get(i))).toEqual([]);
        expect(durable.filter((i) => !have.get(i))).toEqual([]);
        // Work lost to the kill: pieces handed to the store that must be fetched again. At most
        // the ones in flight, one per connection.
        const lost = started.filter((i) => !have.get(i));
        expect(lost.length).toBeLessThanOrEqual(CONNECTIONS);
        // Every piece the store calls verified really is.
        const bad = new Set((await verifyPackageData(pkg.metainfo, store.packagePath)).badPieces);
        expect(have.indices().filter((i) => bad.has(i))).toEqual([]);
        const r = store.resume;
        log.push(
          `round ${round}: ${run.killed ? `SIGKILL ${delay} ms after OPENING, ${phase}` : 'ran to the end'}; ` +
            `${written.length} written (${durable.length} durable) this round; reopen: ${have.count}/${n} verified, ` +
            `${started.filter((i) => !have.get(i)).length} in-flight pieces lost ` +
            `(${r.trusted} trusted, ${r.rehashed} re-hashed, ${r.rehashFailed} failed, ` +
            `${have.count - before.count - written.length} more than reported, ${r.badRecords} bad / ${r.tornBytes} torn journal bytes)`,
        );
        finished = store.finished;
        before = have;
      } finally {
        await store.close();
      }
    }
    console.log(`kill -9 rounds (${CONNECTIONS} connections, journal sync every ${SYNC_EVERY} pieces):\n${log.join('\n')}`);
    expect(kills).toBeGreaterThanOrEqual(3);

    const store = await PackageStore.open({ root, metainfo: pkg.metainfo });
    try {
      for (const i of store.have().missing()) await store.writePiece(i, await pkg.piece(i));
      const path = await store.finish();
      expect((await readFile(path)).equals(pkg.files.get('payload.bin') as Buffer)).toBe(true);
      expect((await verifyPackageData(pkg.metainfo, path)).ok).toBe(true);
    } finally {
      await store.close();
    }
  }, 120_000);
});
