import { createHash } from 'node:crypto';
import { ShoalError } from '@shoal/torrent';

/**
 * The pure half of rollouts: what a rollout asks for (waves, selector, gate, maintenance
 * window), checked as hostile input, and the decisions taken on it (who is in a wave, whether a
 * wave passed its gate, whether the window is open). No Redis, no clock: the service feeds them.
 */

export class RolloutError extends ShoalError {}

/** A wave's cumulative reach: a share of the matching agents, or a number of them. */
export type WaveSize = { percent: number } | { count: number };

export interface Gate {
  /** Share of a wave's agents that must succeed (fetch complete and verified, install passed). */
  minSuccessRatio: number;
  /** Failures in one wave beyond which the rollout fails at once; null: only the ratio counts. */
  maxFailures: number | null;
  /** After a wave passes, wait this long (failures still count) before the next one starts. */
  soakSeconds: number;
  /** A wave's agents that have not succeeded this long after it started count as failed. */
  waveTimeoutSeconds: number;
}

export const DEFAULT_GATE: Gate = { minSuccessRatio: 0.95, maxFailures: null, soakSeconds: 0, waveTimeoutSeconds: 1800 };

/** Daily, in UTC minutes since midnight; start > end spans midnight (22:00-04:00). */
export interface MaintenanceWindow {
  startMinute: number;
  endMinute: number;
}

export type SelectorTerm = { key: string; op: '=' | '!='; value: string };

export type BandwidthClassName = 'normal' | 'background';

const MAX_WAVES = 20;
const MAX_SELECTOR_TERMS = 16;
const LABEL_KEY = /^[a-z][a-z0-9_.-]{0,62}$/;
const LABEL_VALUE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** `5%,25%,100%`, `10,50,100%`, or the same as a list. Coverage must grow from wave to wave. */
export function parseWaves(raw: unknown): WaveSize[] {
  const items = typeof raw === 'string' ? raw.split(',') : raw;
  if (!Array.isArray(items) || items.length === 0) throw new RolloutError('ROLLOUT_BAD_WAVES', 'waves: give a list like 5%,25%,100%');
  if (items.length > MAX_WAVES) throw new RolloutError('ROLLOUT_BAD_WAVES', `waves: at most ${MAX_WAVES}`);
  const waves = items.map((item, i): WaveSize => {
    const text = typeof item === 'number' ? String(item) : typeof item === 'string' ? item.trim() : '';
    const percent = /^(\d{1,3}(?:\.\d{1,2})?)%$/.exec(text);
    if (percent) {
      const value = Number(percent[1]);
      if (value > 0 && value <= 100) return { percent: value };
    } else if (/^\d{1,7}$/.test(text) && Number(text) > 0) {
      return { count: Number(text) };
    }
    throw new RolloutError('ROLLOUT_BAD_WAVES', `waves[${i}]: ${JSON.stringify(String(item).slice(0, 40))} is neither a share (0% < N% <= 100%) nor a count >= 1`);
  });
  let lastPercent = 0;
  let lastCount = 0;
  waves.forEach((wave, i) => {
    if ('percent' in wave) {
      if (wave.percent <= lastPercent) throw new RolloutError('ROLLOUT_BAD_WAVES', `waves[${i}]: ${wave.percent}% does not grow past ${lastPercent}%`);
      lastPercent = wave.percent;
    } else {
      if (wave.count <= lastCount) throw new RolloutError('ROLLOUT_BAD_WAVES', `waves[${i}]: ${wave.count} does not grow past ${lastCount}`);
      if (lastPercent === 100) throw new RolloutError('ROLLOUT_BAD_WAVES', `waves[${i}]: nothing follows a 100% wave`);
      lastCount = wave.count;
    }
  });
  return waves;
}

export function formatWave(wave: WaveSize): string {
  return 'percent' in wave ? `${wave.percent}%` : String(wave.count);
}

/** `region=eu-west,role=edge,site!=lab`: every term must hold. Empty: the whole fleet. */
export function parseSelector(raw: unknown): SelectorTerm[] {
  if (typeof raw !== 'string' || raw.length > 1024) throw new RolloutError('ROLLOUT_BAD_SELECTOR', 'selector: a string like region=eu-west,role=edge (at most 1024 characters)');
  if (raw.trim() === '') return [];
  const terms = raw.split(',').map((part, i): SelectorTerm => {
    const match = /^\s*([^=!\s]+)\s*(!=|=)\s*([^\s]+)\s*$/.exec(part);
    if (!match || !LABEL_KEY.test(match[1] as string) || !LABEL_VALUE.test(match[3] as string)) {
      throw new RolloutError('ROLLOUT_BAD_SELECTOR', `selector term ${i + 1} ${JSON.stringify(part.slice(0, 80))}: expected label=value or label!=value`);
    }
    return { key: match[1] as string, op: match[2] as '=' | '!=', value: match[3] as string };
  });
  if (terms.length > MAX_SELECTOR_TERMS) throw new RolloutError('ROLLOUT_BAD_SELECTOR', `selector: at most ${MAX_SELECTOR_TERMS} terms`);
  return terms;
}

