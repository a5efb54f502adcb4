import { isIP } from 'node:net';
import { PkiInputError } from './errors';

const DNS_LABEL_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const AGENT_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
// Package scopes become SAN DNS entries that libtorrent compares with the torrent name.
const PACKAGE_SCOPE_PATTERN = /^[a-z0-9][a-z0-9.-]*$/;
const MAX_DNS_NAME_LENGTH = 253;

/** GeneralName tags of the subjectAltName entries Shoal writes (RFC 5280 4.2.1.6). */
export const GENERAL_NAME_TAG = { dns: 2, uri: 6, ip: 7 } as const;

/** The scope that lets an agent swarm every package of the fleet. */
export const ALL_PACKAGES_SCOPE = '*';

/** Upper bound on SAN entries per certificate: every entry travels in every TLS handshake. */
export const MAX_SUBJECT_ALT_NAMES = 512;

/** A fleet name is the host part of every shoal:// URI, so it is held to DNS label rules. */
export const isFleetName = (fleet: unknown): fleet is string => typeof fleet === 'string' && DNS_LABEL_PATTERN.test(fleet);

export function requireFleet(fleet: unknown): string {
  if (!isFleetName(fleet)) {
    throw new PkiInputError(
      'PKI_INVALID_FLEET',
      `fleet must be a DNS label (a-z, 0-9, inner '-', 1..63 characters), got ${describeValue(fleet)}`,
    );
  }
  return fleet;
}

export function requireAgentId(agentId: unknown): string {
  if (typeof agentId !== 'string' || !AGENT_ID_PATTERN.test(agentId)) {
    throw new PkiInputError(
      'PKI_INVALID_AGENT_ID',
      `agent id must match [a-z0-9][a-z0-9-]{0,62}, got ${describeValue(agentId)}`,
    );
  }
  return agentId;
}

/** Validates package scopes and drops repeats, keeping the caller's order. */
export function requirePackageScopes(scopes: unknown): string[] {
  if (!Array.isArray(scopes) || scopes.length === 0) {
    throw new PkiInputError('PKI_INVALID_PACKAGE_SCOPE', 'an agent certificate needs at least one package scope');
  }
  const unique = [...new Set<unknown>(scopes)];
  if (unique.length > MAX_SUBJECT_ALT_NAMES) {
    throw new PkiInputError(
      'PKI_INVALID_PACKAGE_SCOPE',
      `at most ${MAX_SUBJECT_ALT_NAMES} package scopes per certificate (use '${ALL_PACKAGES_SCOPE}'), got ${unique.length}`,
    );
  }
  return unique.map((scope) => {
    if (scope === ALL_PACKAGES_SCOPE) return scope;
    if (typeof scope !== 'string' || scope.length > MAX_DNS_NAME_LENGTH || !PACKAGE_SCOPE_PATTERN.test(scope)) {
      throw new PkiInputError(
        'PKI_INVALID_PACKAGE_SCOPE',
        `package scope must be '${ALL_PACKAGES_SCOPE}' or match [a-z0-9][a-z0-9.-]* ` +
          `(at most ${MAX_DNS_NAME_LENGTH} characters), got ${describeValue(scope)}`,
      );
    }
    return scope;
  });
}

/** Validates a host name for a server certificate; DNS is case-insensitive, so it is lowercased. */
export function requireHostName(name: unknown): string {
  const lowered = typeof name === 'string' ? name.toLowerCase() : undefined;
  if (
    lowered === undefined ||
    lowered.length > MAX_DNS_NAME_LENGTH ||
    !lowered.split('.').every((label) => DNS_LABEL_PATTERN.test(label))
  ) {
    throw new PkiInputError('PKI_INVALID_SUBJECT_ALT_NAME', `not a DNS host name: ${describeValue(name)}`);
  }
  return lowered;
}

/** The 4 or 16 bytes that an iPAddress SAN entry holds for an IPv4 or IPv6 address. */
export function ipAddressBytes(address: unknown): Buffer {
  if (typeof address === 'string') {
    const family = isIP(address);
    if (family === 4) return Buffer.from(address.split('.').map(Number));
    // A zone index ("%eth0") names an interface of one host and has no meaning in a certificate.
    if (family === 6 && !address.includes('%')) return ipv6Bytes(address);
  }
  throw new PkiInputError('PKI_INVALID_SUBJECT_ALT_NAME', `not an IPv4 or IPv6 address: ${describeValue(address)}`);
}

/** Expands an IPv6 address that `isIP` accepted: "::" runs and a dotted IPv4 tail. */
function ipv6Bytes(address: string): Buffer {
  let text = address;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeroGroups = rest === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const bytes = Buffer.alloc(16);
  [...headGroups, ...zeroGroups, ...tailGroups].forEach((group, index) => {
    bytes.writeUInt16BE(parseInt(group, 16), index * 2);
  });
  return bytes;
}

export const caUri = (fleet: string): string => `shoal://${fleet}/ca`;
export const agentUri = (fleet: string, agentId: string): string => `shoal://${fleet}/agent/${agentId}`;
export const controllerUri = (fleet: string): string => `shoal://${fleet}/controller`;

/** Splits a shoal:// URI into fleet and path; any other URI gives undefined. */
export function parseShoalUri(uri: string): { fleet: string; path: string } | undefined {
  const match = /^shoal:\/\/([^/]*)\/(.*)$/.exec(uri);
  if (!match) return undefined;
  return { fleet: match[1] ?? '', path: match[2] ?? '' };
}

/** A short, safe rendering of a rejected value for error messages. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.toISOString() : 'an invalid Date';
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return value === null ? 'null' : typeof value;
}
