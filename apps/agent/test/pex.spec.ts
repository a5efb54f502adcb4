import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { PackageStore } from '@shoal/store';
import { type BDict, type Metainfo, createPackage, encode, truncatedInfoHash } from '@shoal/torrent';
import {
  DEFAULT_PEX_LIMITS,
  MAX_PEX_ADDED,
  PEX_EXTENSION,
  PeerConnection,
  PexFlag,
  type PexLimits,
  type PexMessage,
  buildPexMessage,
  parsePexMessage,
} from '@shoal/wire';
import type { WirePackage } from '../src/peer/admission';
import { type AdmittedConnection, PeerServer, type TlsIdentity, connectToPeer } from '../src/peer/tls';
import {
  type LearnedPeer,
  PackageGeometry,
  PackageSession,
  type PackageSessionOptions,
  type PeerClosedEvent,
  type PexMessageEvent,
  type PexPeersEvent,
} from '../src/session';

/**
 * Peer exchange (BEP 11) between package sessions on real TLS 1.3 sockets over loopback (fleet
 * certificates, PeerServer / connectToPeer admission), and against a peer scripted with a raw
 * PeerConnection, which sees exactly what a session sends. Timing is checked on an injected
 * clock (`PackageSessionOptions.clock`) that the test moves: the session's timer still ticks in
 * real time (tickMs 20) but reads that clock, so a minute passes in one step.
 */
const FLEET = 'lab';
const PIECE_LENGTH = 64 * 1024;

let work: string;
let ca: CertificateAuthority;
let caPem: string;
let metainfo: Metainfo;
let wirePkg: WirePackage;
const contents = new Map<string, Buffer>();
const identities = new Map<string, TlsIdentity>();
/** Run after each test, last registered first. */
let cleanups: (() => Promise<unknown>)[] = [];

function identity(agentId: string): TlsIdentity {
  let found = identities.get(agentId);
  if (!found) {
    const key = generateRsaKeyPair();
    const issued = ca.issueAgentCertificate({ agentId, publicKeyPem: key.publicKeyPem, packageScopes: ['*'], now: new Date() });
    found = { keyPem: key.keyPem, certPem: issued.certPem, caPem };
    identities.set(agentId, found);
  }
  return found;
}

/** The bytes of a piece, from the generated files. */
function sourcePiece(index: number): Buffer {
  const file = metainfo.files.find((f) => index >= f.firstPiece && index < f.firstPiece + f.numPieces);
  if (!file) throw new Error(`no file holds piece ${index}`);
  const data = contents.get(file.path.join('/')) as Buffer;
  const start = (index - file.firstPiece) * PIECE_LENGTH;
  return data.subarray(start, Math.min(start + PIECE_LENGTH, data.length));
}

const peerIdOf = (name: string): Buffer => Buffer.from(`-SH0100-${name}`.padEnd(20, '-').slice(0, 20), 'latin1');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Node {
  name: string;
  session: PackageSession;
  port: number;
  learned: PexPeersEvent[];
  pexEvents: PexMessageEvent[];
  closed: PeerClosedEvent[];
}

interface NodeOptions {
  /** Starts complete, announcing every piece (a super-seed would hide that it is a seed). */
  seed?: boolean;
  clock?: () => number;
  pex?: Partial<PexLimits>;
}

