import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { BLOCK_SIZE, type Metainfo, ShoalError, truncatedInfoHash } from '@shoal/torrent';
import {
  type BlockRequest,
  type ConnectionEvent,
  type ConnectionLimits,
  type HashRequestHeader,
  PeerConnection,
  type PieceMessage,
  type WireError,
  type WireMessage,
} from '@shoal/wire';
import { SessionPeerError } from './errors';
import { PackageGeometry } from './geometry';
import { answerHashRequest } from './hash-service';
import { PeerLink, type PeerLinkHooks } from './peer-link';
import { BlockState, PieceDownload } from './piece-download';
import {
  type BlockRecord,
  DEFAULT_MAX_UNCHOKED,
  END_GAME_MAX_REQUESTERS,
  STRIKES_TO_BAN,
  blameAfterVerified,
  blameCorruptPiece,
  blockDigest,
  chooseUnchoked,
  inEndGame,
  mayRetryFrom,
  pickPiece,
  refillBatch,
  requestBudget,
} from './policy';

/**
 * What the session needs from the package store (PackageStore satisfies it). `have()` is read
 * once, at construction; from then on the session tracks verified pieces from `writePiece`.
 */
export interface SessionStore {
  have(): { get(index: number): boolean };
  writePiece(index: number, data: Uint8Array): Promise<'verified' | 'corrupt'>;
  readBlock(index: number, begin: number, length: number): Promise<Buffer>;
  leafHashes(index: number): Promise<Buffer>;
}

export interface PackageSessionOptions {
  metainfo: Metainfo;
  store: SessionStore;
  /** Our 20-byte peer id. */
  peerId: Buffer;
  /** Milliseconds on a monotonic clock. Default performance.now. */
  clock?: () => number;
  /** Uniform in [0, 1) (piece picking). Default Math.random. */
  random?: () => number;
  /** Connections at once; more are closed at attach (PEER_LIMIT). Default 50. */
  maxPeers?: number;
  /** Block requests outstanding per peer (capped by the peer's `reqq`). Default 32. */
  requestQueueDepth?: number;
  /** Pieces assembled in memory at once, per session. Default 16. */
  maxPiecesInFlight?: number;
  /** Peers unchoked at once. Default 8. */
  maxUnchoked?: number;
  /** Period of the session timer (wire keep-alives and timeouts, rechoke, request retries). Default 1000. */
  tickMs?: number;
  /** Disk reads in progress per peer while serving. Default 8. */
  maxReadsPerPeer?: number;
  /** PeerConnection limits (timeouts, our `reqq`, ...). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Sent as `v` in the extended handshake. */
  clientVersion?: string;
}

export interface SessionProgress {
  verifiedPieces: number;
  totalPieces: number;
  /** Piece payload received (duplicates included). */
  bytesDownloaded: number;
  /** Piece payload sent. */
  bytesUploaded: number;
  /** Connected peers (handshaking ones included). */
  peers: number;
  /** Pieces that failed verification. */
  corruptPieces: number;
}

export interface PeerStats {
  peerName: string;
  role: 'initiator' | 'acceptor';
  phase: 'handshake' | 'open' | 'closed';
  amChoking: boolean;
  amInterested: boolean;
  peerChoking: boolean;
  peerInterested: boolean;
  peerPieces: number;
  outstandingRequests: number;
  queuedUploads: number;
  bytesDownloaded: number;
  bytesUploaded: number;
  strikes: number;
}

export interface PieceCorruptEvent {
  index: number;
  /** Names of the peers that supplied a block of the failed piece. */
  peers: string[];
}

export interface PeerClosedEvent {
  peerName: string;
  reason: WireError;
}

/** Bad options given to the session (a local programming error, thrown by the constructor). */
export class SessionError extends ShoalError {
  constructor(message: string) {
    super('SESSION_BAD_OPTION', message);
  }
}

/** A piece that failed verification: who contributed, and (mixed pieces) what each block was. */
interface Retry {
  suspects: Set<string>;
  records: BlockRecord[];
}

/** Block records kept per failed piece, for blame once it verifies. */
const MAX_RECORDS_PER_PIECE = 4 * 1024;

const DEFAULTS = {
  maxPeers: 50,
  requestQueueDepth: 32,
  maxPiecesInFlight: 16,
  maxUnchoked: DEFAULT_MAX_UNCHOKED,
  tickMs: 1000,
  maxReadsPerPeer: 8,
};

