/**
 * Shoal inside the lab: Redis, the controller (serving the webseed origin) and agents as real
 * processes, each in its own namespace with its own address. The same steps as the loopback
 * swarm fleet of libs/testing (swarm-fleet.ts), with every listener on a lab address:
 *   - Redis and the controller run in the infrastructure host; the controller's TLS certificate
 *     names the infrastructure address (`controller init --host`), its REST, gRPC and enrollment
 *     listeners bind to it, and it serves the origin folder at /origin/;
 *   - the driver (root namespace, no lab address) reaches the REST API through a unix socket
 *     relayed into the infrastructure namespace (unix-forward.ts) and each agent's status API
 *     through the agent's own unix socket;
 *   - each agent is enrolled with a bootstrap token pinning its name and labels, then started in
 *     its host with SHOAL_PEER_LISTEN / SHOAL_ADVERTISE_ADDRESS on the host's address (a host that
 *     runs another client, libtorrent, is only enrolled: it gets the same controller-issued
 *     certificate an agent would hold).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { withAgentMallocTuning } from '@shoal/config';
import { type AgentPackageStatus, SHOAL_BIN, agentStatus, runShoal, scratchDir } from '@shoal/testing';
import type { CommandResult, Lab, LabHost, LabProcess } from './lab';

/** The controller's REST API, which also serves the webseed origin at /origin/. */
export const REST_PORT = 7443;
const GRPC_PORT = 7444;
const ENROLL_PORT = 7445;
const REDIS_PORT = 6379;
/** Where every lab host's peer listens (Shoal agent or libtorrent). */
export const PEER_PORT = 6881;
const START_TIMEOUT_MS = 60_000;

export interface LabAgent {
  name: string;
  host: LabHost;
  agentId: string;
  dataDir: string;
  process: LabProcess;
}

export interface LabRelease {
  name: string;
  version: string;
  torrentPath: string;
  /** Folder in the origin holding the release's single file (what `agent import` takes). */
  folder: string;
  bytes: number;
}

export interface LabAgentSpec {
  name: string;
  host: LabHost;
  labels?: Record<string, string>;
  /** Extra environment for this agent. */
  env?: NodeJS.ProcessEnv;
  /** Node flags before the agent's script, e.g. ['--cpu-prof', '--cpu-prof-dir=DIR']. */
  nodeArgs?: string[];
  /** Imported before the agent starts, so it starts as a seed of this release. */
  seed?: LabRelease;
}

export interface ShoalLab {
  lab: Lab;
  controllerDataDir: string;
  originDir: string;
  /** https://<infra address>:7443 */
  restUrl: string;
  controller: LabProcess;
  redis: LabProcess;
  agents: Map<string, LabAgent>;
  rest<T = unknown>(method: string, path: string, json?: unknown, token?: string | null): Promise<{ status: number; body: T }>;
  /** Writes `bytes` random bytes to origin/<name>/<name>.bin, packs it with the origin as webseed and publishes name@version. */
  publish(name: string, version: string, bytes: number, options?: { pieceLength?: string }): Promise<LabRelease>;
  /**
   * Enrolls these hosts (at most `concurrency` at a time) the way an agent enrolls: a key made in
   * the host and a certificate from the controller, in the returned data folders (see
   * `identityFiles`); imports `seed` releases. Nothing is started.
   */
  enroll(specs: LabAgentSpec[], concurrency?: number): Promise<string[]>;
  /** Enrolls, starts and waits for the control streams of these agents. */
  startAgents(specs: LabAgentSpec[], concurrency?: number): Promise<LabAgent[]>;
  fetch(agent: LabAgent, release: LabRelease): Promise<void>;
  packageStatus(agent: LabAgent, release: LabRelease): Promise<AgentPackageStatus | undefined>;
  /** Bytes the origin served so far (the controller's shoal_origin_bytes_sent_total). */
  originBytes(): Promise<number>;
  /** `shoal verify` of a copy at `path` (the release's file). */
  verifyCopy(release: LabRelease, path: string): Promise<CommandResult>;
  stop(): Promise<void>;
}

