import { canonicalIp } from './address';
import { type DhtMessage, type DhtQuery, decodeMessage, encodeMessage, type ErrorMessage, KRPC_ERROR, type QueryMethod, type ResponseMessage } from './codec';
import { type DhtConfig, dhtConfig, replyNodes } from './config';
import type { Contact, PeerInfo, Sender } from './contact';
import { DhtError } from './errors';
import { handleQuery, type HandlerContext } from './handlers';
import { Lookup, type LookupEndpoint, type LookupKind, type LookupPurpose, type LookupResult } from './lookup';
import { compareDistance, infoHashTarget, type NodeId, requireInfoHash, requireNodeId } from './node-id';
import { PeerStore } from './peer-store';
import { serializeRoutingState } from './persistence';
import { checkedRandomBytes, type RandomBytes } from './random';
import { RoutingTable } from './routing-table';
import { TokenIssuer } from './tokens';

/**
 * What the node asks its adapter to do, or tells it. The adapter carries out `query` and `reply`
 * and may log or count the rest.
 */
export type DhtAction =
  /**
   * Deliver `bytes` to `to` and expect a reply from a certificate whose key hashes to `to.id`.
   * If the node cannot be reached or presents another certificate, call `rpcFailed(now, rpc)`;
   * silence is handled by the node's own timeout.
   */
  | { type: 'query'; rpc: number; to: Contact; method: QueryMethod; bytes: Buffer }
  /**
   * Send `bytes` back to the sender of a query, on the connection (or to the address) it came from.
   * `to` is the very object the adapter passed to `receive`, so it may carry the adapter's own
   * handle (a connection) alongside the Sender fields.
   */
  | { type: 'reply'; to: Sender; bytes: Buffer }
  /** A query got no answer within `rpcTimeoutMs` (already counted against the node). */
  | { type: 'rpc-timed-out'; rpc: number; to: Contact; method: QueryMethod }
  /** Peers a get_peers lookup found that it had not reported before. */
  | { type: 'lookup-peers'; lookup: number; infoHash: Buffer; peers: PeerInfo[] }
  | { type: 'lookup-finished'; result: LookupResult }
  /** A bucket went `refreshIntervalMs` without change: lookup `lookup` searches a random id in it. */
  | { type: 'bucket-refresh'; bucket: number; target: NodeId; lookup: number }
  /** An announce round ended: `stored` of the `attempted` closest nodes accepted our announce_peer. */
  | { type: 'announced'; infoHash: Buffer; lookup: number; attempted: number; stored: number };

/** What the node dropped or refused, for metrics. */
export interface DhtCounters {
  /** Messages that did not decode. */
  malformed: number;
  /** Messages whose claimed id is not the id of the sender's certificate. */
  senderMismatch: number;
  /** Replies that match no query in flight to that node. */
  unexpected: number;
  /** Replies that lack what their query asks for (get_peers without a token). */
  badReplies: number;
  queriesServed: number;
  timeouts: number;
}

export interface DhtNodeOptions {
  /** Our id: nodeIdFromPublicKeyDer of our certificate's public key. */
  id: NodeId;
  /** Random bytes (crypto.randomBytes in production): token secrets, refresh targets, transaction ids, samples. */
  randomBytes: RandomBytes;
  now: number;
  config?: Partial<DhtConfig>;
}

type RpcOwner =
  | { kind: 'lookup'; run: LookupRun; endpoint: LookupEndpoint }
  | { kind: 'ping' }
  | { kind: 'announce'; round: AnnounceRound };

interface PendingRpc {
  readonly rpc: number;
  readonly to: Contact;
  readonly method: QueryMethod;
  readonly slowAt: number;
  readonly deadline: number;
  slow: boolean;
  readonly owner: RpcOwner;
}

interface LookupRun {
  readonly lookup: Lookup;
  readonly query: DhtQuery;
  readonly infoHash?: Buffer;
  readonly announcement?: Announcement;
}

interface Announcement {
  readonly infoHash: Buffer;
  port: number;
  addresses: string[];
  nextAt: number;
  running: boolean;
}

interface AnnounceRound {
  readonly announcement: Announcement;
  readonly lookup: number;
  readonly attempted: number;
  pending: number;
  stored: number;
}

/** Bootstrap contacts accepted at once (the cap of a persisted table). */
const MAX_BOOTSTRAP_CONTACTS = 4096;
const TRANSACTION_ID_BYTES = 4;

