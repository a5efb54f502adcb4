import { type KeyObject, X509Certificate, createHash, sign } from 'node:crypto';
import forge from 'node-forge';
import { issuerNameOf } from './distinguished-name';
import { CertificateAuthorityError, PkiInputError } from './errors';
import {
  MIN_RSA_BITS,
  readPrivateKeyPem,
  readPublicKeyPem,
  requireRsaKeyPolicy,
  toForgePrivateKey,
  toForgePublicKey,
} from './keys';
import {
  GENERAL_NAME_TAG,
  MAX_SUBJECT_ALT_NAMES,
  agentUri,
  controllerUri,
  ipAddressBytes,
  parseShoalUri,
  isFleetName,
  requireAgentId,
  requireHostName,
  requirePackageScopes,
} from './names';
import {
  REVOCATION_SIGNATURE_DIGEST,
  REVOCATION_SIGNATURE_PADDING,
  type RevocationEntry,
  type SignedRevocationList,
  encodeRevocationPayload,
  normaliseRevocationList,
} from './revocation';
import { randomSerialNumber } from './serial';
import { parseSubjectAltNames } from './subject-alt-names';
import { CLOCK_SKEW_SECONDS, requirePositiveInteger, wholeSecondsOf } from './validity';

/** Agent certificates live a day and are renewed at half-life (DESIGN.md, "Identity"). */
export const DEFAULT_AGENT_CERT_LIFETIME_SECONDS = 24 * 60 * 60;
export const DEFAULT_CONTROLLER_CERT_LIFETIME_SECONDS = 90 * 24 * 60 * 60;
export const CONTROLLER_COMMON_NAME = 'shoal-controller';
const MAX_CERT_LIFETIME_SECONDS = 100 * 366 * 24 * 60 * 60;

export interface AgentCertificateOptions {
  agentId: string;
  /** The agent's SPKI public key PEM, e.g. from checkCsr: the only thing taken from the agent. */
  publicKeyPem: string;
  /** Package names the agent may swarm, or '*'; they become SAN DNS entries. */
  packageScopes: readonly string[];
  now: Date;
  lifetimeSeconds?: number;
}

export interface ControllerCertificateOptions {
  /** Names agents dial the controller by. */
  dnsNames: readonly string[];
  /** IPv4 or IPv6 addresses agents dial the controller at. */
  ipAddresses: readonly string[];
  publicKeyPem: string;
  now: Date;
  lifetimeSeconds?: number;
}

export interface IssuedCertificate {
  certPem: string;
  /** Lowercase hex, no sign byte: the format readPeerIdentity and RevocationSet use. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface RevocationListInput {
  version: number;
  revoked: readonly RevocationEntry[];
  now: Date;
}

/** A SAN entry as node-forge takes it; an iPAddress value is the address bytes as a binary string. */
interface AltName {
  type: (typeof GENERAL_NAME_TAG)[keyof typeof GENERAL_NAME_TAG];
  value: string;
}

interface LeafProfile {
  commonName: string;
  altNames: AltName[];
  publicKeyPem: string;
  now: Date;
  lifetimeSeconds: number;
}

/**
 * The fleet CA as the controller uses it: issues agent and controller certificates (node-forge,
 * SHA-256 with RSA) and signs the revocation list. Every name in a certificate is decided here
 * from the caller's arguments; a CSR contributes its public key and nothing else.
 */
export class CertificateAuthority {
  private constructor(
    private readonly x509: X509Certificate,
    private readonly forgeCertificate: forge.pki.Certificate,
    private readonly issuerName: forge.pki.CertificateField[],
    private readonly forgeKey: forge.pki.rsa.PrivateKey,
    private readonly privateKey: KeyObject,
    private readonly caFleet: string,
    private readonly keyIdentifier: string,
  ) {}

