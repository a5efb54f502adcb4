import { type KeyObject, X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import {
  type AgentCertificateOptions,
  CertificateAuthority,
  type ControllerCertificateOptions,
  CLOCK_SKEW_SECONDS,
  DEFAULT_AGENT_CERT_LIFETIME_SECONDS,
  DEFAULT_CONTROLLER_CERT_LIFETIME_SECONDS,
  MAX_SUBJECT_ALT_NAMES,
  createFleetCa,
  generateRsaKeyPair,
  type RsaKeyPair,
} from '../src';
import { ipAddressBytes } from '../src/names';
import { SECOND, authorityKeyIdentifierHex, expectPkiError, extensionsOf } from './support';

const T0 = new Date('2026-03-01T08:00:00.000Z');
const NOW = new Date('2026-03-02T10:30:15.999Z');
const NOW_SECONDS = new Date('2026-03-02T10:30:15.000Z').getTime();
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
// No subjectKeyIdentifier on leaves: the CA/Browser Forum baseline marks it NOT RECOMMENDED there.
const LEAF_EXTENSIONS = ['authorityKeyIdentifier', 'basicConstraints', 'extKeyUsage', 'keyUsage', 'subjectAltName'];

let authority: CertificateAuthority;
let caX509: X509Certificate;
let agentKeys: RsaKeyPair;

beforeAll(() => {
  const ca = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 });
  authority = CertificateAuthority.load(ca.certPem, ca.keyPem);
  caX509 = new X509Certificate(ca.certPem);
  agentKeys = generateRsaKeyPair();
});

const issueAgent = (overrides: Partial<AgentCertificateOptions> = {}) =>
  authority.issueAgentCertificate({
    agentId: 'host-1',
    publicKeyPem: agentKeys.publicKeyPem,
    packageScopes: ['game-client'],
    now: NOW,
    ...overrides,
  });

const issueController = (overrides: Partial<ControllerCertificateOptions> = {}) =>
  authority.issueControllerCertificate({
    dnsNames: ['controller.example.com'],
    ipAddresses: ['10.0.0.1'],
    publicKeyPem: agentKeys.publicKeyPem,
    now: NOW,
    ...overrides,
  });

