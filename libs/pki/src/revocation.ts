import { X509Certificate, constants, verify } from 'node:crypto';
import { CertificateAuthorityError, PkiInputError, RevocationListError } from './errors';
import { describeValue, requireFleet } from './names';
import { wholeSecondsOf } from './validity';

/** Why a certificate was revoked: the RFC 5280 reasons that make sense for fleet peers. */
export const REVOCATION_REASONS = [
  'unspecified',
  'keyCompromise',
  'affiliationChanged',
  'superseded',
  'cessationOfOperation',
  'privilegeWithdrawn',
] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

export interface RevocationEntry {
  /** Certificate serial in the library's format: lowercase hex, as `issue*` and `readPeerIdentity` give it. */
  serial: string;
  revokedAt: Date;
  reason?: RevocationReason;
}

export interface RevocationList {
  fleet: string;
  /** Increases with every list the controller signs, so that an agent can refuse an older one. */
  version: number;
  issuedAt: Date;
  /** Sorted by serial, no serial twice. */
  revoked: RevocationEntry[];
}

/**
 * What travels to agents: `payload` is canonical JSON of a RevocationList and `signature` the
 * base64 RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) signature of its UTF-8 bytes by the CA key.
 */
export interface SignedRevocationList {
  payload: string;
  signature: string;
}

/**
 * Cap on a payload: it must fit a gRPC message (4 MiB by default) with room to spare. Revoked
 * agent certificates expire within a day, so the controller can drop them from the list soon
 * after and the list stays far below this.
 */
export const MAX_REVOCATION_LIST_BYTES = 2 * 1024 * 1024;

/** RSASSA-PSS parameters of revocation list signatures, shared by signer and verifier. */
export const REVOCATION_SIGNATURE_PADDING = { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } as const;
export const REVOCATION_SIGNATURE_DIGEST = 'sha256';

// A serial is a positive INTEGER of at most 20 octets (RFC 5280 4.1.2.2), printed as Node prints it.
const SERIAL_PATTERN = /^(?:[0-9a-f]{2}){1,20}$/;
const ISO_INSTANT_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
// Far above the 1 KiB base64 of a 8192-bit RSA signature, far below anything costly to decode.
const MAX_SIGNATURE_LENGTH = 4096;

/**
 * Canonical payload of a revocation list. The key order is fixed and entries are sorted by
 * serial, so the same list always gives the same bytes and the verifier can insist on them.
 */
export function encodeRevocationPayload(list: RevocationList): string {
  return JSON.stringify({
    fleet: list.fleet,
    version: list.version,
    issuedAt: list.issuedAt.toISOString(),
    revoked: list.revoked.map((entry) =>
      entry.reason === undefined
        ? { serial: entry.serial, revokedAt: entry.revokedAt.toISOString() }
        : { serial: entry.serial, revokedAt: entry.revokedAt.toISOString(), reason: entry.reason },
    ),
  });
}

/**
 * Validates what the controller wants to sign and puts it into canonical order. Serials may be
 * given in either case; they are stored lowercase, the format every other function uses.
 */
export function normaliseRevocationList(
  fleet: string,
  input: { version: number; revoked: readonly RevocationEntry[]; now: Date },
): RevocationList {
  if (!Number.isSafeInteger(input.version) || input.version < 0) {
    throw invalid(`version must be a non-negative integer, got ${describeValue(input.version)}`);
  }
  if (!Array.isArray(input.revoked)) throw invalid('revoked must be an array');
  const issuedAt = new Date(wholeSecondsOf(input.now));
  const revoked = input.revoked.map((entry: Partial<RevocationEntry> | null, index): RevocationEntry => {
    if (typeof entry !== 'object' || entry === null) throw invalid(`revoked[${index}] must be an object`);
    const serial = typeof entry.serial === 'string' ? entry.serial.toLowerCase() : undefined;
    if (serial === undefined || !SERIAL_PATTERN.test(serial) || serial.startsWith('00')) {
      throw invalid(`revoked[${index}].serial must be hex of a certificate serial, got ${describeValue(entry.serial)}`);
    }
    const revokedAt = new Date(wholeSecondsOf(entry.revokedAt, `revoked[${index}].revokedAt`));
    if (entry.reason === undefined) return { serial, revokedAt };
    if (!REVOCATION_REASONS.includes(entry.reason)) {
      throw invalid(`revoked[${index}].reason must be one of ${REVOCATION_REASONS.join(', ')}, got ${describeValue(entry.reason)}`);
    }
    return { serial, revokedAt, reason: entry.reason };
  });
  revoked.sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
  revoked.forEach((entry, index) => {
    if (index > 0 && revoked[index - 1]?.serial === entry.serial) {
      throw invalid(`serial ${entry.serial} is listed twice`);
    }
  });
  const list: RevocationList = { fleet, version: input.version, issuedAt, revoked };
  if (Buffer.byteLength(encodeRevocationPayload(list)) > MAX_REVOCATION_LIST_BYTES) {
    throw new RevocationListError(
      'PKI_CRL_TOO_LARGE',
      `the list exceeds ${MAX_REVOCATION_LIST_BYTES} bytes; drop entries whose certificates have expired`,
    );
  }
  return list;
}