/**
 * The download / upload engine of one package on one agent: joins admitted TLS sockets to sans-IO
 * PeerConnections and the package store.
 *
 * - Advertises verified pieces (have all / bitfield / have none, then HAVE as pieces verify).
 * - Interested in a peer while it has a piece we lack; unchokes interested peers up to
 *   `maxUnchoked` (fleet peers are trusted).
 * - Requests 16 KiB blocks: partial pieces first, then re-fetches of failed pieces (preferring
 *   peers that did not supply them), then random new pieces; up to `requestQueueDepth` per peer
 *   (and the peer's `reqq`); one requester per block except in end game (every missing piece in
 *   flight), where idle peers duplicate outstanding blocks and the losers are cancelled.
 * - Assembles pieces in memory (at most `maxPiecesInFlight`) and hands each whole piece to
 *   `store.writePiece`: verified -> HAVE to every peer; corrupt -> dropped, blamed, re-fetched.
 * - Blame: a sole contributor of a corrupt piece gets a strike at once; for mixed pieces each
 *   block's hash is kept and compared with the good data once the piece verifies, so only peers
 *   whose blocks were wrong get a strike. At STRIKES_TO_BAN strikes a peer is closed
 *   (SessionPeerError PEER_BANNED) and refused on later attaches; its blocks in pieces still
 *   being assembled are dropped.
 * - Serves requests for verified pieces from `store.readBlock`, at most `maxReadsPerPeer` reads
 *   at once per peer, and none while the socket's buffer is full (write() returned false) until
 *   'drain'.
 * - Choke, reject and close put the affected blocks back in the queue.
 * - On completion: emits 'complete', cancels leftover requests, turns not interested and keeps
 *   serving (the daemon calls store.finish()).
 *
 * Peer misbehaviour closes that peer only: nothing thrown escapes a socket handler.
 *
 * Events: 'progress' (SessionProgress), 'piece-verified' (index), 'piece-corrupt'
 * (PieceCorruptEvent), 'complete', 'peer-closed' (PeerClosedEvent), 'peer-banned'
 * ({ peerName, strikes }), 'extension' ({ peerName, name, payload }), 'store-error' (Error: a
 * write failed; downloading stops, serving goes on), 'session-error' (Error: a listener or
 * internal failure that was contained).
 */
export class PackageSession extends EventEmitter {
  readonly geometry: PackageGeometry;
  private readonly store: SessionStore;
  private readonly infoHash20: Buffer;
  private readonly peerId: Buffer;
  private readonly clock: () => number;
  private readonly random: () => number;
  private readonly maxPeers: number;
  private readonly queueDepth: number;
  private readonly maxPiecesInFlight: number;
  private readonly maxUnchoked: number;
  private readonly maxReadsPerPeer: number;
  private readonly connectionLimits: Partial<ConnectionLimits> | undefined;
  private readonly clientVersion: string | undefined;

  /** 1 = verified, as far as the session knows. */
  private readonly have: Uint8Array;
  private verified = 0;
  private readonly links = new Map<number, PeerLink>();
  private nextLinkId = 1;
  private readonly pieces = new Map<number, PieceDownload<PeerLink>>();
  private readonly retries = new Map<number, Retry>();
  private readonly strikes = new Map<string, number>();
  private readonly banned = new Set<string>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private readonly hooks: PeerLinkHooks;
  private closing = false;
  private closed: Promise<void> | undefined;
  private completed: boolean;
  private storeFailure: Error | undefined;
  private bytesDownloaded = 0;
  private bytesUploaded = 0;
  private corruptPieces = 0;