export function formatSelector(terms: SelectorTerm[]): string {
  return terms.map((t) => `${t.key}${t.op}${t.value}`).join(',');
}

export function selects(terms: SelectorTerm[], labels: Record<string, string>): boolean {
  return terms.every((t) => (labels[t.key] === t.value) === (t.op === '='));
}

/**
 * A gate from an object ({minSuccessRatio, maxFailures, soakSeconds, waveTimeoutSeconds}) or the
 * CLI's text (`success=90%,failures=2,soak=5m,timeout=30m`); fields left out keep DEFAULT_GATE.
 */
export function parseGate(raw: unknown): Gate {
  if (raw === undefined || raw === null || raw === '') return { ...DEFAULT_GATE };
  if (typeof raw !== 'string' && (typeof raw !== 'object' || Array.isArray(raw))) throw new RolloutError('ROLLOUT_BAD_GATE', 'gate: an object or text like success=90%,failures=2');
  const fields: Record<string, unknown> = typeof raw === 'string' ? gateFieldsFromText(raw) : { ...raw };
  const gate = { ...DEFAULT_GATE };
  for (const [key, value] of Object.entries(fields)) {
    switch (key) {
      case 'minSuccessRatio':
        gate.minSuccessRatio = checkedNumber(value, key, 0, 1, false);
        break;
      case 'maxFailures':
        gate.maxFailures = value === null ? null : checkedNumber(value, key, 0, 1_000_000, true);
        break;
      case 'soakSeconds':
        gate.soakSeconds = checkedNumber(value, key, 0, 7 * 86_400, true);
        break;
      case 'waveTimeoutSeconds':
        gate.waveTimeoutSeconds = checkedNumber(value, key, 1, 7 * 86_400, true);
        break;
      default:
        throw new RolloutError('ROLLOUT_BAD_GATE', `gate: unknown field ${JSON.stringify(key.slice(0, 40))} (minSuccessRatio, maxFailures, soakSeconds, waveTimeoutSeconds)`);
    }
  }
  return gate;
}

const GATE_TEXT_KEYS: Record<string, string> = { success: 'minSuccessRatio', failures: 'maxFailures', soak: 'soakSeconds', timeout: 'waveTimeoutSeconds' };

function gateFieldsFromText(text: string): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const part of text.split(',')) {
    const [name, value, extra] = part.split('=').map((s) => s.trim());
    const key = GATE_TEXT_KEYS[name ?? ''];
    if (!key || value === undefined || value === '' || extra !== undefined) {
      throw new RolloutError('ROLLOUT_BAD_GATE', `gate: ${JSON.stringify(part.slice(0, 40))} is not one of success=N%, failures=N, soak=DURATION, timeout=DURATION`);
    }
    if (key === 'minSuccessRatio') fields[key] = value.endsWith('%') ? numberOrNaN(value.slice(0, -1)) / 100 : numberOrNaN(value);
    else if (key === 'maxFailures') fields[key] = numberOrNaN(value);
    else fields[key] = durationSeconds(value, key);
  }
  return fields;
}

