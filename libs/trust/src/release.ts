import { TrustError } from './errors';
import { compareSemVer, parseSemVer } from './semver';

/** A published release as the signed targets metadata records it. */
export interface ReleaseRecord {
  name: string;
  version: string;
  channel: string;
  /** SHA-256 info-hash of the package (64 lowercase hex). */
  infoHash: string;
  /** Length and SHA-256 (hex) of the metainfo bytes. */
  length: number;
  sha256: string;
  /** TUF target path, `NAME/VERSION.torrent`. */
  path: string;
  /** The signed install command agents may run once every byte is verified (when their configuration allows it). */
  install?: string;
}

/** The `custom` object of a release target. */
export interface ReleaseCustom {
  infoHash: string;
  name: string;
  version: string;
  channel: string;
  install?: string;
}

export const DEFAULT_CHANNEL = 'stable';

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const VERSION = /^[0-9A-Za-z.+-]{1,64}$/;
const CHANNEL = /^[a-z0-9-]{1,32}$/;
const INFO_HASH = /^[0-9a-f]{64}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** Longest signed install command: a shell line that calls a script, not the script itself. */
export const MAX_INSTALL_COMMAND_LENGTH = 4096;

export function checkName(name: unknown): asserts name is string {
  // The type check comes first: RegExp.test would read undefined as the text "undefined".
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new TrustError('TRUST_INVALID_NAME', `release name ${JSON.stringify(name)} must match ${NAME.source}`);
  }
}

export function checkVersion(version: unknown): asserts version is string {
  // The type check comes first: RegExp.test would read undefined as the text "undefined".
  if (typeof version !== 'string' || !VERSION.test(version)) {
    throw new TrustError('TRUST_INVALID_VERSION', `release version ${JSON.stringify(version)} must match ${VERSION.source}`);
  }
}

export function checkChannel(channel: unknown): asserts channel is string {
  // The type check comes first: RegExp.test would read undefined as the text "undefined".
  if (typeof channel !== 'string' || !CHANNEL.test(channel)) {
    throw new TrustError('TRUST_INVALID_CHANNEL', `channel ${JSON.stringify(channel)} must match ${CHANNEL.source}`);
  }
}

/** Why `command` cannot be a release's install command, or undefined when it can. */
function installCommandProblem(command: unknown): string | undefined {
  if (typeof command !== 'string') return `must be a string, not ${typeof command}`;
  if (command.trim() === '') return 'must not be empty';
  if (command.length > MAX_INSTALL_COMMAND_LENGTH) return `must be at most ${MAX_INSTALL_COMMAND_LENGTH} characters, not ${command.length}`;
  // No process argument can hold a NUL (spawn refuses it): such a release could never install.
  if (command.includes('\0')) return 'must not contain NUL';
  return undefined;
}

export function checkInstallCommand(command: unknown): asserts command is string {
  const problem = installCommandProblem(command);
  if (problem) throw new TrustError('TRUST_INVALID_INSTALL', `install command ${problem}`);
}

export function isInfoHash(text: unknown): text is string {
  return typeof text === 'string' && INFO_HASH.test(text);
}

export function targetPathOf(name: string, version: string): string {
  return `${name}/${version}.torrent`;
}

/** Name and version of a release target path, or undefined for any other path. */
export function parseTargetPath(path: string): { name: string; version: string } | undefined {
  const slash = path.indexOf('/');
  if (slash < 0 || !path.endsWith('.torrent')) return undefined;
  const name = path.slice(0, slash);
  const version = path.slice(slash + 1, -'.torrent'.length);
  return NAME.test(name) && VERSION.test(version) ? { name, version } : undefined;
}

/**
 * The path below the targets URL where a consistent-snapshot client fetches a target: tuf-js
 * puts the first listed hash before the file name (`NAME/SHA256.VERSION.torrent`).
 */
export function servedTargetPath(targetPath: string, sha256: string): string {
  const slash = targetPath.lastIndexOf('/');
  return `${targetPath.slice(0, slash + 1)}${sha256}.${targetPath.slice(slash + 1)}`;
}

/** Target path and hash of a served path, or undefined when it is not one a release uses. */
export function parseServedTargetPath(served: string): { targetPath: string; sha256: string } | undefined {
  const slash = served.indexOf('/');
  const fileName = served.slice(slash + 1);
  const sha256 = fileName.slice(0, 64);
  if (slash < 0 || !SHA256_HEX.test(sha256) || fileName[64] !== '.') return undefined;
  const targetPath = `${served.slice(0, slash)}/${fileName.slice(65)}`;
  return parseTargetPath(targetPath) ? { targetPath, sha256 } : undefined;
}

/** Well-formed custom fields of the target `name@version`, or a reason they are not. */
export function readCustom(custom: Record<string, unknown>, name: string, version: string): ReleaseCustom | string {
  if (custom['name'] !== name) return `custom.name is ${JSON.stringify(custom['name'])}, expected ${JSON.stringify(name)}`;
  if (custom['version'] !== version) return `custom.version is ${JSON.stringify(custom['version'])}, expected ${JSON.stringify(version)}`;
  const channel = custom['channel'];
  if (typeof channel !== 'string' || !CHANNEL.test(channel)) return `custom.channel ${JSON.stringify(channel)} is not a channel name`;
  const infoHash = custom['infoHash'];
  if (!isInfoHash(infoHash)) return `custom.infoHash ${JSON.stringify(infoHash)} is not 64 lowercase hex digits`;
  const install = custom['install'];
  if (install === undefined) return { infoHash, name, version, channel };
  const problem = installCommandProblem(install);
  if (problem) return `custom.install ${problem}`;
  return { infoHash, name, version, channel, install: install as string };
}

/**
 * Refuses `version` unless it is newer than every version already published under the name.
 * The ordering is SemVer 2.0.0 precedence; when either side is not SemVer there is no ordering
 * Shoal can defend, so the release is refused rather than guessed at.
 */
export function checkNewerThan(name: string, version: string, published: readonly string[]): void {
  if (published.length === 0) return;
  const candidate = parseSemVer(version);
  if (!candidate) {
    throw new TrustError('TRUST_VERSION_UNORDERED', `${name}@${version} is not a SemVer 2.0.0 version, so it cannot be ordered after ${name}@${published.join(', ')}`);
  }
  for (const existing of published) {
    const parsed = parseSemVer(existing);
    if (!parsed) {
      throw new TrustError('TRUST_VERSION_UNORDERED', `${name}@${existing} is not a SemVer 2.0.0 version, so no later version of ${name} can be ordered after it`);
    }
    if (compareSemVer(candidate, parsed) <= 0) {
      throw new TrustError('TRUST_VERSION_NOT_NEWER', `${name}@${version} is not newer than the published ${name}@${existing}: versions only go up`);
    }
  }
}
