import { type KeyObject, createHash, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { Key, type Metadata, type Root, Signature, type Snapshot, type Targets, type Timestamp } from '@tufjs/models';
import { TrustError } from './errors';

/**
 * Signs TUF metadata with one key. Root keys may live offline: anything that can turn the
 * canonical bytes of a metadata file into a signature can implement this. Signing is
 * synchronous because @tufjs/models' `Metadata.sign` is.
 */
export interface Signer {
  readonly publicKey: Key;
  /** Signature over `bytes`, hex-encoded as TUF stores it. */
  sign(bytes: Buffer): string;
}

export interface SigningKey {
  keyId: string;
  publicKey: Key;
  /** PKCS#8 PEM; whoever keeps it decides where (0600 file, secret store, offline media). */
  privateKeyPem: string;
}

const ED25519 = 'ed25519';

type Canonical = string | number | boolean | null | readonly Canonical[] | { readonly [key: string]: Canonical };

/**
 * OLPC canonical JSON, the encoding TUF hashes and signs: sorted keys, no whitespace, and only
 * `"` and `\` escaped in strings. Used for key ids, which @tufjs/models does not compute.
 */
export function canonicalJson(value: Canonical): string {
  if (typeof value === 'string') return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new TrustError('TRUST_BAD_KEY', `canonical JSON has integers only, not ${value}`);
    return String(value);
  }
  if (typeof value === 'boolean' || value === null) return String(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const object = value as { readonly [key: string]: Canonical };
  const keys = Object.keys(object).sort();
  return `{${keys.map((key) => `${canonicalJson(key)}:${canonicalJson(object[key] as Canonical)}`).join(',')}}`;
}

/** The TUF key id: SHA-256 over the canonical JSON of the public key (as python-tuf computes it). */
export function computeKeyId(key: Pick<Key, 'keyType' | 'scheme' | 'keyVal'>): string {
  const json = canonicalJson({ keytype: key.keyType, scheme: key.scheme, keyval: key.keyVal });
  return createHash('sha256').update(json).digest('hex');
}

function ed25519PublicKey(privateKey: KeyObject): Key {
  const jwk = privateKey.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new TrustError('TRUST_BAD_KEY', 'private key has no ed25519 public part');
  const keyVal = { public: Buffer.from(jwk.x, 'base64url').toString('hex') };
  return new Key({ keyID: computeKeyId({ keyType: ED25519, scheme: ED25519, keyVal }), keyType: ED25519, scheme: ED25519, keyVal });
}

/** A new ed25519 key pair with its TUF key id. */
export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  const publicKey = ed25519PublicKey(privateKey);
  return { keyId: publicKey.keyID, publicKey, privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
}

/** A Signer for an ed25519 private key kept as PEM (for example one from generateSigningKey). */
export function signerFromPrivateKeyPem(privateKeyPem: string): Signer {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new TrustError('TRUST_BAD_KEY', 'not a PEM private key', { cause: err });
  }
  if (privateKey.asymmetricKeyType !== ED25519) {
    throw new TrustError('TRUST_BAD_KEY', `expected an ed25519 key, got ${privateKey.asymmetricKeyType ?? 'unknown'}`);
  }
  return { publicKey: ed25519PublicKey(privateKey), sign: (bytes) => sign(null, bytes, privateKey).toString('hex') };
}

/**
 * Adds `signer`'s signature to `metadata` through @tufjs/models' own signing, and checks it
 * against the signer's public key, so a misconfigured signer fails here and not on every client.
 */
export function signMetadata<T extends Root | Targets | Snapshot | Timestamp>(metadata: Metadata<T>, signer: Signer): void {
  checkKeys([signer.publicKey], 'signer');
  metadata.sign((bytes) => new Signature({ keyID: signer.publicKey.keyID, sig: signer.sign(bytes) }));
  try {
    signer.publicKey.verifySignature(metadata);
  } catch (err) {
    throw new TrustError('TRUST_BAD_KEY', `the signer for key ${signer.publicKey.keyID} made a signature that its public key does not verify`, { cause: err });
  }
}

/**
 * Refuses keys Shoal cannot vouch for: a key id that is not the TUF hash of the key would let
 * one key be listed under two ids and count twice towards a threshold.
 */
export function checkKeys(keys: readonly Key[], what: string): void {
  const seen = new Set<string>();
  for (const key of keys) {
    if (computeKeyId(key) !== key.keyID) {
      throw new TrustError('TRUST_BAD_KEY', `${what}: key id ${key.keyID} is not the SHA-256 of its canonical public key`);
    }
    if (seen.has(key.keyID)) throw new TrustError('TRUST_BAD_KEY', `${what}: key ${key.keyID} is listed twice`);
    seen.add(key.keyID);
  }
}
