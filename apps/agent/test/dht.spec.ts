import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { type DhtMessage, decodeMessage, encodeMessage, nodeIdFromPublicKeyDer, parseRoutingState } from '@shoal/dht';
import { ConfigError } from '@shoal/config';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import pino from 'pino';
import { Registry } from 'prom-client';
import { DHT_SERVER_NAME } from '../src/peer/admission';
import { loadAgentConfig } from '../src/daemon/config';
import { DhtService, FrameReader, encodeFrame, encodeHello } from '../src/dht';
import { PeerServer, type PeerService, type TlsIdentity, connectToDhtNode } from '../src/peer/tls';

/**
 * The agent's DHT adapter on real TLS 1.3 sockets over loopback, in one process: nodes join,
 * announce and find each other; the certificate binds every message; the transport refuses
 * strangers and garbage; the routing table survives a restart and a hostile file does not.
 */
const FLEET = 'dhtlab';
const revoked = new Set<string>();
let ca: CertificateAuthority;
let caPem: string;
let work: string;
const nodes: TestNode[] = [];

interface TestNode {
  name: string;
  identity: TlsIdentity & { serial: string };
  service: DhtService;
  port: number;
  registry: Registry;
  logs: string[];
  statePath: string;
  close(): Promise<void>;
}

function agentIdentity(agentId: string, authority: CertificateAuthority = ca, authorityPem = caPem): TlsIdentity & { serial: string } {
  const key = generateRsaKeyPair();
  const issued = authority.issueAgentCertificate({ agentId, publicKeyPem: key.publicKeyPem, packageScopes: ['*'], now: new Date() });
  return { keyPem: key.keyPem, certPem: issued.certPem, caPem: authorityPem, serial: issued.serial };
}

function nodeIdOf(identity: TlsIdentity): Buffer {
  return nodeIdFromPublicKeyDer(createPublicKey(identity.certPem).export({ type: 'spki', format: 'der' }));
}

/** A peer server that hands SNI shoal-dht to a DhtService, as the agent daemon wires them. */
async function startNode(name: string, options: { bootstrap?: { host: string; port: number }[]; identity?: TlsIdentity & { serial: string } } = {}): Promise<TestNode> {
  const identity = options.identity ?? agentIdentity(name);
  const registry = new Registry();
  const logs: string[] = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(line) });
  // The service needs the listener's port, the listener hands connections to the service.
  const late: { service?: DhtService } = {};
  const server = new PeerServer({
    identity,
    fleet: FLEET,
    packageFor: () => undefined,
    isRevoked: (serial) => revoked.has(serial),
    acceptDht: (c) => (late.service ? late.service.accept(c) : c.socket.destroy()),
  });
  server.on('refused', (r: { code: string; service: PeerService }) => {
    if (r.service === 'dht') late.service?.countRefused(r.code);
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const statePath = join(work, `${name}.dht.json`);
  const service = new DhtService({
    identity: () => identity,
    fleet: FLEET,
    isRevoked: (serial) => revoked.has(serial),
    port,
    advertiseAddresses: ['127.0.0.1'],
    statePath,
    bootstrap: options.bootstrap ?? [],
    settings: {},
    siteOf: () => undefined,
    log,
    registry,
  });
  late.service = service;
  await service.start();
  const node: TestNode = {
    name,
    identity,
    service,
    port,
    registry,
    logs,
    statePath,
    close: async () => {
      await service.close();
      await server.close();
    },
  };
  nodes.push(node);
  return node;
}

/** The value of a metric sample (0 when absent), e.g. metric(node, 'shoal_agent_dht_refused_total', { code: 'X' }). */
async function metric(node: TestNode, name: string, labels: Record<string, string> = {}): Promise<number> {
  const found = (await node.registry.getSingleMetric(name)?.get())?.values.find((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value));
  return found?.value ?? 0;
}

async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A raw DHT client: TLS with a fleet certificate and SNI shoal-dht, frames written by hand. */
async function rawClient(identity: TlsIdentity, port: number) {
  const { socket } = await connectToDhtNode({ host: '127.0.0.1', port, identity, fleet: FLEET, isRevoked: () => false });
  const reader = new FrameReader();
  const frames: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => frames.push(...reader.push(chunk)));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    frames,
    closed,
    send: (payload: Buffer) => socket.write(encodeFrame(payload)),
    /** The next message after the server's hello. */
    nextMessage: async (): Promise<DhtMessage> => {
      await until(() => frames.length >= 2, 'a reply');
      return decodeMessage(frames.splice(1, 1)[0] as Buffer);
    },
  };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'shoal-dht-'));
  const material = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
  ca = CertificateAuthority.load(material.certPem, material.keyPem);
  caPem = material.certPem;
});

afterAll(async () => {
  await Promise.allSettled(nodes.map((n) => n.close()));
  await rm(work, { recursive: true, force: true });
});

