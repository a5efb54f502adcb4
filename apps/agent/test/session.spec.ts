import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { PackageStore } from '@shoal/store';
import { type Metainfo, createPackage, sha256, truncatedInfoHash, verifyPackageData } from '@shoal/torrent';
import {
  type ConnectionEvent,
  PeerConnection,
  RESERVED_EXTENSION_PROTOCOL,
  RESERVED_FAST,
  WireError,
  encodeHandshake,
  encodeMessage,
  reservedBits,
} from '@shoal/wire';
import { AgentBandwidth, type TrafficClass } from '../src/bandwidth';
import type { WirePackage } from '../src/peer/admission';
import { type AdmittedConnection, PeerServer, type TlsIdentity, connectToPeer } from '../src/peer/tls';
import {
  PackageGeometry,
  PackageSession,
  type PackageSessionOptions,
  type PeerClosedEvent,
  type PieceCorruptEvent,
  SessionPeerError,
  type SessionStore,
} from '../src/session';

/**
 * The package session on real TLS 1.3 sockets over loopback: agents with fleet certificates,
 * PeerServer / connectToPeer admission, PackageStores in temp folders, a multi-file package with
 * an empty file (64 KiB pieces, files ending mid-piece).
 */
const FLEET = 'lab';
const PIECE_LENGTH = 64 * 1024;
const MiB = 1024 * 1024;
const FILES: Record<string, number> = {
  'app.bin': 3 * MiB + 12_345,
  'assets/data.bin': 2 * MiB + 777,
  'assets/empty.txt': 0,
  'readme.txt': 1000,
  'z/tail.bin': 70_000,
};

let work: string;
let ca: CertificateAuthority;
let caPem: string;
let metainfo: Metainfo;
let wirePkg: WirePackage;
const contents = new Map<string, Buffer>();
const identities = new Map<string, TlsIdentity>();
/** Closed after each test. */
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

function peerIdOf(name: string): Buffer {
  return Buffer.from(`-SH0100-${name}`.padEnd(20, '-').slice(0, 20), 'latin1');
}

async function tempRoot(): Promise<string> {
  return mkdtemp(join(work, 'store-'));
}

/** The bytes of a piece, from the generated source data. */
function sourcePiece(index: number): Buffer {
  const file = metainfo.files.find((f) => index >= f.firstPiece && index < f.firstPiece + f.numPieces);
  if (!file) throw new Error(`no file holds piece ${index}`);
  const data = contents.get(file.path.join('/')) as Buffer;
  const start = (index - file.firstPiece) * PIECE_LENGTH;
  return data.subarray(start, Math.min(start + PIECE_LENGTH, data.length));
}

async function seedStore(): Promise<PackageStore> {
  const store = await PackageStore.open({ root: await tempRoot(), metainfo });
  for (let i = 0; i < metainfo.numPieces; i++) expect(await store.writePiece(i, sourcePiece(i))).toBe('verified');
  await store.finish();
  cleanups.push(() => store.close());
  return store;
}

async function leechStore(): Promise<PackageStore> {
  const store = await PackageStore.open({ root: await tempRoot(), metainfo });
  cleanups.push(() => store.close());
  return store;
}

interface Agent {
  name: string;
  session: PackageSession;
  server: PeerServer;
  port: number;
  closed: PeerClosedEvent[];
}

async function startAgent(name: string, store: SessionStore, bandwidth?: PackageSessionOptions['bandwidth'], swarm?: PackageSessionOptions['swarm']): Promise<Agent> {
  const session = new PackageSession({ metainfo, store, peerId: peerIdOf(name), tickMs: 200, ...(bandwidth ? { bandwidth } : {}), ...(swarm ? { swarm } : {}) });
  const closed: PeerClosedEvent[] = [];
  session.on('peer-closed', (e: PeerClosedEvent) => closed.push(e));
  session.on('session-error', (err: Error) => {
    throw err;
  });
  const server = new PeerServer({
    identity: identity(name),
    fleet: FLEET,
    packageFor: (hex) => (hex === truncatedInfoHash(metainfo.infoHash).toString('hex') ? wirePkg : undefined),
    isRevoked: () => false,
  });
  server.on('connection', (c: AdmittedConnection) => session.attach(c.socket, 'acceptor', c.peer.agentId));
  const { port } = await server.listen(0, '127.0.0.1');
  cleanups.push(async () => {
    await session.close();
    await server.close();
  });
  return { name, session, server, port, closed };
}

