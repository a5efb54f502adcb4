/**
 * The swarm simulator: a deterministic discrete-event simulation of one package's swarm in which
 * every virtual host drives a real `Swarm` core, to measure completion times against the
 * fluid-model bound T* (see `completionBound`). Sans-IO like the core: virtual time, one seeded
 * generator (which also feeds every host's Swarm), no timers, no files.
 *
 * The model, and why:
 * - Links. Each host has an uplink and a downlink rate. A block a host serves is queued on its
 *   connection; the uplink serves its connections' queues block by block in round robin (as TCP
 *   flows sharing a bottleneck roughly do), then the block crosses the network (`latencyMs`) and
 *   is serialized on the receiver's downlink, a FIFO in arrival order. Latency is the same on
 *   every link, so arrivals happen in the order blocks leave their uplinks and the downlink's
 *   finishing time is computed when the block leaves (one event per block fewer).
 * - Control messages (request, have, choke, interested, cancel, reject: 5-17 bytes against a
 *   16 KiB block, 0.1%) cost latency only; those a host sends while handling one event travel
 *   as one batch.
 * - Wire. Every connection speaks the fast extension (unless `fast: false`): a request the
 *   serving host may not queue (it chokes the peer, lacks the piece, or already queues `reqq`
 *   requests) is rejected, a choke rejects the queued ones, a cancel of a queued request drops it
 *   and is answered with a reject, as the agent's wire does. The dialling host adds the peer at
 *   once (reserving the slot) and sends its handshake and bitfield; the dialled host adds, opens
 *   and answers one latency later; the dialler opens when the answer arrives.
 * - Tracker. A host that joins announces after a round trip and dials random hosts present until
 *   half its `maxPeers` slots are taken (the other half is left to hosts that dial it); it
 *   announces again every `announceIntervalMs` while it has fewer than half, every tick while it
 *   has none.
 * - Storage. Writing and verifying are instant. Verification is decided by where the data came
 *   from: a piece with any block from a corrupt host fails. Block hashes are stand-ins that only
 *   tell good from bad; a hash request is answered after a round trip (by an honest peer still
 *   connected; a corrupt one's answer does not check out).
 * - Origin (webseed). One uplink shared in round robin by the fetches it serves, at most
 *   `concurrency` at once (more are refused after a round trip, HTTP 503: the host backs off);
 *   its data is always good.
 * - Completion. The run ends when every honest downloader completed (they keep seeding until
 *   then) or at `maxVirtualMs`.
 */
import { BLOCK_SIZE } from '@shoal/torrent';
import type { BlockRef, SwarmAction } from '../actions';
import { DEFAULT_SWARM_CONFIG } from '../config';
import { PieceSpace } from '../piece-space';
import { type Advertisement, Swarm } from '../swarm';
import { EventQueue } from './event-queue';
import { type ResolvedSimOptions, type SimOptions, completionBound, downloaderUpload, resolveSimOptions } from './options';
import { childSeed, mulberry32, sample } from './random';

export type SimRole = 'seed' | 'peer' | 'corrupt';

export interface SimHostReport {
  name: string;
  role: SimRole;
  uploadBytesPerSecond: number;
  downloadBytesPerSecond: number;
  joinedAtMs: number;
  /** Virtual time the host's Swarm completed (null: it did not; the seed: null). */
  completedAtMs: number | null;
  uploadedBytes: number;
  bytesFromPeers: number;
  bytesFromWebseed: number;
  /** Blocks the Swarm did not need when they arrived (end-game duplicates, late blocks). */
  duplicateBlocks: number;
}

export interface SimBan {
  by: string;
  banned: string;
}

