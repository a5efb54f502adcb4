import { type AgentIdentity, type PeerIdentity, certificateAllowsPackage, readPeerIdentity } from '@shoal/pki';
import { ShoalError } from '@shoal/torrent';

/** Why a peer connection is refused or closed; stable codes for logs and metrics. */
export type AdmissionCode =
  | 'PEER_UNKNOWN_PACKAGE'
  | 'PEER_NO_CERTIFICATE'
  | 'PEER_CERTIFICATE_INVALID'
  | 'PEER_NOT_FLEET'
  | 'PEER_NOT_AN_AGENT'
  | 'PEER_OUT_OF_SCOPE'
  | 'PEER_REVOKED';

export class AdmissionError extends ShoalError {
  constructor(
    override readonly code: AdmissionCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A package this agent serves or fetches, as the peer wire names it (SNI = hex of the 20-byte hash). */
export interface WirePackage {
  name: string;
  infoHash: Buffer;
}

export function wireName(infoHash: Buffer): string {
  return infoHash.subarray(0, 20).toString('hex');
}

/**
 * The SNI of a DHT connection (never 40 hex digits, so never a package's): the peer server hands
 * such connections to the agent's DHT node instead of a package session.
 */
export const DHT_SERVER_NAME = 'shoal-dht';

/**
 * The admission rule for any connection between agents, once TLS has verified the certificate
 * chain against the fleet CA (and its validity period): the peer is an agent of this fleet and its
 * serial is not revoked. The DHT admits on this alone: it carries no package data.
 */
export function admitFleetAgent(certificateDer: Buffer | undefined, fleet: string, isRevoked: (serial: string) => boolean): AgentIdentity {
  if (!certificateDer || certificateDer.length === 0) throw new AdmissionError('PEER_NO_CERTIFICATE', 'peer presented no certificate');
  let identity: PeerIdentity;
  try {
    identity = identityOf(certificateDer, fleet);
  } catch (err) {
    throw new AdmissionError('PEER_NOT_FLEET', `peer certificate does not name an agent of fleet ${fleet}: ${(err as Error).message}`, { cause: err });
  }
  if (identity.role !== 'agent') throw new AdmissionError('PEER_NOT_AN_AGENT', 'peer certificate is not an agent certificate');
  if (isRevoked(identity.serial)) throw new AdmissionError('PEER_REVOKED', `certificate ${identity.serial} of ${identity.agentId} is revoked`);
  return identity;
}

/** Certificates whose identity is remembered, at most (the fleet's peers of a few packages). */
const IDENTITY_MEMO_LIMIT = 4096;
const identities = new Map<string, Readonly<PeerIdentity>>();

/**
 * The identity a certificate names, read once per certificate and process: every agent connects
 * to the same peers for each package and for the DHT, and decoding the certificate, exporting its
 * key and hashing it was a tenth of an agent's CPU while a 16-host swarm started up. Only the
 * reading is remembered; revocation and scope are checked on every connection.
 */
function identityOf(der: Buffer, fleet: string): Readonly<PeerIdentity> {
  const key = `${fleet}\n${der.toString('base64')}`;
  let identity = identities.get(key);
  if (!identity) {
    identity = readPeerIdentity(der, { fleet });
    Object.freeze(identity.packageScopes);
    Object.freeze(identity);
    if (identities.size >= IDENTITY_MEMO_LIMIT) identities.delete(identities.keys().next().value as string);
    identities.set(key, identity);
  }
  return identity;
}

/** The peer-wire admission rule: a fleet agent (admitFleetAgent) whose certificate covers the package (SAN DNS = name or *). */
export function admitPeer(
  certificateDer: Buffer | undefined,
  pkg: WirePackage,
  fleet: string,
  isRevoked: (serial: string) => boolean,
): AgentIdentity {
  const identity = admitFleetAgent(certificateDer, fleet, isRevoked);
  if (!certificateAllowsPackage(identity, pkg.name)) {
    throw new AdmissionError('PEER_OUT_OF_SCOPE', `${identity.agentId} may not swarm ${pkg.name} (scopes: ${identity.packageScopes.join(', ')})`);
  }
  return identity;
}