test('nodes join through a bootstrap endpoint, announce a package and find it; the table survives a restart', async () => {
  const a = await startNode('node-a');
  const b = await startNode('node-b', { bootstrap: [{ host: '127.0.0.1', port: a.port }] });
  const c = await startNode('node-c', { bootstrap: [{ host: '127.0.0.1', port: a.port }] });
  await until(() => b.service.status().nodes >= 2 && c.service.status().nodes >= 2, 'the tables to fill');

  const infoHash = randomBytes(20);
  const found: string[][] = [];
  const discovery = c.service.track(infoHash, { wantsPeers: () => false, onPeers: () => undefined });
  await until(async () => (await metric(c, 'shoal_agent_dht_announces_total', { result: 'stored' })) > 0, 'the announce');
  const seeker = b.service.track(infoHash, { wantsPeers: () => true, onPeers: (peers) => void found.push(peers.map((p) => p.agentId)) });
  await until(() => found.flat().includes('node-c'), 'node-c found by node-b');
  const result = await b.service.findPeers(infoHash);
  expect(result.peers).toEqual([{ agentId: 'node-c', addresses: ['127.0.0.1'], port: c.port }]);
  expect(result.rounds).toBeGreaterThanOrEqual(1);
  seeker.stop();
  discovery.stop();
  expect(await metric(b, 'shoal_agent_dht_queries_total', { method: 'get_peers', outcome: 'answered' })).toBeGreaterThan(0);
  expect(await metric(a, 'shoal_agent_dht_queries_served_total', { method: 'find_node' })).toBeGreaterThan(0);

  // Restart b alone, without bootstrap endpoints: the saved table brings it back in.
  await b.close();
  const saved = parseRoutingState(await readFile(b.statePath));
  expect(saved.nodes.map((n) => n.port).sort()).toEqual([a.port, c.port].sort());
  nodes.splice(nodes.indexOf(b), 1);
  const again = await startNode('node-b', { identity: b.identity });
  await until(() => again.service.status().nodes >= 2, 'the restarted node to rejoin from its file');
  // node-b announced itself while it fetched: the storing nodes keep that for peerTtlMs.
  expect((await again.service.findPeers(infoHash)).peers.map((p) => p.agentId).sort()).toEqual(['node-b', 'node-c']);
});

test('a message whose id is not the certificate key hash is dropped and counted; the right id is answered', async () => {
  const target = nodes[0] as TestNode;
  const mallory = agentIdentity('mallory');
  const client = await rawClient(mallory, target.port);
  client.send(encodeHello({ port: 9 }));
  const before = await metric(target, 'shoal_agent_dht_messages_dropped_total', { reason: 'sender_mismatch' });
  client.send(encodeMessage({ type: 'query', transactionId: Buffer.from('t1'), senderId: randomBytes(32), query: { method: 'ping' } }));
  client.send(encodeMessage({ type: 'query', transactionId: Buffer.from('t2'), senderId: nodeIdOf(mallory), query: { method: 'ping' } }));
  const reply = await client.nextMessage();
  expect(reply).toMatchObject({ type: 'response', transactionId: Buffer.from('t2'), senderId: nodeIdOf(target.identity) });
  expect(client.frames).toHaveLength(1);
  expect(await metric(target, 'shoal_agent_dht_messages_dropped_total', { reason: 'sender_mismatch' })).toBe(before + 1);
  client.socket.destroy();
});

test('a certificate from another CA cannot open a DHT connection: refused in the handshake, counted', async () => {
  const target = nodes[0] as TestNode;
  const material = createFleetCa({ fleet: FLEET, now: new Date(), keyBits: 2048 });
  const intruder = agentIdentity('intruder', CertificateAuthority.load(material.certPem, material.keyPem), material.certPem);
  const before = await metric(target, 'shoal_agent_dht_refused_total', { code: 'PEER_CERTIFICATE_INVALID' });
  // The intruder does not know the fleet CA, so it cannot check the agent; what is tested is the agent refusing it.
  const socket = connect({ host: '127.0.0.1', port: target.port, servername: DHT_SERVER_NAME, key: intruder.keyPem, cert: intruder.certPem, rejectUnauthorized: false });
  socket.on('error', () => undefined);
  socket.once('secureConnect', () => socket.write(encodeFrame(encodeHello({ port: 9 }))));
  await new Promise((resolve) => socket.once('close', resolve));
  await until(async () => (await metric(target, 'shoal_agent_dht_refused_total', { code: 'PEER_CERTIFICATE_INVALID' })) === before + 1, 'the refusal count');
});

test('a revoked node is refused, and a revocation closes its live DHT connection', async () => {
  const target = nodes[0] as TestNode;
  const gone = agentIdentity('gone');
  const client = await rawClient(gone, target.port);
  client.send(encodeHello({ port: 9 }));
  await until(() => client.frames.length >= 1, "the server's hello");
  revoked.add(gone.serial);
  expect(target.service.enforceRevocations()).toBe(1);
  await client.closed;
  const refused = await metric(target, 'shoal_agent_dht_refused_total', { code: 'PEER_REVOKED' });
  const retry = await rawClient(gone, target.port).catch(() => undefined);
  await retry?.closed;
  await until(async () => (await metric(target, 'shoal_agent_dht_refused_total', { code: 'PEER_REVOKED' })) === refused + 1, 'the revoked refusal');
});

