import { constants, sign } from 'node:crypto';
import fc from 'fast-check';
import {
  CertificateAuthority,
  MAX_REVOCATION_LIST_BYTES,
  RevocationListError,
  RevocationSet,
  type SignedRevocationList,
  createFleetCa,
  type FleetCaMaterial,
  verifyRevocationList,
} from '../src';
import { expectPkiError } from './support';

const T0 = new Date('2026-03-01T08:00:00.000Z');
const NOW = new Date('2026-03-02T10:30:15.250Z');
const SERIAL_A = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
const SERIAL_B = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';
const SERIAL_C = '8000000000000000000000000000000b';

let ca: FleetCaMaterial;
let authority: CertificateAuthority;
let otherFleet: CertificateAuthority;
let otherCaSameFleet: FleetCaMaterial;
let signed: SignedRevocationList;

beforeAll(() => {
  ca = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 });
  authority = CertificateAuthority.load(ca.certPem, ca.keyPem);
  const other = createFleetCa({ fleet: 'staging', now: T0, keyBits: 2048 });
  otherFleet = CertificateAuthority.load(other.certPem, other.keyPem);
  otherCaSameFleet = createFleetCa({ fleet: 'prod', now: T0, keyBits: 2048 });
  signed = authority.signRevocationList({
    version: 7,
    revoked: [
      { serial: SERIAL_B.toUpperCase(), revokedAt: new Date('2026-03-02T09:00:00.000Z'), reason: 'keyCompromise' },
      { serial: SERIAL_A, revokedAt: new Date('2026-03-02T08:00:00.000Z') },
      { serial: SERIAL_C, revokedAt: new Date('2026-03-02T07:00:00.000Z'), reason: 'cessationOfOperation' },
    ],
    now: NOW,
  });
});

