import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Metainfo, createPackage, diskPath } from '../../src';
import { TREES, type TreeSpec, writeTree } from './trees';

/**
 * Conformance with libtorrent 2.0: for every tree and piece length, Shoal's v2 info-hash, piece
 * layers and file list equal libtorrent's. libtorrent is asked live (Debian python3-libtorrent);
 * where it is absent the committed vectors (recorded from it) stand in, unless
 * SHOAL_REQUIRE_LIBTORRENT=1 (set by CI), which makes its absence a failure.
 * SHOAL_UPDATE_VECTORS=1 rewrites the vectors from the live oracle.
 */
interface Described {
  infoHash: string;
  /** pieces root (hex) -> SHA-256 of the layer: exact, and keeps the vectors small. */
  pieceLayers: Record<string, string>;
  files: { path: string; length: number; piecesRoot: string | null }[];
}

/** Debian's interpreter: python3-libtorrent is importable only there (see ../shared/STACK.md). */
const PYTHON = process.env.SHOAL_LIBTORRENT_PYTHON ?? '/usr/bin/python3';
const ORACLE = join(__dirname, 'libtorrent_oracle.py');
const VECTORS = join(__dirname, 'libtorrent-vectors.json');

const liveOracle = spawnSync(PYTHON, ['-c', 'import libtorrent'], { stdio: 'ignore' }).status === 0;
if (!liveOracle && process.env.SHOAL_REQUIRE_LIBTORRENT === '1') {
  throw new Error(`SHOAL_REQUIRE_LIBTORRENT=1 but ${PYTHON} cannot import libtorrent (apt-get install python3-libtorrent)`);
}

function caseKey(tree: TreeSpec, pieceLength: number): string {
  return `${tree.root}@${pieceLength}`;
}

function digest(layer: Buffer): string {
  return createHash('sha256').update(layer).digest('hex');
}

function askLibtorrent(paths: string[], pieceLength: number): Described[] {
  const run = spawnSync(PYTHON, [ORACLE, String(pieceLength), ...paths], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`libtorrent oracle failed: ${run.stderr}`);
  return run.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const d = JSON.parse(line) as Described;
      const layers = Object.entries(d.pieceLayers).map(([root, hex]) => [root, digest(Buffer.from(hex, 'hex'))]);
      return { ...d, pieceLayers: Object.fromEntries(layers) };
    });
}

function describeOurs(meta: Metainfo): Described {
  return {
    infoHash: meta.infoHash.toString('hex'),
    pieceLayers: Object.fromEntries(
      [...meta.pieceLayers].map(([root, layer]) => [Buffer.from(root, 'latin1').toString('hex'), digest(layer)]),
    ),
    files: meta.files.map((f) => ({
      path: diskPath(meta, f).join('/'),
      length: f.length,
      piecesRoot: f.piecesRoot?.toString('hex') ?? null,
    })),
  };
}

/** Files compared by path: libtorrent and the file tree may list them in different orders. */
function normalised(d: Described): Described {
  return {
    infoHash: d.infoHash,
    pieceLayers: d.pieceLayers,
    files: [...d.files]
      .map((f) => ({ path: f.path, length: f.length, piecesRoot: f.piecesRoot }))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)),
  };
}

function readVectors(): Record<string, Described> {
  if (!existsSync(VECTORS)) return {};
  return (JSON.parse(readFileSync(VECTORS, 'utf8')) as { cases: Record<string, Described> }).cases;
}

describe(`v2 metainfo matches libtorrent 2.0 (${liveOracle ? 'live libtorrent' : 'committed vectors'})`, () => {
  let dir: string;
  const vectors = readVectors();
  const recorded: Record<string, Described> = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-conformance-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    if (process.env.SHOAL_UPDATE_VECTORS === '1' && liveOracle) {
      const cases = Object.fromEntries(Object.entries(recorded).sort(([a], [b]) => (a < b ? -1 : 1)));
      const fixture = {
        _comment:
          'TEST FIXTURE: v2 info-hashes and piece layers recorded from libtorrent for the trees in trees.ts ' +
          '(SHOAL_UPDATE_VECTORS=1 rewrites it). Used only where libtorrent is not installed.',
        libtorrent: spawnSync(PYTHON, ['-c', 'import libtorrent; print(libtorrent.__version__)'], { encoding: 'utf8' }).stdout.trim(),
        cases,
      };
      writeFileSync(VECTORS, `${JSON.stringify(fixture, null, 1)}\n`);
    }
  });

  test.each(TREES.map((tree) => [tree.root, tree] as const))('%s', async (_root, tree) => {
    await writeTree(dir, tree);
    const path = join(dir, tree.root);
    const expected = liveOracle ? undefined : tree.pieceLengths.map((pl) => vectors[caseKey(tree, pl)]);
    const oracle = liveOracle ? tree.pieceLengths.flatMap((pl) => askLibtorrent([path], pl)) : expected;
    for (const [i, pieceLength] of tree.pieceLengths.entries()) {
      const theirs = oracle?.[i];
      if (!theirs) throw new Error(`no libtorrent vector for ${caseKey(tree, pieceLength)}: run with SHOAL_UPDATE_VECTORS=1`);
      const { metainfo } = await createPackage(path, { pieceLength });
      const ours = normalised(describeOurs(metainfo));
      expect({ case: caseKey(tree, pieceLength), ...ours }).toEqual({ case: caseKey(tree, pieceLength), ...normalised(theirs) });
      // The committed vectors must keep agreeing with the live oracle, or the fallback lies.
      if (liveOracle && process.env.SHOAL_UPDATE_VECTORS !== '1') {
        const vector = vectors[caseKey(tree, pieceLength)];
        expect(vector && normalised(vector).infoHash).toBe(ours.infoHash);
      }
      recorded[caseKey(tree, pieceLength)] = normalised(theirs);
    }
    await rm(path, { recursive: true, force: true });
  }, 300_000);

  test('covers at least 8 trees including a file of at least 1 GiB', () => {
    expect(TREES.length).toBeGreaterThanOrEqual(8);
    expect(Math.max(...TREES.flatMap((t) => t.files.map((f) => f.length)))).toBeGreaterThanOrEqual(1024 ** 3);
  });
});