/**
 * A DHT node without I/O. The adapter owns the transport and the clock: it feeds in messages with
 * the sender its transport verified (`receive`), delivery failures (`rpcFailed`) and the time
 * (`tick`, by `nextDeadline()` at the latest), and carries out the actions of `takeActions()`.
 * The same core runs in the agent and in the simulator.
 *
 * Every message must claim the id of the certificate it came with; any other is dropped and
 * counted. Queries are answered by one handler per method (handlers.ts); replies settle the
 * query that asked, which belongs to a lookup, a ping of a questionable node, or an announce.
 */
export class DhtNode {
  readonly id: NodeId;
  readonly config: DhtConfig;
  readonly table: RoutingTable;
  private readonly randomBytes: RandomBytes;
  private readonly tokens: TokenIssuer;
  private readonly peerStore: PeerStore;
  private readonly handlerContext: HandlerContext;
  private readonly pending = new Map<number, PendingRpc>();
  private readonly lookups = new Map<number, LookupRun>();
  private readonly announcements = new Map<string, Announcement>();
  /** The last bootstrap list: seeds lookups while the table holds fewer than k nodes. */
  private bootstrapContacts: Contact[] = [];
  private readonly stats: DhtCounters = { malformed: 0, senderMismatch: 0, unexpected: 0, badReplies: 0, queriesServed: 0, timeouts: 0 };
  private actions: DhtAction[] = [];
  private nextRpc: number;
  private nextLookup = 1;
  /** The latest time an input carried: a clock that steps back does not reorder deadlines. */
  private now: number;

  constructor(options: DhtNodeOptions) {
    requireNodeId(options.id, 'id');
    requireTime(options.now);
    this.id = Buffer.from(options.id);
    this.config = dhtConfig(options.config);
    this.randomBytes = checkedRandomBytes(options.randomBytes);
    this.now = options.now;
    this.table = new RoutingTable(this.id, this.config, options.now);
    this.tokens = new TokenIssuer(this.randomBytes, this.config.tokenRotationMs, options.now);
    this.peerStore = new PeerStore({ ttlMs: this.config.peerTtlMs, maxPerInfoHash: this.config.maxPeersPerInfoHash, maxTotal: this.config.maxStoredPeers });
    this.handlerContext = { config: this.config, table: this.table, tokens: this.tokens, peers: this.peerStore, randomBytes: this.randomBytes };
    this.nextRpc = this.randomBytes(TRANSACTION_ID_BYTES).readUInt32BE(0);
  }

  takeActions(): DhtAction[] {
    const out = this.actions;
    this.actions = [];
    return out;
  }

  get counters(): DhtCounters {
    return { ...this.stats };
  }

  get storedPeers(): number {
    return this.peerStore.size;
  }

  get pendingRpcs(): number {
    return this.pending.size;
  }

  /** The time by which `tick` must run next (undefined: nothing scheduled). */
  nextDeadline(): number | undefined {
    let next = Infinity;
    for (const rpc of this.pending.values()) next = Math.min(next, rpc.slow ? rpc.deadline : rpc.slowAt);
    if (this.table.size > 0) next = Math.min(next, this.table.nextRefreshAt());
    for (const announcement of this.announcements.values()) if (!announcement.running) next = Math.min(next, announcement.nextAt);
    return next === Infinity ? undefined : next;
  }

  /**
   * Joins (or rejoins) the DHT: a lookup of our own id seeded with `contacts` (the controller's
   * node list, a persisted table) besides our table. Contacts enter the table only by answering;
   * until it holds k nodes, other lookups are seeded from the contacts too, so a get_peers started
   * at once does not wait for the join.
   */
  bootstrap(now: number, contacts: readonly Contact[]): number {
    now = this.advance(now);
    if (!Array.isArray(contacts) || contacts.length > MAX_BOOTSTRAP_CONTACTS) {
      throw new DhtError('DHT_BAD_ARGUMENT', `a list of at most ${MAX_BOOTSTRAP_CONTACTS} contacts`, 'contacts');
    }
    this.bootstrapContacts = contacts.map((contact, i) => checkContact(contact, `contacts[${i}]`));
    const id = this.startLookup(now, 'find_node', this.id, 'bootstrap', { extraSeeds: this.bootstrapContacts });
    this.pump(now);
    return id;
  }

  /** Starts a find_node lookup; its result comes as a `lookup-finished` action. */
  findNode(now: number, target: NodeId): number {
    now = this.advance(now);
    requireNodeId(target, 'target');
    const id = this.startLookup(now, 'find_node', Buffer.from(target), 'lookup', {});
    this.pump(now);
    return id;
  }

