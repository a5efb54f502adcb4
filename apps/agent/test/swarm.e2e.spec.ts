import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type AnnounceResponse, unary } from '@shoal/proto';
import { PackageStore } from '@shoal/store';
import { type AgentProcess, type PublishedRelease, type SwarmFleet, runShoal, scratchDir, startSwarmFleet } from '@shoal/testing';
import { parseMetainfo, truncatedInfoHash } from '@shoal/torrent';
import { wireName } from '../src/peer/admission';
import { type AdmittedConnection, PeerServer } from '../src/peer/tls';
import { PackageSession, type SessionStore } from '../src/session';

/**
 * The swarm end to end: a controller serving the webseed origin and eight agents as real
 * processes on loopback (four sites in two regions), real TLS, real Redis (database 2).
 */
const MiB = 1024 * 1024;
const LABELS = [
  { region: 'eu', zone: 'eu-1', site: 'a' },
  { region: 'eu', zone: 'eu-1', site: 'b' },
  { region: 'eu', zone: 'eu-2', site: 'c' },
  { region: 'us', zone: 'us-1', site: 'd' },
];
const AGENTS = Array.from({ length: 8 }, (_, i) => ({ name: `swarm-${i + 1}`, labels: LABELS[i % LABELS.length] as Record<string, string> }));

jest.setTimeout(300_000);

let fleet: SwarmFleet;

beforeAll(async () => {
  fleet = await startSwarmFleet({ db: 2, fleet: 'swarm-e2e', agents: AGENTS });
}, 180_000);