describe('agent certificate', () => {
  test('verifies against the CA and is issued by it', () => {
    const certificate = new X509Certificate(issueAgent().certPem);
    expect(certificate.verify(caX509.publicKey)).toBe(true);
    expect(certificate.checkIssued(caX509)).toBe(true);
    expect(certificate.ca).toBe(false);
  });

  test('has exactly the agent profile', () => {
    const issued = issueAgent({ packageScopes: ['game-client', 'os.base-image', '*'] });
    const x509 = new X509Certificate(issued.certPem);
    expect(x509.subject).toBe('CN=host-1');
    expect(x509.issuer).toBe(caX509.subject);
    expect(x509.subjectAltName).toBe('URI:shoal://prod/agent/host-1, DNS:game-client, DNS:os.base-image, DNS:*');
    expect(x509.keyUsage).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });
    expect(spki(x509.publicKey)).toEqual(spki(createPublicKey(agentKeys.publicKeyPem)));

    const certificate = forge.pki.certificateFromPem(issued.certPem);
    expect(certificate.version).toBe(2);
    expect(certificate.signatureOid).toBe(forge.pki.oids['sha256WithRSAEncryption']);
    const extensions = extensionsOf(issued.certPem);
    expect([...extensions.keys()].sort()).toEqual(LEAF_EXTENSIONS);
    expect(extensions.get('basicConstraints')).toMatchObject({ critical: true, cA: false });
    expect(extensions.get('keyUsage')).toMatchObject({
      critical: true,
      digitalSignature: true,
      keyEncipherment: true,
      nonRepudiation: false,
      dataEncipherment: false,
      keyAgreement: false,
      keyCertSign: false,
      cRLSign: false,
    });
    expect(extensions.get('extKeyUsage')).toMatchObject({ critical: false, serverAuth: true, clientAuth: true });
    expect(extensions.get('subjectAltName')).toMatchObject({ critical: false });
    expect(authorityKeyIdentifierHex(extensions.get('authorityKeyIdentifier') ?? {})).toBe(
      extensionsOf(caX509.toString()).get('subjectKeyIdentifier')?.['subjectKeyIdentifier'],
    );
  });

  test('is valid from now minus the clock skew for the default lifetime of one day, in whole seconds', () => {
    const issued = issueAgent();
    expect(issued.notBefore).toEqual(new Date(NOW_SECONDS - CLOCK_SKEW_SECONDS * SECOND));
    expect(issued.notAfter).toEqual(new Date(NOW_SECONDS + DEFAULT_AGENT_CERT_LIFETIME_SECONDS * SECOND));
    expect(DEFAULT_AGENT_CERT_LIFETIME_SECONDS).toBe(86_400);
    const x509 = new X509Certificate(issued.certPem);
    expect(new Date(x509.validFrom)).toEqual(issued.notBefore);
    expect(new Date(x509.validTo)).toEqual(issued.notAfter);
    expect(issueAgent({ lifetimeSeconds: 600 }).notAfter).toEqual(new Date(NOW_SECONDS + 600 * SECOND));
  });

  test('serials are random, positive, exactly 128 bits, and in the format Node prints', () => {
    const serials = Array.from({ length: 40 }, () => issueAgent());
    for (const { serial, certPem } of serials) {
      expect(serial).toMatch(/^[89a-f][0-9a-f]{31}$/);
      expect(BigInt(`0x${serial}`) >> 127n).toBe(1n);
      expect(new X509Certificate(certPem).serialNumber.toLowerCase()).toBe(serial);
    }
    expect(new Set(serials.map((issued) => issued.serial)).size).toBe(serials.length);
    // 127 random bits: across 40 serials every non-fixed bit position should take both values.
    const ones = new Array<number>(128).fill(0);
    for (const { serial } of serials) {
      const value = BigInt(`0x${serial}`);
      for (let bit = 0; bit < 127; bit++) ones[bit]! += Number((value >> BigInt(bit)) & 1n);
    }
    expect(ones.slice(0, 127).every((count) => count > 0 && count < serials.length)).toBe(true);
  });

  test('repeated package scopes are written once', () => {
    const { certPem } = issueAgent({ packageScopes: ['a', 'b', 'a'] });
    expect(new X509Certificate(certPem).subjectAltName).toBe('URI:shoal://prod/agent/host-1, DNS:a, DNS:b');
  });

  test.each(['', 'Host-1', '-host', 'host_1', 'host.1', 'a'.repeat(64), 'host/1', ' host'])('refuses agent id %j', (agentId) => {
    expectPkiError(() => issueAgent({ agentId }), 'PKI_INVALID_AGENT_ID');
  });

  test('accepts the longest agent id', () => {
    expect(new X509Certificate(issueAgent({ agentId: `a${'-'.repeat(62)}` }).certPem).subject).toBe(`CN=a${'-'.repeat(62)}`);
  });

  test.each([[[]], [['Game']], [['game client']], [['-game']], [['.game']], [['**']], [['*.x']], [['a'.repeat(254)]], [[7]]])(
    'refuses package scopes %j',
    (packageScopes) => {
      expectPkiError(() => issueAgent({ packageScopes: packageScopes as string[] }), 'PKI_INVALID_PACKAGE_SCOPE');
    },
  );

  test('refuses more package scopes than a handshake should carry', () => {
    const scopes = Array.from({ length: MAX_SUBJECT_ALT_NAMES + 1 }, (_, index) => `p${index}`);
    expectPkiError(() => issueAgent({ packageScopes: scopes }), 'PKI_INVALID_PACKAGE_SCOPE');
  });

  test.each([[0], [-1], [1.5], [Number.NaN]])('refuses lifetime %p', (lifetimeSeconds) => {
    expectPkiError(() => issueAgent({ lifetimeSeconds }), 'PKI_INVALID_ARGUMENT');
  });

  test('refuses a missing or invalid time', () => {
    expectPkiError(() => issueAgent({ now: new Date('nonsense') }), 'PKI_INVALID_ARGUMENT');
    expectPkiError(() => issueAgent({ now: '2026-03-02' as unknown as Date }), 'PKI_INVALID_ARGUMENT');
  });

  test('refuses subject keys that are not acceptable RSA public keys', () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expectPkiError(() => issueAgent({ publicKeyPem: weak }), 'PKI_WEAK_KEY');
    expectPkiError(() => issueAgent({ publicKeyPem: ec }), 'PKI_UNSUPPORTED_KEY');
    // A private key is never accepted where a public key belongs.
    expectPkiError(() => issueAgent({ publicKeyPem: agentKeys.keyPem }), 'PKI_KEY_MALFORMED');
    expectPkiError(() => issueAgent({ publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }), 'PKI_KEY_MALFORMED');
  });
});

