import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { getDiffieHellman, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { PackageStore } from '@shoal/store';
import { type Metainfo, createPackage, truncatedInfoHash, verifyPackageData } from '@shoal/torrent';
import type { WirePackage } from '../../src/peer/admission';
import { type AdmittedConnection, PeerServer, type TlsIdentity, connectToPeer } from '../../src/peer/tls';
import { PackageSession, type PeerClosedEvent, type PexMessageEvent } from '../../src/session';

/**
 * Interop with a standard client (DESIGN.md, Wires): libtorrent 2.0 SSL-torrent peers (Debian
 * python3-libtorrent, driven through lt_peer.py) holding certificates the fleet CA issued with the
 * agent profile swarm with Shoal agents over TLS 1.3, in both directions; libtorrent peers whose
 * certificate another CA issued, or that do not cover the package, are refused. The Shoal side
 * runs in-process (PeerServer / connectToPeer + PackageSession + PackageStore); packages are
 * v2-only with the fleet CA as `ssl-cert`, several files, an empty one, files ending mid-piece.
 *
 * Without python3-libtorrent the suite is skipped, unless SHOAL_REQUIRE_LIBTORRENT=1 (CI), which
 * makes its absence a failure. SHOAL_INTEROP_LOG=1 puts every libtorrent alert (peer and torrent
 * logs) in the transcript a failure prints.
 */

/** Debian's interpreter: python3-libtorrent is importable only there (see shared/STACK.md). */
const PYTHON = process.env.SHOAL_LIBTORRENT_PYTHON ?? '/usr/bin/python3';
const HELPER = join(__dirname, 'lt_peer.py');
const haveLibtorrent = spawnSync(PYTHON, ['-c', 'import libtorrent'], { stdio: 'ignore' }).status === 0;
if (!haveLibtorrent && process.env.SHOAL_REQUIRE_LIBTORRENT === '1') {
  throw new Error(`SHOAL_REQUIRE_LIBTORRENT=1 but ${PYTHON} cannot import libtorrent (apt-get install python3-libtorrent)`);
}

const FLEET = 'lab';
const PIECE_LENGTH = 64 * 1024;
const MiB = 1024 * 1024;
/** The last file ends mid-piece, so the package's last piece is short: libtorrent tail-pads it. */
const BUNDLE: Record<string, number> = {
  'app.bin': 2 * MiB + 12_345,
  'assets/data.bin': MiB + 777,
  'assets/empty.txt': 0,
  'readme.txt': 1000,
  'z/tail.bin': 70_000,
};
/** The last file ends on a piece boundary: Shoal's and libtorrent's piece spaces have the same length. */
const ALIGNED: Record<string, number> = {
  'app.bin': 2 * MiB + 12_345,
  'assets/empty.txt': 0,
  'readme.txt': 1000,
  'z/tail.bin': 2 * PIECE_LENGTH,
};
/** The helper exits by itself after this; each wait below is shorter. */
const PEER_TIMEOUT_S = 90;
const WAIT_MS = 45_000;

interface LtEvent {
  event: string;
  [field: string]: unknown;
}

/** One lt_peer.py process: JSON commands on its stdin, JSON events from its stdout. */
class LibtorrentPeer {
  readonly events: LtEvent[] = [];
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiters = new Set<() => void>();
  private stderr = '';

  constructor(config: Record<string, unknown>) {
    this.child = spawn(PYTHON, [HELPER, JSON.stringify({ timeoutS: PEER_TIMEOUT_S, ...config })], { stdio: 'pipe' });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString('utf8');
    });
    this.child.stdin.on('error', () => undefined);
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as LtEvent);
      } catch {
        this.events.push({ event: 'unparsed', line });
      }
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        resolve(code);
        this.wake();
      });
    });
  }

  /** The first event (past or future) that matches; rejects when the helper exits first or after `ms`. */
  waitFor(match: (e: LtEvent) => boolean, what: string, ms = WAIT_MS): Promise<LtEvent> {
    return new Promise((resolve, reject) => {
      const settle = (done: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        done();
      };
      const check = (): void => {
        const found = this.events.find(match);
        if (found) settle(() => resolve(found));
        else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          settle(() => reject(new Error(`libtorrent peer exited before ${what}:\n${this.transcript()}`)));
        }
      };
      const timer = setTimeout(() => settle(() => reject(new Error(`timed out waiting for libtorrent: ${what}:\n${this.transcript()}`))), ms);
      this.waiters.add(check);
      check();
    });
  }

  async status(): Promise<LtEvent> {
    const before = this.events.length;
    this.send({ cmd: 'status' });
    return this.waitFor((e) => e.event === 'status' && this.events.indexOf(e) >= before, 'a status answer');
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  /** Asks the helper to quit (its session closes its files); kills it if it has not exited within 5 s. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.send({ cmd: 'quit' });
      this.child.stdin.end();
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  transcript(): string {
    return `${this.events.map((e) => JSON.stringify(e)).join('\n')}\nstderr: ${this.stderr}`;
  }

  private wake(): void {
    for (const check of [...this.waiters]) check();
  }
}

interface TestPackage {
  metainfo: Metainfo;
  wire: WirePackage;
  torrentPath: string;
  /** The folder that holds `<name>/...` (a libtorrent save path that seeds it as is). */
  sourceParent: string;
  contents: Map<string, Buffer>;
}

