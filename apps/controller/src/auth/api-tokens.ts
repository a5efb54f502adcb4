import { readFile, rename, writeFile } from 'node:fs/promises';
import { ShoalError } from '@shoal/torrent';
import { issueSecret, secretId, secretMatches } from '../secrets';

/** Roles, each allowed what the ones after it are: admin > publisher > viewer. */
export const ROLES = ['admin', 'publisher', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export function roleAllows(held: Role, needed: Role): boolean {
  return ROLES.indexOf(held) <= ROLES.indexOf(needed);
}

export interface ApiTokenRecord {
  id: string;
  name: string;
  role: Role;
  hash: string;
  createdAt: string;
}

const TOKEN_KIND = 'sat';

/**
 * API tokens for the REST API, kept hashed in a 0600 file of the data folder: they must survive
 * a Redis restart, and `controller init` writes the first admin token before any server runs.
 */
export class ApiTokens {
  private records: ApiTokenRecord[] = [];

  private constructor(private readonly file: string) {}

  static async open(file: string): Promise<ApiTokens> {
    const tokens = new ApiTokens(file);
    await tokens.reload();
    return tokens;
  }

  async reload(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.records = [];
        return;
      }
      throw err;
    }
    const parsed: unknown = JSON.parse(text);
    if (!Array.isArray(parsed)) throw new ShoalError('API_TOKENS_CORRUPT', `${this.file}: expected a JSON array`);
    this.records = parsed as ApiTokenRecord[];
  }

  /** The record a presented bearer token belongs to, if any. */
  authenticate(token: string): ApiTokenRecord | undefined {
    const id = secretId(token, TOKEN_KIND);
    if (!id) return undefined;
    const record = this.records.find((r) => r.id === id);
    return record && secretMatches(token, record.hash) ? record : undefined;
  }

  async create(name: string, role: Role, now: Date): Promise<{ token: string; record: Omit<ApiTokenRecord, 'hash'> }> {
    const secret = issueSecret(TOKEN_KIND);
    const record: ApiTokenRecord = { id: secret.id, name, role, hash: secret.hash, createdAt: now.toISOString() };
    this.records = [...this.records, record];
    await this.save();
    return { token: secret.token, record: publicView(record) };
  }

  list(): Omit<ApiTokenRecord, 'hash'>[] {
    return this.records.map(publicView);
  }

  async revoke(id: string): Promise<boolean> {
    const before = this.records.length;
    this.records = this.records.filter((r) => r.id !== id);
    if (this.records.length === before) return false;
    await this.save();
    return true;
  }

  private async save(): Promise<void> {
    const temporary = `${this.file}.${process.pid}.tmp`;
    await writeFile(temporary, `${JSON.stringify(this.records, null, 2)}\n`, { mode: 0o600 });
    await rename(temporary, this.file);
  }
}

function publicView({ hash: _hash, ...rest }: ApiTokenRecord): Omit<ApiTokenRecord, 'hash'> {
  return rest;
}