/** A session behind its own PeerServer on 127.0.0.1, announcing its listen port (`p`). */
async function startNode(name: string, options: NodeOptions = {}): Promise<Node> {
  const store = await PackageStore.open({ root: await mkdtemp(join(work, 'store-')), metainfo });
  cleanups.push(() => store.close());
  if (options.seed) {
    for (let i = 0; i < metainfo.numPieces; i++) expect(await store.writePiece(i, sourcePiece(i))).toBe('verified');
    await store.finish();
  }
  const server = new PeerServer({
    identity: identity(name),
    fleet: FLEET,
    packageFor: (hex) => (hex === truncatedInfoHash(metainfo.infoHash).toString('hex') ? wirePkg : undefined),
    isRevoked: () => false,
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const sessionOptions: PackageSessionOptions = {
    metainfo,
    store,
    peerId: peerIdOf(name),
    selfName: name,
    tickMs: 20,
    listenPort: port,
    // The injected clock jumps by minutes: no connection may time out for idleness meanwhile.
    connectionLimits: { idleTimeoutMs: 24 * 3600_000 },
    ...(options.seed ? { swarm: { seeding: 'announce-all' } } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.pex ? { pex: options.pex } : {}),
  };
  const session = new PackageSession(sessionOptions);
  const node: Node = { name, session, port, learned: [], pexEvents: [], closed: [] };
  session.on('pex-peers', (e: PexPeersEvent) => node.learned.push(e));
  session.on('pex-message', (e: PexMessageEvent) => node.pexEvents.push(e));
  session.on('peer-closed', (e: PeerClosedEvent) => node.closed.push(e));
  session.on('session-error', (err: Error) => {
    throw err;
  });
  server.on('connection', (c: AdmittedConnection) => session.attach(c.socket, 'acceptor', c.peer.agentId));
  cleanups.push(async () => {
    await session.close();
    await server.close();
  });
  return node;
}

function dialNode(fromName: string, host: string, port: number): Promise<AdmittedConnection> {
  return connectToPeer({ host, port, pkg: wirePkg, identity: identity(fromName), fleet: FLEET, isRevoked: () => false, timeoutMs: 5000 });
}

async function connect(from: Node, to: Node): Promise<void> {
  const c = await dialNode(from.name, '127.0.0.1', to.port);
  from.session.attach(c.socket, 'initiator', c.peer.agentId);
}

const isOpenWith = (node: Node, peerName: string): boolean => node.session.peerStats().some((p) => p.peerName === peerName && p.phase === 'open');

/** A peer scripted with a raw PeerConnection: records every ut_pex message it gets, with the time `stamp()` gives. */
class ScriptedPeer {
  readonly received: { at: number; message: PexMessage }[] = [];
  readonly conn: PeerConnection;

  private constructor(
    readonly socket: TLSSocket,
    listenPort: number,
    private readonly stamp: () => number,
  ) {
    const geometry = new PackageGeometry(metainfo);
    this.conn = new PeerConnection({
      infoHash20: truncatedInfoHash(metainfo.infoHash),
      localPeerId: peerIdOf(`raw${listenPort}`),
      numPieces: geometry.numPieces,
      pieceLength: geometry.pieceLength,
      totalLength: geometry.wireTotalLength,
      role: 'initiator',
      // Its own clock stands still: it never times out or sends keep-alives.
      now: 0,
      listenPort,
    });
    socket.on('data', (chunk: Buffer) => {
      this.conn.receive(chunk, 0);
      this.flush();
    });
    socket.on('error', () => undefined);
    this.flush();
  }

  static async dial(name: string, target: Node, listenPort: number, stamp: () => number): Promise<ScriptedPeer> {
    const c = await dialNode(name, '127.0.0.1', target.port);
    const peer = new ScriptedPeer(c.socket, listenPort, stamp);
    cleanups.push(async () => peer.socket.destroy());
    await until(`${name}'s extended handshake with ${target.name}`, () => peer.conn.peerExtendedHandshake?.m.has(PEX_EXTENSION) === true);
    return peer;
  }

  sendPex(payload: BDict): void {
    expect(this.conn.extended(PEX_EXTENSION, payload, 0)).toBe(true);
    this.flush();
  }

  private flush(): void {
    const { outgoing, events } = this.conn.drain();
    for (const frame of outgoing) this.socket.write(frame);
    for (const e of events) if (e.type === 'extension' && e.name === PEX_EXTENSION) this.received.push({ at: this.stamp(), message: parsePexMessage(e.payload) });
  }
}

const loopback = (port: number, flags = 0) => ({ ip: Buffer.from([127, 0, 0, 1]), port, flags });
const portsOf = (list: { port: number }[]) => list.map((e) => e.port).sort((a, b) => a - b);

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'shoal-pex-'));
  const material = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
  ca = CertificateAuthority.load(material.certPem, material.keyPem);
  caPem = material.certPem;
  const folder = join(work, 'source', 'bundle');
  await mkdir(folder, { recursive: true });
  contents.set('app.bin', randomBytes(3 * PIECE_LENGTH + 1000));
  contents.set('readme.txt', randomBytes(500));
  for (const [name, data] of contents) await writeFile(join(folder, name), data);
  ({ metainfo } = await createPackage(folder, { pieceLength: PIECE_LENGTH, sslCert: caPem, hashThreads: 0 }));
  wirePkg = { name: metainfo.name, infoHash: metainfo.infoHash };
});