export interface SimReport {
  seed: number;
  peers: number;
  fileBytes: number;
  pieceLength: number;
  source: ResolvedSimOptions['source'];
  profile: ResolvedSimOptions['profile'];
  /** Honest downloaders that completed, and those that did not before the run stopped. */
  completed: number;
  incomplete: number;
  /** T*, the fluid-model lower bound (see `completionBound`). */
  boundSeconds: number;
  /** T_last: when the last honest downloader completed (null when one did not). */
  lastCompletionSeconds: number | null;
  meanCompletionSeconds: number | null;
  /** T* / T_last (1 = optimal; 0 when a downloader did not complete). */
  efficiency: number;
  /** Bytes the seed / the origin uploaded, in copies of the file. */
  seedCopies: number;
  originCopies: number;
  duplicateBlocks: number;
  corruptPieces: number;
  bans: SimBan[];
  /** Bans that named an honest host (smart ban must keep this at 0). */
  honestBanned: number;
  eventsProcessed: number;
  virtualSeconds: number;
  hosts: SimHostReport[];
}

// Event kinds.
const JOIN = 0;
const ANNOUNCE = 1;
const TICK = 2;
const HANDSHAKE = 3;
const HANDSHAKE_REPLY = 4;
const MESSAGES = 5;
const UPLINK_DONE = 6;
const DELIVER = 7;
const CLOSED = 8;
const HASHES = 9;
const ORIGIN_REQUEST = 10;
const ORIGIN_REFUSED = 11;
const WEBSEED_BLOCK = 12;

// Control messages.
const CHOKE = 0;
const UNCHOKE = 1;
const INTERESTED = 2;
const NOT_INTERESTED = 3;
const HAVE = 4;
const REQUEST = 5;
const CANCEL = 6;
const REJECT = 7;

/** A block waiting on, or crossing, an uplink. `bad`: a corrupt host sent it. */
interface QueuedBlock extends BlockRef {
  bad: boolean;
}

/** One host's side of a connection: what it has queued to send on it, and its wire state. */
class End {
  readonly kind = 'end';
  remote!: End;
  /** This side's Swarm added and opened the peer. */
  open = false;
  closed = false;
  /** This side chokes the remote (what the wire tracks as am_choking). */
  choking = true;
  /** Blocks this side was asked for and has not sent yet. */
  queue: QueuedBlock[] = [];
  listed = false;

  constructor(
    readonly host: Host,
    readonly key: number,
  ) {}
}

/** A webseed fetch: one piece the origin sends to one host. */
class Fetch {
  readonly kind = 'fetch';
  queue: QueuedBlock[] = [];
  listed = false;
  remaining: number;

  constructor(
    readonly host: Host,
    readonly index: number,
    blocks: number,
  ) {
    this.remaining = blocks;
  }
}

type Flow = End | Fetch;

/**
 * An uplink shared by flows (connections, or origin fetches) served block by block in round
 * robin, as TCP flows sharing a bottleneck roughly are.
 */
class Uplink {
  busy = false;
  readonly flows: Flow[] = [];
  private next = 0;

  constructor(readonly bytesPerSecond: number) {}

  list(flow: Flow): void {
    if (flow.listed) return;
    flow.listed = true;
    this.flows.push(flow);
  }

  /** The next flow in turn with a block to send, or undefined when every queue is empty. */
  nextFlow(): Flow | undefined {
    while (this.flows.length > 0) {
      if (this.next >= this.flows.length) this.next = 0;
      const flow = this.flows[this.next] as Flow;
      if (flow.queue.length === 0 || (flow.kind === 'end' && flow.closed)) {
        flow.listed = false;
        this.flows.splice(this.next, 1);
        continue;
      }
      this.next++;
      return flow;
    }
    return undefined;
  }
}

class Host {
  swarm!: Swarm;
  readonly uplink: Uplink;
  /** When the downlink finishes what already arrived (a FIFO in arrival order). */
  downFreeAt = 0;
  /** Connections by key (including dials not answered yet). */
  readonly ends = new Map<number, End>();
  /** Pieces being received: per block, 1 when the data kept for it is bad. */
  readonly buffers = new Map<number, Uint8Array>();
  joined = false;
  left = false;
  completedAt: number | undefined;
  uploaded = 0;
  duplicateBlocks = 0;
  lastAnnounce = -Infinity;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly role: SimRole,
    readonly up: number,
    readonly down: number,
    readonly joinAt: number,
    readonly random: () => number,
  ) {
    this.uplink = new Uplink(up);
  }

  get honestDownloader(): boolean {
    return this.role === 'peer';
  }
}

