import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentProcess, type TestFleet, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';

/**
 * A leech that finds no peer does not sit out a whole tracker interval: with a 120 s interval,
 * a seed that appears after the fetch started is found within seconds (re-announce backoff).
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const agents: AgentProcess[] = [];

beforeAll(async () => {
  fleet = await startTestFleet(4, 'late', { SHOAL_TRACKER_INTERVAL: '120', SHOAL_TRACKER_PEER_TTL: '300' });
  scratch = await scratchDir('late-seed');
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  await fleet?.stop();
  await scratch?.remove();
});

test('a seed that appears after the fetch started is found without waiting for the tracker interval', async () => {
  const release = join(scratch.path, 'release');
  mkdirSync(release);
  writeFileSync(join(release, 'blob'), randomBytes(2 * 1024 * 1024));
  const pkg = join(scratch.path, 'late.torrent');
  expect(runShoal(['pack', release, '-o', pkg, '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
  expect(runShoal(['publish', pkg, '--name', 'late', '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]).status).toBe(0);

  const leechDir = await fleet.enrollAgentDir('leech', scratch.path);
  agents.push(await startAgentProcess({ dataDir: leechDir }));
  await fleet.untilConnected('leech');
  expect((await fleet.rest('POST', '/v1/agents/leech/fetch', { json: { name: 'late', version: '1.0.0' } })).status).toBe(202);
  // The leech has announced and found nobody; only now does the seed come up.
  await new Promise((r) => setTimeout(r, 1500));
  const seedDir = await fleet.enrollAgentDir('seed', scratch.path);
  expect(runShoal(['agent', 'import', pkg, release, '--name', 'late', '--version', '1.0.0', '--data-dir', seedDir]).status).toBe(0);
  agents.push(await startAgentProcess({ dataDir: seedDir }));

  const deadline = Date.now() + 40_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`controller:\n${fleet.controller.logs.slice(-8).join("\n")}\nleech:\n${agents[0]?.logs.slice(-15).join('\n')}\nseed:\n${agents[1]?.logs.slice(-15).join('\n')}`);
    const status = JSON.parse(runShoal(['status', '--data-dir', leechDir, '--json']).stdout) as { packages: { complete: boolean; path: string }[] };
    const late = status.packages[0];
    if (late?.complete) {
      expect(runShoal(['verify', pkg, late.path]).status).toBe(0);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}, 60_000);
