import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateRsaKeyPair } from '@shoal/pki';
import { type SimulatedOutcome, SimulatedControlAgent, type TestFleet, runShoal, runShoalAsync, scratchDir, startTestFleet } from '@shoal/testing';

/**
 * Rollouts against a real controller process and Redis, with agents reduced to their control
 * streams (real certificates, real mTLS streams): what the controller decides — wave order,
 * selectors, gates, pause, abort, restarts — without swarms in the way.
 */

jest.setTimeout(120_000);

let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const agents = new Map<string, SimulatedControlAgent>();
/** Release version -> how its fetches are answered, given the how-many-th fetch of it this is. */
const behaviour = new Map<string, (nth: number) => SimulatedOutcome>();
const fetchCounts = new Map<string, number>();
/** Every fetch command, in arrival order, across agents. */
const arrivals: { agentId: string; rolloutId: string; at: number }[] = [];
const cancels: { agentId: string; version: string; at: number }[] = [];
const sharedKey = generateRsaKeyPair(2048);

async function addAgent(name: string, labels: Record<string, string>): Promise<SimulatedControlAgent> {
  const enrolled = await fleet.enroll({ tokenBody: { agentName: name, labels }, key: sharedKey });
  const agent = new SimulatedControlAgent(enrolled.agentId, {
    grpcAddress: fleet.controller.grpcAddress,
    caPem: fleet.caPem,
    keyPem: enrolled.keyPem,
    certPem: enrolled.certPem,
    outcome: (fetch) => {
      const nth = (fetchCounts.get(fetch.version) ?? 0) + 1;
      fetchCounts.set(fetch.version, nth);
      return behaviour.get(fetch.version)?.(nth) ?? { phase: 'RELEASE_PHASE_INSTALLED', bytesFromPeers: 1000, bytesFromOrigin: 10 };
    },
    onCommand: (command) => {
      if (command.fetch) arrivals.push({ agentId: enrolled.agentId, rolloutId: command.fetch.rolloutId, at: Date.now() });
      if (command.cancel) cancels.push({ agentId: enrolled.agentId, version: command.cancel.version, at: Date.now() });
    },
  });
  await agent.connect();
  agents.set(agent.agentId, agent);
  return agent;
}

interface WaveView {
  index: number;
  size: string;
  state: string;
  members: number;
  commanded: number;
  succeeded: number;
  failed: number;
}
interface RolloutView {
  id: string;
  state: string;
  reason: string;
  waves: WaveView[];
  late: { commanded: number; succeeded: number };
  bytes: { fromPeers: number; fromOrigin: number };
  failures: { agentId: string; message: string; exitCode: number }[];
}

async function createRollout(body: object): Promise<RolloutView> {
  const created = await fleet.rest<RolloutView>('POST', '/v1/rollouts', { json: body });
  if (created.status !== 201) throw new Error(`rollout create: HTTP ${created.status} ${JSON.stringify(created.body)}`);
  return created.body;
}

async function rollout(id: string): Promise<RolloutView> {
  return (await fleet.rest<RolloutView>('GET', `/v1/rollouts/${id}`)).body;
}

