import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type SwarmFleet, scratchDir, startSwarmFleet } from '@shoal/testing';

/**
 * Rollouts with real agent processes: real fetches over the swarm, real install hooks (a shell
 * command each agent's configuration names for the package), the controller killed mid-rollout.
 */

jest.setTimeout(180_000);

const EDGE = Array.from({ length: 10 }, (_, i) => `edge-${i}`);
let swarm: SwarmFleet;
let scratch: { path: string; remove(): Promise<void> };

/**
 * Every hook appends "<version> <rollout> <agent>" to its agent's log. For a version with a
 * `fail-<version>` folder, the first two hooks to run (mkdir is atomic) exit 3: the first wave's.
 */
function hookCommand(agent: string): string {
  const log = join(scratch.path, `${agent}.installs`);
  const slots = join(scratch.path, 'fail-$SHOAL_RELEASE_VERSION');
  return [
    `echo "$SHOAL_RELEASE_VERSION $SHOAL_ROLLOUT_ID ${agent}" >> ${log}`,
    `if [ -d ${slots} ] && { mkdir ${slots}/1 2>/dev/null || mkdir ${slots}/2 2>/dev/null; }; then echo "smoke test failed on ${agent}" >&2; exit 3; fi`,
  ].join('; ');
}

const installs = (agent: string): string[] => {
  try {
    return readFileSync(join(scratch.path, `${agent}.installs`), 'utf8').trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

interface RolloutView {
  id: string;
  state: string;
  reason: string;
  waves: { members: number; succeeded: number; failed: number; state: string }[];
  failures: { agentId: string; exitCode: number; message: string }[];
  bytes: { fromPeers: number; fromOrigin: number };
}

async function untilView(id: string, done: (view: RolloutView) => boolean, timeoutMs = 90_000): Promise<RolloutView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = (await swarm.fleet.rest<RolloutView>('GET', `/v1/rollouts/${id}`)).body;
    if (done(view)) return view;
    if (Date.now() > deadline) throw new Error(`rollout ${id} still ${JSON.stringify(view)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const untilFinished = (id: string): Promise<RolloutView> => untilView(id, (view) => ['succeeded', 'failed', 'aborted'].includes(view.state));

async function create(body: object): Promise<RolloutView> {
  const created = await swarm.fleet.rest<RolloutView>('POST', '/v1/rollouts', { json: body });
  if (created.status !== 201) throw new Error(`rollout create: HTTP ${created.status} ${JSON.stringify(created.body)}`);
  return created.body;
}

beforeAll(async () => {
  scratch = await scratchDir('rollout-agents');
  swarm = await startSwarmFleet({
    db: 0,
    fleet: 'rollout-agents',
    agents: [
      ...EDGE.map((name, i) => ({ name, labels: { region: 'eu-west', role: 'edge', site: `s${i % 3}` }, env: { SHOAL_INSTALL_HOOKS: JSON.stringify({ app: { command: hookCommand(name), timeoutSeconds: 30 } }) } })),
      { name: 'db-0', labels: { region: 'eu-west', role: 'db' }, env: { SHOAL_INSTALL_HOOKS: JSON.stringify({ app: { command: hookCommand('db-0') } }) } },
    ],
  });
  for (const version of ['1.0.0', '1.1.0', '1.2.0']) await swarm.publish('app', version, { 'app.bin': 1024 * 1024, 'VERSION': Buffer.from(version) }, { folder: `app-${version}` });
});

afterAll(async () => {
  await swarm?.stop();
  await scratch?.remove();
});

test('20 %/50 %/100 % over ten agents: in order, every agent installs once, the agent outside the selector never fetches', async () => {
  const created = await create({ release: 'app@1.0.0', selector: 'role=edge', waves: '20%,50%,100%', gate: 'success=90%' });
  const done = await untilFinished(created.id);
  expect({ state: done.state, reason: done.reason, failures: done.failures }).toEqual({ state: 'succeeded', reason: '', failures: [] });
  expect(done.waves.map((w) => [w.members, w.succeeded, w.state])).toEqual([
    [2, 2, 'passed'],
    [3, 3, 'passed'],
    [5, 5, 'passed'],
  ]);
  for (const agent of EDGE) expect(installs(agent)).toEqual([`1.0.0 ${created.id} ${agent}`]);
  expect(installs('db-0')).toEqual([]);
  expect((await swarm.status('db-0')).packages).toEqual([]);
  // Peers carried most of it: the origin served about one copy for ten hosts.
  expect(done.bytes.fromPeers).toBeGreaterThan(done.bytes.fromOrigin);
});

test('an install hook failing on the two agents of wave 1 with a 90 % gate fails the rollout; later waves never start', async () => {
  await mkdir(join(scratch.path, 'fail-1.1.0'));
  const created = await create({ release: 'app@1.1.0', selector: 'role=edge', waves: '20%,50%,100%', gate: 'success=90%' });
  const done = await untilFinished(created.id);
  expect(done.state).toBe('failed');
  expect(done.waves.map((w) => w.state)).toEqual(['failed', 'waiting', 'waiting']);
  // The gate is decided by the first failure (1 of 2 cannot reach 90 %); the other agent of wave 1,
  // already commanded, finishes its fetch and install and reports after that (on a loaded CI
  // machine, seconds after).
  const settled = await untilView(created.id, (view) => view.failures.length >= 2);
  expect(settled.failures).toHaveLength(2);
  for (const failure of settled.failures) {
    expect(failure.exitCode).toBe(3);
    expect(failure.message).toMatch(/smoke test failed on edge-\d/);
  }
  await new Promise((r) => setTimeout(r, 1000));
  const ran = EDGE.filter((agent) => installs(agent).some((line) => line.startsWith('1.1.0 ')));
  expect(ran).toHaveLength(2);
});

test('a new rollout of the same release re-runs the failed installs and no successful one', async () => {
  const failedBefore = EDGE.filter((agent) => installs(agent).some((line) => line.startsWith('1.1.0 ')));
  const created = await create({ release: 'app@1.1.0', selector: 'role=edge', waves: '100%' });
  const done = await untilFinished(created.id);
  expect({ state: done.state, reason: done.reason, failures: done.failures }).toEqual({ state: 'succeeded', reason: '', failures: [] });
  for (const agent of EDGE) {
    const lines = installs(agent).filter((line) => line.startsWith('1.1.0 '));
    expect(lines.at(-1)).toBe(`1.1.0 ${created.id} ${agent}`);
    expect(lines).toHaveLength(failedBefore.includes(agent) ? 2 : 1);
  }
});

test('the controller killed during wave 2 comes back; the rollout finishes and no agent installs twice', async () => {
  const created = await create({ release: 'app@1.2.0', selector: 'role=edge', waves: '2,5,100%' });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const view = (await swarm.fleet.rest<RolloutView>('GET', `/v1/rollouts/${created.id}`)).body;
    if (view.waves[1]?.state === 'running') break;
    if (Date.now() > deadline) throw new Error(`wave 2 never ran: ${JSON.stringify(view)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await swarm.fleet.restartController({ kill: true });
  const done = await untilFinished(created.id);
  expect({ state: done.state, reason: done.reason, failures: done.failures }).toEqual({ state: 'succeeded', reason: '', failures: [] });
  for (const agent of EDGE) expect(installs(agent).filter((line) => line.startsWith('1.2.0 '))).toEqual([`1.2.0 ${created.id} ${agent}`]);
});