describe('controller certificate', () => {
  test('has exactly the controller profile, with DNS names and IPv4 and IPv6 addresses', () => {
    const issued = issueController({
      dnsNames: ['Controller.Example.com', 'localhost'],
      ipAddresses: ['127.0.0.1', '::1', '2001:db8::ffff:192.0.2.1'],
    });
    const x509 = new X509Certificate(issued.certPem);
    expect(x509.checkIssued(caX509) && x509.verify(caX509.publicKey)).toBe(true);
    expect(x509.subject).toBe('CN=shoal-controller');
    expect(x509.subjectAltName).toBe(
      'URI:shoal://prod/controller, DNS:controller.example.com, DNS:localhost, ' +
        'IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:2001:DB8:0:0:0:FFFF:C000:201',
    );
    expect(x509.checkHost('controller.example.com')).toBe('controller.example.com');
    expect(x509.checkIP('::1')).toBe('::1');
    expect(x509.checkIP('2001:db8::ffff:c000:201')).toBe('2001:db8::ffff:c000:201');
    expect(x509.keyUsage).toEqual([SERVER_AUTH, CLIENT_AUTH]);
    expect([...extensionsOf(issued.certPem).keys()].sort()).toEqual(LEAF_EXTENSIONS);
    expect(issued.notAfter).toEqual(new Date(NOW_SECONDS + DEFAULT_CONTROLLER_CERT_LIFETIME_SECONDS * SECOND));
    expect(DEFAULT_CONTROLLER_CERT_LIFETIME_SECONDS).toBe(90 * 86_400);
  });

  test('accepts only IP addresses or only DNS names', () => {
    const altNames = (overrides: Partial<ControllerCertificateOptions>) => new X509Certificate(issueController(overrides).certPem).subjectAltName;
    expect(altNames({ dnsNames: [] })).toBe('URI:shoal://prod/controller, IP Address:10.0.0.1');
    expect(altNames({ ipAddresses: [] })).toBe('URI:shoal://prod/controller, DNS:controller.example.com');
  });

  test('refuses bad names and addresses', () => {
    expectPkiError(() => issueController({ dnsNames: [], ipAddresses: [] }), 'PKI_INVALID_SUBJECT_ALT_NAME');
    const badNames = ['', 'under_score.example', '-x.example', 'x..example', 'x.example.', `${'a'.repeat(64)}.example`, '*.example.com'];
    for (const dnsName of badNames) {
      expectPkiError(() => issueController({ dnsNames: [dnsName] }), 'PKI_INVALID_SUBJECT_ALT_NAME');
    }
    for (const address of ['', '256.0.0.1', '1.2.3', '01.2.3.4', 'fe80::1%eth0', '1:2:3:4:5:6:7:8:9', 'localhost']) {
      expectPkiError(() => issueController({ ipAddresses: [address] }), 'PKI_INVALID_SUBJECT_ALT_NAME');
    }
  });
});

describe('ipAddressBytes', () => {
  test.each([
    ['0.0.0.0', '00000000'],
    ['192.168.1.255', 'c0a801ff'],
    ['::', '0'.repeat(32)],
    ['::1', `${'0'.repeat(31)}1`],
    ['1::', `0001${'0'.repeat(28)}`],
    ['2001:db8::1:0:0:1', '20010db8000000000001000000000001'],
    ['fe80:0:0:0:0:0:0:abcd', 'fe80000000000000000000000000abcd'],
    ['::ffff:10.1.2.3', '00000000000000000000ffff0a010203'],
    ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
    ['1:2:3:4:5:6:1.2.3.4', '00010002000300040005000601020304'],
  ])('%s', (address, hex) => {
    expect(ipAddressBytes(address).toString('hex')).toBe(hex);
  });
});
