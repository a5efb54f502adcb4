import { BLOCK_SIZE } from '@shoal/torrent';
import type { Location } from '@shoal/topology';
import type { BlockRef, SwarmAction } from './actions';
import { bitfieldBytes, hasBit, setBit } from './bitfield';
import { type BlockRecord, type FailedPiece, guiltyByLeaves, mayRetryFrom, soleContributor } from './blame';
import { type SwarmConfig, type SwarmPolicies, policiesOf, swarmConfig } from './config';
import { SwarmConfigError } from './errors';
import { BlockState, PieceDownload } from './piece-download';
import type { PieceSpace } from './piece-space';
import { inOriginShare } from './policies/webseed';
import { RateMeter } from './rate';

export interface SwarmOptions {
  space: PieceSpace;
  /** Pieces held verified at start (1 = verified), or all / none. */
  have: ArrayLike<number> | 'all' | 'none';
  /** Our own name (agent id): rendezvous hashing shares origin pieces out between peers. */
  selfName: string;
  config?: Partial<SwarmConfig>;
  /** Uniform in [0, 1): the swarm's only randomness (a seeded generator in simulations). */
  random: () => number;
  now: number;
  /** A webseed (url-list) can be fetched from. */
  webseed?: boolean;
}

/** What the adapter announces when a connection opens. */
export type Advertisement = 'all' | 'none' | Uint8Array;

export interface SwarmPeerInfo {
  /** Agent id (certificate CN): blame and bans stick to it across reconnects. */
  name: string;
  location?: Location;
  /**
   * The tracker lists it as a seed. A super-seed hides its pieces behind have-none, so for the
   * webseed fallback it counts as holding every piece while it is connected.
   */
  seed?: boolean;
}

export interface SwarmProgress {
  verifiedPieces: number;
  totalPieces: number;
  /** Piece payload received from peers (duplicates included). */
  bytesFromPeers: number;
  /** Verified bytes fetched from the webseed. */
  bytesFromWebseed: number;
  /** Piece payload sent to peers. */
  bytesUploaded: number;
  peers: number;
  corruptPieces: number;
  webseedFetches: number;
}

export interface SwarmPeerStats {
  key: number;
  name: string;
  open: boolean;
  amChoking: boolean;
  amInterested: boolean;
  peerChoking: boolean;
  peerInterested: boolean;
  snubbed: boolean;
  peerPieces: number;
  outstanding: number;
  bytesDownloaded: number;
  bytesUploaded: number;
  downloadRate: number;
  uploadRate: number;
  strikes: number;
}

interface Peer {
  readonly key: number;
  readonly name: string;
  readonly nameHash: number;
  readonly location: Location | undefined;
  open: boolean;
  fast: boolean;
  reqq: number;
  readonly bits: Uint8Array;
  count: number;
  /** Pieces it has that we lack: we are interested while this is > 0. */
  wanted: number;
  amChoking: boolean;
  amInterested: boolean;
  peerChoking: boolean;
  peerInterested: boolean;
  /** Block keys requested from it and not received. */
  readonly outstanding: Set<number>;
  /** Pieces it rejected: not asked again until the next tick or unchoke. */
  readonly rejected: Set<number>;
  readonly down: RateMeter;
  readonly up: RateMeter;
  /** When it last sent a block, or when we started waiting on it. */
  lastBlockAt: number;
  /** When it last announced a piece new to us (or opened): its progress, for webseed responsibility. */
  lastHaveAt: number;
  snubbed: boolean;
  unchokedAt: number;
  /** Super-seeding: the connection started with have-none; pieces revealed and not yet fully sent. */
  readonly superSeeded: boolean;
  /** Listed as a seed by the tracker (it may hide pieces while super-seeding). */
  readonly knownSeed: boolean;
  /** What we announced when the connection was made (pieces verified before it opens are announced then). */
  advertisedHave: Uint8Array | undefined;
  readonly revealed: Map<number, number>;
  /** Super-seeding: how many pieces may be revealed to it at once (grows as it takes them). */
  revealWindow: number;
}

/** A re-fetched piece whose blame is open is taken by one peer at a time. */
const MAX_RECORDS_PER_PIECE = 4096;
const WEBSEED_BACKOFF_MIN_MS = 1000;
const WEBSEED_BACKOFF_MAX_MS = 60_000;
const WEBSEED_SENDER = 'webseed';