function numberOrNaN(text: string): number {
  return /^\d+(\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
}

/** `90`, `90s`, `5m`, `2h`, `1d` in seconds. */
function durationSeconds(text: string, field: string): number {
  const match = /^(\d{1,7})([smhd]?)$/.exec(text);
  if (!match) throw new RolloutError('ROLLOUT_BAD_GATE', `gate: ${field} ${JSON.stringify(text.slice(0, 40))} is not a duration like 90s, 5m, 2h`);
  return Number(match[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
}

function checkedNumber(value: unknown, field: string, min: number, max: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    const shown = typeof value === 'number' && Number.isFinite(value) ? String(value) : JSON.stringify(value);
    throw new RolloutError('ROLLOUT_BAD_GATE', `gate: ${field} ${shown} must be ${integer ? 'an integer' : 'a number'} in ${min}..${max}`);
  }
  return value;
}

/** `22:00-04:00` (UTC, daily). */
export function parseWindow(raw: unknown): MaintenanceWindow {
  const match = typeof raw === 'string' ? /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$/.exec(raw.trim()) : null;
  if (!match) throw new RolloutError('ROLLOUT_BAD_WINDOW', `window: ${JSON.stringify(String(raw).slice(0, 40))} is not HH:MM-HH:MM (UTC)`);
  const window = { startMinute: Number(match[1]) * 60 + Number(match[2]), endMinute: Number(match[3]) * 60 + Number(match[4]) };
  if (window.startMinute === window.endMinute) throw new RolloutError('ROLLOUT_BAD_WINDOW', 'window: start and end are the same minute');
  return window;
}

export function formatWindow(window: MaintenanceWindow): string {
  const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return `${hhmm(window.startMinute)}-${hhmm(window.endMinute)}`;
}

const DAY_MS = 86_400_000;

/** Milliseconds until the window opens: 0 while it is open. */
export function msUntilWindowOpens(window: MaintenanceWindow, nowMs: number): number {
  const minuteOfDay = Math.floor((nowMs % DAY_MS) / 60_000);
  const open =
    window.startMinute < window.endMinute
      ? minuteOfDay >= window.startMinute && minuteOfDay < window.endMinute
      : minuteOfDay >= window.startMinute || minuteOfDay < window.endMinute;
  if (open) return 0;
  const startOfDay = nowMs - (nowMs % DAY_MS);
  let opening = startOfDay + window.startMinute * 60_000;
  if (opening <= nowMs) opening += DAY_MS;
  return opening - nowMs;
}

/**
 * The order agents enter a rollout: a hash of rollout id and agent id, so each rollout draws its
 * first wave from across sites, and the order is the same after a restart.
 */
export function rolloutOrder(rolloutId: string, agentIds: Iterable<string>): string[] {
  const keyed = [...agentIds].map((id) => ({ id, key: createHash('sha256').update(`${rolloutId}\0${id}`).digest('hex') }));
  return keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((k) => k.id);
}

/** How many agents the waves up to this one reach together, out of `eligible`. */
export function cumulativeTarget(wave: WaveSize, eligible: number): number {
  return 'percent' in wave ? Math.min(eligible, Math.ceil((wave.percent * eligible) / 100 - 1e-9)) : Math.min(wave.count, eligible);
}

/**
 * The agents a wave adds: the first of `ordered` (the eligible agents in rollout order) not yet
 * in an earlier wave, up to the wave's cumulative target.
 */
export function waveMembers(wave: WaveSize, ordered: string[], earlier: ReadonlySet<string>): string[] {
  const wanted = cumulativeTarget(wave, ordered.length) - earlier.size;
  if (wanted <= 0) return [];
  return ordered.filter((id) => !earlier.has(id)).slice(0, wanted);
}

export interface WaveTally {
  members: number;
  succeeded: number;
  failed: number;
}

export type GateVerdict = { verdict: 'pending' } | { verdict: 'passed' } | { verdict: 'failed'; reason: string };

/**
 * A wave's verdict. It fails as soon as the gate can no longer be met (too many failures, or too
 * few agents left to reach the ratio), without waiting for the rest; once it has timed out, the
 * agents still pending count as failed.
 */
export function judgeWave(tally: WaveTally, gate: Gate, timedOut: boolean): GateVerdict {
  const { members, succeeded } = tally;
  if (members === 0) return { verdict: 'passed' };
  const pending = members - succeeded - tally.failed;
  const failed = timedOut ? tally.failed + pending : tally.failed;
  const stillPending = timedOut ? 0 : pending;
  const share = (n: number) => `${n}/${members}`;
  if (gate.maxFailures !== null && failed > gate.maxFailures) {
    return { verdict: 'failed', reason: `${share(failed)} agents failed${timedOut && pending > 0 ? ` (${pending} timed out)` : ''}, more than the gate's ${gate.maxFailures}` };
  }
  if ((succeeded + stillPending) / members < gate.minSuccessRatio - 1e-9) {
    return {
      verdict: 'failed',
      reason: `${share(failed)} agents failed${timedOut && pending > 0 ? ` (${pending} timed out)` : ''}: success can reach at most ${Math.round(((succeeded + stillPending) / members) * 1000) / 10}%, the gate needs ${Math.round(gate.minSuccessRatio * 1000) / 10}%`,
    };
  }
  return stillPending === 0 ? { verdict: 'passed' } : { verdict: 'pending' };
}
