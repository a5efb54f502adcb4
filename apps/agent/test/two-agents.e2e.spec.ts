import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { CertificateAuthority, createFleetCa } from '@shoal/pki';
import { type AgentProcess, type EnrolledAgent, type TestFleet, runShoal, scratchDir, startAgentProcess, startTestFleet } from '@shoal/testing';
import { HANDSHAKE_LENGTH, type Handshake, encodeHandshake, parseHandshake } from '@shoal/wire';
import type { WirePackage } from '../src/peer/admission';
import { type AdmittedConnection, type TlsIdentity, connectToPeer } from '../src/peer/tls';

/**
 * Two agents as real processes with a real controller: A seeds a published package from local
 * data; B is told to fetch it over its control stream, verifies the release with TUF, finds A
 * through the tracker, downloads every piece over the mutual-TLS peer wire, and seeds it.
 */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };
const agents: AgentProcess[] = [];

const FLEET = 'pair';

beforeAll(async () => {
  fleet = await startTestFleet(8, FLEET);
  scratch = await scratchDir('two-agents');
}, 60_000);

afterAll(async () => {
  for (const agent of agents) await agent.stop();
  await fleet?.stop();
  await scratch?.remove();
});

function status(dataDir: string): { packages: { name: string; complete: boolean; verifiedPieces: number; totalPieces: number; path: string | null }[] } {
  const run = runShoal(['status', '--data-dir', dataDir, '--json']);
  if (run.status !== 0) throw new Error(run.stderr);
  return JSON.parse(run.stdout);
}

