/**
 * The multi-host lab: N hosts as network namespaces on one machine, joined by a bridge that lives
 * in a switch namespace, each with its own address and an upload rate enforced by tc htb on its
 * egress (optional download caps on the switch side), plus one infrastructure host (unshaped
 * unless told otherwise) for the controller, Redis and the origin.
 *
 *   infra 10.77.0.1 ──┐
 *   h1    10.77.1.1 ──┤ bridge (switch namespace)
 *   h2    10.77.1.2 ──┘ ...
 *
 * Every name the lab creates starts with `shl-<runId>-` (six random hex digits), so parallel runs
 * and leftovers of crashed ones are told apart. No address is added outside these namespaces, so
 * runs never collide even though each uses the same subnet. Teardown kills every process started
 * in a lab namespace (its whole process group, then anything else still inside) and deletes the
 * namespaces, which removes the veth pairs and the bridge with them, and the folders handed to
 * `removeWithLab` (data the processes wrote). It runs on `teardown()`, on
 * SIGINT/SIGTERM, and synchronously at process exit (uncaught exceptions included); a run killed
 * with SIGKILL leaves namespaces that `cleanupLeftovers()` removes, because its owner file names a
 * process that is gone.
 *
 * Needs root and iproute2 (`ip`, `tc`). The kernel here has htb and fifo qdiscs but no netem, so
 * the lab has no added latency: links differ by rate only.
 */
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

/** Every lab namespace, interface and bridge name starts with this, then the run id. */
export const LAB_PREFIX = 'shl-';
const RUN_NAME = /^shl-([0-9a-f]{6})-/;
/** Where each live run records its owner process, so leftovers of dead owners can be recognised. */
const OWNERS_DIR = '/run/shoal-lab';
const SUBNET_BITS = 16;
const INFRA_ADDRESS = '10.77.0.1';
/** Interface names are limited to 15 bytes (IFNAMSIZ - 1): `shl-abcdef-h999` is exactly that. */
export const MAX_LAB_HOSTS = 999;
const STOP_GRACE_MS = 5000;
/** Output lines of a lab process kept from its start, for `waitForLine`. */
const SEEN_LINES = 5000;
/** Last output lines of a lab process quoted when it fails. */
const RECENT_LINES = 200;

export interface LinkShape {
  /** Egress rate of the host in bits per second (tc htb on its interface); unshaped when absent. */
  upload?: number;
  /** Rate towards the host in bits per second (tc htb on its switch port); unshaped when absent. */
  download?: number;
  /**
   * Egress caps for traffic from one local TCP port (its own htb class, matched by u32), e.g. the
   * infrastructure host's origin without slowing its tracker or control streams.
   */
  sourcePortUploads?: { port: number; upload: number }[];
}

export interface LabOptions {
  /** One entry per host, in order: host i (1-based) gets 10.77.<1 + (i-1)/250>.<1 + (i-1)%250>. */
  hosts: LinkShape[];
  /** The infrastructure host's links; unshaped by default. */
  infra?: LinkShape;
  /**
   * Queue of a shaped link, as time at its rate (a bfifo of that many bytes, at least 128 KiB):
   * how long a packet may wait behind the uplink. Default 100 ms.
   */
  queueMs?: number;
}

export interface LabHost {
  /** `infra`, or `h1`..`hN`. */
  name: string;
  namespace: string;
  address: string;
  /** The host's end of its veth pair (inside its namespace). */
  iface: string;
  /** The switch's end (inside the switch namespace, enslaved to the bridge). */
  switchPort: string;
  upload?: number;
  download?: number;
  sourcePortUploads?: { port: number; upload: number }[];
}

export interface InterfaceBytes {
  txBytes: number;
  rxBytes: number;
}

