import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ReleaseStates, isRolloutId, progressOf } from '../src/daemon/release-states';

/** The agent's release states file: real files in a temp folder. */
let dir: string;
let path: string;
let warnings: { details: object; message: string }[];
const log = { warn: (details: object, message: string) => warnings.push({ details, message }) };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-states-'));
  path = join(dir, 'releases.json');
  warnings = [];
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('states survive a reload: phases, counters, the install record; no temporary file is left', async () => {
  const states = await ReleaseStates.load(path, log);
  states.update('app', '1.0.0', { phase: 'RELEASE_PHASE_FETCHING', rolloutId: 'r-1', bandwidthClass: 'background', totalPieces: 10 });
  const { state, saved } = states.update('app', '1.0.0', { phase: 'RELEASE_PHASE_INSTALLED', verifiedPieces: 10, exitCode: 0, message: 'done\n', install: { succeeded: true, rolloutId: 'r-1' } });
  await saved;
  expect(progressOf(state)).toEqual({
    name: 'app',
    version: '1.0.0',
    phase: 'RELEASE_PHASE_INSTALLED',
    verifiedPieces: 10,
    totalPieces: 10,
    bytesFromPeers: 0,
    bytesFromOrigin: 0,
    message: 'done\n',
    rolloutId: 'r-1',
    exitCode: 0,
  });
  const again = await ReleaseStates.load(path, log);
  expect(again.get('app', '1.0.0')).toEqual(state);
  expect(again.get('app', '2.0.0')).toBeUndefined();
  expect(await readdir(dir)).toEqual(['releases.json']);
  expect(warnings).toEqual([]);
});

test('only the newest states are kept', async () => {
  const states = await ReleaseStates.load(path, log, 3);
  for (let i = 0; i < 5; i++) {
    states.update('app', `1.0.${i}`, { phase: 'RELEASE_PHASE_COMPLETE' });
    await new Promise((r) => setTimeout(r, 2));
  }
  await states.flush();
  expect(states.list().map((s) => s.version)).toEqual(['1.0.4', '1.0.3', '1.0.2']);
  expect((await ReleaseStates.load(path, log, 3)).list().map((s) => s.version)).toEqual(['1.0.4', '1.0.3', '1.0.2']);
  // A file written with a larger bound is cut on load.
  expect((await ReleaseStates.load(path, log, 2)).list().map((s) => s.version)).toEqual(['1.0.4', '1.0.3']);
});

test('many changes at once coalesce into few writes, the last state winning', async () => {
  const states = await ReleaseStates.load(path, log);
  const saves = Array.from({ length: 200 }, (_, i) => states.update('app', '1.0.0', { verifiedPieces: i }).saved);
  await Promise.all(saves);
  const onDisk = JSON.parse(await readFile(path, 'utf8')) as { releases: { verifiedPieces: number }[] };
  expect(onDisk.releases[0]?.verifiedPieces).toBe(199);
});

test('noted changes stay in memory until the next save: an update or a flush writes them', async () => {
  const states = await ReleaseStates.load(path, log);
  await states.update('app', '1.0.0', { phase: 'RELEASE_PHASE_FETCHING', totalPieces: 10 }).saved;
  const onDisk = async () => (await ReleaseStates.load(path, log)).get('app', '1.0.0');
  expect(states.note('app', '1.0.0', { verifiedPieces: 3, bytesFromPeers: 100 })).toMatchObject({ verifiedPieces: 3, bytesFromPeers: 100 });
  expect(states.get('app', '1.0.0')?.verifiedPieces).toBe(3);
  expect((await onDisk())?.verifiedPieces).toBe(0);
  // An update saves what was noted before it.
  states.note('app', '1.0.0', { verifiedPieces: 4 });
  await states.update('app', '2.0.0', { phase: 'RELEASE_PHASE_FETCHING' }).saved;
  expect((await onDisk())?.verifiedPieces).toBe(4);
  // So does a flush (the agent stopping), and only when something is unsaved.
  states.note('app', '1.0.0', { verifiedPieces: 5 });
  await states.flush();
  expect((await onDisk())?.verifiedPieces).toBe(5);
  // Every save renames a new file over the old one: the same inode means no write.
  const before = (await stat(path)).ino;
  await states.flush();
  expect((await stat(path)).ino).toBe(before);
  expect(await readdir(dir)).toEqual(['releases.json']);
});

test('a corrupt, truncated or foreign file is ignored with a warning, never a crash', async () => {
  const good = await ReleaseStates.load(path, log);
  await good.update('app', '1.0.0', { phase: 'RELEASE_PHASE_COMPLETE' }).saved;
  const bytes = await readFile(path, 'utf8');
  for (const text of ['', 'not json', bytes.slice(0, bytes.length / 2), '{"version":2,"releases":[]}', '[]', 'null', '{"version":1,"releases":{}}']) {
    warnings = [];
    await writeFile(path, text);
    const states = await ReleaseStates.load(path, log);
    expect(states.list()).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.message).toBe('release states file is corrupt; ignoring it');
  }
});

test('malformed entries are dropped one by one; the good ones stay', async () => {
  const states = await ReleaseStates.load(path, log);
  await states.update('app', '1.0.0', { phase: 'RELEASE_PHASE_COMPLETE' }).saved;
  const file = JSON.parse(await readFile(path, 'utf8')) as { version: number; releases: Record<string, unknown>[] };
  const good = file.releases[0] as Record<string, unknown>;
  const bad = [
    { ...good, name: '../etc' },
    { ...good, version: '' },
    { ...good, phase: 'RELEASE_PHASE_EXPLODED' },
    { ...good, verifiedPieces: -1 },
    { ...good, bytesFromPeers: 1.5 },
    { ...good, message: 'x'.repeat(9000) },
    { ...good, rolloutId: 'has space' },
    { ...good, exitCode: '0' },
    { ...good, bandwidthClass: 'turbo' },
    { ...good, install: { succeeded: 'yes', rolloutId: '' } },
    { ...good, updatedAt: undefined },
    null,
    'text',
  ];
  await writeFile(path, JSON.stringify({ version: 1, releases: [...bad, { ...good, name: 'kept' }] }));
  const loaded = await ReleaseStates.load(path, log);
  expect(loaded.list().map((s) => s.name)).toEqual(['kept']);
  expect(warnings).toEqual([{ details: { path, dropped: bad.length }, message: 'ignored malformed entries of the release states file' }]);
});

test('whatever the file holds, loading never throws', async () => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string(), fc.json(), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1'))), async (text) => {
      await writeFile(path, text);
      const states = await ReleaseStates.load(path, log);
      expect(Array.isArray(states.list())).toBe(true);
    }),
    { numRuns: 100 },
  );
});

test('a long message keeps its end; rollout ids are bounded printable ASCII', async () => {
  const states = await ReleaseStates.load(path, log);
  const { state } = states.update('app', '1.0.0', { message: `${'a'.repeat(10_000)}THE END` });
  expect(state.message).toHaveLength(8192);
  expect(state.message.endsWith('THE END')).toBe(true);
  await states.flush();
  expect(isRolloutId('')).toBe(true);
  expect(isRolloutId('rollout-7f3a')).toBe(true);
  for (const bad of ['a b', 'é', 'x'.repeat(129), 7, null]) expect(isRolloutId(bad)).toBe(false);
});