function dial(fromName: string, to: Agent): Promise<AdmittedConnection> {
  return connectToPeer({ host: '127.0.0.1', port: to.port, pkg: wirePkg, identity: identity(fromName), fleet: FLEET, isRevoked: () => false, timeoutMs: 5000 });
}

/** `from` dials `to`; both sessions get the connection. */
async function connect(from: Agent, to: Agent): Promise<void> {
  const c = await dial(from.name, to);
  from.session.attach(c.socket, 'initiator', c.peer.agentId);
}

function waitFor<T = unknown>(emitter: EventEmitter, event: string, what: string, ms = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    emitter.once(event, (value: T) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

function completion(agent: Agent): Promise<void> {
  if (agent.session.isComplete()) return Promise.resolve();
  return waitFor(agent.session, 'complete', `${agent.name} to complete`);
}

/** finish() on the leech's store, then the data checks out against the metainfo and the source. */
async function expectCompleteData(store: PackageStore): Promise<void> {
  const path = await store.finish();
  expect(path).toBe(store.packagePath);
  const report = await verifyPackageData(metainfo, store.packagePath);
  expect(report.badPieces).toEqual([]);
  expect(report.ok).toBe(true);
  for (const [file, data] of contents) {
    const got = await readFile(join(store.packagePath, ...file.split('/')));
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
  }
}

/** A seed whose every served block has one bit flipped. */
function corruptingStore(inner: PackageStore): SessionStore {
  return {
    have: () => inner.have(),
    writePiece: (i, d) => inner.writePiece(i, d),
    leafHashes: (i) => inner.leafHashes(i),
    readBlock: async (index, begin, length) => {
      const block = await inner.readBlock(index, begin, length);
      block[block.length >> 1] = (block[block.length >> 1] as number) ^ 0x10;
      return block;
    },
  };
}

/** A seed that takes `ms` per block read (to stop it midway). */
function slowStore(inner: PackageStore, ms: number): SessionStore {
  return {
    have: () => inner.have(),
    writePiece: (i, d) => inner.writePiece(i, d),
    leafHashes: (i) => inner.leafHashes(i),
    readBlock: async (index, begin, length) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return inner.readBlock(index, begin, length);
    },
  };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'shoal-session-'));
  const material = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
  ca = CertificateAuthority.load(material.certPem, material.keyPem);
  caPem = material.certPem;
  const folder = join(work, 'source', 'bundle');
  for (const [path, length] of Object.entries(FILES)) {
    const data = randomBytes(length);
    contents.set(path, data);
    const target = join(folder, ...path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data);
  }
  ({ metainfo } = await createPackage(folder, { pieceLength: PIECE_LENGTH, sslCert: caPem, hashThreads: 0 }));
  wirePkg = { name: metainfo.name, infoHash: metainfo.infoHash };
  expect(metainfo.files.some((f) => f.length === 0)).toBe(true);
});