test('garbage on a DHT connection closes it with a typed reason: no hello, an oversized frame', async () => {
  const target = nodes[0] as TestNode;
  const noHello = await rawClient(agentIdentity('chatty'), target.port);
  noHello.send(encodeMessage({ type: 'query', transactionId: Buffer.from('t1'), senderId: randomBytes(32), query: { method: 'ping' } }));
  await noHello.closed;
  const oversized = await rawClient(agentIdentity('bloated'), target.port);
  oversized.send(encodeHello({ port: 9 }));
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1 << 30);
  oversized.socket.write(header);
  await oversized.closed;
  await until(async () => (await metric(target, 'shoal_agent_dht_connections_closed_total', { reason: 'DHT_BAD_HELLO' })) >= 1, 'the bad hello count');
  await until(async () => (await metric(target, 'shoal_agent_dht_connections_closed_total', { reason: 'DHT_FRAME_TOO_LARGE' })) >= 1, 'the oversized frame count');
});

test('a cached contact whose address holds another certificate fails fast as wrong_node; a corrupt cache is ignored with a warning', async () => {
  const target = nodes[0] as TestNode;
  const impostor = { id: randomBytes(32).toString('hex'), address: '127.0.0.1', port: target.port };
  const state = { format: 'shoal-dht-routing-table', version: 1, nodeId: randomBytes(32).toString('hex'), savedAt: Date.now(), nodes: [impostor], replacements: [] };
  await writeFile(join(work, 'node-d.dht.json'), JSON.stringify(state));
  const d = await startNode('node-d');
  await until(async () => (await metric(d, 'shoal_agent_dht_queries_total', { method: 'find_node', outcome: 'wrong_node' })) === 1, 'the wrong_node failure', 5000);
  expect(d.service.status().nodes).toBe(0);

  await writeFile(join(work, 'node-e.dht.json'), '{"format": "shoal-dht-routing-table", "version": 1, "nodes": [');
  const e = await startNode('node-e');
  expect(e.logs.some((l) => l.includes('ignoring a DHT routing table file that cannot be read'))).toBe(true);
  expect(e.service.status().nodes).toBe(0);
});

test('DHT settings: on by default, bootstrap endpoints and libs/dht settings checked, one line per bad field', () => {
  const defaults = loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d' } });
  expect(defaults).toMatchObject({ dht: true, dhtBootstrap: [], dhtSettings: {} });
  const set = loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d', SHOAL_DHT: 'off', SHOAL_DHT_BOOTSTRAP: '10.0.0.7:6881, [fd00::1]:6881,seed.example.net:7000', SHOAL_DHT_SETTINGS: '{"k":12}' } });
  expect(set).toMatchObject({
    dht: false,
    dhtBootstrap: [{ host: '10.0.0.7', port: 6881 }, { host: 'fd00::1', port: 6881 }, { host: 'seed.example.net', port: 7000 }],
    dhtSettings: { k: 12 },
  });
  let problems: string[] = [];
  try {
    loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d', SHOAL_DHT: 'maybe', SHOAL_DHT_BOOTSTRAP: '10.0.0.7:0,nowhere', SHOAL_DHT_SETTINGS: '{"k":3,"bogus":1}' } });
  } catch (err) {
    problems = (err as ConfigError).problems;
  }
  expect(problems).toEqual([
    'dht (SHOAL_DHT): must be on or off, got "maybe"',
    'dhtBootstrap (SHOAL_DHT_BOOTSTRAP): 10.0.0.7:0: port 0 names no node, got "10.0.0.7:0,nowhere"',
    'dhtSettings (SHOAL_DHT_SETTINGS): bad dht settings: k: must be an integer in 8..20, not 3; bogus: unknown setting, got "{\\"k\\":3,\\"bogus\\":1}"',
  ]);
  const many = Array.from({ length: 65 }, (_, i) => `10.0.0.${i}:6881`).join(',');
  expect(() => loadAgentConfig({ env: { SHOAL_AGENT_DATA_DIR: '/d', SHOAL_DHT_BOOTSTRAP: many } })).toThrow(/at most 64 endpoints/);
});

test('with the DHT off (no acceptDht), the shoal-dht SNI is refused like an unknown package', async () => {
  const server = new PeerServer({ identity: agentIdentity('no-dht'), fleet: FLEET, packageFor: () => undefined, isRevoked: () => false });
  const refused: { code: string; service: PeerService }[] = [];
  server.on('refused', (r: { code: string; service: PeerService }) => refused.push(r));
  const { port } = await server.listen(0, '127.0.0.1');
  try {
    await expect(connectToDhtNode({ host: '127.0.0.1', port, identity: agentIdentity('caller'), fleet: FLEET, isRevoked: () => false })).rejects.toThrow();
    await until(() => refused.length > 0, 'the refusal');
    expect(refused[0]).toMatchObject({ code: 'PEER_UNKNOWN_PACKAGE', service: 'dht' });
  } finally {
    await server.close();
  }
});
