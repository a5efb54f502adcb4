import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import forge from 'node-forge';
import {
  CertificateAuthority,
  CLOCK_SKEW_SECONDS,
  createFleetCa,
  type FleetCaMaterial,
  generateRsaKeyPair,
  type RsaKeyPair,
} from '../src';
import { requireFleet } from '../src/names';
import { DAY, SECOND, authorityKeyIdentifierHex, expectPkiError, extensionsOf, opensslWithEcKey } from './support';

const T0 = new Date('2026-03-01T08:00:00.750Z');
const T0_SECONDS = new Date('2026-03-01T08:00:00.000Z');

let defaultCa: FleetCaMaterial;
let smallCa: FleetCaMaterial;
let otherCa: FleetCaMaterial;
let leafKeys: RsaKeyPair;

beforeAll(() => {
  defaultCa = createFleetCa({ fleet: 'prod', now: T0 });
  smallCa = createFleetCa({ fleet: 'lab', commonName: 'Flotte Zürich: labo_1', now: T0, validityDays: 30, keyBits: 2048 });
  otherCa = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 });
  leafKeys = generateRsaKeyPair();
});

/** A self-signed RSA certificate built with forge, for CAs that createFleetCa would never make. */
function forgeSelfSigned(extensions: object[]): { certPem: string; keyPem: string } {
  const keys = generateRsaKeyPair();
  const certificate = forge.pki.createCertificate();
  certificate.serialNumber = '01';
  certificate.validity.notBefore = T0;
  certificate.validity.notAfter = new Date(T0.getTime() + DAY);
  certificate.publicKey = forge.pki.publicKeyFromPem(keys.publicKeyPem);
  certificate.setSubject([{ name: 'commonName', value: 'x' }]);
  certificate.setIssuer([{ name: 'commonName', value: 'x' }]);
  certificate.setExtensions(extensions);
  certificate.sign(forge.pki.privateKeyFromPem(keys.keyPem), forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(certificate), keyPem: keys.keyPem };
}

describe('createFleetCa', () => {
  test('makes a self-signed 3072-bit RSA root with the fleet CA profile', () => {
    const x509 = new X509Certificate(defaultCa.certPem);
    expect(x509.ca).toBe(true);
    expect(x509.checkIssued(x509)).toBe(true);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.publicKey.asymmetricKeyType).toBe('rsa');
    expect(x509.publicKey.asymmetricKeyDetails).toMatchObject({ modulusLength: 3072, publicExponent: 65537n });
    expect(x509.subject).toBe('CN=Shoal fleet prod CA');
    expect(x509.issuer).toBe(x509.subject);
    expect(x509.subjectAltName).toBe('URI:shoal://prod/ca');
    expect(new Date(x509.validFrom)).toEqual(new Date(T0_SECONDS.getTime() - CLOCK_SKEW_SECONDS * SECOND));
    expect(new Date(x509.validTo)).toEqual(new Date(T0_SECONDS.getTime() + 3650 * DAY));
    expect(x509.serialNumber).toMatch(/^[89A-F][0-9A-F]{31}$/);

    const certificate = forge.pki.certificateFromPem(defaultCa.certPem);
    expect(certificate.signatureOid).toBe(forge.pki.oids['sha256WithRSAEncryption']);
    const extensions = extensionsOf(defaultCa.certPem);
    expect([...extensions.keys()].sort()).toEqual(['basicConstraints', 'keyUsage', 'subjectAltName', 'subjectKeyIdentifier']);
    expect(extensions.get('basicConstraints')).toMatchObject({ critical: true, cA: true, pathLenConstraint: 0 });
    expect(extensions.get('keyUsage')).toMatchObject({
      critical: true,
      keyCertSign: true,
      cRLSign: true,
      digitalSignature: false,
      keyEncipherment: false,
      nonRepudiation: false,
      dataEncipherment: false,
      keyAgreement: false,
    });
    expect(extensions.get('subjectKeyIdentifier')?.['subjectKeyIdentifier']).toBe(certificate.generateSubjectKeyIdentifier().toHex());
  });

  test('returns the private key as unencrypted PKCS#8 PEM', () => {
    expect(defaultCa.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(new X509Certificate(defaultCa.certPem).checkPrivateKey(createPrivateKey(defaultCa.keyPem))).toBe(true);
  });

  test('keeps a non-ASCII common name intact (UTF8String) and still issues chains that verify', () => {
    const x509 = new X509Certificate(smallCa.certPem);
    expect(x509.subject).toBe('CN=Flotte Zürich: labo_1');
    const authority = CertificateAuthority.load(smallCa.certPem, smallCa.keyPem);
    const leaf = new X509Certificate(
      authority.issueAgentCertificate({ agentId: 'a1', publicKeyPem: leafKeys.publicKeyPem, packageScopes: ['*'], now: T0 }).certPem,
    );
    expect(leaf.issuer).toBe('CN=Flotte Zürich: labo_1');
    expect(leaf.checkIssued(x509)).toBe(true);
  });

  test.each(['', 'Prod', '-prod', 'prod-', 'a'.repeat(64), 'a_b', 'a.b', 'prød', ' prod'])('refuses fleet name %j', (fleet) => {
    expectPkiError(() => createFleetCa({ fleet, now: T0, keyBits: 2048 }), 'PKI_INVALID_FLEET');
  });

  test.each(['a', '0', 'a'.repeat(63), 'prod-eu-1', 'x--y'])('accepts fleet name %j', (fleet) => {
    expect(requireFleet(fleet)).toBe(fleet);
  });

  test.each([
    [{ validityDays: 0 }],
    [{ validityDays: 1.5 }],
    [{ validityDays: -1 }],
    [{ keyBits: 1024 }],
    [{ keyBits: 2049 }],
    [{ keyBits: 16384 }],
    [{ now: new Date(Number.NaN) }],
    [{ commonName: '' }],
    [{ commonName: 'x'.repeat(65) }],
    [{ commonName: 'line\nbreak' }],
  ])('refuses %j', (override) => {
    expectPkiError(() => createFleetCa({ fleet: 'prod', now: T0, ...override }), 'PKI_INVALID_ARGUMENT');
  });
});