export interface LabProcess {
  /** Of the command itself (`ip netns exec` execs it) and of its process group. */
  pid: number;
  /** Resolves with the first output line (from the start) that `matches`; rejects on exit or timeout. */
  waitForLine(matches: (line: string) => boolean, timeoutMs: number): Promise<string>;
  /** Calls `listener` with every output line from now on, until the returned function is called. */
  onLine(listener: (line: string) => void): () => void;
  /**
   * Writes one line to the process's standard input (spawned with `stdin: true`); ignored once it
   * has exited. Ending the input (`endInput`) tells such a process to quit, and it ends by itself
   * when the driver dies, whatever the lab's teardown managed.
   */
  send(line: string): void;
  endInput(): void;
  /** User + system CPU seconds so far (from /proc/<pid>/stat). */
  cpuSeconds(): number;
  exited: Promise<number | null>;
  /** SIGTERM to the process group, SIGKILL after a grace period. */
  stop(): Promise<void>;
}

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface Lab {
  runId: string;
  /** `shl-<runId>-`: every name this lab created starts with it. */
  prefix: string;
  switchNamespace: string;
  infra: LabHost;
  hosts: LabHost[];
  /**
   * Starts a long-running command inside `host`'s namespace, in its own process group; with
   * `stdin`, its standard input is a pipe from the driver (`send`), otherwise it is closed.
   */
  spawn(host: LabHost, command: string[], options?: { env?: NodeJS.ProcessEnv; stdin?: boolean }): LabProcess;
  /** Runs a command inside a host's (or the switch's) namespace to completion. */
  run(host: Pick<LabHost, 'namespace'>, command: string[], options?: { env?: NodeJS.ProcessEnv; input?: string }): Promise<CommandResult>;
  /** Bytes through the host's own interface, read inside its namespace. */
  interfaceBytes(host: LabHost): Promise<InterfaceBytes>;
  /**
   * Bytes each host has sent so far, by host name, read from the receive counters of the switch
   * ports in one call (what the cheap per-second timeline uses; `interfaceBytes` is the record).
   */
  sentBySwitchPort(): Promise<Map<string, number>>;
  /** Removes this folder (recursively) with the lab, also on a signal or at exit. */
  removeWithLab(path: string): void;
  teardown(): Promise<void>;
}

/** Why the lab cannot run here, or undefined when it can (root, `ip netns`, `tc`). */
export function labUnavailableReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'the lab needs root (network namespaces, tc)';
  const ip = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (ip.error || ip.status !== 0) return `\`ip netns\` is unavailable: ${ip.error?.message ?? ip.stderr.trim()}`;
  const tc = spawnSync('tc', ['-V'], { encoding: 'utf8' });
  if (tc.error || tc.status !== 0) return `\`tc\` is unavailable: ${tc.error?.message ?? tc.stderr.trim()}`;
  return undefined;
}

const RATE_UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 };

/** Parses a tc-style rate (`20mbit`, `500kbit`, `1gbit`, `2mbps` = bytes) into bits per second. */
export function parseRate(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i.exec(text.trim());
  const unit = match ? RATE_UNITS[(match[2] ?? '').toLowerCase()] : undefined;
  if (!match || unit === undefined || Number(match[1]) <= 0) throw new Error(`not a rate: "${text}" (use e.g. 20mbit, 500kbit, 1gbit)`);
  return Number(match[1]) * unit;
}

export function formatRate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1e9) return `${+(bitsPerSecond / 1e9).toFixed(3)}gbit`;
  if (bitsPerSecond >= 1e6) return `${+(bitsPerSecond / 1e6).toFixed(3)}mbit`;
  return `${+(bitsPerSecond / 1e3).toFixed(3)}kbit`;
}

/** The names of every network namespace on this machine. */
export function listNamespaces(): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}

// ---- ownership: which run is alive ---------------------------------------------------------

interface Owner {
  pid: number;
  /** Start time of the owner process (field 22 of /proc/<pid>/stat): guards against pid reuse. */
  startTicks: string;
}

function processStartTicks(pid: number): string | undefined {
  try {
    return procStatFields(readFileSync(`/proc/${pid}/stat`, 'utf8'))[19];
  } catch {
    return undefined;
  }
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces): [0] is the state. */
function procStatFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

function ownerFile(runId: string): string {
  return join(OWNERS_DIR, `${runId}.json`);
}

function ownerAlive(runId: string): boolean {
  let owner: Owner;
  try {
    owner = JSON.parse(readFileSync(ownerFile(runId), 'utf8')) as Owner;
  } catch {
    return false;
  }
  return processStartTicks(owner.pid) === owner.startTicks;
}

/**
 * Removes the namespaces of earlier lab runs whose owner process is gone (crashed, SIGKILLed),
 * killing whatever still runs inside them. Live runs (this process's or a parallel one's) are
 * left alone. Returns the namespaces removed.
 */
export function cleanupLeftovers(): string[] {
  const removed: string[] = [];
  const deadRuns = new Set<string>();
  for (const name of listNamespaces()) {
    const runId = RUN_NAME.exec(name)?.[1];
    if (!runId || ownerAlive(runId)) continue;
    deleteNamespaceSync(name);
    removed.push(name);
    deadRuns.add(runId);
  }
  for (const runId of deadRuns) rmSync(ownerFile(runId), { force: true });
  return removed;
}

