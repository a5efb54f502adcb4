import type { BDict } from '@shoal/torrent';
import { WireError, WireUsageError } from './errors';

/** The BEP 10 name of peer exchange (BEP 11); PeerConnection announces it by default. */
export const PEX_EXTENSION = 'ut_pex';

/** BEP 11 contact flags: one byte per added contact in `added.f` / `added6.f`. */
export const PexFlag = {
  /** Prefers (MSE) encryption: meaningless inside Shoal's TLS wire, passed through as received. */
  prefersEncryption: 0x01,
  /** A seed, or upload only. */
  seed: 0x02,
  supportsUtp: 0x04,
  /** Announced ut_holepunch. */
  holepunch: 0x08,
  /** The sender connected to it (an outgoing connection): it accepts connections at this address. */
  reachable: 0x10,
} as const;

/**
 * Added contacts (IPv4 and IPv6 together) a received message may carry. BEP 11 asks for at most
 * 50 except in the first message, and libtorrent 2.0 puts up to 100 (its `max_peer_entries`)
 * into every message, so 100 is what a conforming peer can send.
 */
export const MAX_PEX_ADDED = 100;
/** Dropped contacts a received message may carry (the same bound as added). */
export const MAX_PEX_DROPPED = 100;

const IPV4_ENTRY = 6;
const IPV6_ENTRY = 18;

/** A contact's address: `ip` is 4 (IPv4) or 16 (IPv6) bytes; IPv4-mapped IPv6 counts as IPv4. */
export interface PexEndpoint {
  ip: Uint8Array;
  port: number;
}

export interface PexContact extends PexEndpoint {
  /** PexFlag bits (0..255). */
  flags: number;
}

/** A ut_pex message: contacts connected since the previous message, and contacts gone. */
export interface PexMessage {
  added: PexContact[];
  dropped: PexEndpoint[];
}

export interface PexLimits {
  /** Least time between two messages to one peer. Default 60 000 (BEP 11: at most one a minute). */
  sendIntervalMs: number;
  /**
   * From the handshake to the first message, so that it carries the peers a swarm connects at
   * startup together rather than spending the minute on the first one. Default 5000.
   */
  firstMessageDelayMs: number;
  /**
   * Messages from one peer arriving sooner than this after the last one accepted are ignored.
   * Default 30 000: half BEP 11's minute, leaving room for a sender's timer jitter and for
   * messages that queued behind piece data.
   */
  minReceiveIntervalMs: number;
  /** Added contacts per message after the first (which may carry MAX_PEX_ADDED). Default 50 (BEP 11). */
  maxAddedPerMessage: number;
  /** Dropped contacts per message. Default 50 (BEP 11). */
  maxDroppedPerMessage: number;
}

export const DEFAULT_PEX_LIMITS: Readonly<PexLimits> = Object.freeze({
  sendIntervalMs: 60_000,
  firstMessageDelayMs: 5_000,
  minReceiveIntervalMs: 30_000,
  maxAddedPerMessage: 50,
  maxDroppedPerMessage: 50,
});

/** Defaults filled in and every field checked; throws WireUsageError. */
export function resolvePexLimits(limits: Partial<PexLimits> = {}): Readonly<PexLimits> {
  const out = { ...DEFAULT_PEX_LIMITS, ...limits };
  for (const [key, value] of Object.entries(out)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new WireUsageError(`pex limits: ${key} must be a non-negative integer`);
  }
  if (out.maxAddedPerMessage < 1 || out.maxAddedPerMessage > MAX_PEX_ADDED) {
    throw new WireUsageError(`pex limits: maxAddedPerMessage must be in 1..${MAX_PEX_ADDED}`);
  }
  if (out.maxDroppedPerMessage < 1 || out.maxDroppedPerMessage > MAX_PEX_DROPPED) {
    throw new WireUsageError(`pex limits: maxDroppedPerMessage must be in 1..${MAX_PEX_DROPPED}`);
  }
  return Object.freeze(out);
}

// ---------------------------------------------------------------- addresses