export interface VerifyRevocationListOptions {
  /** The fleet the list must name. */
  fleet: string;
  /** The version of the list already applied: an older list is a rollback and is refused. */
  minVersion?: number;
}

/**
 * Checks a signed revocation list received from anywhere and returns its contents. The signature
 * is checked before the payload is parsed, so unauthenticated bytes never reach the JSON parser;
 * then the payload must be exactly the canonical encoding of a valid list.
 */
export function verifyRevocationList(
  list: SignedRevocationList,
  caCertPem: string,
  options: VerifyRevocationListOptions,
): RevocationList {
  const fleet = requireFleet(options.fleet);
  const minVersion = options.minVersion ?? 0;
  if (!Number.isSafeInteger(minVersion) || minVersion < 0) {
    throw invalid(`minVersion must be a non-negative integer, got ${describeValue(minVersion)}`);
  }
  const payload: unknown = (list as Partial<SignedRevocationList> | null)?.payload;
  const signature: unknown = (list as Partial<SignedRevocationList> | null)?.signature;
  if (typeof payload !== 'string' || typeof signature !== 'string') {
    throw new RevocationListError('PKI_CRL_MALFORMED', 'a signed revocation list needs string fields payload and signature');
  }
  if (payload.length > MAX_REVOCATION_LIST_BYTES || Buffer.byteLength(payload) > MAX_REVOCATION_LIST_BYTES) {
    throw new RevocationListError('PKI_CRL_TOO_LARGE', `the payload exceeds ${MAX_REVOCATION_LIST_BYTES} bytes`);
  }
  const signatureBytes = signature.length <= MAX_SIGNATURE_LENGTH ? Buffer.from(signature, 'base64') : Buffer.alloc(0);
  // Only canonical base64: Node's decoder skips stray characters and ignores padding bits, so one
  // signature could otherwise be spelled many ways.
  if (signatureBytes.length === 0 || signatureBytes.toString('base64') !== signature) {
    throw new RevocationListError('PKI_CRL_MALFORMED', 'signature is not canonical base64');
  }

  let caCertificate: X509Certificate;
  try {
    caCertificate = new X509Certificate(caCertPem);
  } catch (cause) {
    throw new CertificateAuthorityError('PKI_CA_MALFORMED', 'the fleet CA certificate cannot be read', { cause });
  }
  let signatureValid: boolean;
  try {
    signatureValid = verify(
      REVOCATION_SIGNATURE_DIGEST,
      Buffer.from(payload, 'utf8'),
      { key: caCertificate.publicKey, ...REVOCATION_SIGNATURE_PADDING },
      signatureBytes,
    );
  } catch {
    signatureValid = false;
  }
  if (!signatureValid) {
    throw new RevocationListError('PKI_CRL_BAD_SIGNATURE', 'the revocation list is not signed by the fleet CA');
  }

  const parsed = parseRevocationPayload(payload);
  if (parsed.fleet !== fleet) {
    const names = `${JSON.stringify(parsed.fleet)}, not ${JSON.stringify(fleet)}`;
    throw new RevocationListError('PKI_CRL_WRONG_FLEET', `the revocation list is for fleet ${names}`);
  }
  if (parsed.version < minVersion) {
    throw new RevocationListError(
      'PKI_CRL_ROLLBACK',
      `revocation list version ${parsed.version} is older than version ${minVersion}, which was already applied`,
    );
  }
  return parsed;
}

