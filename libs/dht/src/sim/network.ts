import { childSeed, EventQueue, mulberry32 } from '@shoal/swarm';
import { decodeMessage, type DhtMessage, encodeMessage, type QueryMessage } from '../codec';
import { type DhtConfig, replyNodes } from '../config';
import type { Contact, Sender } from '../contact';
import type { LookupResult } from '../lookup';
import { type DhtAction, DhtNode } from '../node';
import { compareDistance, infoHashTarget, NODE_ID_BYTES, type NodeId } from '../node-id';
import type { RandomBytes } from '../random';

/**
 * An in-process network of DHT nodes in virtual time, each running the real core (DhtNode) with
 * the real codec: every message is encoded, carried with a random one-way latency, and decoded by
 * its receiver. The network plays the adapter: it verifies "certificates" (each host's id is what
 * its connection proves), reports a query to an address whose host has another id as
 * undeliverable one round trip later (a failed TLS handshake), and drops messages to dead hosts
 * and to addresses where no host lives (the core's timeout handles them).
 *
 * Hosts are 'live' (honest), 'dead' (silent: they died after the others learned about them) or
 * 'hostile' (fleet members with real certificates that answer find_node and get_peers with bogus
 * contacts; see `bogusReply`).
 */
export type HostState = 'live' | 'dead' | 'hostile';

export interface SimHost {
  readonly index: number;
  readonly contact: Contact;
  readonly sender: Sender;
  /** Replaced by `restart`. */
  core: DhtNode;
  state: HostState;
}

export interface SimNetworkOptions {
  seed: number;
  nodes: number;
  /** Hosts per /24: host i lives in 10.<s / 256>.<s % 256>.0/24 with s = floor(i / hostsPerSubnet). */
  hostsPerSubnet: number;
  /** One-way latency of each message, uniform in [min, max] ms. */
  latencyMs: readonly [number, number];
  config?: Partial<DhtConfig>;
}

const DHT_PORT = 6881;
/** Subnet 10.255.0.0/16 holds no host: contacts pointing there never answer. */
const UNUSED_PREFIX = '10.255';

interface SimEvent {
  readonly time: number;
  readonly run: () => void;
}

export class DhtSimNetwork {
  readonly hosts: SimHost[] = [];
  readonly k: number;
  now = 0;
  /** Messages carried (queries, replies), for the report. */
  messages = 0;
  /** Lookups started with findNode or getPeers (purpose 'lookup') that finished. */
  lookupsFinished = 0;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly random: () => number;
  private readonly randomBytes: RandomBytes;
  private readonly byEndpoint = new Map<string, SimHost>();
  private readonly tickAt: number[] = [];
  private readonly latency: readonly [number, number];
  private readonly config: Partial<DhtConfig> | undefined;
  private readonly finished = new Map<string, LookupResult>();
  private readonly hostiles: SimHost[] = [];

  constructor(options: SimNetworkOptions) {
    this.random = mulberry32(options.seed);
    this.randomBytes = seededRandomBytes(this.random);
    this.latency = options.latencyMs;
    this.config = options.config;
    if (!(options.hostsPerSubnet >= 1 && options.hostsPerSubnet <= 254)) throw new Error('hostsPerSubnet: 1..254 hosts fit in a /24');
    if (Math.ceil(options.nodes / options.hostsPerSubnet) > 255 * 256) throw new Error('too many subnets: 10.255.0.0/16 must stay unused');
    for (let index = 0; index < options.nodes; index++) {
      // A host's id stands for the SHA-256 of its certificate key: uniform, fixed by the seed.
      const id = this.randomBytes(NODE_ID_BYTES);
      const subnet = Math.floor(index / options.hostsPerSubnet);
      const address = `10.${subnet >> 8}.${subnet & 255}.${1 + (index % options.hostsPerSubnet)}`;
      const contact: Contact = { id, address, port: DHT_PORT };
      const core = this.newCore(id, 0);
      const host: SimHost = { index, contact, sender: { id, address, port: DHT_PORT, agentId: `agent-${index}` }, core, state: 'live' };
      this.hosts.push(host);
      this.byEndpoint.set(`${address}:${DHT_PORT}`, host);
      this.tickAt.push(Infinity);
    }
    this.k = this.hosts[0]?.core.config.k ?? 8;
  }

  /** The host restarts: a new core with an empty table and no stored peers (the caller bootstraps it). */
  restart(host: SimHost): DhtNode {
    host.core = this.newCore(host.contact.id, this.now);
    this.tickAt[host.index] = Infinity;
    return host.core;
  }

