import { parseArgs } from 'node:util';
import { EXIT_OK, EXIT_VERIFY_FAILED, UsageError } from '../errors';
import { formatBytes } from '../format';
import type { Output } from '../io';
import { CONNECTION_HELP, CONNECTION_OPTIONS, type Connection, call, connectionFrom } from '../rest';

/** Exit code of a rollout that ended failed or aborted (create --wait, status --watch, publish --rollout --wait). */
export const EXIT_ROLLOUT_FAILED = EXIT_VERIFY_FAILED;

export const ROLLOUT_OPTIONS_HELP = `  --selector S        agents whose labels match every term, e.g. region=eu-west,role=edge,site!=lab
                      (default: the whole fleet)
  --gate G            per wave: success=N% (default 95%), failures=N (a cap), soak=DURATION,
                      timeout=DURATION (default 30m; agents silent that long count as failed)
  --window HH:MM-HH:MM  daily maintenance window (UTC): commands go out only inside it
  --background        agents use their background bandwidth caps and yield to other transfers
  --no-install        fetch and verify only; do not run the agents' install hooks
  --wait              wait for the end, drawing progress; exit 1 if the rollout fails
  --json              machine-readable output (with --wait: one JSON object per change)`;

export const ROLLOUT_USAGE = `usage: shoal rollout create --release NAME@VERSION --waves 5%,25%,100% [options]
       shoal rollout status ID [--watch] [--json]
       shoal rollout list [--json]
       shoal rollout pause|resume|abort ID [--json]

Pushes a published release to the agents a selector picks, wave by wave (publisher role; status
and list need viewer). Waves are cumulative shares or counts of the matching agents. A wave
that fails its gate stops the rollout. --watch (or --wait) redraws per-wave progress until the
rollout ends and exits 1 if it failed or was aborted.

create options:
${ROLLOUT_OPTIONS_HELP}
${CONNECTION_HELP}`;

interface WaveView {
  index: number;
  size: string;
  state: string;
  members: number;
  commanded: number;
  succeeded: number;
  failed: number;
  inProgress: number;
  verifiedPieces: number;
  totalPieces: number;
}

export interface RolloutView {
  id: string;
  state: string;
  reason: string;
  release: string;
  selector: string;
  waves: WaveView[];
  late: { commanded: number; succeeded: number; failed: number };
  gate: { minSuccessRatio: number; maxFailures: number | null; soakSeconds: number; waveTimeoutSeconds: number };
  window: string | null;
  bandwidthClass: string;
  bytes: { fromPeers: number; fromOrigin: number };
  failures: { agentId: string; exitCode: number; message: string }[];
}

const FINISHED = new Set(['succeeded', 'failed', 'aborted']);

/** The create options shared with `shoal publish --rollout`. */
export const ROLLOUT_CREATE_OPTIONS = {
  selector: { type: 'string' },
  gate: { type: 'string' },
  window: { type: 'string' },
  background: { type: 'boolean' },
  'no-install': { type: 'boolean' },
  wait: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

export interface RolloutCreateFlags {
  selector?: string;
  gate?: string;
  window?: string;
  background?: boolean;
  'no-install'?: boolean;
}

export function rolloutBody(release: string, waves: string, flags: RolloutCreateFlags): object {
  return {
    release,
    waves,
    ...(flags.selector !== undefined ? { selector: flags.selector } : {}),
    ...(flags.gate !== undefined ? { gate: flags.gate } : {}),
    ...(flags.window !== undefined ? { window: flags.window } : {}),
    ...(flags.background ? { bandwidthClass: 'background' } : {}),
    ...(flags['no-install'] ? { install: false } : {}),
  };
}

export async function rollout(argv: string[], out: Output): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'create':
      return create(rest, out);
    case 'status':
      return status(rest, out);
    case 'list':
      return list(rest, out);
    case 'pause':
    case 'resume':
    case 'abort':
      return act(sub, rest, out);
    default:
      throw new UsageError(`unknown rollout command ${JSON.stringify(sub ?? '')}\n${ROLLOUT_USAGE}`);
  }
}

async function create(argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...CONNECTION_OPTIONS, ...ROLLOUT_CREATE_OPTIONS, release: { type: 'string' }, waves: { type: 'string' } },
  });
  if (positionals.length > 0 || !values.release || !values.waves) throw new UsageError(`rollout create needs --release NAME@VERSION and --waves\n${ROLLOUT_USAGE}`);
  const connection = connectionFrom(values);
  const created = await call<RolloutView>(connection, 'POST', '/v1/rollouts', { json: rolloutBody(values.release, values.waves, values) });
  if (values.wait) return watch(connection, created.id, out, values.json === true);
  out.stdout.write(values.json ? `${JSON.stringify(created)}\n` : `${created.id}\n`);
  return EXIT_OK;
}

async function status(argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...CONNECTION_OPTIONS, watch: { type: 'boolean' }, json: { type: 'boolean' } } });
  const id = onlyId(positionals, 'status');
  const connection = connectionFrom(values);
  if (values.watch) return watch(connection, id, out, values.json === true);
  const view = await call<RolloutView>(connection, 'GET', `/v1/rollouts/${encodeURIComponent(id)}`);
  out.stdout.write(values.json ? `${JSON.stringify(view)}\n` : `${renderRollout(view, { bars: out.stderr.isTTY === true }).join('\n')}\n`);
  return EXIT_OK;
}