  /** Starts a get_peers lookup: `lookup-peers` actions as peers turn up, then `lookup-finished`. */
  getPeers(now: number, infoHash: Uint8Array): number {
    now = this.advance(now);
    requireInfoHash(infoHash);
    const id = this.startLookup(now, 'get_peers', infoHashTarget(infoHash), 'lookup', { infoHash: Buffer.from(infoHash) });
    this.pump(now);
    return id;
  }

  /**
   * Announces this agent as a peer of `infoHash` on `port` (plus `addresses` besides the one the
   * storing nodes see), now and every `reannounceIntervalMs` until `stopAnnouncing`.
   */
  announce(now: number, infoHash: Uint8Array, port: number, addresses: readonly string[] = []): void {
    now = this.advance(now);
    requireInfoHash(infoHash);
    requirePort(port, 'port');
    const canonical = addresses.map((a, i) => canonicalIp(a, `addresses[${i}]`));
    const key = Buffer.from(infoHash).toString('hex');
    const existing = this.announcements.get(key);
    if (existing) {
      // A round in flight finishes first; the next one carries the new port and addresses.
      existing.port = port;
      existing.addresses = canonical;
      existing.nextAt = now;
    } else {
      this.announcements.set(key, { infoHash: Buffer.from(infoHash), port, addresses: canonical, nextAt: now, running: false });
    }
    this.startDueAnnouncements(now);
    this.pump(now);
  }

  stopAnnouncing(infoHash: Uint8Array): void {
    requireInfoHash(infoHash);
    this.announcements.delete(Buffer.from(infoHash).toString('hex'));
  }

  /** The routing table as JSON, for the adapter to write to disk (see persistence.ts). */
  saveState(now: number): string {
    return serializeRoutingState(this.table, this.advance(now));
  }

  /** A message from `from`, whose identity the adapter verified. */
  receive(now: number, from: Sender, bytes: Uint8Array): void {
    now = this.advance(now);
    const sender = checkSender(from);
    let message: DhtMessage;
    try {
      message = decodeMessage(bytes);
    } catch (error) {
      if (!(error instanceof DhtError)) throw error;
      this.stats.malformed++;
      if (error.queryTransactionId) {
        const code = error.code === 'DHT_UNKNOWN_METHOD' ? KRPC_ERROR.methodUnknown : KRPC_ERROR.protocol;
        this.reply(from, { type: 'error', transactionId: error.queryTransactionId, senderId: this.id, code, message: error.message });
      }
      return;
    }
    if (!message.senderId.equals(sender.id)) {
      this.stats.senderMismatch++;
      return;
    }
    if (message.type === 'query') this.serve(now, sender, from, message.transactionId, message.query);
    else this.settleReply(now, sender, message);
    this.pump(now);
  }

  /** The adapter could not deliver query `rpc` (refused, unreachable, or the wrong certificate). */
  rpcFailed(now: number, rpc: number): void {
    now = this.advance(now);
    const pending = this.pending.get(rpc);
    if (!pending) return;
    this.pending.delete(rpc);
    this.failRpc(pending);
    this.pump(now);
  }

  /** Time passes: queries turn slow or time out, buckets refresh, announces repeat, peers expire. */
  tick(now: number): void {
    now = this.advance(now);
    for (const pending of this.pending.values()) {
      if (now >= pending.deadline) {
        this.pending.delete(pending.rpc);
        this.stats.timeouts++;
        this.actions.push({ type: 'rpc-timed-out', rpc: pending.rpc, to: pending.to, method: pending.method });
        this.failRpc(pending);
      } else if (!pending.slow && now >= pending.slowAt) {
        pending.slow = true;
        if (pending.owner.kind === 'lookup') pending.owner.run.lookup.slow(pending.owner.endpoint);
      }
    }
    this.peerStore.expire(now);
    if (this.table.size > 0) {
      for (const refresh of this.table.refreshDue(now, this.randomBytes)) {
        const lookup = this.startLookup(now, 'find_node', refresh.target, 'refresh', {});
        this.actions.push({ type: 'bucket-refresh', bucket: refresh.bucket, target: refresh.target, lookup });
      }
    }
    this.startDueAnnouncements(now);
    this.pump(now);
  }

  // ---------------------------------------------------------------- serving

