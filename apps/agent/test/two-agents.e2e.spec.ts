import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentProcess, type TestFleet, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';
import { connectToPeer } from '../src/peer/tls';

/**
 * Two agents as real processes with a real controller: A seeds a published package from local
 * data; B is told to fetch it over its control stream, verifies the release with TUF, finds A
 * through the tracker, downloads every piece over the mutual-TLS peer wire, and seeds it.
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const agents: AgentProcess[] = [];

beforeAll(async () => {
  fleet = await startTestFleet(8, 'pair');
  scratch = await scratchDir('two-agents');
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  await fleet?.stop();
  await scratch?.remove();
});

function status(dataDir: string): { packages: { name: string; complete: boolean; verifiedPieces: number; totalPieces: number; path: string | null }[] } {
  const run = runShoal(['status', '--data-dir', dataDir, '--json']);
  if (run.status !== 0) throw new Error(run.stderr);
  return JSON.parse(run.stdout);
}

test('agent B fetches a published package from agent A over the peer wire, verifies it and seeds it', async () => {
  const release = join(scratch.path, 'release');
  mkdirSync(join(release, 'bin'), { recursive: true });
  writeFileSync(join(release, 'bin', 'app'), randomBytes(3 * 1024 * 1024 + 123));
  writeFileSync(join(release, 'data.bin'), randomBytes(5 * 1024 * 1024));
  writeFileSync(join(release, 'empty'), '');
  const pkg = join(scratch.path, 'app.torrent');
  expect(runShoal(['pack', release, '-o', pkg, '--piece-length', '64K', '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
  expect(runShoal(['publish', pkg, '--name', 'app', '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]).status).toBe(0);

  const dirA = await fleet.enrollAgentDir('agent-a', scratch.path);
  const imported = runShoal(['agent', 'import', pkg, release, '--name', 'app', '--version', '1.0.0', '--data-dir', dirA]);
  expect(imported.stderr).toBe('');
  agents.push(await startAgentProcess({ dataDir: dirA }));
  const dirB = await fleet.enrollAgentDir('agent-b', scratch.path);
  agents.push(await startAgentProcess({ dataDir: dirB }));
  await fleet.untilConnected('agent-b');

  const sent = await fleet.rest<{ commandId: string }>('POST', '/v1/agents/agent-b/fetch', { json: { name: 'app', version: '1.0.0' } });
  expect(sent.status).toBe(202);
  const deadline = Date.now() + 60_000;
  let app = status(dirB).packages.find((p) => p.name === 'app');
  while (!app?.complete) {
    if (Date.now() > deadline) throw new Error(`B did not complete: ${JSON.stringify(app)}\n${agents[1]?.logs.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 250));
    app = status(dirB).packages.find((p) => p.name === 'app');
  }
  expect(app.verifiedPieces).toBe(app.totalPieces);
  const verified = runShoal(['verify', pkg, app.path as string]);
  expect(verified.stdout).toMatch(/^ok: 3 files/);
  expect(verified.status).toBe(0);
  const deadlineResult = Date.now() + 10_000;
  while (!fleet.controller.logs.some((l) => l.includes('command result') && l.includes(sent.body.commandId))) {
    if (Date.now() > deadlineResult) throw new Error('the controller never got the result');
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(fleet.controller.logs.find((l) => l.includes(sent.body.commandId) && l.includes('command result'))).toMatch(/"ok":true/);

  // Garbage from an admitted fleet peer on a live connection: A closes it with a typed reason
  // and keeps serving.
  const intruder = await fleet.enroll();
  const seedA = agents[0] as AgentProcess;
  const infoHash = Buffer.from(JSON.parse(runShoal(['inspect', pkg, '--json']).stdout).infoHash, 'hex');
  const garbage = await connectToPeer({
    host: '127.0.0.1',
    port: seedA.peerPort,
    pkg: { name: 'app', infoHash },
    identity: { keyPem: intruder.keyPem, certPem: intruder.certPem, caPem: fleet.caPem },
    fleet: 'pair',
    isRevoked: () => false,
  });
  const closed = new Promise<void>((resolve) => garbage.socket.once('close', () => resolve()));
  garbage.socket.write(randomBytes(4096));
  await closed;
  const deadlineLog = Date.now() + 5000;
  while (!seedA.logs.some((l) => l.includes('peer connection closed') && l.includes(intruder.agentId))) {
    if (Date.now() > deadlineLog) throw new Error(`no typed close logged:\n${seedA.logs.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(seedA.logs.find((l) => l.includes('peer connection closed') && l.includes(intruder.agentId))).toMatch(/"code":"WIRE_[A-Z_]+"/);
  expect(status(dirA).packages[0]?.complete).toBe(true);
  expect(seedA.process.exitCode).toBeNull();

  // Revoking A: B gets the new list on its control stream and closes the connection it dialled to A.
  const leechB = agents[1] as AgentProcess;
  expect((await fleet.rest('POST', '/v1/agents/agent-a/revoke', { json: {} })).status).toBe(201);
  const deadlineRevoke = Date.now() + 10_000;
  while (!leechB.logs.some((l) => l.includes('revocation list applied') && /"closed":[1-9]/.test(l))) {
    if (Date.now() > deadlineRevoke) throw new Error(`B kept its connection to a revoked peer:\n${leechB.logs.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  // SIGTERM: both agents, each with a package and live peer connections, stop cleanly.
  for (const agent of agents.splice(0)) expect(await agent.stop()).toBe(0);
}, 120_000);