  /**
   * Loads a CA made by createFleetCa (or an equivalent self-signed RSA root carrying the URI
   * shoal://<fleet>/ca). Refuses a key that does not match, a certificate that is no CA, and a
   * subject name node-forge could not copy byte for byte into the issuer of what it signs.
   */
  static load(certPem: string, keyPem: string): CertificateAuthority {
    let x509: X509Certificate;
    let forgeCertificate: forge.pki.Certificate;
    if (typeof certPem !== 'string') {
      throw new CertificateAuthorityError('PKI_CA_MALFORMED', 'the CA certificate must be a PEM string');
    }
    try {
      x509 = new X509Certificate(certPem);
    } catch (cause) {
      throw new CertificateAuthorityError('PKI_CA_MALFORMED', 'the CA certificate cannot be read', { cause });
    }
    requireRsaKeyPolicy(x509.publicKey, MIN_RSA_BITS, 'the CA certificate key');
    try {
      // Hand node-forge the very bytes Node parsed, so both look at the same certificate.
      forgeCertificate = forge.pki.certificateFromAsn1(forge.asn1.fromDer(x509.raw.toString('binary')));
    } catch (cause) {
      throw new CertificateAuthorityError('PKI_CA_MALFORMED', 'node-forge cannot read the CA certificate', { cause });
    }
    const privateKey = readPrivateKeyPem(keyPem, 'the CA key');
    if (privateKey.asymmetricKeyType !== 'rsa' || !x509.checkPrivateKey(privateKey)) {
      throw new CertificateAuthorityError('PKI_CA_KEY_MISMATCH', 'the CA key does not belong to the CA certificate');
    }
    if (!x509.ca) throw new CertificateAuthorityError('PKI_CA_NOT_CA', 'the certificate lacks basicConstraints CA:TRUE');
    // forge returns null for an absent extension, although its types say undefined.
    const keyUsage = forgeCertificate.getExtension('keyUsage') as { keyCertSign?: boolean } | null | undefined;
    if (keyUsage && keyUsage.keyCertSign !== true) {
      throw new CertificateAuthorityError('PKI_CA_NOT_CA', 'the certificate keyUsage does not allow keyCertSign');
    }
    if (!x509.checkIssued(x509) || !x509.verify(x509.publicKey)) {
      throw new CertificateAuthorityError('PKI_CA_NOT_CA', 'the fleet CA must be a self-signed root');
    }
    const issuerName = issuerNameOf(forgeCertificate);
    if (issuerName === undefined) {
      throw new CertificateAuthorityError('PKI_CA_MALFORMED', 'node-forge cannot reproduce the CA subject name exactly');
    }
    const fleet = (parseSubjectAltNames(x509.subjectAltName) ?? [])
      .filter((name) => name.type === 'URI')
      .map((name) => parseShoalUri(name.value))
      .find((uri) => uri?.path === 'ca' && isFleetName(uri.fleet))?.fleet;
    if (fleet === undefined) {
      throw new CertificateAuthorityError('PKI_CA_NOT_CA', 'the certificate has no shoal://<fleet>/ca URI: it is no fleet CA');
    }
    // Issued certificates must point at the CA's own key identifier; RFC 5280 method 1 if it has none.
    const subjectKeyIdentifier = forgeCertificate.getExtension('subjectKeyIdentifier') as
      | { subjectKeyIdentifier?: string }
      | null
      | undefined;
    const keyIdentifier =
      subjectKeyIdentifier?.subjectKeyIdentifier ?? forgeCertificate.generateSubjectKeyIdentifier().toHex();
    const forgeKey = toForgePrivateKey(privateKey);
    return new CertificateAuthority(x509, forgeCertificate, issuerName, forgeKey, privateKey, fleet, keyIdentifier);
  }

  get fleet(): string {
    return this.caFleet;
  }

  get certPem(): string {
    return this.x509.toString();
  }

  /** Lowercase hex SHA-256 of the CA certificate's DER. */
  get certificateFingerprintSha256(): string {
    return createHash('sha256').update(this.x509.raw).digest('hex');
  }

  /**
   * Issues an agent's certificate: CN = agentId, SAN URI shoal://<fleet>/agent/<agentId>, SAN DNS
   * = package scopes, serverAuth + clientAuth (a peer is both TLS client and server).
   */
  issueAgentCertificate(options: AgentCertificateOptions): IssuedCertificate {
    const agentId = requireAgentId(options.agentId);
    const packageScopes = requirePackageScopes(options.packageScopes);
    return this.issue({
      commonName: agentId,
      altNames: [
        { type: GENERAL_NAME_TAG.uri, value: agentUri(this.caFleet, agentId) },
        ...packageScopes.map((value) => ({ type: GENERAL_NAME_TAG.dns, value }) as const),
      ],
      publicKeyPem: options.publicKeyPem,
      now: options.now,
      lifetimeSeconds: options.lifetimeSeconds ?? DEFAULT_AGENT_CERT_LIFETIME_SECONDS,
    });
  }

