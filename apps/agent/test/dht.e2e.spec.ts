import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { type DhtMessage, type LookupResult, decodeMessage, encodeMessage, nodeIdFromPublicKeyDer, parseRoutingState } from '@shoal/dht';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { type AgentProcess, type PublishedRelease, type SwarmFleet, redisAnswers, runShoal, scratchDir, startAgentProcess, startSwarmFleet } from '@shoal/testing';
import { parseMetainfo, truncatedInfoHash } from '@shoal/torrent';
import pino from 'pino';
import { Registry } from 'prom-client';
import { DhtService, FrameReader, encodeFrame, encodeHello } from '../src/dht';
import { DHT_SERVER_NAME } from '../src/peer/admission';
import { PeerServer, type PeerService, type TlsIdentity, connectToDhtNode } from '../src/peer/tls';

/**
 * Discovery without the controller, end to end: eight agents (real processes, real TLS) swarm a
 * package with no webseed, so peers are the only source; a ninth agent that joined the DHT and
 * was stopped half-way is restarted with the controller and Redis both down, and finishes from
 * peers it finds through its cached routing table alone.
 *
 * Redis is a private redis-server this suite starts on a free port (no persistence) and kills
 * for real: no other suite shares it, so no database number is taken from the shared server.
 * Agents never talk to Redis themselves (the controller is its only client), but killing it
 * makes "controller and Redis down" literal, as the issue asks.
 */
const MiB = 1024 * 1024;
const FLEET = 'dht-e2e';
const SEEDER = 'dht-1';
const LEECHERS = ['dht-2', 'dht-3', 'dht-4', 'dht-5', 'dht-6', 'dht-7', 'dht-8'];
const LATE = 'dht-9';
const LABELS = [
  { region: 'eu', zone: 'eu-1', site: 'a' },
  { region: 'eu', zone: 'eu-2', site: 'b' },
];

jest.setTimeout(300_000);

let redisPort: number;
let redis: ChildProcess | undefined;
let fleet: SwarmFleet;
let release: PublishedRelease;
let infoHash20: Buffer;
let late: AgentProcess | undefined;
let probe: { identity: TlsIdentity; agentId: string } | undefined;

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A throw-away redis-server for this suite (a child process: killing it is a real outage). */
async function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100 && !(await redisAnswers(url)); i++) await new Promise((r) => setTimeout(r, 50));
  if (!(await redisAnswers(url))) throw new Error(`redis-server did not answer on ${port}`);
  return child;
}

async function stopRedis(): Promise<void> {
  const child = redis;
  redis = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** GET on an agent's status socket. */
function agentGet(dataDir: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath: join(dataDir, 'agent.sock'), path, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`${path}: timeout`)));
    req.end();
  });
}

interface AgentStatus {
  dht: { nodes: number; connections: number } | null;
  packages: { name: string; complete: boolean; verifiedPieces: number; totalPieces: number; path: string | null }[];
}

const statusOf = async (dataDir: string): Promise<AgentStatus> => JSON.parse(await agentGet(dataDir, '/status')) as AgentStatus;

/** Sum of a metric's samples whose labels include `labels` (0 when none). */
async function metric(dataDir: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await agentGet(dataDir, '/metrics');
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(match[3]);
  }
  return total;
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const dataDirOf = (name: string): string => (fleet.agents.get(name) as AgentProcess).dataDir;

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

beforeAll(async () => {
  redisPort = await freePort();
  redis = await startRedis(redisPort);
  process.env.REDIS_URL = `redis://127.0.0.1:${redisPort}`;
  fleet = await startSwarmFleet({ db: 0, fleet: FLEET, agents: [] });
  // The test's own Redis client would log every failed reconnect while Redis is down.
  fleet.fleet.redis.on('error', () => undefined);
  // 48 pieces of 256 KiB, no webseed: every byte a fetcher gets comes from a peer.
  release = await fleet.publish('dht-pkg', '1.0.0', { 'payload.bin': 12 * MiB + 4321 }, { webseed: false, pieceLength: '256K' });
  infoHash20 = truncatedInfoHash(parseMetainfo(await readFile(release.torrentPath)).infoHash);
  await fleet.addAgent({
    name: SEEDER,
    labels: LABELS[0],
    beforeStart: (dataDir) => {
      const imported = runShoal(['agent', 'import', release.torrentPath, release.folder, '--name', release.name, '--version', release.version, '--data-dir', dataDir]);
      if (imported.status !== 0) throw new Error(imported.stderr);
    },
  });
  for (const [i, name] of LEECHERS.entries()) await fleet.addAgent({ name, labels: LABELS[(i + 1) % LABELS.length] as Record<string, string> });
  const enrolled = await fleet.fleet.enroll({ tokenBody: { agentName: 'dht-probe' } });
  probe = { agentId: enrolled.agentId, identity: { keyPem: enrolled.keyPem, certPem: enrolled.certPem, caPem: fleet.fleet.caPem } };
}, 240_000);