let work: string;
let ca: CertificateAuthority;
let caPem: string;
let dhParamsPath: string;
let bundle: TestPackage;
let aligned: TestPackage;
/** Run after each test, last added first. */
let cleanups: (() => Promise<unknown>)[] = [];

async function makePackage(name: string, files: Record<string, number>): Promise<TestPackage> {
  const sourceParent = join(work, `source-${name}`);
  const contents = new Map<string, Buffer>();
  for (const [path, length] of Object.entries(files)) {
    const data = randomBytes(length);
    contents.set(path, data);
    const target = join(sourceParent, name, ...path.split('/'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data);
  }
  const { metainfo, bytes } = await createPackage(join(sourceParent, name), { pieceLength: PIECE_LENGTH, sslCert: caPem, hashThreads: 0 });
  const torrentPath = join(work, `${name}.torrent`);
  await writeFile(torrentPath, bytes);
  return { metainfo, wire: { name: metainfo.name, infoHash: metainfo.infoHash }, torrentPath, sourceParent, contents };
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = Buffer.from(n.toString(16).padStart(n > 0xff ? 4 : 2, '0'), 'hex');
  return Buffer.concat([Buffer.from([0x80 | bytes.length]), bytes]);
}

function derInteger(unsigned: Buffer): Buffer {
  const body = (unsigned[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), unsigned]) : unsigned;
  return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body]);
}

/** PKCS#3 DHParameter of the RFC 3526 2048-bit group, as PEM: set_ssl_certificate wants a DH file. */
function dhParamsPem(): string {
  const group = getDiffieHellman('modp14');
  const body = Buffer.concat([derInteger(group.getPrime()), derInteger(group.getGenerator())]);
  const der = Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
  return `-----BEGIN DH PARAMETERS-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END DH PARAMETERS-----\n`;
}

function identity(agentId: string, authority = ca, authorityPem = caPem, packageScopes = ['*']): TlsIdentity {
  const key = generateRsaKeyPair();
  const issued = authority.issueAgentCertificate({ agentId, publicKeyPem: key.publicKeyPem, packageScopes, now: new Date() });
  return { keyPem: key.keyPem, certPem: issued.certPem, caPem: authorityPem };
}