  /** `sender` is `from` with its address in canonical form; the reply goes to `from` itself. */
  private serve(now: number, sender: Sender, from: Sender, transactionId: Buffer, query: DhtQuery): void {
    this.stats.queriesServed++;
    if (sender.port !== undefined) {
      const contact: Contact = { id: sender.id, address: sender.address, port: sender.port, ...(sender.site !== undefined ? { site: sender.site } : {}) };
      this.heardFrom(now, contact, 'query');
    }
    const answer = handleQuery(this.handlerContext, now, sender, query);
    this.reply(from, { ...answer, transactionId, senderId: this.id });
  }

  private reply(to: Sender, message: ResponseMessage | ErrorMessage): void {
    this.actions.push({ type: 'reply', to, bytes: encodeMessage(message) });
  }

  // ---------------------------------------------------------------- our queries

  private settleReply(now: number, sender: Sender, message: ResponseMessage | ErrorMessage): void {
    const rpc = message.transactionId.length === TRANSACTION_ID_BYTES ? message.transactionId.readUInt32BE(0) : -1;
    const pending = this.pending.get(rpc);
    if (!pending || !pending.to.id.equals(sender.id)) {
      this.stats.unexpected++;
      return;
    }
    this.pending.delete(rpc);
    // It answered, error or not: alive, and proven on the endpoint we asked.
    this.heardFrom(now, sender.site !== undefined ? { ...pending.to, site: sender.site } : pending.to, 'response');
    const useful = message.type === 'response' && (pending.method !== 'get_peers' || message.token !== undefined);
    if (message.type === 'response' && !useful) this.stats.badReplies++;
    const owner = pending.owner;
    switch (owner.kind) {
      case 'ping':
        return;
      case 'announce':
        if (message.type === 'response') owner.round.stored++;
        this.announceSettled(owner.round);
        return;
      case 'lookup': {
        const { run, endpoint } = owner;
        if (!useful) {
          run.lookup.failed(endpoint);
          return;
        }
        const response = message as ResponseMessage;
        const fresh = run.lookup.answered(endpoint, response.nodes, response.token, response.values);
        if (fresh.length > 0 && run.infoHash && this.lookups.get(run.lookup.id) === run) {
          this.actions.push({ type: 'lookup-peers', lookup: run.lookup.id, infoHash: run.infoHash, peers: fresh });
        }
      }
    }
  }

  private failRpc(pending: PendingRpc): void {
    this.table.failed(pending.to);
    const owner = pending.owner;
    if (owner.kind === 'lookup') owner.run.lookup.failed(owner.endpoint);
    else if (owner.kind === 'announce') this.announceSettled(owner.round);
  }

  private heardFrom(now: number, contact: Contact, heard: 'query' | 'response'): void {
    const { ping } = this.table.insert(contact, now, heard);
    if (ping) this.sendQuery(now, ping, { method: 'ping' }, { kind: 'ping' });
  }

  private sendQuery(now: number, to: Contact, query: DhtQuery, owner: RpcOwner): void {
    const rpc = this.allocateRpc();
    const transactionId = Buffer.alloc(TRANSACTION_ID_BYTES);
    transactionId.writeUInt32BE(rpc);
    const bytes = encodeMessage({ type: 'query', transactionId, senderId: this.id, query });
    this.pending.set(rpc, { rpc, to, method: query.method, slowAt: now + this.config.rpcSlowMs, deadline: now + this.config.rpcTimeoutMs, slow: false, owner });
    this.actions.push({ type: 'query', rpc, to, method: query.method, bytes });
  }

  private allocateRpc(): number {
    do this.nextRpc = (this.nextRpc + 1) >>> 0;
    while (this.pending.has(this.nextRpc));
    return this.nextRpc;
  }

  // ---------------------------------------------------------------- lookups

  private startLookup(
    now: number,
    kind: LookupKind,
    target: NodeId,
    purpose: LookupPurpose,
    extra: { infoHash?: Buffer; announcement?: Announcement; extraSeeds?: readonly Contact[] },
  ): number {
    const id = this.nextLookup++;
    const seeds = this.table.closest(target, this.config.k);
    if (extra.extraSeeds) seeds.push(...extra.extraSeeds);
    else if (seeds.length < this.config.k) seeds.push(...closestOf(this.bootstrapContacts, target, this.config.k));
    const lookup = new Lookup({
      lookup: id,
      kind,
      purpose,
      target,
      selfId: this.id,
      k: this.config.k,
      alpha: this.config.alpha,
      contactsPerReply: replyNodes(this.config),
      maxQueries: this.config.lookupMaxQueries,
      distrustAfterFailures: this.config.distrustAfterFailures,
      seeds,
      now,
    });
    const query: DhtQuery = kind === 'find_node' ? { method: 'find_node', target } : { method: 'get_peers', infoHash: extra.infoHash as Buffer };
    this.lookups.set(id, { lookup, query, ...(extra.infoHash ? { infoHash: extra.infoHash } : {}), ...(extra.announcement ? { announcement: extra.announcement } : {}) });
    if (extra.infoHash) {
      // We may be one of the nodes closest to the info-hash: what others announced to us counts.
      const stored = lookup.collect(this.peerStore.peers(now, extra.infoHash, this.config.maxPeersPerInfoHash, this.randomBytes));
      if (stored.length > 0) this.actions.push({ type: 'lookup-peers', lookup: id, infoHash: extra.infoHash, peers: stored });
    }
    return id;
  }