afterAll(async () => {
  await fleet?.stop();
});

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Waits until every named agent reports the release complete; fails with their states otherwise. */
async function untilComplete(names: readonly string[], release: { name: string; version: string }, timeoutMs = 240_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await Promise.all(names.map(async (n) => [n, await fleet.packageStatus(n, release).catch(() => undefined)] as const));
    if (states.every(([, s]) => s?.complete)) return;
    if (Date.now() > deadline) {
      const logs = names.map((n) => `${n}: ${(fleet.agents.get(n) as AgentProcess).logs.slice(-5).join('\n')}`).join('\n');
      throw new Error(`not complete: ${JSON.stringify(states.map(([n, s]) => [n, s && `${s.verifiedPieces}/${s.totalPieces}`]))}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Every agent's copy verifies against the package and is byte-identical to the origin's files. */
async function expectIdenticalCopies(names: readonly string[], release: PublishedRelease, files: readonly string[]): Promise<void> {
  const originHashes = await Promise.all(files.map((f) => sha256File(join(release.folder, ...f.split('/')))));
  for (const name of names) {
    const status = await fleet.packageStatus(name, release);
    expect(status?.path).toBeTruthy();
    const verified = runShoal(['verify', release.torrentPath, status?.path as string]);
    expect(verified.status).toBe(0);
    // A single-file package finishes as the file itself.
    const root = status?.path as string;
    const single = (await stat(root)).isFile();
    const hashes = await Promise.all(files.map((f) => sha256File(single ? root : join(root, ...f.split('/')))));
    expect(hashes).toEqual(originHashes);
  }
}

test('controller + origin + 8 agents distribute a 256 MiB package: identical copies, origin serves <= 1.2 x the package', async () => {
  const files: Record<string, number> = { 'bin/tool': 40 * MiB + 12_345, 'lib/core.so': 96 * MiB, 'data/a.pak': 60 * MiB - 12_345, 'data/b.pak': 60 * MiB, 'README': 1000 };
  const release = await fleet.publish('big', '1.0.0', files);
  const originBefore = await fleet.originBytes();
  const names = AGENTS.map((a) => a.name);
  await Promise.all(names.map((n) => fleet.fetch(n, release)));
  await untilComplete(names, release);
  const originBytes = (await fleet.originBytes()) - originBefore;
  const statuses = await Promise.all(names.map((n) => fleet.packageStatus(n, release)));
  const fromPeers = statuses.reduce((sum, s) => sum + (s?.bytesDownloaded ?? 0), 0);
  console.log(
    `8 agents x ${(release.bytes / MiB).toFixed(0)} MiB: origin served ${(originBytes / release.bytes).toFixed(3)} x the package; peers moved ${(fromPeers / MiB).toFixed(0)} MiB`,
  );
  expect(originBytes).toBeGreaterThanOrEqual(release.bytes * 0.99);
  expect(originBytes).toBeLessThanOrEqual(1.2 * release.bytes);
  await expectIdenticalCopies(names, release, Object.keys(files));
});

test('the only seeder leaves at 30 %: the others finish from each other plus the webseed', async () => {
  const files: Record<string, number> = { 'payload.bin': 48 * MiB + 777, 'extra/data.bin': 16 * MiB };
  const release = await fleet.publish('seeded', '1.0.0', files);
  await fleet.addAgent({
    name: 'seeder',
    labels: { region: 'eu', zone: 'eu-1', site: 'a' },
    beforeStart: (dataDir) => {
      const imported = runShoal(['agent', 'import', release.torrentPath, release.folder, '--name', release.name, '--version', release.version, '--data-dir', dataDir]);
      if (imported.status !== 0) throw new Error(imported.stderr);
    },
  });
  const names = AGENTS.map((a) => a.name);
  await Promise.all(names.map((n) => fleet.fetch(n, release)));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const states = await Promise.all(names.map((n) => fleet.packageStatus(n, release)));
    const done = states.reduce((sum, s) => sum + (s ? s.verifiedPieces / s.totalPieces : 0), 0) / names.length;
    if (done >= 0.3) break;
    if (Date.now() > deadline) throw new Error('the fleet never reached 30 %');
    await new Promise((r) => setTimeout(r, 20));
  }
  await fleet.stopAgent('seeder');
  const atStop = await Promise.all(names.map((n) => fleet.packageStatus(n, release)));
  const incomplete = atStop.filter((s) => !s?.complete).length;
  await untilComplete(names, release);
  console.log(`seeder left with ${incomplete} of 8 agents incomplete; all finished from peers + webseed`);
  await expectIdenticalCopies(names, release, Object.keys(files));
});

test('an agent with a valid certificate that corrupts blocks is banned by the others; every honest agent completes, none is banned', async () => {
  const files: Record<string, number> = { 'image.bin': 24 * MiB + 5 };
  const release = await fleet.publish('tainted', '1.0.0', files);
  const metainfoBytes = await readFile(release.torrentPath);
  const metainfo = parseMetainfo(metainfoBytes);

  // The corrupter: a fleet member (certificate from the controller) holding a verified copy,
  // which flips a byte in every block it serves and announces itself as a seed.
  const evil = await fleet.fleet.enroll({ tokenBody: { agentName: 'corrupter', labels: { region: 'eu', zone: 'eu-1', site: 'a' } } });
  const scratch = await scratchDir('corrupter');
  const store = await PackageStore.open({ root: scratch.path, metainfo });
  const data = await readFile(join(release.folder, 'image.bin'));
  for (let i = 0; i < metainfo.numPieces; i++) await store.writePiece(i, data.subarray(i * metainfo.pieceLength, (i + 1) * metainfo.pieceLength));
  const corrupting: SessionStore = {
    have: () => store.have(),
    writePiece: (i, d) => store.writePiece(i, d),
    leafHashes: (i) => store.leafHashes(i),
    readBlock: async (i, begin, length) => {
      const block = Buffer.from(await store.readBlock(i, begin, length));
      block[0] = (block[0] as number) ^ 0xff;
      return block;
    },
  };
  const session = new PackageSession({ metainfo, store: corrupting, peerId: Buffer.alloc(20, 7), selfName: evil.agentId, swarm: { seeding: 'announce-all' } });
  const identity = { keyPem: evil.keyPem, certPem: evil.certPem, caPem: fleet.fleet.caPem };
  const server = new PeerServer({ identity, fleet: 'swarm-e2e', packageFor: (hex) => (hex === wireName(metainfo.infoHash) ? { name: release.name, infoHash: metainfo.infoHash } : undefined), isRevoked: () => false });
  server.on('connection', (c: AdmittedConnection) => session.attach(c.socket, 'acceptor', c.peer.agentId));
  const address = await server.listen(0, '127.0.0.1');
  const tracker = fleet.fleet.mtlsClient('Tracker', identity);
  const announce = () =>
    unary<object, AnnounceResponse>(tracker, 'Announce', {
      infoHash: truncatedInfoHash(metainfo.infoHash),
      port: address.port,
      addresses: ['127.0.0.1'],
      left: 0,
      uploaded: 0,
      downloaded: 0,
      event: 'ANNOUNCE_EVENT_STARTED',
      numwant: 0,
    });
  await announce();
  try {
    const names = AGENTS.map((a) => a.name);
    await Promise.all(names.map((n) => fleet.fetch(n, release)));
    await untilComplete(names, release);
    await expectIdenticalCopies(names, release, Object.keys(files));
    const bans = names.flatMap((n) => (fleet.agents.get(n) as AgentProcess).logs.filter((l) => l.includes('peer banned')));
    const banned = new Set(bans.map((l) => (JSON.parse(l) as { peerName: string }).peerName));
    console.log(`corrupter served ${(session.progress.bytesUploaded / MiB).toFixed(1)} MiB of bad blocks; banned by ${bans.length} agents`);
    expect([...banned].every((name) => name === evil.agentId)).toBe(true);
    expect(bans.length).toBeGreaterThan(0);
    for (const n of names) expect((await fleet.packageStatus(n, release))?.complete).toBe(true);
  } finally {
    await session.close();
    await server.close();
    tracker.close();
    await store.close();
    await scratch.remove();
  }
});

test('a new version changing 2 of 50 files: each agent fetches <= 1.1 x the changed files, reusing the rest (a renamed file too)', async () => {
  const v1: Record<string, Buffer> = {};
  for (let i = 0; i < 50; i++) v1[`files/part-${String(i).padStart(2, '0')}.bin`] = randomBytes(256 * 1024 + ((i * 7919) % 23) * 65_536 + i);
  const release1 = await fleet.publish('app', '1.0.0', v1, { folder: 'app-1' });
  const names = AGENTS.map((a) => a.name);
  await Promise.all(names.map((n) => fleet.fetch(n, release1)));
  await untilComplete(names, release1);

  const v2: Record<string, Buffer> = { ...v1 };
  const changed = ['files/part-07.bin', 'files/part-31.bin'];
  for (const path of changed) v2[path] = randomBytes((v1[path] as Buffer).length + 4321);
  // Identity is content (pieces root), not the path: a renamed file is reused too.
  v2['files/renamed-12.bin'] = v1['files/part-12.bin'] as Buffer;
  delete v2['files/part-12.bin'];
  const changedBytes = changed.reduce((sum, path) => sum + (v2[path] as Buffer).length, 0);
  const release2 = await fleet.publish('app', '2.0.0', v2, { folder: 'app-2' });
  await Promise.all(names.map((n) => fleet.fetch(n, release2)));
  await untilComplete(names, release2);

  const fetched = await Promise.all(names.map(async (n) => {
    const s = await fleet.packageStatus(n, release2);
    return (s?.bytesDownloaded ?? Infinity) + (s?.bytesFromWebseed ?? Infinity);
  }));
  console.log(`v2 changes ${(changedBytes / MiB).toFixed(2)} MiB of ${(release2.bytes / MiB).toFixed(1)} MiB; fetched per agent (MiB): ${fetched.map((b) => (b / MiB).toFixed(2)).join(' ')}`);
  for (const bytes of fetched) expect(bytes).toBeLessThanOrEqual(1.1 * changedBytes);
  await expectIdenticalCopies(names, release2, Object.keys(v2));
});