  constructor(options: PackageSessionOptions) {
    super();
    const { metainfo, store } = options;
    if (!metainfo || !Buffer.isBuffer(metainfo.infoHash) || metainfo.infoHash.length !== 32 || !(metainfo.numPieces > 0)) {
      throw new SessionError('metainfo must be parsed v2 metainfo with at least one piece');
    }
    if (!store || typeof store.writePiece !== 'function' || typeof store.readBlock !== 'function') {
      throw new SessionError('store must be an open PackageStore');
    }
    if (!Buffer.isBuffer(options.peerId) || options.peerId.length !== 20) throw new SessionError('peerId must be 20 bytes');
    const positive = (value: number | undefined, name: string, fallback: number): number => {
      if (value === undefined) return fallback;
      if (!Number.isSafeInteger(value) || value < 1) throw new SessionError(`${name} must be a positive integer, not ${String(value)}`);
      return value;
    };
    this.maxPeers = positive(options.maxPeers, 'maxPeers', DEFAULTS.maxPeers);
    this.queueDepth = positive(options.requestQueueDepth, 'requestQueueDepth', DEFAULTS.requestQueueDepth);
    this.maxPiecesInFlight = positive(options.maxPiecesInFlight, 'maxPiecesInFlight', DEFAULTS.maxPiecesInFlight);
    this.maxUnchoked = positive(options.maxUnchoked, 'maxUnchoked', DEFAULTS.maxUnchoked);
    this.maxReadsPerPeer = positive(options.maxReadsPerPeer, 'maxReadsPerPeer', DEFAULTS.maxReadsPerPeer);
    const tickMs = positive(options.tickMs, 'tickMs', DEFAULTS.tickMs);

    this.geometry = new PackageGeometry(metainfo);
    this.store = store;
    this.infoHash20 = Buffer.from(truncatedInfoHash(metainfo.infoHash));
    this.peerId = Buffer.from(options.peerId);
    this.clock = options.clock ?? (() => performance.now());
    this.random = options.random ?? Math.random;
    this.connectionLimits = options.connectionLimits;
    this.clientVersion = options.clientVersion;

    const n = this.geometry.numPieces;
    this.have = new Uint8Array(n);
    const stored = store.have();
    for (let i = 0; i < n; i++) {
      if (stored.get(i)) {
        this.have[i] = 1;
        this.verified++;
      }
    }
    this.completed = this.verified === n;
    this.hooks = {
      event: (link, event) => this.onEvent(link, event),
      writable: (link) => this.serve(link),
    };
    this.timer = setInterval(() => this.contain(() => this.onTick()), tickMs);
    this.timer.unref();
  }

  // ---------------------------------------------------------------- public API

  /**
   * Takes an admitted TLS socket for this package (from PeerServer 'connection' or
   * connectToPeer). `peerName` is the peer's agent id, used for blame and bans.
   */
  attach(socket: TLSSocket, role: 'initiator' | 'acceptor', peerName: string): void {
    const refuse = (reason: SessionPeerError): void => {
      socket.destroy();
      this.safeEmit('peer-closed', { peerName, reason } satisfies PeerClosedEvent);
    };
    if (this.closing) return refuse(new SessionPeerError('SESSION_CLOSED', 'the session is closed'));
    if (this.banned.has(peerName)) return refuse(new SessionPeerError('PEER_BANNED', `${peerName} is banned from this package (corrupt data)`));
    if (this.links.size >= this.maxPeers) return refuse(new SessionPeerError('PEER_LIMIT', `already ${this.links.size} peers (maxPeers)`));
    if (socket.destroyed) return refuse(new SessionPeerError('SOCKET_ERROR', 'socket already closed'));
    const conn = new PeerConnection({
      infoHash20: this.infoHash20,
      localPeerId: this.peerId,
      numPieces: this.geometry.numPieces,
      pieceLength: this.geometry.pieceLength,
      totalLength: this.geometry.wireTotalLength,
      role,
      now: this.clock(),
      have: this.availability(),
      ...(this.connectionLimits ? { limits: this.connectionLimits } : {}),
      ...(this.clientVersion !== undefined ? { clientVersion: this.clientVersion } : {}),
    });
    const link = new PeerLink(this.nextLinkId++, peerName, socket, conn, this.clock, this.hooks);
    this.links.set(link.id, link);
    link.start();
  }

  get progress(): SessionProgress {
    return {
      verifiedPieces: this.verified,
      totalPieces: this.geometry.numPieces,
      bytesDownloaded: this.bytesDownloaded,
      bytesUploaded: this.bytesUploaded,
      peers: this.links.size,
      corruptPieces: this.corruptPieces,
    };
  }

  isComplete(): boolean {
    return this.completed;
  }

  /** Per-peer state, for status pages and tests. */
  peerStats(): PeerStats[] {
    return [...this.links.values()].map((l) => ({
      peerName: l.name,
      role: l.conn.role,
      phase: l.conn.phase,
      amChoking: l.conn.amChoking,
      amInterested: l.conn.amInterested,
      peerChoking: l.conn.peerChoking,
      peerInterested: l.conn.peerInterested,
      peerPieces: l.conn.peerPieceCount,
      outstandingRequests: l.outstanding.size,
      queuedUploads: l.serveQueue.length,
      bytesDownloaded: l.bytesDown,
      bytesUploaded: l.bytesUp,
      strikes: this.strikes.get(l.name) ?? 0,
    }));
  }

