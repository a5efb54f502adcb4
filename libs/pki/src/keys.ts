import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import forge from 'node-forge';
import { KeyError, PkiInputError } from './errors';
import { describeValue } from './names';

/** The smallest RSA modulus the fleet accepts anywhere (NIST SP 800-57: 112-bit security). */
export const MIN_RSA_BITS = 2048;
/** Larger moduli only make every handshake slower; they also bound the work a hostile CSR can cause. */
export const MAX_RSA_BITS = 16384;
// Generating larger keys takes long enough to look like a hang.
const MAX_GENERATED_RSA_BITS = 8192;
// NIST SP 800-56B bounds e below 2^256; a larger e only makes verification slow.
const PUBLIC_EXPONENT_LIMIT = 1n << 256n;

/** A PKCS#8 private key and its SPKI public key, both PEM. */
export interface RsaKeyPair {
  keyPem: string;
  publicKeyPem: string;
}

/** Creates an RSA key pair with Node's native crypto (e = 65537), e.g. an agent's key before enrollment. */
export function generateRsaKeyPair(bits = MIN_RSA_BITS): RsaKeyPair {
  const { privateKey, publicKey } = generateRsaKeyObjects(bits, 'RSA key size');
  return { keyPem: privateKeyPem(privateKey), publicKeyPem: publicKeyPem(publicKey) };
}

/** Native RSA key generation with the size checked: 2048..8192 bits, whole bytes. */
export function generateRsaKeyObjects(bits: unknown, field: string): { privateKey: KeyObject; publicKey: KeyObject } {
  const valid = typeof bits === 'number' && Number.isSafeInteger(bits) && bits % 8 === 0;
  if (!valid || bits < MIN_RSA_BITS || bits > MAX_GENERATED_RSA_BITS) {
    throw new PkiInputError(
      'PKI_INVALID_ARGUMENT',
      `${field} must be a multiple of 8 from ${MIN_RSA_BITS} to ${MAX_GENERATED_RSA_BITS}, got ${describeValue(bits)}`,
    );
  }
  return generateKeyPairSync('rsa', { modulusLength: bits, publicExponent: 65537 });
}

/** Reads an SPKI ("PUBLIC KEY") PEM; private keys and certificates are refused, not silently reduced. */
export function readPublicKeyPem(pem: unknown, what: string): KeyObject {
  if (typeof pem !== 'string' || !/^\s*-----BEGIN PUBLIC KEY-----/.test(pem)) {
    throw new KeyError('PKI_KEY_MALFORMED', `${what} must be a PEM "PUBLIC KEY" (SPKI)`);
  }
  try {
    return createPublicKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new KeyError('PKI_KEY_MALFORMED', `${what} is not a readable public key`, { cause });
  }
}

/** Reads an unencrypted private key PEM (PKCS#8 or PKCS#1). */
export function readPrivateKeyPem(pem: unknown, what: string): KeyObject {
  if (typeof pem !== 'string') throw new KeyError('PKI_KEY_MALFORMED', `${what} must be a PEM string`);
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new KeyError('PKI_KEY_MALFORMED', `${what} is not a readable, unencrypted private key`, { cause });
  }
}

/**
 * Applies the fleet key policy to a public key and returns its modulus size: RSA only (node-forge
 * signs and verifies nothing else), at least `minRsaBits`, and an odd public exponent >= 3.
 */
export function requireRsaKeyPolicy(key: KeyObject, minRsaBits: number, what: string): number {
  if (key.asymmetricKeyType !== 'rsa') {
    const type = key.asymmetricKeyType ?? 'unknown';
    throw new KeyError('PKI_UNSUPPORTED_KEY', `${what} is an ${type} key; only RSA keys are accepted`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  const exponent = key.asymmetricKeyDetails?.publicExponent ?? 0n;
  if (bits > MAX_RSA_BITS) {
    throw new KeyError('PKI_UNSUPPORTED_KEY', `${what} has a ${bits}-bit modulus; at most ${MAX_RSA_BITS} are accepted`);
  }
  if (bits < minRsaBits) {
    throw new KeyError('PKI_WEAK_KEY', `${what} has a ${bits}-bit modulus; at least ${minRsaBits} bits are required`);
  }
  if (exponent < 3n || exponent % 2n === 0n) {
    throw new KeyError('PKI_WEAK_KEY', `${what} has public exponent ${exponent}; it must be odd and at least 3`);
  }
  if (exponent >= PUBLIC_EXPONENT_LIMIT) {
    const exponentBits = exponent.toString(2).length;
    throw new KeyError('PKI_UNSUPPORTED_KEY', `${what} has a ${exponentBits}-bit public exponent; at most 256 bits are accepted`);
  }
  return bits;
}

export const publicKeyPem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString();
export const privateKeyPem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }).toString();

export const toForgePublicKey = (key: KeyObject): forge.pki.rsa.PublicKey => forge.pki.publicKeyFromPem(publicKeyPem(key));
export const toForgePrivateKey = (key: KeyObject): forge.pki.rsa.PrivateKey =>
  forge.pki.privateKeyFromPem(key.export({ type: 'pkcs1', format: 'pem' }).toString());