  /** Sends what every running lookup may send now, and finishes those that are done. */
  private pump(now: number): void {
    for (const run of this.lookups.values()) {
      const free = Math.max(0, this.config.maxPendingRpcs - this.pending.size);
      for (const endpoint of run.lookup.next(free)) this.sendQuery(now, endpoint.contact, run.query, { kind: 'lookup', run, endpoint });
      if (!run.lookup.finished) continue;
      this.lookups.delete(run.lookup.id);
      this.actions.push({ type: 'lookup-finished', result: run.lookup.result(now) });
      if (run.announcement) this.announceTo(now, run);
    }
  }

  // ---------------------------------------------------------------- announcing

  private startDueAnnouncements(now: number): void {
    for (const announcement of this.announcements.values()) {
      if (announcement.running || announcement.nextAt > now) continue;
      announcement.running = true;
      announcement.nextAt = now + this.config.reannounceIntervalMs;
      this.startLookup(now, 'get_peers', infoHashTarget(announcement.infoHash), 'announce', { infoHash: announcement.infoHash, announcement });
    }
  }

  private announceTo(now: number, run: LookupRun): void {
    const announcement = run.announcement as Announcement;
    const targets = run.lookup.closestAnswered().filter((t) => t.token !== undefined);
    const round: AnnounceRound = { announcement, lookup: run.lookup.id, attempted: targets.length, pending: targets.length, stored: 0 };
    for (const { contact, token } of targets) {
      const query: DhtQuery = { method: 'announce_peer', infoHash: announcement.infoHash, port: announcement.port, token: token as Buffer, addresses: announcement.addresses };
      this.sendQuery(now, contact, query, { kind: 'announce', round });
    }
    if (targets.length === 0) this.endAnnounceRound(round);
  }

  private announceSettled(round: AnnounceRound): void {
    if (--round.pending === 0) this.endAnnounceRound(round);
  }

  private endAnnounceRound(round: AnnounceRound): void {
    round.announcement.running = false;
    this.actions.push({ type: 'announced', infoHash: round.announcement.infoHash, lookup: round.lookup, attempted: round.attempted, stored: round.stored });
  }

  private advance(now: number): number {
    requireTime(now);
    this.now = Math.max(this.now, now);
    return this.now;
  }
}

function closestOf(contacts: readonly Contact[], target: NodeId, count: number): Contact[] {
  return contacts
    .slice()
    .sort((a, b) => compareDistance(a.id, b.id, target))
    .slice(0, count);
}

function requireTime(now: unknown): asserts now is number {
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new DhtError('DHT_BAD_ARGUMENT', 'now must be a finite number of milliseconds', 'now');
}

function requirePort(port: unknown, field: string): asserts port is number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new DhtError('DHT_BAD_ARGUMENT', 'a port is an integer in 1..65535', field);
}

function checkContact(contact: Contact, field: string): Contact {
  if (typeof contact !== 'object' || contact === null) throw new DhtError('DHT_BAD_ARGUMENT', 'a contact is {id, address, port}', field);
  requireNodeId(contact.id, `${field}.id`);
  requirePort(contact.port, `${field}.port`);
  return { ...contact, address: canonicalIp(contact.address, `${field}.address`) };
}

function checkSender(from: Sender): Sender {
  if (typeof from !== 'object' || from === null) throw new DhtError('DHT_BAD_ARGUMENT', 'a sender is {id, address, port?, agentId?, site?}', 'from');
  requireNodeId(from.id, 'from.id');
  if (from.port !== undefined) requirePort(from.port, 'from.port');
  const address = canonicalIp(from.address, 'from.address');
  return address === from.address ? from : { ...from, address };
}
