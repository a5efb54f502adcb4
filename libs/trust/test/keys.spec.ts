import { createHash, generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { Metadata, Signature, Targets } from '@tufjs/models';
import { TrustError, computeKeyId, generateSigningKey, signerFromPrivateKeyPem } from '../src';
import { canonicalJson, signMetadata } from '../src/keys';

type Json = Parameters<typeof canonicalJson>[0];

/** The exact bytes @tufjs/models signs for `signed` (its own canonical JSON encoder). */
function modelsCanonicalBytes(extra: Json): Buffer {
  let captured: Buffer | undefined;
  const metadata = new Metadata(new Targets({ version: 1, specVersion: '1.0.31', expires: '2030-01-01T00:00:00Z', unrecognizedFields: { extra: extra as never } }));
  metadata.sign((bytes) => {
    captured = bytes;
    return new Signature({ keyID: 'k', sig: '' });
  });
  return captured as Buffer;
}

const json: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.string({ unit: 'binary' }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), tie('value'), { maxKeys: 4 }),
  ),
})).value;

describe('canonicalJson', () => {
  test('matches the bytes @tufjs/models signs, for any JSON with integers', () => {
    fc.assert(
      fc.property(json, (extra) => {
        const signed = new Targets({ version: 1, specVersion: '1.0.31', expires: '2030-01-01T00:00:00Z', unrecognizedFields: { extra: extra as never } });
        expect(canonicalJson(signed.toJSON() as Json)).toBe(modelsCanonicalBytes(extra).toString('utf8'));
      }),
      { numRuns: 300 },
    );
  });

  test('refuses numbers canonical JSON cannot carry', () => {
    expect(() => canonicalJson(1.5)).toThrow(TrustError);
  });
});

describe('keys', () => {
  test('a generated key id is the SHA-256 of the canonical public key JSON', () => {
    const key = generateSigningKey();
    expect(key.publicKey.keyType).toBe('ed25519');
    expect(key.publicKey.keyVal['public']).toMatch(/^[0-9a-f]{64}$/);
    const expected = createHash('sha256')
      .update(`{"keytype":"ed25519","keyval":{"public":"${key.publicKey.keyVal['public']}"},"scheme":"ed25519"}`)
      .digest('hex');
    expect(key.keyId).toBe(expected);
    expect(key.publicKey.keyID).toBe(expected);
    expect(computeKeyId(key.publicKey)).toBe(expected);
  });

  test('a signer from the PEM signs metadata that @tufjs/models verifies with the public key', () => {
    const key = generateSigningKey();
    const signer = signerFromPrivateKeyPem(key.privateKeyPem);
    expect(signer.publicKey.equals(key.publicKey)).toBe(true);
    const metadata = new Metadata(new Targets({ version: 1, specVersion: '1.0.31', expires: '2030-01-01T00:00:00Z' }));
    signMetadata(metadata, signer);
    expect(() => key.publicKey.verifySignature(metadata)).not.toThrow();
    expect(() => generateSigningKey().publicKey.verifySignature(metadata)).toThrow();
  });

  test('a signer whose signatures its public key does not verify is refused when it signs', () => {
    const honest = signerFromPrivateKeyPem(generateSigningKey().privateKeyPem);
    const other = signerFromPrivateKeyPem(generateSigningKey().privateKeyPem);
    const confused = { publicKey: honest.publicKey, sign: other.sign };
    const metadata = new Metadata(new Targets({ version: 1, specVersion: '1.0.31', expires: '2030-01-01T00:00:00Z' }));
    expect(() => signMetadata(metadata, confused)).toThrow(expect.objectContaining({ code: 'TRUST_BAD_KEY' }));
  });

  test('PEM that is not an ed25519 private key is refused', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    expect(() => signerFromPrivateKeyPem(rsa)).toThrow(expect.objectContaining({ code: 'TRUST_BAD_KEY', message: expect.stringMatching(/ed25519/) }));
    expect(() => signerFromPrivateKeyPem('not a key')).toThrow(expect.objectContaining({ code: 'TRUST_BAD_KEY' }));
  });
});
