import type { Redis } from 'ioredis';
import { ShoalError } from '@shoal/torrent';
import { KEY_PREFIX } from '../redis';
import { hashSecret, issueSecret, secretId } from '../secrets';

export type EnrollmentErrorCode =
  | 'ENROLL_TOKEN_MALFORMED'
  | 'ENROLL_TOKEN_UNKNOWN'
  | 'ENROLL_TOKEN_EXPIRED'
  | 'ENROLL_TOKEN_USED_UP'
  | 'ENROLL_BAD_CSR'
  | 'ENROLL_BAD_REQUEST';

export class EnrollmentError extends ShoalError {
  constructor(
    override readonly code: EnrollmentErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

export interface BootstrapTokenSpec {
  ttlSeconds: number;
  uses: number;
  /** The agent id every enrollment with this token gets (re-enrolling one host). */
  agentName?: string;
  labels?: Record<string, string>;
  description?: string;
}

export interface BootstrapTokenRecord {
  id: string;
  expiresAt: string;
  usesLeft: number;
  agentName: string | null;
  labels: Record<string, string>;
  description: string;
  createdAt: string;
}

const TOKEN_KIND = 'sbt';
const key = (id: string) => `${KEY_PREFIX}btoken:${id}`;
const INDEX = `${KEY_PREFIX}btokens`;

/**
 * Atomically checks and spends one use of a token. Returns a status and, on success, the record.
 * KEYS[1] token key; ARGV[1] now (ms); ARGV[2] SHA-256 of the presented token. Comparing hashes
 * needs no constant time: timing reveals nothing about a preimage.
 */
const CONSUME = `
local rec = redis.call('HGETALL', KEYS[1])
if #rec == 0 then return {'unknown'} end
local t = {}
for i = 1, #rec, 2 do t[rec[i]] = rec[i + 1] end
if t['hash'] ~= ARGV[2] then return {'unknown'} end
if tonumber(t['expiresAtMs']) <= tonumber(ARGV[1]) then return {'expired'} end
if tonumber(t['usesLeft']) <= 0 then return {'used-up'} end
redis.call('HINCRBY', KEYS[1], 'usesLeft', -1)
return {'ok', t['agentName'] or '', t['labels'] or '{}'}
`;

/** Bootstrap tokens: created by an admin, stored hashed in Redis, spent by enrollments. */
export class BootstrapTokens {
  constructor(
    private readonly redis: Redis,
    private readonly clock: () => number,
  ) {}

  async create(spec: BootstrapTokenSpec): Promise<{ token: string; record: BootstrapTokenRecord }> {
    const now = this.clock();
    const secret = issueSecret(TOKEN_KIND);
    const expiresAtMs = now + spec.ttlSeconds * 1000;
    const fields = {
      hash: secret.hash,
      expiresAtMs: String(expiresAtMs),
      usesLeft: String(spec.uses),
      agentName: spec.agentName ?? '',
      labels: JSON.stringify(spec.labels ?? {}),
      description: spec.description ?? '',
      createdAtMs: String(now),
    };
    await this.redis.multi().hset(key(secret.id), fields).pexpireat(key(secret.id), expiresAtMs).sadd(INDEX, secret.id).exec();
    return { token: secret.token, record: toRecord(secret.id, fields) };
  }

  /** Spends one use of `token`; throws EnrollmentError saying why it cannot be used. */
  async consume(token: unknown): Promise<{ id: string; agentName?: string; labels: Record<string, string> }> {
    const id = secretId(token, TOKEN_KIND);
    if (!id) throw new EnrollmentError('ENROLL_TOKEN_MALFORMED', 'bootstrap token is malformed');
    const result = (await this.redis.eval(CONSUME, 1, key(id), String(this.clock()), hashSecret(token as string))) as string[];
    switch (result[0]) {
      case 'ok':
        break;
      case 'expired':
        throw new EnrollmentError('ENROLL_TOKEN_EXPIRED', 'bootstrap token has expired');
      case 'used-up':
        throw new EnrollmentError('ENROLL_TOKEN_USED_UP', 'bootstrap token has no uses left');
      default:
        throw new EnrollmentError('ENROLL_TOKEN_UNKNOWN', 'bootstrap token is not known');
    }
    const agentName = result[1] || undefined;
    return { id, ...(agentName ? { agentName } : {}), labels: JSON.parse(result[2] as string) as Record<string, string> };
  }

  async list(): Promise<BootstrapTokenRecord[]> {
    const ids = await this.redis.smembers(INDEX);
    const records: BootstrapTokenRecord[] = [];
    for (const id of ids.sort()) {
      const fields = await this.redis.hgetall(key(id));
      if (Object.keys(fields).length === 0) {
        await this.redis.srem(INDEX, id); // expired and gone
        continue;
      }
      records.push(toRecord(id, fields));
    }
    return records;
  }

  async revoke(id: string): Promise<boolean> {
    const [[, removed] = []] = (await this.redis.multi().del(key(id)).srem(INDEX, id).exec()) ?? [];
    return removed === 1;
  }
}

function toRecord(id: string, f: Record<string, string>): BootstrapTokenRecord {
  return {
    id,
    expiresAt: new Date(Number(f.expiresAtMs)).toISOString(),
    usesLeft: Number(f.usesLeft),
    agentName: f.agentName || null,
    labels: JSON.parse(f.labels ?? '{}') as Record<string, string>,
    description: f.description ?? '',
    createdAt: new Date(Number(f.createdAtMs)).toISOString(),
  };
}