class Origin {
  readonly uplink: Uplink;
  active = 0;
  uploaded = 0;

  constructor(
    upload: number,
    readonly concurrency: number,
  ) {
    this.uplink = new Uplink(upload);
  }
}

/**
 * Control messages travelling together, flat: (receiving end, code, index, begin, length) per
 * message, so a batch is one allocation however many messages it carries.
 */
type MessageBatch = (End | number)[];
const MESSAGE_FIELDS = 5;

/** One slot of the agenda; fields are reused by kind to keep the shape monomorphic. */
interface SimEvent {
  time: number;
  kind: number;
  host: Host | undefined;
  end: End | undefined;
  flow: Flow | undefined;
  code: number;
  index: number;
  begin: number;
  length: number;
  bad: boolean;
  advertisement: Advertisement | undefined;
  messages: MessageBatch | undefined;
}

const GOOD_LEAF = Uint8Array.of(0);
const BAD_LEAF = Uint8Array.of(1);

/**
 * One simulation run: N virtual downloaders, a seed and/or a webseed origin, each host driving a
 * real `Swarm`. Time is virtual (ms). See the module comment for the model.
 */
export class Simulator {
  readonly options: ResolvedSimOptions;
  private readonly space: PieceSpace;
  private readonly queue = new EventQueue<SimEvent>();
  private readonly random: () => number;
  private readonly hosts: Host[] = [];
  /** Joined hosts still in the swarm, in join order (what the tracker knows). */
  private readonly present: Host[] = [];
  private readonly origin: Origin | undefined;
  private readonly seedHost: Host | undefined;
  /** Host pairs with a connection or a dial in flight. */
  private readonly pairs = new Set<number>();
  private readonly bans: SimBan[] = [];
  private readonly maxPeers: number;
  /** Control messages sent while handling the current event: they travel as one event. */
  private outbox: MessageBatch = [];
  /**
   * Dispatched events, sent message batches and blocks, reused: they live long enough to survive
   * young-generation collections, whose cost grows with the survivors.
   */
  private readonly spare: SimEvent[] = [];
  private readonly spareBatches: MessageBatch[] = [];
  private readonly spareBlocks: QueuedBlock[] = [];
  private nextKey = 1;
  private now = 0;
  private events = 0;
  private honestLeft = 0;
  private corruptPieces = 0;

  constructor(options: SimOptions) {
    this.options = resolveSimOptions(options);
    const o = this.options;
    this.space = PieceSpace.uniform(o.fileBytes, o.pieceLength);
    this.random = mulberry32(o.seed);
    this.maxPeers = o.swarm.maxPeers ?? DEFAULT_SWARM_CONFIG.maxPeers;
    this.origin = o.origin ? new Origin(o.origin.uploadBytesPerSecond, o.origin.concurrency) : undefined;

    if (o.source !== 'webseed') {
      this.seedHost = new Host(0, 'seed', 'seed', o.seedUploadBytesPerSecond, o.downloadBytesPerSecond, 0, mulberry32(childSeed(this.random)));
      this.hosts.push(this.seedHost);
    }
    // Which downloaders are corrupt and which join late: a seeded shuffle.
    const order = sample(
      Array.from({ length: o.peers }, (_, i) => i),
      o.peers,
      this.random,
    );
    const corrupt = new Set(order.slice(0, o.corruptPeers));
    const late = new Set(order.slice(o.corruptPeers, o.corruptPeers + o.lateJoiners));
    for (let i = 0; i < o.peers; i++) {
      const role: SimRole = corrupt.has(i) ? 'corrupt' : 'peer';
      const joinAt = late.has(i) ? Math.max(1, this.random() * o.lateJoinWindowMs) : 0;
      const up = downloaderUpload(o, this.random);
      const name = `peer-${String(i + 1).padStart(4, '0')}`;
      this.hosts.push(new Host(this.hosts.length, name, role, up, o.downloadBytesPerSecond, joinAt, mulberry32(childSeed(this.random))));
    }
    this.honestLeft = this.hosts.filter((h) => h.honestDownloader).length;
    for (const host of this.hosts) this.schedule(host.joinAt, JOIN, host);
  }