describe('CertificateAuthority.load', () => {
  test('exposes fleet, certificate and SHA-256 fingerprint', () => {
    const authority = CertificateAuthority.load(defaultCa.certPem, defaultCa.keyPem);
    const x509 = new X509Certificate(defaultCa.certPem);
    expect(authority.fleet).toBe('prod');
    expect(new X509Certificate(authority.certPem).raw.equals(x509.raw)).toBe(true);
    expect(authority.certificateFingerprintSha256).toBe(createHash('sha256').update(x509.raw).digest('hex'));
    expect(authority.certificateFingerprintSha256).toBe(x509.fingerprint256.replaceAll(':', '').toLowerCase());
  });

  test('issued certificates point at the CA key identifier', () => {
    const authority = CertificateAuthority.load(defaultCa.certPem, defaultCa.keyPem);
    const leaf = authority.issueAgentCertificate({ agentId: 'a1', publicKeyPem: leafKeys.publicKeyPem, packageScopes: ['*'], now: T0 });
    const caKeyIdentifier = extensionsOf(defaultCa.certPem).get('subjectKeyIdentifier')?.['subjectKeyIdentifier'];
    const authorityKeyIdentifier = extensionsOf(leaf.certPem).get('authorityKeyIdentifier');
    expect(authorityKeyIdentifier).toBeDefined();
    expect(authorityKeyIdentifierHex(authorityKeyIdentifier ?? {})).toBe(caKeyIdentifier);
  });

  test('refuses a key that belongs to another CA', () => {
    expectPkiError(() => CertificateAuthority.load(defaultCa.certPem, otherCa.keyPem), 'PKI_CA_KEY_MISMATCH');
  });

  test('refuses unreadable certificates and keys', () => {
    expectPkiError(() => CertificateAuthority.load('not a certificate', defaultCa.keyPem), 'PKI_CA_MALFORMED');
    expectPkiError(() => CertificateAuthority.load(defaultCa.certPem.slice(0, 300), defaultCa.keyPem), 'PKI_CA_MALFORMED');
    expectPkiError(() => CertificateAuthority.load(defaultCa.certPem, 'not a key'), 'PKI_KEY_MALFORMED');
    expectPkiError(() => CertificateAuthority.load(defaultCa.certPem, leafKeys.publicKeyPem), 'PKI_KEY_MALFORMED');
  });

  test('refuses a leaf certificate, even with its own key', () => {
    const authority = CertificateAuthority.load(smallCa.certPem, smallCa.keyPem);
    const leaf = authority.issueAgentCertificate({ agentId: 'a1', publicKeyPem: leafKeys.publicKeyPem, packageScopes: ['*'], now: T0 });
    expectPkiError(() => CertificateAuthority.load(leaf.certPem, leafKeys.keyPem), 'PKI_CA_NOT_CA');
  });

  test('refuses a CA certificate without the shoal://<fleet>/ca name', () => {
    const plainCa = forgeSelfSigned([{ name: 'basicConstraints', critical: true, cA: true }]);
    expectPkiError(() => CertificateAuthority.load(plainCa.certPem, plainCa.keyPem), 'PKI_CA_NOT_CA');
  });

  test('refuses a CA whose shoal:// URI names no valid fleet', () => {
    const badFleet = forgeSelfSigned([
      { name: 'basicConstraints', critical: true, cA: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: 'shoal://Prod/ca' }] },
    ]);
    expectPkiError(() => CertificateAuthority.load(badFleet.certPem, badFleet.keyPem), 'PKI_CA_NOT_CA');
  });

  test('refuses a CA whose keyUsage does not allow certificate signing', () => {
    const signingOnly = forgeSelfSigned([
      { name: 'basicConstraints', critical: true, cA: true },
      { name: 'keyUsage', critical: true, digitalSignature: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: 'shoal://prod/ca' }] },
    ]);
    expectPkiError(() => CertificateAuthority.load(signingOnly.certPem, signingOnly.keyPem), 'PKI_CA_NOT_CA');
  });

  test('accepts an equivalent self-signed root made elsewhere', () => {
    const external = forgeSelfSigned([
      { name: 'basicConstraints', critical: true, cA: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: 'shoal://edge/ca' }] },
    ]);
    const authority = CertificateAuthority.load(external.certPem, external.keyPem);
    expect(authority.fleet).toBe('edge');
    // No subjectKeyIdentifier: the authorityKeyIdentifier is derived by RFC 5280 method 1 and still chains.
    const leaf = authority.issueAgentCertificate({ agentId: 'a1', publicKeyPem: leafKeys.publicKeyPem, packageScopes: ['*'], now: T0 });
    expect(new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(external.certPem))).toBe(true);
  });

  test('refuses an EC CA (openssl)', () => {
    const ecCa = opensslWithEcKey(['-x509', '-days', '1', '-addext', 'subjectAltName=URI:shoal://prod/ca']);
    expectPkiError(() => CertificateAuthority.load(ecCa, defaultCa.keyPem), 'PKI_UNSUPPORTED_KEY');
  });
});