afterEach(async () => {
  const pending = cleanups.reverse();
  cleanups = [];
  for (const fn of pending) await fn().catch(() => undefined);
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

test('one seed, one leech: the leech completes with identical bytes', async () => {
  const seed = await startAgent('seed-1', await seedStore());
  const store = await leechStore();
  const leech = await startAgent('leech-1', store);
  const verified: number[] = [];
  leech.session.on('piece-verified', (i: number) => verified.push(i));
  expect(seed.session.isComplete()).toBe(true);
  expect(leech.session.isComplete()).toBe(false);

  const done = completion(leech);
  const c = await dial(leech.name, seed);
  const started = performance.now();
  leech.session.attach(c.socket, 'initiator', c.peer.agentId);
  await done;
  const seconds = (performance.now() - started) / 1000;
  const bytes = leech.session.progress.bytesDownloaded;
  console.log(`loopback TLS, one seed -> one leech: ${(bytes / MiB).toFixed(1)} MiB in ${(seconds * 1000).toFixed(0)} ms = ${(bytes / MiB / seconds).toFixed(1)} MiB/s (from attach: BitTorrent handshake, download, verify, write)`);

  expect(new Set(verified).size).toBe(metainfo.numPieces);
  const progress = leech.session.progress;
  expect(progress).toMatchObject({ verifiedPieces: metainfo.numPieces, totalPieces: metainfo.numPieces, corruptPieces: 0, peers: 1 });
  expect(progress.bytesDownloaded).toBeGreaterThanOrEqual(metainfo.totalLength);
  expect(seed.session.progress.bytesUploaded).toBeGreaterThanOrEqual(metainfo.totalLength);
  expect(store.isComplete()).toBe(true);
  // Complete: not interested any more, the connection stays up for serving.
  const [toSeed] = leech.session.peerStats();
  expect(toSeed).toMatchObject({ peerName: 'seed-1', phase: 'open', amInterested: false, outstandingRequests: 0 });
  await expectCompleteData(store);
});

test('one seed, three leeches in a chain and mesh: all complete, and leeches upload to each other', async () => {
  const seed = await startAgent('seed-2', await seedStore());
  const stores = [await leechStore(), await leechStore(), await leechStore()];
  const [l1, l2, l3] = await Promise.all(stores.map((s, i) => startAgent(`leech-2${i + 1}`, s)));
  if (!l1 || !l2 || !l3) throw new Error('agents');
  const done = Promise.all([l1, l2, l3].map(completion));
  // Only leech-21 reaches the seed: leech-22 and leech-23 get every piece through other leeches.
  await connect(l1, seed);
  await connect(l2, l1);
  await connect(l3, l2);
  await connect(l3, l1);
  await done;
  for (const l of [l1, l2, l3]) expect(l.session.progress.verifiedPieces).toBe(metainfo.numPieces);
  expect(l1.session.progress.bytesUploaded).toBeGreaterThan(0);
  // Every byte leech-22 and leech-23 hold came from a leech; which of the three sent it is up to the picker
  // (leech-23 passes pieces on to leech-22 too).
  const leechUploads = [l1, l2, l3].reduce((sum, l) => sum + l.session.progress.bytesUploaded, 0);
  expect(leechUploads).toBeGreaterThanOrEqual(2 * metainfo.totalLength);
  console.log(
    `uploaded: ${[seed, l1, l2, l3].map((a) => `${a.name} ${(a.session.progress.bytesUploaded / MiB).toFixed(2)} MiB`).join(', ')}`,
  );
  for (const s of stores) await expectCompleteData(s);
});

test('a corrupting seed is struck and banned; the leech completes from the honest seed and never marks bad data', async () => {
  const corrupter = await startAgent('corrupter', corruptingStore(await seedStore()));
  const honest = await startAgent('honest', await seedStore());
  const store = await leechStore();
  const leech = await startAgent('leech-3', store);
  const corrupt: PieceCorruptEvent[] = [];
  const markedWhenCorrupt: boolean[] = [];
  leech.session.on('piece-corrupt', (e: PieceCorruptEvent) => {
    corrupt.push(e);
    markedWhenCorrupt.push(store.hasPiece(e.index));
  });
  const banned = waitFor<{ peerName: string; strikes: number }>(leech.session, 'peer-banned', 'the corrupter to be banned');
  const done = completion(leech);
  const [a, b] = await Promise.all([dial(leech.name, corrupter), dial(leech.name, honest)]);
  leech.session.attach(a.socket, 'initiator', a.peer.agentId);
  leech.session.attach(b.socket, 'initiator', b.peer.agentId);
  await done;
  expect(await banned).toEqual({ peerName: 'corrupter', strikes: 3 });

  expect(corrupt.length).toBeGreaterThanOrEqual(3);
  for (const e of corrupt) expect(e.peers).toContain('corrupter');
  expect(markedWhenCorrupt.every((marked) => !marked)).toBe(true);
  expect(leech.session.progress.corruptPieces).toBe(corrupt.length);
  expect(leech.session.isBanned('corrupter')).toBe(true);
  expect(leech.session.strikesOf('corrupter')).toBeGreaterThanOrEqual(3);
  // The honest seed is never blamed for the corrupter's blocks, even in mixed pieces.
  expect(leech.session.strikesOf('honest')).toBe(0);
  const ban = leech.closed.find((e) => e.peerName === 'corrupter');
  expect(ban?.reason).toBeInstanceOf(WireError);
  expect(ban?.reason).toBeInstanceOf(SessionPeerError);
  expect(ban?.reason).toMatchObject({ code: 'WIRE_PROTOCOL_VIOLATION', sessionCode: 'PEER_BANNED' });
  expect(leech.closed.some((e) => e.peerName === 'honest')).toBe(false);

  // A banned peer is refused when it comes back.
  const again = await dial(leech.name, corrupter);
  const refused = waitFor<PeerClosedEvent>(leech.session, 'peer-closed', 'the banned peer to be refused');
  leech.session.attach(again.socket, 'initiator', again.peer.agentId);
  expect((await refused).reason).toMatchObject({ sessionCode: 'PEER_BANNED' });
  await expectCompleteData(store);
});

test('a peer sending garbage after the handshake is closed with a typed WireError; the others are still served', async () => {
  const seed = await startAgent('seed-4', await seedStore());
  const store = await leechStore();
  const leech = await startAgent('leech-4', store);
  const done = completion(leech);
  await connect(leech, seed);

  const handshake = encodeHandshake({
    infoHash20: truncatedInfoHash(metainfo.infoHash),
    peerId20: peerIdOf('garbage'),
    reserved: reservedBits(RESERVED_FAST, RESERVED_EXTENSION_PROTOCOL),
  });
  const attempts = [
    // A length prefix far above any frame.
    { name: 'mallory', bytes: Buffer.from('this is not the BitTorrent protocol, just noise'), code: 'WIRE_FRAME_TOO_LARGE' },
    // A well-formed availability message, then a message id nobody speaks.
    { name: 'eve', bytes: Buffer.concat([encodeMessage({ type: 'have-none' }), Buffer.from([0, 0, 0, 3, 99, 1, 2])]), code: 'WIRE_UNKNOWN_MESSAGE' },
  ];
  for (const attempt of attempts) {
    const closed = new Promise<PeerClosedEvent>((resolve) => {
      const on = (e: PeerClosedEvent): void => {
        if (e.peerName !== attempt.name) return;
        seed.session.off('peer-closed', on);
        resolve(e);
      };
      seed.session.on('peer-closed', on);
    });
    const c = await dial(attempt.name, seed);
    const socketClosed = new Promise((resolve) => c.socket.once('close', resolve));
    c.socket.on('error', () => undefined);
    c.socket.resume();
    c.socket.write(handshake);
    c.socket.write(attempt.bytes);
    const event = await closed;
    expect(event.reason).toBeInstanceOf(WireError);
    expect(event.reason.code).toBe(attempt.code);
    await socketClosed;
  }

  await done;
  await expectCompleteData(store);
  expect(seed.session.peerStats().map((p) => p.peerName)).toEqual(['leech-4']);
  expect(seed.session.progress.peers).toBe(1);
});

test('the seed disconnecting midway: outstanding blocks are re-queued and the leech completes from a second seed', async () => {
  const first = await startAgent('seed-5a', slowStore(await seedStore(), 3));
  const second = await startAgent('seed-5b', await seedStore());
  const store = await leechStore();
  const leech = await startAgent('leech-5', store);
  let outstandingAtCut = -1;
  let verifiedAtCut = -1;
  const cut = new Promise<void>((resolve) => {
    const on = (): void => {
      if (leech.session.progress.verifiedPieces < Math.floor(metainfo.numPieces / 3)) return;
      leech.session.off('piece-verified', on);
      outstandingAtCut = leech.session.peerStats()[0]?.outstandingRequests ?? -1;
      verifiedAtCut = leech.session.progress.verifiedPieces;
      void first.session.close().then(() => resolve());
    };
    leech.session.on('piece-verified', on);
  });
  const lost = waitFor<PeerClosedEvent>(leech.session, 'peer-closed', 'the first seed to go');
  const done = completion(leech);
  await connect(leech, first);
  await cut;
  const gone = await lost;
  expect(gone.peerName).toBe('seed-5a');
  expect(gone.reason).toBeInstanceOf(WireError);
  expect(outstandingAtCut).toBeGreaterThan(0);
  expect(verifiedAtCut).toBeLessThan(metainfo.numPieces);
  expect(leech.session.isComplete()).toBe(false);
  expect(leech.session.progress.peers).toBe(0);

  await connect(leech, second);
  await done;
  expect(leech.session.progress.verifiedPieces).toBe(metainfo.numPieces);
  await expectCompleteData(store);
});

/**
 * A peer scripted in the test: a raw PeerConnection (claiming every piece) dialing `target`;
 * `script` sees each event and may answer through the connection.
 */
async function scriptedPeer(
  name: string,
  target: Agent,
  script: (conn: PeerConnection, event: ConnectionEvent, now: number) => void,
  have: 'all' | 'none' = 'all',
): Promise<{ conn: PeerConnection; flush: () => void }> {
  const c = await dial(name, target);
  const geometry = new PackageGeometry(metainfo);
  const conn = new PeerConnection({
    infoHash20: truncatedInfoHash(metainfo.infoHash),
    localPeerId: peerIdOf(name),
    numPieces: geometry.numPieces,
    pieceLength: geometry.pieceLength,
    totalLength: geometry.wireTotalLength,
    role: 'initiator',
    now: performance.now(),
    have,
  });
  const flush = (): void => {
    for (;;) {
      const { outgoing, events } = conn.drain();
      if (outgoing.length === 0 && events.length === 0) return;
      for (const frame of outgoing) c.socket.write(frame);
      for (const e of events) script(conn, e, performance.now());
    }
  };
  c.socket.on('data', (chunk: Buffer) => {
    conn.receive(chunk, performance.now());
    flush();
  });
  c.socket.on('error', () => undefined);
  cleanups.push(async () => c.socket.destroy());
  flush();
  return { conn, flush };
}

test('rejected and choked requests are re-queued: the leech completes from another peer', async () => {
  const store = await leechStore();
  const leech = await startAgent('leech-6', store);
  let rejected = 0;
  const held: string[] = [];
  let choked = false;
  let onChoked: () => void = () => undefined;
  const chokedNow = new Promise<void>((resolve) => {
    onChoked = resolve;
  });
  // 'stingy' claims every piece, rejects its first 40 requests, then sits on the next ones
  // without answering and chokes (no rejects: the leech must free those blocks by itself).
  const stingyPeer = await scriptedPeer('stingy', leech, (conn, e, now) => {
    if (e.type !== 'message') return;
    const m = e.message;
    if (m.type === 'interested') conn.unchoke(now);
    if (m.type !== 'request' || choked) return;
    if (rejected < 40) {
      conn.reject(m, now);
      rejected++;
      return;
    }
    held.push(`${m.index}:${m.begin}`);
    if (held.length === 8) {
      setTimeout(() => {
        choked = true;
        conn.choke(performance.now());
        stingyPeer.flush();
        onChoked();
      }, 50);
    }
  });
  await chokedNow;
  // The leech has seen the choke once it stops waiting for the held blocks.
  for (let i = 0; i < 100 && (leech.session.peerStats()[0]?.outstandingRequests ?? 1) > 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(leech.session.peerStats()[0]).toMatchObject({ peerName: 'stingy', peerChoking: true, outstandingRequests: 0 });
  expect(rejected).toBe(40);
  expect(held.length).toBeGreaterThanOrEqual(8);
  expect(leech.session.progress.verifiedPieces).toBe(0);

  const seed = await startAgent('seed-6', await seedStore());
  const done = completion(leech);
  await connect(leech, seed);
  await done;
  const stingy = leech.session.peerStats().find((p) => p.peerName === 'stingy');
  expect(stingy).toMatchObject({ phase: 'open', peerChoking: true, outstandingRequests: 0, bytesDownloaded: 0 });
  await expectCompleteData(store);
});

test('BEP 52 hash requests are answered from the piece layers and the leaf hashes of verified pieces', async () => {
  const seed = await startAgent('seed-7', await seedStore());
  const geometry = new PackageGeometry(metainfo);
  const file = metainfo.files.find((f) => f.path.join('/') === 'app.bin');
  if (!file?.piecesRoot) throw new Error('app.bin');
  const { tree } = geometry.fileByRoot(file.piecesRoot) ?? {};
  if (!tree) throw new Error('tree');
  const leaves = { piecesRoot: file.piecesRoot, baseLayer: 0, index: 8, length: 4, proofLayers: 1 }; // the blocks of piece 2
  const layer = { piecesRoot: file.piecesRoot, baseLayer: tree.pieceLevel, index: 0, length: 8, proofLayers: 4 };
  const unknown = { ...leaves, piecesRoot: Buffer.alloc(32, 9) };
  const answers: { type: string; index: number; hashes?: Buffer[] }[] = [];
  let resolveAll: () => void = () => undefined;
  const all = new Promise<void>((resolve) => {
    resolveAll = resolve;
  });
  const peer = await scriptedPeer(
    'hasher',
    seed,
    (conn, e, now) => {
      if (e.type === 'handshake') {
        for (const request of [leaves, layer, unknown]) conn.hashRequest(request, now);
      }
      if (e.type !== 'message') return;
      const m = e.message;
      if (m.type === 'hashes') answers.push({ type: m.type, index: m.index, hashes: m.hashes.map((h) => Buffer.from(h)) });
      if (m.type === 'hash-reject') answers.push({ type: m.type, index: m.index });
      if (answers.length === 3) resolveAll();
    },
    'none',
  );
  await all;
  expect(peer.conn.closed).toBe(false);
  const byRoot = (type: string, index: number) => answers.find((a) => a.type === type && a.index === index);
  const leafAnswer = byRoot('hashes', leaves.index);
  const layerAnswer = byRoot('hashes', layer.index);
  expect(byRoot('hash-reject', unknown.index)).toBeDefined();
  // Both answers prove out against the trusted piece layer of the metainfo.
  expect(tree.verifyHashes(leaves, leafAnswer?.hashes ?? [])).toHaveLength(4);
  expect(tree.verifyHashes(layer, layerAnswer?.hashes ?? [])).toHaveLength(8);
  const piece2 = sourcePiece(file.firstPiece + 2);
  for (let b = 0; b < 4; b++) {
    expect(leafAnswer?.hashes?.[b]?.equals(sha256(piece2.subarray(b * 16384, (b + 1) * 16384)))).toBe(true);
  }
});

describe('bandwidth caps on loopback (rates are bounded from above only: a cap is a ceiling, not a speed promise)', () => {
  const CAP = 2 * MiB;
  const limits = (side: 'upload' | 'download', limit: number, backgroundLimit = 0) => ({
    upload: { limit: 0, backgroundLimit: 0 },
    download: { limit: 0, backgroundLimit: 0 },
    [side]: { limit, backgroundLimit },
  });

  /** Leech `agent` from `seed`; bytes per second from attach to completion. */
  async function rateOf(seed: Agent, leech: Agent): Promise<number> {
    const done = completion(leech);
    const c = await dial(leech.name, seed);
    const started = performance.now();
    leech.session.attach(c.socket, 'initiator', c.peer.agentId);
    await done;
    return leech.session.progress.bytesDownloaded / ((performance.now() - started) / 1000);
  }

  test('a download cap: peer reads pause, the leech receives no faster than its cap', async () => {
    const seed = await startAgent('seed-bw1', await seedStore());
    const store = await leechStore();
    const leech = await startAgent('leech-bw1', store, new AgentBandwidth(limits('download', CAP)).gatesFor('normal'));
    const rate = await rateOf(seed, leech);
    console.log(`download cap ${CAP / MiB} MiB/s: received at ${(rate / MiB).toFixed(2)} MiB/s`);
    expect(rate).toBeLessThan(1.5 * CAP);
    await expectCompleteData(store);
  });

  test('an upload cap: the seed serves piece data no faster than its cap', async () => {
    const seed = await startAgent('seed-bw2', await seedStore(), new AgentBandwidth(limits('upload', CAP)).gatesFor('normal'));
    const store = await leechStore();
    const leech = await startAgent('leech-bw2', store);
    const rate = await rateOf(seed, leech);
    console.log(`upload cap ${CAP / MiB} MiB/s: served at ${(rate / MiB).toFixed(2)} MiB/s`);
    expect(rate).toBeLessThan(1.5 * CAP);
    await expectCompleteData(store);
  });

  test('a background download yields to a normal one on the same agent', async () => {
    // A seed that announces everything: a super-seed reveals to the normal leech only pieces the
    // background one does not hold yet, so the normal one must fetch the rest through the
    // background one, which keeps that one's download going (28-30 % here); that is the swarm's
    // doing, not the download gate's, which is what this measures.
    const seed = await startAgent('seed-bw3', await seedStore(), undefined, { seeding: 'announce-all' });
    // Same caps for both classes: only the priority tells them apart.
    const bandwidth = new AgentBandwidth(limits('download', CAP, CAP));
    const leeches: Partial<Record<TrafficClass, Agent>> = {};
    for (const cls of ['background', 'normal'] as const) leeches[cls] = await startAgent(`leech-bw3-${cls}`, await leechStore(), bandwidth.gatesFor(cls));
    const { normal, background } = leeches as Record<TrafficClass, Agent>;
    const backgroundDone = completion(background);
    await connect(background, seed);
    // What the background leech got before the normal one came is its head start (the seed's
    // first reveals), not a matter of priority: only what it gets while both fetch counts.
    const normalDone = completion(normal);
    const link = await dial(normal.name, seed);
    const before = background.session.progress.bytesDownloaded;
    normal.session.attach(link.socket, 'initiator', link.peer.agentId);
    await normalDone;
    const backgroundShare = (background.session.progress.bytesDownloaded - before) / metainfo.totalLength;
    console.log(`while the normal leech fetched the package, the background one got ${(backgroundShare * 100).toFixed(0)} % of it (${((before / metainfo.totalLength) * 100).toFixed(0)} % before)`);
    expect(backgroundShare).toBeLessThan(0.25);
    await backgroundDone;
  });
});
