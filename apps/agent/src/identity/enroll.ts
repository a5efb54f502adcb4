import { X509Certificate } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { createCsr, generateRsaKeyPair, readPeerIdentity } from '@shoal/pki';
import { type EnrollResponse, shoalV1, unary } from '@shoal/proto';
import { type EnrollmentRecord, IdentityError, saveIdentity } from './state';

export interface EnrollOptions {
  dataDir: string;
  /** host:port of the controller's enrollment listener. */
  controller: string;
  /** The fleet CA (PEM), obtained out of band: the only thing the agent trusts before enrolling. */
  caPem: string;
  token: string;
  softwareVersion: string;
  hostname?: string;
  now: Date;
}

const FLEET_URI = /URI:shoal:\/\/([a-z0-9-]+)\/agent\/([a-z0-9-]+)/;

/**
 * Enrolls this host: makes a key pair here (the private key never leaves the host), sends a CSR
 * with the bootstrap token over TLS that must chain to the given CA, checks that the answer is
 * a certificate for our key issued by that CA, and stores the identity.
 */
export async function enrollAgent(options: EnrollOptions): Promise<EnrollmentRecord> {
  let trusted: X509Certificate;
  try {
    trusted = new X509Certificate(options.caPem);
  } catch (err) {
    throw new IdentityError('AGENT_BAD_CA', 'the fleet CA given is not a PEM certificate', { cause: err });
  }
  const key = generateRsaKeyPair(2048);
  const csrPem = createCsr({ keyPem: key.keyPem, publicKeyPem: key.publicKeyPem, commonName: 'shoal-agent' });
  const client = new (shoalV1().Enrollment)(options.controller, grpc.credentials.createSsl(Buffer.from(options.caPem)));
  let response: EnrollResponse;
  try {
    response = await unary<object, EnrollResponse>(client, 'Enroll', {
      bootstrapToken: options.token,
      csrPem,
      hostname: options.hostname ?? osHostname(),
      softwareVersion: options.softwareVersion,
    });
  } catch (err) {
    const e = err as grpc.ServiceError;
    throw new IdentityError('AGENT_ENROLL_REFUSED', `the controller at ${options.controller} refused enrollment: ${e.details ?? e.message}`, { cause: err });
  } finally {
    client.close();
  }

  const cert = new X509Certificate(response.certificatePem);
  if (!new X509Certificate(response.caPem).raw.equals(trusted.raw)) {
    throw new IdentityError('AGENT_ENROLL_MISMATCH', 'the controller answered with another CA than the one trusted');
  }
  if (!cert.checkIssued(trusted) || !cert.verify(trusted.publicKey)) {
    throw new IdentityError('AGENT_ENROLL_MISMATCH', 'the certificate received was not issued by the fleet CA');
  }
  if (cert.publicKey.export({ type: 'spki', format: 'pem' }).toString() !== key.publicKeyPem) {
    throw new IdentityError('AGENT_ENROLL_MISMATCH', 'the certificate received is not for this host\'s key');
  }
  const fleet = FLEET_URI.exec(cert.subjectAltName ?? '')?.[1];
  if (!fleet) throw new IdentityError('AGENT_ENROLL_MISMATCH', 'the certificate received names no fleet agent');
  const identity = readPeerIdentity(cert, { fleet });
  if (identity.role !== 'agent' || identity.agentId !== response.agentId) {
    throw new IdentityError('AGENT_ENROLL_MISMATCH', 'the certificate received is for another agent');
  }
  const enrollment: EnrollmentRecord = {
    agentId: response.agentId,
    fleet,
    endpoints: response.endpoints,
    labels: response.labels,
    enrolledAt: options.now.toISOString(),
  };
  await saveIdentity(options.dataDir, {
    keyPem: key.keyPem,
    certPem: response.certificatePem,
    caPem: options.caPem,
    tufRoot: response.tufRoot,
    enrollment,
  });
  return enrollment;
}
