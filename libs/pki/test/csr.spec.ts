import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import forge from 'node-forge';
import {
  CertificateAuthority,
  CsrError,
  KeyError,
  MAX_CSR_BYTES,
  checkCsr,
  createCsr,
  createFleetCa,
  generateRsaKeyPair,
  type RsaKeyPair,
} from '../src';
import { expectPkiError, opensslWithEcKey } from './support';

const T0 = new Date('2026-03-01T08:00:00.000Z');

let agentKeys: RsaKeyPair;
let agentCsr: string;

beforeAll(() => {
  agentKeys = generateRsaKeyPair();
  agentCsr = createCsr({ ...agentKeys, commonName: 'host-1' });
});

const derOf = (pem: string): Buffer => Buffer.from(forge.pem.decode(pem)[0]?.body ?? '', 'binary');
const csrPem = (der: Uint8Array): string =>
  forge.pem.encode({ type: 'CERTIFICATE REQUEST', body: Buffer.from(der).toString('binary') }, { maxline: 64 });

/** A CSR whose key and attributes are set by hand, signed by `signingKeyPem` (forge). */
function forgeCsr(options: {
  publicKey: forge.pki.rsa.PublicKey;
  signingKeyPem: string;
  subject?: forge.pki.CertificateField[];
  attributes?: object[];
  digest?: forge.md.MessageDigest;
}): string {
  const request = forge.pki.createCertificationRequest();
  request.publicKey = options.publicKey;
  request.setSubject(options.subject ?? [{ name: 'commonName', value: 'x' }]);
  if (options.attributes) request.setAttributes(options.attributes);
  request.sign(forge.pki.privateKeyFromPem(options.signingKeyPem), options.digest ?? forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(request);
}

/** What checking untrusted input may do: return a result or throw a typed CSR/key error. */
function checksOrThrowsTyped(input: string): void {
  try {
    checkCsr(input);
  } catch (error) {
    if (error instanceof CsrError || error instanceof KeyError) return;
    throw error;
  }
}

describe('generateRsaKeyPair', () => {
  test('makes a 2048-bit RSA pair as PKCS#8 and SPKI PEM by default', () => {
    expect(agentKeys.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(agentKeys.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const publicKey = createPublicKey(agentKeys.publicKeyPem);
    expect(publicKey.asymmetricKeyDetails).toEqual({ modulusLength: 2048, publicExponent: 65537n });
    expect(createPublicKey(agentKeys.keyPem).export({ type: 'spki', format: 'pem' })).toBe(agentKeys.publicKeyPem);
  });

  test.each([1024, 2049, 16384, 0, Number.NaN])('refuses %p bits', (bits) => {
    expectPkiError(() => generateRsaKeyPair(bits), 'PKI_INVALID_ARGUMENT');
  });
});

describe('createCsr and checkCsr', () => {
  test('round trip: the CSR yields the agent public key', () => {
    expect(agentCsr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\r?\n/);
    const checked = checkCsr(agentCsr);
    expect(checked.rsaBits).toBe(2048);
    expect(createPublicKey(checked.publicKeyPem).export({ type: 'spki', format: 'der' })).toEqual(
      createPublicKey(agentKeys.publicKeyPem).export({ type: 'spki', format: 'der' }),
    );
    expect(forge.pki.certificationRequestFromPem(agentCsr).signatureOid).toBe(forge.pki.oids['sha256WithRSAEncryption']);
  });

  test('accepts CRLF line ends and surrounding white space', () => {
    expect(checkCsr(`\n${agentCsr.replace(/\r?\n/g, '\r\n')}\n\n`).rsaBits).toBe(2048);
  });

  test('createCsr refuses a public key that is not the private key’s', () => {
    const other = generateRsaKeyPair();
    expectPkiError(() => createCsr({ keyPem: agentKeys.keyPem, publicKeyPem: other.publicKeyPem, commonName: 'x' }), 'PKI_KEY_MISMATCH');
    expectPkiError(() => createCsr({ keyPem: 'nope', publicKeyPem: agentKeys.publicKeyPem, commonName: 'x' }), 'PKI_KEY_MALFORMED');
    expectPkiError(() => createCsr({ ...agentKeys, commonName: '' }), 'PKI_INVALID_ARGUMENT');
  });

  test('names requested in the CSR are ignored: the controller decides them', () => {
    const greedy = forgeCsr({
      publicKey: forge.pki.publicKeyFromPem(agentKeys.publicKeyPem),
      signingKeyPem: agentKeys.keyPem,
      subject: [
        { name: 'commonName', value: 'admin' },
        { name: 'organizationName', value: 'shoal' },
      ],
      attributes: [
        {
          name: 'extensionRequest',
          extensions: [
            { name: 'subjectAltName', altNames: [{ type: 2, value: '*' }, { type: 6, value: 'shoal://prod/controller' }] },
            { name: 'basicConstraints', cA: true },
          ],
        },
      ],
    });
    const ca = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 });
    const authority = CertificateAuthority.load(ca.certPem, ca.keyPem);
    const { publicKeyPem } = checkCsr(greedy);
    const issued = new X509Certificate(
      authority.issueAgentCertificate({ agentId: 'host-7', publicKeyPem, packageScopes: ['game-client'], now: T0 }).certPem,
    );
    expect(issued.subject).toBe('CN=host-7');
    expect(issued.subjectAltName).toBe('URI:shoal://prod/agent/host-7, DNS:game-client');
    expect(issued.ca).toBe(false);
  });
  test('accepts public exponent 3', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 });
    const csr = createCsr({
      keyPem: small.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicKeyPem: small.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      commonName: 'e3',
    });
    expect(checkCsr(csr).rsaBits).toBe(2048);
  });
});

