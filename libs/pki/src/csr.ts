import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import forge from 'node-forge';
import { commonNameSubject } from './distinguished-name';
import { CsrError, KeyError } from './errors';
import {
  MAX_RSA_BITS,
  MIN_RSA_BITS,
  publicKeyPem,
  readPrivateKeyPem,
  readPublicKeyPem,
  requireRsaKeyPolicy,
  toForgePrivateKey,
  toForgePublicKey,
} from './keys';
import { requirePositiveInteger } from './validity';

/** Larger requests are refused unread: a CSR with a 16384-bit key is under 6 KiB of PEM. */
export const MAX_CSR_BYTES = 16 * 1024;

const RSA_ENCRYPTION_OID = '1.2.840.113549.1.1.1';
/** CSR signature algorithms accepted (PKCS#1 v1.5); SHA-1 and MD5 are not. */
const CSR_SIGNATURE_DIGESTS: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.11', 'sha256'],
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
]);
// One block; "NEW CERTIFICATE REQUEST" is the label older Microsoft and Netscape tools write.
const PEM_PATTERN =
  /^\s*-----BEGIN (NEW )?CERTIFICATE REQUEST-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1CERTIFICATE REQUEST-----\s*$/;
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface CsrCheckOptions {
  minRsaBits?: number;
}

export interface CheckedCsr {
  /** The requester's key, re-exported as SPKI PEM: pass it to issueAgentCertificate. */
  publicKeyPem: string;
  rsaBits: number;
}

/**
 * Checks a PKCS#10 request from an agent and returns its public key. The request must be one PEM
 * block of strict DER, hold an RSA key that meets the key policy, and carry a valid SHA-2
 * signature by that key (proof that the requester holds the private key). Everything else in
 * it, the subject and any requested extensions included, is deliberately ignored: the
 * controller decides every name.
 *
 * Throws CsrError (PKI_CSR_TOO_LARGE, PKI_CSR_MALFORMED, PKI_CSR_UNSUPPORTED_ALGORITHM,
 * PKI_CSR_BAD_SIGNATURE) or KeyError (PKI_UNSUPPORTED_KEY, PKI_WEAK_KEY).
 */
