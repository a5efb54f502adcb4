import { CertificateAuthority, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { AdmissionError, type WirePackage, wireName } from '../src/peer/admission';
import { type AdmittedConnection, PeerServer, type TlsIdentity, connectToPeer } from '../src/peer/tls';

/**
 * The admission matrix on real TLS 1.3 sockets over loopback: who may open a peer-wire
 * connection for a package, and what a revocation does to live connections.
 */
const FLEET = 'lab';
const pkg: WirePackage = { name: 'game-client', infoHash: Buffer.alloc(32, 0xab) };
const other: WirePackage = { name: 'db-server', infoHash: Buffer.alloc(32, 0xcd) };

let ca: CertificateAuthority;
let caPem: string;
const revoked = new Set<string>();
let server: PeerServer;
let port: number;
const admitted: AdmittedConnection[] = [];
const refused: { code: string }[] = [];

function agent(agentId: string, options: { scopes?: string[]; authority?: CertificateAuthority; now?: Date; lifetimeSeconds?: number } = {}): TlsIdentity & { serial: string } {
  const key = generateRsaKeyPair();
  const issued = (options.authority ?? ca).issueAgentCertificate({
    agentId,
    publicKeyPem: key.publicKeyPem,
    packageScopes: options.scopes ?? ['*'],
    now: options.now ?? new Date(),
    ...(options.lifetimeSeconds ? { lifetimeSeconds: options.lifetimeSeconds } : {}),
  });
  return { keyPem: key.keyPem, certPem: issued.certPem, caPem, serial: issued.serial };
}

const dial = (identity: TlsIdentity, target: WirePackage = pkg) =>
  connectToPeer({ host: '127.0.0.1', port, pkg: target, identity, fleet: FLEET, isRevoked: (s) => revoked.has(s), timeoutMs: 5000 });

/** Resolves when the server has either admitted or refused the next connection. */
function serverVerdict(): Promise<'admitted' | string> {
  return new Promise((resolve) => {
    const onConnection = () => finish('admitted');
    const onRefused = (r: { code: string }) => finish(r.code);
    const finish = (verdict: string) => {
      server.off('connection', onConnection);
      server.off('refused', onRefused);
      resolve(verdict);
    };
    server.once('connection', onConnection);
    server.once('refused', onRefused);
  });
}

beforeAll(async () => {
  const material = createFleetCa({ fleet: FLEET, now: new Date(Date.now() - 10 * 60 * 1000), keyBits: 2048 });
  ca = CertificateAuthority.load(material.certPem, material.keyPem);
  caPem = material.certPem;
  const serverIdentity = agent('seed-1');
  server = new PeerServer({
    identity: serverIdentity,
    fleet: FLEET,
    packageFor: (hex) => (hex === wireName(pkg.infoHash) ? pkg : undefined),
    isRevoked: (s) => revoked.has(s),
  });
  server.on('connection', (c: AdmittedConnection) => admitted.push(c));
  server.on('refused', (r: { code: string }) => refused.push(r));
  port = (await server.listen()).port;
});

afterAll(async () => {
  await server.close();
});

test('a fleet agent whose certificate covers the package is admitted, both ways', async () => {
  const verdict = serverVerdict();
  const connection = await dial(agent('leech-1', { scopes: ['game-client'] }));
  expect(await verdict).toBe('admitted');
  expect(connection.peer.agentId).toBe('seed-1');
  expect(admitted.at(-1)?.peer.agentId).toBe('leech-1');
  connection.socket.destroy();
});

test('no client certificate is refused in the handshake', async () => {
  const verdict = serverVerdict();
  const attempt = connectToPeer({ host: '127.0.0.1', port, pkg, identity: { caPem, keyPem: '', certPem: '' }, fleet: FLEET, isRevoked: () => false }).then(
    (c) => new Promise((resolve) => c.socket.once('close', () => resolve('closed'))),
    () => 'failed',
  );
  expect(await verdict).toBe('PEER_CERTIFICATE_INVALID');
  expect(['failed', 'closed']).toContain(await attempt);
});

test('a certificate from another CA is refused', async () => {
  const material = createFleetCa({ fleet: FLEET, now: new Date(), keyBits: 2048 });
  const foreign = agent('intruder', { authority: CertificateAuthority.load(material.certPem, material.keyPem) });
  const verdict = serverVerdict();
  const attempt = dial(foreign).then(
    (c) => new Promise((resolve) => c.socket.once('close', () => resolve('closed'))),
    () => 'failed',
  );
  expect(await verdict).toBe('PEER_CERTIFICATE_INVALID');
  expect(['failed', 'closed']).toContain(await attempt);
});

test('an expired certificate is refused', async () => {
  const expired = agent('old', { now: new Date(Date.now() - 5 * 60 * 1000), lifetimeSeconds: 60 });
  const verdict = serverVerdict();
  await dial(expired).then(
    (c) => new Promise((resolve) => c.socket.once('close', resolve)),
    () => undefined,
  );
  expect(await verdict).toBe('PEER_CERTIFICATE_INVALID');
});

test('a revoked certificate is refused', async () => {
  const gone = agent('gone');
  revoked.add(gone.serial);
  const verdict = serverVerdict();
  await dial(gone).then(
    (c) => new Promise((resolve) => c.socket.once('close', resolve)),
    () => undefined,
  );
  expect(await verdict).toBe('PEER_REVOKED');
});

test('a certificate admitted before is refused once revoked (identities are remembered, verdicts are not)', async () => {
  const later = agent('revoked-later');
  const first = serverVerdict();
  const connection = await dial(later);
  expect(await first).toBe('admitted');
  connection.socket.destroy();
  revoked.add(later.serial);
  const second = serverVerdict();
  await dial(later).then(
    (c) => new Promise((resolve) => c.socket.once('close', resolve)),
    () => undefined,
  );
  expect(await second).toBe('PEER_REVOKED');
});

test('a certificate whose scope excludes the package is refused', async () => {
  const verdict = serverVerdict();
  await dial(agent('db-only', { scopes: ['db-server'] })).then(
    (c) => new Promise((resolve) => c.socket.once('close', resolve)),
    () => undefined,
  );
  expect(await verdict).toBe('PEER_OUT_OF_SCOPE');
});

test('an SNI naming a package this agent does not serve fails the handshake', async () => {
  const verdict = serverVerdict();
  await expect(dial(agent('lost'), other)).rejects.toThrow();
  expect(await verdict).toBe('PEER_UNKNOWN_PACKAGE');
});

test('the client refuses a server outside the package scope or revoked', async () => {
  const scoped = new PeerServer({
    identity: agent('wrong-scope-seed', { scopes: ['db-server'] }),
    fleet: FLEET,
    packageFor: () => pkg,
    isRevoked: () => false,
  });
  const address = await scoped.listen();
  try {
    await expect(
      connectToPeer({ host: '127.0.0.1', port: address.port, pkg, identity: agent('careful'), fleet: FLEET, isRevoked: () => false }),
    ).rejects.toBeInstanceOf(AdmissionError);
  } finally {
    await scoped.close();
  }
});

test('a revocation while connected closes that connection at once, and only that one', async () => {
  const victim = agent('victim');
  const bystander = agent('bystander');
  const v1 = serverVerdict();
  const victimConnection = await dial(victim);
  await v1;
  const v2 = serverVerdict();
  const bystanderConnection = await dial(bystander);
  await v2;
  const closed = new Promise<number>((resolve) => {
    const started = Date.now();
    victimConnection.socket.once('close', () => resolve(Date.now() - started));
  });
  revoked.add(victim.serial);
  expect(server.enforceRevocations()).toBe(1);
  expect(await closed).toBeLessThan(5000);
  expect(bystanderConnection.socket.destroyed).toBe(false);
  expect(refused.length).toBeGreaterThan(0);
  bystanderConnection.socket.destroy();
});
