import { join } from 'node:path';
import { type DhtConfig, dhtConfig } from '@shoal/dht';
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
  /** The fleet's private DHT on the peer port. */
  dht: boolean;
  /** DHT nodes (agents' peer ports) to join through, besides the cached table and the tracker's peers. */
  dhtBootstrap: HostPort[];
  /** DHT settings, overriding libs/dht's DEFAULT_DHT_CONFIG field by field. */
  dhtSettings: Partial<DhtConfig>;
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

const ON = ['on', 'true', 'yes', '1'];
const OFF = ['off', 'false', 'no', '0'];

function parseOnOff(raw: unknown): boolean {
  if (typeof raw === 'boolean') return raw;
  const word = typeof raw === 'string' ? raw.trim().toLowerCase() : '';
  if (ON.includes(word)) return true;
  if (OFF.includes(word)) return false;
  throw new Error('must be on or off');
}

/** Bootstrap endpoints a configuration names: enough for a few per site, not a node list to flood. */
export const MAX_DHT_BOOTSTRAP_ENDPOINTS = 64;

/** host:port entries, comma-separated (environment) or a JSON list (file); port 0 names no node. */
function parseEndpointList(raw: unknown): HostPort[] {
  const items = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((item) => item.trim()).filter((item) => item !== '') : undefined;
  if (!items) throw new Error('must be a list of host:port');
  if (items.length > MAX_DHT_BOOTSTRAP_ENDPOINTS) throw new Error(`must name at most ${MAX_DHT_BOOTSTRAP_ENDPOINTS} endpoints`);
  return items.map((item) => {
    const endpoint = parseHostPort(item);
    if (endpoint.port === 0) throw new Error(`${String(item)}: port 0 names no node`);
    return endpoint;
  });
}

/** A JSON object (or its text, from the environment) of DHT settings, each checked by libs/dht. */
function parseDhtSettings(raw: unknown): Partial<DhtConfig> {
  const value: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('must be a JSON object of DHT settings');
  dhtConfig(value as Partial<DhtConfig>);
  return value as Partial<DhtConfig>;
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
  dht: {
    env: 'SHOAL_DHT',
    doc:
      "the fleet's private DHT (on or off): peers are found without the controller, over mutual TLS on the peer port; the routing table is kept in " +
      '<dataDir>/dht.json across restarts',
    default: true,
    parse: parseOnOff,
  },
  dhtBootstrap: {
    env: 'SHOAL_DHT_BOOTSTRAP',
    doc:
      "DHT nodes to join through (other agents' peer ports, host:port, comma-separated), besides the cached routing table and the peers the " +
      'tracker returns (every agent runs a node on its peer port). Default: none',
    default: [],
    parse: parseEndpointList,
  },
  dhtSettings: {
    env: 'SHOAL_DHT_SETTINGS',
    doc: 'DHT settings as a JSON object, e.g. {"k":8,"rpcTimeoutMs":5000} (libs/dht config.ts lists them with their defaults)',
    default: {},
    parse: parseDhtSettings,
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
