import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  bitAt,
  commonPrefixLength,
  compareDistance,
  infoHashTarget,
  NODE_ID_BITS,
  nodeIdFromHex,
  nodeIdFromPublicKeyDer,
  randomIdWithPrefix,
  xorDistance,
} from '../src';
import { expectDhtError, randomSource } from './support';

const id = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b));

describe('node ids from certificates', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-dht-id-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A self-signed certificate for `key` made by openssl, as the adapter would read it. */
  function certificate(keyPem: string, name: string): X509Certificate {
    const keyFile = join(dir, `${name}.key`);
    writeFileSync(keyFile, keyPem, { mode: 0o600 });
    const pem = execFileSync('openssl', ['req', '-x509', '-key', keyFile, '-subj', `/CN=${name}`, '-days', '1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return new X509Certificate(pem);
  }

  test("the id is SHA-256 of the certificate's SubjectPublicKeyInfo; a renewed certificate for the same key keeps it", () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const first = certificate(keyPem, 'agent-1');
    const renewed = certificate(keyPem, 'agent-1-renewed');
    const spki = first.publicKey.export({ type: 'spki', format: 'der' });
    const id = nodeIdFromPublicKeyDer(spki);
    expect(id).toHaveLength(32);
    expect(id).toEqual(createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest());
    expect(nodeIdFromPublicKeyDer(renewed.publicKey.export({ type: 'spki', format: 'der' }))).toEqual(id);
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    expect(nodeIdFromPublicKeyDer(certificate(other, 'agent-2').publicKey.export({ type: 'spki', format: 'der' }))).not.toEqual(id);
  });

  test('RSA keys (what the fleet CA issues today) work the same way', () => {
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    expect(nodeIdFromPublicKeyDer(spki)).toEqual(createHash('sha256').update(spki).digest());
  });

  test('the usual mistakes are refused: PEM text, a truncated key, nothing', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    expectDhtError(() => nodeIdFromPublicKeyDer(Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => nodeIdFromPublicKeyDer(spki.subarray(0, spki.length - 1)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => nodeIdFromPublicKeyDer(Buffer.alloc(0)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => nodeIdFromPublicKeyDer(Buffer.alloc(9000, 0x30)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => nodeIdFromPublicKeyDer('30' as unknown as Buffer), 'DHT_BAD_ARGUMENT');
  });
});

describe('XOR metric', () => {
  test('distance is symmetric, zero only to itself, and comparing distances matches comparing XORs', () => {
    fc.assert(
      fc.property(id, id, id, (a, b, t) => {
        expect(xorDistance(a, b)).toEqual(xorDistance(b, a));
        expect(xorDistance(a, a).every((x) => x === 0)).toBe(true);
        expect(Math.sign(compareDistance(a, b, t))).toBe(Math.sign(Buffer.compare(xorDistance(a, t), xorDistance(b, t))));
      }),
    );
  });

  test('common prefix length counts the leading equal bits', () => {
    fc.assert(
      fc.property(id, fc.integer({ min: 0, max: NODE_ID_BITS - 1 }), (a, bit) => {
        const b = Buffer.from(a);
        b[bit >> 3] = (b[bit >> 3] as number) ^ (0x80 >> (bit & 7));
        expect(commonPrefixLength(a, b)).toBe(bit);
        expect(bitAt(a, bit)).not.toBe(bitAt(b, bit));
      }),
    );
    expect(commonPrefixLength(Buffer.alloc(32), Buffer.alloc(32))).toBe(NODE_ID_BITS);
  });

  test('random ids with a prefix keep the prefix and flip the next bit when asked', () => {
    const random = randomSource(2);
    fc.assert(
      fc.property(id, fc.integer({ min: 0, max: NODE_ID_BITS - 1 }), fc.boolean(), (prefix, bits, flip) => {
        const made = randomIdWithPrefix(prefix, bits, flip, random);
        const shared = commonPrefixLength(prefix, made);
        if (flip) expect(shared).toBe(bits);
        else expect(shared).toBeGreaterThanOrEqual(bits);
      }),
    );
  });

  test('an info-hash target is the 20-byte hash padded with zeros; ids parse from hex', () => {
    const ih = Buffer.alloc(20, 0xab);
    expect(infoHashTarget(ih)).toEqual(Buffer.concat([ih, Buffer.alloc(12)]));
    expectDhtError(() => infoHashTarget(Buffer.alloc(32)), 'DHT_BAD_ARGUMENT');
    expect(nodeIdFromHex('ab'.repeat(32))).toEqual(Buffer.alloc(32, 0xab));
    expectDhtError(() => nodeIdFromHex('AB'.repeat(32)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => nodeIdFromHex('ab'), 'DHT_BAD_ARGUMENT');
  });
});