function parseRevocationPayload(payload: string): RevocationList {
  let json: unknown;
  try {
    json = JSON.parse(payload);
  } catch (cause) {
    throw malformed('payload is not JSON', cause);
  }
  const root = requireObject(json, ['fleet', 'version', 'issuedAt', 'revoked'], [], 'payload');
  if (typeof root.fleet !== 'string') throw malformed('fleet must be a string');
  if (typeof root.version !== 'number' || !Number.isSafeInteger(root.version) || root.version < 0) {
    throw malformed('version must be a non-negative integer');
  }
  if (!Array.isArray(root.revoked)) throw malformed('revoked must be an array');
  const list: RevocationList = {
    fleet: root.fleet,
    version: root.version,
    issuedAt: parseInstant(root.issuedAt, 'issuedAt'),
    revoked: root.revoked.map((item: unknown, index): RevocationEntry => {
      const field = `revoked[${index}]`;
      const entry = requireObject(item, ['serial', 'revokedAt'], ['reason'], field);
      if (typeof entry.serial !== 'string' || !SERIAL_PATTERN.test(entry.serial) || entry.serial.startsWith('00')) {
        throw malformed(`${field}.serial must be lowercase hex of a certificate serial`);
      }
      const revokedAt = parseInstant(entry.revokedAt, `${field}.revokedAt`);
      if (entry.reason === undefined) return { serial: entry.serial, revokedAt };
      const reason = REVOCATION_REASONS.find((known) => known === entry.reason);
      if (reason === undefined) throw malformed(`${field}.reason is not a known revocation reason`);
      return { serial: entry.serial, revokedAt, reason };
    }),
  };
  list.revoked.forEach((entry, index) => {
    const previous = list.revoked[index - 1];
    if (previous !== undefined && previous.serial >= entry.serial) {
      throw malformed(`revoked[${index}] is out of order or repeats a serial`);
    }
  });
  // Whatever the schema let through must still be byte-for-byte what the signer would write.
  if (encodeRevocationPayload(list) !== payload) throw malformed('payload is not in canonical form');
  return list;
}

function requireObject(value: unknown, required: string[], optional: string[], field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed(`${field} must be an object`);
  const record = value as Record<string, unknown>;
  const missing = required.filter((key) => !Object.hasOwn(record, key));
  if (missing.length > 0) throw malformed(`${field} lacks ${missing.join(', ')}`);
  const unknown = Object.keys(record).filter((key) => !required.includes(key) && !optional.includes(key));
  if (unknown.length > 0) throw malformed(`${field} has unknown fields ${unknown.slice(0, 5).join(', ')}`);
  return record;
}

function parseInstant(value: unknown, field: string): Date {
  if (typeof value !== 'string' || !ISO_INSTANT_PATTERN.test(value)) {
    throw malformed(`${field} must be an ISO 8601 UTC instant`);
  }
  const instant = new Date(value);
  if (!Number.isFinite(instant.getTime()) || instant.toISOString() !== value) {
    throw malformed(`${field} is not a real instant`);
  }
  return instant;
}

const invalid = (message: string): PkiInputError => new PkiInputError('PKI_INVALID_ARGUMENT', message);

const malformed = (message: string, cause?: unknown): RevocationListError =>
  new RevocationListError('PKI_CRL_MALFORMED', message, cause === undefined ? undefined : { cause });

/**
 * The serials of a verified revocation list, for the check every connection makes. Serials are
 * compared lowercase, so Node's uppercase `getPeerCertificate().serialNumber` can be passed as is.
 */
export class RevocationSet {
  private readonly serials: ReadonlySet<string>;

  constructor(private readonly list: RevocationList) {
    this.serials = new Set(list.revoked.map((entry) => entry.serial));
  }

  get version(): number {
    return this.list.version;
  }

  get size(): number {
    return this.serials.size;
  }

  has(serial: string): boolean {
    return this.serials.has(serial.toLowerCase());
  }
}