/** A libtorrent peer holding `id` for `pkg`, saving to (or seeding from) `savePath`. */
async function startLibtorrent(pkg: TestPackage, agentId: string, id: TlsIdentity, savePath: string): Promise<LibtorrentPeer> {
  const dir = await mkdtemp(join(work, `${agentId}-certificate-`));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await writeFile(cert, id.certPem);
  await writeFile(key, id.keyPem, { mode: 0o600 });
  const peer = new LibtorrentPeer({
    torrent: pkg.torrentPath,
    savePath,
    cert,
    key,
    dhParams: dhParamsPath,
    log: process.env.SHOAL_INTEROP_LOG === '1',
  });
  cleanups.push(() => peer.stop());
  const added = await peer.waitFor((e) => e.event === 'added', 'the torrent to be added');
  // libtorrent reads Shoal's metainfo to the same v2 info-hash.
  expect(added.infoHash).toBe(pkg.metainfo.infoHash.toString('hex'));
  return peer;
}

function sourcePiece(pkg: TestPackage, index: number): Buffer {
  const { metainfo } = pkg;
  const file = metainfo.files.find((f) => index >= f.firstPiece && index < f.firstPiece + f.numPieces);
  if (!file) throw new Error(`no file holds piece ${index}`);
  const data = pkg.contents.get(file.path.join('/')) as Buffer;
  const start = (index - file.firstPiece) * metainfo.pieceLength;
  return data.subarray(start, Math.min(start + metainfo.pieceLength, data.length));
}

async function openStore(pkg: TestPackage, seeded: boolean): Promise<PackageStore> {
  const store = await PackageStore.open({ root: await mkdtemp(join(work, 'store-')), metainfo: pkg.metainfo });
  cleanups.push(() => store.close());
  if (seeded) {
    for (let i = 0; i < pkg.metainfo.numPieces; i++) expect(await store.writePiece(i, sourcePiece(pkg, i))).toBe('verified');
  }
  return store;
}

interface ShoalAgent {
  session: PackageSession;
  server: PeerServer;
  port: number;
  identity: TlsIdentity;
  connections: AdmittedConnection[];
  refused: { code: string; message: string }[];
  closed: PeerClosedEvent[];
  pex: PexMessageEvent[];
}

/**
 * A Shoal agent for `pkg`: a PeerServer on loopback whose admitted peers join a PackageSession over
 * `store`, announcing its listen port (`p`) as the agent daemon does.
 */
async function startShoal(agentId: string, pkg: TestPackage, store: PackageStore): Promise<ShoalAgent> {
  const id = identity(agentId);
  const wireName = truncatedInfoHash(pkg.metainfo.infoHash).toString('hex');
  const server = new PeerServer({ identity: id, fleet: FLEET, packageFor: (hex) => (hex === wireName ? pkg.wire : undefined), isRevoked: () => false });
  const { port } = await server.listen(0, '127.0.0.1');
  const peerId = Buffer.from(`-SH0100-${agentId}`.padEnd(20, '-').slice(0, 20), 'latin1');
  const session = new PackageSession({ metainfo: pkg.metainfo, store, peerId, selfName: agentId, tickMs: 200, listenPort: port });
  const agent: ShoalAgent = { session, server, port, identity: id, connections: [], refused: [], closed: [], pex: [] };
  session.on('peer-closed', (e: PeerClosedEvent) => agent.closed.push(e));
  session.on('pex-message', (e: PexMessageEvent) => agent.pex.push(e));
  session.on('session-error', (err: Error) => {
    throw err;
  });
  server.on('connection', (c: AdmittedConnection) => {
    agent.connections.push(c);
    session.attach(c.socket, 'acceptor', c.peer.agentId);
  });
  server.on('refused', (r: { code: string; message: string }) => agent.refused.push(r));
  cleanups.push(async () => {
    await session.close();
    await server.close();
  });
  return agent;
}

/** Resolves when the session completes; rejects at once if a peer connection closes first. */
function completion(agent: ShoalAgent): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for the Shoal session to complete')), WAIT_MS);
    agent.session.once('complete', () => {
      clearTimeout(timer);
      resolve();
    });
    agent.session.once('peer-closed', (e: PeerClosedEvent) => {
      clearTimeout(timer);
      reject(new Error(`Shoal closed ${e.peerName}: ${e.reason.code} ${e.reason.message}`));
    });
  });
}

