import type { Redis } from 'ioredis';
import type { Location } from '@shoal/topology';
import { KEY_PREFIX } from '../redis';

export type AgentState = 'active' | 'revoked';

export interface AgentRecord {
  id: string;
  labels: Record<string, string>;
  hostname: string;
  softwareVersion: string;
  addresses: string[];
  enrolledAt: string;
  lastSeen: string | null;
  certificateSerial: string;
  certificateExpiresAt: string;
  state: AgentState;
}

const key = (id: string) => `${KEY_PREFIX}agent:${id}`;
const INDEX = `${KEY_PREFIX}agents`;
/** lastSeen is written at most this often per agent: announces arrive far more often. */
const LAST_SEEN_RESOLUTION_MS = 10_000;

/** The fleet registry: one Redis hash per agent, plus an index set. */
export class AgentRegistry {
  private readonly lastSeenWritten = new Map<string, number>();
  private readonly locations = new Map<string, { location: Location; at: number }>();

  constructor(
    private readonly redis: Redis,
    private readonly clock: () => number,
  ) {}

  async recordEnrollment(agent: Omit<AgentRecord, 'lastSeen' | 'state' | 'enrolledAt'>): Promise<AgentRecord> {
    const now = new Date(this.clock()).toISOString();
    const existing = await this.get(agent.id);
    const record: AgentRecord = {
      ...agent,
      enrolledAt: existing?.enrolledAt ?? now,
      lastSeen: now,
      state: 'active',
    };
    await this.redis.multi().hset(key(agent.id), serialise(record)).sadd(INDEX, agent.id).exec();
    this.locations.delete(agent.id);
    return record;
  }

  async recordCertificate(id: string, serial: string, expiresAt: string): Promise<void> {
    await this.redis.hset(key(id), { certificateSerial: serial, certificateExpiresAt: expiresAt });
  }

  async get(id: string): Promise<AgentRecord | undefined> {
    const fields = await this.redis.hgetall(key(id));
    return Object.keys(fields).length === 0 ? undefined : deserialise(fields);
  }

  async list(): Promise<AgentRecord[]> {
    const ids = (await this.redis.smembers(INDEX)).sort();
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(key(id));
    const results = (await pipeline.exec()) ?? [];
    return results
      .map(([, fields]) => fields as Record<string, string>)
      .filter((fields) => Object.keys(fields).length > 0)
      .map(deserialise);
  }

  async setLabels(id: string, labels: Record<string, string>): Promise<AgentRecord | undefined> {
    if (!(await this.redis.exists(key(id)))) return undefined;
    await this.redis.hset(key(id), { labels: JSON.stringify(labels) });
    this.locations.delete(id);
    return this.get(id);
  }

  async setState(id: string, state: AgentState): Promise<void> {
    await this.redis.hset(key(id), { state });
  }

  /** Notes that an agent was heard from, writing at most once per resolution interval. */
  touch(id: string): void {
    const now = this.clock();
    if (now - (this.lastSeenWritten.get(id) ?? 0) < LAST_SEEN_RESOLUTION_MS) return;
    this.lastSeenWritten.set(id, now);
    void this.redis.hset(key(id), { lastSeen: new Date(now).toISOString() }).catch(() => undefined);
  }

  /** An agent's topology labels, cached briefly: the tracker asks on every announce. */
  async location(id: string): Promise<Location> {
    const now = this.clock();
    const cached = this.locations.get(id);
    if (cached && now - cached.at < LAST_SEEN_RESOLUTION_MS) return cached.location;
    const raw = await this.redis.hget(key(id), 'labels');
    const labels = raw ? (JSON.parse(raw) as Record<string, string>) : {};
    const location = { region: labels.region ?? '', zone: labels.zone ?? '', site: labels.site ?? '' };
    this.locations.set(id, { location, at: now });
    return location;
  }
}

function serialise(record: AgentRecord): Record<string, string> {
  return {
    id: record.id,
    labels: JSON.stringify(record.labels),
    hostname: record.hostname,
    softwareVersion: record.softwareVersion,
    addresses: JSON.stringify(record.addresses),
    enrolledAt: record.enrolledAt,
    lastSeen: record.lastSeen ?? '',
    certificateSerial: record.certificateSerial,
    certificateExpiresAt: record.certificateExpiresAt,
    state: record.state,
  };
}

function deserialise(f: Record<string, string>): AgentRecord {
  return {
    id: f.id ?? '',
    labels: JSON.parse(f.labels || '{}') as Record<string, string>,
    hostname: f.hostname ?? '',
    softwareVersion: f.softwareVersion ?? '',
    addresses: JSON.parse(f.addresses || '[]') as string[],
    enrolledAt: f.enrolledAt ?? '',
    lastSeen: f.lastSeen || null,
    certificateSerial: f.certificateSerial ?? '',
    certificateExpiresAt: f.certificateExpiresAt ?? '',
    state: f.state === 'revoked' ? 'revoked' : 'active',
  };
}