  /**
   * Fills every routing table as if each host had long been part of the DHT: for each bucket
   * depth d of a host, up to `perDepth` random hosts whose id shares exactly d leading bits with
   * its own are inserted through the real `RoutingTable.insert` (as having answered), so splits,
   * bucket limits, replacement caches and the diversity limits all apply. Sorting the ids makes
   * each depth's candidates one contiguous range: about 16 depths x perDepth inserts per host,
   * instead of simulating 10,000 joins (whose message cost would dwarf the lookups measured).
   */
  populateTables(perDepth = 2 * this.k): void {
    const sorted = this.hosts.slice().sort((a, b) => Buffer.compare(a.contact.id, b.contact.id));
    const ids = sorted.map((h) => h.contact.id);
    for (const host of this.hosts) {
      const own = host.contact.id;
      for (let depth = 0; depth < NODE_ID_BYTES * 8; depth++) {
        const [lo, hi] = prefixRange(ids, own, depth, true);
        const picks = sampleIndices(lo, hi, perDepth, this.random);
        for (const i of picks) host.core.table.insert((sorted[i] as SimHost).contact, 0, 'response');
        const [ownLo, ownHi] = prefixRange(ids, own, depth + 1, false);
        if (ownHi - ownLo <= 1) break;
      }
    }
  }

  /** Marks `count` random hosts outside `spare` with `state`. */
  assign(state: HostState, count: number, spare: (host: SimHost) => boolean = () => false): SimHost[] {
    const eligible = this.hosts.filter((h) => h.state === 'live' && !spare(h));
    const chosen: SimHost[] = [];
    for (let i = 0; i < count && eligible.length > 0; i++) {
      const at = Math.floor(this.random() * eligible.length);
      const host = eligible[at] as SimHost;
      eligible[at] = eligible[eligible.length - 1] as SimHost;
      eligible.pop();
      host.state = state;
      chosen.push(host);
    }
    if (state === 'hostile') this.hostiles.push(...chosen);
    return chosen;
  }

  /** A random host that passes `filter`. */
  pickHost(filter: (host: SimHost) => boolean): SimHost {
    const eligible = this.hosts.filter(filter);
    if (eligible.length === 0) throw new Error('no host passes the filter');
    return eligible[Math.floor(this.random() * eligible.length)] as SimHost;
  }

  randomId(): NodeId {
    return this.randomBytes(NODE_ID_BYTES);
  }

  /** Runs `step` on `host`'s core at `time`, then carries out what it asks. */
  at(time: number, host: SimHost, step: (core: DhtNode, now: number) => void): void {
    this.schedule(time, () => this.step(host, step));
  }

  /** The result of lookup `lookup` of `host`, once it finished. */
  result(host: SimHost, lookup: number): LookupResult | undefined {
    return this.finished.get(`${host.index}/${lookup}`);
  }

  /** Processes events until `done()` holds or nothing is left; returns whether `done()` holds. */
  runUntil(done: () => boolean, limitMs = Infinity): boolean {
    while (!done()) {
      const event = this.queue.pop();
      if (!event) break;
      this.now = event.time;
      event.run();
      if (this.now > limitMs) break;
    }
    return done();
  }

  /** The `count` closest hosts to `target` that answer queries, `exclude` aside. */
  closestAnswering(target: NodeId, count: number, exclude: SimHost): SimHost[] {
    const best: SimHost[] = [];
    for (const host of this.hosts) {
      if (host.state === 'dead' || host === exclude) continue;
      if (best.length === count && compareDistance(host.contact.id, (best[count - 1] as SimHost).contact.id, target) >= 0) continue;
      let at = best.length;
      while (at > 0 && compareDistance(host.contact.id, (best[at - 1] as SimHost).contact.id, target) < 0) at--;
      best.splice(at, 0, host);
      if (best.length > count) best.pop();
    }
    return best;
  }

  private drain(host: SimHost): void {
    for (const action of host.core.takeActions()) this.perform(host, action);
    const next = host.core.nextDeadline();
    if (next !== undefined && next < (this.tickAt[host.index] as number)) {
      this.tickAt[host.index] = next;
      this.schedule(next, () => {
        if (this.tickAt[host.index] === next) this.tickAt[host.index] = Infinity;
        this.step(host, (core, now) => core.tick(now));
      });
    }
  }

  private perform(host: SimHost, action: DhtAction): void {
    switch (action.type) {
      case 'query': {
        const target = this.byEndpoint.get(`${action.to.address}:${action.to.port}`);
        if (!target || target.state === 'dead') return;
        const rtt = this.delay() + this.delay();
        if (!target.contact.id.equals(action.to.id)) {
          this.schedule(this.now + rtt, () => this.step(host, (core, now) => core.rpcFailed(now, action.rpc)));
          return;
        }
        this.send(host, target, action.bytes);
        return;
      }
      case 'reply': {
        const target = this.byEndpoint.get(`${action.to.address}:${action.to.port}`);
        if (target && target.state !== 'dead') this.send(host, target, action.bytes);
        return;
      }
      case 'lookup-finished':
        this.finished.set(`${host.index}/${action.result.lookup}`, action.result);
        if (action.result.purpose === 'lookup') this.lookupsFinished++;
        return;
      default:
        return;
    }
  }

