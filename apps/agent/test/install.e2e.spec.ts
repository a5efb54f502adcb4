import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { type AgentProcess, type TestFleet, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';

/**
 * Fetch commands with installs, their idempotence across duplicates and restarts, failing and
 * cancelled hooks, cancelled fetches that resume later without refetching, a download cap, and
 * a clean stop: a real controller, a seed and a host agent as real processes.
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const agents: AgentProcess[] = [];
let seedDir: string;
let hostDir: string;
let host: AgentProcess | undefined;
/** Where the hooks write what they saw. */
let out: string;

const MiB = 1024 * 1024;
const BIG = 48 * MiB;
const CAP = 2 * MiB;

interface PackageView {
  name: string;
  version: string;
  complete: boolean;
  verifiedPieces: number;
  totalPieces: number;
  bytesDownloaded: number;
  path: string | null;
  phase: string | null;
  message: string;
  exitCode: number;
  bandwidthClass: string;
}

interface ReleaseView {
  name: string;
  version: string;
  phase: string;
  message: string;
  exitCode: number;
  verifiedPieces: number;
  totalPieces: number;
  bytesFromPeers: number;
}

interface StatusView {
  packages: PackageView[];
  releases: ReleaseView[];
}

function fromSocket(dataDir: string, path: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = get({ socketPath: join(dataDir, 'agent.sock'), path }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', () => resolve(undefined));
  });
}

async function status(dataDir = hostDir): Promise<StatusView | undefined> {
  const text = await fromSocket(dataDir, '/status');
  return text === undefined ? undefined : (JSON.parse(text) as StatusView);
}

async function until<T>(probe: () => Promise<T | undefined>, ok: (v: T) => boolean, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}\nhost:\n${host?.logs.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends a command to the host agent through the controller's REST API; returns its id. */
async function command(route: 'fetch' | 'cancel', json: object): Promise<string> {
  const sent = await fleet.rest<{ commandId: string }>('POST', `/v1/agents/host/${route}`, { json });
  expect(sent.status).toBe(202);
  return sent.body.commandId;
}

/** The agent's CommandResult, as the controller logged it. */
function result(commandId: string, timeoutMs = 60_000): Promise<{ ok: boolean; message: string }> {
  const find = async () => {
    const line = fleet.controller.logs.find((l) => l.includes('command result') && l.includes(commandId));
    return line === undefined ? undefined : (JSON.parse(line) as { ok: boolean; message: string });
  };
  return until(find, () => true, `the result of command ${commandId}`, timeoutMs);
}

async function release(name: string): Promise<ReleaseView | undefined> {
  return (await status())?.releases.find((r) => r.name === name);
}

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
}

