import { readFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '@shoal/config';
import { startAgent } from './daemon/agent';
import { loadAgentConfig } from './daemon/config';
import { tuneHeapForStreaming } from './daemon/heap';
import { importLocalPackage } from './daemon/import';
import { ShoalError } from '@shoal/torrent';
import { enrollAgent } from './identity/enroll';
import { identityLayout } from './identity/state';

export { enrollAgent } from './identity/enroll';
export { CertificateRenewer } from './identity/renewer';
export { ControlClient, type ControlClientOptions } from './control/control-client';
export { identityLayout, loadIdentity, halfLife } from './identity/state';
export { PeerServer, connectToPeer, type AdmittedConnection, type TlsIdentity } from './peer/tls';
export { AdmissionError, admitPeer, wireName, type WirePackage } from './peer/admission';
export { startAgent, type RunningAgent } from './daemon/agent';
export { loadAgentConfig, AGENT_SCHEMA, type AgentConfig } from './daemon/config';
export { importLocalPackage } from './daemon/import';

/** Version the agent reports at enrollment. */
export const AGENT_VERSION = '0.1.0';

export interface CommandOutput {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function agentCommand(argv: string[], out: CommandOutput): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'enroll') return enroll(rest, out);
  if (sub === 'start') return start(rest, out);
  if (sub === 'import') return importCommand(rest, out);
  throw new ShoalError('CLI_USAGE', `unknown agent command ${JSON.stringify(sub ?? '')}: use enroll, start or import`);
}

async function start(argv: string[], out: CommandOutput): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'data-dir': { type: 'string' }, config: { type: 'string' } } });
  let config;
  try {
    config = loadAgentConfig({ ...(values.config ? { file: values.config } : {}), overrides: values['data-dir'] ? { dataDir: values['data-dir'] } : {} });
  } catch (err) {
    if (err instanceof ConfigError) {
      out.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  tuneHeapForStreaming();
  const agent = await startAgent(config);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await agent.close();
  return 0;
}

async function importCommand(argv: string[], out: CommandOutput): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { name: { type: 'string' }, version: { type: 'string' }, 'data-dir': { type: 'string' }, json: { type: 'boolean' } },
  });
  const dataDir = values['data-dir'] ?? process.env.SHOAL_AGENT_DATA_DIR;
  if (positionals.length !== 2 || !values.name || !values.version || !dataDir) {
    throw new ShoalError('CLI_USAGE', 'agent import takes <pkg.torrent> <path> --name NAME --version VERSION --data-dir DIR');
  }
  const [packageFile, dataPath] = positionals as [string, string];
  const metainfoBytes = await readFile(packageFile).catch((err: NodeJS.ErrnoException) => {
    throw new ShoalError('CLI_BAD_INPUT', `${packageFile}: ${err.code ?? err.message}`);
  });
  const entry = await importLocalPackage({ dataDir, name: values.name, version: values.version, metainfoBytes, dataPath });
  out.stdout.write(values.json ? `${JSON.stringify({ name: entry.name, version: entry.version, infoHash: entry.infoHashHex })}\n` : `imported ${entry.name}@${entry.version} (${entry.infoHashHex}); the agent seeds it\n`);
  return 0;
}

/** `shoal status`: what the local agent daemon reports on its status socket. */
export async function statusCommand(argv: string[], out: CommandOutput): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'data-dir': { type: 'string' }, socket: { type: 'string' }, json: { type: 'boolean' } } });
  const dataDir = values['data-dir'] ?? process.env.SHOAL_AGENT_DATA_DIR;
  const socketPath = values.socket ?? (dataDir ? join(dataDir, 'agent.sock') : undefined);
  if (!socketPath) throw new ShoalError('CLI_USAGE', 'status needs --data-dir DIR or --socket PATH');
  const body = await new Promise<string>((resolve, reject) => {
    const req = httpGet({ socketPath, path: '/status' }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', (err: NodeJS.ErrnoException) => reject(new ShoalError('CLI_UNREACHABLE', `no agent answers at ${socketPath}: ${err.code ?? err.message}`)));
  });
  if (values.json) {
    out.stdout.write(`${body}\n`);
    return 0;
  }
  const status = JSON.parse(body) as StatusView;
  out.stdout.write(`agent ${status.agentId} (fleet ${status.fleet})\n`);
  out.stdout.write(status.dht ? `  dht: ${status.dht.nodes} nodes in the routing table, ${status.dht.connections} connections\n` : '  dht: off\n');
  const shown = new Set<string>();
  for (const p of status.packages) {
    shown.add(`${p.name}@${p.version}`);
    const transfer = p.complete ? 'seeding' : `${p.verifiedPieces}/${p.totalPieces} pieces${p.bandwidthClass === 'background' ? ' (background)' : ''}`;
    out.stdout.write(`  ${p.name}@${p.version}: ${describePhase(p.phase, p.exitCode, p.message)}, ${transfer}\n`);
  }
  for (const r of status.releases ?? []) {
    if (!shown.has(`${r.name}@${r.version}`)) out.stdout.write(`  ${r.name}@${r.version}: ${describePhase(r.phase, r.exitCode, r.message)}, not active\n`);
  }
  return 0;
}

interface StatusView {
  agentId: string;
  fleet: string;
  dht?: { nodes: number; connections: number } | null;
  packages: { name: string; version: string; verifiedPieces: number; totalPieces: number; complete: boolean; bandwidthClass?: string; phase: string | null; exitCode: number; message: string }[];
  releases?: { name: string; version: string; phase: string; exitCode: number; message: string }[];
}

/** A release phase in words, with the install hook's exit code and the first line of the message where they tell something. */
function describePhase(phase: string | null, exitCode: number, message: string): string {
  const words = (phase ?? 'RELEASE_PHASE_UNSPECIFIED').replace(/^RELEASE_PHASE_/, '').toLowerCase();
  const reason = message.split('\n', 1)[0] ?? '';
  if (phase === 'RELEASE_PHASE_INSTALLED') return `installed (exit ${exitCode})`;
  if (phase === 'RELEASE_PHASE_FAILED') return `failed${exitCode >= 0 ? ` (exit ${exitCode})` : ''}: ${reason}`;
  if (phase === 'RELEASE_PHASE_UNSPECIFIED' || phase === null) return 'held';
  return words;
}

async function enroll(argv: string[], out: CommandOutput): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      token: { type: 'string' },
      controller: { type: 'string' },
      ca: { type: 'string' },
      'data-dir': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const token = values.token ?? process.env.SHOAL_BOOTSTRAP_TOKEN;
  const dataDir = values['data-dir'] ?? process.env.SHOAL_AGENT_DATA_DIR;
  if (!token || !values.controller || !values.ca || !dataDir) {
    throw new ShoalError('CLI_USAGE', 'agent enroll needs --token (or SHOAL_BOOTSTRAP_TOKEN), --controller HOST:PORT, --ca FILE and --data-dir DIR');
  }
  const caPem = await readFile(values.ca, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new ShoalError('CLI_BAD_INPUT', `${values.ca}: cannot read the fleet CA: ${err.code ?? err.message}`);
  });
  const record = await enrollAgent({ dataDir, controller: values.controller, caPem, token, softwareVersion: AGENT_VERSION, now: new Date() });
  out.stdout.write(
    values.json
      ? `${JSON.stringify(record)}\n`
      : `enrolled as ${record.agentId} in fleet ${record.fleet}; key and certificate in ${identityLayout(dataDir).key.replace(/\/[^/]+$/, '')}\n`,
  );
  return 0;
}