/** Signs any payload exactly as the CA does (RSASSA-PSS, SHA-256, 32-byte salt), for malformed-but-signed lists. */
const signedByCa = (payload: string, keyPem = ca.keyPem): SignedRevocationList => ({
  payload,
  signature: sign('sha256', Buffer.from(payload), { key: keyPem, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
    .toString('base64'),
});

const validPayload = (): Record<string, unknown> => JSON.parse(signed.payload) as Record<string, unknown>;

describe('signRevocationList', () => {
  test('writes canonical JSON: fixed key order, serials lowercase and sorted, whole-second times', () => {
    expect(signed.payload).toBe(
      JSON.stringify({
        fleet: 'prod',
        version: 7,
        issuedAt: '2026-03-02T10:30:15.000Z',
        revoked: [
          { serial: SERIAL_C, revokedAt: '2026-03-02T07:00:00.000Z', reason: 'cessationOfOperation' },
          { serial: SERIAL_A, revokedAt: '2026-03-02T08:00:00.000Z' },
          { serial: SERIAL_B, revokedAt: '2026-03-02T09:00:00.000Z', reason: 'keyCompromise' },
        ],
      }),
    );
    expect(Buffer.from(signed.signature, 'base64')).toHaveLength(256);
  });

  test('an empty list is a list', () => {
    const empty = authority.signRevocationList({ version: 0, revoked: [], now: NOW });
    expect(verifyRevocationList(empty, ca.certPem, { fleet: 'prod' }).revoked).toEqual([]);
  });

  test.each([
    ['a negative version', { version: -1 }],
    ['a fractional version', { version: 1.5 }],
    ['a serial that is not hex', { revoked: [{ serial: 'xyz', revokedAt: NOW }] }],
    ['an odd-length serial', { revoked: [{ serial: 'abc', revokedAt: NOW }] }],
    ['a serial with a sign byte', { revoked: [{ serial: '00ff', revokedAt: NOW }] }],
    ['a serial longer than 20 bytes', { revoked: [{ serial: 'ab'.repeat(21), revokedAt: NOW }] }],
    ['a serial twice', { revoked: [{ serial: SERIAL_A, revokedAt: NOW }, { serial: SERIAL_A.toUpperCase(), revokedAt: NOW }] }],
    ['an unknown reason', { revoked: [{ serial: SERIAL_A, revokedAt: NOW, reason: 'bored' }] }],
    ['an invalid revocation time', { revoked: [{ serial: SERIAL_A, revokedAt: new Date(Number.NaN) }] }],
    ['an invalid time', { now: new Date(Number.NaN) }],
  ])('refuses %s', (_, override) => {
    const input = { version: 1, revoked: [], now: NOW, ...(override as object) };
    expectPkiError(() => authority.signRevocationList(input), 'PKI_INVALID_ARGUMENT');
  });

  test('refuses a list too large to deliver', () => {
    const revoked = Array.from({ length: 40_000 }, (_, index) => ({
      serial: (0x80000000 + index).toString(16).padStart(32, 'f'),
      revokedAt: NOW,
    }));
    expectPkiError(() => authority.signRevocationList({ version: 1, revoked, now: NOW }), 'PKI_CRL_TOO_LARGE');
  });
});

describe('verifyRevocationList', () => {
  test('returns the list the CA signed', () => {
    expect(verifyRevocationList(signed, ca.certPem, { fleet: 'prod', minVersion: 7 })).toEqual({
      fleet: 'prod',
      version: 7,
      issuedAt: new Date('2026-03-02T10:30:15.000Z'),
      revoked: [
        { serial: SERIAL_C, revokedAt: new Date('2026-03-02T07:00:00.000Z'), reason: 'cessationOfOperation' },
        { serial: SERIAL_A, revokedAt: new Date('2026-03-02T08:00:00.000Z') },
        { serial: SERIAL_B, revokedAt: new Date('2026-03-02T09:00:00.000Z'), reason: 'keyCompromise' },
      ],
    });
  });

  test('refuses a tampered payload', () => {
    const tampered = { ...signed, payload: signed.payload.replace(SERIAL_A, SERIAL_A.replace('a1', 'a2')) };
    expectPkiError(() => verifyRevocationList(tampered, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_BAD_SIGNATURE');
    const dropped = { ...signed, payload: signed.payload.replace(/,\{"serial":"f0e1[^}]*\}/, '') };
    expect(dropped.payload).not.toBe(signed.payload);
    expectPkiError(() => verifyRevocationList(dropped, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_BAD_SIGNATURE');
  });

  test('refuses a list signed by another CA, even one claiming the same fleet', () => {
    expectPkiError(() => verifyRevocationList(signed, otherCaSameFleet.certPem, { fleet: 'prod' }), 'PKI_CRL_BAD_SIGNATURE');
    const resigned = signedByCa(signed.payload, otherCaSameFleet.keyPem);
    expectPkiError(() => verifyRevocationList(resigned, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_BAD_SIGNATURE');
  });

  test('refuses a PKCS#1 v1.5 signature over the same payload: the scheme is fixed', () => {
    const v15 = { payload: signed.payload, signature: sign('sha256', Buffer.from(signed.payload), ca.keyPem).toString('base64') };
    expectPkiError(() => verifyRevocationList(v15, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_BAD_SIGNATURE');
  });

  test('refuses a list of another fleet', () => {
    const staging = otherFleet.signRevocationList({ version: 9, revoked: [], now: NOW });
    expectPkiError(() => verifyRevocationList(staging, otherFleet.certPem, { fleet: 'prod' }), 'PKI_CRL_WRONG_FLEET');
    expect(verifyRevocationList(staging, otherFleet.certPem, { fleet: 'staging' }).version).toBe(9);
  });

  test('refuses a rollback to an older version, accepts the same or a newer one', () => {
    expectPkiError(() => verifyRevocationList(signed, ca.certPem, { fleet: 'prod', minVersion: 8 }), 'PKI_CRL_ROLLBACK');
    expect(verifyRevocationList(signed, ca.certPem, { fleet: 'prod', minVersion: 7 }).version).toBe(7);
    expect(verifyRevocationList(signed, ca.certPem, { fleet: 'prod', minVersion: 0 }).version).toBe(7);
  });

  test.each([
    ['null', null],
    ['a string', 'payload'],
    ['a missing signature', { payload: '{}' }],
    ['a numeric payload', { payload: 1, signature: 'AAAA' }],
    ['a signature that is not base64', { payload: '{}', signature: 'not base64!' }],
    ['an empty signature', { payload: '{}', signature: '' }],
    ['a signature with a line break', { payload: '{}', signature: 'AAAA\nAAAA' }],
    ['a signature without padding', { payload: '{}', signature: 'AAA' }],
  ])('refuses %s as a signed list', (_, list) => {
    expectPkiError(() => verifyRevocationList(list as unknown as SignedRevocationList, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_MALFORMED');
  });

  test('refuses the valid signature spelled in non-canonical base64', () => {
    // 256 bytes end in "xy==": the last 4 bits of "y" are padding that decoders ignore.
    const last = signed.signature.at(-3) ?? '';
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const sibling = alphabet[alphabet.indexOf(last) ^ 1] ?? '';
    const respelled = `${signed.signature.slice(0, -3)}${sibling}==`;
    expect(Buffer.from(respelled, 'base64')).toEqual(Buffer.from(signed.signature, 'base64'));
    expectPkiError(() => verifyRevocationList({ ...signed, signature: respelled }, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_MALFORMED');
  });

  test('refuses an oversized payload before checking anything else', () => {
    const huge = { payload: ' '.repeat(MAX_REVOCATION_LIST_BYTES + 1), signature: signed.signature };
    expectPkiError(() => verifyRevocationList(huge, ca.certPem, { fleet: 'prod' }), 'PKI_CRL_TOO_LARGE');
  });

  const entry = { serial: SERIAL_A, revokedAt: '2026-03-02T08:00:00.000Z' };
  const list = (overrides: Record<string, unknown>) =>
    JSON.stringify({ fleet: 'prod', version: 1, issuedAt: '2026-03-02T10:30:15.000Z', revoked: [], ...overrides });
  test.each([
    ['not JSON', '{"fleet":'],
    ['an array', '[]'],
    ['a JSON string', '"prod"'],
    ['null', 'null'],
    ['a missing field', JSON.stringify({ fleet: 'prod', version: 1, revoked: [] })],
    ['an unknown field', list({ extra: true })],
    ['a __proto__ field', list({}).replace('{', '{"__proto__":{"admin":true},')],
    ['a numeric fleet', list({ fleet: 1 })],
    ['a negative version', list({ version: -1 })],
    ['a fractional version', list({ version: 1.5 })],
    ['a string version', list({ version: '1' })],
    ['an unsafe integer version', list({ version: 2 ** 53 })],
    ['a local time', list({ issuedAt: '2026-03-02T10:30:15' })],
    ['a time without milliseconds', list({ issuedAt: '2026-03-02T10:30:15Z' })],
    ['a date that does not exist', list({ issuedAt: '2026-02-30T10:30:15.000Z' })],
    ['revoked as an object', list({ revoked: {} })],
    ['an entry that is a string', list({ revoked: [SERIAL_A] })],
    ['an uppercase serial', list({ revoked: [{ ...entry, serial: SERIAL_A.toUpperCase() }] })],
    ['a serial with a sign byte', list({ revoked: [{ ...entry, serial: `00${SERIAL_A}` }] })],
    ['an odd-length serial', list({ revoked: [{ ...entry, serial: SERIAL_A.slice(1) }] })],
    ['an entry without revokedAt', list({ revoked: [{ serial: SERIAL_A }] })],
    ['an entry with an unknown field', list({ revoked: [{ ...entry, agent: 'x' }] })],
    ['an unknown reason', list({ revoked: [{ ...entry, reason: 'bored' }] })],
    ['a null reason', list({ revoked: [{ ...entry, reason: null }] })],
    ['serials out of order', list({ revoked: [{ ...entry, serial: SERIAL_B }, entry] })],
    ['a serial twice', list({ revoked: [entry, entry] })],
    ['keys in another order', JSON.stringify({ version: 1, fleet: 'prod', issuedAt: '2026-03-02T10:30:15.000Z', revoked: [] })],
    ['pretty-printed JSON', JSON.stringify(JSON.parse(list({})), null, 2)],
    ['a trailing newline', `${list({})}\n`],
    ['an escaped character', list({}).replace('"prod"', '"pro\\u0064"')],
  ])('refuses a signed payload with %s', (_, payload) => {
    const error = expectPkiError(() => verifyRevocationList(signedByCa(payload), ca.certPem, { fleet: 'prod' }), 'PKI_CRL_MALFORMED');
    expect(error).toBeInstanceOf(RevocationListError);
  });

  test('a signed, canonical list built by hand is accepted (the checks above are not vacuous)', () => {
    expect(verifyRevocationList(signedByCa(list({ revoked: [entry] })), ca.certPem, { fleet: 'prod' }).revoked).toEqual([
      { serial: SERIAL_A, revokedAt: new Date(entry.revokedAt) },
    ]);
    expect(JSON.stringify(validPayload())).toBe(signed.payload);
  });

  test('refuses an unreadable CA certificate and a bad fleet argument', () => {
    expectPkiError(() => verifyRevocationList(signed, 'nope', { fleet: 'prod' }), 'PKI_CA_MALFORMED');
    expectPkiError(() => verifyRevocationList(signed, ca.certPem, { fleet: 'Prod' }), 'PKI_INVALID_FLEET');
    expectPkiError(() => verifyRevocationList(signed, ca.certPem, { fleet: 'prod', minVersion: -1 }), 'PKI_INVALID_ARGUMENT');
  });

  test('any change to payload or signature is refused with a typed error (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: signed.payload.length - 1 }),
        fc.string({ minLength: 1, maxLength: 3 }),
        fc.boolean(),
        (offset, insert, inSignature) => {
          const target = inSignature ? signed.signature : signed.payload;
          const changed = target.slice(0, offset % target.length) + insert + target.slice((offset % target.length) + 1);
          fc.pre(changed !== target);
          const list = inSignature ? { ...signed, signature: changed } : { ...signed, payload: changed };
          expect(() => verifyRevocationList(list, ca.certPem, { fleet: 'prod' })).toThrow(RevocationListError);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('RevocationSet', () => {
  test('answers for serials in either case and knows its version', () => {
    const revocations = new RevocationSet(verifyRevocationList(signed, ca.certPem, { fleet: 'prod' }));
    expect(revocations.version).toBe(7);
    expect(revocations.size).toBe(3);
    expect(revocations.has(SERIAL_A)).toBe(true);
    expect(revocations.has(SERIAL_B.toUpperCase())).toBe(true);
    expect(revocations.has(SERIAL_C)).toBe(true);
    expect(revocations.has('a1b2c3d4e5f60718293a4b5c6d7e8f91')).toBe(false);
    expect(revocations.has('')).toBe(false);
  });
});
