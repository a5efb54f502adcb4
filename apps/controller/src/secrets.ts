import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Bearer secrets (bootstrap tokens, API tokens): `<kind>_<id>_<secret>`. The id locates the
 * record; only a SHA-256 of the whole token is stored (the secret has 256 bits of entropy, so a
 * fast hash is enough), and comparison is constant-time.
 */
export interface IssuedSecret {
  id: string;
  token: string;
  hash: string;
}

const TOKEN = /^([a-z]{2,8})_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export function issueSecret(kind: string): IssuedSecret {
  const id = randomBytes(8).toString('hex');
  const token = `${kind}_${id}_${randomBytes(32).toString('base64url')}`;
  return { id, token, hash: hashSecret(token) };
}

export function hashSecret(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The id of a well-formed token of `kind`, or undefined for anything else. */
export function secretId(token: unknown, kind: string): string | undefined {
  if (typeof token !== 'string' || token.length > 128) return undefined;
  const match = TOKEN.exec(token);
  return match && match[1] === kind ? match[2] : undefined;
}

export function secretMatches(token: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(token), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