  /** Strikes against a peer name (corrupt data it sent). */
  strikesOf(peerName: string): number {
    return this.strikes.get(peerName) ?? 0;
  }

  isBanned(peerName: string): boolean {
    return this.banned.has(peerName);
  }

  /**
   * Closes every peer connection and stops the timer; resolves once pending disk reads and piece
   * writes have settled and the sockets are closed (or a short grace period passed). The store is
   * left open: it belongs to the caller.
   */
  close(): Promise<void> {
    this.closing = true;
    this.closed ??= (async () => {
      clearInterval(this.timer);
      const links = [...this.links.values()];
      for (const link of links) link.close(new SessionPeerError('SESSION_CLOSED', 'the session is closing'));
      await Promise.allSettled([...this.pending, ...links.map((l) => l.hashChain)]);
      let timeout: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled(links.map((l) => l.socketClosed)),
        new Promise<void>((resolve) => {
          timeout = setTimeout(resolve, 1500);
        }),
      ]);
      clearTimeout(timeout);
    })();
    return this.closed;
  }

  // ---------------------------------------------------------------- events from peers

  private onEvent(link: PeerLink, event: ConnectionEvent): void {
    switch (event.type) {
      case 'handshake':
        return;
      case 'extended-handshake':
        // The peer's reqq may have grown.
        this.fill(link);
        return;
      case 'extension':
        this.safeEmit('extension', { peerName: link.name, name: event.name, payload: event.payload });
        return;
      case 'message':
        this.onMessage(link, event.message);
        return;
      case 'closed':
        this.onClosed(link, event.reason);
        return;
    }
  }

  private onMessage(link: PeerLink, msg: WireMessage): void {
    switch (msg.type) {
      case 'bitfield':
      case 'have-all':
        link.peerPieces.set(link.conn.peerBitfield());
        this.recountWanted(link);
        this.updateInterest(link);
        this.fill(link);
        return;
      case 'have-none':
        return;
      case 'have':
        this.onHave(link, msg.index);
        return;
      case 'unchoke':
        link.rejected.clear();
        this.fill(link);
        return;
      case 'choke':
        // With the fast extension the peer rejects what it will not send; either way those blocks
        // are free for other peers now (a late piece for one is still taken if still needed).
        this.releaseAll(link);
        this.fillAll();
        return;
      case 'interested':
      case 'not-interested':
        this.rechoke();
        return;
      case 'request':
        link.serveQueue.push({ index: msg.index, begin: msg.begin, length: msg.length });
        this.serve(link);
        return;
      case 'cancel': {
        const at = link.serveQueue.findIndex((r) => r.index === msg.index && r.begin === msg.begin && r.length === msg.length);
        if (at >= 0) link.serveQueue.splice(at, 1);
        return;
      }
      case 'piece':
        this.onBlock(link, msg);
        return;
      case 'reject':
        this.onReject(link, msg);
        return;
      case 'hash-request':
        this.onHashRequest(link, msg);
        return;
      default:
        // keep-alive, port, suggest, allowed-fast, hashes / hash reject (we ask for none): nothing to do.
        return;
    }
  }

  private onHave(link: PeerLink, index: number): void {
    const byte = index >> 3;
    const mask = 0x80 >> (index & 7);
    if (((link.peerPieces[byte] ?? 0) & mask) !== 0) return;
    link.peerPieces[byte] = (link.peerPieces[byte] ?? 0) | mask;
    if (this.have[index] === 1) return;
    link.wanted++;
    if (link.wanted === 1) this.updateInterest(link);
    this.fill(link);
  }

  private onBlock(link: PeerLink, msg: PieceMessage): void {
    const { index, begin, block } = msg;
    link.bytesDown += block.length;
    this.bytesDownloaded += block.length;
    const b = begin / BLOCK_SIZE;
    const aligned = Number.isInteger(b);
    if (aligned) link.outstanding.delete(this.geometry.blockKey(index, b));
    const pd = this.pieces.get(index);
    if (
      !aligned ||
      !pd ||
      pd.writing ||
      b >= pd.numBlocks ||
      block.length !== pd.blockLength(b) ||
      // A re-fetch takes data from its owner only, so blame stays exact.
      (pd.exclusive && pd.owner !== undefined && pd.owner !== link)
    ) {
      if (aligned && pd) pd.release(b, link);
      this.fill(link);
      return;
    }
    const losers = pd.receive(b, block, link.name, link);
    if (losers && losers.length > 0) {
      const now = this.clock();
      const key = this.geometry.blockKey(index, b);
      for (const other of losers) {
        if (!other.outstanding.delete(key)) continue;
        other.conn.cancel({ index, begin, length: block.length }, now);
        other.flush();
      }
    }
    if (pd.complete) this.writePiece(pd);
    // Refill in batches (one write, one TLS record for several requests), not one per block.
    if (requestBudget(this.queueDepth, link.conn.peerRequestQueueLimit, link.outstanding.size) >= refillBatch(this.queueDepth)) this.fill(link);
  }

  private onReject(link: PeerLink, r: BlockRequest): void {
    const b = r.begin / BLOCK_SIZE;
    if (Number.isInteger(b) && link.outstanding.delete(this.geometry.blockKey(r.index, b))) {
      this.pieces.get(r.index)?.release(b, link);
    }
    link.rejected.add(r.index);
    this.fillAll();
  }

  private onClosed(link: PeerLink, reason: WireError): void {
    if (!this.links.delete(link.id)) return;
    this.releaseAll(link);
    link.serveQueue.length = 0;
    this.safeEmit('peer-closed', { peerName: link.name, reason } satisfies PeerClosedEvent);
    if (this.closing) return;
    this.rechoke();
    this.fillAll();
    this.safeEmit('progress', this.progress);
  }

  private onHashRequest(link: PeerLink, msg: HashRequestHeader): void {
    const request: HashRequestHeader = {
      piecesRoot: Buffer.from(msg.piecesRoot),
      baseLayer: msg.baseLayer,
      index: msg.index,
      length: msg.length,
      proofLayers: msg.proofLayers,
    };
    const answer = (): Promise<void> =>
      answerHashRequest(this.geometry, request, (piece) => (this.have[piece] === 1 ? this.leafHashes(piece) : undefined)).then((hashes) =>
        this.contain(() => {
          const now = this.clock();
          if (hashes) link.conn.hashes(request, hashes, now);
          else link.conn.hashReject(request, now);
          link.flush();
        }),
      );
    link.hashChain = link.hashChain.then(answer, answer);
  }

  // ---------------------------------------------------------------- downloading

  private get downloading(): boolean {
    return !this.closing && !this.completed && !this.storeFailure;
  }

  private recountWanted(link: PeerLink): void {
    let wanted = 0;
    for (let i = 0; i < this.geometry.numPieces; i++) if (this.have[i] === 0 && link.peerHas(i)) wanted++;
    link.wanted = wanted;
  }

  private updateInterest(link: PeerLink): void {
    if (link.conn.phase !== 'open') return;
    const now = this.clock();
    if (this.downloading && link.wanted > 0) link.conn.interested(now);
    else link.conn.notInterested(now);
  }

  /** Requests blocks from one peer up to its budget; see the class comment for the order. */
  private fill(link: PeerLink): void {
    const conn = link.conn;
    if (!this.downloading || conn.phase !== 'open' || conn.peerChoking || link.wanted === 0) return;
    let budget = requestBudget(this.queueDepth, conn.peerRequestQueueLimit, link.outstanding.size);
    if (budget === 0) return;
    const now = this.clock();

    // 1. Pieces already in flight (partial pieces first).
    for (const pd of this.pieces.values()) {
      if (budget === 0) break;
      if (pd.writing || pd.unrequested === 0 || !link.peerHas(pd.index) || link.rejected.has(pd.index)) continue;
      if (!this.mayFetch(link, pd)) continue;
      budget -= this.requestBlocks(link, pd, budget, now, false);
    }

    // 2. Re-fetches of pieces that failed verification, preferring peers that did not supply them.
    for (const [index, retry] of this.retries) {
      if (budget === 0 || this.pieces.size >= this.maxPiecesInFlight) break;
      if (this.pieces.has(index) || !link.peerHas(index) || link.rejected.has(index)) continue;
      if (!mayRetryFrom(link.name, retry.suspects, this.usablePeersWith(index))) continue;
      const pd = this.startPiece(index, true);
      pd.owner = link;
      budget -= this.requestBlocks(link, pd, budget, now, false);
    }

    // 3. New pieces, at random among those the peer has and nobody fetches.
    let fresh = link.wanted;
    for (const index of this.pieces.keys()) if (link.peerHas(index)) fresh--;
    for (const index of this.retries.keys()) if (!this.pieces.has(index) && link.peerHas(index)) fresh--;
    while (budget > 0 && fresh > 0 && this.pieces.size < this.maxPiecesInFlight) {
      const index = pickPiece({
        numPieces: this.geometry.numPieces,
        random: this.random,
        isCandidate: (i) => this.have[i] === 0 && link.peerHas(i) && !this.pieces.has(i) && !this.retries.has(i) && !link.rejected.has(i),
      });
      if (index === undefined) break;
      fresh--;
      budget -= this.requestBlocks(link, this.startPiece(index, false), budget, now, false);
    }

    // 4. End game: duplicate blocks other peers are fetching.
    if (budget > 0 && inEndGame({ missingPieces: this.geometry.numPieces - this.verified, piecesInFlight: this.pieces.size })) {
      for (const pd of this.pieces.values()) {
        if (budget === 0) break;
        if (pd.writing || pd.exclusive || !link.peerHas(pd.index) || link.rejected.has(pd.index)) continue;
        budget -= this.requestBlocks(link, pd, budget, now, true);
      }
    }
    link.flush();
  }

  /** Requests up to `budget` blocks of `pd` from `link`: missing ones, or (end game) ones others fetch. */
  private requestBlocks(link: PeerLink, pd: PieceDownload<PeerLink>, budget: number, now: number, duplicate: boolean): number {
    let sent = 0;
    for (let b = 0; b < pd.numBlocks && sent < budget; b++) {
      const state = pd.state[b];
      if (duplicate) {
        const requesters = pd.requesters[b];
        if (state !== BlockState.Requested || !requesters || requesters.length >= END_GAME_MAX_REQUESTERS || requesters.includes(link)) continue;
      } else {
        if (pd.unrequested === 0) break;
        if (state !== BlockState.Missing) continue;
      }
      // False when the connection still waits for an earlier request of this offset (e.g. one
      // released on a choke the peer has not answered): leave the block to someone else.
      if (!link.conn.request({ index: pd.index, begin: b * BLOCK_SIZE, length: pd.blockLength(b) }, now)) continue;
      pd.markRequested(b, link);
      link.outstanding.add(this.geometry.blockKey(pd.index, b));
      sent++;
    }
    return sent;
  }

  /** Exclusive re-fetches go to their owner; an orphaned one is adopted under the retry rule. */
  private mayFetch(link: PeerLink, pd: PieceDownload<PeerLink>): boolean {
    if (!pd.exclusive || pd.owner === link) return true;
    if (pd.owner !== undefined && this.links.has(pd.owner.id)) return false;
    const retry = this.retries.get(pd.index);
    if (retry && !mayRetryFrom(link.name, retry.suspects, this.usablePeersWith(pd.index))) return false;
    pd.owner = link;
    return true;
  }

  private *usablePeersWith(index: number): Iterable<string> {
    for (const l of this.links.values()) {
      if (l.conn.phase === 'open' && !l.conn.peerChoking && l.peerHas(index) && !this.banned.has(l.name)) yield l.name;
    }
  }

  private startPiece(index: number, exclusive: boolean): PieceDownload<PeerLink> {
    const pd = new PieceDownload<PeerLink>(index, this.geometry.pieceSize(index), exclusive);
    this.pieces.set(index, pd);
    return pd;
  }

  /** The peer no longer fetches anything for us (choke, close): its blocks are missing again. */
  private releaseAll(link: PeerLink): void {
    const bpp = this.geometry.blocksPerPiece;
    for (const key of link.outstanding) {
      const index = Math.floor(key / bpp);
      this.pieces.get(index)?.release(key - index * bpp, link);
    }
    link.outstanding.clear();
    for (const pd of this.pieces.values()) if (pd.owner === link) pd.owner = undefined;
  }

  private fillAll(): void {
    for (const link of [...this.links.values()]) {
      this.fill(link);
      link.flush();
    }
  }

  private writePiece(pd: PieceDownload<PeerLink>): void {
    pd.writing = true;
    const contributors = pd.contributors();
    this.track(
      this.store.writePiece(pd.index, pd.buffer).then(
        (result) => this.contain(() => (result === 'verified' ? this.onVerified(pd) : this.onCorrupt(pd, contributors))),
        (err: unknown) => this.contain(() => this.onStoreFailure(pd, err)),
      ),
    );
  }

  private onVerified(pd: PieceDownload<PeerLink>): void {
    const index = pd.index;
    this.pieces.delete(index);
    const retry = this.retries.get(index);
    this.retries.delete(index);
    if (this.have[index] === 0) {
      this.have[index] = 1;
      this.verified++;
      const now = this.clock();
      for (const link of this.links.values()) {
        link.conn.have(index, now);
        if (link.peerHas(index)) link.wanted--;
      }
    }
    if (retry) for (const name of blameAfterVerified(retry.records, pd.buffer)) this.strike(name);
    this.safeEmit('piece-verified', index);
    if (this.verified === this.geometry.numPieces) {
      this.onComplete();
    } else {
      for (const link of this.links.values()) this.updateInterest(link);
      this.fillAll();
    }
    this.safeEmit('progress', this.progress);
  }

  private onCorrupt(pd: PieceDownload<PeerLink>, contributors: Set<string>): void {
    const index = pd.index;
    this.pieces.delete(index);
    this.corruptPieces++;
    let retry = this.retries.get(index);
    if (!retry) {
      retry = { suspects: new Set(), records: [] };
      this.retries.set(index, retry);
    }
    for (const name of contributors) retry.suspects.add(name);
    const guilty = blameCorruptPiece(contributors);
    if (guilty.length === 0) {
      // Mixed piece: remember each block, and blame once the good data is known.
      for (let b = 0; b < pd.numBlocks && retry.records.length < MAX_RECORDS_PER_PIECE; b++) {
        const sender = pd.senders[b];
        if (sender === undefined) continue;
        const begin = b * BLOCK_SIZE;
        const length = pd.blockLength(b);
        retry.records.push({ begin, length, sender, hash: blockDigest(pd.buffer.subarray(begin, begin + length)) });
      }
    }
    this.safeEmit('piece-corrupt', { index, peers: [...contributors] } satisfies PieceCorruptEvent);
    for (const name of guilty) this.strike(name);
    this.fillAll();
    this.safeEmit('progress', this.progress);
  }

  private strike(peerName: string): void {
    const strikes = (this.strikes.get(peerName) ?? 0) + 1;
    this.strikes.set(peerName, strikes);
    if (strikes < STRIKES_TO_BAN || this.banned.has(peerName)) return;
    this.banned.add(peerName);
    for (const pd of this.pieces.values()) if (!pd.writing) pd.discardFrom(peerName);
    const reason = new SessionPeerError('PEER_BANNED', `${peerName} sent data that failed verification ${strikes} times`);
    for (const link of [...this.links.values()]) if (link.name === peerName) link.close(reason);
    this.safeEmit('peer-banned', { peerName, strikes });
  }

  private onStoreFailure(pd: PieceDownload<PeerLink>, err: unknown): void {
    this.pieces.delete(pd.index);
    if (this.storeFailure) return;
    this.storeFailure = err instanceof Error ? err : new Error(String(err));
    for (const link of this.links.values()) {
      this.releaseAll(link);
      this.updateInterest(link);
      link.flush();
    }
    this.safeEmit('store-error', this.storeFailure);
  }

  private onComplete(): void {
    if (this.completed) return;
    this.completed = true;
    const now = this.clock();
    const bpp = this.geometry.blocksPerPiece;
    for (const link of this.links.values()) {
      if (link.conn.phase === 'open') {
        for (const key of link.outstanding) {
          const index = Math.floor(key / bpp);
          const b = key - index * bpp;
          link.conn.cancel({ index, begin: b * BLOCK_SIZE, length: this.geometry.blockLength(index, b) }, now);
        }
      }
      link.outstanding.clear();
      this.updateInterest(link);
      link.flush();
    }
    this.pieces.clear();
    this.retries.clear();
    this.safeEmit('complete');
  }

  /** The store lost a verified piece (damaged on disk): fetch it again. */
  private onPieceLost(index: number): void {
    if (this.have[index] === 0) return;
    this.have[index] = 0;
    this.verified--;
    this.completed = false;
    for (const link of this.links.values()) {
      if (!link.peerHas(index)) continue;
      link.wanted++;
      this.updateInterest(link);
    }
    this.fillAll();
  }

  // ---------------------------------------------------------------- uploading

  /** Serves queued requests while the socket takes data and fewer than maxReadsPerPeer reads run. */
  private serve(link: PeerLink): void {
    while (!link.closed && !link.congested && link.reads < this.maxReadsPerPeer && link.serveQueue.length > 0) {
      const r = link.serveQueue.shift() as BlockRequest;
      link.reads++;
      this.track(
        this.readForPeer(r).then(
          (block) =>
            this.contain(() => {
              link.reads--;
              if (link.conn.piece(r.index, r.begin, block, this.clock())) {
                link.bytesUp += block.length;
                this.bytesUploaded += block.length;
              }
              link.flush();
              this.serve(link);
            }),
          (err: unknown) =>
            this.contain(() => {
              link.reads--;
              link.conn.reject(r, this.clock());
              this.onStoreReadFailure(r.index, err);
              link.flush();
              this.serve(link);
            }),
        ),
      );
    }
  }

  /**
   * A block as the wire sees it: pieces at the end of a file are short on disk, but libtorrent's
   * piece space pads them to full length, so a request may reach into the padding (zeros).
   */
  private async readForPeer(r: BlockRequest): Promise<Buffer> {
    const size = this.geometry.pieceSize(r.index);
    if (r.begin + r.length <= size) return this.store.readBlock(r.index, r.begin, r.length);
    const out = Buffer.alloc(r.length);
    if (r.begin < size) (await this.store.readBlock(r.index, r.begin, size - r.begin)).copy(out);
    return out;
  }

  private leafHashes(index: number): Promise<Buffer> {
    return this.store.leafHashes(index).catch((err: unknown) => {
      this.contain(() => this.onStoreReadFailure(index, err));
      throw err;
    });
  }

  /** A read found a verified piece damaged on disk (the store dropped it): fetch it again. */
  private onStoreReadFailure(index: number, err: unknown): void {
    const code = (err as { code?: unknown })?.code;
    if (code === 'STORE_DATA_DAMAGED' || code === 'STORE_PIECE_NOT_VERIFIED') this.onPieceLost(index);
  }

  // ---------------------------------------------------------------- choking, timer

  private rechoke(): void {
    const open = [...this.links.values()].filter((l) => l.conn.phase === 'open');
    const chosen = chooseUnchoked(
      open.map((l) => ({ id: l.id, interested: l.conn.peerInterested, unchoked: !l.conn.amChoking })),
      this.maxUnchoked,
    );
    const now = this.clock();
    for (const link of open) {
      if (chosen.has(link.id)) {
        link.conn.unchoke(now);
      } else if (link.conn.choke(now)) {
        // The connection rejected (fast) or dropped the queued requests.
        link.serveQueue.length = 0;
      }
      link.flush();
    }
  }

  private onTick(): void {
    if (this.closing) return;
    const now = this.clock();
    for (const link of [...this.links.values()]) {
      link.conn.tick(now);
      link.rejected.clear();
      link.flush();
    }
    this.rechoke();
    this.fillAll();
  }

  // ---------------------------------------------------------------- helpers

  private availability(): Uint8Array | 'all' | 'none' {
    if (this.verified === 0) return 'none';
    if (this.verified === this.geometry.numPieces) return 'all';
    const bits = new Uint8Array(Math.ceil(this.geometry.numPieces / 8));
    for (let i = 0; i < this.geometry.numPieces; i++) if (this.have[i] === 1) bits[i >> 3] = (bits[i >> 3] ?? 0) | (0x80 >> (i & 7));
    return bits;
  }

  private track(promise: Promise<unknown>): void {
    this.pending.add(promise);
    const done = (): void => {
      this.pending.delete(promise);
    };
    promise.then(done, done);
  }

  /** Runs a callback outside any socket handler's guard: a throw is reported, never propagated. */
  private contain(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.safeEmit('session-error', err);
    }
  }

  /** Emits without letting a listener's throw unwind into socket or timer handlers. */
  private safeEmit(name: string, ...args: unknown[]): void {
    try {
      this.emit(name, ...args);
    } catch (err) {
      if (name === 'session-error') return;
      try {
        this.emit('session-error', err);
      } catch {
        // A failing error listener has nowhere left to report to.
      }
    }
  }
}
