import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import {
  CertificateAuthority,
  certificateAllowsPackage,
  createFleetCa,
  generateRsaKeyPair,
  type IssuedCertificate,
  readPeerIdentity,
  type RsaKeyPair,
} from '../src';
import { DAY, SECOND } from './support';

// TLS checks validity against the real clock, so these certificates are issued relative to it.
// The library itself never reads the clock: the test passes this instant in.
const WALL_CLOCK = new Date();
const HANDSHAKE_TIMEOUT_MS = 5000;
const INFO_HASH_HEX = 'c0ffee'.repeat(6) + 'c0ff';

interface Identity {
  key: string;
  cert: string;
}

let caPem: string;
let controllerKeys: RsaKeyPair;
let agentKeys: RsaKeyPair;
let controller: Identity & { issued: IssuedCertificate };
let agentA: Identity & { issued: IssuedCertificate };
let agentB: Identity;
let impostor: Identity;
let expiredAgent: Identity;
let futureAgent: Identity;

beforeAll(() => {
  const ca = createFleetCa({ fleet: 'prod', now: new Date(WALL_CLOCK.getTime() - DAY), keyBits: 2048 });
  caPem = ca.certPem;
  const authority = CertificateAuthority.load(ca.certPem, ca.keyPem);
  controllerKeys = generateRsaKeyPair();
  agentKeys = generateRsaKeyPair();
  const agent = (agentId: string, issuer: CertificateAuthority, now = WALL_CLOCK, lifetimeSeconds?: number) => {
    const { publicKeyPem } = agentKeys;
    const issued = issuer.issueAgentCertificate({ agentId, publicKeyPem, packageScopes: ['game-client'], now, lifetimeSeconds });
    return { key: agentKeys.keyPem, cert: issued.certPem, issued };
  };
  const controllerIssued = authority.issueControllerCertificate({
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
    publicKeyPem: controllerKeys.publicKeyPem,
    now: WALL_CLOCK,
  });
  controller = { key: controllerKeys.keyPem, cert: controllerIssued.certPem, issued: controllerIssued };
  agentA = agent('agent-a', authority);
  agentB = agent('agent-b', authority);
  expiredAgent = agent('agent-old', authority, new Date(WALL_CLOCK.getTime() - 2 * 3600 * SECOND), 60);
  futureAgent = agent('agent-new', authority, new Date(WALL_CLOCK.getTime() + 3600 * SECOND));
  // Another CA that claims the same fleet name: only the CA certificate makes a peer trusted.
  const rogue = createFleetCa({ fleet: 'prod', now: new Date(WALL_CLOCK.getTime() - DAY), keyBits: 2048 });
  impostor = agent('agent-a', CertificateAuthority.load(rogue.certPem, rogue.keyPem));
});

type Outcome =
  | { ok: true; peer: tls.DetailedPeerCertificate; protocol: string | null }
  | { ok: false; error: NodeJS.ErrnoException; authorizationError?: string };

/**
 * One TLS 1.3 handshake on loopback with mutual certificate checks against the fleet CA on both
 * sides. The server greets the client once it has accepted it, because in TLS 1.3 the client
 * finishes its handshake before the server has judged the client certificate.
 */
async function handshake(
  server: Partial<tls.TlsOptions>,
  client: Partial<tls.ConnectionOptions>,
  host = '127.0.0.1',
): Promise<{ server: Outcome; client: Outcome }> {
  const tlsServer = tls.createServer({ ca: caPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ...server });
  const serverOutcome = new Promise<Outcome>((resolve) => {
    tlsServer.on('secureConnection', (socket) => {
      resolve({ ok: true, peer: socket.getPeerCertificate(true), protocol: socket.getProtocol() });
      socket.end('welcome');
    });
    // Node destroys a refused client without an error of its own; the reason is on the socket.
    tlsServer.on('tlsClientError', (error, socket) => {
      resolve({ ok: false, error, authorizationError: socket.authorizationError?.toString() });
    });
  });
  await new Promise<void>((resolve) => tlsServer.listen(0, host, resolve));
  const { port } = tlsServer.address() as AddressInfo;
  let clientSocket: tls.TLSSocket | undefined;
  const clientOutcome = new Promise<Outcome>((resolve) => {
    let secured: Outcome | undefined;
    let received = '';
    clientSocket = tls.connect({ host, port, ca: caPem, rejectUnauthorized: true, minVersion: 'TLSv1.3', ...client });
    clientSocket.on('secureConnect', () => {
      secured = { ok: true, peer: clientSocket!.getPeerCertificate(true), protocol: clientSocket!.getProtocol() };
    });
    clientSocket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
    });
    clientSocket.on('error', (error) => resolve({ ok: false, error }));
    clientSocket.on('close', () =>
      resolve(secured && received === 'welcome' ? secured : { ok: false, error: new Error('the server closed without accepting us') }),
    );
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('handshake timed out')), HANDSHAKE_TIMEOUT_MS);
  });
  try {
    const [serverResult, clientResult] = await Promise.race([Promise.all([serverOutcome, clientOutcome]), timeout]);
    return { server: serverResult, client: clientResult };
  } finally {
    clearTimeout(timer);
    clientSocket?.destroy();
    await new Promise((resolve) => tlsServer.close(resolve));
  }
}

