import { readFileSync } from 'node:fs';
import { ShoalError } from '@shoal/torrent';

/**
 * Settings for a Shoal process: each field has its environment variable, its documentation and
 * its default next to its parser. Values come from a JSON file, then the environment, then
 * explicit overrides (command-line flags); every bad field is reported, one line each.
 */
export interface Field<V> {
  env: string;
  doc: string;
  default?: V;
  parse(raw: unknown): V;
}

export type Schema<T> = { [K in keyof T]: Field<T[K]> };

export class ConfigError extends ShoalError {
  constructor(readonly problems: string[]) {
    super('CONFIG_INVALID', `invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}

export interface LoadOptions<T> {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Partial<Record<keyof T, unknown>>;
  /** Checks across fields, run when every field parsed; returns problems. */
  check?: (settings: T) => string[];
}

export function loadSettings<T>(schema: Schema<T>, options: LoadOptions<T> = {}): T {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  let fromFile: Record<string, unknown> = {};
  if (options.file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(options.file, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('must hold a JSON object');
      fromFile = parsed as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError([`${options.file}: ${(err as Error).message}`]);
    }
    for (const key of Object.keys(fromFile)) {
      if (!Object.hasOwn(schema, key)) problems.push(`${key} (in ${options.file}): unknown setting`);
    }
  }
  const settings: Partial<Record<keyof T, unknown>> = {};
  for (const key of Object.keys(schema) as (keyof T)[]) {
    const field = schema[key];
    const override = options.overrides?.[key];
    const [raw, source] =
      override !== undefined
        ? [override, 'command line']
        : env[field.env] !== undefined
          ? [env[field.env], field.env]
          : fromFile[key as string] !== undefined
            ? [fromFile[key as string], options.file as string]
            : [undefined, 'default'];
    if (raw === undefined) {
      if (field.default === undefined) problems.push(`${String(key)} (${field.env}): required: ${field.doc}`);
      else settings[key] = field.default;
      continue;
    }
    try {
      settings[key] = field.parse(raw);
    } catch (err) {
      problems.push(`${String(key)} (${source}): ${(err as Error).message}, got ${JSON.stringify(raw)}`);
    }
  }
  if (problems.length === 0 && options.check) problems.push(...options.check(settings as T));
  if (problems.length > 0) throw new ConfigError(problems);
  return settings as T;
}

export const text = (raw: unknown): string => {
  if (typeof raw !== 'string' || raw.trim() === '') throw new Error('must be a non-empty string');
  return raw.trim();
};

export const integer =
  (min: number, max: number) =>
  (raw: unknown): number => {
    const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`must be an integer from ${min} to ${max}`);
    }
    return value;
  };

export const fraction = (raw: unknown): number => {
  const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new Error('must be a number from 0 to 1');
  }
  return value;
};

export const oneOf =
  <V extends string>(values: readonly V[]) =>
  (raw: unknown): V => {
    if (!values.includes(raw as V)) throw new Error(`must be one of ${values.join(', ')}`);
    return raw as V;
  };

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(raw: unknown): HostPort {
  const value = text(raw);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port > 65535) {
    throw new Error('must be host:port (e.g. 127.0.0.1:7443 or [::1]:7443; port 0 picks a free one)');
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export { AGENT_MALLOC_TUNABLES, agentMallocTuningAdvice, missingAgentMallocTunables, withAgentMallocTuning } from './malloc-tuning';