async function until<T>(probe: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) {
      const complaints = fleet.controller.logs.filter((line) => /"level":(40|50|60)/.test(line)).slice(-30);
      throw new Error(`${what}: still ${JSON.stringify(value).slice(0, 2000)}\ncontroller warnings:\n${complaints.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Closes, from the server side, every connection to this suite's database but the test's own:
 * the controller's, and BullMQ's blocking one. Other suites, running at the same time on other
 * databases of the same server, keep theirs.
 */
async function dropControllerRedisConnections(): Promise<number> {
  const own = String(await fleet.redis.client('ID'));
  const db = String(fleet.redis.options.db ?? 0);
  const victims = String(await fleet.redis.client('LIST'))
    .split('\n')
    .map((line) => Object.fromEntries(line.split(' ').map((field) => field.split('=', 2))) as Record<string, string>)
    .filter((c) => c.db === db && c.id !== own && c.id !== undefined);
  for (const c of victims) await fleet.redis.client('KILL', 'ID', c.id as string);
  return victims.length;
}

const finished = (r: RolloutView) => !['pending', 'running', 'paused'].includes(r.state);
const fetchesOf = (rolloutId: string) => arrivals.filter((a) => a.rolloutId === rolloutId);
const edgeAgents = () => [...agents.keys()].filter((id) => id.startsWith('edge-')).sort();

beforeAll(async () => {
  fleet = await startTestFleet(0, 'rollouts');
  scratch = await scratchDir('rollouts');
  const pkg = join(scratch.path, 'app.torrent');
  const content = join(scratch.path, 'app');
  mkdirSync(content);
  writeFileSync(join(content, 'payload.bin'), Buffer.alloc(64 * 1024, 7));
  for (const version of ['1.0.0', '1.1.0', '1.2.0', '1.3.0', '1.4.0', '1.5.0', '1.6.0']) {
    writeFileSync(join(content, 'version'), version);
    expect(runShoal(['pack', content, '-o', pkg, '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
    const published = runShoal(['publish', pkg, '--name', 'app', '--version', version, '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]);
    expect(published.stderr).toBe('');
  }
  // Ten edge agents in eu-west, and two the selector must never pick.
  for (let i = 0; i < 10; i++) await addAgent(`edge-${i}`, { region: 'eu-west', role: 'edge', site: `s${i % 3}` });
  await addAgent('db-0', { region: 'eu-west', role: 'db' });
  await addAgent('us-edge-0', { region: 'us-east', role: 'edge' });
});

afterAll(async () => {
  for (const agent of agents.values()) agent.close();
  await fleet?.stop();
  await scratch?.remove();
});

test('waves 20 %/50 %/100 % run in order over the ten selected agents; the others never fetch', async () => {
  const created = await createRollout({ release: 'app@1.0.0', selector: 'region=eu-west,role=edge', waves: '20%,50%,100%', gate: 'success=90%' });
  expect(created.waves.map((w) => w.size)).toEqual(['20%', '50%', '100%']);
  const done = await until(() => rollout(created.id), finished, 'rollout to finish');
  expect(done.state).toBe('succeeded');
  expect(done.waves.map((w) => [w.members, w.commanded, w.succeeded, w.state])).toEqual([
    [2, 2, 2, 'passed'],
    [3, 3, 3, 'passed'],
    [5, 5, 5, 'passed'],
  ]);
  const fetches = fetchesOf(created.id);
  expect(fetches.map((f) => f.agentId).sort()).toEqual(edgeAgents());
  // In order: each wave's commands went out only after the wave before had all answered.
  const [first, second, third] = [fetches.slice(0, 2), fetches.slice(2, 5), fetches.slice(5)];
  const lastAt = (wave: typeof fetches) => Math.max(...wave.map((f) => f.at));
  const firstAt = (wave: typeof fetches) => Math.min(...wave.map((f) => f.at));
  expect(firstAt(second)).toBeGreaterThanOrEqual(lastAt(first));
  expect(firstAt(third)).toBeGreaterThanOrEqual(lastAt(second));
  expect(done.bytes).toEqual({ fromPeers: 10_000, fromOrigin: 100 });
});

test('two failed installs in wave 1 with a 90 % gate fail the rollout; later waves never start', async () => {
  behaviour.set('1.1.0', (nth) => (nth <= 2 ? { phase: 'RELEASE_PHASE_FAILED', exitCode: 3, message: 'install hook exited with 3: disk full' } : { phase: 'RELEASE_PHASE_INSTALLED' }));
  const created = await createRollout({ release: 'app@1.1.0', selector: 'role=edge,region=eu-west', waves: ['20%', '50%', '100%'], gate: { minSuccessRatio: 0.9 } });
  const failed = await until(() => rollout(created.id), finished, 'rollout to stop');
  expect(failed.state).toBe('failed');
  expect(failed.reason).toMatch(/^wave 1: 2\/2 agents failed/);
  expect(failed.waves.map((w) => w.state)).toEqual(['failed', 'waiting', 'waiting']);
  expect(failed.failures).toEqual(expect.arrayContaining([expect.objectContaining({ exitCode: 3, message: 'install hook exited with 3: disk full' })]));
  // Nothing else goes out, however long we wait.
  await new Promise((r) => setTimeout(r, 1000));
  expect(fetchesOf(created.id)).toHaveLength(2);
});

test('pause stops new commands within a second; resume carries on to the end', async () => {
  behaviour.set('1.2.0', () => ({ phase: 'RELEASE_PHASE_INSTALLED', delayMs: 1500 }));
  const created = await createRollout({ release: 'app@1.2.0', selector: 'role=edge,region=eu-west', waves: '1,100%' });
  await until(async () => fetchesOf(created.id).length, (n) => n === 1, 'wave 1 command');
  const paused = await fleet.rest<RolloutView>('POST', `/v1/rollouts/${created.id}/pause`);
  expect(paused.status).toBe(200);
  expect(paused.body.state).toBe('paused');
  const pausedAt = Date.now();
  // Wave 1 finishes during the pause; wave 2 must not start.
  await new Promise((r) => setTimeout(r, 3000));
  expect(fetchesOf(created.id).filter((f) => f.at > pausedAt + 1000)).toEqual([]);
  expect((await rollout(created.id)).state).toBe('paused');
  const resumed = await fleet.rest<RolloutView>('POST', `/v1/rollouts/${created.id}/resume`);
  expect(resumed.body.state).toBe('running');
  const done = await until(() => rollout(created.id), finished, 'rollout to finish after resume');
  expect(done.state).toBe('succeeded');
  expect(fetchesOf(created.id)).toHaveLength(10);
  expect((await fleet.rest('POST', `/v1/rollouts/${created.id}/pause`)).status).toBe(409);
});

test('abort cancels the fetches in flight', async () => {
  behaviour.set('1.3.0', () => ({ phase: 'RELEASE_PHASE_INSTALLED', delayMs: 60_000 }));
  const created = await createRollout({ release: 'app@1.3.0', selector: 'role=edge,region=eu-west', waves: '100%' });
  await until(async () => fetchesOf(created.id).length, (n) => n === 10, 'all ten commanded');
  // One agent is away when the abort happens: it hears of it when it comes back.
  const away = agents.get('edge-0') as SimulatedControlAgent;
  away.close();
  await until(async () => (await fleet.rest<{ id: string; controlStream: boolean }[]>('GET', '/v1/agents')).body.find((a) => a.id === 'edge-0')?.controlStream, (open) => open === false, 'edge-0 gone');
  const aborted = await fleet.rest<RolloutView>('POST', `/v1/rollouts/${created.id}/abort`);
  expect(aborted.status).toBe(200);
  expect(aborted.body.state).toBe('aborted');
  await until(async () => cancels.filter((c) => c.version === '1.3.0').length, (n) => n === 9, 'every connected agent told to cancel');
  await away.connect();
  await until(async () => cancels.filter((c) => c.version === '1.3.0').length, (n) => n === 10, 'the returning agent told to cancel');
  expect(new Set(cancels.filter((c) => c.version === '1.3.0').map((c) => c.agentId))).toEqual(new Set(edgeAgents()));
});

test('bad input gets a clear 4xx and creates nothing', async () => {
  const cases: [object, number, RegExp][] = [
    [{ release: 'app@9.9.9', waves: '100%' }, 404, /no release app@9\.9\.9/],
    [{ release: 'app', waves: '100%' }, 400, /NAME@VERSION/],
    [{ release: 'app@1.0.0', selector: 'region=mars', waves: '100%' }, 422, /matches no active agent/],
    [{ release: 'app@1.0.0', waves: '50%,20%' }, 400, /does not grow/],
    [{ release: 'app@1.0.0', waves: 'soon' }, 400, /waves\[0\]/],
    [{ release: 'app@1.0.0', waves: '100%', gate: { minSuccessRatio: 1.5 } }, 400, /minSuccessRatio 1\.5 must be a number in 0\.\.1/],
    [{ release: 'app@1.0.0', waves: '100%', gate: 'success=200%' }, 400, /minSuccessRatio 2/],
    [{ release: 'app@1.0.0', waves: '100%', window: '25:00-26:00' }, 400, /HH:MM-HH:MM/],
    [{ release: 'app@1.0.0', waves: '100%', bandwidthClass: 'turbo' }, 400, /bandwidthClass/],
    [{ release: 'app@1.0.0', waves: '100%', extra: 1 }, 400, /extra/],
  ];
  const before = (await fleet.rest<RolloutView[]>('GET', '/v1/rollouts')).body.length;
  for (const [body, status, message] of cases) {
    const answer = await fleet.rest<{ message: string | string[] }>('POST', '/v1/rollouts', { json: body });
    expect({ body, status: answer.status }).toEqual({ body, status });
    expect(String(answer.body.message)).toMatch(message);
  }
  expect((await fleet.rest<RolloutView[]>('GET', '/v1/rollouts')).body.length).toBe(before);
  expect((await fleet.rest('GET', '/v1/rollouts/ro-000000000000')).status).toBe(404);
  expect((await fleet.rest('GET', '/v1/rollouts/..%2f..')).status).toBe(404);
  const viewer = await fleet.rest<{ token: string }>('POST', '/v1/api-tokens', { json: { name: 'watcher', role: 'viewer' } });
  expect((await fleet.rest('POST', '/v1/rollouts', { token: viewer.body.token, json: { release: 'app@1.0.0', waves: '100%' } })).status).toBe(403);
  expect((await fleet.rest('GET', '/v1/rollouts', { token: viewer.body.token })).status).toBe(200);
  expect((await fleet.rest('GET', '/v1/rollouts', { token: null })).status).toBe(401);
});

test('an agent that joins after the rollout reached 100 % and matches gets the release; one that does not match does not', async () => {
  const created = await createRollout({ release: 'app@1.4.0', selector: 'role=edge,region=eu-west', waves: '100%' });
  expect((await until(() => rollout(created.id), finished, 'rollout to finish')).state).toBe('succeeded');
  const late = await addAgent('edge-10', { region: 'eu-west', role: 'edge', site: 's1' });
  const outsider = await addAgent('db-1', { region: 'eu-west', role: 'db' });
  const view = await until(() => rollout(created.id), (r) => r.late.succeeded === 1, 'late joiner to install');
  expect(view.late).toEqual({ commanded: 1, succeeded: 1, failed: 0 });
  expect(late.fetches.map((f) => `${f.name}@${f.version}`)).toEqual(['app@1.4.0']);
  expect(outsider.fetches).toEqual([]);
});

test('the CLI: create --wait draws progress and exits 0; publish --rollout --wait is one CI step that exits 1 when the gate fails', async () => {
  const connection = ['--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl];
  const created = await runShoalAsync(['rollout', 'create', '--release', 'app@1.0.0', '--selector', 'role=edge,region=eu-west', '--waves', '50%,100%', '--gate', 'success=100%', '--wait', ...connection]);
  expect({ status: created.status, stderr: created.stderr }).toEqual({ status: 0, stderr: '' });
  expect(created.stdout).toMatch(/SUCCEEDED/);
  expect(created.stdout).toMatch(/wave +2 +100% +\d+\/\d+ ok/);
  const id = /rollout (ro-[0-9a-f]{12})/.exec(created.stdout)?.[1] as string;
  const status = await runShoalAsync(['rollout', 'status', id, '--json', ...connection]);
  expect(JSON.parse(status.stdout)).toMatchObject({ id, state: 'succeeded', release: 'app@1.0.0' });
  const listed = await runShoalAsync(['rollout', 'list', ...connection]);
  expect(listed.stdout).toMatch(new RegExp(`${id} +app@1\\.0\\.0 +succeeded`));

  // A new version whose install fails everywhere: the deployment step fails.
  const content = join(scratch.path, 'app');
  writeFileSync(join(content, 'version'), '2.0.0');
  const pkg = join(scratch.path, 'app-2.torrent');
  expect(runShoal(['pack', content, '-o', pkg, '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
  behaviour.set('2.0.0', () => ({ phase: 'RELEASE_PHASE_FAILED', exitCode: 1, message: 'health check failed' }));
  const deploy = await runShoalAsync(['publish', pkg, '--name', 'app', '--version', '2.0.0', '--rollout', '1,100%', '--selector', 'role=edge', '--wait', ...connection]);
  expect({ status: deploy.status, stderr: deploy.stderr }).toEqual({ status: 1, stderr: '' });
  expect(deploy.stdout).toMatch(/published app@2\.0\.0/);
  expect(deploy.stdout).toMatch(/FAILED/);
  expect(deploy.stdout).toMatch(/health check failed/);
  const usage = await runShoalAsync(['publish', pkg, '--name', 'app', '--version', '2.0.0', '--wait', ...connection]);
  expect(usage.status).toBe(2);
  expect(usage.stderr).toMatch(/--wait needs --rollout/);
});

test('the controller losing its Redis connections mid-wave reconnects and finishes without repeating a command', async () => {
  behaviour.set('1.6.0', () => ({ phase: 'RELEASE_PHASE_INSTALLED', delayMs: 800 }));
  const created = await createRollout({ release: 'app@1.6.0', selector: 'role=edge,region=eu-west', waves: '3,100%' });
  await until(async () => fetchesOf(created.id).length, (n) => n >= 3, 'wave 1 commanded');
  expect(await dropControllerRedisConnections()).toBeGreaterThanOrEqual(2);
  const done = await until(() => rollout(created.id), finished, 'rollout to finish after the reconnection');
  expect(done.state).toBe('succeeded');
  expect(fetchesOf(created.id).map((f) => f.agentId).sort()).toEqual(edgeAgents());
});

// Last: it kills the controller.
test('a controller killed during wave 2 comes back, finishes the rollout, and commands no agent twice', async () => {
  behaviour.set('1.5.0', () => ({ phase: 'RELEASE_PHASE_INSTALLED', delayMs: 1500 }));
  const created = await createRollout({ release: 'app@1.5.0', selector: 'role=edge,region=eu-west', waves: '2,6,100%' });
  await until(() => rollout(created.id), (r) => r.waves[1]?.state === 'running' && (r.waves[1]?.commanded ?? 0) > 0, 'wave 2 to run');
  await fleet.restartController({ kill: true });
  const done = await until(() => rollout(created.id), finished, 'rollout to finish after the restart', 60_000);
  expect(done.state).toBe('succeeded');
  const edges = edgeAgents().length;
  expect(done.waves.map((w) => [w.members, w.succeeded])).toEqual([
    [2, 2],
    [4, 4],
    [edges - 6, edges - 6],
  ]);
  const fetches = fetchesOf(created.id);
  expect(fetches.map((f) => f.agentId).sort()).toEqual(edgeAgents());
});