export async function startShoalLab(lab: Lab): Promise<ShoalLab> {
  if (spawnSync('redis-server', ['--version']).error) throw new Error('the lab runs its own Redis: redis-server is not installed (apt-get install redis-server)');
  const work = await scratchDir(`lab-${lab.runId}`);
  // An interrupted run must not leave release copies behind either.
  lab.removeWithLab(work.path);
  const originDir = join(work.path, 'origin');
  const agentsDir = join(work.path, 'agents');
  const controllerDataDir = join(work.path, 'controller');
  await mkdir(originDir, { recursive: true });
  await mkdir(agentsDir, { recursive: true });
  const infra = lab.infra;
  const restUrl = `https://${infra.address}:${REST_PORT}`;
  const agents = new Map<string, LabAgent>();
  const started: LabProcess[] = [];

  const stop = async (): Promise<void> => {
    // Agents first (they would otherwise reconnect to a vanishing controller), then the rest.
    await Promise.allSettled([...agents.values()].map((a) => a.process.stop()));
    await Promise.allSettled(started.map((p) => p.stop()));
    await work.remove();
  };

  try {
    const init = runShoal(['controller', 'init', '--data-dir', controllerDataDir, '--fleet', `lab-${lab.runId}`, '--host', infra.address]);
    if (init.status !== 0) throw new Error(`controller init failed: ${init.stderr}`);
    const caPem = await readFile(join(controllerDataDir, 'ca', 'ca.pem'), 'utf8');
    const adminToken = (await readFile(join(controllerDataDir, 'admin.token'), 'utf8')).trim();

    const redis = lab.spawn(infra, ['redis-server', '--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work.path]);
    started.push(redis);
    await redis.waitForLine((l) => l.includes('Ready to accept connections'), START_TIMEOUT_MS);

    const controller = lab.spawn(infra, [process.execPath, SHOAL_BIN, 'controller', 'start', '--data-dir', controllerDataDir], {
      env: {
        REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}/0`,
        SHOAL_REST_LISTEN: `${infra.address}:${REST_PORT}`,
        SHOAL_GRPC_LISTEN: `${infra.address}:${GRPC_PORT}`,
        SHOAL_ENROLL_LISTEN: `${infra.address}:${ENROLL_PORT}`,
        SHOAL_PUBLIC_HOST: infra.address,
        SHOAL_ORIGIN_DIR: originDir,
        SHOAL_LOG_LEVEL: 'info',
      },
    });
    started.push(controller);

    const restSocket = join(work.path, 'rest.sock');
    const forward = lab.spawn(infra, [process.execPath, '-r', require.resolve('ts-node/register/transpile-only'), join(__dirname, 'unix-forward.ts'), restSocket, infra.address, String(REST_PORT)], {
      // Our own tsconfig, whatever the caller set (nx's jest target exports compiler options that TS 6 refuses).
      env: { TS_NODE_PROJECT: join(__dirname, '..', 'tsconfig.json'), TS_NODE_COMPILER_OPTIONS: '{}' },
    });
    started.push(forward);
    await controller.waitForLine((l) => l.includes('controller started'), START_TIMEOUT_MS);
    await forward.waitForLine((l) => l.startsWith('forwarding'), START_TIMEOUT_MS);

    const rest: ShoalLab['rest'] = (method, path, json, token = adminToken) =>
      new Promise((resolve, reject) => {
        const payload = json === undefined ? undefined : Buffer.from(JSON.stringify(json));
        const req = httpsRequest(
          {
            socketPath: restSocket,
            // The certificate is checked against the infrastructure address, as an agent would.
            host: infra.address,
            path,
            method,
            ca: caPem,
            // A fresh connection per call: reusing idle ones races the server's keep-alive timeout.
            agent: false,
            headers: {
              ...(token ? { authorization: `Bearer ${token}` } : {}),
              ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
            },
          },
          (res) => void readBody(res).then((text) => resolve({ status: res.statusCode ?? 0, body: parseMaybeJson(text) as never }), reject),
        );
        req.on('error', reject);
        req.end(payload);
      });

    const untilConnected = async (names: string[]): Promise<void> => {
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        const listed = await rest<{ id: string; controlStream: boolean }[]>('GET', '/v1/agents');
        const connected = new Set(listed.body.filter((a) => a.controlStream).map((a) => a.id));
        const missing = names.filter((n) => !connected.has(n));
        if (missing.length === 0) return;
        if (Date.now() > deadline) throw new Error(`agents never opened their control stream: ${missing.join(', ')}`);
        await sleep(200);
      }
    };

    const enroll = async (spec: LabAgentSpec): Promise<string> => {
      const created = await rest<{ token: string }>('POST', '/v1/bootstrap-tokens', { agentName: spec.name, ...(spec.labels ? { labels: spec.labels } : {}) });
      if (created.status !== 201) throw new Error(`token for ${spec.name}: HTTP ${created.status} ${JSON.stringify(created.body)}`);
      const dataDir = join(agentsDir, spec.name);
      const enrolled = await lab.run(spec.host, [
        process.execPath,
        SHOAL_BIN,
        'agent',
        'enroll',
        '--token',
        created.body.token,
        '--controller',
        `${infra.address}:${ENROLL_PORT}`,
        '--ca',
        join(controllerDataDir, 'ca', 'ca.pem'),
        '--data-dir',
        dataDir,
      ]);
      if (enrolled.status !== 0) throw new Error(`agent enroll of ${spec.name} in ${spec.host.name} failed: ${enrolled.stderr}`);
      if (spec.seed) {
        const imported = runShoal(['agent', 'import', spec.seed.torrentPath, spec.seed.folder, '--name', spec.seed.name, '--version', spec.seed.version, '--data-dir', dataDir]);
        if (imported.status !== 0) throw new Error(`agent import into ${spec.name} failed: ${imported.stderr}`);
      }
      return dataDir;
    };

    const startAgent = async (spec: LabAgentSpec, dataDir: string): Promise<LabAgent> => {
      const agentProcess = lab.spawn(spec.host, [process.execPath, ...(spec.nodeArgs ?? []), SHOAL_BIN, 'agent', 'start', '--data-dir', dataDir], {
        env: {
          SHOAL_PEER_LISTEN: `${spec.host.address}:${PEER_PORT}`,
          SHOAL_ADVERTISE_ADDRESS: spec.host.address,
          // 'agent started' and 'package complete and verified' are info lines.
          SHOAL_LOG_LEVEL: 'info',
          ...spec.env,
          // As a deployed agent runs (libs/config: AGENT_MALLOC_TUNABLES).
          GLIBC_TUNABLES: withAgentMallocTuning({ ...process.env, ...spec.env }).GLIBC_TUNABLES,
        },
      });
      const line = await agentProcess.waitForLine((l) => l.includes('agent started'), START_TIMEOUT_MS);
      const agent: LabAgent = { name: spec.name, host: spec.host, agentId: (JSON.parse(line) as { agentId: string }).agentId, dataDir, process: agentProcess };
      agents.set(spec.name, agent);
      return agent;
    };

    const packageStatus: ShoalLab['packageStatus'] = async (agent, release) => {
      const status = await agentStatus(agent.dataDir);
      return status.packages.find((p) => p.name === release.name && p.version === release.version);
    };

    return {
      lab,
      controllerDataDir,
      originDir,
      restUrl,
      controller,
      redis,
      agents,
      rest,
      async publish(name, version, bytes, publishOptions = {}) {
        const folder = join(originDir, name);
        await mkdir(folder, { recursive: true });
        await writeRandomFile(join(folder, `${name}.bin`), bytes);
        const torrentPath = join(work.path, `${name}-${version}.torrent`);
        // A folder holding one file packs as a single-file package named after the file; BEP 19
        // then asks for <url><file>, so the webseed URL is the folder.
        const packed = runShoal([
          'pack',
          folder,
          '-o',
          torrentPath,
          '--ca',
          join(controllerDataDir, 'ca', 'ca.pem'),
          '--piece-length',
          publishOptions.pieceLength ?? '256K',
          '--webseed',
          `${restUrl}/origin/${encodeURIComponent(name)}/`,
        ]);
        if (packed.status !== 0) throw new Error(`pack failed: ${packed.stderr}`);
        const published = await lab.run(infra, [process.execPath, SHOAL_BIN, 'publish', torrentPath, '--name', name, '--version', version, '--data-dir', controllerDataDir, '--controller', restUrl]);
        if (published.status !== 0) throw new Error(`publish failed: ${published.stderr}`);
        return { name, version, torrentPath, folder, bytes };
      },
      enroll: (specs, concurrency = 4) => mapLimited(specs, concurrency, enroll),
      async startAgents(specs, concurrency = 4) {
        const dataDirs = await mapLimited(specs, concurrency, enroll);
        const startedAgents = await Promise.all(specs.map((spec, i) => startAgent(spec, dataDirs[i] as string)));
        await untilConnected(startedAgents.map((a) => a.agentId));
        return startedAgents;
      },
      async fetch(agent, release) {
        const sent = await rest('POST', `/v1/agents/${encodeURIComponent(agent.agentId)}/fetch`, { name: release.name, version: release.version });
        if (sent.status !== 202) throw new Error(`fetch command to ${agent.name}: HTTP ${sent.status} ${JSON.stringify(sent.body)}`);
      },
      packageStatus,
      async originBytes() {
        const metrics = await rest<string>('GET', '/metrics', undefined, null);
        const text = typeof metrics.body === 'string' ? metrics.body : JSON.stringify(metrics.body);
        const line = text.split('\n').find((l) => l.startsWith('shoal_origin_bytes_sent_total'));
        return line ? Number(line.split(' ').pop()) : 0;
      },
      verifyCopy: async (release, path) => runShoal(['verify', release.torrentPath, path, '--json']),
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Random bytes in 4 MiB chunks (a large release never sits in memory whole). */
async function writeRandomFile(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w');
  try {
    for (let done = 0; done < size; ) {
      const chunk = randomBytes(Math.min(4 * 1024 * 1024, size - done));
      await handle.write(chunk);
      done += chunk.length;
    }
  } finally {
    await handle.close();
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

function parseMaybeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