  private send(from: SimHost, to: SimHost, bytes: Buffer): void {
    this.messages++;
    this.schedule(this.now + this.delay(), () => {
      if (to.state === 'dead') return;
      if (to.state === 'hostile') {
        const message = decodeMessage(bytes);
        if (message.type === 'query' && message.query.method !== 'ping' && message.query.method !== 'announce_peer') {
          this.send(to, from, this.bogusReply(to, message));
          return;
        }
      }
      this.step(to, (core, now) => core.receive(now, from.sender, bytes));
    });
  }

  private schedule(time: number, run: () => void): void {
    this.queue.push(time, { time, run });
  }

  private step(host: SimHost, step: (core: DhtNode, now: number) => void): void {
    step(host.core, this.now);
    this.drain(host);
  }

  /**
   * A hostile host's answer to find_node or get_peers: as many contacts as a reply may carry
   * (replyNodes), none of them useful. Half are
   * invented ids sharing 96 bits with the target (closer than any real node, so they head every
   * shortlist), pointing at unused addresses (they time out) or at honest hosts (whose
   * certificates do not match: the handshake fails). Most of the rest are the real closest ids
   * the hostile host knows, with false addresses. One is another hostile host (real, so the
   * lookup learns more lies). get_peers replies carry a token and no peers.
   */
  private bogusReply(hostile: SimHost, query: QueryMessage): Buffer {
    const target = query.query.method === 'find_node' ? query.query.target : infoHashTarget((query.query as { infoHash: Buffer }).infoHash);
    const nodes: Contact[] = [];
    const count = replyNodes({ k: this.k });
    const invented = Math.ceil(count / 2);
    for (let i = 0; i < invented; i++) {
      const id = this.randomId();
      target.copy(id, 0, 0, 12);
      const someHost = this.hosts[Math.floor(this.random() * this.hosts.length)] as SimHost;
      nodes.push({ id, address: i % 2 === 0 ? this.unusedAddress() : someHost.contact.address, port: DHT_PORT });
    }
    for (const real of hostile.core.table.closest(target, count - invented - 1)) {
      nodes.push({ id: real.id, address: this.unusedAddress(), port: DHT_PORT });
    }
    const allies = this.hostiles.filter((h) => h !== hostile);
    const ally = allies[Math.floor(this.random() * allies.length)];
    if (ally) nodes.push(ally.contact);
    const reply: DhtMessage = {
      type: 'response',
      transactionId: query.transactionId,
      senderId: hostile.contact.id,
      nodes,
      ...(query.query.method === 'get_peers' ? { token: Buffer.alloc(8, 7) } : {}),
    };
    return encodeMessage(reply);
  }

  private newCore(id: NodeId, now: number): DhtNode {
    return new DhtNode({ id, randomBytes: seededRandomBytes(mulberry32(childSeed(this.random))), now, config: this.config });
  }

  private unusedAddress(): string {
    return `${UNUSED_PREFIX}.${Math.floor(this.random() * 256)}.${1 + Math.floor(this.random() * 254)}`;
  }

  private delay(): number {
    const [min, max] = this.latency;
    return min + this.random() * (max - min);
  }
}

/** Random bytes drawn from a seeded generator (the simulator's stand-in for crypto.randomBytes). */
export function seededRandomBytes(random: () => number): RandomBytes {
  return (size) => {
    const out = Buffer.allocUnsafe(size);
    for (let i = 0; i < size; i++) out[i] = Math.floor(random() * 256);
    return out;
  };
}

/**
 * Indices [lo, hi) of the sorted ids sharing the first `bits` bits with `id`; with `siblingAtBit`,
 * those that also differ from `id` at bit `bits` (the range of bucket `bits` of `id`'s table).
 */
function prefixRange(sorted: readonly NodeId[], id: NodeId, bits: number, siblingAtBit: boolean): [number, number] {
  const lowest = Buffer.alloc(NODE_ID_BYTES);
  const highest = Buffer.alloc(NODE_ID_BYTES, 0xff);
  const prefixBits = siblingAtBit ? bits + 1 : bits;
  for (let bit = 0; bit < prefixBits; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    let set = ((id[byte] as number) & mask) !== 0;
    if (siblingAtBit && bit === bits) set = !set;
    lowest[byte] = set ? (lowest[byte] as number) | mask : (lowest[byte] as number) & ~mask;
    highest[byte] = set ? (highest[byte] as number) | mask : (highest[byte] as number) & ~mask;
  }
  return [bound(sorted, lowest, false), bound(sorted, highest, true)];
}

/** First index whose id is >= `value` (or > `value` with `after`). */
function bound(sorted: readonly NodeId[], value: Buffer, after: boolean): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const order = Buffer.compare(sorted[mid] as NodeId, value);
    if (order < 0 || (after && order === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function sampleIndices(lo: number, hi: number, count: number, random: () => number): number[] {
  const size = hi - lo;
  if (size <= count) return Array.from({ length: size }, (_, i) => lo + i);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(lo + Math.floor(random() * size));
  return [...picked];
}
