import { join } from 'node:path';
import { type SwarmConfig, swarmConfig } from '@shoal/swarm';
import { type HostPort, LOG_LEVELS, type LogLevel, type Schema, integer, loadSettings, oneOf, parseHostPort, text } from '@shoal/config';

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
  logLevel: LogLevel;
}

/** A JSON object (or its text, from the environment) of swarm settings, each checked by libs/swarm. */
function parseSwarmSettings(raw: unknown): Partial<SwarmConfig> {
  const value: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('must be a JSON object of swarm settings');
  swarmConfig(value as Partial<SwarmConfig>);
  return value as Partial<SwarmConfig>;
}

export const AGENT_SCHEMA: Schema<AgentConfig> = {
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
  logLevel: { env: 'SHOAL_LOG_LEVEL', doc: 'pino log level', default: 'info', parse: oneOf(LOG_LEVELS) },
};

export function loadAgentConfig(options: { file?: string; env?: NodeJS.ProcessEnv; overrides?: Partial<Record<keyof AgentConfig, unknown>> } = {}): AgentConfig {
  const config = loadSettings(AGENT_SCHEMA, options);
  return { ...config, statusSocket: config.statusSocket || join(config.dataDir, 'agent.sock') };
}
