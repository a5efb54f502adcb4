import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority, createCsr, createFleetCa, generateRsaKeyPair } from '@shoal/pki';
import { type AnnounceResponse, type RenewResponse, type SignedRevocationListMessage, shoalV1, unary } from '@shoal/proto';
import { type EnrolledAgent, type TestFleet, grpcFailure, startTestFleet } from '@shoal/testing';

/** Enrollment, renewal, revocation and mutual TLS against a controller running as a real process. */
let fleet: TestFleet;

beforeAll(async () => {
  fleet = await startTestFleet(11);
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
});

async function newToken(body: object = {}): Promise<string> {
  const created = await fleet.rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: body });
  expect(created.status).toBe(201);
  return created.body.token;
}

function csr(commonName = 'agent', bits = 2048): { keyPem: string; publicKeyPem: string; csrPem: string } {
  const key = generateRsaKeyPair(bits);
  return { ...key, csrPem: createCsr({ keyPem: key.keyPem, publicKeyPem: key.publicKeyPem, commonName }) };
}

function enrollWith(bootstrapToken: string, csrPem: string) {
  return unary(fleet.enrollClient(), 'Enroll', { bootstrapToken, csrPem, hostname: 'h', softwareVersion: '1' });
}

function announce(agent: { keyPem: string; certPem: string }, infoHash = Buffer.alloc(20, 1)) {
  return unary<object, AnnounceResponse>(fleet.mtlsClient('Tracker', agent), 'Announce', { infoHash, port: 6881, left: 100 });
}

