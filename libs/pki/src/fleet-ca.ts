import forge from 'node-forge';
import { commonNameSubject } from './distinguished-name';
import { generateRsaKeyObjects, privateKeyPem, toForgePrivateKey, toForgePublicKey } from './keys';
import { GENERAL_NAME_TAG, caUri, requireFleet } from './names';
import { randomSerialNumber } from './serial';
import { CLOCK_SKEW_SECONDS, requirePositiveInteger, wholeSecondsOf } from './validity';

export const DEFAULT_CA_VALIDITY_DAYS = 3650;
export const DEFAULT_CA_KEY_BITS = 3072;
const MAX_CA_VALIDITY_DAYS = 100 * 366;

export interface FleetCaOptions {
  /** The fleet name, a DNS label; it is written into the CA as the URI shoal://<fleet>/ca. */
  fleet: string;
  /** Subject CN; defaults to "Shoal fleet <fleet> CA". */
  commonName?: string;
  now: Date;
  validityDays?: number;
  keyBits?: number;
}

/** A CA certificate and its PKCS#8 private key, both PEM. Store the key with mode 0600. */
export interface FleetCaMaterial {
  certPem: string;
  keyPem: string;
}

/**
 * Creates the self-signed root of a fleet: RSA key (native generation), basicConstraints
 * CA:TRUE pathLen 0 (it issues peer certificates only, never intermediates), keyUsage
 * keyCertSign + cRLSign, a subjectKeyIdentifier for issued certificates to point at, and a random
 * serial. Validity starts CLOCK_SKEW_SECONDS before `now`.
 */
export function createFleetCa(options: FleetCaOptions): FleetCaMaterial {
  const fleet = requireFleet(options.fleet);
  const subject = commonNameSubject(options.commonName ?? `Shoal fleet ${fleet} CA`);
  const issuedAt = wholeSecondsOf(options.now);
  const validityDays = requirePositiveInteger(
    options.validityDays ?? DEFAULT_CA_VALIDITY_DAYS,
    'validityDays',
    MAX_CA_VALIDITY_DAYS,
  );
  const { privateKey, publicKey } = generateRsaKeyObjects(options.keyBits ?? DEFAULT_CA_KEY_BITS, 'keyBits');
  const certificate = forge.pki.createCertificate();
  certificate.serialNumber = randomSerialNumber().forgeSerialNumber;
  certificate.validity.notBefore = new Date(issuedAt - CLOCK_SKEW_SECONDS * 1000);
  certificate.validity.notAfter = new Date(issuedAt + validityDays * 86_400_000);
  certificate.publicKey = toForgePublicKey(publicKey);
  certificate.setSubject(subject);
  certificate.setIssuer(subject);
  certificate.setExtensions([
    { name: 'basicConstraints', critical: true, cA: true, pathLenConstraint: 0 },
    { name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true },
    { name: 'subjectKeyIdentifier' },
    { name: 'subjectAltName', altNames: [{ type: GENERAL_NAME_TAG.uri, value: caUri(fleet) }] },
  ]);
  certificate.sign(toForgePrivateKey(privateKey), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(certificate), keyPem: privateKeyPem(privateKey) };
}
