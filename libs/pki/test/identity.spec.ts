import { X509Certificate, createHash, createPublicKey } from 'node:crypto';
import forge from 'node-forge';
import {
  CertificateAuthority,
  PeerCertificateError,
  certificateAllowsPackage,
  createFleetCa,
  generateRsaKeyPair,
  type FleetCaMaterial,
  type IssuedCertificate,
  type PeerIdentity,
  readPeerIdentity,
  type RsaKeyPair,
} from '../src';
import { parseSubjectAltNames } from '../src/subject-alt-names';
import { expectPkiError } from './support';

const T0 = new Date('2026-03-01T08:00:00.000Z');
const NOW = new Date('2026-03-02T10:30:15.000Z');

let ca: FleetCaMaterial;
let authority: CertificateAuthority;
let agentKeys: RsaKeyPair;
let agent: IssuedCertificate;
let controller: IssuedCertificate;
let stagingAgent: IssuedCertificate;

beforeAll(() => {
  ca = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 });
  authority = CertificateAuthority.load(ca.certPem, ca.keyPem);
  agentKeys = generateRsaKeyPair();
  const { publicKeyPem } = agentKeys;
  agent = authority.issueAgentCertificate({ agentId: 'host-1', publicKeyPem, packageScopes: ['game-client', 'os-image'], now: NOW });
  controller = authority.issueControllerCertificate({ dnsNames: ['controller.prod'], ipAddresses: ['10.0.0.1'], publicKeyPem, now: NOW });
  const staging = createFleetCa({ fleet: 'staging', now: T0, keyBits: 2048 });
  stagingAgent = CertificateAuthority.load(staging.certPem, staging.keyPem).issueAgentCertificate({
    agentId: 'host-1',
    publicKeyPem: agentKeys.publicKeyPem,
    packageScopes: ['*'],
    now: NOW,
  });
});

/** A certificate with whatever SAN entries a hostile or foreign issuer might write (self-signed by forge). */
function certificateWithAltNames(altNames: object[]): string {
  const certificate = forge.pki.createCertificate();
  certificate.serialNumber = '0a0b';
  certificate.validity.notBefore = T0;
  certificate.validity.notAfter = NOW;
  certificate.publicKey = forge.pki.publicKeyFromPem(agentKeys.publicKeyPem);
  certificate.setSubject([{ name: 'commonName', value: 'host-1' }]);
  certificate.setIssuer([{ name: 'commonName', value: 'x' }]);
  if (altNames.length > 0) certificate.setExtensions([{ name: 'subjectAltName', altNames }]);
  certificate.sign(forge.pki.privateKeyFromPem(agentKeys.keyPem), forge.md.sha256.create());
  return forge.pki.certificateToPem(certificate);
}

describe('readPeerIdentity', () => {
  test('reads an agent certificate', () => {
    const identity = readPeerIdentity(agent.certPem, { fleet: 'prod' });
    expect(identity).toEqual({
      role: 'agent',
      agentId: 'host-1',
      fleet: 'prod',
      serial: agent.serial,
      packageScopes: ['game-client', 'os-image'],
      notBefore: agent.notBefore,
      notAfter: agent.notAfter,
      publicKeySha256: createHash('sha256')
        .update(createPublicKey(agentKeys.publicKeyPem).export({ type: 'spki', format: 'der' }))
        .digest('hex'),
    });
    expect(identity.publicKeySha256).toMatch(/^[0-9a-f]{64}$/);
  });

  test('reads the same identity from PEM, DER and an X509Certificate', () => {
    const x509 = new X509Certificate(agent.certPem);
    const fromPem = readPeerIdentity(agent.certPem, { fleet: 'prod' });
    expect(readPeerIdentity(x509.raw, { fleet: 'prod' })).toEqual(fromPem);
    expect(readPeerIdentity(x509, { fleet: 'prod' })).toEqual(fromPem);
  });

  test('reads the controller certificate', () => {
    const identity = readPeerIdentity(controller.certPem, { fleet: 'prod' });
    expect(identity).toMatchObject({ role: 'controller', fleet: 'prod', serial: controller.serial, packageScopes: [] });
    expect(identity.agentId).toBeUndefined();
  });

  test('refuses a certificate of another fleet', () => {
    const error = expectPkiError(() => readPeerIdentity(stagingAgent.certPem, { fleet: 'prod' }), 'PKI_NOT_FLEET_CERT');
    expect(error).toBeInstanceOf(PeerCertificateError);
    expect(readPeerIdentity(stagingAgent.certPem, { fleet: 'staging' }).agentId).toBe('host-1');
  });

  test('refuses the fleet CA certificate itself: it names no peer', () => {
    expectPkiError(() => readPeerIdentity(ca.certPem, { fleet: 'prod' }), 'PKI_NOT_FLEET_CERT');
  });

  test.each([
    ['no subjectAltName', []],
    ['only DNS names', [{ type: 2, value: 'game-client' }]],
    ['another URI scheme', [{ type: 6, value: 'spiffe://prod/agent/host-1' }]],
    ['two shoal URIs', [{ type: 6, value: 'shoal://prod/agent/host-1' }, { type: 6, value: 'shoal://prod/controller' }]],
    ['an unknown role', [{ type: 6, value: 'shoal://prod/admin' }]],
    ['an agent path with extra segments', [{ type: 6, value: 'shoal://prod/agent/host-1/x' }]],
    ['an invalid agent id', [{ type: 6, value: 'shoal://prod/agent/Host_1' }]],
    ['a fleet prefix', [{ type: 6, value: 'shoal://prod2/agent/host-1' }]],
    ['a comma smuggled into the URI', [{ type: 6, value: 'shoal://prod/agent/host-1, DNS:*' }]],
    ['a URI spelled as a DNS name', [{ type: 2, value: 'shoal://prod/agent/host-1' }]],
  ])('refuses a certificate with %s', (_, altNames) => {
    expectPkiError(() => readPeerIdentity(certificateWithAltNames(altNames), { fleet: 'prod' }), 'PKI_NOT_FLEET_CERT');
  });

  test('a quoted SAN value cannot inject scopes', () => {
    const pem = certificateWithAltNames([{ type: 6, value: 'shoal://prod/agent/host-1' }, { type: 2, value: 'game-client, DNS:*' }]);
    const identity = readPeerIdentity(pem, { fleet: 'prod' });
    expect(identity.packageScopes).toEqual(['game-client, DNS:*']);
    expect(certificateAllowsPackage(identity, 'anything')).toBe(false);
  });

  test('refuses input that is no certificate', () => {
    for (const input of ['', 'garbage', agentKeys.publicKeyPem, agent.certPem.slice(0, 200), Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00])]) {
      expectPkiError(() => readPeerIdentity(input, { fleet: 'prod' }), 'PKI_CERT_MALFORMED');
    }
    expectPkiError(() => readPeerIdentity(agent.certPem, { fleet: 'bad fleet' }), 'PKI_INVALID_FLEET');
  });
});