test('agent B fetches a published package from agent A over the peer wire, verifies it and seeds it', async () => {
  const release = join(scratch.path, 'release');
  mkdirSync(join(release, 'bin'), { recursive: true });
  writeFileSync(join(release, 'bin', 'app'), randomBytes(3 * 1024 * 1024 + 123));
  writeFileSync(join(release, 'data.bin'), randomBytes(5 * 1024 * 1024));
  writeFileSync(join(release, 'empty'), '');
  const pkg = join(scratch.path, 'app.torrent');
  expect(runShoal(['pack', release, '-o', pkg, '--piece-length', '64K', '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
  expect(runShoal(['publish', pkg, '--name', 'app', '--version', '1.0.0', '--data-dir', fleet.dataDir, '--controller', fleet.controller.restUrl]).status).toBe(0);

  const dirA = await fleet.enrollAgentDir('agent-a', scratch.path);
  const imported = runShoal(['agent', 'import', pkg, release, '--name', 'app', '--version', '1.0.0', '--data-dir', dirA]);
  expect(imported.stderr).toBe('');
  agents.push(await startAgentProcess({ dataDir: dirA }));
  const dirB = await fleet.enrollAgentDir('agent-b', scratch.path);
  agents.push(await startAgentProcess({ dataDir: dirB }));
  await fleet.untilConnected('agent-b');

  const sent = await fleet.rest<{ commandId: string }>('POST', '/v1/agents/agent-b/fetch', { json: { name: 'app', version: '1.0.0' } });
  expect(sent.status).toBe(202);
  const deadline = Date.now() + 60_000;
  let app = status(dirB).packages.find((p) => p.name === 'app');
  while (!app?.complete) {
    if (Date.now() > deadline) throw new Error(`B did not complete: ${JSON.stringify(app)}\n${agents[1]?.logs.slice(-20).join('\n')}`);
    await new Promise((r) => setTimeout(r, 250));
    app = status(dirB).packages.find((p) => p.name === 'app');
  }
  expect(app.verifiedPieces).toBe(app.totalPieces);
  // One "first piece verified" line per delivery, before the one that says it is complete (the
  // log is written asynchronously: wait for the latter).
  const logsB = (agents[1] as AgentProcess).logs;
  const completeLine = () => logsB.findIndex((l) => l.includes('package complete and verified'));
  while (completeLine() < 0) {
    if (Date.now() > deadline) throw new Error(`B never logged its completion:\n${logsB.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const firstPieceLines = logsB.flatMap((l, at) => (l.includes('first piece verified') ? [at] : []));
  expect(firstPieceLines).toHaveLength(1);
  expect(firstPieceLines[0]).toBeLessThan(completeLine());
  expect(JSON.parse(logsB[firstPieceLines[0] as number] as string)).toMatchObject({ package: 'app@1.0.0' });
  const verified = runShoal(['verify', pkg, app.path as string]);
  expect(verified.stdout).toMatch(/^ok: 3 files/);
  expect(verified.status).toBe(0);
  const deadlineResult = Date.now() + 10_000;
  while (!fleet.controller.logs.some((l) => l.includes('command result') && l.includes(sent.body.commandId))) {
    if (Date.now() > deadlineResult) throw new Error('the controller never got the result');
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(fleet.controller.logs.find((l) => l.includes(sent.body.commandId) && l.includes('command result'))).toMatch(/"ok":true/);

  // Garbage from an admitted fleet peer on a live connection: A closes it with a typed reason
  // and keeps serving.
  const intruder = await fleet.enroll();
  const seedA = agents[0] as AgentProcess;
  const infoHash = Buffer.from(JSON.parse(runShoal(['inspect', pkg, '--json']).stdout).infoHash, 'hex');
  const garbage = await connectToPeer({
    host: '127.0.0.1',
    port: seedA.peerPort,
    pkg: { name: 'app', infoHash },
    identity: { keyPem: intruder.keyPem, certPem: intruder.certPem, caPem: fleet.caPem },
    fleet: FLEET,
    isRevoked: () => false,
  });
  const closed = new Promise<void>((resolve) => garbage.socket.once('close', () => resolve()));
  garbage.socket.write(randomBytes(4096));
  await closed;
  const deadlineLog = Date.now() + 5000;
  while (!seedA.logs.some((l) => l.includes('peer connection closed') && l.includes(intruder.agentId))) {
    if (Date.now() > deadlineLog) throw new Error(`no typed close logged:\n${seedA.logs.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(seedA.logs.find((l) => l.includes('peer connection closed') && l.includes(intruder.agentId))).toMatch(/"code":"WIRE_[A-Z_]+"/);
  expect(status(dirA).packages[0]?.complete).toBe(true);
  expect(seedA.process.exitCode).toBeNull();

  // Revoking A: B gets the new list on its control stream and closes the connection it dialled to A.
  const leechB = agents[1] as AgentProcess;
  expect((await fleet.rest('POST', '/v1/agents/agent-a/revoke', { json: {} })).status).toBe(201);
  const deadlineRevoke = Date.now() + 10_000;
  while (!leechB.logs.some((l) => l.includes('revocation list applied') && /"closed":[1-9]/.test(l))) {
    if (Date.now() > deadlineRevoke) throw new Error(`B kept its connection to a revoked peer:\n${leechB.logs.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  // SIGTERM: both agents, each with a package and live peer connections, stop cleanly.
  for (const agent of agents.splice(0)) expect(await agent.stop()).toBe(0);
}, 120_000);

/**
 * The admission matrix against a running agent process: every connection A must refuse ends in
 * the TLS handshake or is closed before A answers the BitTorrent handshake, is counted in A's
 * metrics by reason, and leaves A serving a valid fleet peer.
 */
describe('admission at the peer port of a running agent', () => {
  let gate: AgentProcess;
  let gateDir: string;
  let statusSocket: string;
  let app: WirePackage;
  let member: EnrolledAgent;
  let memberIdentity: TlsIdentity;
  let fleetCa: CertificateAuthority;

  beforeAll(async () => {
    const release = join(scratch.path, 'gate-release');
    mkdirSync(release, { recursive: true });
    writeFileSync(join(release, 'app.bin'), randomBytes(300 * 1024));
    const torrent = join(scratch.path, 'gate-app.torrent');
    expect(runShoal(['pack', release, '-o', torrent, '--piece-length', '64K', '--ca', join(fleet.dataDir, 'ca', 'ca.pem')]).status).toBe(0);
    app = { name: 'app', infoHash: Buffer.from(JSON.parse(runShoal(['inspect', torrent, '--json']).stdout).infoHash, 'hex') };
    gateDir = await fleet.enrollAgentDir('agent-gate', scratch.path);
    expect(runShoal(['agent', 'import', torrent, release, '--name', 'app', '--version', '1.0.0', '--data-dir', gateDir]).stderr).toBe('');
    gate = await startAgentProcess({ dataDir: gateDir });
    agents.push(gate);
    statusSocket = logEntries(gate, 'agent started')[0]?.status as string;
    member = await fleet.enroll();
    memberIdentity = { keyPem: member.keyPem, certPem: member.certPem, caPem: fleet.caPem };
    // The controller's own CA, loaded the way its data folder holds it.
    fleetCa = CertificateAuthority.load(readFileSync(join(fleet.dataDir, 'ca', 'ca.pem'), 'utf8'), readFileSync(join(fleet.dataDir, 'ca', 'ca-key.pem'), 'utf8'));
  }, 60_000);

  /** Issues `member`'s key a certificate from `authority`: only the certificate differs between cases. */
  const certifiedMember = (authority: CertificateAuthority, options: { agentId: string; scopes?: string[]; now?: Date; lifetimeSeconds?: number }): TlsIdentity => ({
    keyPem: member.keyPem,
    caPem: fleet.caPem,
    certPem: authority.issueAgentCertificate({
      agentId: options.agentId,
      publicKeyPem: member.publicKeyPem,
      packageScopes: options.scopes ?? ['*'],
      now: options.now ?? new Date(),
      ...(options.lifetimeSeconds ? { lifetimeSeconds: options.lifetimeSeconds } : {}),
    }).certPem,
  });

  /** A valid fleet peer completes TLS and gets A's handshake for the package; then it hangs up and A lets it go. */
  async function expectServed(identity: TlsIdentity, agentId: string): Promise<void> {
    const closedBefore = closedLogs(agentId);
    const outcome = await probe(gate.peerPort, app, identity);
    expect(outcome.kind).toBe('answered');
    if (outcome.kind !== 'answered') return;
    expect(outcome.handshake.infoHash20.equals(app.infoHash.subarray(0, 20))).toBe(true);
    outcome.hangUp();
    // One connection per peer pair: the next probe must not meet this one still open at A.
    await until(() => closedLogs(agentId) > closedBefore, `A never closed the connection of ${agentId}`);
  }

  const closedLogs = (agentId: string) => logEntries(gate, 'peer connection closed').filter((e) => e.peer === agentId).length;

  async function expectRefused(identity: TlsIdentity, code: string, pkg: WirePackage = app): Promise<void> {
    const before = (await refusedCounts(statusSocket)).get(code) ?? 0;
    const outcome = await probe(gate.peerPort, pkg, identity);
    expect(['tls-failed', 'closed-unanswered']).toContain(outcome.kind);
    let counted = before;
    await until(async () => (counted = (await refusedCounts(statusSocket)).get(code) ?? 0) > before, `A did not count a ${code} refusal`);
    expect(counted).toBe(before + 1);
    expect(gate.process.exitCode).toBeNull();
    await expectServed(memberIdentity, member.agentId);
  }

  test('a fleet peer is admitted and gets the BitTorrent handshake of A', async () => {
    await expectServed(memberIdentity, member.agentId);
  });

  test('no client certificate is refused', async () => {
    await expectRefused({ keyPem: '', certPem: '', caPem: fleet.caPem }, 'PEER_CERTIFICATE_INVALID');
  });

  test('a certificate from another CA of the same fleet name is refused', async () => {
    const material = createFleetCa({ fleet: FLEET, now: new Date(), keyBits: 2048 });
    await expectRefused(certifiedMember(CertificateAuthority.load(material.certPem, material.keyPem), { agentId: 'intruder' }), 'PEER_CERTIFICATE_INVALID');
  });

  test('an expired certificate from the fleet CA is refused', async () => {
    // Issued 4 minutes ago for 1 minute: the fleet CA's validity starts 5 minutes before controller init.
    const expired = certifiedMember(fleetCa, { agentId: 'expired', now: new Date(Date.now() - 4 * 60_000), lifetimeSeconds: 60 });
    await expectRefused(expired, 'PEER_CERTIFICATE_INVALID');
  });

  test('a certificate revoked at the controller is refused once A has the pushed list', async () => {
    const doomed = await fleet.enroll();
    const doomedIdentity = { keyPem: doomed.keyPem, certPem: doomed.certPem, caPem: fleet.caPem };
    await expectServed(doomedIdentity, doomed.agentId);
    const revoked = await fleet.rest<{ revokedSerials: string[]; revocationListVersion: number }>('POST', `/v1/agents/${doomed.agentId}/revoke`, { json: {} });
    expect(revoked.status).toBe(201);
    expect(revoked.body.revokedSerials).toHaveLength(1);
    await until(
      () => logEntries(gate, 'revocation list applied').some((e) => Number(e.version) >= revoked.body.revocationListVersion),
      `A never applied revocation list ${revoked.body.revocationListVersion}`,
    );
    await expectRefused(doomedIdentity, 'PEER_REVOKED');
  });

  test('a certificate whose scope names another package is refused', async () => {
    await expectRefused(certifiedMember(fleetCa, { agentId: 'db-only', scopes: ['db-server'] }), 'PEER_OUT_OF_SCOPE');
  });

  test('a valid certificate naming by SNI a package A does not serve is refused', async () => {
    await expectRefused(memberIdentity, 'PEER_UNKNOWN_PACKAGE', { name: 'app', infoHash: Buffer.alloc(32, 0xee) });
  });

  // Last: it stops the controller.
  test('A keeps the revocation list across a restart: a revoked peer stays refused while the controller is unreachable', async () => {
    const doomed = await fleet.enroll();
    const revoked = await fleet.rest<{ revocationListVersion: number }>('POST', `/v1/agents/${doomed.agentId}/revoke`, { json: {} });
    expect(revoked.status).toBe(201);
    await until(
      () => logEntries(gate, 'revocation list applied').some((e) => Number(e.version) >= revoked.body.revocationListVersion),
      `A never applied revocation list ${revoked.body.revocationListVersion}`,
    );
    await fleet.controller.stop();
    await gate.stop();
    gate = await startAgentProcess({ dataDir: gateDir });
    agents.push(gate);
    statusSocket = logEntries(gate, 'agent started')[0]?.status as string;
    // Packages resume after the start line (a resume may re-hash): until then every SNI is unknown.
    await until(() => status(gateDir).packages.some((p) => p.name === 'app'), 'A never resumed the package');
    await expectRefused({ keyPem: doomed.keyPem, certPem: doomed.certPem, caPem: fleet.caPem }, 'PEER_REVOKED');
  });
});

type ProbeOutcome =
  | { kind: 'tls-failed'; message: string }
  | { kind: 'closed-unanswered' }
  | { kind: 'closed-mid-handshake'; bytes: number }
  | { kind: 'answered'; handshake: Handshake; hangUp(): void }
  | { kind: 'no-verdict' };

/**
 * Dials `port` for `pkg` as `identity`, sends a BitTorrent handshake and reports how it ended:
 * in TLS, closed before any answer, or with the agent's 68-byte handshake.
 */
async function probe(port: number, pkg: WirePackage, identity: TlsIdentity): Promise<ProbeOutcome> {
  let connection: AdmittedConnection;
  try {
    connection = await connectToPeer({ host: '127.0.0.1', port, pkg, identity, fleet: FLEET, isRevoked: () => false });
  } catch (err) {
    return { kind: 'tls-failed', message: (err as Error).message };
  }
  const { socket } = connection;
  // With TLS 1.3 the server judges the client certificate after the client's handshake is done:
  // its refusal arrives as an alert or a reset, and the close below is the verdict.
  socket.on('error', () => undefined);
  socket.write(encodeHandshake({ infoHash20: pkg.infoHash.subarray(0, 20), peerId20: Buffer.concat([Buffer.from('-TEST00-'), randomBytes(12)]) }));
  return new Promise<ProbeOutcome>((resolve) => {
    let received = Buffer.alloc(0);
    const deadline = setTimeout(() => {
      socket.destroy();
      resolve({ kind: 'no-verdict' });
    }, 15_000);
    const finish = (outcome: ProbeOutcome) => {
      clearTimeout(deadline);
      socket.removeAllListeners('data');
      resolve(outcome);
    };
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= HANDSHAKE_LENGTH) finish({ kind: 'answered', handshake: parseHandshake(received.subarray(0, HANDSHAKE_LENGTH)), hangUp: () => socket.end() });
    });
    socket.once('close', () => finish(received.length === 0 ? { kind: 'closed-unanswered' } : { kind: 'closed-mid-handshake', bytes: received.length }));
  });
}

/** The agent's log lines with message `msg`, parsed. */
function logEntries(agent: AgentProcess, msg: string): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] = [];
  for (const line of agent.logs) {
    if (!line.includes(msg)) continue;
    try {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg === msg) entries.push(entry);
    } catch {
      // not a pino line
    }
  }
  return entries;
}

/** shoal_agent_peers_refused_total by code, from GET /metrics on the agent's status socket. */
function refusedCounts(socketPath: string): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    httpGet({ socketPath, path: '/metrics' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const counts = new Map<string, number>();
        for (const [, code, value] of Buffer.concat(chunks).toString().matchAll(/^shoal_agent_peers_refused_total\{code="([A-Z_]+)"\} (\d+)$/gm)) {
          counts.set(code as string, Number(value));
        }
        resolve(counts);
      });
    }).on('error', reject);
  });
}

async function until(condition: () => boolean | Promise<boolean>, failure: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(failure);
    await new Promise((r) => setTimeout(r, 50));
  }
}