  /** Runs until every honest downloader completed (or `maxVirtualMs`), and reports. */
  run(): SimReport {
    const bound = this.bound();
    const limit = this.options.maxVirtualMs ?? Math.max(600_000, 50 * bound * 1000);
    for (let event = this.queue.pop(); event !== undefined && this.honestLeft > 0; event = this.queue.pop()) {
      if (event.time > limit) break;
      this.now = event.time;
      this.events++;
      this.dispatch(event);
      event.host = event.end = event.flow = event.advertisement = event.messages = undefined;
      this.spare.push(event);
      if (this.outbox.length > 0) {
        this.schedule(this.now + this.options.latencyMs, MESSAGES, undefined, undefined, 0, 0, 0, 0, false, undefined, undefined, this.outbox);
        this.outbox = this.spareBatches.pop() ?? [];
      }
    }
    return this.report(bound);
  }

  // ---------------------------------------------------------------- agenda

  private schedule(
    time: number,
    kind: number,
    host: Host | undefined,
    end?: End,
    code = 0,
    index = 0,
    begin = 0,
    length = 0,
    bad = false,
    flow?: Flow,
    advertisement?: Advertisement,
    messages?: MessageBatch,
  ): void {
    const e = this.spare.pop();
    if (!e) {
      this.queue.push(time, { time, kind, host, end, flow, code, index, begin, length, bad, advertisement, messages });
      return;
    }
    e.time = time;
    e.kind = kind;
    e.host = host;
    e.end = end;
    e.flow = flow;
    e.code = code;
    e.index = index;
    e.begin = begin;
    e.length = length;
    e.bad = bad;
    e.advertisement = advertisement;
    e.messages = messages;
    this.queue.push(time, e);
  }

  private dispatch(e: SimEvent): void {
    switch (e.kind) {
      case JOIN:
        return this.join(e.host as Host);
      case ANNOUNCE:
        return this.announce(e.host as Host);
      case TICK:
        return this.tick(e.host as Host);
      case HANDSHAKE:
        return this.handshake(e.end as End, e.advertisement as Advertisement);
      case HANDSHAKE_REPLY:
        return this.handshakeReply(e.end as End, e.advertisement as Advertisement);
      case MESSAGES: {
        const batch = e.messages as MessageBatch;
        for (let at = 0; at < batch.length; at += MESSAGE_FIELDS) {
          this.message(batch[at] as End, batch[at + 1] as number, batch[at + 2] as number, batch[at + 3] as number, batch[at + 4] as number);
        }
        batch.length = 0;
        this.spareBatches.push(batch);
        return;
      }
      case UPLINK_DONE:
        return this.uplinkDone(e.host, e.flow as Flow, e.index, e.begin, e.length, e.bad);
      case DELIVER:
        return this.deliver(e.end as End, e.index, e.begin, e.length, e.bad);
      case CLOSED:
        return this.remoteClosed(e.end as End);
      case HASHES:
        return this.hashesAnswered(e.end as End, e.index);
      case ORIGIN_REQUEST:
        return this.originRequest(e.host as Host, e.index);
      case ORIGIN_REFUSED:
        return this.originRefused(e.host as Host, e.index);
      case WEBSEED_BLOCK:
        return this.webseedBlock(e.flow as Fetch);
    }
  }

  // ---------------------------------------------------------------- hosts and connections

  private join(host: Host): void {
    const o = this.options;
    host.joined = true;
    host.swarm = new Swarm({
      space: this.space,
      have: host.role === 'seed' ? 'all' : 'none',
      selfName: host.name,
      config: o.swarm,
      random: host.random,
      now: this.now,
      // Seeds fetch nothing, but knowing the package has an origin they offer its share last.
      webseed: this.origin !== undefined,
    });
    this.present.push(host);
    // The tracker answers after a round trip; the first tick comes at a random phase.
    this.schedule(this.now + 2 * o.latencyMs, ANNOUNCE, host);
    this.schedule(this.now + host.random() * o.tickMs, TICK, host);
    this.drain(host);
  }

