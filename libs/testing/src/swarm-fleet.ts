import { randomBytes } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestFleet, startTestFleet } from './fleet';
import { type AgentPackageStatus, type AgentProcess, agentStatus, runShoal, scratchDir, startAgentProcess } from './processes';

/**
 * A whole fleet on loopback for swarm tests and the demo: a controller (real process) serving a
 * webseed origin from its own folder, and agents as real processes, each enrolled with its
 * labels. Releases are generated inside the origin folder, packed with the origin as webseed,
 * bound to the fleet CA and published.
 */
export interface SwarmFleetAgentSpec {
  name: string;
  labels?: Record<string, string>;
  /** Extra environment (e.g. SHOAL_SWARM) for this agent. */
  env?: NodeJS.ProcessEnv;
  /** Runs on the enrolled data folder before the agent starts (e.g. `shoal agent import`). */
  beforeStart?: (dataDir: string) => void | Promise<void>;
}

export interface SwarmFleetOptions {
  /** Redis database (flushed). */
  db: number;
  fleet?: string;
  agents: SwarmFleetAgentSpec[];
  /** Environment for every agent. */
  agentEnv?: NodeJS.ProcessEnv;
}

export interface PublishedRelease {
  name: string;
  version: string;
  torrentPath: string;
  /** The release's files in the origin folder. */
  folder: string;
  bytes: number;
}

/** What an agent's status API says about one package. */

export interface SwarmFleet {
  fleet: TestFleet;
  originDir: string;
  /** Webseed URL of the origin folder (ends in '/'). */
  originUrl: string;
  agents: Map<string, AgentProcess>;
  specs: Map<string, SwarmFleetAgentSpec>;
  /**
   * Writes `files` (relative path -> bytes, or a size for random bytes) under origin/<folder>/
   * (default: the release name), packs that folder and publishes it as name@version.
   */
  publish(name: string, version: string, files: Record<string, number | Buffer>, options?: { pieceLength?: string; webseed?: boolean; folder?: string }): Promise<PublishedRelease>;
  /** Tells an agent (over its control stream) to fetch a release. */
  fetch(agent: string, release: { name: string; version: string }): Promise<void>;
  status(agent: string): Promise<{ packages: AgentPackageStatus[] }>;
  packageStatus(agent: string, release: { name: string; version: string }): Promise<AgentPackageStatus | undefined>;
  /** Bytes the origin served so far (the controller's shoal_origin_bytes_sent_total). */
  originBytes(): Promise<number>;
  /** Enrolls and starts one more agent. */
  addAgent(spec: SwarmFleetAgentSpec): Promise<AgentProcess>;
  stopAgent(name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startSwarmFleet(options: SwarmFleetOptions): Promise<SwarmFleet> {
  const work = await scratchDir('swarm-fleet');
  const originDir = join(work.path, 'origin');
  await mkdir(originDir, { recursive: true });
  const agentsDir = join(work.path, 'agents');
  await mkdir(agentsDir, { recursive: true });
  const agents = new Map<string, AgentProcess>();
  const specs = new Map<string, SwarmFleetAgentSpec>();
  let fleet: TestFleet | undefined;

  const stop = async (): Promise<void> => {
    await Promise.allSettled([...agents.values()].map((a) => a.stop()));
    agents.clear();
    await fleet?.stop();
    await work.remove();
  };

  try {
    fleet = await startTestFleet(options.db, options.fleet ?? 'swarm', { SHOAL_ORIGIN_DIR: originDir });
    const started = fleet;
    const caPath = join(started.dataDir, 'ca', 'ca.pem');
    const originUrl = `${started.controller.restUrl}/origin/`;

    const addAgent = async (spec: SwarmFleetAgentSpec): Promise<AgentProcess> => {
      const dataDir = await started.enrollAgentDir(spec.name, agentsDir, spec.labels);
      await spec.beforeStart?.(dataDir);
      const agent = await startAgentProcess({ dataDir, env: { ...options.agentEnv, ...spec.env } });
      agents.set(spec.name, agent);
      specs.set(spec.name, spec);
      await started.untilConnected(agent.agentId);
      return agent;
    };
    for (const spec of options.agents) await addAgent(spec);

    const status = (agent: string): Promise<{ packages: AgentPackageStatus[] }> => {
      const process = agents.get(agent);
      if (!process) return Promise.reject(new Error(`no agent ${agent}`));
      return agentStatus(process.dataDir);
    };

    return {
      fleet: started,
      originDir,
      originUrl,
      agents,
      specs,
      addAgent,
      status,
      async packageStatus(agent, release) {
        return (await status(agent)).packages.find((p) => p.name === release.name && p.version === release.version);
      },
      async publish(name, version, files, publishOptions = {}) {
        const folder = join(originDir, publishOptions.folder ?? name);
        let bytes = 0;
        for (const [path, content] of Object.entries(files)) {
          const target = join(folder, ...path.split('/'));
          await mkdir(join(target, '..'), { recursive: true });
          const size = typeof content === 'number' ? content : content.length;
          await writeContent(target, content);
          bytes += size;
        }
        const torrentPath = join(work.path, `${name}-${version}.torrent`);
        const pack = ['pack', folder, '-o', torrentPath, '--ca', caPath, '--piece-length', publishOptions.pieceLength ?? '1M'];
        // A folder holding one file packs as a single-file package named after the file (BEP 19
        // then looks for <url>/<file>): point its webseed at the folder.
        const singleFile = Object.keys(files).length === 1;
        if (publishOptions.webseed !== false) pack.push('--webseed', singleFile ? `${originUrl}${encodeURIComponent(publishOptions.folder ?? name)}/` : originUrl);
        const packed = runShoal(pack);
        if (packed.status !== 0) throw new Error(`pack failed: ${packed.stderr}`);
        const published = runShoal(['publish', torrentPath, '--name', name, '--version', version, '--data-dir', started.dataDir, '--controller', started.controller.restUrl]);
        if (published.status !== 0) throw new Error(`publish failed: ${published.stderr}`);
        return { name, version, torrentPath, folder, bytes };
      },
      async fetch(agent, release) {
        const process = agents.get(agent);
        if (!process) throw new Error(`no agent ${agent}`);
        const sent = await started.rest('POST', `/v1/agents/${encodeURIComponent(process.agentId)}/fetch`, { json: { name: release.name, version: release.version } });
        if (sent.status !== 202) throw new Error(`fetch command to ${agent}: HTTP ${sent.status} ${JSON.stringify(sent.body)}`);
      },
      async originBytes() {
        const metrics = await started.rest<string>('GET', '/metrics', { token: null });
        const text = typeof metrics.body === 'string' ? metrics.body : JSON.stringify(metrics.body);
        const line = text.split('\n').find((l) => l.startsWith('shoal_origin_bytes_sent_total'));
        return line ? Number(line.split(' ').pop()) : 0;
      },
      async stopAgent(name) {
        const agent = agents.get(name);
        agents.delete(name);
        await agent?.stop();
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}

/** Random bytes written in 4 MiB chunks (a 256 MiB file never sits in memory whole). */
async function writeContent(path: string, content: number | Buffer): Promise<void> {
  const handle = await open(path, 'w');
  try {
    if (Buffer.isBuffer(content)) {
      await handle.write(content);
      return;
    }
    for (let done = 0; done < content; ) {
      const chunk = randomBytes(Math.min(4 * 1024 * 1024, content - done));
      await handle.write(chunk);
      done += chunk.length;
    }
  } finally {
    await handle.close();
  }
}