/** Kills every process inside a namespace, then deletes it (its veth ends go with it). */
function deleteNamespaceSync(namespace: string): void {
  for (const pid of namespacePidsSync(namespace)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  spawnSync('ip', ['netns', 'del', namespace]);
}

function namespacePidsSync(namespace: string): number[] {
  const out = spawnSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' });
  return (out.stdout ?? '')
    .split('\n')
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

// ---- process-wide cleanup on signals and exit -----------------------------------------------

interface LabState {
  runId: string;
  namespaces: string[];
  processes: Set<LabProcess>;
  folders: string[];
  tornDown: boolean;
}

const liveLabs = new Set<LabState>();
let handlersInstalled = false;

function onSignal(signal: NodeJS.Signals): void {
  const code = 128 + (signal === 'SIGINT' ? 2 : 15);
  process.stderr.write(`\nlab: ${signal}: removing ${liveLabs.size} lab(s) before exiting\n`);
  void Promise.allSettled([...liveLabs].map((lab) => teardownState(lab))).then(() => process.exit(code));
}

/** Last resort at exit (also after an uncaught exception): only synchronous calls work here. */
function onExit(): void {
  for (const lab of liveLabs) teardownStateSync(lab);
}

function register(state: LabState): void {
  liveLabs.add(state);
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
}

function unregister(state: LabState): void {
  liveLabs.delete(state);
  if (liveLabs.size > 0 || !handlersInstalled) return;
  handlersInstalled = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('exit', onExit);
}

async function teardownState(state: LabState): Promise<void> {
  if (state.tornDown) return;
  await Promise.allSettled([...state.processes].map((p) => p.stop()));
  teardownStateSync(state);
}

function teardownStateSync(state: LabState): void {
  if (state.tornDown) return;
  state.tornDown = true;
  for (const p of state.processes) killGroup(p.pid, 'SIGKILL');
  // Hosts first, the switch last: nothing is left half-connected if this is interrupted.
  for (const namespace of [...state.namespaces].reverse()) deleteNamespaceSync(namespace);
  for (const folder of state.folders) rmSync(folder, { recursive: true, force: true });
  rmSync(ownerFile(state.runId), { force: true });
  unregister(state);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}

// ---- building the lab ------------------------------------------------------------------------

function execIp(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(args[0] as string, args.slice(1), { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`lab: \`${args.join(' ')}\` failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

function hostAddress(index: number): string {
  return `10.77.${1 + Math.floor((index - 1) / 250)}.${1 + ((index - 1) % 250)}`;
}

/** Rate of the htb class that carries what a host sends when only some ports are capped. */
const UNSHAPED_RATE = 10e9;

/**
 * htb root whose default class 1:1 runs at `rate` (or unshaped), plus one class per capped source
 * port; each class drains into a byte-limited fifo (the kernel has no fq/codel).
 */
async function shape(namespace: string, iface: string, rate: number | undefined, queueMs: number, portCaps: { port: number; upload: number }[] = []): Promise<void> {
  const tc = ['ip', 'netns', 'exec', namespace, 'tc'];
  const addClass = async (classId: string, bitsPerSecond: number): Promise<void> => {
    const bits = `${Math.round(bitsPerSecond)}bit`;
    // Classes never borrow from each other, so the DRR quantum never matters; setting it keeps htb
    // from warning about r2q at high rates.
    await execIp([...tc, 'class', 'add', 'dev', iface, 'parent', '1:', 'classid', classId, 'htb', 'rate', bits, 'ceil', bits, 'quantum', '1514']);
    const queueBytes = Math.max(128 * 1024, Math.round(((bitsPerSecond / 8) * queueMs) / 1000));
    if (bitsPerSecond < UNSHAPED_RATE) await execIp([...tc, 'qdisc', 'add', 'dev', iface, 'parent', classId, 'bfifo', 'limit', String(queueBytes)]);
  };
  await execIp([...tc, 'qdisc', 'add', 'dev', iface, 'root', 'handle', '1:', 'htb', 'default', '1']);
  await addClass('1:1', rate ?? UNSHAPED_RATE);
  for (const [i, cap] of portCaps.entries()) {
    const classId = `1:${i + 10}`;
    await addClass(classId, cap.upload);
    await execIp([...tc, 'filter', 'add', 'dev', iface, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'sport', String(cap.port), '0xffff', 'flowid', classId]);
  }
}

export async function createLab(options: LabOptions): Promise<Lab> {
  if (options.hosts.length < 1 || options.hosts.length > MAX_LAB_HOSTS) throw new Error(`lab: 1..${MAX_LAB_HOSTS} hosts, not ${options.hosts.length}`);
  const unavailable = labUnavailableReason();
  if (unavailable) throw new Error(`lab: ${unavailable}`);
  const runId = randomBytes(3).toString('hex');
  const prefix = `${LAB_PREFIX}${runId}-`;
  const queueMs = options.queueMs ?? 100;
  const state: LabState = { runId, namespaces: [], processes: new Set(), folders: [], tornDown: false };
  mkdirSync(OWNERS_DIR, { recursive: true });
  writeFileSync(ownerFile(runId), JSON.stringify({ pid: process.pid, startTicks: processStartTicks(process.pid) }));
  register(state);

  const switchNamespace = `${prefix}sw`;
  const bridge = `${prefix}br`;
  const infra: LabHost = { name: 'infra', namespace: `${prefix}inf`, address: INFRA_ADDRESS, iface: `${prefix}inf`, switchPort: `${prefix}sinf`, ...options.infra };
  const hosts: LabHost[] = options.hosts.map((link, i) => ({
    name: `h${i + 1}`,
    namespace: `${prefix}h${i + 1}`,
    address: hostAddress(i + 1),
    iface: `${prefix}h${i + 1}`,
    switchPort: `${prefix}s${i + 1}`,
    ...link,
  }));

  const addNamespace = async (namespace: string): Promise<void> => {
    await execIp(['ip', 'netns', 'add', namespace]);
    if (state.tornDown) {
      // Interrupted (SIGINT/SIGTERM) while this one was being made: the teardown did not see it.
      deleteNamespaceSync(namespace);
      throw new Error('lab: interrupted while being built');
    }
    state.namespaces.push(namespace);
    // No IPv6 autoconfiguration chatter in the byte counters (best effort: a kernel without IPv6
    // has none anyway); loopback up for local services.
    await execIp(['ip', 'netns', 'exec', namespace, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']).catch(() => undefined);
    await execIp(['ip', '-n', namespace, 'link', 'set', 'lo', 'up']);
  };

  try {
    await addNamespace(switchNamespace);
    await execIp(['ip', '-n', switchNamespace, 'link', 'add', bridge, 'type', 'bridge']);
    await execIp(['ip', '-n', switchNamespace, 'link', 'set', bridge, 'up']);
    for (const host of [infra, ...hosts]) {
      await addNamespace(host.namespace);
      // Both ends are created directly in their namespaces: nothing ever appears in the root one.
      await execIp(['ip', 'link', 'add', 'name', host.iface, 'netns', host.namespace, 'type', 'veth', 'peer', 'name', host.switchPort, 'netns', switchNamespace]);
      await execIp(['ip', '-n', switchNamespace, 'link', 'set', host.switchPort, 'master', bridge, 'up']);
      await execIp(['ip', '-n', host.namespace, 'addr', 'add', `${host.address}/${SUBNET_BITS}`, 'dev', host.iface]);
      await execIp(['ip', '-n', host.namespace, 'link', 'set', host.iface, 'up']);
      if (host.upload !== undefined || host.sourcePortUploads?.length) await shape(host.namespace, host.iface, host.upload, queueMs, host.sourcePortUploads);
      if (host.download !== undefined) await shape(switchNamespace, host.switchPort, host.download, queueMs);
    }
  } catch (err) {
    await teardownState(state);
    throw err;
  }

  const spawnIn: Lab['spawn'] = (host, command, spawnOptions = {}) => {
    if (state.tornDown) throw new Error('lab: torn down');
    // detached: the command leads its own process group, so teardown reaches its children too.
    const child = spawn('ip', ['netns', 'exec', host.namespace, ...command], {
      env: { ...process.env, ...spawnOptions.env },
      stdio: [spawnOptions.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    // A process that exits with input unread closes the pipe first: not an error.
    child.stdin?.on('error', () => undefined);
    // The last lines go into failure messages.
    const recent: string[] = [];
    const watchers = new Set<(line: string) => void>();
    const seen: string[] = [];
    // Both are pipes (stdio above); the types cannot tell.
    for (const stream of [child.stdout, child.stderr] as Readable[]) {
      createInterface({ input: stream }).on('line', (line) => {
        recent.push(line);
        if (recent.length > RECENT_LINES) recent.shift();
        // Kept from the start for waitForLine, up to a bound: a long run must not grow memory with logs.
        if (seen.length < SEEN_LINES) seen.push(line);
        for (const watch of watchers) watch(line);
      });
    }
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null)));
      child.once('error', () => resolve(null));
    });
    const pid = child.pid ?? -1;
    const labProcess: LabProcess = {
      pid,
      waitForLine: (matches, timeoutMs) =>
        new Promise<string>((resolve, reject) => {
          // Lines past the first `SEEN_LINES` are only visible to watchers registered before them.
          const found = seen.find(matches);
          if (found !== undefined) return resolve(found);
          const finish = (fn: () => void): void => {
            clearTimeout(timer);
            watchers.delete(watch);
            fn();
          };
          const describe = (): string => `${command.slice(0, 4).join(' ')} in ${host.name}`;
          const watch = (line: string): void => {
            if (matches(line)) finish(() => resolve(line));
          };
          const timer = setTimeout(() => finish(() => reject(new Error(`${describe()}: no expected output within ${timeoutMs} ms:\n${recent.join('\n')}`))), timeoutMs);
          watchers.add(watch);
          void exited.then((code) => finish(() => reject(new Error(`${describe()} exited with ${code}${child.signalCode ? ` (${child.signalCode})` : ''}:\n${recent.join('\n')}`))));
        }),
      onLine: (listener) => {
        watchers.add(listener);
        return () => {
          watchers.delete(listener);
        };
      },
      send: (line) => {
        if (!child.stdin) throw new Error(`lab: ${command[0]} in ${host.name} was started without stdin`);
        if (child.stdin.writable) child.stdin.write(`${line}\n`);
      },
      endInput: () => child.stdin?.end(),
      cpuSeconds: () => processCpuSeconds(pid),
      exited,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          killGroup(pid, 'SIGTERM');
          const killer = setTimeout(() => killGroup(pid, 'SIGKILL'), STOP_GRACE_MS);
          await exited;
          clearTimeout(killer);
        }
        // Children that outlived their leader still belong to the group.
        killGroup(pid, 'SIGKILL');
        state.processes.delete(labProcess);
      },
    };
    if (child.pid === undefined) throw new Error(`lab: could not start ${command.join(' ')} in ${host.name}`);
    state.processes.add(labProcess);
    return labProcess;
  };

  const run: Lab['run'] = (host, command, runOptions = {}) =>
    new Promise((resolve) => {
      const child = execFile(
        'ip',
        ['netns', 'exec', host.namespace, ...command],
        { env: { ...process.env, ...runOptions.env }, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
      // A command that exits without reading its input closes the pipe first: not an error.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(runOptions.input ?? '');
    });

  const readCounters = async (namespace: string, files: string[]): Promise<number[]> => {
    const out = await execIp(['ip', 'netns', 'exec', namespace, 'cat', ...files]);
    const values = out.trim().split('\n').map(Number);
    if (values.length !== files.length || values.some((v) => !Number.isFinite(v))) throw new Error(`lab: unreadable counters in ${namespace}: ${out}`);
    return values;
  };

  return {
    runId,
    prefix,
    switchNamespace,
    infra,
    hosts,
    spawn: spawnIn,
    run,
    async interfaceBytes(host) {
      const [txBytes, rxBytes] = await readCounters(host.namespace, ['tx_bytes', 'rx_bytes'].map((c) => `/sys/class/net/${host.iface}/statistics/${c}`));
      return { txBytes: txBytes as number, rxBytes: rxBytes as number };
    },
    async sentBySwitchPort() {
      const all = [infra, ...hosts];
      const values = await readCounters(switchNamespace, all.map((h) => `/sys/class/net/${h.switchPort}/statistics/rx_bytes`));
      return new Map(all.map((h, i) => [h.name, values[i] as number]));
    },
    removeWithLab: (path) => state.folders.push(path),
    teardown: () => teardownState(state),
  };
}

let clockTicksCache: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat and /proc/stat (USER_HZ). */
function clockTicks(): number {
  clockTicksCache ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return clockTicksCache;
}

/** User + system CPU seconds of a live process; 0 once it is gone. */
export function processCpuSeconds(pid: number): number {
  try {
    const fields = procStatFields(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    // utime and stime are fields 14 and 15 of the whole line: [11] and [12] here.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  } catch {
    return 0;
  }
}

/** Busy and total CPU seconds of the whole machine so far, summed over all cores (from /proc/stat). */
export function machineCpuSeconds(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  // idle + iowait are not busy.
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: (total - idle) / clockTicks(), total: total / clockTicks() };
}