  /**
   * The tracker hands out random present hosts; the host dials them until half its maxPeers slots
   * are taken, leaving the other half to hosts that dial it (all dialling at once to fill every
   * slot would leave each host's slots held by its own dials, refusing everybody else's).
   */
  private announce(host: Host): void {
    if (host.left) return;
    host.lastAnnounce = this.now;
    const room = Math.min(this.options.announcePeers, Math.ceil(this.maxPeers / 2) - host.ends.size);
    if (room <= 0) return;
    const candidates = this.present.filter((other) => other !== host && !this.pairs.has(pairKey(host, other)));
    for (const other of sample(candidates, room, host.random)) this.dial(host, other);
  }

  /**
   * As the agent, the dialler adds the peer when its connection is up (here: at once, which
   * reserves the slot) and sends its handshake and bitfield; the peer is open when the answer
   * comes back.
   */
  private dial(from: Host, to: Host): void {
    const key = this.nextKey++;
    const advertised = from.swarm.addPeer(key, { name: to.name, seed: to.role === 'seed' }, this.now);
    if (typeof advertised === 'object' && 'refused' in advertised) return;
    const near = new End(from, key);
    const far = new End(to, key);
    near.remote = far;
    far.remote = near;
    from.ends.set(key, near);
    this.pairs.add(pairKey(from, to));
    this.schedule(this.now + this.options.latencyMs, HANDSHAKE, to, far, 0, 0, 0, 0, false, undefined, advertised);
  }

  /** The dialled host accepts (adds and opens the peer, takes its bitfield, answers) or refuses. */
  private handshake(end: End, theirs: Advertisement): void {
    const host = end.host;
    if (end.closed) return;
    if (host.left) {
      this.close(end);
      return;
    }
    const advertised = host.swarm.addPeer(end.key, { name: end.remote.host.name, seed: end.remote.host.role === 'seed' }, this.now);
    if (typeof advertised === 'object' && 'refused' in advertised) {
      this.close(end);
      return;
    }
    host.ends.set(end.key, end);
    end.open = true;
    this.schedule(this.now + this.options.latencyMs, HANDSHAKE_REPLY, end.remote.host, end.remote, 0, 0, 0, 0, false, undefined, advertised);
    host.swarm.peerOpened(end.key, { fast: this.options.fast, reqq: this.options.reqq }, this.now);
    host.swarm.peerBitfield(end.key, theirs, this.now);
    this.drain(host);
  }

  /** The dialler's handshake is answered: the peer is open. */
  private handshakeReply(end: End, theirs: Advertisement): void {
    const host = end.host;
    if (end.closed || host.left) return;
    end.open = true;
    host.swarm.peerOpened(end.key, { fast: this.options.fast, reqq: this.options.reqq }, this.now);
    host.swarm.peerBitfield(end.key, theirs, this.now);
    this.drain(host);
  }

  /** This side closes the connection; the other side learns it one latency later. */
  private close(end: End): void {
    if (end.closed) return;
    this.shut(end);
    this.schedule(this.now + this.options.latencyMs, CLOSED, end.remote.host, end.remote);
  }

  private remoteClosed(end: End): void {
    if (end.closed) return;
    this.shut(end);
    this.drain(end.host);
  }

  private shut(end: End): void {
    end.closed = true;
    end.queue = [];
    const host = end.host;
    host.ends.delete(end.key);
    this.pairs.delete(pairKey(host, end.remote.host));
    // The dialler added the peer before it was open; the acceptor only once it accepted.
    if (!host.left) host.swarm.peerClosed(end.key, this.now);
  }

  private leave(host: Host): void {
    host.left = true;
    host.swarm.close();
    for (const end of [...host.ends.values()]) this.close(end);
    const at = this.present.indexOf(host);
    if (at >= 0) this.present.splice(at, 1);
  }

  private tick(host: Host): void {
    if (host.left) return;
    host.swarm.tick(this.now);
    this.drain(host);
    // Re-announce while short of peers: at once when alone, else every announce interval.
    const o = this.options;
    const every = host.ends.size === 0 ? o.tickMs : o.announceIntervalMs;
    if (host.ends.size < this.maxPeers / 2 && this.now - host.lastAnnounce >= every) this.announce(host);
    this.schedule(this.now + o.tickMs, TICK, host);
  }

