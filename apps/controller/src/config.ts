import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, type HostPort, LOG_LEVELS, type LogLevel, type Schema, fraction, integer, loadSettings, oneOf, parseHostPort, text } from '@shoal/config';

export { ConfigError, parseHostPort, type HostPort };

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
  grpcKeepaliveSeconds: number;
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
  /** Folder served at /origin/ as a webseed origin; '' when off. */
  originDir: string;
  logLevel: LogLevel;
}

export const SCHEMA: Schema<ControllerConfig> = {
  dataDir: { env: 'SHOAL_DATA_DIR', doc: 'folder made by `shoal controller init`: CA, keys, TUF repository', parse: text },
  redisUrl: { env: 'REDIS_URL', doc: 'Redis holding tokens, the fleet registry and swarms', default: 'redis://127.0.0.1:6379', parse: text },
  restListen: { env: 'SHOAL_REST_LISTEN', doc: 'HTTPS admin API, TUF repository, health and metrics', default: { host: '127.0.0.1', port: 7443 }, parse: parseHostPort },
  grpcListen: { env: 'SHOAL_GRPC_LISTEN', doc: 'mutual-TLS gRPC for agents (identity, tracker)', default: { host: '127.0.0.1', port: 7444 }, parse: parseHostPort },
  grpcKeepaliveSeconds: {
    env: 'SHOAL_GRPC_KEEPALIVE',
    doc: 'agent connections are pinged this often; one that leaves a ping unanswered for a third of it (at least 1 s) is closed, and its control stream with it',
    default: 60,
    parse: integer(1, 3600),
  },
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
  originDir: {
    env: 'SHOAL_ORIGIN_DIR',
    doc: 'folder served read-only and without credentials at /origin/ as a BEP 19 webseed origin (a CDN stand-in for development); empty: off',
    default: '',
    parse: (raw) => (typeof raw === 'string' && raw.trim() === '' ? '' : existingFolder(raw)),
  },
  logLevel: { env: 'SHOAL_LOG_LEVEL', doc: 'pino log level', default: 'info', parse: oneOf(LOG_LEVELS) },
};

/** An existing folder, as an absolute path. */
function existingFolder(raw: unknown): string {
  const path = resolve(text(raw));
  let isFolder = false;
  try {
    isFolder = statSync(path).isDirectory();
  } catch {
    // missing or unreadable: reported below
  }
  if (!isFolder) throw new Error('must be an existing folder');
  return path;
}

/**
 * Builds the configuration from `file` (JSON, optional), the environment and `overrides` (from
 * command-line flags, highest priority). Throws ConfigError listing every bad field.
 */
export function loadConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Record<keyof ControllerConfig, unknown>> } = {}): ControllerConfig {
  return loadSettings(SCHEMA, {
    ...options,
    check: (config) => [
      ...(config.trackerDefaultNumwant > config.trackerMaxNumwant ? ['trackerDefaultNumwant: must not exceed trackerMaxNumwant'] : []),
      ...(config.trackerPeerTtlSeconds <= config.trackerIntervalSeconds
        ? ['trackerPeerTtlSeconds: must be longer than trackerIntervalSeconds, or live peers expire between announces']
        : []),
    ],
  });
}