describe('enrollment', () => {
  let agent: EnrolledAgent;

  beforeAll(async () => {
    agent = await fleet.enroll({ tokenBody: { labels: { region: 'eu', zone: 'eu-1', site: 'par' } }, commonName: 'admin' });
  });

  test('a valid token and CSR give a certificate with controller-chosen names only', () => {
    const cert = new X509Certificate(agent.certPem);
    expect(agent.agentId).toMatch(/^agent-[0-9a-f]{12}$/);
    expect(cert.subject).toBe(`CN=${agent.agentId}`);
    expect(cert.subjectAltName).toContain(`URI:shoal://e2e/agent/${agent.agentId}`);
    expect(cert.subjectAltName).not.toContain('admin');
    expect(cert.checkIssued(new X509Certificate(fleet.caPem))).toBe(true);
    expect(cert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(agent.publicKeyPem);
    const lifetime = new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime();
    expect(lifetime).toBeGreaterThanOrEqual(24 * 3600 * 1000);
    expect(lifetime).toBeLessThanOrEqual(24 * 3600 * 1000 + 10 * 60 * 1000);
  });

  test('the answer carries the CA, the TUF root, the endpoints and the labels', () => {
    const { response } = agent;
    expect(new X509Certificate(response.caPem).raw.equals(new X509Certificate(fleet.caPem).raw)).toBe(true);
    expect(JSON.parse(response.tufRoot.toString()).signed._type).toBe('root');
    expect(response.endpoints.grpc).toBe(fleet.controller.grpcAddress);
    expect(response.endpoints.tufMetadata).toBe(`${fleet.controller.restUrl}/tuf/metadata`);
    expect(response.labels).toEqual({ region: 'eu', zone: 'eu-1', site: 'par' });
    expect(JSON.parse(response.revocations.payload).fleet).toBe('e2e');
  });

  test('the agent is in the registry with its labels and certificate', async () => {
    const { status, body } = await fleet.rest<{ id: string; labels: object; certificateSerial: string; state: string }>('GET', `/v1/agents/${agent.agentId}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ id: agent.agentId, labels: { region: 'eu', site: 'par' }, state: 'active' });
    expect(body.certificateSerial).toBe(new X509Certificate(agent.certPem).serialNumber.toLowerCase());
  });

  test('a pinned agent name is used, and re-enrolling keeps it', async () => {
    const token = await newToken({ agentName: 'edge-7', uses: 2 });
    for (let i = 0; i < 2; i++) {
      const response = await enrollWith(token, csr().csrPem);
      expect((response as { agentId: string }).agentId).toBe('edge-7');
    }
  });

  test('unknown, malformed, used-up and expired tokens are refused with a reason', async () => {
    const unknown = await grpcFailure(enrollWith(`sbt_0123456789abcdef_${'A'.repeat(43)}`, csr().csrPem));
    expect(unknown).toMatchObject({ code: grpc.status.UNAUTHENTICATED, shoalCode: 'ENROLL_TOKEN_UNKNOWN' });
    const malformed = await grpcFailure(enrollWith('let me in', csr().csrPem));
    expect(malformed).toMatchObject({ code: grpc.status.UNAUTHENTICATED, shoalCode: 'ENROLL_TOKEN_MALFORMED', details: 'bootstrap token is malformed' });

    const once = await newToken({ uses: 1 });
    await enrollWith(once, csr().csrPem);
    expect(await grpcFailure(enrollWith(once, csr().csrPem))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, shoalCode: 'ENROLL_TOKEN_USED_UP' });

    const expiring = await newToken();
    const id = expiring.split('_')[1] as string;
    // Expiry is the controller's clock against the stored deadline: move the deadline into the past.
    await fleet.redis.hset(`shoal:btoken:${id}`, 'expiresAtMs', String(Date.now() - 1000));
    expect(await grpcFailure(enrollWith(expiring, csr().csrPem))).toMatchObject({ code: grpc.status.UNAUTHENTICATED, shoalCode: 'ENROLL_TOKEN_EXPIRED' });
  });

  test('a weak key is refused and the token keeps its use', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-weak-'));
    try {
      execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:1024', '-nodes', '-keyout', join(dir, 'k'), '-subj', '/CN=weak', '-out', join(dir, 'csr')], { stdio: 'ignore' });
      const token = await newToken({ uses: 1 });
      const weak = await grpcFailure(enrollWith(token, readFileSync(join(dir, 'csr'), 'utf8')));
      expect(weak).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, shoalCode: 'ENROLL_BAD_CSR' });
      expect(weak.details).toMatch(/1024/);
      await expect(enrollWith(token, csr().csrPem)).resolves.toBeDefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('mutual TLS on the agent services', () => {
  let agent: EnrolledAgent;

  beforeAll(async () => {
    agent = await fleet.enroll();
  });

  test('a fleet certificate is accepted', async () => {
    const response = await announce(agent);
    expect(response.intervalSeconds).toBe(30);
  });

  test('no client certificate is refused in the handshake', async () => {
    const client = new (shoalV1().Tracker)(fleet.controller.grpcAddress, grpc.credentials.createSsl(Buffer.from(fleet.caPem)));
    const failure = await grpcFailure(unary(client, 'Announce', { infoHash: Buffer.alloc(20), port: 1 }, { deadlineMs: 3000 }));
    client.close();
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(failure.code);
  });

  test('a certificate from another CA is refused', async () => {
    const other = createFleetCa({ fleet: 'e2e', now: new Date(), keyBits: 2048 });
    const key = generateRsaKeyPair();
    const forged = CertificateAuthority.load(other.certPem, other.keyPem).issueAgentCertificate({
      agentId: agent.agentId,
      publicKeyPem: key.publicKeyPem,
      packageScopes: ['*'],
      now: new Date(),
    });
    const failure = await grpcFailure(announce({ keyPem: key.keyPem, certPem: forged.certPem }));
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(failure.code);
  });

  test('an expired certificate is refused', async () => {
    const ca = CertificateAuthority.load(fleet.caPem, readFileSync(join(fleet.dataDir, 'ca', 'ca-key.pem'), 'utf8'));
    const key = generateRsaKeyPair();
    const expired = ca.issueAgentCertificate({
      agentId: agent.agentId,
      publicKeyPem: key.publicKeyPem,
      packageScopes: ['*'],
      // The test CA is minutes old: issue inside its validity, already expired by now.
      now: new Date(Date.now() - 4 * 60 * 1000),
      lifetimeSeconds: 60,
    });
    const failure = await grpcFailure(announce({ keyPem: key.keyPem, certPem: expired.certPem }));
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(failure.code);
  });

  test('renewal over mutual TLS gives a fresh certificate; revocation stops every call at once', async () => {
    const victim = await fleet.enroll();
    const fresh = csr();
    const renewed = await unary<object, RenewResponse>(fleet.mtlsClient('Identity', victim), 'Renew', { csrPem: fresh.csrPem });
    const renewedCert = new X509Certificate(renewed.certificatePem);
    expect(renewedCert.subject).toBe(`CN=${victim.agentId}`);
    expect(renewedCert.serialNumber).not.toBe(new X509Certificate(victim.certPem).serialNumber);

    // An announce stream opened before the revocation: its next announce ends it.
    const stream = (fleet.mtlsClient('Tracker', victim) as unknown as { AnnounceStream(): grpc.ClientDuplexStream<object, { id: number; status: number }> }).AnnounceStream();
    const answers: { id: number; status: number }[] = [];
    stream.on('data', (answer: { id: number; status: number }) => answers.push(answer));
    const streamEnd = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    const streamAnnounce = { infoHash: Buffer.alloc(20, 0x5e), port: 6881, left: 0 };
    stream.write({ id: 1, announce: streamAnnounce });
    while (answers.length === 0) await new Promise((r) => setTimeout(r, 20));
    expect(answers).toEqual([expect.objectContaining({ id: 1, status: grpc.status.OK })]);

    const revoked = await fleet.rest<{ revokedSerials: string[] }>('POST', `/v1/agents/${victim.agentId}/revoke`, { json: {} });
    expect(revoked.status).toBe(201);
    stream.write({ id: 2, announce: streamAnnounce });
    const ended = await streamEnd;
    expect({ code: ended.code, shoalCode: String(ended.metadata.get('shoal-error-code')[0]) }).toEqual({ code: grpc.status.PERMISSION_DENIED, shoalCode: 'AUTH_CERTIFICATE_REVOKED' });
    expect(answers).toHaveLength(1);
    expect(revoked.body.revokedSerials).toHaveLength(2);
    for (const certPem of [victim.certPem, renewed.certificatePem]) {
      const failure = await grpcFailure(announce({ keyPem: certPem === victim.certPem ? victim.keyPem : fresh.keyPem, certPem }));
      expect(failure).toMatchObject({ code: grpc.status.PERMISSION_DENIED, shoalCode: 'AUTH_CERTIFICATE_REVOKED' });
    }
    const renewAgain = await grpcFailure(unary(fleet.mtlsClient('Identity', victim), 'Renew', { csrPem: csr().csrPem }));
    expect(renewAgain.code).toBe(grpc.status.PERMISSION_DENIED);

    const list = await unary<object, SignedRevocationListMessage>(fleet.mtlsClient('Identity', agent), 'GetRevocations', {});
    const serials = (JSON.parse(list.payload) as { revoked: { serial: string }[] }).revoked.map((r) => r.serial);
    expect(serials).toEqual(expect.arrayContaining(revoked.body.revokedSerials));
    expect(await fleet.rest('GET', `/v1/agents/${victim.agentId}`)).toMatchObject({ body: { state: 'revoked' } });
  });
});