function accepted(outcome: Outcome): tls.DetailedPeerCertificate {
  if (!outcome.ok) throw new Error(`handshake refused: ${outcome.error.code ?? ''} ${outcome.error.message}`);
  expect(outcome.protocol).toBe('TLSv1.3');
  return outcome.peer;
}

/** Why a side refused: the certificate verification code if there was one, else the error code or message. */
function refused(outcome: Outcome): string {
  if (outcome.ok) throw new Error('handshake was accepted');
  return outcome.authorizationError ?? outcome.error.code ?? outcome.error.message;
}

describe('TLS 1.3 with fleet certificates', () => {
  test('agent and controller authenticate each other (mutual TLS)', async () => {
    const result = await handshake(controller, agentA);
    const agentSeenByServer = accepted(result.server);
    const controllerSeenByAgent = accepted(result.client);
    expect(readPeerIdentity(agentSeenByServer.raw, { fleet: 'prod' })).toMatchObject({
      role: 'agent',
      agentId: 'agent-a',
      packageScopes: ['game-client'],
    });
    expect(readPeerIdentity(controllerSeenByAgent.raw, { fleet: 'prod' }).role).toBe('controller');
  });

  test("serials: issue*, readPeerIdentity and Node's peer certificate agree", async () => {
    const result = await handshake(controller, agentA);
    const agentSeenByServer = accepted(result.server);
    const controllerSeenByAgent = accepted(result.client);
    // Node prints serials as uppercase hex without a sign byte; the library uses the same digits lowercase.
    expect(agentSeenByServer.serialNumber).toBe(agentA.issued.serial.toUpperCase());
    expect(agentSeenByServer.serialNumber.toLowerCase()).toBe(agentA.issued.serial);
    expect(readPeerIdentity(agentSeenByServer.raw, { fleet: 'prod' }).serial).toBe(agentA.issued.serial);
    expect(controllerSeenByAgent.serialNumber.toLowerCase()).toBe(controller.issued.serial);
  });

  test('the controller certificate matches its IPv6 address and DNS name', async () => {
    accepted((await handshake(controller, agentA, '::1')).client);
    accepted((await handshake(controller, { ...agentA, servername: 'localhost' })).client);
  });

  test('two agents swarm: SNI is the info-hash, the peer is checked by fleet identity', async () => {
    const seen: string[] = [];
    const result = await handshake(agentA, {
      ...agentB,
      servername: INFO_HASH_HEX,
      checkServerIdentity: (_, certificate) => {
        const identity = readPeerIdentity(certificate.raw, { fleet: 'prod' });
        seen.push(`${identity.role}:${identity.agentId ?? ''}`);
        return certificateAllowsPackage(identity, 'game-client') ? undefined : new Error('peer may not serve this package');
      },
    });
    expect(readPeerIdentity(accepted(result.server).raw, { fleet: 'prod' }).agentId).toBe('agent-b');
    accepted(result.client);
    expect(seen).toEqual(['agent:agent-a']);
  });

  test('the server refuses a client certificate from another CA', async () => {
    const result = await handshake(controller, impostor);
    expect(refused(result.server)).toMatch(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/);
    refused(result.client);
  });

  test('the client refuses a server certificate from another CA', async () => {
    const result = await handshake(impostor, agentA);
    expect(refused(result.client)).toMatch(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/);
  });

  test('the server refuses a client without a certificate', async () => {
    const result = await handshake(controller, {});
    expect(refused(result.server)).toBe('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE');
    refused(result.client);
  });

  test('an expired certificate is refused by either side', async () => {
    expect(refused((await handshake(expiredAgent, agentA)).client)).toBe('CERT_HAS_EXPIRED');
    const result = await handshake(controller, expiredAgent);
    expect(refused(result.server)).toBe('CERT_HAS_EXPIRED');
    refused(result.client);
  });

  test('a certificate that is not valid yet is refused', async () => {
    expect(refused((await handshake(futureAgent, agentA)).client)).toBe('CERT_NOT_YET_VALID');
    expect(refused((await handshake(controller, futureAgent)).server)).toBe('CERT_NOT_YET_VALID');
  });
});
