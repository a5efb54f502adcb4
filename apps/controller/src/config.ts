import { readFileSync } from 'node:fs';
import { ShoalError } from '@shoal/torrent';

/**
 * Controller configuration: every setting, its default and its documentation live here. Values
 * come from a JSON file, then environment variables (which win). Everything is validated at
 * start; each bad field gets one line saying what is wrong.
 */
export interface ControllerConfig {
  dataDir: string;
  redisUrl: string;
  restListen: HostPort;
  grpcListen: HostPort;
  enrollListen: HostPort;
  publicHost: string;
  agentCertLifetimeSeconds: number;
  trackerIntervalSeconds: number;
  trackerPeerTtlSeconds: number;
  trackerDefaultNumwant: number;
  trackerMaxNumwant: number;
  trackerRemoteShare: number;
  maxReleaseBytes: number;
  tufRefreshSeconds: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export interface HostPort {
  host: string;
  port: number;
}

interface Field<K extends keyof ControllerConfig> {
  env: string;
  doc: string;
  default?: ControllerConfig[K];
  parse(raw: unknown): ControllerConfig[K];
}

type Schema = { [K in keyof ControllerConfig]: Field<K> };

export class ConfigError extends ShoalError {
  constructor(readonly problems: string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

const text = (raw: unknown): string => {
  if (typeof raw !== 'string' || raw.trim() === '') throw new Error('must be a non-empty string');
  return raw.trim();
};

const integer =
  (min: number, max: number) =>
  (raw: unknown): number => {
    const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`must be an integer from ${min} to ${max}`);
    }
    return value;
  };

const fraction = (raw: unknown): number => {
  const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new Error('must be a number from 0 to 1');
  }
  return value;
};

export function parseHostPort(raw: unknown): HostPort {
  const value = text(raw);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new Error('must be host:port (e.g. 127.0.0.1:7443 or [::1]:7443; port 0 picks a free one)');
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const SCHEMA: Schema = {
  dataDir: { env: 'SHOAL_DATA_DIR', doc: 'folder made by `shoal controller init`: CA, keys, TUF repository', parse: text },
  redisUrl: { env: 'REDIS_URL', doc: 'Redis holding tokens, the fleet registry and swarms', default: 'redis://127.0.0.1:6379', parse: text },
  restListen: { env: 'SHOAL_REST_LISTEN', doc: 'HTTPS admin API, TUF repository, health and metrics', default: { host: '127.0.0.1', port: 7443 }, parse: parseHostPort },
  grpcListen: { env: 'SHOAL_GRPC_LISTEN', doc: 'mutual-TLS gRPC for agents (identity, tracker)', default: { host: '127.0.0.1', port: 7444 }, parse: parseHostPort },
  enrollListen: { env: 'SHOAL_ENROLL_LISTEN', doc: 'server-authenticated TLS gRPC for enrollment', default: { host: '127.0.0.1', port: 7445 }, parse: parseHostPort },
  publicHost: { env: 'SHOAL_PUBLIC_HOST', doc: 'host name or address agents use to reach this controller (in its certificate)', default: '127.0.0.1', parse: text },
  agentCertLifetimeSeconds: { env: 'SHOAL_AGENT_CERT_LIFETIME', doc: 'agent certificate lifetime; agents renew at half-life', default: 86_400, parse: integer(300, 30 * 86_400) },
  trackerIntervalSeconds: { env: 'SHOAL_TRACKER_INTERVAL', doc: 'seconds between announces that the tracker asks for', default: 30, parse: integer(1, 3600) },
  trackerPeerTtlSeconds: { env: 'SHOAL_TRACKER_PEER_TTL', doc: 'a peer that has not announced for this long is dropped', default: 90, parse: integer(2, 4 * 3600) },
  trackerDefaultNumwant: { env: 'SHOAL_TRACKER_NUMWANT', doc: 'peers returned when an announce asks for none', default: 50, parse: integer(1, 1000) },
  trackerMaxNumwant: { env: 'SHOAL_TRACKER_MAX_NUMWANT', doc: 'cap on peers returned per announce', default: 200, parse: integer(1, 1000) },
  trackerRemoteShare: { env: 'SHOAL_TRACKER_REMOTE_SHARE', doc: 'share of returned peers drawn at random from other regions, so pieces keep crossing sites', default: 0.2, parse: fraction },
  maxReleaseBytes: { env: 'SHOAL_MAX_RELEASE_BYTES', doc: 'largest package metainfo accepted by publish', default: 64 * 1024 * 1024, parse: integer(1024, 256 * 1024 * 1024) },
  tufRefreshSeconds: { env: 'SHOAL_TUF_REFRESH', doc: 'how often timestamp/snapshot expiry is checked and re-signed', default: 600, parse: integer(5, 86_400) },
  logLevel: {
    env: 'SHOAL_LOG_LEVEL',
    doc: 'pino log level',
    default: 'info',
    parse: (raw) => {
      if (!LOG_LEVELS.includes(raw as (typeof LOG_LEVELS)[number])) throw new Error(`must be one of ${LOG_LEVELS.join(', ')}`);
      return raw as ControllerConfig['logLevel'];
    },
  },
};

/**
 * Builds the configuration from `file` (JSON, optional), the environment and `overrides` (from
 * command-line flags, highest priority). Throws ConfigError listing every bad field.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Record<keyof ControllerConfig, unknown>> } = {}): ControllerConfig {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  let fromFile: Record<string, unknown> = {};
  if (options.file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(options.file, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('must hold a JSON object');
      fromFile = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError([`${options.file}: ${(err as Error).message}`]);
    }
    for (const key of Object.keys(fromFile)) {
      if (!Object.hasOwn(SCHEMA, key)) problems.push(`${key} (in ${options.file}): unknown setting`);
    }
  }
  const config: Partial<Record<keyof ControllerConfig, unknown>> = {};
  for (const key of Object.keys(SCHEMA) as (keyof ControllerConfig)[]) {
    const field = SCHEMA[key] as Field<typeof key>;
    const override = options.overrides?.[key];
    const [raw, source] =
      override !== undefined
        ? [override, 'command line']
        : env[field.env] !== undefined
          ? [env[field.env], field.env]
          : fromFile[key] !== undefined
            ? [fromFile[key], options.file as string]
            : [undefined, 'default'];
    if (raw === undefined) {
      if (field.default === undefined) problems.push(`${key} (${field.env}): required: ${field.doc}`);
      else config[key] = field.default;
      continue;
    }
    try {
      config[key] = field.parse(raw);
    } catch (err) {
      problems.push(`${key} (${source}): ${(err as Error).message}, got ${JSON.stringify(raw)}`);
    }
  }
  const result = config as ControllerConfig;
  if (problems.length === 0 && result.trackerDefaultNumwant > result.trackerMaxNumwant) {
    problems.push('trackerDefaultNumwant: must not exceed trackerMaxNumwant');
  }
  if (problems.length === 0 && result.trackerPeerTtlSeconds <= result.trackerIntervalSeconds) {
    problems.push('trackerPeerTtlSeconds: must be longer than trackerIntervalSeconds, or live peers expire between announces');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result;
}