describe('checkCsr refuses', () => {
  test('a CSR whose bytes were tampered with (bad signature)', () => {
    const der = derOf(agentCsr);
    // The subject's CN value "host-1" sits inside the signed info; change one letter of it.
    const at = der.indexOf(Buffer.from('host-1'));
    expect(at).toBeGreaterThan(0);
    const tampered = Buffer.from(der);
    tampered[at] = 'g'.charCodeAt(0);
    expectPkiError(() => checkCsr(csrPem(tampered)), 'PKI_CSR_BAD_SIGNATURE');
  });

  test('a CSR signed by a key other than the one it holds', () => {
    const other = generateRsaKeyPair();
    const forged = forgeCsr({ publicKey: forge.pki.publicKeyFromPem(agentKeys.publicKeyPem), signingKeyPem: other.keyPem });
    expectPkiError(() => checkCsr(forged), 'PKI_CSR_BAD_SIGNATURE');
  });

  test('a flipped bit in the signature', () => {
    const der = derOf(agentCsr);
    der[der.length - 1]! ^= 0x01;
    expectPkiError(() => checkCsr(csrPem(der)), 'PKI_CSR_BAD_SIGNATURE');
  });

  test('a 1024-bit RSA key', () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const keys = {
      keyPem: weak.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicKeyPem: weak.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
    const csr = createCsr({ ...keys, commonName: 'weak' });
    expectPkiError(() => checkCsr(csr), 'PKI_WEAK_KEY');
    expect(checkCsr(csr, { minRsaBits: 1024 }).rsaBits).toBe(1024);
    expectPkiError(() => checkCsr(agentCsr, { minRsaBits: 3072 }), 'PKI_WEAK_KEY');
  });

  test.each([
    ['1', 'PKI_WEAK_KEY'],
    ['2', 'PKI_WEAK_KEY'],
    ['65536', 'PKI_WEAK_KEY'],
    [((1n << 256n) + 1n).toString(), 'PKI_UNSUPPORTED_KEY'],
  ] as const)('public exponent %s', (exponent, code) => {
    const { n } = forge.pki.publicKeyFromPem(agentKeys.publicKeyPem);
    const publicKey = forge.pki.setRsaPublicKey(n, new forge.jsbn.BigInteger(exponent, 10));
    expectPkiError(() => checkCsr(forgeCsr({ publicKey, signingKeyPem: agentKeys.keyPem })), code);
  });

  test('an EC key CSR made by openssl', () => {
    const ecCsr = opensslWithEcKey(['-new']);
    expect(ecCsr).toMatch(/BEGIN CERTIFICATE REQUEST/);
    const error = expectPkiError(() => checkCsr(ecCsr), 'PKI_UNSUPPORTED_KEY');
    expect(error).toBeInstanceOf(KeyError);
    expect(error.message).toMatch(/ecPublicKey|1\.2\.840\.10045/);
  });

  test('a SHA-1 signature', () => {
    const sha1 = forgeCsr({
      publicKey: forge.pki.publicKeyFromPem(agentKeys.publicKeyPem),
      signingKeyPem: agentKeys.keyPem,
      digest: forge.md.sha1.create(),
    });
    expectPkiError(() => checkCsr(sha1), 'PKI_CSR_UNSUPPORTED_ALGORITHM');
  });

  test('PEM blocks that are not a CSR', () => {
    expectPkiError(() => checkCsr(agentKeys.publicKeyPem), 'PKI_CSR_MALFORMED');
    expectPkiError(() => checkCsr(agentCsr + agentCsr), 'PKI_CSR_MALFORMED');
    expectPkiError(() => checkCsr(agentCsr.replace(/BEGIN CERTIFICATE REQUEST/, 'BEGIN CERTIFICATE')), 'PKI_CSR_MALFORMED');
    expectPkiError(() => checkCsr(''), 'PKI_CSR_MALFORMED');
    expectPkiError(() => checkCsr(undefined as unknown as string), 'PKI_CSR_MALFORMED');
    const certificate = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 }).certPem;
    expectPkiError(() => checkCsr(csrPem(derOf(certificate))), 'PKI_CSR_MALFORMED');
  });

  test('DER with trailing bytes or a non-minimal length', () => {
    const der = derOf(agentCsr);
    expectPkiError(() => checkCsr(csrPem(Buffer.concat([der, Buffer.from([0])]))), 'PKI_CSR_MALFORMED');
    // Re-encode the outer length in one more byte than needed: valid BER, not DER.
    const length = der.readUInt16BE(2);
    const longForm = Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), Buffer.from([length >> 8, length & 0xff]), der.subarray(4)]);
    expect(der[1]).toBe(0x82);
    expectPkiError(() => checkCsr(csrPem(longForm)), 'PKI_CSR_MALFORMED');
  });

  test('input larger than 16 KiB, before parsing it', () => {
    expectPkiError(() => checkCsr(agentCsr + ' '.repeat(MAX_CSR_BYTES)), 'PKI_CSR_TOO_LARGE');
    expectPkiError(() => checkCsr('é'.repeat(MAX_CSR_BYTES / 2 + 1)), 'PKI_CSR_TOO_LARGE');
  });
});

