import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { type AgentProcess, type TestFleet, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';

/**
 * kill -9 in the middle of a download: the restarted agent completes without fetching again what
 * it had verified — what it downloads after the restart is at most the unverified remainder plus
 * one piece per connection.
 */
const SIZE = 384 * 1024 * 1024;
const PIECE = 1024 * 1024;

let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const agents: AgentProcess[] = [];

interface PackageStatus {
  complete: boolean;
  verifiedPieces: number;
  totalPieces: number;
  bytesDownloaded: number;
  peers: number;
  path: string | null;
}

function status(dataDir: string): Promise<PackageStatus | undefined> {
  return new Promise((resolve) => {
    const req = get({ socketPath: join(dataDir, 'agent.sock'), path: '/status' }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve((JSON.parse(text) as { packages: PackageStatus[] }).packages[0]));
    });
    req.on('error', () => resolve(undefined));
  });
}

async function until<T>(probe: () => Promise<T | undefined>, ok: (v: T) => boolean, what: string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  fleet = await startTestFleet(6, 'resume');
  scratch = await scratchDir('resume');
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  await fleet?.stop();
  await scratch?.remove();
});

test('an agent killed with SIGKILL mid-download resumes without refetching verified pieces', async () => {
  const release = join(scratch.path, 'release');
  mkdirSync(release);
  const block = randomBytes(16 * 1024 * 1024);
  const fd = openSync(join(release, 'image.bin'), 'w');
  for (let offset = 0, n = 0; offset < SIZE; offset += block.length, n++) {
    block.writeUInt32LE(n, 0);
    writeSync(fd, block);
  }
  closeSync(fd);
  const pkg = join(scratch.path, 'image.torrent');
  const caFile = join(fleet.dataDir, 'ca', 'ca.pem');
  expect(runShoal(['pack', release, '-o', pkg, '--piece-length', String(PIECE), '--ca', caFile]).status).toBe(0);
  expect(runShoal(['publish', pkg, '--name', 'image', '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]).status).toBe(0);
  const seedDir = await fleet.enrollAgentDir('seed', scratch.path);
  expect(runShoal(['agent', 'import', pkg, release, '--name', 'image', '--version', '1.0.0', '--data-dir', seedDir]).status).toBe(0);
  agents.push(await startAgentProcess({ dataDir: seedDir }));
  const leechDir = await fleet.enrollAgentDir('leech', scratch.path);
  const leech = await startAgentProcess({ dataDir: leechDir });
  await fleet.untilConnected('leech');
  expect((await fleet.rest('POST', '/v1/agents/leech/fetch', { json: { name: 'image', version: '1.0.0' } })).status).toBe(202);

  const beforeKill = await until(() => status(leechDir), (s) => s.verifiedPieces >= s.totalPieces * 0.4, 'the leech to reach 40 %');
  leech.process.kill('SIGKILL');
  await leech.stop();
  expect(beforeKill.complete).toBe(false);

  const restarted = await startAgentProcess({ dataDir: leechDir });
  agents.push(restarted);
  const done = await until(() => status(leechDir), (s) => s.complete, 'the restarted leech to complete');
  const remainder = (done.totalPieces - beforeKill.verifiedPieces) * PIECE;
  const connections = Math.max(1, done.peers);
  expect(done.bytesDownloaded).toBeLessThanOrEqual(remainder + connections * PIECE);
  expect(done.bytesDownloaded).toBeGreaterThan(0);
  const verified = runShoal(['verify', pkg, done.path as string]);
  expect(verified.status).toBe(0);
}, 180_000);
