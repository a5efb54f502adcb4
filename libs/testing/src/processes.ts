import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

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
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), SHOAL_BIN, 'controller', 'start', '--data-dir', options.dataDir], {
    env: {
      ...process.env,
      REDIS_URL: options.redisUrl,
      SHOAL_REST_LISTEN: '127.0.0.1:0',
      SHOAL_GRPC_LISTEN: '127.0.0.1:0',
      SHOAL_ENROLL_LISTEN: '127.0.0.1:0',
      SHOAL_LOG_LEVEL: 'info',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on('line', (line) => logs.push(line));
  const started = await new Promise<{ rest: string; grpc: number; enroll: number }>((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`controller did not start in time:\n${logs.join('\n')}`)), options.timeoutMs ?? 30_000);
    const poll = setInterval(() => {
      for (const line of logs) {
        if (!line.includes('controller started')) continue;
        clearInterval(poll);
        clearTimeout(timer);
        resolveStart(JSON.parse(line) as { rest: string; grpc: number; enroll: number });
        return;
      }
    }, 25);
    void exited.then((code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`controller exited with ${code} before starting:\n${logs.join('\n')}`));
    });
  });
  const restPort = Number(new URL(started.rest).port);
  return {
    process: child,
    dataDir: options.dataDir,
    restUrl: `https://127.0.0.1:${restPort}`,
    restPort,
    grpcAddress: `127.0.0.1:${started.grpc}`,
    enrollAddress: `127.0.0.1:${started.enroll}`,
    logs,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}
