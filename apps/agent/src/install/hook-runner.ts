import { spawn } from 'node:child_process';

export interface InstallHookRun {
  /** Run with /bin/sh -c. */
  command: string;
  cwd: string;
  /** The whole environment of the hook (nothing else is inherited). */
  env: Record<string, string>;
  timeoutMs: number;
  /** After SIGTERM, how long the process group has before SIGKILL. Default 5000. */
  killGraceMs?: number;
  /** Bytes of combined stdout + stderr kept (the tail). Default OUTPUT_TAIL_BYTES. */
  outputTailBytes?: number;
}

export type InstallHookResult = 'succeeded' | 'failed' | 'timeout' | 'cancelled';

export interface InstallHookOutcome {
  result: InstallHookResult;
  /** Exit code of the shell; -1 when it did not run or a signal ended it. */
  exitCode: number;
  signal: NodeJS.Signals | null;
  /** The last bytes of combined stdout and stderr, as text. */
  output: string;
  /** One line saying why it failed (empty when it succeeded). */
  reason: string;
}

export interface RunningInstallHook {
  readonly outcome: Promise<InstallHookOutcome>;
  /** Ends the hook's whole process group (SIGTERM, then SIGKILL); the outcome is 'cancelled'. */
  cancel(): void;
}

export const OUTPUT_TAIL_BYTES = 4096;
const DEFAULT_KILL_GRACE_MS = 5000;
/** After the shell exits, how long its output may still drain (a child it left running may hold the pipes open). */
const DRAIN_MS = 500;
const GROUP_POLL_MS = 50;

/**
 * Runs an install hook: `/bin/sh -c command` in its own process group (spawned detached), so a
 * timeout or a cancel ends everything it started (kill -PGID), not just the shell. Only the tail
 * of its output is kept, whatever it prints. Processes a hook starts on purpose and leaves
 * running after it exits (a service it launches) are left alone.
 */
export function startInstallHook(run: InstallHookRun): RunningInstallHook {
  const graceMs = run.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const tail = new OutputTail(run.outputTailBytes ?? OUTPUT_TAIL_BYTES);
  let ending: 'timeout' | 'cancelled' | undefined;
  let killed: Promise<void> | undefined;
  const child = spawn('/bin/sh', ['-c', run.command], { cwd: run.cwd, env: run.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pgid = child.pid;
  child.stdout.on('data', (chunk: Buffer) => tail.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => tail.push(chunk));

  const endGroup = (why: 'timeout' | 'cancelled'): void => {
    if (ending || pgid === undefined) return;
    ending = why;
    killed = killGroup(pgid, graceMs);
  };
  const timer = setTimeout(() => endGroup('timeout'), run.timeoutMs);

  const outcome = new Promise<InstallHookOutcome>((resolve) => {
    const closed = new Promise<void>((done) => child.once('close', () => done()));
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ result: 'failed', exitCode: -1, signal: null, output: tail.text(), reason: `the install hook could not start: ${err.message}` });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      void (async () => {
        let drain: NodeJS.Timeout | undefined;
        await Promise.race([closed, new Promise<void>((done) => (drain = setTimeout(done, DRAIN_MS)))]);
        clearTimeout(drain);
        await killed;
        child.stdout.destroy();
        child.stderr.destroy();
        const exitCode = code ?? -1;
        const output = tail.text();
        if (ending === 'timeout') resolve({ result: 'timeout', exitCode, signal, output, reason: `the install hook timed out after ${run.timeoutMs / 1000} s` });
        else if (ending === 'cancelled') resolve({ result: 'cancelled', exitCode, signal, output, reason: 'the install hook was cancelled' });
        else if (code === 0) resolve({ result: 'succeeded', exitCode, signal, output, reason: '' });
        else resolve({ result: 'failed', exitCode, signal, output, reason: signal ? `the install hook was killed by ${signal}` : `the install hook exited with code ${code}` });
      })();
    });
  });
  return { outcome, cancel: () => endGroup('cancelled') };
}

/** SIGTERM to the group; SIGKILL to whatever is left of it after the grace period. */
async function killGroup(pgid: number, graceMs: number): Promise<void> {
  if (!signalGroup(pgid, 'SIGTERM')) return;
  const deadline = performance.now() + graceMs;
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, GROUP_POLL_MS));
    if (!signalGroup(pgid, 0)) return;
  }
  signalGroup(pgid, 'SIGKILL');
}

/** Signals every process of the group; false once the group has no process left. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** The last `limit` bytes of a stream of chunks. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.chunks.length > 1 && this.size - (this.chunks[0] as Buffer).length >= this.limit) {
      this.size -= (this.chunks.shift() as Buffer).length;
    }
  }

  text(): string {
    let bytes = Buffer.concat(this.chunks);
    bytes = bytes.subarray(Math.max(0, bytes.length - this.limit));
    // Cut where a UTF-8 character starts, not in the middle of one.
    let start = 0;
    while (start < Math.min(3, bytes.length) && ((bytes[start] as number) & 0xc0) === 0x80) start++;
    return bytes.subarray(start).toString('utf8');
  }
}