afterAll(async () => {
  await late?.stop();
  // fleet.stop() empties the suite's database: give it a Redis again (same port, empty).
  if (!redis && redisPort) redis = await startRedis(redisPort).catch(() => undefined);
  await fleet?.stop();
  await stopRedis();
});

test('eight agents swarm the package from peers only, and every one joins the DHT and announces it', async () => {
  await Promise.all(LEECHERS.map((name) => fleet.fetch(name, release)));
  await until(async () => (await Promise.all(LEECHERS.map(async (n) => (await statusOf(dataDirOf(n))).packages[0]?.complete === true))).every(Boolean), 'the swarm to complete');
  for (const name of [SEEDER, ...LEECHERS]) {
    await until(async () => ((await statusOf(dataDirOf(name))).dht?.nodes ?? 0) >= 4, `${name}'s DHT table`, 30_000);
    await until(async () => (await metric(dataDirOf(name), 'shoal_agent_dht_announces_total', { result: 'stored' })) > 0, `${name}'s DHT announce`, 30_000);
  }
  expect(await fleet.originBytes()).toBe(0);
  const tables = await Promise.all([SEEDER, ...LEECHERS].map(async (n) => (await statusOf(dataDirOf(n))).dht?.nodes));
  console.log(`DHT tables of the 8 agents after the swarm: ${tables.join(' ')} nodes`);
});

test('a node whose certificate key does not hash to the id it claims is ignored; a certificate of another CA cannot join', async () => {
  const seeder = dataDirOf(SEEDER);
  const port = (fleet.agents.get(SEEDER) as AgentProcess).peerPort;
  const identity = probe?.identity as TlsIdentity;
  const { socket } = await connectToDhtNode({ host: '127.0.0.1', port, identity, fleet: FLEET, isRevoked: () => false });
  const reader = new FrameReader();
  const frames: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => frames.push(...reader.push(chunk)));
  const mismatches = await metric(seeder, 'shoal_agent_dht_messages_dropped_total', { reason: 'sender_mismatch' });
  const ownId = nodeIdFromPublicKeyDer(createPublicKey(identity.certPem).export({ type: 'spki', format: 'der' }));
  socket.write(encodeFrame(encodeHello({ port: 9 })));
  // A real fleet certificate, a made-up id: an attempt to take another node's place in tables.
  socket.write(encodeFrame(encodeMessage({ type: 'query', transactionId: Buffer.from('x1'), senderId: randomBytes(32), query: { method: 'find_node', target: randomBytes(32) } })));
  socket.write(encodeFrame(encodeMessage({ type: 'query', transactionId: Buffer.from('x2'), senderId: ownId, query: { method: 'ping' } })));
  await until(async () => frames.length >= 2, 'the answer to the honest ping', 10_000);
  const answers = frames.slice(1).map((f) => decodeMessage(f));
  expect(answers).toHaveLength(1);
  expect(answers[0]).toMatchObject({ type: 'response', transactionId: Buffer.from('x2') } satisfies Partial<DhtMessage>);
  expect(await metric(seeder, 'shoal_agent_dht_messages_dropped_total', { reason: 'sender_mismatch' })).toBe(mismatches + 1);
  socket.destroy();

  const foreignCa = createFleetCa({ fleet: FLEET, now: new Date(), keyBits: 2048 });
  const key = generateRsaKeyPair();
  const foreign = CertificateAuthority.load(foreignCa.certPem, foreignCa.keyPem).issueAgentCertificate({ agentId: 'intruder', publicKeyPem: key.publicKeyPem, packageScopes: ['*'], now: new Date() });
  const refused = await metric(seeder, 'shoal_agent_dht_refused_total', { code: 'PEER_CERTIFICATE_INVALID' });
  // The intruder does not know the fleet CA, so it cannot check the agent; what is tested is the agent refusing it.
  const intruder = connect({ host: '127.0.0.1', port, servername: DHT_SERVER_NAME, key: key.keyPem, cert: foreign.certPem, rejectUnauthorized: false });
  intruder.on('error', () => undefined);
  intruder.once('secureConnect', () => intruder.write(encodeFrame(encodeHello({ port: 9 }))));
  const heard: Buffer[] = [];
  intruder.on('data', (chunk: Buffer) => heard.push(chunk));
  await new Promise((resolve) => intruder.once('close', resolve));
  expect(heard).toEqual([]);
  await until(async () => (await metric(seeder, 'shoal_agent_dht_refused_total', { code: 'PEER_CERTIFICATE_INVALID' })) === refused + 1, 'the refusal count', 10_000);
});