export function checkCsr(csrPem: string, options: CsrCheckOptions = {}): CheckedCsr {
  const minRsaBits = requirePositiveInteger(options.minRsaBits ?? MIN_RSA_BITS, 'minRsaBits', MAX_RSA_BITS);
  if (typeof csrPem !== 'string') throw new CsrError('PKI_CSR_MALFORMED', 'the CSR must be a PEM string');
  if (csrPem.length > MAX_CSR_BYTES || Buffer.byteLength(csrPem, 'utf8') > MAX_CSR_BYTES) {
    throw new CsrError('PKI_CSR_TOO_LARGE', `the CSR exceeds ${MAX_CSR_BYTES} bytes`);
  }
  const der = decodePem(csrPem);
  const { request, info, subjectPublicKeyInfo, signatureAlgorithm, signature } = splitRequest(der);

  const keyAlgorithm = oidOf(firstChild(subjectPublicKeyInfo, 'subjectPublicKeyInfo'), 'subjectPublicKeyInfo algorithm');
  if (keyAlgorithm !== RSA_ENCRYPTION_OID) {
    const algorithm = forge.pki.oids[keyAlgorithm] ?? keyAlgorithm;
    throw new KeyError('PKI_UNSUPPORTED_KEY', `the CSR holds a ${algorithm} key; only RSA keys are accepted`);
  }
  let publicKey: KeyObject;
  try {
    const spki = Buffer.from(forge.asn1.toDer(subjectPublicKeyInfo).getBytes(), 'binary');
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (cause) {
    throw new CsrError('PKI_CSR_MALFORMED', 'the CSR public key cannot be read', { cause });
  }
  const rsaBits = requireRsaKeyPolicy(publicKey, minRsaBits, 'the CSR key');

  const signatureOid = oidOf(signatureAlgorithm, 'signatureAlgorithm');
  const digest = CSR_SIGNATURE_DIGESTS.get(signatureOid);
  if (digest === undefined) {
    const algorithm = forge.pki.oids[signatureOid] ?? signatureOid;
    throw new CsrError('PKI_CSR_UNSUPPORTED_ALGORITHM', `the CSR is signed with ${algorithm}; use SHA-256 with RSA`);
  }
  // PKCS#1 v1.5 signature algorithms take NULL parameters (or, from some encoders, none).
  const [, parameters, ...extra] = sequence(signatureAlgorithm, 'signatureAlgorithm');
  const isNull = parameters?.tagClass === forge.asn1.Class.UNIVERSAL && parameters.type === forge.asn1.Type.NULL;
  if (extra.length > 0 || (parameters !== undefined && !(isNull && parameters.value === ''))) {
    throw new CsrError('PKI_CSR_MALFORMED', 'the CSR signature algorithm has parameters');
  }
  try {
    // Full PKCS#10 structure check (version, subject, attributes), done only now that the key is RSA.
    forge.pki.certificationRequestFromAsn1(request);
  } catch (cause) {
    throw new CsrError('PKI_CSR_MALFORMED', 'the CSR is not a well-formed PKCS#10 request', { cause });
  }
  const signed = Buffer.from(forge.asn1.toDer(info).getBytes(), 'binary');
  if (!verify(digest, signed, publicKey, signature)) {
    throw new CsrError('PKI_CSR_BAD_SIGNATURE', 'the CSR signature does not verify with its own key');
  }
  return { publicKeyPem: publicKeyPem(publicKey), rsaBits };
}

function decodePem(pem: string): string {
  const match = PEM_PATTERN.exec(pem);
  const body = match?.[2]?.replace(/\r?\n/g, '');
  if (body === undefined || body === '' || !BASE64_PATTERN.test(body)) {
    throw new CsrError('PKI_CSR_MALFORMED', 'expected one PEM block "CERTIFICATE REQUEST"');
  }
  return Buffer.from(body, 'base64').toString('binary');
}

/** Parses the outer CertificationRequest SEQUENCE, insisting on DER so that what was signed is exactly what is verified. */
function splitRequest(der: string): {
  request: forge.asn1.Asn1;
  info: forge.asn1.Asn1;
  subjectPublicKeyInfo: forge.asn1.Asn1;
  signatureAlgorithm: forge.asn1.Asn1;
  signature: Buffer;
} {
  let request: forge.asn1.Asn1;
  try {
    request = forge.asn1.fromDer(der, true);
  } catch (cause) {
    throw new CsrError('PKI_CSR_MALFORMED', 'the CSR is not DER', { cause });
  }
  if (forge.asn1.toDer(request).getBytes() !== der) {
    throw new CsrError('PKI_CSR_MALFORMED', 'the CSR is not in DER (canonical) encoding');
  }
  const [info, signatureAlgorithm, signatureBits, ...extra] = sequence(request, 'CertificationRequest');
  if (info === undefined || signatureAlgorithm === undefined || signatureBits === undefined || extra.length > 0) {
    throw new CsrError('PKI_CSR_MALFORMED', 'CertificationRequest must hold info, signatureAlgorithm and signature');
  }
  const subjectPublicKeyInfo = sequence(info, 'certificationRequestInfo')[2];
  if (subjectPublicKeyInfo === undefined) {
    throw new CsrError('PKI_CSR_MALFORMED', 'certificationRequestInfo lacks subjectPublicKeyInfo');
  }
  // forge keeps the raw BIT STRING content (first byte = unused bits) in bitStringContents.
  const bitString = (signatureBits as forge.asn1.Asn1 & { bitStringContents?: string }).bitStringContents;
  if (signatureBits.type !== forge.asn1.Type.BITSTRING || bitString === undefined || bitString.charCodeAt(0) !== 0) {
    throw new CsrError('PKI_CSR_MALFORMED', 'the CSR signature is not a whole-byte BIT STRING');
  }
  return { request, info, subjectPublicKeyInfo, signatureAlgorithm, signature: Buffer.from(bitString.slice(1), 'binary') };
}

function sequence(node: forge.asn1.Asn1, what: string): forge.asn1.Asn1[] {
  if (node.tagClass !== forge.asn1.Class.UNIVERSAL || node.type !== forge.asn1.Type.SEQUENCE || !Array.isArray(node.value)) {
    throw new CsrError('PKI_CSR_MALFORMED', `${what} must be a SEQUENCE`);
  }
  return node.value;
}

function firstChild(node: forge.asn1.Asn1, what: string): forge.asn1.Asn1 {
  const [child] = sequence(node, what);
  if (child === undefined) throw new CsrError('PKI_CSR_MALFORMED', `${what} is empty`);
  return child;
}

/** The OID at the head of an AlgorithmIdentifier. */
function oidOf(algorithmIdentifier: forge.asn1.Asn1, what: string): string {
  const oid = firstChild(algorithmIdentifier, what);
  if (oid.tagClass !== forge.asn1.Class.UNIVERSAL || oid.type !== forge.asn1.Type.OID || typeof oid.value !== 'string') {
    throw new CsrError('PKI_CSR_MALFORMED', `${what} has no OID`);
  }
  return forge.asn1.derToOid(oid.value);
}

export interface CreateCsrOptions {
  /** The agent's private key PEM (PKCS#8 or PKCS#1); it signs the request and never leaves the host. */
  keyPem: string;
  publicKeyPem: string;
  /** Informational only: the controller ignores every name in a CSR. */
  commonName: string;
}

/** Creates the agent's certificate signing request: PKCS#10, SHA-256 with RSA, signed by node-forge. */
export function createCsr(options: CreateCsrOptions): string {
  const subject = commonNameSubject(options.commonName);
  const privateKey = readPrivateKeyPem(options.keyPem, 'the agent key');
  const publicKey = readPublicKeyPem(options.publicKeyPem, 'the agent public key');
  // The key policy is the controller's to enforce (checkCsr); node-forge can only sign with RSA.
  if (publicKey.asymmetricKeyType !== 'rsa') {
    throw new KeyError('PKI_UNSUPPORTED_KEY', 'node-forge signs CSRs with RSA keys only');
  }
  const derivedPublicKey = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  if (!derivedPublicKey.equals(publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new KeyError('PKI_KEY_MISMATCH', 'the agent public key does not belong to the agent private key');
  }
  const request = forge.pki.createCertificationRequest();
  request.publicKey = toForgePublicKey(publicKey);
  request.setSubject(subject);
  request.sign(toForgePrivateKey(privateKey), forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(request);
}
