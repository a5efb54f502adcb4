import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OUTPUT_TAIL_BYTES, chooseInstall, parseAllowedNames, parseInstallHooks, startInstallHook } from '../src/install';

/** The install hook runner with real /bin/sh processes. */
let dir: string;
const running: { cancel(): void; outcome: Promise<unknown> }[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-hook-'));
});

afterEach(async () => {
  for (const hook of running.splice(0)) {
    hook.cancel();
    await hook.outcome;
  }
  await rm(dir, { recursive: true, force: true });
});

function run(command: string, options: { timeoutMs?: number; env?: Record<string, string>; cwd?: string; killGraceMs?: number } = {}) {
  const hook = startInstallHook({
    command,
    cwd: options.cwd ?? dir,
    env: options.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    timeoutMs: options.timeoutMs ?? 20_000,
    killGraceMs: options.killGraceMs ?? 300,
  });
  running.push(hook);
  return hook;
}

/** Alive and not a zombie (a killed orphan may wait a while for a reaper that never comes in a container). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

test('a hook that succeeds: exit code 0, stdout and stderr together, run in the package folder', async () => {
  const outcome = await run('echo "to stdout"; echo "to stderr" >&2; pwd').outcome;
  expect(outcome).toMatchObject({ result: 'succeeded', exitCode: 0, signal: null, reason: '' });
  expect(outcome.output).toContain('to stdout\n');
  expect(outcome.output).toContain('to stderr\n');
  // The two pipes are read side by side: their lines interleave in no set order.
  expect(outcome.output).toContain(`${dir}\n`);
});

test('a hook that fails: its exit code, the reason and its output', async () => {
  const outcome = await run('echo "disk full" >&2; exit 3').outcome;
  expect(outcome).toMatchObject({ result: 'failed', exitCode: 3, reason: 'the install hook exited with code 3', output: 'disk full\n' });
});

test('a hook past its timeout: the whole process group ends, a grandchild ignoring SIGTERM included', async () => {
  const pidFile = join(dir, 'grandchild.pid');
  // The grandchild ignores SIGTERM (inherited through exec), so only the group's SIGKILL ends it.
  const hook = run(`(trap '' TERM; exec sleep 300) & echo $! > ${pidFile}; echo started; wait`, { timeoutMs: 700, killGraceMs: 300 });
  const outcome = await hook.outcome;
  expect(outcome).toMatchObject({ result: 'timeout', exitCode: -1, reason: 'the install hook timed out after 0.7 s', output: 'started\n' });
  const grandchild = Number(await readFile(pidFile, 'utf8'));
  expect(grandchild).toBeGreaterThan(1);
  expect(isRunning(grandchild)).toBe(false);
});

test('a cancelled hook ends with its group, as cancelled', async () => {
  const hook = run('echo waiting; sleep 300');
  await new Promise((r) => setTimeout(r, 200));
  hook.cancel();
  await expect(hook.outcome).resolves.toMatchObject({ result: 'cancelled', exitCode: -1, reason: 'the install hook was cancelled', output: 'waiting\n' });
});

test('huge output keeps only the tail, cut at a character boundary', async () => {
  // About 5 MB of output, then the last words; the tail starts inside a run of 3-byte characters.
  const outcome = await run("yes 'a line of output' | head -n 250000; yes '€' | head -n 3000 | tr -d '\\n'; echo; echo 'THE END'").outcome;
  expect(outcome.result).toBe('succeeded');
  expect(Buffer.byteLength(outcome.output)).toBeLessThanOrEqual(OUTPUT_TAIL_BYTES);
  expect(Buffer.byteLength(outcome.output)).toBeGreaterThan(OUTPUT_TAIL_BYTES - 3);
  expect(outcome.output.endsWith('€€\nTHE END\n')).toBe(true);
  expect(outcome.output).not.toContain('\ufffd');
});

test('the hook sees exactly the environment it is given', async () => {
  process.env.SHOAL_TEST_SECRET = 'must not leak';
  try {
    const outcome = await run('env', { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nowhere', SHOAL_RELEASE_NAME: 'app' } }).outcome;
    const names = outcome.output
      .trim()
      .split('\n')
      .map((line) => line.slice(0, line.indexOf('=')));
    // The shell itself may add PWD, SHLVL and _ .
    expect(names.filter((name) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(name)).sort()).toEqual(['HOME', 'PATH', 'SHOAL_RELEASE_NAME']);
    expect(outcome.output).toContain('SHOAL_RELEASE_NAME=app\n');
    expect(outcome.output).not.toContain('must not leak');
  } finally {
    delete process.env.SHOAL_TEST_SECRET;
  }
});

test('a hook that cannot start (no such folder) fails with the reason', async () => {
  const outcome = await run('true', { cwd: join(dir, 'missing') }).outcome;
  expect(outcome).toMatchObject({ result: 'failed', exitCode: -1 });
  expect(outcome.reason).toMatch(/^the install hook could not start: .*ENOENT/);
});

describe('install policy', () => {
  const policy = { installHooks: { app: { command: './local.sh', timeoutSeconds: 30 } }, allowReleaseInstallCommands: ['tool'] };

  test("the agent's hook first, then an allowed release command, else none and why", () => {
    expect(chooseInstall(policy, 'app', './signed.sh')).toEqual({ command: './local.sh', timeoutSeconds: 30, source: 'agent' });
    expect(chooseInstall(policy, 'tool', './signed.sh')).toEqual({ command: './signed.sh', timeoutSeconds: 600, source: 'release' });
    expect(chooseInstall(policy, 'tool', undefined)).toEqual({ none: 'no install hook for tool' });
    expect(chooseInstall(policy, 'other', './signed.sh')).toEqual({
      none: 'no install hook for other (the release carries a signed install command, but allowReleaseInstallCommands does not list other)',
    });
    expect(chooseInstall({ installHooks: {}, allowReleaseInstallCommands: ['*'] }, 'other', './signed.sh')).toMatchObject({ source: 'release' });
    // A name that is an Object.prototype key is not a hook.
    expect(chooseInstall(policy, 'constructor', undefined)).toEqual({ none: 'no install hook for constructor' });
  });

  test('installHooks: JSON text or object; every bad entry named', () => {
    expect(parseInstallHooks('{"app":{"command":"./install.sh"},"db":{"command":"make install","timeoutSeconds":60}}')).toEqual({
      app: { command: './install.sh', timeoutSeconds: 600 },
      db: { command: 'make install', timeoutSeconds: 60 },
    });
    expect(parseInstallHooks({})).toEqual({});
    const problem = (raw: unknown): string => {
      try {
        parseInstallHooks(raw);
        return '';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(problem('{"App":{"command":"x"},"a":{"command":""},"b":{"command":"x","timeoutSeconds":0},"c":"x","d":{"command":"x","shell":"bash"}}')).toBe(
      'bad install hooks: "App": not a package name (^[a-z0-9][a-z0-9._-]{0,63}$); a.command: must be a non-empty string; b.timeoutSeconds: must be an integer from 1 to 604800; ' +
        'c: must be an object { "command": "...", "timeoutSeconds": 600 }; d.shell: unknown setting',
    );
    expect(problem({ a: { command: 'x\0y' } })).toMatch(/a\.command: must not contain NUL/);
    expect(problem({ a: { command: 'x'.repeat(4097) } })).toMatch(/a\.command: must be at most 4096 characters/);
    expect(problem({ a: { command: 'x', timeoutSeconds: 1.5 } })).toMatch(/a\.timeoutSeconds/);
    for (const raw of ['[]', 'null', '"text"', '{not json', 42]) expect(problem(raw)).not.toBe('');
  });

  test('allowReleaseInstallCommands: comma-separated or a JSON array of names or *', () => {
    expect(parseAllowedNames('app, tool ,app')).toEqual(['app', 'tool']);
    expect(parseAllowedNames('*')).toEqual(['*']);
    expect(parseAllowedNames('')).toEqual([]);
    expect(parseAllowedNames(['app'])).toEqual(['app']);
    expect(() => parseAllowedNames('app,Bad Name')).toThrow('must list package names or "*", not "Bad Name"');
    expect(() => parseAllowedNames([1])).toThrow(/not 1/);
    expect(() => parseAllowedNames({ a: 1 })).toThrow(/must list/);
  });
});