  /**
   * Issues the controller's certificate: CN shoal-controller, SAN URI shoal://<fleet>/controller
   * plus the DNS names and IP addresses agents dial, serverAuth + clientAuth.
   */
  issueControllerCertificate(options: ControllerCertificateOptions): IssuedCertificate {
    if (!Array.isArray(options.dnsNames) || !Array.isArray(options.ipAddresses)) {
      throw new PkiInputError('PKI_INVALID_SUBJECT_ALT_NAME', 'dnsNames and ipAddresses must be arrays');
    }
    const dnsNames = [...new Set(options.dnsNames.map(requireHostName))];
    const ipAddresses = [...new Set(options.ipAddresses.map((address) => ipAddressBytes(address).toString('binary')))];
    if (dnsNames.length + ipAddresses.length === 0) {
      throw new PkiInputError('PKI_INVALID_SUBJECT_ALT_NAME', 'the controller needs at least one DNS name or IP address');
    }
    if (dnsNames.length + ipAddresses.length > MAX_SUBJECT_ALT_NAMES) {
      throw new PkiInputError('PKI_INVALID_SUBJECT_ALT_NAME', `at most ${MAX_SUBJECT_ALT_NAMES} DNS names and IP addresses`);
    }
    return this.issue({
      commonName: CONTROLLER_COMMON_NAME,
      altNames: [
        { type: GENERAL_NAME_TAG.uri, value: controllerUri(this.caFleet) },
        ...dnsNames.map((value) => ({ type: GENERAL_NAME_TAG.dns, value }) as const),
        ...ipAddresses.map((value) => ({ type: GENERAL_NAME_TAG.ip, value }) as const),
      ],
      publicKeyPem: options.publicKeyPem,
      now: options.now,
      lifetimeSeconds: options.lifetimeSeconds ?? DEFAULT_CONTROLLER_CERT_LIFETIME_SECONDS,
    });
  }

  /** Signs the fleet's revocation list (canonical JSON, RSASSA-PSS with SHA-256 by the CA key). */
  signRevocationList(input: RevocationListInput): SignedRevocationList {
    const payload = encodeRevocationPayload(normaliseRevocationList(this.caFleet, input));
    const signature = sign(REVOCATION_SIGNATURE_DIGEST, Buffer.from(payload, 'utf8'), {
      key: this.privateKey,
      ...REVOCATION_SIGNATURE_PADDING,
    });
    return { payload, signature: signature.toString('base64') };
  }

  private issue(profile: LeafProfile): IssuedCertificate {
    const subjectKey = readPublicKeyPem(profile.publicKeyPem, 'the subject public key');
    requireRsaKeyPolicy(subjectKey, MIN_RSA_BITS, 'the subject public key');
    const issuedAt = wholeSecondsOf(profile.now);
    const lifetimeSeconds = requirePositiveInteger(profile.lifetimeSeconds, 'lifetimeSeconds', MAX_CERT_LIFETIME_SECONDS);
    const { notBefore: caNotBefore, notAfter: caNotAfter } = this.forgeCertificate.validity;
    if (issuedAt < caNotBefore.getTime() || issuedAt > caNotAfter.getTime()) {
      const validity = `${caNotBefore.toISOString()} to ${caNotAfter.toISOString()}`;
      throw new CertificateAuthorityError(
        'PKI_CA_EXPIRED',
        `the fleet CA is valid from ${validity}, not at ${new Date(issuedAt).toISOString()}`,
      );
    }
    // Back-dated for clock skew, but never to before the CA itself was valid.
    const notBefore = new Date(Math.max(issuedAt - CLOCK_SKEW_SECONDS * 1000, caNotBefore.getTime()));
    const notAfter = new Date(issuedAt + lifetimeSeconds * 1000);
    if (notAfter > caNotAfter) {
      throw new CertificateAuthorityError(
        'PKI_CA_LIFETIME_EXCEEDED',
        `a certificate valid until ${notAfter.toISOString()} would outlive the fleet CA ` +
          `(${caNotAfter.toISOString()}); rotate the CA`,
      );
    }

    const { serial, forgeSerialNumber } = randomSerialNumber();
    const certificate = forge.pki.createCertificate();
    certificate.serialNumber = forgeSerialNumber;
    certificate.validity.notBefore = notBefore;
    certificate.validity.notAfter = notAfter;
    certificate.publicKey = toForgePublicKey(subjectKey);
    certificate.setSubject([{ name: 'commonName', value: profile.commonName }]);
    certificate.setIssuer(this.issuerName);
    certificate.setExtensions([
      { name: 'basicConstraints', critical: true, cA: false },
      { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames: profile.altNames },
      // keyIdentifier: true would make forge hash the subject's key, not the CA's.
      { name: 'authorityKeyIdentifier', keyIdentifier: forge.util.hexToBytes(this.keyIdentifier) },
    ]);
    certificate.sign(this.forgeKey, forge.md.sha256.create());
    return { certPem: forge.pki.certificateToPem(certificate), serial, notBefore, notAfter };
  }
}
