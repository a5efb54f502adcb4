import { isIP } from 'node:net';
import type { AnnounceEvent, AnnounceRequest, ScrapeRequest } from '@shoal/proto';
import type { Location } from '@shoal/topology';
import { TrackerError } from './tracker.errors';

export const INFO_HASH_BYTES = 20;
export const MAX_ADDRESSES = 8;
export const MAX_SCRAPE_HASHES = 100;
export const MAX_AGENT_ID_LENGTH = 256;
export const MAX_LABEL_LENGTH = 256;

const EVENTS: readonly AnnounceEvent[] = ['ANNOUNCE_EVENT_NONE', 'ANNOUNCE_EVENT_STARTED', 'ANNOUNCE_EVENT_COMPLETED', 'ANNOUNCE_EVENT_STOPPED'];

/**
 * The unspecified address in any spelling isIP accepts: IPv4 literals are canonical dotted quads,
 * and an IPv6 literal all of whose digits are zeros (`::`, `0::0`, `::0.0.0.0`) is `::`. Same
 * answers as a node:net BlockList holding both, at a fraction of its cost per announce.
 */
function isUnspecified(address: string, version: number): boolean {
  return version === 4 ? address === '0.0.0.0' : /^[0:.]+$/.test(address);
}

const bad = (field: string, message: string): TrackerError => new TrackerError('TRACKER_BAD_REQUEST', `${field}: ${message}`, { field });

/** A validated announce, ready to store. */
export interface ValidAnnounce {
  infoHash: Buffer;
  /** Lowercase hex of the info-hash: the swarm's name in Redis keys. */
  swarm: string;
  port: number;
  addresses: string[];
  seed: boolean;
  stopped: boolean;
  /** STARTED or COMPLETED: the swarm gained a member or a seed, which others should see at once. */
  changed: boolean;
  numwant: number;
}

/** Strips the IPv4-mapped IPv6 prefix (`::ffff:1.2.3.4` -> `1.2.3.4`). */
export function unmapIPv4(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return mapped && isIP(mapped[1] as string) === 4 ? (mapped[1] as string) : address;
}

/**
 * A usable peer address, or a reason why not: an IPv4/IPv6 literal (node:net isIP), not the
 * unspecified address, without an IPv6 zone id (`fe80::1%eth0` means nothing to another host).
 * IPv4-mapped IPv6 literals are returned as plain IPv4.
 */
export function checkAddress(raw: unknown): { address: string } | { problem: string } {
  if (typeof raw !== 'string') return { problem: 'must be a string' };
  const address = unmapIPv4(raw);
  const version = isIP(address);
  if (version === 0) return { problem: `${JSON.stringify(raw.slice(0, 64))} is not an IPv4 or IPv6 literal` };
  if (address.includes('%')) return { problem: `${JSON.stringify(raw)} carries a zone id, which is meaningless to other hosts` };
  if (isUnspecified(address, version)) return { problem: `${JSON.stringify(raw)} is the unspecified address` };
  return { address };
}

/**
 * The address the controller saw the call come from: a bare IP literal, or grpc-js
 * `call.getPeer()` forms (`ipv4:1.2.3.4:5678`, `ipv6:[::1]:5678`, `[::1]:5678`, `1.2.3.4:5678`).
 */
export function parseObservedAddress(observed: string): string | undefined {
  let text = typeof observed === 'string' ? observed.trim() : '';
  text = text.replace(/^ipv[46]:/i, '');
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text);
  if (bracketed) text = bracketed[1] as string;
  else if (isIP(text) === 0) {
    const hostPort = /^([^:]+):\d+$/.exec(text);
    if (hostPort) text = hostPort[1] as string;
  }
  const checked = checkAddress(text);
  return 'address' in checked ? checked.address : undefined;
}

const isBytes = (value: unknown): value is Uint8Array => value instanceof Uint8Array;

const counter = (request: Record<string, unknown>, field: string): number => {
  const value = request[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw bad(field, `must be a non-negative integer below 2^53 (got ${String(value)})`);
  }
  return value;
};

