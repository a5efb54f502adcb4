import { X509Certificate, createHash } from 'node:crypto';
import { PeerCertificateError } from './errors';
import { ALL_PACKAGES_SCOPE, parseShoalUri, requireFleet } from './names';
import { parseSubjectAltNames } from './subject-alt-names';

interface PeerIdentityFields {
  fleet: string;
  /** Lowercase hex, no sign byte: equals `issue*().serial` and Node's serialNumber lowercased. */
  serial: string;
  /** DNS entries of an agent certificate: the packages it may swarm ('*' = all). Empty for the controller. */
  packageScopes: readonly string[];
  notBefore: Date;
  notAfter: Date;
  /** Hex SHA-256 of the DER SubjectPublicKeyInfo: the peer's DHT node id. */
  publicKeySha256: string;
}

export interface AgentIdentity extends PeerIdentityFields {
  role: 'agent';
  agentId: string;
}

export interface ControllerIdentity extends PeerIdentityFields {
  role: 'controller';
  agentId?: undefined;
}

export type PeerIdentity = AgentIdentity | ControllerIdentity;

const AGENT_PATH_PATTERN = /^agent\/([a-z0-9][a-z0-9-]{0,62})$/;

/**
 * Reads who a peer is from its certificate (PEM, DER as in `getPeerCertificate().raw`, or
 * `getPeerX509Certificate()`). The identity is the single shoal:// URI in the subjectAltName.
 *
 * This does not check the signature, validity period or revocation: call it on a certificate
 * that TLS has already verified against the fleet CA (rejectUnauthorized), then check the serial
 * against the RevocationSet.
 */
export function readPeerIdentity(certificate: string | Buffer | X509Certificate, options: { fleet: string }): PeerIdentity {
  const fleet = requireFleet(options.fleet);
  let x509: X509Certificate;
  try {
    x509 = certificate instanceof X509Certificate ? certificate : new X509Certificate(certificate);
  } catch (cause) {
    throw new PeerCertificateError('PKI_CERT_MALFORMED', 'the peer certificate cannot be read', { cause });
  }
  const altNames = parseSubjectAltNames(x509.subjectAltName);
  if (altNames === undefined) {
    throw new PeerCertificateError('PKI_CERT_MALFORMED', 'the subjectAltName of the peer certificate cannot be read');
  }

  const shoalUris = altNames
    .filter((name) => name.type === 'URI' && name.value.startsWith('shoal:'))
    .map((name) => name.value);
  const [uri] = shoalUris;
  if (uri === undefined || shoalUris.length > 1) {
    throw new PeerCertificateError('PKI_NOT_FLEET_CERT', `expected one shoal:// URI in the certificate, found ${shoalUris.length}`);
  }
  const parsed = parseShoalUri(uri);
  if (parsed?.fleet !== fleet) {
    throw new PeerCertificateError('PKI_NOT_FLEET_CERT', `the certificate names ${JSON.stringify(uri)}, not a peer of ${fleet}`);
  }

  const notBefore = new Date(x509.validFrom);
  const notAfter = new Date(x509.validTo);
  if (!Number.isFinite(notBefore.getTime()) || !Number.isFinite(notAfter.getTime())) {
    throw new PeerCertificateError('PKI_CERT_MALFORMED', 'the validity period of the peer certificate cannot be read');
  }
  const fields = {
    fleet,
    serial: x509.serialNumber.toLowerCase(),
    notBefore,
    notAfter,
    publicKeySha256: createHash('sha256').update(x509.publicKey.export({ type: 'spki', format: 'der' })).digest('hex'),
  };

  const agentId = AGENT_PATH_PATTERN.exec(parsed.path)?.[1];
  if (agentId !== undefined) {
    const packageScopes = altNames.filter((name) => name.type === 'DNS').map((name) => name.value);
    return { ...fields, role: 'agent', agentId, packageScopes };
  }
  if (parsed.path === 'controller') return { ...fields, role: 'controller', packageScopes: [] };
  // Anything else, the fleet CA's own shoal://<fleet>/ca included, is no peer.
  throw new PeerCertificateError('PKI_NOT_FLEET_CERT', `${JSON.stringify(uri)} names neither an agent nor the controller`);
}

/** Whether the peer may swarm `packageName`: an agent whose scopes hold that exact name or '*'. */
export function certificateAllowsPackage(identity: PeerIdentity, packageName: string): boolean {
  const { role, packageScopes } = identity;
  return role === 'agent' && (packageScopes.includes(ALL_PACKAGES_SCOPE) || packageScopes.includes(packageName));
}