describe('issuing within the CA validity', () => {
  let authority: CertificateAuthority;
  const caNotBefore = T0_SECONDS.getTime() - CLOCK_SKEW_SECONDS * SECOND;
  const caNotAfter = T0_SECONDS.getTime() + 30 * DAY;
  const issue = (now: Date, lifetimeSeconds?: number) =>
    authority.issueAgentCertificate({ agentId: 'a1', publicKeyPem: leafKeys.publicKeyPem, packageScopes: ['*'], now, lifetimeSeconds });

  beforeAll(() => {
    authority = CertificateAuthority.load(smallCa.certPem, smallCa.keyPem);
  });

  test('refuses to issue before the CA is valid or after it expired', () => {
    expectPkiError(() => issue(new Date(caNotBefore - SECOND)), 'PKI_CA_EXPIRED');
    expectPkiError(() => issue(new Date(caNotAfter + SECOND), 1), 'PKI_CA_EXPIRED');
  });

  test('refuses a certificate that would outlive the CA', () => {
    expectPkiError(() => issue(new Date(caNotAfter - 3600 * SECOND)), 'PKI_CA_LIFETIME_EXCEEDED');
    expect(issue(new Date(caNotAfter - 3600 * SECOND), 3600).notAfter).toEqual(new Date(caNotAfter));
  });

  test('back-dates for clock skew, but never to before the CA', () => {
    expect(issue(new Date(caNotBefore + 60 * SECOND)).notBefore).toEqual(new Date(caNotBefore));
    const anHourLater = caNotBefore + 3600 * SECOND;
    expect(issue(new Date(anHourLater)).notBefore).toEqual(new Date(anHourLater - CLOCK_SKEW_SECONDS * SECOND));
  });
});
