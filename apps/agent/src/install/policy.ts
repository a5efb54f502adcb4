import { MAX_INSTALL_COMMAND_LENGTH } from '@shoal/trust';

/** An install hook configured on the agent for one package name. */
export interface InstallHook {
  /** Run with /bin/sh -c in the finished package folder. */
  command: string;
  timeoutSeconds: number;
}

export const DEFAULT_HOOK_TIMEOUT_SECONDS = 600;
const MAX_HOOK_TIMEOUT_SECONDS = 7 * 24 * 3600;
const PACKAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export interface InstallPolicy {
  installHooks: Readonly<Record<string, InstallHook>>;
  /** Package names (or '*') whose release-carried, signed install command may run. */
  allowReleaseInstallCommands: readonly string[];
}

export type ChosenInstall = { command: string; timeoutSeconds: number; source: 'agent' | 'release' } | { none: string };

/**
 * What to run for an installed release: the agent's own hook for the name first; else the
 * release's signed command where the configuration allows it; else nothing, and why.
 */
export function chooseInstall(policy: InstallPolicy, name: string, releaseCommand: string | undefined): ChosenInstall {
  const hook = Object.hasOwn(policy.installHooks, name) ? policy.installHooks[name] : undefined;
  if (hook) return { ...hook, source: 'agent' };
  if (releaseCommand === undefined) return { none: `no install hook for ${name}` };
  const allowed = policy.allowReleaseInstallCommands.includes('*') || policy.allowReleaseInstallCommands.includes(name);
  if (allowed) return { command: releaseCommand, timeoutSeconds: DEFAULT_HOOK_TIMEOUT_SECONDS, source: 'release' };
  return { none: `no install hook for ${name} (the release carries a signed install command, but allowReleaseInstallCommands does not list ${name})` };
}

function commandProblem(command: unknown): string | undefined {
  if (typeof command !== 'string' || command.trim() === '') return 'must be a non-empty string';
  if (command.length > MAX_INSTALL_COMMAND_LENGTH) return `must be at most ${MAX_INSTALL_COMMAND_LENGTH} characters`;
  if (command.includes('\0')) return 'must not contain NUL';
  return undefined;
}

/**
 * `installHooks`: a JSON object (or its text, from the environment) of package name ->
 * { command, timeoutSeconds? }; every bad entry is named.
 */
export function parseInstallHooks(raw: unknown): Record<string, InstallHook> {
  const value: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('must be a JSON object of package name -> { "command": "...", "timeoutSeconds": 600 }');
  const hooks: Record<string, InstallHook> = {};
  const problems: string[] = [];
  for (const [name, entry] of Object.entries(value as Record<string, unknown>)) {
    if (!PACKAGE_NAME.test(name)) {
      problems.push(`${JSON.stringify(name.slice(0, 80))}: not a package name (${PACKAGE_NAME.source})`);
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      problems.push(`${name}: must be an object { "command": "...", "timeoutSeconds": 600 }`);
      continue;
    }
    const { command, timeoutSeconds = DEFAULT_HOOK_TIMEOUT_SECONDS, ...rest } = entry as Record<string, unknown>;
    const before = problems.length;
    const badCommand = commandProblem(command);
    if (badCommand) problems.push(`${name}.command: ${badCommand}`);
    if (typeof timeoutSeconds !== 'number' || !Number.isSafeInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > MAX_HOOK_TIMEOUT_SECONDS) {
      problems.push(`${name}.timeoutSeconds: must be an integer from 1 to ${MAX_HOOK_TIMEOUT_SECONDS}`);
    }
    for (const key of Object.keys(rest)) problems.push(`${name}.${key}: unknown setting`);
    if (problems.length === before) hooks[name] = { command: command as string, timeoutSeconds: timeoutSeconds as number };
  }
  if (problems.length > 0) throw new Error(`bad install hooks: ${problems.join('; ')}`);
  return hooks;
}

/** `allowReleaseInstallCommands`: package names or '*', comma-separated in the environment, a JSON array in a file. */
export function parseAllowedNames(raw: unknown): string[] {
  const items: unknown[] = typeof raw === 'string' ? raw.split(',').map((item) => item.trim()).filter((item) => item !== '') : Array.isArray(raw) ? raw : [raw];
  const bad = items.filter((item) => typeof item !== 'string' || (item !== '*' && !PACKAGE_NAME.test(item)));
  if (bad.length > 0) throw new Error(`must list package names or "*", not ${bad.map((item) => JSON.stringify(item)).join(', ')}`);
  return [...new Set(items as string[])];
}