/** libtorrent's download finishing; rejects at once if the Shoal seed closes the connection first. */
function libtorrentFinished(lt: LibtorrentPeer, seed: ShoalAgent): Promise<LtEvent> {
  return Promise.race([
    lt.waitFor((e) => e.event === 'finished', 'the download to finish'),
    new Promise<never>((_resolve, reject) => {
      seed.session.once('peer-closed', (e: PeerClosedEvent) => reject(new Error(`Shoal closed ${e.peerName}: ${e.reason.code} ${e.reason.message}`)));
    }),
  ]);
}

/** The package folder checks out against the metainfo, and every file equals its source. */
async function expectPackageData(pkg: TestPackage, packagePath: string): Promise<void> {
  const report = await verifyPackageData(pkg.metainfo, packagePath);
  expect(report.badPieces).toEqual([]);
  expect(report.ok).toBe(true);
  for (const [file, data] of pkg.contents) {
    const got = await readFile(join(packagePath, ...file.split('/')));
    expect(got.equals(data)).toBe(true);
  }
}

function rate(bytes: number, seconds: number): string {
  return `${(bytes / MiB).toFixed(2)} MiB in ${(seconds * 1000).toFixed(0)} ms = ${(bytes / MiB / seconds).toFixed(1)} MiB/s`;
}

/** libtorrent downloads `pkg` from a seeding Shoal agent; its files must verify. */
async function libtorrentDownloadsFromShoal(pkg: TestPackage, label: string): Promise<void> {
  const shoal = await startShoal('shoal-seed', pkg, await openStore(pkg, true));
  expect(shoal.session.isComplete()).toBe(true);
  const savePath = await mkdtemp(join(work, 'lt-leech-'));
  const lt = await startLibtorrent(pkg, 'lt-leech', identity('lt-leech'), savePath);
  await lt.waitFor((e) => e.event === 'checked', 'the torrent to be checked');

  lt.send({ cmd: 'connect', host: '127.0.0.1', port: shoal.port });
  const finished = await libtorrentFinished(lt, shoal);
  console.log(`libtorrent <- Shoal (${label}) over TLS 1.3: ${rate(finished.downloaded as number, finished.seconds as number)} (from connect_peer)`);

  expect(shoal.refused).toEqual([]);
  const [connection] = shoal.connections;
  expect(shoal.connections).toHaveLength(1);
  expect(connection?.peer.agentId).toBe('lt-leech');
  expect(connection?.socket.getProtocol()).toBe('TLSv1.3');
  // libtorrent names the package by SNI as Shoal does: hex of the 20-byte truncated v2 info-hash.
  expect(connection?.socket.servername).toBe(truncatedInfoHash(pkg.metainfo.infoHash).toString('hex'));
  expect(shoal.session.progress.bytesUploaded).toBeGreaterThanOrEqual(pkg.metainfo.totalLength);
  // No torrent, file, peer or hash-check error on libtorrent's side.
  expect(lt.events.filter((e) => e.event === 'error')).toEqual([]);
  // Quitting closes libtorrent's files before they are read back.
  expect(await lt.stop()).toBe(0);
  await expectPackageData(pkg, join(savePath, pkg.metainfo.name));
}

const describeLive = haveLibtorrent ? describe : describe.skip;
jest.setTimeout(120_000);