  // ---------------------------------------------------------------- the wire

  /** A control message: small enough to cost only latency (see the module comment). */
  private send(from: End, code: number, index = 0, begin = 0, length = 0): void {
    if (from.closed) return;
    this.outbox.push(from.remote, code, index, begin, length);
  }

  private message(end: End, code: number, index: number, begin: number, length: number): void {
    if (!end.open || end.closed) return;
    const host = end.host;
    const swarm = host.swarm;
    const key = end.key;
    const now = this.now;
    switch (code) {
      case CHOKE:
      case UNCHOKE:
        swarm.peerChoke(key, code === CHOKE, now);
        break;
      case INTERESTED:
      case NOT_INTERESTED:
        swarm.peerInterest(key, code === INTERESTED, now);
        break;
      case HAVE:
        swarm.peerHave(key, index, now);
        break;
      case REQUEST:
        // The wire answers what it may not queue: choked, a piece we lack, a full queue.
        if (end.choking || !swarm.hasPiece(index) || end.queue.length >= this.options.reqq) {
          if (this.options.fast) this.send(end, REJECT, index, begin, length);
          return;
        }
        swarm.peerRequest(key, { index, begin, length }, now);
        break;
      case CANCEL: {
        const at = end.queue.findIndex((b) => b.index === index && b.begin === begin);
        if (at < 0) return;
        end.queue.splice(at, 1);
        if (this.options.fast) this.send(end, REJECT, index, begin, length);
        return;
      }
      case REJECT:
        swarm.peerRejected(key, { index, begin, length }, now);
        break;
    }
    this.drain(host);
  }

  private startUpload(uplink: Uplink, owner: Host | undefined): void {
    if (uplink.busy) return;
    const flow = uplink.nextFlow();
    if (!flow) return;
    uplink.busy = true;
    const block = flow.queue.shift() as QueuedBlock;
    const done = this.now + (block.length * 1000) / uplink.bytesPerSecond;
    this.schedule(done, UPLINK_DONE, owner, undefined, 0, block.index, block.begin, block.length, block.bad, flow);
    this.spareBlocks.push(block);
  }

  private queuedBlock(index: number, begin: number, length: number, bad: boolean): QueuedBlock {
    const block = this.spareBlocks.pop();
    if (!block) return { index, begin, length, bad };
    block.index = index;
    block.begin = begin;
    block.length = length;
    block.bad = bad;
    return block;
  }

  /** A block left an uplink: it crosses the link, then the receiver's downlink (FIFO). */
  private uplinkDone(owner: Host | undefined, flow: Flow, index: number, begin: number, length: number, bad: boolean): void {
    const receiver = flow.kind === 'end' ? flow.remote.host : flow.host;
    const arrival = this.now + this.options.latencyMs;
    const start = Math.max(arrival, receiver.downFreeAt);
    receiver.downFreeAt = start + (length * 1000) / receiver.down;
    if (flow.kind === 'fetch') {
      const origin = this.origin as Origin;
      origin.uplink.busy = false;
      origin.uploaded += length;
      if (flow.queue.length === 0) origin.active--;
      this.schedule(receiver.downFreeAt, WEBSEED_BLOCK, receiver, undefined, 0, 0, 0, 0, false, flow);
      this.startUpload(origin.uplink, undefined);
      return;
    }
    const host = owner as Host;
    host.uplink.busy = false;
    if (!flow.closed && !host.left) {
      this.schedule(receiver.downFreeAt, DELIVER, receiver, flow.remote, 0, index, begin, length, bad);
      host.uploaded += length;
      host.swarm.blockSent(flow.key, { index, begin, length }, this.now);
      this.drain(host);
      const leaveAfter = this.options.seedLeavesAfter;
      if (host === this.seedHost && leaveAfter !== undefined && host.uploaded >= leaveAfter * this.options.fileBytes) this.leave(host);
    }
    if (!host.left) this.startUpload(host.uplink, host);
  }

