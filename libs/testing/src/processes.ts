import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { withAgentMallocTuning } from '@shoal/config';

/** The `shoal` command of this checkout (built by `npm run build`). */
export const SHOAL_BIN = resolve(__dirname, '..', '..', '..', 'bin', 'shoal.js');

export interface ShoalRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `shoal ...args` to completion. */
export function runShoal(args: string[], env: NodeJS.ProcessEnv = {}): ShoalRun {
  const run = spawnSync(process.execPath, [SHOAL_BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Runs `shoal ...args` to completion without blocking this process (whose own servers must keep answering). */
export function runShoalAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ShoalRun> {
  const child = spawn(process.execPath, [SHOAL_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolveRun, reject) => {
    child.once('error', reject);
    child.once('close', (status) => resolveRun({ status, stdout, stderr }));
  });
}

export async function scratchDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `shoal-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface ControllerProcess {
  process: ChildProcess;
  dataDir: string;
  restUrl: string;
  restPort: number;
  grpcAddress: string;
  enrollAddress: string;
  /** Every log line so far (JSON from pino, or anything else the process printed). */
  logs: string[];
  stop(): Promise<number | null>;
}

interface ShoalProcess {
  child: ChildProcess;
  logs: string[];
  /** Resolves with the first log line containing `marker`, parsed as JSON. */
  ready<T>(marker: string, timeoutMs: number): Promise<T>;
  stop(): Promise<number | null>;
}

/** Spawns a long-running `shoal` command, collecting its output lines. */
function spawnShoal(args: string[], env: NodeJS.ProcessEnv, nodeArgs: string[] = []): ShoalProcess {
  const child = spawn(process.execPath, [...nodeArgs, SHOAL_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  for (const stream of [child.stdout, child.stderr]) if (stream) createInterface({ input: stream }).on('line', (line) => logs.push(line));
  return {
    child,
    logs,
    ready: <T>(marker: string, timeoutMs: number) =>
      new Promise<T>((resolveReady, reject) => {
        const name = args.slice(0, 2).join(' ');
        const timer = setTimeout(() => reject(new Error(`${name} did not start in time:\n${logs.join('\n')}`)), timeoutMs);
        const poll = setInterval(() => {
          const line = logs.find((l) => l.includes(marker));
          if (!line) return;
          clearInterval(poll);
          clearTimeout(timer);
          resolveReady(JSON.parse(line) as T);
        }, 25);
        void exited.then((code) => {
          clearInterval(poll);
          clearTimeout(timer);
          reject(new Error(`${name} exited with ${code} before starting:\n${logs.join('\n')}`));
        });
      }),
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}

/**
 * Starts `shoal controller start` as a real process on free loopback ports and waits for its
 * "controller started" line.
 */
export async function startControllerProcess(options: {
  dataDir: string;
  redisUrl: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=DIR'] to see where a benchmark's time goes. */
  nodeArgs?: string[];
}): Promise<ControllerProcess> {
  const started = spawnShoal(
    ['controller', 'start', '--data-dir', options.dataDir],
    {
      REDIS_URL: options.redisUrl,
      SHOAL_REST_LISTEN: '127.0.0.1:0',
      SHOAL_GRPC_LISTEN: '127.0.0.1:0',
      SHOAL_ENROLL_LISTEN: '127.0.0.1:0',
      SHOAL_LOG_LEVEL: 'info',
      ...options.env,
    },
    options.nodeArgs,
  );
  const line = await started.ready<{ rest: string; grpc: number; enroll: number }>('controller started', options.timeoutMs ?? 30_000);
  const restPort = Number(new URL(line.rest).port);
  return {
    process: started.child,
    dataDir: options.dataDir,
    restUrl: `https://127.0.0.1:${restPort}`,
    restPort,
    grpcAddress: `127.0.0.1:${line.grpc}`,
    enrollAddress: `127.0.0.1:${line.enroll}`,
    logs: started.logs,
    stop: started.stop,
  };
}

export interface AgentProcess {
  process: ChildProcess;
  dataDir: string;
  agentId: string;
  peerPort: number;
  logs: string[];
  stop(): Promise<number | null>;
}

/** Starts `shoal agent start` as a real process listening on loopback, with the agent's malloc tunables, and waits for "agent started". */
export async function startAgentProcess(options: { dataDir: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; nodeArgs?: string[] }): Promise<AgentProcess> {
  const env = { SHOAL_PEER_LISTEN: '127.0.0.1:0', SHOAL_ADVERTISE_ADDRESS: '127.0.0.1', SHOAL_LOG_LEVEL: 'info', ...options.env };
  // As a deployed agent runs (libs/config: AGENT_MALLOC_TUNABLES).
  const started = spawnShoal(['agent', 'start', '--data-dir', options.dataDir], { ...env, GLIBC_TUNABLES: withAgentMallocTuning({ ...process.env, ...env }).GLIBC_TUNABLES }, options.nodeArgs);
  const line = await started.ready<{ agentId: string; peerPort: number }>('agent started', options.timeoutMs ?? 30_000);
  return { process: started.child, dataDir: options.dataDir, agentId: line.agentId, peerPort: line.peerPort, logs: started.logs, stop: started.stop };
}

export interface AgentPackageStatus {
  name: string;
  version: string;
  complete: boolean;
  verifiedPieces: number;
  totalPieces: number;
  bytesDownloaded: number;
  bytesFromWebseed: number;
  bytesUploaded: number;
  peers: number;
  corruptPieces: number;
  path: string | null;
}

/**
 * An agent's /status, from its status API on `<dataDir>/agent.sock`: a few hundred microseconds,
 * where `shoal status` starts a whole Node process (benchmarks poll it every 50 ms).
 */
export function agentStatus(dataDir: string): Promise<{ packages: AgentPackageStatus[] }> {
  return getUnixJson(join(dataDir, 'agent.sock'), '/status') as Promise<{ packages: AgentPackageStatus[] }>;
}

/** GET a JSON document from an HTTP server on a unix socket (the agent's status API). */
function getUnixJson(socketPath: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, path, method: 'GET', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          if (res.statusCode !== 200) throw new Error(`${socketPath} ${path}: HTTP ${res.statusCode}`);
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`${socketPath} ${path}: timeout`)));
    req.end();
  });
}