async function list(argv: string[], out: Output): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } } });
  const views = await call<RolloutView[]>(connectionFrom(values), 'GET', '/v1/rollouts');
  if (values.json) {
    out.stdout.write(`${JSON.stringify(views)}\n`);
    return EXIT_OK;
  }
  const rows = views.map((v) => {
    const current = v.waves.find((w) => w.state === 'running' || w.state === 'soaking' || w.state === 'failed') ?? v.waves.at(-1);
    return [v.id, v.release, v.state, v.selector || '*', v.waves.map((w) => w.size).join(','), current ? `wave ${current.index + 1}` : '-'];
  });
  const header = ['ROLLOUT', 'RELEASE', 'STATE', 'SELECTOR', 'WAVES', 'AT'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const row of [header, ...rows]) out.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()}\n`);
  return EXIT_OK;
}

async function act(action: 'pause' | 'resume' | 'abort', argv: string[], out: Output): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...CONNECTION_OPTIONS, json: { type: 'boolean' } } });
  const id = onlyId(positionals, action);
  const view = await call<RolloutView>(connectionFrom(values), 'POST', `/v1/rollouts/${encodeURIComponent(id)}/${action}`);
  out.stdout.write(values.json ? `${JSON.stringify(view)}\n` : `${view.id} ${view.state}\n`);
  return EXIT_OK;
}

function onlyId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new UsageError(`rollout ${command} needs one rollout id\n${ROLLOUT_USAGE}`);
  return positionals[0] as string;
}

/**
 * Polls the rollout until it ends. On a terminal: the per-wave bars redrawn in place. Otherwise
 * (CI logs): one line (or JSON object) each time something changes. Exit 0 only if it succeeded.
 */
export async function watch(connection: Connection, id: string, out: Output, json: boolean, pollMs = 500): Promise<number> {
  const tty = !json && out.stdout.isTTY === true;
  let drawnLines = 0;
  let lastSummary = '';
  for (;;) {
    const view = await call<RolloutView>(connection, 'GET', `/v1/rollouts/${encodeURIComponent(id)}`);
    const done = FINISHED.has(view.state);
    if (tty) {
      const lines = renderRollout(view, { bars: true });
      out.stdout.write(`${drawnLines > 0 ? `\x1b[${drawnLines}F` : ''}${lines.map((l) => `${l}\x1b[K`).join('\n')}\n`);
      drawnLines = lines.length;
    } else {
      const summary = json ? JSON.stringify(view) : summaryLine(view);
      if (summary !== lastSummary) out.stdout.write(`${summary}\n`);
      lastSummary = summary;
    }
    if (done) {
      if (!tty && !json) out.stdout.write(`${renderRollout(view, { bars: false }).join('\n')}\n`);
      return view.state === 'succeeded' ? EXIT_OK : EXIT_ROLLOUT_FAILED;
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

function summaryLine(view: RolloutView): string {
  const waves = view.waves.map((w) => `w${w.index + 1}:${w.state}:${w.succeeded}/${w.members}${w.failed ? `(${w.failed} failed)` : ''}`).join(' ');
  return `${view.id} ${view.release} ${view.state} ${waves}${view.reason ? ` — ${view.reason}` : ''}`;
}

/** The rollout as lines: a header, one bar per wave, late joiners, bytes by source, failures. */
export function renderRollout(view: RolloutView, options: { bars: boolean }): string[] {
  const gate = `success>=${Math.round(view.gate.minSuccessRatio * 1000) / 10}%${view.gate.maxFailures === null ? '' : `, failures<=${view.gate.maxFailures}`}${view.gate.soakSeconds ? `, soak ${view.gate.soakSeconds}s` : ''}`;
  const lines = [
    `rollout ${view.id}  ${view.release}  ${view.state.toUpperCase()}  selector ${view.selector || '*'}  gate ${gate}${view.window ? `  window ${view.window} UTC` : ''}${view.bandwidthClass === 'background' ? '  background' : ''}`,
  ];
  const width = 30;
  for (const wave of view.waves) {
    const share = wave.totalPieces > 0 ? wave.verifiedPieces / wave.totalPieces : wave.members > 0 ? (wave.succeeded + wave.failed) / wave.members : 0;
    const bar = options.bars ? ` [${'#'.repeat(Math.round(share * width)).padEnd(width, '.')}]` : '';
    const counts = `${wave.succeeded}/${wave.members} ok${wave.failed ? `, ${wave.failed} failed` : ''}${wave.inProgress ? `, ${wave.inProgress} in progress` : ''}`;
    lines.push(`  wave ${String(wave.index + 1).padStart(2)} ${wave.size.padStart(5)}${bar} ${counts.padEnd(34)} ${wave.state}`);
  }
  if (view.late.commanded > 0) lines.push(`  joined later: ${view.late.succeeded}/${view.late.commanded} ok${view.late.failed ? `, ${view.late.failed} failed` : ''}`);
  const total = view.bytes.fromPeers + view.bytes.fromOrigin;
  lines.push(`  bytes: ${formatBytes(view.bytes.fromPeers)} from peers, ${formatBytes(view.bytes.fromOrigin)} from the origin${total > 0 ? ` (${((view.bytes.fromOrigin / total) * 100).toFixed(1)}% origin)` : ''}`);
  if (view.reason) lines.push(`  ${view.reason}`);
  for (const failure of view.failures.slice(0, 5)) {
    const tail = failure.message.trim().split('\n').at(-1) ?? '';
    lines.push(`  failed: ${failure.agentId}${failure.exitCode >= 0 ? ` (exit ${failure.exitCode})` : ''}: ${tail.slice(0, 160)}`);
  }
  return lines;
}