  private deliver(end: End, index: number, begin: number, length: number, bad: boolean): void {
    if (!end.open || end.closed) return;
    const host = end.host;
    if (host.swarm.blockReceived(end.key, { index, begin, length }, this.now)) {
      let flags = host.buffers.get(index);
      if (!flags) {
        flags = new Uint8Array(this.space.blockCount(index));
        host.buffers.set(index, flags);
      }
      flags[begin / BLOCK_SIZE] = bad ? 1 : 0;
    } else {
      host.duplicateBlocks++;
    }
    this.drain(host);
  }

  private hashesAnswered(end: End, index: number): void {
    const host = end.host;
    if (host.left) return;
    // A corrupt or gone peer's answer does not check out against the piece layer.
    const honest = !end.closed && end.remote.host.role !== 'corrupt';
    host.swarm.blockHashes(index, honest ? this.leaves(index) : undefined, this.now);
    this.drain(host);
  }

  // ---------------------------------------------------------------- the origin

  private originRequest(host: Host, index: number): void {
    const origin = this.origin as Origin;
    if (origin.active >= origin.concurrency) {
      this.schedule(this.now + this.options.latencyMs, ORIGIN_REFUSED, host, undefined, 0, index);
      return;
    }
    origin.active++;
    const blocks = this.space.blockCount(index);
    const fetch = new Fetch(host, index, blocks);
    for (let b = 0; b < blocks; b++) fetch.queue.push(this.queuedBlock(index, b * BLOCK_SIZE, this.space.blockLength(index, b), false));
    origin.uplink.list(fetch);
    this.startUpload(origin.uplink, undefined);
  }

  private originRefused(host: Host, index: number): void {
    if (host.left) return;
    host.swarm.webseedFailed(index, this.now);
    this.drain(host);
  }

  private webseedBlock(fetch: Fetch): void {
    fetch.remaining--;
    const host = fetch.host;
    if (fetch.remaining > 0 || host.left) return;
    host.swarm.pieceVerified(fetch.index, this.now);
    this.drain(host);
  }

  // ---------------------------------------------------------------- actions

  /** Carries out everything the host's Swarm asked for (which may ask for more). */
  private drain(host: Host): void {
    for (let actions = host.swarm.takeActions(); actions.length > 0; actions = host.swarm.takeActions()) {
      for (const action of actions) this.perform(host, action);
    }
  }

  private perform(host: Host, action: SwarmAction): void {
    switch (action.type) {
      case 'write':
        return this.write(host, action.index, action.recordLeaves, action.needGoodLeaves);
      case 'webseed-fetch':
        this.schedule(this.now + this.options.latencyMs, ORIGIN_REQUEST, host, undefined, 0, action.index);
        return;
      case 'piece-failed':
        this.corruptPieces++;
        return;
      case 'banned':
        this.bans.push({ by: host.name, banned: action.name });
        return;
      case 'complete':
        if (host.completedAt === undefined && host.role !== 'seed') {
          host.completedAt = this.now;
          if (host.honestDownloader) this.honestLeft--;
        }
        return;
      default:
        break;
    }
    const end = host.ends.get(action.peer);
    if (!end || end.closed) return;
    switch (action.type) {
      case 'choke': {
        end.choking = true;
        const dropped = end.queue;
        end.queue = [];
        this.send(end, CHOKE);
        if (this.options.fast) for (const b of dropped) this.send(end, REJECT, b.index, b.begin, b.length);
        return;
      }
      case 'unchoke':
        end.choking = false;
        return this.send(end, UNCHOKE);
      case 'interested':
        return this.send(end, INTERESTED);
      case 'not-interested':
        return this.send(end, NOT_INTERESTED);
      case 'have':
        return this.send(end, HAVE, action.index);
      case 'request':
        return this.send(end, REQUEST, action.index, action.begin, action.length);
      case 'cancel':
        return this.send(end, CANCEL, action.index, action.begin, action.length);
      case 'serve':
        end.queue.push(this.queuedBlock(action.index, action.begin, action.length, host.role === 'corrupt'));
        host.uplink.list(end);
        return this.startUpload(host.uplink, host);
      case 'request-block-hashes':
        // The answer comes back after a round trip (hash request, hashes).
        this.schedule(this.now + 2 * this.options.latencyMs, HASHES, host, end, 0, action.index);
        return;
      case 'close':
        return this.close(end);
    }
  }