test('controller and Redis down: a ninth agent restarted from its cached routing table finds peers through the DHT and completes', async () => {
  // First life: joins through the tracker's peers while fetching slowly, then stops half-way.
  const first = await fleet.addAgent({ name: LATE, labels: LABELS[1], env: { SHOAL_DOWNLOAD_LIMIT: '512KiB' } });
  const dataDir = first.dataDir;
  await fleet.fetch(LATE, release);
  await until(async () => {
    const status = await statusOf(dataDir);
    return (status.packages[0]?.verifiedPieces ?? 0) >= 4 && (status.dht?.nodes ?? 0) >= 6;
  }, `${LATE} to join the DHT and fetch a few pieces`, 60_000);
  await fleet.stopAgent(LATE);
  const cached = parseRoutingState(await readFile(join(dataDir, 'dht.json')));
  expect(cached.nodes.length).toBeGreaterThanOrEqual(6);

  // The outage: the controller process stops, Redis dies.
  await fleet.fleet.controller.stop();
  await stopRedis();
  expect(await redisAnswers(`redis://127.0.0.1:${redisPort}`)).toBe(false);

  // Second life, no download cap: the catalog resumes the package (no TUF: it was verified when
  // fetched), the tracker cannot answer, the DHT can.
  const restartedAt = Date.now();
  late = await startAgentProcess({ dataDir, env: { SHOAL_LOG_LEVEL: 'info' } });
  await until(async () => (await statusOf(dataDir)).packages[0]?.complete === true, `${LATE} to complete from DHT peers`, 120_000);
  const tookMs = Date.now() - restartedAt;
  const status = await statusOf(dataDir);
  expect(runShoal(['verify', release.torrentPath, status.packages[0]?.path as string]).status).toBe(0);
  expect(await sha256File(status.packages[0]?.path as string)).toBe(await sha256File(join(release.folder, 'payload.bin')));
  expect(await metric(dataDir, 'shoal_agent_peers_discovered_total', { source: 'dht' })).toBeGreaterThan(0);
  expect(await metric(dataDir, 'shoal_agent_peers_connected_total', { source: 'dht' })).toBeGreaterThan(0);
  expect(await metric(dataDir, 'shoal_agent_peers_discovered_total', { source: 'tracker' })).toBe(0);
  expect(await metric(dataDir, 'shoal_agent_peers_connected_total', { source: 'tracker' })).toBe(0);
  const firstLookup = late.logs.map((l) => JSON.parse(l) as { msg?: string; rounds?: number; ms?: number; peers?: number; queries?: number }).find((l) => l.msg === 'dht lookup finished' && (l.peers ?? 0) > 0);
  expect(late.logs.some((l) => l.includes('announce failed'))).toBe(true);
  console.log(
    `${LATE} restarted with controller and Redis down: completed in ${tookMs} ms from peers found through the DHT; ` +
      `first get_peers from the cached table (cold TLS connections): ${firstLookup?.rounds} rounds, ${firstLookup?.queries} queries, ${firstLookup?.ms} ms, ${firstLookup?.peers} peers`,
  );
});

test('get_peers latency on loopback over the fleet, controller still down (an in-process node joining through one agent)', async () => {
  const identity = probe?.identity as TlsIdentity;
  const registry = new Registry();
  // The service needs the listener's port, the listener hands connections to the service.
  const holder: { service?: DhtService } = {};
  const server = new PeerServer({ identity, fleet: FLEET, packageFor: () => undefined, isRevoked: () => false, acceptDht: (c) => holder.service?.accept(c) });
  server.on('refused', (r: { code: string; service: PeerService }) => r.service === 'dht' && holder.service?.countRefused(r.code));
  const { port } = await server.listen(0, '127.0.0.1');
  const scratch = await scratchDir('dht-probe');
  const service = new DhtService({
    identity: () => identity,
    fleet: FLEET,
    isRevoked: () => false,
    port,
    advertiseAddresses: [],
    statePath: join(scratch.path, 'dht.json'),
    bootstrap: [{ host: '127.0.0.1', port: (fleet.agents.get(SEEDER) as AgentProcess).peerPort }],
    settings: {},
    siteOf: () => undefined,
    log: pino({ level: 'silent' }),
    registry,
  });
  holder.service = service;
  try {
    await service.start();
    await until(async () => service.status().nodes >= 8, 'the probe node to join', 30_000);
    const results: LookupResult[] = [];
    for (let i = 0; i < 20; i++) results.push(await service.findPeers(infoHash20));
    for (const result of results) expect(result.peers.length).toBeGreaterThanOrEqual(8);
    const ms = results.map((r) => r.finishedAt - r.startedAt).sort((a, b) => a - b);
    const rounds = results.map((r) => r.rounds).sort((a, b) => a - b);
    const queries = results.map((r) => r.queries).sort((a, b) => a - b);
    const median = (values: number[]) => values[Math.floor(values.length / 2)] as number;
    console.log(
      `get_peers over 9 agents on loopback (pooled mTLS connections), 20 lookups: median ${median(ms)} ms (min ${ms[0]}, max ${ms.at(-1)}), ` +
        `rounds median ${median(rounds)} (max ${rounds.at(-1)}), queries median ${median(queries)}, peers ${results[0]?.peers.length}`,
    );
    expect(median(rounds)).toBeLessThanOrEqual(4);
  } finally {
    await service.close();
    await server.close();
    await scratch.remove();
  }
});