describe('certificateAllowsPackage', () => {
  const identity = (packageScopes: string[]): PeerIdentity => ({ ...readPeerIdentity(agent.certPem, { fleet: 'prod' }), packageScopes });

  test('an agent may swarm exactly its scopes', () => {
    expect(certificateAllowsPackage(identity(['game-client']), 'game-client')).toBe(true);
    expect(certificateAllowsPackage(identity(['game-client']), 'game')).toBe(false);
    expect(certificateAllowsPackage(identity(['game-client']), 'game-client-beta')).toBe(false);
    expect(certificateAllowsPackage(identity(['game']), 'game-client')).toBe(false);
  });

  test("scope '*' allows every package", () => {
    expect(certificateAllowsPackage(identity(['*']), 'anything')).toBe(true);
  });

  test('the controller swarms nothing', () => {
    expect(certificateAllowsPackage(readPeerIdentity(controller.certPem, { fleet: 'prod' }), 'game-client')).toBe(false);
  });
});

describe('parseSubjectAltNames (Node subjectAltName text)', () => {
  test.each([
    ['', []],
    ['DNS:a', [{ type: 'DNS', value: 'a' }]],
    [
      'URI:shoal://f/agent/x, DNS:*, IP Address:127.0.0.1',
      [
        { type: 'URI', value: 'shoal://f/agent/x' },
        { type: 'DNS', value: '*' },
        { type: 'IP Address', value: '127.0.0.1' },
      ],
    ],
    [
      'DNS:"a\\u002c DNS:b", URI:"x\\"y"',
      [
        { type: 'DNS', value: 'a, DNS:b' },
        { type: 'URI', value: 'x"y' },
      ],
    ],
    [
      // What Node prints for a certificate made by openssl with every kind of name.
      'URI:shoal://prod/agent/a, email:a@b.c, ' +
        'DirName:"CN=My Name\\u002cO=My\\\\\\u002c Organization\\u002cC=UK", othername:<unsupported>, Registered ID:1.2.3.4',
      [
        { type: 'URI', value: 'shoal://prod/agent/a' },
        { type: 'email', value: 'a@b.c' },
        { type: 'DirName', value: 'CN=My Name,O=My\\, Organization,C=UK' },
        { type: 'othername', value: '<unsupported>' },
        { type: 'Registered ID', value: '1.2.3.4' },
      ],
    ],
  ])('%j', (text, expected) => {
    expect(parseSubjectAltNames(text)).toEqual(expected);
  });

  test.each(['no colon', 'DNS:"unterminated', 'DNS:"a"b', 'DNS:a,DNS:b', 'DNS:"bad \\x escape"'])('refuses %j', (text) => {
    expect(parseSubjectAltNames(text)).toBeUndefined();
  });
});