  /** Verification is decided by the data kept: a piece with any block from a corrupt host fails. */
  private write(host: Host, index: number, recordLeaves: boolean, needGoodLeaves: boolean): void {
    const flags = host.buffers.get(index);
    host.buffers.delete(index);
    if (flags?.includes(1)) {
      host.swarm.pieceCorrupt(index, this.now, recordLeaves ? Array.from(flags, (bad) => (bad === 1 ? BAD_LEAF : GOOD_LEAF)) : undefined);
    } else {
      host.swarm.pieceVerified(index, this.now, needGoodLeaves ? this.leaves(index) : undefined);
    }
  }

  /** Stand-ins for a piece's block hashes: only equality between good and bad data matters. */
  private leaves(index: number): Uint8Array[] {
    return new Array<Uint8Array>(this.space.blockCount(index)).fill(GOOD_LEAF);
  }

  // ---------------------------------------------------------------- report

  private bound(): number {
    const o = this.options;
    const sourceUpload = (this.seedHost?.up ?? 0) + (this.origin?.uplink.bytesPerSecond ?? 0);
    const honest = this.hosts.filter((h) => h.honestDownloader).map((h) => ({ up: h.up, down: h.down }));
    return completionBound(o.fileBytes, sourceUpload, honest);
  }

  private report(bound: number): SimReport {
    const o = this.options;
    const honest = this.hosts.filter((h) => h.honestDownloader);
    const done = honest.filter((h) => h.completedAt !== undefined).map((h) => (h.completedAt as number) / 1000);
    const complete = done.length === honest.length;
    const last = complete && done.length > 0 ? Math.max(...done) : null;
    const names = new Map(this.hosts.map((h) => [h.name, h]));
    let duplicateBlocks = 0;
    const hosts = this.hosts.map((h): SimHostReport => {
      duplicateBlocks += h.duplicateBlocks;
      const progress = h.joined ? h.swarm.progress : undefined;
      return {
        name: h.name,
        role: h.role,
        uploadBytesPerSecond: h.up,
        downloadBytesPerSecond: h.down,
        joinedAtMs: h.joinAt,
        completedAtMs: h.completedAt ?? null,
        uploadedBytes: h.uploaded,
        bytesFromPeers: progress?.bytesFromPeers ?? 0,
        bytesFromWebseed: progress?.bytesFromWebseed ?? 0,
        duplicateBlocks: h.duplicateBlocks,
      };
    });
    return {
      seed: o.seed,
      peers: o.peers,
      fileBytes: o.fileBytes,
      pieceLength: o.pieceLength,
      source: o.source,
      profile: o.profile,
      completed: done.length,
      incomplete: honest.length - done.length,
      boundSeconds: bound,
      lastCompletionSeconds: last,
      meanCompletionSeconds: done.length > 0 ? done.reduce((a, b) => a + b, 0) / done.length : null,
      efficiency: last === null ? 0 : bound / last,
      seedCopies: (this.seedHost?.uploaded ?? 0) / o.fileBytes,
      originCopies: (this.origin?.uploaded ?? 0) / o.fileBytes,
      duplicateBlocks,
      corruptPieces: this.corruptPieces,
      bans: this.bans,
      honestBanned: this.bans.filter((b) => names.get(b.banned)?.role !== 'corrupt').length,
      eventsProcessed: this.events,
      virtualSeconds: this.now / 1000,
      hosts,
    };
  }
}

function pairKey(a: Host, b: Host): number {
  return a.id < b.id ? a.id * 0x100000 + b.id : b.id * 0x100000 + a.id;
}

/** Runs one simulation. The same options (seed included) give the same report. */
export function runSimulation(options: SimOptions): SimReport {
  return new Simulator(options).run();
}