describeLive('a libtorrent 2.0 SSL-torrent peer swarms with Shoal agents', () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-interop-'));
    const material = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
    ca = CertificateAuthority.load(material.certPem, material.keyPem);
    caPem = material.certPem;
    dhParamsPath = join(work, 'dhparams.pem');
    await writeFile(dhParamsPath, dhParamsPem());
    bundle = await makePackage('bundle', BUNDLE);
    aligned = await makePackage('aligned', ALIGNED);
  });

  afterEach(async () => {
    const pending = cleanups.reverse();
    cleanups = [];
    for (const fn of pending) await fn().catch(() => undefined);
  });

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('libtorrent with a fleet agent certificate downloads a package from a Shoal agent; its data verifies', async () => {
    await libtorrentDownloadsFromShoal(aligned, 'last piece full');
  });

  /**
   * KNOWN INCOMPATIBILITY (fails today; turn into `test` once fixed). libtorrent >= 2.0.4 tail-pads
   * every file of a v2 torrent, the last one included (arvidn/libtorrent#6153, as the BEP 52
   * reference creator does), so its piece space is numPieces x pieceLength and it requests the
   * last piece's first block as a full 16 KiB block. Shoal's PackageGeometry.wireTotalLength stops
   * at the last file's end, so PeerConnection refuses that request (WIRE_BAD_REQUEST) and closes.
   * Fix: wireTotalLength = numPieces * pieceLength (readForPeer already serves padding as zeros).
   */
  test('libtorrent downloads a package whose last piece is short (libtorrent tail-pads it)', async () => {
    await libtorrentDownloadsFromShoal(bundle, 'last piece short');
  });

  test('a Shoal agent downloads a package from a libtorrent seed; its store completes and verifies', async () => {
    const lt = await startLibtorrent(bundle, 'lt-seed', identity('lt-seed'), bundle.sourceParent);
    const { port } = await lt.waitFor((e) => e.event === 'listening', 'the SSL listen socket');
    expect(await lt.waitFor((e) => e.event === 'checked', 'the seed to check its files')).toMatchObject({ seeding: true });

    const store = await openStore(bundle, false);
    const shoal = await startShoal('shoal-leech', bundle, store);
    const done = completion(shoal);
    const started = performance.now();
    const c = await connectToPeer({
      host: '127.0.0.1',
      port: port as number,
      pkg: bundle.wire,
      identity: shoal.identity,
      fleet: FLEET,
      isRevoked: () => false,
      timeoutMs: 10_000,
    });
    expect(c.peer.agentId).toBe('lt-seed');
    expect(c.socket.getProtocol()).toBe('TLSv1.3');
    shoal.session.attach(c.socket, 'initiator', c.peer.agentId);
    await done;
    const seconds = (performance.now() - started) / 1000;
    console.log(`Shoal <- libtorrent over TLS 1.3: ${rate(shoal.session.progress.bytesDownloaded, seconds)} (from the TLS dial)`);

    expect(shoal.session.progress).toMatchObject({ verifiedPieces: bundle.metainfo.numPieces, corruptPieces: 0 });
    expect(lt.events.filter((e) => e.event === 'error')).toEqual([]);
    await store.finish();
    await expectPackageData(bundle, store.packagePath);
  });

  test('PEX both ways: libtorrent learns a Shoal agent from another one and connects to it; Shoal accepts libtorrent ut_pex', async () => {
    // Nobody holds data, so nobody finishes and leaves: A dialled C; libtorrent knows only A.
    const c = await startShoal('shoal-pex-c', bundle, await openStore(bundle, false));
    const a = await startShoal('shoal-pex-a', bundle, await openStore(bundle, false));
    const toC = await connectToPeer({ host: '127.0.0.1', port: c.port, pkg: bundle.wire, identity: a.identity, fleet: FLEET, isRevoked: () => false });
    a.session.attach(toC.socket, 'initiator', toC.peer.agentId);
    const lt = await startLibtorrent(bundle, 'lt-pex', identity('lt-pex'), await mkdtemp(join(work, 'lt-pex-')));
    await lt.waitFor((e) => e.event === 'checked', 'the torrent to be checked');
    lt.send({ cmd: 'connect', host: '127.0.0.1', port: a.port });

    // A's first ut_pex to libtorrent (5 s after the handshake) names C; libtorrent dials it.
    const deadline = performance.now() + WAIT_MS;
    const until = async (what: string, condition: () => boolean): Promise<void> => {
      while (!condition()) {
        if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${lt.transcript()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await until('A to send ut_pex to libtorrent', () => a.pex.some((e) => e.peerName === 'lt-pex' && e.direction === 'sent'));
    await until('libtorrent to connect to C', () => c.connections.some((k) => k.peer.agentId === 'lt-pex'));
    // libtorrent, now with two peers, sends its own ut_pex (its full peer list) to both.
    await until('A and C to take ut_pex from libtorrent', () =>
      [a, c].every((agent) => agent.pex.some((e) => e.peerName === 'lt-pex' && e.direction === 'received')),
    );
    for (const agent of [a, c]) expect(agent.pex.filter((e) => e.direction === 'ignored')).toEqual([]);
    expect([...a.closed, ...c.closed].filter((e) => e.peerName === 'lt-pex')).toEqual([]);
    expect(lt.events.filter((e) => e.event === 'error')).toEqual([]);
  });

  test('a libtorrent peer whose certificate another CA issued is refused by the Shoal agent; nothing is served', async () => {
    const shoal = await startShoal('shoal-guard', bundle, await openStore(bundle, true));
    const foreign = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
    const intruder = identity('lt-intruder', CertificateAuthority.load(foreign.certPem, foreign.keyPem), foreign.certPem);
    const lt = await startLibtorrent(bundle, 'lt-intruder', intruder, await mkdtemp(join(work, 'lt-intruder-')));
    await lt.waitFor((e) => e.event === 'checked', 'the torrent to be checked');

    const refused = new Promise<{ code: string }>((resolve) => shoal.server.once('refused', resolve));
    lt.send({ cmd: 'connect', host: '127.0.0.1', port: shoal.port });
    expect(await refused).toMatchObject({ code: 'PEER_CERTIFICATE_INVALID' });
    await lt.waitFor((e) => e.event === 'peer-disconnected', 'libtorrent to see the connection close');

    expect(shoal.connections).toEqual([]);
    expect(shoal.session.progress).toMatchObject({ bytesUploaded: 0, peers: 0 });
    expect(await lt.status()).toMatchObject({ downloaded: 0, done: 0 });
  });

  test('a libtorrent peer whose fleet certificate covers another package is refused, though libtorrent 2.0.8 would admit it', async () => {
    const shoal = await startShoal('shoal-scope', bundle, await openStore(bundle, true));
    // libtorrent 2.0.8 admits a certificate name that is a prefix of the torrent name ("bun" for
    // "bundle"; fixed in 2.0.13): only Shoal's exact scope check keeps this peer out.
    const scoped = identity('lt-scoped', ca, caPem, ['bun']);
    const lt = await startLibtorrent(bundle, 'lt-scoped', scoped, await mkdtemp(join(work, 'lt-scoped-')));
    await lt.waitFor((e) => e.event === 'checked', 'the torrent to be checked');

    const refused = new Promise<{ code: string }>((resolve) => shoal.server.once('refused', resolve));
    lt.send({ cmd: 'connect', host: '127.0.0.1', port: shoal.port });
    expect(await refused).toMatchObject({ code: 'PEER_OUT_OF_SCOPE' });
    await lt.waitFor((e) => e.event === 'peer-disconnected', 'libtorrent to see the connection close');

    expect(shoal.connections).toEqual([]);
    expect(shoal.session.progress).toMatchObject({ bytesUploaded: 0, peers: 0 });
    expect(await lt.status()).toMatchObject({ downloaded: 0, done: 0 });
  });

  test('a Shoal agent refuses to download from a libtorrent seed whose certificate another CA issued', async () => {
    const foreign = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
    const impostor = identity('lt-impostor', CertificateAuthority.load(foreign.certPem, foreign.keyPem), foreign.certPem);
    const lt = await startLibtorrent(bundle, 'lt-impostor', impostor, bundle.sourceParent);
    const { port } = await lt.waitFor((e) => e.event === 'listening', 'the SSL listen socket');
    await lt.waitFor((e) => e.event === 'checked', 'the seed to check its files');

    const shoal = await startShoal('shoal-careful', bundle, await openStore(bundle, false));
    const dial = connectToPeer({ host: '127.0.0.1', port: port as number, pkg: bundle.wire, identity: shoal.identity, fleet: FLEET, isRevoked: () => false });
    await expect(dial).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(shoal.session.progress).toMatchObject({ bytesDownloaded: 0, verifiedPieces: 0 });
  });
});