afterEach(async () => {
  const pending = cleanups.reverse();
  cleanups = [];
  for (const fn of pending) await fn().catch(() => undefined);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

test('B learns C from A through PEX, dials the address and connects; nobody learns itself', async () => {
  // First message right after the handshake, so that the test need not wait 5 s.
  const pex = { firstMessageDelayMs: 0 };
  const a = await startNode('pex-a', { seed: true, pex });
  const b = await startNode('pex-b', { pex });
  const c = await startNode('pex-c', { pex });
  // A accepts both: it knows their listen ports only from their extended handshakes (`p`).
  await connect(c, a);
  await connect(b, a);

  const hasPort = (node: Node, port: number) => node.learned.some((e) => e.peers.some((p) => p.port === port));
  await until('B to learn C', () => hasPort(b, c.port));
  const fromA = b.learned.find((e) => e.peers.some((p) => p.port === c.port)) as PexPeersEvent;
  expect(fromA.peerName).toBe('pex-a');
  // (C may have finished downloading from A by then: its seed flag is not checked here.)
  expect(fromA.peers).toContainEqual(expect.objectContaining({ address: '127.0.0.1', port: c.port }));

  const learned = fromA.peers.find((p) => p.port === c.port) as LearnedPeer;
  const link = await dialNode(b.name, learned.address, learned.port);
  expect(link.peer.agentId).toBe('pex-c');
  b.session.attach(link.socket, 'initiator', link.peer.agentId);
  await until('C to hold a connection from B', () => isOpenWith(c, 'pex-b') && isOpenWith(b, 'pex-c'));

  // C learned B the same way (A told it once B connected).
  await until('C to hear from A about B', () => c.pexEvents.some((e) => e.peerName === 'pex-a' && e.direction === 'received'));
  for (const node of [a, b, c]) expect(hasPort(node, node.port)).toBe(false);
  expect(hasPort(a, a.port) || hasPort(a, b.port) || hasPort(a, c.port)).toBe(false);
  expect(a.pexEvents.filter((e) => e.direction === 'sent').map((e) => e.peerName).sort()).toEqual(['pex-b', 'pex-c']);
  for (const node of [a, b, c]) expect(node.pexEvents.filter((e) => e.direction === 'ignored')).toEqual([]);
  for (const node of [a, b, c]) expect(node.closed).toEqual([]);
});

test('one message per minute per connection, deltas only, never the recipient itself (injected clock)', async () => {
  let now = 1_000_000;
  const clock = () => now;
  const a = await startNode('clock-a', { seed: true, clock });
  const r = await ScriptedPeer.dial('clock-r', a, 40001, clock);
  const c = await startNode('clock-c', { seed: true });
  await connect(c, a);
  await until('A to hold C', () => isOpenWith(a, 'clock-c'));
  await sleep(100);
  expect(r.received).toEqual([]);

  // The first message waits firstMessageDelayMs after the handshake (A's clock stood still since).
  now += DEFAULT_PEX_LIMITS.firstMessageDelayMs;
  await until('the first message', () => r.received.length === 1);
  const first = r.received[0]?.message as PexMessage;
  // C is a seed that dialled A: seed flag, not "reachable" (A did not connect to it).
  expect(first.added.map((e) => [e.port, e.flags])).toEqual([[c.port, PexFlag.seed]]);
  expect(first.dropped).toEqual([]);
  const t1 = now;

  const d = await startNode('clock-d', { seed: true });
  await connect(d, a);
  await until('A to hold D', () => isOpenWith(a, 'clock-d'));
  for (const dt of [1, 30_000, DEFAULT_PEX_LIMITS.sendIntervalMs - 1]) {
    now = t1 + dt;
    await sleep(150);
    expect(r.received).toHaveLength(1);
  }
  now = t1 + DEFAULT_PEX_LIMITS.sendIntervalMs;
  await until('the second message', () => r.received.length === 2);
  expect(r.received[1]?.message).toEqual({ added: [loopback(d.port, PexFlag.seed)], dropped: [] });
  const t2 = now;

  await d.session.close();
  await until('A to see D go', () => !isOpenWith(a, 'clock-d') && a.session.progress.peers === 2);
  now = t2 + DEFAULT_PEX_LIMITS.sendIntervalMs - 1;
  await sleep(150);
  expect(r.received).toHaveLength(2);
  now = t2 + DEFAULT_PEX_LIMITS.sendIntervalMs;
  await until('the third message', () => r.received.length === 3);
  expect(r.received[2]?.message).toEqual({ added: [], dropped: [{ ip: Buffer.from([127, 0, 0, 1]), port: d.port }] });

  // Nothing changed: nothing is sent.
  now += 5 * DEFAULT_PEX_LIMITS.sendIntervalMs;
  await sleep(150);
  expect(r.received).toHaveLength(3);

  const times = r.received.map((m) => m.at);
  for (let i = 1; i < times.length; i++) expect((times[i] as number) - (times[i - 1] as number)).toBeGreaterThanOrEqual(DEFAULT_PEX_LIMITS.sendIntervalMs);
  // R announced 40001 as its listen port: A never lists R to R.
  for (const { message } of r.received) expect(portsOf([...message.added, ...message.dropped])).not.toContain(40001);
  expect(a.pexEvents.filter((e) => e.peerName === 'clock-r').map((e) => e.direction)).toEqual(['sent', 'sent', 'sent']);
  expect(a.closed.map((e) => e.peerName)).toEqual(['clock-d']);
});

test('ut_pex that breaks BEP 11 or comes too often is ignored and counted, the peer stays; a non-dictionary payload closes', async () => {
  let now = 1_000_000;
  const a = await startNode('bad-a', { seed: true, clock: () => now });
  const r = await ScriptedPeer.dial('bad-r', a, 40001, () => now);
  const ignored = () => a.pexEvents.filter((e) => e.direction === 'ignored').map((e) => e.reason?.code);

  r.sendPex(new Map([['added', Buffer.alloc(7, 1)]]));
  r.sendPex(new Map([['added', Buffer.alloc((MAX_PEX_ADDED + 1) * 6, 1)]]));
  r.sendPex(new Map([['added', Buffer.alloc(6, 1)], ['added.f', Buffer.alloc(2)]]));
  await until('three ignored messages', () => ignored().length === 3);
  expect(ignored()).toEqual(['WIRE_BAD_PEX', 'WIRE_BAD_PEX', 'WIRE_BAD_PEX']);

  r.sendPex(buildPexMessage({ added: [loopback(40002, PexFlag.seed)], dropped: [] }));
  await until('the first good message', () => a.learned.length === 1);
  expect(a.learned[0]).toEqual({ peerName: 'bad-r', peers: [{ address: '127.0.0.1', port: 40002, seed: true }] });

  // A second message 29 s later is too soon; at 30 s it counts. A itself and R itself are not news.
  now += 29_000;
  r.sendPex(buildPexMessage({ added: [loopback(40003)], dropped: [] }));
  await until('a message ignored as too frequent', () => ignored().length === 4);
  expect(ignored()[3]).toBe('WIRE_PEX_TOO_FREQUENT');
  now += 1_000;
  r.sendPex(buildPexMessage({ added: [loopback(40003), loopback(a.port), loopback(40001)], dropped: [loopback(40002)] }));
  await until('the second good message', () => a.learned.length === 2);
  expect(a.learned[1]).toEqual({ peerName: 'bad-r', peers: [{ address: '127.0.0.1', port: 40003, seed: false }] });
  expect(a.pexEvents.filter((e) => e.direction === 'received')).toHaveLength(2);

  expect(isOpenWith(a, 'bad-r')).toBe(true);
  expect(r.conn.closed).toBe(false);
  expect(a.closed).toEqual([]);

  // Not a bencoded dictionary at all: closed like any other malformed extended message (libtorrent
  // too disconnects on a ut_pex payload that does not decode).
  const payload = encode([1, 2, 3]);
  const ourId = r.conn.peerExtendedHandshake?.m.get(PEX_EXTENSION) as number;
  const frame = Buffer.alloc(6 + payload.length);
  frame.writeUInt32BE(2 + payload.length, 0);
  frame[4] = 20;
  frame[5] = ourId;
  payload.copy(frame, 6);
  r.socket.write(frame);
  await until('A to close R', () => a.closed.length === 1);
  expect(a.closed[0]).toMatchObject({ peerName: 'bad-r', reason: { code: 'WIRE_BAD_EXTENDED' } });
});
