import { join } from 'node:path';
import { type SwarmConfig, swarmConfig } from '@shoal/swarm';
import { type HostPort, LOG_LEVELS, type LogLevel, type Schema, integer, loadSettings, oneOf, parseHostPort, text } from '@shoal/config';
import { parseRate } from '../bandwidth';
import { type InstallHook, parseAllowedNames, parseInstallHooks } from '../install';

/** Agent settings: each with its environment variable, default and meaning. */
export interface AgentConfig {
  dataDir: string;
  peerListen: HostPort;
  /** Address other agents dial; '' lets the tracker use the address it sees. */
  advertiseAddress: string;
  statusSocket: string;
  maxPeersPerPackage: number;
  /** Peer connections across all packages (accepted and dialled). */
  maxConnections: number;
  /** Swarm policies and limits, overriding libs/swarm's DEFAULT_SWARM_CONFIG field by field. */
  swarm: Partial<SwarmConfig>;
  /** Install hooks by package name: run when a fetch command asks for an install. */
  installHooks: Record<string, InstallHook>;
  /** Package names (or '*') whose release-carried, signed install command may run. */
  allowReleaseInstallCommands: string[];
  /** Bytes per second across all packages; 0 = unlimited. */
  uploadLimit: number;
  downloadLimit: number;
  /** Caps of background-class packages (which also yield to normal ones); 0 = unlimited. */
  backgroundUploadLimit: number;
  backgroundDownloadLimit: number;
  logLevel: LogLevel;
}

/** The settings as given: a background limit may be left to follow its normal limit. */
type AgentSettings = Omit<AgentConfig, 'backgroundUploadLimit' | 'backgroundDownloadLimit'> & {
  backgroundUploadLimit: number | 'auto';
  backgroundDownloadLimit: number | 'auto';
};

/** The background limit 'auto' stands for: a quarter of the normal limit, or this when that one is unlimited. */
export const BACKGROUND_LIMIT_WHEN_UNLIMITED = 4 * 1024 * 1024;

export function backgroundLimitFor(normal: number, setting: number | 'auto'): number {
  if (setting !== 'auto') return setting;
  return normal > 0 ? Math.max(1, Math.floor(normal / 4)) : BACKGROUND_LIMIT_WHEN_UNLIMITED;
}

function parseBackgroundRate(raw: unknown): number | 'auto' {
  if (typeof raw === 'string' && raw.trim().toLowerCase() === 'auto') return 'auto';
  try {
    return parseRate(raw);
  } catch (err) {
    throw new Error(`${(err as Error).message}, or 'auto'`);
  }
}

/** A JSON object (or its text, from the environment) of swarm settings, each checked by libs/swarm. */
function parseSwarmSettings(raw: unknown): Partial<SwarmConfig> {
  const value: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('must be a JSON object of swarm settings');
  swarmConfig(value as Partial<SwarmConfig>);
  return value as Partial<SwarmConfig>;
}

export const AGENT_SCHEMA: Schema<AgentSettings> = {
  dataDir: { env: 'SHOAL_AGENT_DATA_DIR', doc: 'folder made by `shoal agent enroll`: identity, package store', parse: text },
  peerListen: { env: 'SHOAL_PEER_LISTEN', doc: 'peer-wire TLS listener', default: { host: '0.0.0.0', port: 6881 }, parse: parseHostPort },
  advertiseAddress: {
    env: 'SHOAL_ADVERTISE_ADDRESS',
    doc: 'address announced to the tracker (default: the address the controller sees)',
    default: '',
    parse: (raw) => (typeof raw === 'string' ? raw.trim() : text(raw)),
  },
  statusSocket: { env: 'SHOAL_STATUS_SOCKET', doc: 'unix socket of the local status API (default <dataDir>/agent.sock)', default: '', parse: (raw) => String(raw) },
  maxPeersPerPackage: { env: 'SHOAL_MAX_PEERS', doc: 'peer connections dialled per package', default: 30, parse: integer(1, 1000) },
  maxConnections: { env: 'SHOAL_MAX_CONNECTIONS', doc: 'peer connections across all packages; more inbound ones are refused', default: 200, parse: integer(1, 100_000) },
  swarm: {
    env: 'SHOAL_SWARM',
    doc: 'swarm settings as a JSON object, e.g. {"choker":"fleet","webseedConcurrency":8} (libs/swarm config.ts lists them with their defaults)',
    default: {},
    parse: parseSwarmSettings,
  },
  installHooks: {
    env: 'SHOAL_INSTALL_HOOKS',
    doc:
      'install hooks as a JSON object of package name -> {"command": "...", "timeoutSeconds": 600}: when a fetch command asks for an install, ' +
      'the command runs with /bin/sh -c in the finished package folder once every byte is verified, with SHOAL_PACKAGE_PATH, SHOAL_RELEASE_NAME, ' +
      'SHOAL_RELEASE_VERSION, SHOAL_RELEASE_CHANNEL, SHOAL_INFO_HASH, SHOAL_ROLLOUT_ID, PATH and HOME as its whole environment; on timeout its ' +
      'process group gets SIGTERM, then SIGKILL. No hook (the default): the release counts as delivered once complete',
    default: {},
    parse: parseInstallHooks,
  },
  allowReleaseInstallCommands: {
    env: 'SHOAL_ALLOW_RELEASE_INSTALL',
    doc: "package names (comma-separated, or '*') whose signed release install command (shoal publish --install-command) may run; an installHooks entry for the name takes precedence. Default: none",
    default: [],
    parse: parseAllowedNames,
  },
  uploadLimit: {
    env: 'SHOAL_UPLOAD_LIMIT',
    doc: 'upload cap of the agent, all packages together, in bytes/s or with a unit (20mbit, 5MiB, 800kB); 0 = unlimited',
    default: 0,
    parse: parseRate,
  },
  downloadLimit: {
    env: 'SHOAL_DOWNLOAD_LIMIT',
    doc: 'download cap (peers and webseed), all packages together, like uploadLimit; 0 = unlimited',
    default: 0,
    parse: parseRate,
  },
  backgroundUploadLimit: {
    env: 'SHOAL_BACKGROUND_UPLOAD_LIMIT',
    doc:
      'upload cap of background-class packages (rollouts with --bandwidth background); they also yield to normal-class transfers, taking only ' +
      "what those leave of uploadLimit (Shoal's own traffic only: other programs' traffic is not detected). 'auto' = a quarter of uploadLimit, " +
      'or 4 MiB/s when that is unlimited; 0 = unlimited',
    default: 'auto',
    parse: parseBackgroundRate,
  },
  backgroundDownloadLimit: {
    env: 'SHOAL_BACKGROUND_DOWNLOAD_LIMIT',
    doc: "download cap of background-class packages, like backgroundUploadLimit; 'auto' = a quarter of downloadLimit, or 4 MiB/s when that is unlimited",
    default: 'auto',
    parse: parseBackgroundRate,
  },
  logLevel: { env: 'SHOAL_LOG_LEVEL', doc: 'pino log level', default: 'info', parse: oneOf(LOG_LEVELS) },
};

export function loadAgentConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Record<keyof AgentConfig, unknown>> } = {}): AgentConfig {
  const settings = loadSettings(AGENT_SCHEMA, options);
  return {
    ...settings,
    statusSocket: settings.statusSocket || join(settings.dataDir, 'agent.sock'),
    backgroundUploadLimit: backgroundLimitFor(settings.uploadLimit, settings.backgroundUploadLimit),
    backgroundDownloadLimit: backgroundLimitFor(settings.downloadLimit, settings.backgroundDownloadLimit),
  };
}