describe('checkCsr on hostile input (fast-check)', () => {
  test('arbitrary text', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 2000 }), (text) => checksOrThrowsTyped(text)));
  });

  test('arbitrary bytes in PEM armour', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => checksOrThrowsTyped(csrPem(bytes))));
  });

  test('a real CSR, truncated anywhere, as DER or as PEM text', () => {
    const der = derOf(agentCsr);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: der.length - 1 }), (cut) => {
        expect(() => checkCsr(csrPem(der.subarray(0, cut)))).toThrow(CsrError);
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: agentCsr.length - 30 }), (cut) => {
        expect(() => checkCsr(agentCsr.slice(0, cut))).toThrow(CsrError);
      }),
    );
  });

  test('a real CSR with bytes changed: refused, and only with typed errors', () => {
    const der = derOf(agentCsr);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: der.length - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        (edits) => {
          const mutated = Buffer.from(der);
          for (const [offset, mask] of edits) mutated[offset]! ^= mask;
          let refused = false;
          try {
            checkCsr(csrPem(mutated));
          } catch (error) {
            if (!(error instanceof CsrError || error instanceof KeyError)) throw error;
            refused = true;
          }
          expect(refused).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('oversized input of any content', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MAX_CSR_BYTES + 1, max: 4 * MAX_CSR_BYTES }),
        fc.constantFrom('A', '-', '\n', '\u{1F600}'),
        (bytes, unit) => {
          expectPkiError(() => checkCsr(unit.repeat(Math.ceil(bytes / Buffer.byteLength(unit)))), 'PKI_CSR_TOO_LARGE');
        },
      ),
      { numRuns: 20 },
    );
  });
});