/** Packs a folder of random bytes, publishes it, and imports it into the seed's data folder. */
function publish(name: string, bytes: number, installCommand?: string): void {
  const folder = join(scratch.path, 'releases', name);
  mkdirSync(join(folder, 'bin'), { recursive: true });
  writeFileSync(join(folder, 'bin', name), randomBytes(bytes));
  writeFileSync(join(folder, 'README'), `${name}\n`);
  const pkg = join(scratch.path, `${name}.torrent`);
  expect(runShoal(['pack', folder, '-o', pkg, '--piece-length', '256K', '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
  const published = runShoal([
    'publish',
    pkg,
    '--name',
    name,
    '--version',
    '1.0.0',
    ...(installCommand ? ['--install-command', installCommand] : []),
    '--data-dir',
    fleet.dataDir,
    '--controller',
    fleet.controller.restUrl,
  ]);
  expect(published.stderr).toBe('');
  expect(runShoal(['agent', 'import', pkg, folder, '--name', name, '--version', '1.0.0', '--data-dir', seedDir]).status).toBe(0);
}

const hooks = () => ({
  app: { command: `echo "$SHOAL_RELEASE_NAME $SHOAL_RELEASE_VERSION" >> ${out}/app.log; env > ${out}/app.env; ls -R > ${out}/app.ls` },
  broken: { command: `echo run >> ${out}/broken.log; echo 'about to fail'; echo 'on stderr' >&2; exit 7` },
  slow: { command: `echo started >> ${out}/slow.log; sleep 300 & echo $! > ${out}/slow.pid; wait` },
  crash: { command: `echo started >> ${out}/crash.log; sleep 300 & echo $! > ${out}/crash.pid; wait` },
  owed: { command: `echo run >> ${out}/owed.log` },
});

/** Ends the process group of a hook's child recorded in `pidFile`, if it is still there. */
function killHookGroup(pidFile: string): void {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const group = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[2]);
    if (group > 1) process.kill(-group, 'SIGKILL');
  } catch {
    // Gone already (or never started).
  }
}

/** Alive and not a zombie (in a container an orphan may wait long for a reaper). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function startHost(env: NodeJS.ProcessEnv = {}): Promise<AgentProcess> {
  await host?.stop();
  host = await startAgentProcess({ dataDir: hostDir, env: { SHOAL_INSTALL_HOOKS: JSON.stringify(hooks()), ...env } });
  agents.push(host);
  await fleet.untilConnected('host');
  return host;
}

beforeAll(async () => {
  fleet = await startTestFleet(5, 'install');
  scratch = await scratchDir('install');
  out = join(scratch.path, 'hook-output');
  mkdirSync(out);
  seedDir = await fleet.enrollAgentDir('seed', scratch.path);
  publish('app', MiB);
  publish('broken', 100_000);
  publish('slow', 100_000);
  publish('crash', 100_000);
  publish('signed', 100_000, `echo "signed $SHOAL_ROLLOUT_ID." >> ${out}/signed.log`);
  publish('big', BIG);
  publish('owed', 8 * MiB);
  agents.push(await startAgentProcess({ dataDir: seedDir }));
  hostDir = await fleet.enrollAgentDir('host', scratch.path);
}, 120_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  if (out) for (const hook of ['slow', 'crash']) killHookGroup(join(out, `${hook}.pid`));
  await fleet?.stop();
  await scratch?.remove();
});

test('fetch with install runs the hook once, in the package with the release in its environment; duplicates and restarts never run it again', async () => {
  await startHost();
  const first = await result(await command('fetch', { name: 'app', version: '1.0.0', install: true }));
  expect(first).toMatchObject({ ok: true, message: 'app@1.0.0 installed' });
  expect(lines(join(out, 'app.log'))).toEqual(['app 1.0.0']);

  const app = (await status())?.packages.find((p) => p.name === 'app') as PackageView;
  expect(app).toMatchObject({ complete: true, phase: 'RELEASE_PHASE_INSTALLED', exitCode: 0 });
  const env = Object.fromEntries(lines(join(out, 'app.env')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  expect(env).toMatchObject({
    SHOAL_PACKAGE_PATH: app.path,
    SHOAL_RELEASE_NAME: 'app',
    SHOAL_RELEASE_VERSION: '1.0.0',
    SHOAL_RELEASE_CHANNEL: 'stable',
    SHOAL_INFO_HASH: expect.stringMatching(/^[0-9a-f]{64}$/),
    SHOAL_ROLLOUT_ID: '',
    PATH: process.env.PATH,
  });
  // The agent's own settings (hooks, data folder) stay with the agent.
  expect(Object.keys(env).filter((name) => name.startsWith('SHOAL_')).sort()).toEqual([
    'SHOAL_INFO_HASH',
    'SHOAL_PACKAGE_PATH',
    'SHOAL_RELEASE_CHANNEL',
    'SHOAL_RELEASE_NAME',
    'SHOAL_RELEASE_VERSION',
    'SHOAL_ROLLOUT_ID',
  ]);
  // It ran in the finished package.
  expect(readFileSync(join(out, 'app.ls'), 'utf8')).toMatch(/^bin\n/m);

  const again = await Promise.all([1, 2].map(async () => result(await command('fetch', { name: 'app', version: '1.0.0', install: true }))));
  expect(again).toEqual([expect.objectContaining({ ok: true, message: 'app@1.0.0 already installed' }), expect.objectContaining({ ok: true, message: 'app@1.0.0 already installed' })]);
  await startHost();
  expect(await result(await command('fetch', { name: 'app', version: '1.0.0', install: true }))).toMatchObject({ ok: true, message: 'app@1.0.0 already installed' });
  expect(lines(join(out, 'app.log'))).toEqual(['app 1.0.0']);
  const metrics = (await fromSocket(hostDir, '/metrics')) ?? '';
  // Counters restart with the process: the restarted agent ran no hook.
  expect(metrics).not.toMatch(/shoal_agent_installs_total\{result="succeeded"\} [1-9]/);
}, 120_000);

test('a failing hook reports FAILED with its exit code and output tail, and is not run again for the same rollout', async () => {
  const failed = await result(await command('fetch', { name: 'broken', version: '1.0.0', install: true }));
  expect(failed).toEqual(expect.objectContaining({ ok: false, message: 'broken@1.0.0: the install hook exited with code 7' }));
  const state = await release('broken');
  expect(state).toMatchObject({ phase: 'RELEASE_PHASE_FAILED', exitCode: 7 });
  expect(state?.message).toMatch(/^the install hook exited with code 7\n/);
  expect(state?.message).toContain('about to fail\n');
  expect(state?.message).toContain('on stderr');
  const again = await result(await command('fetch', { name: 'broken', version: '1.0.0', install: true }));
  expect(again.ok).toBe(false);
  expect(again.message).toMatch(/the install failed before and is not run again for it: the install hook exited with code 7/);
  expect(lines(join(out, 'broken.log'))).toEqual(['run']);
  // A fetch without install is delivered: the files are there.
  expect(await result(await command('fetch', { name: 'broken', version: '1.0.0' }))).toMatchObject({ ok: true, message: 'broken@1.0.0 complete' });
  const metrics = (await fromSocket(hostDir, '/metrics')) ?? '';
  expect(metrics).toContain('shoal_agent_installs_total{result="failed"} 1');
}, 60_000);

test("a release's signed install command runs only where the agent allows it", async () => {
  expect((await fleet.rest('POST', '/v1/agents/host/fetch', { json: { name: 'signed', version: '1.0.0', bandwidthClass: 'turbo' } })).status).toBe(400);
  expect((await fleet.rest('POST', '/v1/agents/host/fetch', { json: { name: 'signed', version: '1.0.0', install: 'yes' } })).status).toBe(400);
  const refused = await result(await command('fetch', { name: 'signed', version: '1.0.0', install: true, bandwidthClass: 'background' }));
  expect(refused).toMatchObject({
    ok: true,
    message: 'signed@1.0.0 complete; no install hook for signed (the release carries a signed install command, but allowReleaseInstallCommands does not list signed)',
  });
  expect(await release('signed')).toMatchObject({ phase: 'RELEASE_PHASE_COMPLETE' });
  expect((await status())?.packages.find((p) => p.name === 'signed')?.bandwidthClass).toBe('background');
  expect(lines(join(out, 'signed.log'))).toEqual([]);
  await startHost({ SHOAL_ALLOW_RELEASE_INSTALL: 'signed' });
  expect(await result(await command('fetch', { name: 'signed', version: '1.0.0', install: true }))).toMatchObject({ ok: true, message: 'signed@1.0.0 installed' });
  expect(lines(join(out, 'signed.log'))).toEqual(['signed .']);
  expect(await release('signed')).toMatchObject({ phase: 'RELEASE_PHASE_INSTALLED', exitCode: 0 });
}, 60_000);

test('cancel kills a running install hook and its children', async () => {
  const fetching = command('fetch', { name: 'slow', version: '1.0.0', install: true });
  await until(async () => lines(join(out, 'slow.log')), (l) => l.length === 1 && existsSync(join(out, 'slow.pid')), 'the slow hook to start');
  const cancelled = await result(await command('cancel', { name: 'slow', version: '1.0.0' }));
  expect(cancelled).toMatchObject({ ok: true, message: 'slow@1.0.0: cancelled install hook' });
  expect(await result(await fetching)).toMatchObject({ ok: false, message: 'cancelled' });
  expect(await release('slow')).toMatchObject({ phase: 'RELEASE_PHASE_CANCELLED', exitCode: -1 });
  expect(alive(Number(readFileSync(join(out, 'slow.pid'), 'utf8')))).toBe(false);
}, 60_000);

test('an agent killed during an install records it as failed when it restarts, and never runs it twice', async () => {
  const fetching = command('fetch', { name: 'crash', version: '1.0.0', install: true });
  await until(async () => lines(join(out, 'crash.log')), (l) => l.length === 1 && existsSync(join(out, 'crash.pid')), 'the crash hook to start');
  await fetching;
  host?.process.kill('SIGKILL');
  await host?.stop();
  // The hook's process group outlives a killed agent: end it here.
  killHookGroup(join(out, 'crash.pid'));
  await startHost();
  const recovered = await release('crash');
  expect(recovered).toMatchObject({ phase: 'RELEASE_PHASE_FAILED', exitCode: -1 });
  expect(recovered?.message).toMatch(/^the agent stopped while the install hook was running/);
  const again = await result(await command('fetch', { name: 'crash', version: '1.0.0', install: true }));
  expect(again.ok).toBe(false);
  expect(again.message).toMatch(/the install failed before and is not run again for it/);
  expect(lines(join(out, 'crash.log'))).toEqual(['started']);
}, 60_000);

test('a capped download keeps to its cap; cancel stops it, a restart does not resume it, and a later fetch keeps every verified piece', async () => {
  await startHost({ SHOAL_DOWNLOAD_LIMIT: '2MiB' });
  const fetching = command('fetch', { name: 'big', version: '1.0.0' });
  const started = Date.now();
  const midway = await until(
    status,
    (s) => (s.packages.find((p) => p.name === 'big')?.verifiedPieces ?? 0) >= 16,
    'the big fetch to get going',
  );
  const seconds = (Date.now() - started) / 1000;
  const received = midway.packages.find((p) => p.name === 'big')?.bytesDownloaded ?? 0;
  // A ceiling, not a speed: bytes over time (TUF and dialling included) below 1.5 x the cap, the first burst aside.
  expect(received - 512 * 1024).toBeLessThan(1.5 * CAP * seconds);

  console.log(`capped: ${(received / MiB).toFixed(1)} MiB in ${seconds.toFixed(1)} s`);
  const cancelled = await result(await command('cancel', { name: 'big', version: '1.0.0' }));
  expect(cancelled).toMatchObject({ ok: true, message: 'big@1.0.0: cancelled fetch' });
  expect(await result(await fetching)).toMatchObject({ ok: false, message: 'cancelled' });
  const stopped = (await status()) as StatusView;
  expect(stopped.packages.find((p) => p.name === 'big')).toBeUndefined();
  const kept = stopped.releases.find((r) => r.name === 'big') as ReleaseView;
  expect(kept).toMatchObject({ phase: 'RELEASE_PHASE_CANCELLED' });
  expect(kept.verifiedPieces).toBeGreaterThanOrEqual(16);
  expect(kept.verifiedPieces).toBeLessThan(kept.totalPieces);

  await startHost();
  await new Promise((r) => setTimeout(r, 1000));
  const restarted = (await status()) as StatusView;
  expect(restarted.packages.find((p) => p.name === 'big')).toBeUndefined();
  expect(restarted.releases.find((r) => r.name === 'big')).toMatchObject({ phase: 'RELEASE_PHASE_CANCELLED' });

  expect(await result(await command('fetch', { name: 'big', version: '1.0.0' }))).toMatchObject({ ok: true, message: 'big@1.0.0 complete' });
  const done = (await status())?.packages.find((p) => p.name === 'big') as PackageView;
  expect(done).toMatchObject({ complete: true, phase: 'RELEASE_PHASE_COMPLETE' });
  // Only what was missing came over the wire (plus a piece in flight per connection).
  expect(done.bytesDownloaded).toBeLessThanOrEqual((done.totalPieces - kept.verifiedPieces + 1) * 256 * 1024);
  expect(runShoal(['verify', join(scratch.path, 'big.torrent'), done.path as string]).status).toBe(0);
  const text = runShoal(['status', '--data-dir', hostDir]);
  expect(text.stdout).toMatch(/^ {2}big@1\.0\.0: complete, seeding$/m);
  expect(text.stdout).toMatch(/^ {2}app@1\.0\.0: installed \(exit 0\), seeding$/m);
  expect(text.stdout).toMatch(/^ {2}broken@1\.0\.0: failed \(exit 7\): the install hook exited with code 7, seeding$/m);
}, 180_000);

test('an agent killed while fetching for an install finishes the fetch after its restart and runs the install, once, never reporting a bare COMPLETE', async () => {
  await startHost({ SHOAL_DOWNLOAD_LIMIT: '2MiB' });
  void command('fetch', { name: 'owed', version: '1.0.0', install: true });
  await until(status, (s) => (s.packages.find((p) => p.name === 'owed')?.verifiedPieces ?? 0) >= 4, 'the owed fetch to get going');
  host?.process.kill('SIGKILL');
  await startHost();
  const phases = new Set<string>();
  const installed = await until(
    async () => {
      const view = (await status())?.releases.find((r) => r.name === 'owed');
      if (view) phases.add(view.phase);
      return view;
    },
    (r) => r.phase === 'RELEASE_PHASE_INSTALLED' || r.phase === 'RELEASE_PHASE_FAILED',
    'the owed install',
  );
  expect(installed.phase).toBe('RELEASE_PHASE_INSTALLED');
  expect(phases.has('RELEASE_PHASE_COMPLETE')).toBe(false);
  expect(lines(join(out, 'owed.log'))).toEqual(['run']);
}, 120_000);

test('SIGTERM stops the agent cleanly: exit code 0', async () => {
  await startHost();
  expect(await host?.stop()).toBe(0);
});