export function infoHashOf(value: unknown, field: string): Buffer {
  if (!isBytes(value)) throw bad(field, 'must be bytes');
  if (value.length !== INFO_HASH_BYTES) throw bad(field, `must be exactly ${INFO_HASH_BYTES} bytes (the truncated v2 info-hash), got ${value.length}`);
  return Buffer.from(value);
}

/** Checks every field of an announce; throws TrackerError TRACKER_BAD_REQUEST naming the field. */
export function validateAnnounce(
  request: AnnounceRequest,
  observedAddress: string,
  limits: { defaultNumwant: number; maxNumwant: number },
): ValidAnnounce {
  if (typeof request !== 'object' || request === null) throw bad('request', 'must be an AnnounceRequest');
  const fields = request as unknown as Record<string, unknown>;
  const infoHash = infoHashOf(fields.infoHash, 'info_hash');

  const port = fields.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw bad('port', `must be an integer from 1 to 65535 (got ${String(port)})`);
  }

  const rawAddresses = fields.addresses ?? [];
  if (!Array.isArray(rawAddresses)) throw bad('addresses', 'must be a list of IP literals');
  if (rawAddresses.length > MAX_ADDRESSES) throw bad('addresses', `at most ${MAX_ADDRESSES} addresses (got ${rawAddresses.length})`);
  const addresses: string[] = [];
  rawAddresses.forEach((raw: unknown, i) => {
    const checked = checkAddress(raw);
    if ('problem' in checked) throw bad(`addresses[${i}]`, checked.problem);
    if (!addresses.includes(checked.address)) addresses.push(checked.address);
  });
  if (addresses.length === 0) {
    const observed = parseObservedAddress(observedAddress);
    if (observed === undefined) {
      throw bad('addresses', `none given, and the observed address ${JSON.stringify(observedAddress)} is not usable: list the addresses to announce`);
    }
    addresses.push(observed);
  }

  const left = counter(fields, 'left');
  counter(fields, 'uploaded');
  counter(fields, 'downloaded');

  const event = fields.event ?? 'ANNOUNCE_EVENT_NONE';
  if (!EVENTS.includes(event as AnnounceEvent)) throw bad('event', `unknown event ${JSON.stringify(event)}`);

  const numwant = fields.numwant ?? 0;
  if (typeof numwant !== 'number' || !Number.isInteger(numwant) || numwant < 0) {
    throw bad('numwant', `must be a non-negative integer (got ${String(numwant)})`);
  }

  return {
    infoHash,
    swarm: infoHash.toString('hex'),
    port,
    addresses,
    seed: left === 0,
    stopped: event === 'ANNOUNCE_EVENT_STOPPED',
    changed: event === 'ANNOUNCE_EVENT_STARTED' || event === 'ANNOUNCE_EVENT_COMPLETED',
    numwant: Math.min(numwant === 0 ? limits.defaultNumwant : numwant, limits.maxNumwant),
  };
}

export function validateScrape(request: ScrapeRequest): Buffer[] {
  if (typeof request !== 'object' || request === null) throw bad('request', 'must be a ScrapeRequest');
  const hashes = (request as unknown as Record<string, unknown>).infoHashes ?? [];
  if (!Array.isArray(hashes)) throw bad('info_hashes', 'must be a list of 20-byte info-hashes');
  if (hashes.length > MAX_SCRAPE_HASHES) throw bad('info_hashes', `at most ${MAX_SCRAPE_HASHES} info-hashes per scrape (got ${hashes.length})`);
  return hashes.map((hash: unknown, i) => infoHashOf(hash, `info_hashes[${i}]`));
}

/** The announcer identity; it comes from the client certificate, so a bad one is a wiring bug. */
export function validateAnnouncer(announcer: { agentId: string; location: Location }): { agentId: string; location: Location } {
  const agentId = announcer?.agentId;
  if (typeof agentId !== 'string' || agentId === '' || agentId.length > MAX_AGENT_ID_LENGTH) {
    throw new TrackerError('TRACKER_NO_IDENTITY', 'announce without a usable agent identity (expected the client certificate agent id)');
  }
  const text = (value: unknown): string => (typeof value === 'string' && value.length <= MAX_LABEL_LENGTH ? value : '');
  const location = announcer.location ?? { region: '', zone: '', site: '' };
  return { agentId, location: { region: text(location.region), zone: text(location.zone), site: text(location.site) } };
}