/** 32-bit FNV-1a of a string: the stable part of a peer's rendezvous score. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Rendezvous score of (peer, piece): a 32-bit mix, lowest wins. */
function rendezvous(nameHash: number, index: number): number {
  let h = (nameHash ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The swarm of one package on one agent, without I/O: the adapter feeds it what happened (peer
 * messages, disk results, the time) and carries out the actions it returns (`takeActions`). One
 * instance per package, driven from one event loop; the same core runs in the agent and in the
 * simulator.
 *
 * Downloading: partial pieces first, then re-fetches of failed pieces (preferring peers above
 * suspicion), then new pieces chosen by the picker (rarest-first); requests per peer sized by the
 * pipeline policy; end game duplicates only outstanding blocks and cancels the losers. A peer that
 * stops sending while we wait is snubbed (its blocks go to others, one request at a time).
 * Uploading: the choker picks whom to serve; a seed that started complete super-seeds (reveals
 * least-copied pieces peer by peer) until every piece is out once. Webseed: the webseed policy
 * decides when the origin fills in, each decision with its reason. Blame: a failed piece's blocks
 * are checked against block hashes (BEP 52) and only the senders of bad blocks are struck.
 */
export class Swarm {
  readonly space: PieceSpace;
  readonly config: SwarmConfig;
  private readonly policies: SwarmPolicies;
  private readonly random: () => number;
  private readonly selfHash: number;

  private readonly have: Uint8Array;
  private verified = 0;
  private readonly availability: Uint32Array;
  private readonly peers = new Map<number, Peer>();
  private readonly pieces = new Map<number, PieceDownload>();
  private readonly failed = new Map<number, FailedPiece>();
  private readonly strikes = new Map<string, number>();
  private readonly banned = new Set<string>();
  private actions: SwarmAction[] = [];
  private completed: boolean;
  private storeFailed = false;
  private closed = false;
  /** The latest time an input carried. */
  private now: number;

  // Uploading
  private readonly sentCopies: Uint32Array;
  /** Pieces sent whole at least once or held by a connected peer (super-seeding ends at numPieces). */
  private piecesOut = 0;
  private superSeeding: boolean;
  /** Super-seeding: peers each piece is revealed to and not yet fully sent. */
  private readonly revealedCount: Uint32Array;
  /** Of those, the peers we unchoke: only there is the piece on its way. */
  private readonly flowingReveals: Uint32Array;
  private optimistic: { key: number; since: number } | undefined;
  private lastRechoke = -Infinity;

  // Webseed
  private webseedAvailable: boolean;
  private readonly webseedInFlight = new Set<number>();
  private webseedBackoffUntil = -Infinity;
  private webseedBackoffMs = 0;
  /** Per piece: since when no connected peer holds it (read only while its availability is 0). */
  private readonly unavailableSince: Float64Array;
  private peerlessSince: number | undefined;
  private slowSince: number | undefined;

  private bytesFromPeers = 0;
  private bytesFromWebseed = 0;
  private bytesUploaded = 0;
  private corruptPieces = 0;
  private webseedFetches = 0;

  constructor(options: SwarmOptions) {
    const { space } = options;
    this.space = space;
    this.config = swarmConfig(options.config);
    this.policies = policiesOf(this.config);
    if (typeof options.random !== 'function') throw new SwarmConfigError('random must be a function returning [0, 1)');
    this.random = options.random;
    this.selfHash = fnv1a(options.selfName);
    const n = space.numPieces;
    this.have = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const held = options.have === 'all' ? 1 : options.have === 'none' ? 0 : (options.have[i] ?? 0);
      if (held === 1) {
        this.have[i] = 1;
        this.verified++;
      }
    }
    this.completed = this.verified === n;
    this.superSeeding = this.completed && this.policies.seeding.reveals;
    this.availability = new Uint32Array(n);
    this.sentCopies = new Uint32Array(n);
    // No peer yet: every piece is unavailable from the start.
    this.unavailableSince = new Float64Array(n).fill(options.now);
    this.webseedAvailable = options.webseed === true;
    this.peerlessSince = options.now;
    this.now = options.now;
    this.revealedCount = new Uint32Array(n);
    this.flowingReveals = new Uint32Array(n);
  }

  // ---------------------------------------------------------------- queries

  takeActions(): SwarmAction[] {
    const out = this.actions;
    this.actions = [];
    return out;
  }

  isComplete(): boolean {
    return this.completed;
  }

  hasPiece(index: number): boolean {
    return this.have[index] === 1;
  }

  get progress(): SwarmProgress {
    return {
      verifiedPieces: this.verified,
      totalPieces: this.space.numPieces,
      bytesFromPeers: this.bytesFromPeers,
      bytesFromWebseed: this.bytesFromWebseed,
      bytesUploaded: this.bytesUploaded,
      peers: this.peers.size,
      corruptPieces: this.corruptPieces,
      webseedFetches: this.webseedFetches,
    };
  }

  strikesOf(name: string): number {
    return this.strikes.get(name) ?? 0;
  }

  isBanned(name: string): boolean {
    return this.banned.has(name);
  }

  peerStats(now: number): SwarmPeerStats[] {
    return [...this.peers.values()].map((p) => ({
      key: p.key,
      name: p.name,
      open: p.open,
      amChoking: p.amChoking,
      amInterested: p.amInterested,
      peerChoking: p.peerChoking,
      peerInterested: p.peerInterested,
      snubbed: p.snubbed,
      peerPieces: p.count,
      outstanding: p.outstanding.size,
      bytesDownloaded: p.down.total,
      bytesUploaded: p.up.total,
      downloadRate: p.down.rate(now),
      uploadRate: p.up.rate(now),
      strikes: this.strikes.get(p.name) ?? 0,
    }));
  }

  /** Orders dial candidates by the ranking policy (topology by default). */
  rankCandidates<P extends { id: string; location: Location }>(candidates: readonly P[], self: Location, selfId: string, count: number): P[] {
    return this.policies.ranking.rank(candidates, { self, selfId, count, random: this.random });
  }

  // ---------------------------------------------------------------- peers

  /**
   * A new connection (before the handshake completes). Returns what to announce on it, or a
   * refusal (banned, over the limit) — the adapter then closes it.
   */
  addPeer(key: number, info: SwarmPeerInfo, now: number): Advertisement | { refused: 'PEER_BANNED' | 'PEER_LIMIT'; message: string } {
    this.now = now;
    if (this.banned.has(info.name)) return { refused: 'PEER_BANNED', message: `${info.name} is banned from this package (bad data)` };
    if (this.peers.size >= this.config.maxPeers) return { refused: 'PEER_LIMIT', message: `already ${this.peers.size} peers (maxPeers)` };
    if (this.peers.has(key)) throw new SwarmConfigError(`peer key ${key} is already in use`);
    const superSeeded = this.superSeeding;
    this.peers.set(key, {
      key,
      name: info.name,
      knownSeed: info.seed === true,
      nameHash: fnv1a(info.name),
      location: info.location,
      open: false,
      fast: false,
      reqq: 1,
      bits: new Uint8Array(bitfieldBytes(this.space.numPieces)),
      count: 0,
      wanted: 0,
      amChoking: true,
      amInterested: false,
      peerChoking: true,
      peerInterested: false,
      outstanding: new Set(),
      rejected: new Set(),
      down: new RateMeter(now),
      up: new RateMeter(now),
      lastBlockAt: now,
      lastHaveAt: now,
      snubbed: false,
      unchokedAt: -Infinity,
      superSeeded,
      revealed: new Map(),
      revealWindow: this.policies.seeding.revealAhead,
      advertisedHave: superSeeded ? undefined : this.have.slice(),
    });
    if (superSeeded) return 'none';
    return this.advertisement();
  }

  /** The handshake completed. `reqq`: the peer's request queue limit (updated by `peerReqq`). */
  peerOpened(key: number, options: { fast: boolean; reqq: number }, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return;
    peer.open = true;
    peer.lastHaveAt = now;
    peer.fast = options.fast;
    peer.reqq = Math.max(1, options.reqq);
    peer.lastBlockAt = now;
    // Pieces verified while the handshake was under way were not in the advertisement.
    const advertised = peer.advertisedHave;
    peer.advertisedHave = undefined;
    if (advertised) for (let i = 0; i < this.space.numPieces; i++) if (this.have[i] === 1 && advertised[i] !== 1) this.actions.push({ type: 'have', peer: key, index: i });
    this.rechoke(now, true);
  }

  peerReqq(key: number, reqq: number, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return;
    peer.reqq = Math.max(1, reqq);
    this.fill(peer);
  }

  /** The peer's bitfield, have-all or have-none. */
  peerBitfield(key: number, bits: Uint8Array | 'all' | 'none', now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return;
    if (bits !== 'none') {
      for (let i = 0; i < this.space.numPieces; i++) {
        if (bits === 'all' || hasBit(bits, i)) this.markPeerHas(peer, i);
      }
    }
    this.updateInterest(peer);
    this.revealTo(peer);
    this.fill(peer);
    this.maybeWebseed(now);
  }

  peerHave(key: number, index: number, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer || index < 0 || index >= this.space.numPieces) return;
    if (!this.markPeerHas(peer, index)) return;
    peer.lastHaveAt = now;
    if (this.unreveal(peer, index)) this.revealTo(peer);
    if (peer.wanted === 1 && this.have[index] === 0) this.updateInterest(peer);
    this.fill(peer);
  }

  peerChoke(key: number, choking: boolean, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer || peer.peerChoking === choking) return;
    peer.peerChoking = choking;
    if (choking) {
      // With the fast extension the peer rejects what it drops (those blocks come back through
      // peerRejected); without it, everything outstanding is gone.
      if (!peer.fast) this.releaseAll(peer);
      this.fillAll();
    } else {
      peer.rejected.clear();
      peer.lastBlockAt = now;
      this.fill(peer);
    }
  }

  peerInterest(key: number, interested: boolean, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer || peer.peerInterested === interested) return;
    peer.peerInterested = interested;
    this.rechoke(now, true);
  }

  /** A request the wire accepted (we announced the piece and do not choke the peer). */
  peerRequest(key: number, r: BlockRef, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer || peer.amChoking || this.have[r.index] !== 1) return;
    this.actions.push({ type: 'serve', peer: key, index: r.index, begin: r.begin, length: r.length });
  }

  peerRejected(key: number, r: BlockRef, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return;
    const block = this.space.blockOf(r.index, r.begin, r.length);
    if (block >= 0 && peer.outstanding.delete(this.space.blockKey(r.index, block))) this.pieces.get(r.index)?.release(block, key);
    peer.rejected.add(r.index);
    this.fillAll();
  }

  /**
   * A block arrived. Returns true when the adapter must keep its data (copy it into the piece's
   * buffer at `begin`); false for a block nobody needs (late duplicate, unknown, banned sender).
   */
  blockReceived(key: number, r: BlockRef, now: number): boolean {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return false;
    peer.down.add(r.length, now);
    peer.lastBlockAt = now;
    peer.snubbed = false;
    this.bytesFromPeers += r.length;
    const block = this.space.blockOf(r.index, r.begin, r.length);
    if (block < 0) return false;
    const blockKey = this.space.blockKey(r.index, block);
    peer.outstanding.delete(blockKey);
    const pd = this.pieces.get(r.index);
    if (!pd || pd.writing || (pd.exclusive && pd.owner !== undefined && pd.owner !== key)) {
      pd?.release(block, key);
      this.refill(peer);
      return false;
    }
    const losers = pd.receive(block, peer.name, key);
    if (losers === null) {
      this.refill(peer);
      return false;
    }
    for (const other of losers) {
      const loser = this.peers.get(other);
      if (loser?.outstanding.delete(blockKey)) this.actions.push({ type: 'cancel', peer: other, index: r.index, begin: r.begin, length: r.length });
    }
    if (pd.complete) this.startWrite(pd);
    this.refill(peer);
    return true;
  }

  /** A served block went out on the wire. */
  blockSent(key: number, r: BlockRef, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return;
    peer.up.add(r.length, now);
    this.bytesUploaded += r.length;
    const sent = peer.revealed.get(r.index);
    if (sent === undefined) return;
    const blocks = sent + 1;
    if (blocks < this.space.blockCount(r.index)) {
      peer.revealed.set(r.index, blocks);
      return;
    }
    // The whole revealed piece went to this peer: one more copy is out; reveal the next. Like TCP
    // slow start, a peer that takes what it is shown gets a wider window (a fast lone leech
    // would otherwise wait a round trip per revealAhead pieces), while pieces nobody has seen
    // are plentiful enough that every peer could widen as much without sharing a reveal.
    this.unreveal(peer, r.index);
    this.countCopy(r.index);
    let sharing = 0;
    let revealed = 0;
    for (const p of this.peers.values()) {
      if (!p.superSeeded || !p.open) continue;
      sharing++;
      revealed += p.revealed.size;
    }
    if (this.space.numPieces - this.piecesOut - revealed > sharing * (peer.revealWindow + 1)) peer.revealWindow++;
    this.revealTo(peer);
  }

  peerClosed(key: number, now: number): void {
    this.now = now;
    const peer = this.peers.get(key);
    if (!peer) return;
    this.peers.delete(key);
    for (const index of [...peer.revealed.keys()]) this.unreveal(peer, index);
    this.releaseAll(peer);
    for (const pd of this.pieces.values()) if (pd.owner === key) pd.owner = undefined;
    for (let i = 0; i < this.space.numPieces; i++) {
      if (!hasBit(peer.bits, i)) continue;
      const left = (this.availability[i] ?? 1) - 1;
      this.availability[i] = left;
      if (left === 0) this.unavailableSince[i] = now;
      if (left === 0 && this.sentCopies[i] === 0 && this.piecesOut > 0) this.piecesOut--;
    }
    if (this.optimistic?.key === key) this.optimistic = undefined;
    if (this.closed) return;
    this.rechoke(now, true);
    this.fillAll();
    this.maybeWebseed(now);
  }

  // ---------------------------------------------------------------- local results

  /** A piece written and verified (from peers or the webseed). `goodLeaves`: when `needGoodLeaves` asked. */
  pieceVerified(index: number, now: number, goodLeaves?: readonly Uint8Array[]): void {
    this.now = now;
    this.pieces.delete(index);
    if (this.webseedInFlight.delete(index)) {
      this.bytesFromWebseed += this.space.pieceSize(index);
      this.webseedBackoffMs = 0;
    }
    const failed = this.failed.get(index);
    this.failed.delete(index);
    if (failed && goodLeaves) for (const name of guiltyByLeaves(failed.records, goodLeaves)) this.strike(name, now);
    if (this.have[index] === 0) {
      this.have[index] = 1;
      this.verified++;
      for (const peer of this.peers.values()) {
        // A peer that holds the piece needs no HAVE (half the messages of a swarm, most of its
        // CPU), except a seed that may be super-seeding: it counts copies by them.
        if (peer.open && (!hasBit(peer.bits, index) || peer.knownSeed)) this.actions.push({ type: 'have', peer: peer.key, index });
        if (hasBit(peer.bits, index)) {
          peer.wanted--;
          if (peer.wanted === 0) this.updateInterest(peer);
        }
      }
    }
    if (this.verified === this.space.numPieces) {
      this.onComplete();
      return;
    }
    this.fillAll();
    this.maybeWebseed(now);
  }

  /**
   * A piece failed verification. `failedLeaves`: the failed data's block hashes, when the write
   * action asked for them (`recordLeaves`).
   */
  pieceCorrupt(index: number, now: number, failedLeaves?: readonly Uint8Array[]): void {
    this.now = now;
    this.corruptPieces++;
    if (this.webseedInFlight.delete(index)) {
      this.actions.push({ type: 'piece-failed', index, senders: [WEBSEED_SENDER] });
      this.webseedFailedBackoff(now);
      this.fillAll();
      return;
    }
    const pd = this.pieces.get(index);
    if (!pd) return;
    this.pieces.delete(index);
    const contributors = pd.contributors();
    this.actions.push({ type: 'piece-failed', index, senders: [...contributors] });
    const sole = soleContributor(contributors);
    if (sole !== undefined) {
      this.strike(sole, now);
    } else {
      let failed = this.failed.get(index);
      if (!failed) {
        failed = { suspects: new Set(), records: [], hashesAsked: false };
        this.failed.set(index, failed);
      }
      for (const name of contributors) failed.suspects.add(name);
      for (let b = 0; b < pd.numBlocks && failed.records.length < MAX_RECORDS_PER_PIECE; b++) {
        const sender = pd.senders[b];
        const leaf = failedLeaves?.[b];
        if (sender !== undefined && leaf) failed.records.push({ block: b, sender, leaf } satisfies BlockRecord);
      }
      this.askBlockHashes(index, failed);
    }
    this.fillAll();
  }

  /**
   * The piece's block hashes, checked against its piece-layer hash by the adapter (undefined:
   * the peer refused or the answer did not check out).
   */
  blockHashes(index: number, leaves: readonly Uint8Array[] | undefined, now: number): void {
    this.now = now;
    const failed = this.failed.get(index);
    if (!failed) return;
    failed.hashesAsked = false;
    if (!leaves) return;
    for (const name of guiltyByLeaves(failed.records, leaves)) this.strike(name, now);
    // Blame is settled: the piece is fetched again like any other.
    this.failed.delete(index);
    this.fillAll();
  }

  /** Writing a piece failed (disk full, I/O error): downloading stops, serving goes on. */
  pieceWriteFailed(index: number, now: number): void {
    this.now = now;
    this.pieces.delete(index);
    this.webseedInFlight.delete(index);
    if (this.storeFailed) return;
    this.storeFailed = true;
    for (const peer of this.peers.values()) {
      this.cancelAll(peer);
      this.updateInterest(peer);
    }
  }

  /** A verified piece turned out damaged on disk (the store dropped it): fetch it again. */
  pieceLost(index: number, now: number): void {
    this.now = now;
    if (this.have[index] !== 1) return;
    this.have[index] = 0;
    this.verified--;
    this.completed = false;
    for (const peer of this.peers.values()) {
      if (!hasBit(peer.bits, index)) continue;
      peer.wanted++;
      if (peer.wanted === 1) this.updateInterest(peer);
    }
    this.fillAll();
  }

  setWebseedAvailable(available: boolean, now: number): void {
    this.now = now;
    this.webseedAvailable = available;
    this.maybeWebseed(now);
  }

  /** A webseed fetch failed (HTTP, timeout): the piece is wanted again; the origin backs off. */
  webseedFailed(index: number, now: number): void {
    this.now = now;
    if (!this.webseedInFlight.delete(index)) return;
    this.webseedFailedBackoff(now);
    this.fillAll();
  }

  /** The adapter's timer (about once a second): rates, snubs, rechoke, webseed, retries. */
  tick(now: number): void {
    this.now = now;
    if (this.closed) return;
    for (const peer of this.peers.values()) {
      peer.rejected.clear();
      if (peer.open && !peer.peerChoking && peer.outstanding.size > 0 && !peer.snubbed && now - peer.lastBlockAt >= this.config.snubMs) {
        peer.snubbed = true;
        this.releaseAll(peer);
      }
    }
    this.rechoke(now, false);
    this.fillAll();
    this.maybeWebseed(now);
  }

  /** Stops all activity; later inputs are ignored. */
  close(): void {
    this.closed = true;
  }

  // ---------------------------------------------------------------- downloading

  private get downloading(): boolean {
    return !this.closed && !this.completed && !this.storeFailed;
  }

  private advertisement(): Advertisement {
    if (this.verified === 0) return 'none';
    if (this.verified === this.space.numPieces) return 'all';
    const bits = new Uint8Array(bitfieldBytes(this.space.numPieces));
    for (let i = 0; i < this.space.numPieces; i++) if (this.have[i] === 1) setBit(bits, i);
    return bits;
  }

  /** Records that a peer holds a piece; false when it was known already. */
  private markPeerHas(peer: Peer, index: number): boolean {
    if (hasBit(peer.bits, index)) return false;
    setBit(peer.bits, index);
    peer.count++;
    const before = this.availability[index] ?? 0;
    this.availability[index] = before + 1;
    if (before === 0 && this.sentCopies[index] === 0) this.gainPieceOut();
    if (this.have[index] === 0) peer.wanted++;
    return true;
  }

  private updateInterest(peer: Peer): void {
    if (!peer.open) return;
    const want = this.downloading && peer.wanted > 0;
    if (want === peer.amInterested) return;
    peer.amInterested = want;
    this.actions.push({ type: want ? 'interested' : 'not-interested', peer: peer.key });
  }

  private queueDepth(peer: Peer): number {
    return this.policies.pipeline.queueDepth({ downloadRate: peer.down.rate(this.now), peerReqq: peer.reqq, snubbed: peer.snubbed });
  }

  /** Tops a peer's requests up once a quarter of its queue is free: several requests per write. */
  private refill(peer: Peer): void {
    const depth = this.queueDepth(peer);
    if (depth - peer.outstanding.size >= Math.max(1, depth >> 2)) this.fill(peer);
  }

  private fillAll(): void {
    for (const peer of this.peers.values()) this.fill(peer);
  }

  /** Requests blocks from one peer up to its queue depth; see the class comment for the order. */
  private fill(peer: Peer): void {
    if (!this.downloading || !peer.open || peer.peerChoking || peer.wanted === 0) return;
    let budget = this.queueDepth(peer) - peer.outstanding.size;
    if (budget <= 0) return;
    const startedIdle = peer.outstanding.size === 0;

    // 1. Pieces in flight, partial ones first.
    for (const pd of this.pieces.values()) {
      if (budget <= 0) break;
      if (pd.writing || pd.unrequested === 0 || !hasBit(peer.bits, pd.index) || peer.rejected.has(pd.index)) continue;
      if (!this.mayFetch(peer, pd)) continue;
      budget -= this.requestBlocks(peer, pd, budget, false);
    }

    // 2. Re-fetches of failed pieces, preferring peers above suspicion.
    for (const [index, failed] of this.failed) {
      if (budget <= 0 || this.pieces.size >= this.config.maxPiecesInFlight) break;
      if (this.pieces.has(index) || this.webseedInFlight.has(index) || this.have[index] === 1) continue;
      if (!hasBit(peer.bits, index) || peer.rejected.has(index)) continue;
      if (!mayRetryFrom(peer.name, failed.suspects, this.usableHolders(index))) continue;
      const pd = this.startPiece(index, true);
      pd.owner = peer.key;
      budget -= this.requestBlocks(peer, pd, budget, false);
    }

    // 3. New pieces chosen by the picker (which scans every piece: skipped when all the peer has
    // that we lack is claimed already).
    while (budget > 0 && this.pieces.size < this.config.maxPiecesInFlight && this.holdsUnclaimed(peer)) {
      const index = this.policies.picker.pick({
        numPieces: this.space.numPieces,
        verifiedPieces: this.verified,
        random: this.random,
        availability: (i) => this.availability[i] ?? 0,
        isCandidate: (i) =>
          this.have[i] === 0 && hasBit(peer.bits, i) && !this.pieces.has(i) && !this.webseedInFlight.has(i) && !this.failed.has(i) && !peer.rejected.has(i),
      });
      if (index === undefined) break;
      budget -= this.requestBlocks(peer, this.startPiece(index, false), budget, false);
    }

    // 4. End game: every missing piece is in flight; duplicate outstanding blocks.
    const missing = this.space.numPieces - this.verified;
    if (budget > 0 && missing <= this.pieces.size + this.webseedInFlight.size) {
      for (const pd of this.pieces.values()) {
        if (budget <= 0) break;
        if (pd.writing || pd.exclusive || !hasBit(peer.bits, pd.index) || peer.rejected.has(pd.index)) continue;
        budget -= this.requestBlocks(peer, pd, budget, true);
      }
    }
    if (startedIdle && peer.outstanding.size > 0) peer.lastBlockAt = this.now;
  }

  /** The peer may hold a piece we lack that nobody fetches (peer or webseed) and whose blame is settled. */
  private holdsUnclaimed(peer: Peer): boolean {
    let claimed = 0;
    for (const index of this.pieces.keys()) if (hasBit(peer.bits, index)) claimed++;
    for (const index of this.webseedInFlight) if (!this.pieces.has(index) && hasBit(peer.bits, index)) claimed++;
    for (const index of this.failed.keys()) {
      if (!this.pieces.has(index) && !this.webseedInFlight.has(index) && hasBit(peer.bits, index)) claimed++;
    }
    return peer.wanted > claimed;
  }

  private requestBlocks(peer: Peer, pd: PieceDownload, budget: number, duplicate: boolean): number {
    let sent = 0;
    for (let b = 0; b < pd.numBlocks && sent < budget; b++) {
      const state = pd.state[b];
      if (duplicate) {
        const requesters = pd.requesters[b];
        if (state !== BlockState.Requested || !requesters || requesters.length >= this.config.endGameRequesters || requesters.includes(peer.key)) continue;
        // A block still on its way in good time is not worth a second copy.
        if (this.now - (pd.requestedAt[b] as number) < this.config.endGameDelayMs) continue;
      } else {
        if (pd.unrequested === 0) break;
        if (state !== BlockState.Missing) continue;
      }
      pd.markRequested(b, peer.key, this.now);
      peer.outstanding.add(this.space.blockKey(pd.index, b));
      this.actions.push({ type: 'request', peer: peer.key, index: pd.index, begin: b * BLOCK_SIZE, length: this.space.blockLength(pd.index, b) });
      sent++;
    }
    return sent;
  }

  /** Exclusive re-fetches go to their owner; an orphaned one is adopted under the retry rule. */
  private mayFetch(peer: Peer, pd: PieceDownload): boolean {
    if (!pd.exclusive || pd.owner === peer.key) return true;
    if (pd.owner !== undefined && this.peers.has(pd.owner)) return false;
    const failed = this.failed.get(pd.index);
    if (failed && !mayRetryFrom(peer.name, failed.suspects, this.usableHolders(pd.index))) return false;
    pd.owner = peer.key;
    return true;
  }

  private *usableHolders(index: number): Iterable<string> {
    for (const p of this.peers.values()) if (p.open && !p.peerChoking && hasBit(p.bits, index)) yield p.name;
  }

  private startPiece(index: number, exclusive: boolean): PieceDownload {
    const pd = new PieceDownload(index, this.space.blockCount(index), exclusive);
    this.pieces.set(index, pd);
    return pd;
  }

  /** Downloading stopped: cancel what the peer still owes us so it does not send it for nothing. */
  private cancelAll(peer: Peer): void {
    if (peer.open) {
      for (const key of peer.outstanding) {
        const index = this.space.pieceOfKey(key);
        const block = key - index * this.space.blocksPerPiece;
        this.actions.push({ type: 'cancel', peer: peer.key, index, begin: block * BLOCK_SIZE, length: this.space.blockLength(index, block) });
      }
    }
    this.releaseAll(peer);
  }

  private releaseAll(peer: Peer): void {
    for (const key of peer.outstanding) {
      const index = this.space.pieceOfKey(key);
      this.pieces.get(index)?.release(key - index * this.space.blocksPerPiece, peer.key);
    }
    peer.outstanding.clear();
  }

  private startWrite(pd: PieceDownload): void {
    pd.writing = true;
    const recordLeaves = pd.contributors().size > 1;
    const failed = this.failed.get(pd.index);
    this.actions.push({ type: 'write', index: pd.index, recordLeaves, needGoodLeaves: failed !== undefined && failed.records.length > 0 });
  }

  private askBlockHashes(index: number, failed: FailedPiece): void {
    if (failed.hashesAsked || failed.records.length === 0) return;
    let choice: Peer | undefined;
    for (const p of this.peers.values()) {
      if (!p.open || !hasBit(p.bits, index)) continue;
      if (!choice || (failed.suspects.has(choice.name) && !failed.suspects.has(p.name))) choice = p;
    }
    if (!choice) return;
    failed.hashesAsked = true;
    this.actions.push({ type: 'request-block-hashes', peer: choice.key, index });
  }

  private strike(name: string, now: number): void {
    const strikes = (this.strikes.get(name) ?? 0) + 1;
    this.strikes.set(name, strikes);
    if (strikes < this.config.strikesToBan || this.banned.has(name)) return;
    this.banned.add(name);
    for (const pd of this.pieces.values()) if (!pd.writing) pd.discardFrom(name);
    for (const peer of [...this.peers.values()]) {
      if (peer.name !== name) continue;
      this.actions.push({ type: 'close', peer: peer.key, code: 'PEER_BANNED', message: `${name} sent data that failed verification ${strikes} times` });
      this.peerClosed(peer.key, now);
    }
    this.actions.push({ type: 'banned', name, strikes });
  }

  private onComplete(): void {
    if (this.completed) return;
    this.completed = true;
    this.failed.clear();
    for (const peer of this.peers.values()) {
      this.cancelAll(peer);
      this.updateInterest(peer);
    }
    this.pieces.clear();
    this.actions.push({ type: 'complete' });
  }

  // ---------------------------------------------------------------- webseed

  private webseedFailedBackoff(now: number): void {
    this.webseedBackoffMs = Math.min(WEBSEED_BACKOFF_MAX_MS, Math.max(WEBSEED_BACKOFF_MIN_MS, this.webseedBackoffMs * 2));
    this.webseedBackoffUntil = now + this.webseedBackoffMs;
  }

  private maybeWebseed(now: number): void {
    if (!this.webseedAvailable || !this.downloading || now < this.webseedBackoffUntil) return;
    if (this.webseedInFlight.size >= this.config.webseedConcurrency) return;
    let open = 0;
    let holding = false;
    let peerRate = 0;
    let hiddenSeeds = 0;
    for (const p of this.peers.values()) {
      if (!p.open) continue;
      open++;
      if (p.wanted > 0 || p.knownSeed) holding = true;
      if (p.knownSeed) hiddenSeeds++;
      peerRate += p.down.rate(now);
    }
    if (holding) this.peerlessSince = undefined;
    else this.peerlessSince ??= now;
    const slowThreshold = this.config.webseedSlowBytesPerSecond;
    if (slowThreshold > 0 && open > 0 && peerRate < slowThreshold) this.slowSince ??= now;
    else this.slowSince = undefined;

    while (this.webseedInFlight.size < this.config.webseedConcurrency) {
      const decision = this.policies.webseed.next({
        now,
        numPieces: this.space.numPieces,
        connectedPeers: open,
        inFlight: this.webseedInFlight.size,
        peerlessFor: this.peerlessSince === undefined ? undefined : now - this.peerlessSince,
        peerRate,
        slowFor: this.slowSince === undefined ? undefined : now - this.slowSince,
        random: this.random,
        isWanted: (i) => this.have[i] === 0 && !this.pieces.has(i) && !this.webseedInFlight.has(i),
        availability: (i) => (this.availability[i] ?? 0) + hiddenSeeds,
        announcedBy: (i) => this.availability[i] ?? 0,
        unavailableFor: (i) => ((this.availability[i] ?? 0) + hiddenSeeds > 0 ? 0 : now - (this.unavailableSince[i] as number)),
        isResponsible: (i) => this.responsibleFor(i) === undefined,
        responsibleQuietFor: (i) => {
          const peer = this.responsibleFor(i);
          return peer === undefined ? 0 : now - peer.lastHaveAt;
        },
      });
      if (!decision) return;
      this.webseedInFlight.add(decision.index);
      this.webseedFetches++;
      this.actions.push({ type: 'webseed-fetch', index: decision.index, reason: decision.reason });
    }
  }

  /**
   * Among us and the open peers lacking the piece, the one with the lowest rendezvous score: the
   * peer expected to fetch it from the origin (undefined: we are).
   */
  private responsibleFor(index: number): Peer | undefined {
    let bestScore = rendezvous(this.selfHash, index);
    let bestHash = this.selfHash;
    let best: Peer | undefined;
    for (const p of this.peers.values()) {
      if (!p.open || hasBit(p.bits, index)) continue;
      const score = rendezvous(p.nameHash, index);
      if (score < bestScore || (score === bestScore && p.nameHash < bestHash)) {
        bestScore = score;
        bestHash = p.nameHash;
        best = p;
      }
    }
    return best;
  }

  // ---------------------------------------------------------------- uploading

  private gainPieceOut(): void {
    this.piecesOut++;
    if (this.superSeeding && this.piecesOut >= this.space.numPieces) this.endSuperSeeding();
  }

  private countCopy(index: number): void {
    const before = this.sentCopies[index] ?? 0;
    this.sentCopies[index] = before + 1;
    if (before === 0 && this.availability[index] === 0) this.gainPieceOut();
  }

  /** Super-seeding: keep `revealAhead` pieces revealed to the peer, least-copied first. */
  private revealTo(peer: Peer): void {
    if (!this.superSeeding || !peer.superSeeded || !peer.open) return;
    const originShares = this.webseedAvailable && this.policies.webseed.sharesWithOrigin;
    while (peer.revealed.size < peer.revealWindow) {
      const index = this.policies.seeding.nextReveal({
        numPieces: this.space.numPieces,
        random: this.random,
        // A piece lost on disk (pieceLost) cannot be served: revealing it would strand the peer.
        isExcluded: (i) => this.have[i] !== 1 || hasBit(peer.bits, i) || peer.revealed.has(i),
        // Pieces on their way to another peer count too, so the next peer is offered another.
        // One only revealed to choked peers is not on its way: it counts a fraction, below a
        // copy, so that it goes before copied pieces yet choked peers are told different ones.
        copies: (i) => {
          const flowing = this.flowingReveals[i] ?? 0;
          const stalled = (this.revealedCount[i] ?? 0) - flowing;
          return (this.sentCopies[i] ?? 0) + (this.availability[i] ?? 0) + flowing + stalled / (this.peers.size + 1);
        },
        deferred: (i) => originShares && inOriginShare(i),
      });
      if (index === undefined) return;
      peer.revealed.set(index, 0);
      this.revealedCount[index] = (this.revealedCount[index] ?? 0) + 1;
      if (!peer.amChoking) this.flowingReveals[index] = (this.flowingReveals[index] ?? 0) + 1;
      this.actions.push({ type: 'have', peer: peer.key, index });
    }
  }

  /** Every piece is out once: announce everything to everybody from now on. */
  private endSuperSeeding(): void {
    this.superSeeding = false;
    for (const peer of this.peers.values()) {
      if (!peer.superSeeded || !peer.open) continue;
      for (let i = 0; i < this.space.numPieces; i++) {
        if (!hasBit(peer.bits, i) && !peer.revealed.has(i)) this.actions.push({ type: 'have', peer: peer.key, index: i });
      }
      for (const index of [...peer.revealed.keys()]) this.unreveal(peer, index);
    }
  }

  /** Takes a piece off the peer's revealed list; false when it was not on it. */
  private unreveal(peer: Peer, index: number): boolean {
    if (!peer.revealed.delete(index)) return false;
    this.revealedCount[index] = (this.revealedCount[index] ?? 1) - 1;
    if (!peer.amChoking) this.flowingReveals[index] = (this.flowingReveals[index] ?? 1) - 1;
    return true;
  }

  /** A peer's reveals start (unchoked) or stop (choked) flowing. */
  private countFlowing(peer: Peer, delta: 1 | -1): void {
    for (const index of peer.revealed.keys()) this.flowingReveals[index] = (this.flowingReveals[index] ?? 0) + delta;
  }

  /**
   * Between rounds a rechoke only takes back the slots of uninterested peers and gives free slots
   * to waiting peers: anything to do? (It runs on every change of interest.)
   */
  private mayRechokeBetweenRounds(): boolean {
    let unchoked = 0;
    let waiting = false;
    for (const p of this.peers.values()) {
      if (!p.open) continue;
      if (p.amChoking) {
        if (p.peerInterested) waiting = true;
        continue;
      }
      if (!p.peerInterested) return true;
      unchoked++;
    }
    return waiting && unchoked <= this.config.unchokeSlots;
  }

  private rechoke(now: number, force: boolean): void {
    if (!force && now - this.lastRechoke < this.config.rechokeMs) return;
    // Only full rounds restart the period: events that force a rechoke come all the time.
    if (!force) this.lastRechoke = now;
    else if (!this.mayRechokeBetweenRounds()) return;
    const open = [...this.peers.values()].filter((p) => p.open);
    const decision = this.policies.choker.choose(
      open.map((p) => ({
        key: p.key,
        interested: p.peerInterested,
        unchoked: !p.amChoking,
        snubbed: p.snubbed,
        downloadRate: p.down.rate(now),
        uploadRate: p.up.rate(now),
        unchokedAt: p.unchokedAt,
      })),
      { seeding: this.completed, slots: this.config.unchokeSlots, now, random: this.random, optimistic: this.optimistic },
    );
    this.optimistic = decision.optimistic;
    // Between rounds (a peer came or changed interest) only free slots are filled, no churn; a
    // peer that lost interest gives its slot back first, so that a waiting peer takes it.
    let unchoked = open.filter((p) => !p.amChoking).length;
    const order = force ? [...open.filter((p) => !p.amChoking), ...open.filter((p) => p.amChoking)] : open;
    for (const peer of order) {
      const unchoke = decision.unchoke.has(peer.key);
      if (unchoke === !peer.amChoking) continue;
      if (force && (unchoke ? unchoked > this.config.unchokeSlots : peer.peerInterested)) continue;
      unchoked += unchoke ? 1 : -1;
      peer.amChoking = !unchoke;
      this.countFlowing(peer, unchoke ? 1 : -1);
      if (unchoke) peer.unchokedAt = now;
      this.actions.push({ type: unchoke ? 'unchoke' : 'choke', peer: peer.key });
    }
  }
}
