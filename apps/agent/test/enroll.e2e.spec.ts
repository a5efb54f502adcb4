import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type TestFleet, runShoal, scratchDir, startTestFleet } from '@shoal/testing';
import { CertificateRenewer } from '../src/identity/renewer';
import { identityLayout, loadIdentity } from '../src/identity/state';

/** `shoal agent enroll` and certificate renewal against a controller running as a real process. */
let fleet: TestFleet;
let scratch: { path: string; remove(): Promise<void> };

beforeAll(async () => {
  fleet = await startTestFleet(10, 'agents');
  scratch = await scratchDir('agent');
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  await scratch?.remove();
});

async function token(body: object = {}): Promise<string> {
  const created = await fleet.rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { json: body });
  return created.body.token;
}

const caFile = () => join(fleet.dataDir, 'ca', 'ca.pem');

test('enroll: the key is made and kept here (0600); the certificate, CA, TUF root and endpoints are stored', async () => {
  const dataDir = join(scratch.path, 'a1');
  const run = runShoal(['agent', 'enroll', '--controller', fleet.controller.enrollAddress, '--ca', caFile(), '--data-dir', dataDir, '--json'], {
    SHOAL_BOOTSTRAP_TOKEN: await token({ labels: { site: 'par' } }),
  });
  // grpc-js sets the TLS server name to the controller's IP, which Node warns about (DEP0123).
  expect(run.stderr.split('\n').filter((line) => line && !/DEP0123|trace-deprecation/.test(line))).toEqual([]);
  expect(run.status).toBe(0);
  const record = JSON.parse(run.stdout);
  expect(record).toMatchObject({ fleet: 'agents', labels: { site: 'par' }, endpoints: { grpc: fleet.controller.grpcAddress } });
  const paths = identityLayout(dataDir);
  expect((statSync(paths.key).mode & 0o777).toString(8)).toBe('600');
  const identity = await loadIdentity(dataDir);
  const cert = new X509Certificate(identity.certPem);
  expect(cert.subject).toBe(`CN=${record.agentId}`);
  expect(cert.publicKey.export({ type: 'spki', format: 'der' }).equals(new X509Certificate(identity.certPem).publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
  expect(JSON.parse(readFileSync(paths.tufRoot, 'utf8')).signed._type).toBe('root');
  expect((await fleet.rest('GET', `/v1/agents/${record.agentId}`)).status).toBe(200);
});

test('enroll refuses a used token and a controller that is not the given CA, with one line and exit 2', async () => {
  const once = await token();
  const first = runShoal(['agent', 'enroll', '--token', once, '--controller', fleet.controller.enrollAddress, '--ca', caFile(), '--data-dir', join(scratch.path, 'a2')]);
  expect(first.status).toBe(0);
  const again = runShoal(['agent', 'enroll', '--token', once, '--controller', fleet.controller.enrollAddress, '--ca', caFile(), '--data-dir', join(scratch.path, 'a3')]);
  expect(again.status).toBe(2);
  expect(again.stderr).toMatch(/refused enrollment: bootstrap token has no uses left/);
  expect(again.stderr).not.toMatch(/^\s+at /m);

  const otherDir = join(scratch.path, 'other-ctl');
  expect(runShoal(['controller', 'init', '--data-dir', otherDir, '--fleet', 'other']).status).toBe(0);
  const wrongCa = runShoal(['agent', 'enroll', '--token', await token(), '--controller', fleet.controller.enrollAddress, '--ca', join(otherDir, 'ca', 'ca.pem'), '--data-dir', join(scratch.path, 'a4')]);
  expect(wrongCa.status).toBe(2);
  expect(wrongCa.stderr).toMatch(/refused enrollment/);
  const missing = runShoal(['agent', 'enroll', '--controller', fleet.controller.enrollAddress]);
  expect(missing.status).toBe(2);
  expect(missing.stderr).toMatch(/agent enroll needs --token/);
});

test('renewal over mutual TLS keeps the key, stores the new certificate, and runs at half-life', async () => {
  const dataDir = join(scratch.path, 'r1');
  expect(runShoal(['agent', 'enroll', '--token', await token(), '--controller', fleet.controller.enrollAddress, '--ca', caFile(), '--data-dir', dataDir]).status).toBe(0);
  const before = await loadIdentity(dataDir);
  const renewer = new CertificateRenewer({ dataDir, keyPem: before.keyPem, certPem: before.certPem, caPem: before.caPem, controller: fleet.controller.grpcAddress });
  const renewed = await renewer.renewNow();
  const oldCert = new X509Certificate(before.certPem);
  const newCert = new X509Certificate(renewed);
  expect(newCert.serialNumber).not.toBe(oldCert.serialNumber);
  expect(newCert.subject).toBe(oldCert.subject);
  expect(newCert.publicKey.export({ type: 'spki', format: 'pem' })).toBe(oldCert.publicKey.export({ type: 'spki', format: 'pem' }));
  expect((await loadIdentity(dataDir)).certPem).toBe(renewed);
  // Scheduling: the next renewal is due at the new certificate's half-life, about 12 h away.
  renewer.start();
  const due = (new Date(newCert.validFrom).getTime() + new Date(newCert.validTo).getTime()) / 2;
  expect(due - Date.now()).toBeGreaterThan(11 * 3600 * 1000);
  renewer.stop();
});

test('a revoked agent cannot renew; the failure is reported and retried, not thrown', async () => {
  const dataDir = join(scratch.path, 'r2');
  const enrolled = JSON.parse(
    runShoal(['agent', 'enroll', '--token', await token(), '--controller', fleet.controller.enrollAddress, '--ca', caFile(), '--data-dir', dataDir, '--json']).stdout,
  );
  await fleet.rest('POST', `/v1/agents/${enrolled.agentId}/revoke`, { json: {} });
  const identity = await loadIdentity(dataDir);
  const renewer = new CertificateRenewer({ dataDir, keyPem: identity.keyPem, certPem: identity.certPem, caPem: identity.caPem, controller: fleet.controller.grpcAddress, minRetryMs: 50 });
  await expect(renewer.renewNow()).rejects.toThrow(/revoked/);
  expect((await loadIdentity(dataDir)).certPem).toBe(identity.certPem);
});