function isIpv4Mapped(ip: Uint8Array): boolean {
  if (ip.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return false;
  return ip[10] === 0xff && ip[11] === 0xff;
}

/** A copy of the address, IPv4-mapped IPv6 as plain IPv4 (one host, one spelling). */
function canonicalIp(ip: Uint8Array): Buffer {
  if (ip.length === 4) return Buffer.from(ip);
  if (ip.length !== 16) throw new WireUsageError(`an IP address is 4 or 16 bytes, not ${ip.length}`);
  return Buffer.from(isIpv4Mapped(ip) ? ip.subarray(12) : ip);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new WireUsageError(`port must be in 1..65535, got ${port}`);
}

/** A key equal for equal endpoints (IPv4-mapped IPv6 and IPv4 alike). Throws WireUsageError on a bad address. */
export function pexEndpointKey(endpoint: PexEndpoint): string {
  return `${canonicalIp(endpoint.ip).toString('hex')}/${endpoint.port}`;
}

function describe(endpoint: PexEndpoint): string {
  const ip = endpoint.ip;
  if (ip.length === 4) return `${ip.join('.')}:${endpoint.port}`;
  const groups: string[] = [];
  for (let i = 0; i < ip.length; i += 2) groups.push((((ip[i] as number) << 8) | (ip[i + 1] as number)).toString(16));
  return `[${groups.join(':')}]:${endpoint.port}`;
}

/**
 * Why a received contact is not worth dialling, or undefined: port 0, "this network", multicast,
 * reserved and broadcast addresses never are; loopback only when the sender itself is on
 * loopback (as libtorrent: a remote host's 127.0.0.1 is our own host).
 */
function unusable(endpoint: PexEndpoint, senderOnLoopback: boolean): boolean {
  const { ip, port } = endpoint;
  if (port === 0) return true;
  if (ip.length === 4) {
    const first = ip[0] as number;
    if (first === 0 || first >= 224) return true;
    return first === 127 && !senderOnLoopback;
  }
  if (ip[0] === 0xff || ip.every((b) => b === 0)) return true;
  return isLoopback(ip) && !senderOnLoopback;
}

function isLoopback(ip: Uint8Array): boolean {
  if (ip.length === 4) return ip[0] === 127;
  return ip.subarray(0, 15).every((b) => b === 0) && ip[15] === 1;
}

// ---------------------------------------------------------------- codec

function bad(message: string): never {
  throw new WireError('WIRE_BAD_PEX', `ut_pex: ${message}`);
}

function stringField(payload: BDict, key: string): Buffer | undefined {
  const value = payload.get(key);
  if (value === undefined) return undefined;
  if (!Buffer.isBuffer(value)) bad(`${key} is not a string`);
  return value;
}

function entryCount(bytes: Buffer | undefined, entrySize: number, key: string): number {
  if (bytes === undefined) return 0;
  if (bytes.length % entrySize !== 0) bad(`${key} is ${bytes.length} bytes, not a multiple of ${entrySize}`);
  return bytes.length / entrySize;
}

function readEndpoints(bytes: Buffer | undefined, entrySize: number): PexEndpoint[] {
  const out: PexEndpoint[] = [];
  if (bytes === undefined) return out;
  const ipLength = entrySize - 2;
  for (let at = 0; at < bytes.length; at += entrySize) {
    out.push({ ip: Buffer.from(bytes.subarray(at, at + ipLength)), port: bytes.readUInt16BE(at + ipLength) });
  }
  return out;
}

function withFlags(endpoints: PexEndpoint[], flags: Buffer | undefined, key: string): PexContact[] {
  if (flags !== undefined && flags.length !== endpoints.length) bad(`${key} has ${flags.length} bytes for ${endpoints.length} contacts`);
  return endpoints.map((e, i) => ({ ...e, flags: flags?.[i] ?? 0 }));
}

/**
 * Reads a ut_pex dictionary (BEP 11) strictly: `added` / `dropped` of 6-byte and `added6` /
 * `dropped6` of 18-byte compact contacts, optional `added.f` / `added6.f` with one flag byte per
 * added contact, at least one of the four contact fields, at most MAX_PEX_ADDED added and
 * MAX_PEX_DROPPED dropped, no contact twice and none both added and dropped. Unknown keys are
 * ignored (BEP 10). Throws WIRE_BAD_PEX. Addresses are copied out of the payload.
 */
export function parsePexMessage(payload: BDict): PexMessage {
  const added4 = stringField(payload, 'added');
  const flags4 = stringField(payload, 'added.f');
  const added6 = stringField(payload, 'added6');
  const flags6 = stringField(payload, 'added6.f');
  const dropped4 = stringField(payload, 'dropped');
  const dropped6 = stringField(payload, 'dropped6');
  if (!added4 && !added6 && !dropped4 && !dropped6) bad('none of added, added6, dropped, dropped6');
  const addedCount = entryCount(added4, IPV4_ENTRY, 'added') + entryCount(added6, IPV6_ENTRY, 'added6');
  if (addedCount > MAX_PEX_ADDED) bad(`${addedCount} added contacts, more than ${MAX_PEX_ADDED}`);
  const droppedCount = entryCount(dropped4, IPV4_ENTRY, 'dropped') + entryCount(dropped6, IPV6_ENTRY, 'dropped6');
  if (droppedCount > MAX_PEX_DROPPED) bad(`${droppedCount} dropped contacts, more than ${MAX_PEX_DROPPED}`);

  const added = [...withFlags(readEndpoints(added4, IPV4_ENTRY), flags4, 'added.f'), ...withFlags(readEndpoints(added6, IPV6_ENTRY), flags6, 'added6.f')];
  const dropped = [...readEndpoints(dropped4, IPV4_ENTRY), ...readEndpoints(dropped6, IPV6_ENTRY)];
  const addedKeys = new Set<string>();
  for (const contact of added) {
    const key = pexEndpointKey(contact);
    if (addedKeys.has(key)) bad(`${describe(contact)} is added twice`);
    addedKeys.add(key);
  }
  const droppedKeys = new Set<string>();
  for (const endpoint of dropped) {
    const key = pexEndpointKey(endpoint);
    if (droppedKeys.has(key)) bad(`${describe(endpoint)} is dropped twice`);
    if (addedKeys.has(key)) bad(`${describe(endpoint)} is added and dropped in one message`);
    droppedKeys.add(key);
  }
  return { added, dropped };
}

/**
 * Builds a ut_pex dictionary. All six fields are always present (empty when there is nothing to
 * say), as libtorrent sends them: libtorrent reads `added` only together with an `added.f` of
 * matching length. Throws WireUsageError on bad addresses, ports or flags, duplicates, or more
 * than MAX_PEX_ADDED / MAX_PEX_DROPPED contacts.
 */
export function buildPexMessage(message: PexMessage): BDict {
  if (message.added.length > MAX_PEX_ADDED) throw new WireUsageError(`ut_pex: more than ${MAX_PEX_ADDED} added contacts`);
  if (message.dropped.length > MAX_PEX_DROPPED) throw new WireUsageError(`ut_pex: more than ${MAX_PEX_DROPPED} dropped contacts`);
  const v4 = { added: [] as Buffer[], flags: [] as number[], dropped: [] as Buffer[] };
  const v6 = { added: [] as Buffer[], flags: [] as number[], dropped: [] as Buffer[] };
  const seen = new Set<string>();
  const compact = (endpoint: PexEndpoint): { family: typeof v4; entry: Buffer } => {
    const ip = canonicalIp(endpoint.ip);
    checkPort(endpoint.port);
    const key = pexEndpointKey(endpoint);
    if (seen.has(key)) throw new WireUsageError(`ut_pex: ${describe(endpoint)} is listed twice`);
    seen.add(key);
    const entry = Buffer.alloc(ip.length + 2);
    ip.copy(entry);
    entry.writeUInt16BE(endpoint.port, ip.length);
    return { family: ip.length === 4 ? v4 : v6, entry };
  };
  for (const contact of message.added) {
    if (!Number.isInteger(contact.flags) || contact.flags < 0 || contact.flags > 255) {
      throw new WireUsageError(`ut_pex: flags must be in 0..255, got ${contact.flags}`);
    }
    const { family, entry } = compact(contact);
    family.added.push(entry);
    family.flags.push(contact.flags);
  }
  for (const endpoint of message.dropped) {
    const { family, entry } = compact(endpoint);
    family.dropped.push(entry);
  }
  return new Map([
    ['added', Buffer.concat(v4.added)],
    ['added.f', Buffer.from(v4.flags)],
    ['added6', Buffer.concat(v6.added)],
    ['added6.f', Buffer.from(v6.flags)],
    ['dropped', Buffer.concat(v4.dropped)],
    ['dropped6', Buffer.concat(v6.dropped)],
  ]);
}

// ---------------------------------------------------------------- per-connection state

/** What `PexState.receive` made of a message. */
export type PexReceipt =
  /** Well formed and in time: the contacts worth dialling (`skipped` were not: see receive). */
  | { accepted: true; added: PexContact[]; dropped: PexEndpoint[]; skipped: number }
  /** Ignored: WIRE_BAD_PEX or WIRE_PEX_TOO_FREQUENT. The connection goes on. */
  | { accepted: false; reason: WireError };

export interface PexCounters {
  sent: number;
  received: number;
  ignored: number;
}

/**
 * Peer exchange on one connection, sans-IO: what to tell this peer, and what to make of what it
 * tells us. The caller (the agent's session) gives it the live, handshaken peers of the package
 * and the time; it answers with the ut_pex payload to send, if any, and sends it with
 * `PeerConnection.extended(PEX_EXTENSION, ...)`.
 *
 * Sending: the first message may go `firstMessageDelayMs` after construction, later ones
 * `sendIntervalMs` after the previous one. Each carries only the change since the previous one
 * (contacts connected since, contacts gone since), never the recipient itself, at most
 * MAX_PEX_ADDED added in the first and `maxAddedPerMessage` added / `maxDroppedPerMessage`
 * dropped in later ones (the rest wait for the next). With no change nothing is sent and the
 * interval is not spent.
 *
 * Receiving: a message that breaks BEP 11 (WIRE_BAD_PEX) or comes sooner than
 * `minReceiveIntervalMs` after the last accepted one (WIRE_PEX_TOO_FREQUENT) is ignored and
 * counted; the others give their contacts, minus those no one should dial.
 */
export class PexState {
  readonly limits: Readonly<PexLimits>;
  /** Contacts this peer holds from us: added and not dropped since. */
  private readonly advertised = new Map<string, PexContact>();
  private nextSendAtValue: number;
  private firstSent = false;
  private lastAcceptedAt: number | undefined;
  private readonly counters: PexCounters = { sent: 0, received: 0, ignored: 0 };

  constructor(options: { now: number; limits?: Partial<PexLimits> }) {
    if (!Number.isFinite(options.now)) throw new WireUsageError('now must be a number');
    this.limits = resolvePexLimits(options.limits);
    this.nextSendAtValue = options.now + this.limits.firstMessageDelayMs;
  }

  /** The earliest time `poll` may return a message. */
  get nextSendAt(): number {
    return this.nextSendAtValue;
  }

  /** Messages sent, accepted and ignored on this connection. */
  get stats(): Readonly<PexCounters> {
    return { ...this.counters };
  }

  /**
   * The ut_pex payload to send now, or undefined (too early, or nothing changed). `live` are the
   * peers of the package with a completed handshake, at the address and port they accept
   * connections on; `recipient` is this connection's peer at its listen address, when known.
   * Throws WireUsageError on a malformed contact.
   */
  poll(now: number, live: Iterable<PexContact>, recipient?: PexEndpoint): BDict | undefined {
    if (now < this.nextSendAtValue) return undefined;
    const excluded = recipient ? pexEndpointKey(recipient) : undefined;
    const current = new Map<string, PexContact>();
    for (const contact of live) {
      const key = pexEndpointKey(contact);
      if (key === excluded || current.has(key)) continue;
      checkPort(contact.port);
      current.set(key, { ip: canonicalIp(contact.ip), port: contact.port, flags: contact.flags });
    }
    const maxAdded = this.firstSent ? this.limits.maxAddedPerMessage : MAX_PEX_ADDED;
    const added: [string, PexContact][] = [];
    for (const entry of current) {
      if (added.length >= maxAdded) break;
      if (!this.advertised.has(entry[0])) added.push(entry);
    }
    const dropped: [string, PexContact][] = [];
    for (const entry of this.advertised) {
      if (dropped.length >= this.limits.maxDroppedPerMessage) break;
      if (!current.has(entry[0])) dropped.push(entry);
    }
    if (added.length === 0 && dropped.length === 0) return undefined;
    const payload = buildPexMessage({ added: added.map(([, c]) => c), dropped: dropped.map(([, { ip, port }]) => ({ ip, port })) });
    for (const [key, contact] of added) this.advertised.set(key, contact);
    for (const [key] of dropped) this.advertised.delete(key);
    this.firstSent = true;
    this.nextSendAtValue = now + this.limits.sendIntervalMs;
    this.counters.sent++;
    return payload;
  }

  /**
   * Takes a ut_pex payload from this peer. `senderIp` is the peer's address as the socket sees
   * it: loopback contacts are kept only from a sender on loopback. Contacts with port 0 or a
   * "this network", multicast, reserved or broadcast address are skipped and counted.
   */
  receive(payload: BDict, now: number, senderIp?: Uint8Array): PexReceipt {
    let message: PexMessage;
    try {
      message = parsePexMessage(payload);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      return this.ignore(e);
    }
    if (this.lastAcceptedAt !== undefined && now - this.lastAcceptedAt < this.limits.minReceiveIntervalMs) {
      return this.ignore(
        new WireError('WIRE_PEX_TOO_FREQUENT', `ut_pex: a message ${now - this.lastAcceptedAt} ms after the previous one (at least ${this.limits.minReceiveIntervalMs} ms)`),
      );
    }
    this.lastAcceptedAt = now;
    this.counters.received++;
    const senderOnLoopback = senderIp !== undefined && isLoopback(canonicalIp(senderIp));
    const added: PexContact[] = [];
    let skipped = 0;
    for (const contact of message.added) {
      const canonical = { ip: canonicalIp(contact.ip), port: contact.port, flags: contact.flags };
      if (unusable(canonical, senderOnLoopback)) skipped++;
      else added.push(canonical);
    }
    const dropped = message.dropped.map((e) => ({ ip: canonicalIp(e.ip), port: e.port }));
    return { accepted: true, added, dropped, skipped };
  }

  private ignore(reason: WireError): PexReceipt {
    this.counters.ignored++;
    return { accepted: false, reason };
  }
}
