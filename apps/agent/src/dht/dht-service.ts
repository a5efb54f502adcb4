import { X509Certificate, randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import {
  type Contact,
  type DhtAction,
  type DhtConfig,
  DhtNode,
  type LookupResult,
  MAX_ROUTING_STATE_BYTES,
  MAX_ROUTING_STATE_CONTACTS,
  type NodeId,
  type PeerInfo,
  canonicalIp,
  decodeMessage,
  nodeIdFromHex,
  nodeIdFromPublicKeyDer,
  parseRoutingState,
} from '@shoal/dht';
import type { HostPort } from '@shoal/config';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { writeAtomic } from '../identity/state';
import { type FleetConnection, type TlsIdentity, connectToDhtNode } from '../peer/tls';
import { DhtTransportError } from './errors';
import { DhtLink, type LinkSender } from './link';
import { type DhtMetrics, dhtMetrics } from './metrics';

/** A get_peers lookup for an unfinished package repeats this often (sooner while it finds nobody). */
export const LOOKUP_INTERVAL_MS = 30_000;
/** A lookup that found no peer is retried after 1 s, then 2, 4 ... up to LOOKUP_INTERVAL_MS. */
const FIRST_RETRY_MS = 1000;
/** `lookupNow` (the tracker failed) starts no lookup within this long of the previous one. */
const MIN_LOOKUP_GAP_MS = 2000;
/** The routing table is written to disk this often, and at shutdown. */
const SAVE_INTERVAL_MS = 5 * 60_000;
/** While the table is short of k nodes, the bootstrap sources are tried again this often. */
const REJOIN_INTERVAL_MS = 60_000;
/** A bootstrap endpoint that answered (or failed) is not dialled again for this long. */
const PROBE_AGAIN_AFTER_MS = 60_000;
/** Bootstrap endpoints dialled at once from one tracker answer or the configured list. */
const MAX_PROBES_AT_ONCE = 16;
/**
 * Tracker peers are dialled as bootstrap nodes this long after they were learnt. They are the
 * peers a package's transfer connects to at that very moment, and every TLS handshake costs two
 * RSA signatures of CPU; the DHT, which matters when the controller cannot answer, joins a few
 * seconds later without taking its share of the start.
 */
const LEARN_DELAY_MS = 5000;
/** Open DHT connections, both directions: a lookup touches about 13 nodes, an announce k more. */
const MAX_CONNECTIONS = 64;
/** Queries in flight on one connection (alpha = 3 per lookup; a few lookups and an announce at once). */
const MAX_IN_FLIGHT_PER_CONNECTION = 16;
/** A connection with nothing in flight closes after this long without a frame. */
const IDLE_TIMEOUT_MS = 120_000;
const HELLO_TIMEOUT_MS = 10_000;
/** TLS handshake (TCP connect included): a dead address costs this at most, beyond the core's rpcSlowMs. */
const DIAL_TIMEOUT_MS = 5000;
/** Bytes queued for a peer that does not read (about 64 full-size messages). */
const MAX_WRITE_BUFFER = 1024 * 1024;

export interface DhtServiceOptions {
  /** The agent's current identity (it changes at renewal; the key, and so the node id, stays). */
  identity(): TlsIdentity;
  fleet: string;
  isRevoked(serial: string): boolean;
  /** The agent's peer port: the DHT listens there too (SNI shoal-dht), and announces it as the peer-wire port. */
  port: number;
  /** Addresses announced besides the one the storing nodes see (the advertised address, when it is an IP). */
  advertiseAddresses: readonly string[];
  /** <dataDir>/dht.json: the routing table across restarts. */
  statePath: string;
  /** Nodes to join through besides the cached table and the tracker's peers (SHOAL_DHT_BOOTSTRAP). */
  bootstrap: readonly HostPort[];
  /** libs/dht settings (SHOAL_DHT_SETTINGS), over its defaults. */
  settings: Partial<DhtConfig>;
  /** A peer's site label, when the tracker reported one (for 'site' diversity). */
  siteOf(agentId: string): string | undefined;
  log: Logger;
  registry: Registry;
}

/** Peer discovery for one package: announce while held, get_peers while unfinished. */
export interface PackageDiscovery {
  /** Looks for peers now (the tracker failed), unless a lookup runs or just ran. */
  lookupNow(): void;
  stop(): void;
}

interface TrackedPackage {
  readonly infoHash: Buffer;
  readonly wantsPeers: () => boolean;
  readonly onPeers: (peers: PeerInfo[]) => void;
  running: boolean;
  lastStartedAt: number;
  retryMs: number;
  timer?: NodeJS.Timeout;
  /** Delay before announcing again after a round no node accepted (doubling, see `announced`). */
  announceRetryMs: number;
  announceTimer?: NodeJS.Timeout;
}

/** One of our queries in flight: on which connection, under which transaction id. */
interface QueryInFlight {
  readonly method: Extract<DhtAction, { type: 'query' }>['method'];
  readonly transaction: string;
  link?: DhtLink;
}

/**
 * The agent's DHT node: the sans-IO DhtNode of libs/dht over mutual-TLS connections on the peer
 * port (SNI shoal-dht). See README.md in this folder for the transport and its reasons.
 *
 * It owns the node's clock (a timer at `nextDeadline`), the connections (one per node, either
 * direction, pooled with an idle timeout and a cap), the routing table file, bootstrap (cached
 * table, configured endpoints, the tracker's peers) and per-package discovery (announce_peer for
 * every package held or fetched, get_peers lookups while it is unfinished).
 */
export class DhtService {
  readonly id: NodeId;
  private readonly node: DhtNode;
  private readonly options: DhtServiceOptions;
  private readonly log: Logger;
  private readonly metrics: DhtMetrics;
  private readonly links = new Set<DhtLink>();
  /** The connection queries to a node go on (the first that opened; another takes over when it closes). */
  private readonly linkById = new Map<string, DhtLink>();
  /** Dials in progress by host:port, so a probe and a query to one address share one connection. */
  private readonly dialing = new Map<string, Promise<DhtLink>>();
  private readonly queries = new Map<number, QueryInFlight>();
  private readonly tracked = new Map<string, TrackedPackage>();
  private readonly lookupWaiters = new Map<number, (result: LookupResult) => void>();
  /** Contacts to join through: the cached table, then every bootstrap endpoint that answered. */
  private readonly bootstrapContacts = new Map<string, Contact>();
  /** Bootstrap endpoints dialled lately (host:port -> when), so tracker answers do not redial them. */
  private readonly probed = new Map<string, number>();
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** Tracker peers waiting for LEARN_DELAY_MS before they are probed. */
  private learnt = new Map<string, HostPort>();
  private learnTimer: NodeJS.Timeout | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private saving: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: DhtServiceOptions) {
    this.options = options;
    this.log = options.log.child({ component: 'dht' });
    this.id = nodeIdFromPublicKeyDer(publicKeyDer(new X509Certificate(options.identity().certPem)));
    this.node = new DhtNode({ id: this.id, randomBytes, now: Date.now(), config: options.settings });
    this.metrics = dhtMetrics(options.registry, {
      tableSize: () => this.node.table.size,
      storedPeers: () => this.node.storedPeers,
      connections: () => {
        let inbound = 0;
        for (const link of this.links) if (link.direction === 'inbound') inbound++;
        return { inbound, outbound: this.links.size - inbound };
      },
      counters: () => this.node.counters,
    });
  }

  /** Joins through the cached routing table and the configured endpoints; starts saving the table. */
  async start(): Promise<void> {
    for (const contact of await this.loadState()) this.addBootstrapContact(contact);
    if (this.bootstrapContacts.size > 0) this.node.bootstrap(Date.now(), [...this.bootstrapContacts.values()]);
    this.flush();
    void this.probe(this.options.bootstrap);
    this.every(SAVE_INTERVAL_MS, () => void this.save());
    this.every(REJOIN_INTERVAL_MS, () => this.rejoin());
    this.log.info({ nodeId: this.id.toString('hex'), cached: this.bootstrapContacts.size, configured: this.options.bootstrap.length }, 'dht node started');
  }

  /** A connection the peer server admitted with SNI shoal-dht. */
  accept(connection: FleetConnection): void {
    if (this.closed) {
      connection.socket.destroy();
      return;
    }
    try {
      this.adopt(connection, 'inbound');
    } catch (err) {
      connection.socket.destroy();
      const code = (err as DhtTransportError).code ?? 'DHT_INTERNAL';
      this.metrics.refused.inc({ code });
      this.log.info({ peer: connection.peer.agentId, code, err: (err as Error).message }, 'dht connection refused');
    }
  }

  /** A connection the peer server refused before handing it over (certificate, revocation). */
  countRefused(code: string): void {
    this.metrics.refused.inc({ code });
  }

  /**
   * Peers the tracker returned run a DHT node on the same port: the controller's node list. While
   * the table is short of k nodes, those not dialled lately are dialled and joined through,
   * LEARN_DELAY_MS after they were learnt.
   */
  learnEndpoints(endpoints: readonly HostPort[]): void {
    if (this.closed || this.node.table.size >= this.node.config.k) return;
    for (const e of endpoints) if (this.learnt.size < MAX_PROBES_AT_ONCE) this.learnt.set(`${e.host}:${e.port}`, e);
    if (this.learnTimer) return;
    this.learnTimer = setTimeout(() => {
      this.learnTimer = undefined;
      const learnt = [...this.learnt.values()];
      this.learnt.clear();
      if (!this.closed && this.node.table.size < this.node.config.k) void this.probe(learnt);
    }, LEARN_DELAY_MS);
    this.learnTimer.unref();
  }

  /**
   * Announces `infoHash` (the 20-byte wire info-hash) with our peer port now and every
   * reannounceIntervalMs, and while `wantsPeers()` looks for peers: at once, every
   * LOOKUP_INTERVAL_MS, and on `lookupNow`. Found peers go to `onPeers`.
   */
  track(infoHash: Buffer, options: { wantsPeers(): boolean; onPeers(peers: PeerInfo[]): void }): PackageDiscovery {
    const key = infoHash.toString('hex');
    const previous = this.tracked.get(key);
    if (previous) stopTimers(previous);
    const tracked: TrackedPackage = {
      infoHash,
      wantsPeers: options.wantsPeers,
      onPeers: options.onPeers,
      running: false,
      lastStartedAt: -Infinity,
      retryMs: FIRST_RETRY_MS,
      announceRetryMs: FIRST_RETRY_MS,
    };
    this.tracked.set(key, tracked);
    this.announce(tracked);
    this.lookUp(tracked);
    return {
      lookupNow: () => {
        if (Date.now() - tracked.lastStartedAt >= MIN_LOOKUP_GAP_MS) this.lookUp(tracked);
      },
      stop: () => {
        stopTimers(tracked);
        if (this.tracked.get(key) !== tracked) return;
        this.tracked.delete(key);
        this.node.stopAnnouncing(infoHash);
      },
    };
  }

  /** One get_peers lookup; resolves with its result (peers, rounds, timing). */
  findPeers(infoHash: Buffer): Promise<LookupResult> {
    if (this.closed) return Promise.reject(new DhtTransportError('DHT_CONNECTION_CLOSED', 'the DHT node is stopped'));
    const lookup = this.node.getPeers(Date.now(), infoHash);
    return new Promise((resolve) => {
      this.lookupWaiters.set(lookup, resolve);
      this.flush();
    });
  }

  /** After a new revocation list: closes connections with revoked nodes; returns how many. */
  enforceRevocations(): number {
    let closed = 0;
    for (const link of this.links) {
      if (!this.options.isRevoked(link.peer.serial)) continue;
      link.close(new DhtTransportError('DHT_CONNECTION_CLOSED', `certificate ${link.peer.serial} of ${link.peer.agentId} was revoked`));
      closed++;
    }
    return closed;
  }

  status(): { nodeId: string; nodes: number; storedPeers: number; connections: number; queriesInFlight: number } {
    return {
      nodeId: this.id.toString('hex'),
      nodes: this.node.table.size,
      storedPeers: this.node.storedPeers,
      connections: this.links.size,
      queriesInFlight: this.node.pendingRpcs,
    };
  }

  /** Saves the table and closes every connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.save();
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.learnTimer);
    for (const tracked of this.tracked.values()) stopTimers(tracked);
    for (const link of this.links) link.close();
  }

  // ---------------------------------------------------------------- the node's actions

  private flush(): void {
    if (this.closed) return;
    for (const action of this.node.takeActions()) {
      switch (action.type) {
        case 'query':
          this.sendQuery(action);
          break;
        case 'reply': {
          const { link } = action.to as LinkSender;
          link.send(action.bytes);
          break;
        }
        case 'rpc-timed-out':
          this.settle(action.rpc, 'timeout');
          break;
        case 'lookup-peers': {
          const tracked = this.tracked.get(action.infoHash.toString('hex'));
          if (tracked?.wantsPeers()) tracked.onPeers(action.peers);
          break;
        }
        case 'lookup-finished':
          this.lookupFinished(action.result);
          break;
        case 'announced':
          this.announced(action);
          break;
        case 'bucket-refresh':
          this.log.debug({ bucket: action.bucket }, 'dht bucket refresh');
          break;
      }
    }
    this.rearm();
  }

  /** Wakes the node at its next deadline (queries turning slow or timing out, refreshes, re-announces). */
  private rearm(): void {
    clearTimeout(this.deadlineTimer);
    const deadline = this.node.nextDeadline();
    if (deadline === undefined || this.closed) return;
    // setTimeout holds at most 2^31 - 1 ms; the node is woken early then and finds nothing due.
    this.deadlineTimer = setTimeout(() => {
      this.node.tick(Date.now());
      this.flush();
    }, Math.min(2 ** 31 - 1, Math.max(0, deadline - Date.now())));
    this.deadlineTimer.unref();
  }

  private lookupFinished(result: LookupResult): void {
    this.metrics.lookupFinished(result);
    const waiter = this.lookupWaiters.get(result.lookup);
    this.lookupWaiters.delete(result.lookup);
    const summary = { kind: result.kind, purpose: result.purpose, rounds: result.rounds, queries: result.queries, failures: result.failures, ms: result.finishedAt - result.startedAt };
    // Announces made before the node had joined reached few nodes, or none: repeat them now.
    if (result.purpose === 'bootstrap' && result.closest.length > 0) for (const tracked of this.tracked.values()) this.announce(tracked);
    if (result.purpose === 'lookup') this.log.info({ ...summary, peers: result.peers.length }, 'dht lookup finished');
    else this.log.debug({ ...summary, closest: result.closest.length }, 'dht lookup finished');
    waiter?.(result);
  }

  // ---------------------------------------------------------------- queries

  private sendQuery(action: Extract<DhtAction, { type: 'query' }>): void {
    // The transaction id is how the answer is recognised on the connection (the rpc number is the node's).
    const transaction = decodeMessage(action.bytes).transactionId.toString('hex');
    this.queries.set(action.rpc, { method: action.method, transaction });
    const link = this.linkById.get(action.to.id.toString('hex'));
    if (link) {
      this.transmit(link, action.rpc, action.bytes);
      return;
    }
    this.connect(action.to.address, action.to.port).then(
      (dialled) => {
        if (!this.queries.has(action.rpc)) return;
        if (!dialled.peer.id.equals(action.to.id)) {
          throw new DhtTransportError('DHT_WRONG_NODE', `${action.to.address}:${action.to.port} is node ${dialled.peer.idHex.slice(0, 16)}..., not ${action.to.id.toString('hex').slice(0, 16)}...`);
        }
        this.transmit(dialled, action.rpc, action.bytes);
      },
    ).catch((err: Error) => this.queryFailed(action.rpc, err));
  }

  private transmit(link: DhtLink, rpc: number, bytes: Buffer): void {
    const query = this.queries.get(rpc) as QueryInFlight;
    if (link.outstanding.size >= MAX_IN_FLIGHT_PER_CONNECTION) {
      this.queryFailed(rpc, new DhtTransportError('DHT_IN_FLIGHT_LIMIT', `${MAX_IN_FLIGHT_PER_CONNECTION} queries in flight to ${link.peer.agentId}`));
      return;
    }
    query.link = link;
    link.outstanding.set(query.transaction, { rpc, method: query.method });
    link.send(bytes);
  }

  /** The query could not be delivered: the node counts it against the contact at once (no timeout wait). */
  private queryFailed(rpc: number, err: Error): void {
    const code = err instanceof DhtTransportError ? err.code : undefined;
    if (!this.settle(rpc, code === 'DHT_WRONG_NODE' ? 'wrong_node' : code === 'DHT_IN_FLIGHT_LIMIT' ? 'busy' : 'unreachable')) return;
    this.log.debug({ rpc, err: err.message }, 'dht query not delivered');
    if (this.closed) return;
    this.node.rpcFailed(Date.now(), rpc);
    this.flush();
  }

  /** Forgets a query in flight, counting how it ended; false if it was no longer in flight. */
  private settle(rpc: number, outcome: string): boolean {
    const query = this.queries.get(rpc);
    if (!query) return false;
    this.queries.delete(rpc);
    query.link?.outstanding.delete(query.transaction);
    this.metrics.queries.inc({ method: query.method, outcome });
    return true;
  }

  private onMessage(link: DhtLink, bytes: Buffer): void {
    let message;
    try {
      message = decodeMessage(bytes);
    } catch {
      // The node counts it as malformed (and answers a recognisable query with a KRPC error).
    }
    // A message claiming another id is dropped by the node (and counted there as sender_mismatch).
    if (message?.type === 'query' && message.senderId.equals(link.peer.id)) {
      this.metrics.served.inc({ method: message.query.method });
    } else if (message && message.senderId.equals(link.peer.id)) {
      const outstanding = link.outstanding.get(message.transactionId.toString('hex'));
      if (outstanding) this.settle(outstanding.rpc, message.type === 'error' ? 'error' : 'answered');
    }
    this.node.receive(Date.now(), link.sender as LinkSender, bytes);
    this.flush();
  }

  // ---------------------------------------------------------------- connections

  /** The open connection with the node at host:port, or a new one. */
  private connect(host: string, port: number): Promise<DhtLink> {
    const key = `${host}:${port}`;
    const pending = this.dialing.get(key);
    if (pending) return pending;
    const dial = connectToDhtNode({ host, port, identity: this.options.identity(), fleet: this.options.fleet, isRevoked: this.options.isRevoked, timeoutMs: DIAL_TIMEOUT_MS }).then(
      (connection) => {
        if (this.closed) {
          connection.socket.destroy();
          throw new DhtTransportError('DHT_CONNECTION_CLOSED', 'the DHT node is stopping');
        }
        try {
          return this.adopt(connection, 'outbound', port);
        } catch (err) {
          connection.socket.destroy();
          throw err;
        }
      },
    );
    this.dialing.set(key, dial);
    const done = () => this.dialing.delete(key);
    dial.then(done, done);
    return dial;
  }

  private adopt(connection: FleetConnection, direction: 'inbound' | 'outbound', dialledPort?: number): DhtLink {
    const { socket, peer } = connection;
    const id = nodeIdFromHex(connection.peer.publicKeySha256);
    if (id.equals(this.id)) throw new DhtTransportError('DHT_SELF', 'a connection to this node itself');
    if (this.links.size >= MAX_CONNECTIONS) this.closeIdlest();
    const site = this.options.siteOf(peer.agentId);
    const link = new DhtLink({
      socket,
      peer: { id, idHex: id.toString('hex'), agentId: peer.agentId, serial: peer.serial, address: canonicalIp(socket.remoteAddress ?? '') },
      direction,
      ownPort: this.options.port,
      ...(dialledPort !== undefined ? { dialledPort } : {}),
      ...(site ? { site } : {}),
      helloTimeoutMs: HELLO_TIMEOUT_MS,
      idleTimeoutMs: IDLE_TIMEOUT_MS,
      maxWriteBuffer: MAX_WRITE_BUFFER,
      events: {
        message: (from, bytes) => this.onMessage(from, bytes),
        closed: (from, reason) => this.onClosed(from, reason),
      },
    });
    this.links.add(link);
    if (!this.linkById.get(link.peer.idHex)?.isOpen) this.linkById.set(link.peer.idHex, link);
    return link;
  }

  /** Makes room for a new connection: the least recently used one with nothing in flight goes. */
  private closeIdlest(): void {
    let idlest: DhtLink | undefined;
    for (const link of this.links) if (link.outstanding.size === 0 && (!idlest || link.lastActive < idlest.lastActive)) idlest = link;
    if (!idlest) throw new DhtTransportError('DHT_CONNECTION_LIMIT', `${MAX_CONNECTIONS} DHT connections, all with queries in flight`);
    idlest.close();
  }

  private onClosed(link: DhtLink, reason: Error | undefined): void {
    this.links.delete(link);
    if (this.linkById.get(link.peer.idHex) === link) {
      this.linkById.delete(link.peer.idHex);
      for (const other of this.links) if (other.peer.idHex === link.peer.idHex) this.linkById.set(other.peer.idHex, other);
    }
    const code = reason instanceof DhtTransportError ? reason.code : reason ? 'SOCKET_ERROR' : 'closed';
    this.metrics.closed.inc({ reason: code });
    if (reason instanceof DhtTransportError && code !== 'DHT_CONNECTION_CLOSED') {
      this.log.info({ peer: link.peer.agentId, code, err: reason.message }, 'dht connection closed');
    }
    const failed = [...link.outstanding.values()];
    link.outstanding.clear();
    for (const { rpc } of failed) {
      this.queryFailed(rpc, new DhtTransportError('DHT_CONNECTION_CLOSED', `the connection with ${link.peer.agentId} closed`, { cause: reason }));
    }
  }

  // ---------------------------------------------------------------- bootstrap

  /**
   * Dials bootstrap endpoints that are not known contacts and were not dialled lately; those that answer become bootstrap contacts (the
   * certificate names their id), and the node joins again through every contact known.
   */
  private async probe(endpoints: readonly HostPort[]): Promise<void> {
    const now = Date.now();
    for (const [key, at] of this.probed) if (now - at > PROBE_AGAIN_AFTER_MS) this.probed.delete(key);
    const known = new Set([...this.bootstrapContacts.values()].map((c) => `${c.address}:${c.port}`));
    for (const link of this.links) if (link.sender?.port !== undefined) known.add(`${link.peer.address}:${link.sender.port}`);
    const fresh = endpoints.filter((e) => !this.probed.has(`${e.host}:${e.port}`) && !known.has(`${e.host}:${e.port}`)).slice(0, MAX_PROBES_AT_ONCE);
    if (fresh.length === 0) return;
    for (const e of fresh) this.probed.set(`${e.host}:${e.port}`, now);
    const dialled = await Promise.allSettled(fresh.map((e) => this.connect(e.host, e.port)));
    let added = 0;
    for (const [i, outcome] of dialled.entries()) {
      if (outcome.status === 'rejected') {
        const e = fresh[i] as HostPort;
        this.log.debug({ endpoint: `${e.host}:${e.port}`, err: (outcome.reason as Error).message }, 'dht bootstrap endpoint did not answer');
        continue;
      }
      const { peer } = outcome.value;
      if (this.addBootstrapContact({ id: peer.id, address: peer.address, port: (fresh[i] as HostPort).port })) added++;
    }
    if (added > 0 && !this.closed) {
      this.node.bootstrap(Date.now(), [...this.bootstrapContacts.values()]);
      this.flush();
    }
  }

  private addBootstrapContact(contact: Contact): boolean {
    const key = contact.id.toString('hex');
    if (contact.id.equals(this.id) || this.bootstrapContacts.has(key) || this.bootstrapContacts.size >= MAX_ROUTING_STATE_CONTACTS) return false;
    this.bootstrapContacts.set(key, contact);
    return true;
  }

  /** A node whose table emptied (everyone it knew went away) joins again; the configured endpoints are retried. */
  private rejoin(): void {
    if (this.node.table.size >= this.node.config.k) return;
    if (this.node.table.size === 0 && this.bootstrapContacts.size > 0) {
      this.node.bootstrap(Date.now(), [...this.bootstrapContacts.values()]);
      this.flush();
    }
    void this.probe(this.options.bootstrap);
  }

  // ---------------------------------------------------------------- packages

  /** Starts a get_peers lookup for a package that still wants peers, then schedules the next one. */
  private lookUp(tracked: TrackedPackage): void {
    if (this.closed || tracked.running || this.tracked.get(tracked.infoHash.toString('hex')) !== tracked) return;
    clearTimeout(tracked.timer);
    // A finished package needs no peers again: its lookups end here.
    if (!tracked.wantsPeers()) return;
    tracked.running = true;
    tracked.lastStartedAt = Date.now();
    void this.findPeers(tracked.infoHash).then((result) => {
      tracked.running = false;
      // Nobody yet (the join may still be under way, or every seed announced a moment later): soon again.
      const next = result.peers.length > 0 ? LOOKUP_INTERVAL_MS : tracked.retryMs;
      tracked.retryMs = result.peers.length > 0 ? FIRST_RETRY_MS : Math.min(LOOKUP_INTERVAL_MS, tracked.retryMs * 2);
      this.schedule(tracked, next);
    });
  }

  private schedule(tracked: TrackedPackage, delayMs: number): void {
    if (this.closed) return;
    tracked.timer = setTimeout(() => this.lookUp(tracked), delayMs);
    tracked.timer.unref();
  }

  private announce(tracked: TrackedPackage): void {
    clearTimeout(tracked.announceTimer);
    this.node.announce(Date.now(), tracked.infoHash, this.options.port, this.advertisedAddresses());
    this.flush();
  }

  /**
   * The node re-announces every reannounceIntervalMs by itself; a round no node accepted (nobody
   * known yet, or all unreachable) is retried after 1 s, 2 s ... up to LOOKUP_INTERVAL_MS instead.
   */
  private announced(round: Extract<DhtAction, { type: 'announced' }>): void {
    this.metrics.announces.inc({ result: round.stored > 0 ? 'stored' : 'none' });
    this.log.debug({ infoHash: round.infoHash.toString('hex'), attempted: round.attempted, stored: round.stored }, 'dht announce round');
    const tracked = this.tracked.get(round.infoHash.toString('hex'));
    if (!tracked) return;
    if (round.stored > 0) {
      tracked.announceRetryMs = FIRST_RETRY_MS;
      return;
    }
    clearTimeout(tracked.announceTimer);
    tracked.announceTimer = setTimeout(() => {
      if (this.tracked.get(tracked.infoHash.toString('hex')) === tracked && !this.closed) this.announce(tracked);
    }, tracked.announceRetryMs);
    tracked.announceTimer.unref();
    tracked.announceRetryMs = Math.min(LOOKUP_INTERVAL_MS, tracked.announceRetryMs * 2);
  }

  /** The advertised addresses the DHT can carry (IP literals; a host name is the tracker's business). */
  private advertisedAddresses(): string[] {
    return this.options.advertiseAddresses.flatMap((address) => {
      try {
        return [canonicalIp(address)];
      } catch {
        return [];
      }
    });
  }

  // ---------------------------------------------------------------- persistence

  private async loadState(): Promise<Contact[]> {
    const path = this.options.statePath;
    try {
      const { size } = await stat(path);
      if (size > MAX_ROUTING_STATE_BYTES) throw new Error(`${size} bytes exceed ${MAX_ROUTING_STATE_BYTES}`);
      const state = parseRoutingState(await readFile(path));
      return [...state.nodes, ...state.replacements];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ path, err: (err as Error).message }, 'ignoring a DHT routing table file that cannot be read');
      return [];
    }
  }

  /** Writes the table (temporary file, then rename); an empty table keeps the previous file, still the best way back in. */
  private save(): Promise<void> {
    this.saving = this.saving.then(async () => {
      if (this.closed || this.node.table.size === 0) return;
      await writeAtomic(this.options.statePath, this.node.saveState(Date.now()), 0o600).catch((err: Error) =>
        this.log.warn({ path: this.options.statePath, err: err.message }, 'saving the DHT routing table failed'),
      );
    });
    return this.saving;
  }

  private every(ms: number, run: () => void): void {
    const timer = setInterval(run, ms);
    timer.unref();
    this.timers.push(timer);
  }
}

function stopTimers(tracked: TrackedPackage): void {
  clearTimeout(tracked.timer);
  clearTimeout(tracked.announceTimer);
}

function publicKeyDer(certificate: X509Certificate): Buffer {
  return certificate.publicKey.export({ type: 'spki', format: 'der' });
}
