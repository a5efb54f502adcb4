import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { formatIp } from '@shoal/dht';
import { DEFAULT_SWARM_CONFIG, type SwarmAction, type SwarmConfig, type SwarmPeerStats, type SwarmProgress, Swarm, type WebseedReason } from '@shoal/swarm';
import type { Location } from '@shoal/topology';
import { type BDict, BLOCK_SIZE, HASH_SIZE, type Metainfo, ShoalError, blockHashes, truncatedInfoHash } from '@shoal/torrent';
import {
  type ConnectionEvent,
  type ConnectionLimits,
  type HashRequestHeader,
  PEX_EXTENSION,
  PeerConnection,
  type PexContact,
  type PexEndpoint,
  PexFlag,
  type PexLimits,
  PexState,
  type WireError,
  type WireMessage,
  pexEndpointKey,
  resolvePexLimits,
} from '@shoal/wire';
import type { Gate } from '../bandwidth';
import { SessionPeerError } from './errors';
import { PackageGeometry } from './geometry';
import { answerHashRequest } from './hash-service';
import { PeerLink, type PeerLinkHooks } from './peer-link';

/**
 * What the session needs from the package store (PackageStore satisfies it). `have()` is read
 * once, at construction; from then on the swarm tracks verified pieces.
 */
export interface SessionStore {
  have(): { get(index: number): boolean };
  writePiece(index: number, data: Uint8Array): Promise<'verified' | 'corrupt'>;
  readBlock(index: number, begin: number, length: number): Promise<Buffer>;
  leafHashes(index: number): Promise<Buffer>;
}

/** Where the swarm's webseed fallback gets whole pieces (the agent's WebseedClient). */
export interface PieceSource {
  readonly available: boolean;
  fetchPiece(index: number): Promise<Buffer>;
}

export interface PackageSessionOptions {
  metainfo: Metainfo;
  store: SessionStore;
  /** Our 20-byte peer id. */
  peerId: Buffer;
  /** Our agent id: the swarm's rendezvous hashing shares origin pieces out by it. Default: hex of peerId. */
  selfName?: string;
  /** Milliseconds on a monotonic clock. Default performance.now. */
  clock?: () => number;
  /** Uniform in [0, 1). Default Math.random. */
  random?: () => number;
  /** Swarm policies and limits (libs/swarm DEFAULT_SWARM_CONFIG). */
  swarm?: Partial<SwarmConfig>;
  /** The package's webseed; without one the swarm never falls back to an origin. */
  webseed?: PieceSource;
  /** Period of the session timer (wire keep-alives and timeouts, swarm tick). Default 1000. */
  tickMs?: number;
  /** Disk reads in progress per peer while serving. Default 8. */
  maxReadsPerPeer?: number;
  /** PeerConnection limits (timeouts, our `reqq`, ...). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** Sent as `v` in the extended handshake. */
  clientVersion?: string;
  /**
   * Our peer-wire listen port: sent as `p` in the extended handshake, so that peers that accepted
   * our connection can pass us on through PEX; also keeps our own address out of 'pex-peers'.
   */
  listenPort?: number;
  /**
   * Peer exchange timing and bounds (libs/wire DEFAULT_PEX_LIMITS: one message a minute, the
   * first 5 s after the handshake). Tests shorten them, or drive `clock`, to watch several rounds.
   */
  pex?: Partial<PexLimits>;
  /** Caps: peer reads pause while `download` says wait; piece data is served only when `upload` allows. */
  bandwidth?: { download: Gate; upload: Gate };
}

export interface SessionProgress {
  verifiedPieces: number;
  totalPieces: number;
  /** Piece payload received from peers (duplicates included). */
  bytesDownloaded: number;
  /** Verified bytes fetched from the webseed (origin). */
  bytesFromWebseed: number;
  /** Piece payload sent. */
  bytesUploaded: number;
  /** Connected peers (handshaking ones included). */
  peers: number;
  /** Pieces that failed verification. */
  corruptPieces: number;
}

export interface PeerStats extends Omit<SwarmPeerStats, 'key' | 'name' | 'open' | 'peerPieces' | 'outstanding'> {
  peerName: string;
  role: 'initiator' | 'acceptor';
  phase: 'handshake' | 'open' | 'closed';
  peerPieces: number;
  outstandingRequests: number;
  queuedUploads: number;
}

export interface PieceCorruptEvent {
  index: number;
  /** Names of the peers that supplied a block of the failed piece ('webseed' for the origin). */
  peers: string[];
}

export interface PeerClosedEvent {
  peerName: string;
  reason: WireError;
}

/** A peer address learned through PEX: only its address, never who it is (the TLS handshake decides). */
export interface LearnedPeer {
  address: string;
  port: number;
  /** The sender says it is a seed (BEP 11 flag 0x02). */
  seed: boolean;
}

export interface PexPeersEvent {
  /** The peer that sent them. */
  peerName: string;
  peers: LearnedPeer[];
}

/** One ut_pex message sent to a peer, taken from it, or ignored (then with the reason). */
export interface PexMessageEvent {
  peerName: string;
  direction: 'sent' | 'received' | 'ignored';
  reason?: WireError;
}

/** One webseed fetch the swarm decided on, with its reason (for metrics). */
export interface WebseedFetchEvent {
  index: number;
  reason: WebseedReason;
}

/** Bad options given to the session (a local programming error, thrown by the constructor). */
export class SessionError extends ShoalError {
  constructor(message: string) {
    super('SESSION_BAD_OPTION', message);
  }
}

const DEFAULT_TICK_MS = 1000;
const DEFAULT_MAX_READS_PER_PEER = 8;
const MAX_BLOCKS_PER_READ = 16;
/**
 * Bytes of pieces being assembled at once, unless the swarm settings name maxPiecesInFlight:
 * the default piece length grows with the package (about 2,048 pieces), and 32 pieces in flight
 * of a 32 GiB package's 16 MiB pieces would be 512 MiB. 16 MiB keeps 32 pieces up to 512 KiB long
 * (packages up to 1 GiB), 8 of a 4 GiB package's 2 MiB pieces, and never fewer than 2. With
 * 32 MiB, a 4 GiB download's peak RSS reached 198-203 MiB in the agent benchmark (budget 200 MB);
 * with 16 MiB 181-190 MiB, at the same throughput (the data path's garbage buffers, up to V8's
 * external-memory GC trigger, come on top of this).
 */
const PIECE_ASSEMBLY_BYTES = 16 * 1024 * 1024;

function piecesInFlightFor(pieceLength: number): number {
  return Math.max(2, Math.min(DEFAULT_SWARM_CONFIG.maxPiecesInFlight, Math.floor(PIECE_ASSEMBLY_BYTES / pieceLength)));
}

/**
 * The agent's adapter for one package's swarm: joins admitted TLS sockets (PeerLink +
 * PeerConnection from libs/wire), the package store and the webseed to the sans-IO swarm core
 * (libs/swarm), which makes every decision. The adapter only moves bytes: wire events become swarm
 * inputs, swarm actions become wire messages, disk reads and writes, hash requests and webseed
 * fetches, and their results go back in.
 *
 * Pieces are assembled in one buffer per piece in flight (the swarm bounds how many) and handed
 * whole to `store.writePiece`, which verifies before anything is marked or served.
 *
 * Events: 'progress' (SessionProgress), 'piece-verified' (index), 'piece-corrupt'
 * (PieceCorruptEvent), 'complete', 'peer-closed' (PeerClosedEvent), 'peer-banned'
 * ({ peerName, strikes }), 'webseed-fetch' (WebseedFetchEvent), 'webseed-error' (Error),
 * 'extension' ({ peerName, name, payload }: extensions other than ut_pex), 'pex-peers'
 * (PexPeersEvent: addresses learned through PEX, minus peers already connected and ourselves),
 * 'pex-message' (PexMessageEvent), 'store-error' (Error: a write failed; downloading stops,
 * serving goes on), 'session-error' (Error: a listener or internal failure, contained).
 *
 * Peer exchange (BEP 11): every peer that announced ut_pex hears, at most once a minute, which
 * handshaken peers of this package came and went since it last heard (libs/wire PexState decides
 * what and when; the session feeds it the peers at the address and port they accept connections
 * on). A ut_pex message that breaks BEP 11, or comes too soon, is ignored and reported as
 * 'pex-message' 'ignored': PEX is advice, and a peer that serves good data is not dropped for it.
 */
export class PackageSession extends EventEmitter {
  readonly geometry: PackageGeometry;
  readonly swarm: Swarm;
  private readonly store: SessionStore;
  private readonly infoHash20: Buffer;
  private readonly peerId: Buffer;
  private readonly clock: () => number;
  private readonly maxReadsPerPeer: number;
  private readonly connectionLimits: Partial<ConnectionLimits> | undefined;
  private readonly clientVersion: string | undefined;
  private readonly webseed: PieceSource | undefined;
  private readonly selfName: string;
  private readonly bandwidth: { download: Gate; upload: Gate } | undefined;
  private readonly listenPort: number | undefined;
  private readonly pexLimits: Readonly<PexLimits>;

  private readonly links = new Map<number, PeerLink>();
  private nextLinkId = 1;
  /** Data of pieces being assembled from peers. */
  private readonly buffers = new Map<number, Buffer>();
  /**
   * Full-length piece buffers the store is done with, for the next pieces: a fresh buffer per
   * piece cost page faults on first touch and full garbage collections for the external memory
   * (together about a tenth of a loopback leech's main thread). Up to `piecesInFlight` are kept:
   * a new piece takes a spare first, so a download allocates no more buffers than it has pieces
   * in flight and drops none until it completes (then all go).
   */
  private readonly spareBuffers: Buffer[] = [];
  /** Pieces assembled at once (the swarm's maxPiecesInFlight). */
  private readonly piecesInFlight: number;
  /** Block-hash requests sent for blame, by piece. */
  private readonly hashRequests = new Map<number, HashRequestHeader>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private readonly hooks: PeerLinkHooks;
  private readonly dirty = new Set<PeerLink>();
  private applying = false;
  private closing = false;
  private closed: Promise<void> | undefined;
  private storeFailure: Error | undefined;

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
    this.maxReadsPerPeer = positive(options.maxReadsPerPeer, 'maxReadsPerPeer', DEFAULT_MAX_READS_PER_PEER);
    const tickMs = positive(options.tickMs, 'tickMs', DEFAULT_TICK_MS);
    if (options.listenPort !== undefined && !(Number.isSafeInteger(options.listenPort) && options.listenPort >= 1 && options.listenPort <= 65535)) {
      throw new SessionError(`listenPort must be in 1..65535, not ${String(options.listenPort)}`);
    }
    try {
      this.pexLimits = resolvePexLimits(options.pex);
    } catch (err) {
      throw new SessionError((err as Error).message);
    }

    this.geometry = new PackageGeometry(metainfo);
    this.store = store;
    this.infoHash20 = Buffer.from(truncatedInfoHash(metainfo.infoHash));
    this.peerId = Buffer.from(options.peerId);
    this.clock = options.clock ?? (() => performance.now());
    this.connectionLimits = options.connectionLimits;
    this.clientVersion = options.clientVersion;
    this.webseed = options.webseed;
    this.selfName = options.selfName ?? this.peerId.toString('hex');
    this.bandwidth = options.bandwidth;
    this.listenPort = options.listenPort;

    const stored = store.have();
    const have = new Uint8Array(this.geometry.numPieces);
    for (let i = 0; i < have.length; i++) have[i] = stored.get(i) ? 1 : 0;
    this.piecesInFlight = options.swarm?.maxPiecesInFlight ?? piecesInFlightFor(this.geometry.pieceLength);
    this.swarm = new Swarm({
      space: this.geometry.space,
      have,
      selfName: this.selfName,
      config: { ...options.swarm, maxPiecesInFlight: this.piecesInFlight },
      random: options.random ?? Math.random,
      now: this.clock(),
      webseed: this.webseed?.available === true,
    });
    this.hooks = {
      event: (link, event) => this.onEvent(link, event),
      writable: (link) => this.serve(link),
    };
    this.timer = setInterval(() => this.contain(() => this.onTick()), tickMs);
    this.timer.unref();
    // The swarm may act at once (a lone downloader with a webseed).
    this.contain(() => this.apply());
  }

  // ---------------------------------------------------------------- public API

  /**
   * Takes an admitted TLS socket for this package (from PeerServer 'connection' or
   * connectToPeer). `peerName` is the peer's agent id, used for blame and bans; `location` its
   * labels (topology) and `seed` whether the tracker lists it as a seed, when known.
   */
  attach(socket: TLSSocket, role: 'initiator' | 'acceptor', peerName: string, location?: Location, seed?: boolean): void {
    const refuse = (reason: SessionPeerError): void => {
      socket.destroy();
      this.safeEmit('peer-closed', { peerName, reason } satisfies PeerClosedEvent);
    };
    if (this.closing) return refuse(new SessionPeerError('SESSION_CLOSED', 'the session is closed'));
    if (socket.destroyed) return refuse(new SessionPeerError('SOCKET_ERROR', 'socket already closed'));
    const twin = this.openLinkTo(peerName);
    if (twin) {
      // Both sides dialled each other: keep, on both sides alike, the connection the lower id initiated.
      const kept = this.selfName < peerName ? 'initiator' : 'acceptor';
      const duplicate = new SessionPeerError('PEER_DUPLICATE', `already connected to ${peerName}`);
      if (role !== kept) return refuse(duplicate);
      twin.close(duplicate);
    }
    const id = this.nextLinkId++;
    const advertised = this.swarm.addPeer(id, { name: peerName, ...(location ? { location } : {}), ...(seed ? { seed } : {}) }, this.clock());
    if (typeof advertised === 'object' && 'refused' in advertised) return refuse(new SessionPeerError(advertised.refused, advertised.message));
    const conn = new PeerConnection({
      infoHash20: this.infoHash20,
      localPeerId: this.peerId,
      numPieces: this.geometry.numPieces,
      pieceLength: this.geometry.pieceLength,
      totalLength: this.geometry.wireTotalLength,
      role,
      now: this.clock(),
      have: advertised,
      ...(this.connectionLimits ? { limits: this.connectionLimits } : {}),
      ...(this.clientVersion !== undefined ? { clientVersion: this.clientVersion } : {}),
      ...(this.listenPort !== undefined ? { listenPort: this.listenPort } : {}),
    });
    const link = new PeerLink(id, peerName, socket, conn, this.clock, this.hooks, this.bandwidth?.download);
    this.links.set(id, link);
    link.start();
  }

  get progress(): SessionProgress {
    const p: SwarmProgress = this.swarm.progress;
    return {
      verifiedPieces: p.verifiedPieces,
      totalPieces: p.totalPieces,
      bytesDownloaded: p.bytesFromPeers,
      bytesFromWebseed: p.bytesFromWebseed,
      bytesUploaded: p.bytesUploaded,
      peers: this.links.size,
      corruptPieces: p.corruptPieces,
    };
  }

  /** True while a connection with this peer (either side dialled it) is open. */
  isConnectedTo(peerName: string): boolean {
    return this.openLinkTo(peerName) !== undefined;
  }

  private openLinkTo(peerName: string): PeerLink | undefined {
    for (const link of this.links.values()) if (link.name === peerName && !link.closed) return link;
    return undefined;
  }

  isComplete(): boolean {
    return this.swarm.isComplete();
  }

  /** Per-peer state, for status pages and tests. */
  peerStats(): PeerStats[] {
    const swarmStats = new Map(this.swarm.peerStats(this.clock()).map((s) => [s.key, s]));
    const out: PeerStats[] = [];
    for (const link of this.links.values()) {
      const s = swarmStats.get(link.id);
      out.push({
        peerName: link.name,
        role: link.conn.role,
        phase: link.conn.phase,
        amChoking: link.conn.amChoking,
        amInterested: link.conn.amInterested,
        peerChoking: link.conn.peerChoking,
        peerInterested: link.conn.peerInterested,
        snubbed: s?.snubbed ?? false,
        peerPieces: link.conn.peerPieceCount,
        outstandingRequests: s?.outstanding ?? 0,
        queuedUploads: link.serveQueue.length,
        bytesDownloaded: s?.bytesDownloaded ?? 0,
        bytesUploaded: s?.bytesUploaded ?? 0,
        downloadRate: s?.downloadRate ?? 0,
        uploadRate: s?.uploadRate ?? 0,
        strikes: this.swarm.strikesOf(link.name),
      });
    }
    return out;
  }

  strikesOf(peerName: string): number {
    return this.swarm.strikesOf(peerName);
  }

  isBanned(peerName: string): boolean {
    return this.swarm.isBanned(peerName);
  }

  /**
   * Closes every peer connection and stops the timer; resolves once pending disk reads, piece
   * writes and webseed fetches have settled and the sockets are closed (or a short grace period
   * passed). The store is left open: it belongs to the caller.
   */
  close(): Promise<void> {
    this.closing = true;
    this.closed ??= (async () => {
      clearInterval(this.timer);
      this.swarm.close();
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

  // ---------------------------------------------------------------- wire events -> swarm inputs

  private onEvent(link: PeerLink, event: ConnectionEvent): void {
    const now = this.clock();
    switch (event.type) {
      case 'handshake':
        link.pex = new PexState({ now, limits: this.pexLimits });
        this.swarm.peerOpened(link.id, { fast: link.conn.fastExtension, reqq: link.conn.peerRequestQueueLimit }, now);
        break;
      case 'extended-handshake':
        this.swarm.peerReqq(link.id, link.conn.peerRequestQueueLimit, now);
        break;
      case 'extension':
        if (event.name === PEX_EXTENSION) this.onPex(link, event.payload, now);
        else this.safeEmit('extension', { peerName: link.name, name: event.name, payload: event.payload });
        return;
      case 'message':
        this.onMessage(link, event.message, now);
        break;
      case 'closed':
        this.onClosed(link, event.reason, now);
        break;
    }
    this.apply();
  }

  private onMessage(link: PeerLink, msg: WireMessage, now: number): void {
    const swarm = this.swarm;
    switch (msg.type) {
      case 'bitfield':
        return swarm.peerBitfield(link.id, link.conn.peerBitfield(), now);
      case 'have-all':
        return swarm.peerBitfield(link.id, 'all', now);
      case 'have-none':
        return swarm.peerBitfield(link.id, 'none', now);
      case 'have':
        return swarm.peerHave(link.id, msg.index, now);
      case 'choke':
      case 'unchoke':
        return swarm.peerChoke(link.id, msg.type === 'choke', now);
      case 'interested':
      case 'not-interested':
        return swarm.peerInterest(link.id, msg.type === 'interested', now);
      case 'request':
        return swarm.peerRequest(link.id, msg, now);
      case 'cancel': {
        const at = link.serveQueue.findIndex((r) => r.index === msg.index && r.begin === msg.begin && r.length === msg.length);
        if (at >= 0) link.serveQueue.splice(at, 1);
        return;
      }
      case 'piece': {
        const r = { index: msg.index, begin: msg.begin, length: msg.block.length };
        if (!swarm.blockReceived(link.id, r, now)) return;
        let buffer = this.buffers.get(msg.index);
        if (!buffer) {
          const size = this.geometry.pieceSize(msg.index);
          buffer = (size === this.geometry.pieceLength ? this.spareBuffers.pop() : undefined) ?? Buffer.allocUnsafe(size);
          this.buffers.set(msg.index, buffer);
        }
        buffer.set(msg.block, msg.begin);
        return;
      }
      case 'reject':
        return swarm.peerRejected(link.id, msg, now);
      case 'hash-request':
        return this.onHashRequest(link, msg);
      case 'hashes':
        return this.onHashes(msg, msg.hashes, now);
      case 'hash-reject':
        return this.onHashes(msg, undefined, now);
      default:
        // keep-alive, port, suggest, allowed-fast: nothing to do.
        return;
    }
  }

  private onClosed(link: PeerLink, reason: WireError, now: number): void {
    if (!this.links.delete(link.id)) return;
    link.serveQueue.length = 0;
    clearTimeout(link.uploadTimer);
    this.swarm.peerClosed(link.id, now);
    this.safeEmit('peer-closed', { peerName: link.name, reason } satisfies PeerClosedEvent);
    if (!this.closing) this.safeEmit('progress', this.progress);
  }

  private onTick(): void {
    if (this.closing) return;
    const now = this.clock();
    for (const link of this.links.values()) {
      link.conn.tick(now);
      this.dirty.add(link);
    }
    this.sendPex(now);
    this.swarm.tick(now);
    this.apply();
  }

  // ---------------------------------------------------------------- peer exchange (BEP 11)

  /** Sends each peer that speaks ut_pex whatever its PexState says is due. */
  private sendPex(now: number): void {
    let live: PexContact[] | undefined;
    for (const link of this.links.values()) {
      const pex = link.pex;
      if (!pex || link.closed || now < pex.nextSendAt || !link.conn.peerExtendedHandshake?.m.has(PEX_EXTENSION)) continue;
      live ??= this.liveContacts();
      const payload = pex.poll(now, live, this.listenEndpoint(link));
      if (!payload || !link.conn.extended(PEX_EXTENSION, payload, now)) continue;
      this.dirty.add(link);
      this.safeEmit('pex-message', { peerName: link.name, direction: 'sent' } satisfies PexMessageEvent);
    }
  }

  /**
   * Where a peer accepts connections: the address and port we dialled, or, for a peer that
   * dialled us, its address and the port of its extended handshake (`p`); undefined when unknown.
   */
  private listenEndpoint(link: PeerLink): PexEndpoint | undefined {
    const port = link.conn.role === 'initiator' ? link.remotePort : link.conn.peerExtendedHandshake?.listenPort;
    return link.remoteIp && port ? { ip: link.remoteIp, port } : undefined;
  }

  /** The handshaken peers whose listen address we know, as PEX contacts. */
  private liveContacts(): PexContact[] {
    const out: PexContact[] = [];
    for (const link of this.links.values()) {
      if (link.conn.phase !== 'open') continue;
      const endpoint = this.listenEndpoint(link);
      if (!endpoint) continue;
      const flags = (link.conn.peerIsSeed ? PexFlag.seed : 0) | (link.conn.role === 'initiator' ? PexFlag.reachable : 0);
      out.push({ ...endpoint, flags });
    }
    return out;
  }

  private onPex(link: PeerLink, payload: BDict, now: number): void {
    // Extension messages only follow the handshake, which created the state.
    if (!link.pex) return;
    const receipt = link.pex.receive(payload, now, link.remoteIp);
    if (!receipt.accepted) {
      this.safeEmit('pex-message', { peerName: link.name, direction: 'ignored', reason: receipt.reason } satisfies PexMessageEvent);
      return;
    }
    this.safeEmit('pex-message', { peerName: link.name, direction: 'received' } satisfies PexMessageEvent);
    const known = this.connectedEndpoints();
    const peers: LearnedPeer[] = receipt.added
      .filter((contact) => !known.has(pexEndpointKey(contact)))
      .map((contact) => ({ address: formatIp(contact.ip), port: contact.port, seed: (contact.flags & PexFlag.seed) !== 0 }));
    if (peers.length > 0) this.safeEmit('pex-peers', { peerName: link.name, peers } satisfies PexPeersEvent);
  }

  /** Endpoint keys not worth dialling: peers we are connected to, and our listen port on every address our sockets use. */
  private connectedEndpoints(): Set<string> {
    const known = new Set<string>();
    for (const link of this.links.values()) {
      const endpoint = this.listenEndpoint(link);
      if (endpoint) known.add(pexEndpointKey(endpoint));
      if (this.listenPort !== undefined && link.localIp) known.add(pexEndpointKey({ ip: link.localIp, port: this.listenPort }));
    }
    return known;
  }

  // ---------------------------------------------------------------- swarm actions -> I/O

  /** Carries out the swarm's actions (which may produce more) and writes what the links hold. */
  private apply(): void {
    if (this.applying) return;
    this.applying = true;
    try {
      for (let actions = this.swarm.takeActions(); actions.length > 0; actions = this.swarm.takeActions()) {
        const now = this.clock();
        for (const action of actions) this.perform(action, now);
      }
      for (const link of this.dirty) link.flush();
      this.dirty.clear();
    } finally {
      this.applying = false;
    }
  }

  private perform(action: SwarmAction, now: number): void {
    switch (action.type) {
      case 'write':
        return this.writePiece(action.index, action.recordLeaves, action.needGoodLeaves);
      case 'webseed-fetch':
        return this.fetchFromWebseed(action.index, action.reason);
      case 'piece-failed':
        this.safeEmit('piece-corrupt', { index: action.index, peers: action.senders } satisfies PieceCorruptEvent);
        return;
      case 'banned':
        this.safeEmit('peer-banned', { peerName: action.name, strikes: action.strikes });
        return;
      case 'complete':
        this.buffers.clear();
        this.spareBuffers.length = 0;
        this.safeEmit('complete');
        return;
      default:
        break;
    }
    const link = this.links.get(action.peer);
    if (!link || link.closed) return;
    this.dirty.add(link);
    const conn = link.conn;
    switch (action.type) {
      case 'choke':
        // The connection rejected (fast) or dropped the queued requests.
        if (conn.choke(now)) link.serveQueue.length = 0;
        return;
      case 'unchoke':
        conn.unchoke(now);
        return;
      case 'interested':
        conn.interested(now);
        return;
      case 'not-interested':
        conn.notInterested(now);
        return;
      case 'have':
        conn.have(action.index, now);
        return;
      case 'request':
        // False while the peer still owes an answer to an earlier request of this offset.
        if (!conn.request(action, now)) this.swarm.peerRejected(link.id, action, now);
        return;
      case 'cancel':
        conn.cancel(action, now);
        return;
      case 'serve':
        link.serveQueue.push({ index: action.index, begin: action.begin, length: action.length });
        // Once this batch of actions is queued, so that consecutive blocks are read together.
        if (link.serveQueue.length === 1) queueMicrotask(() => this.contain(() => this.serve(link)));
        return;
      case 'request-block-hashes':
        return this.requestBlockHashes(link, action.index, now);
      case 'close':
        link.close(new SessionPeerError(action.code, action.message));
        return;
    }
  }

  // ---------------------------------------------------------------- pieces

  private writePiece(index: number, recordLeaves: boolean, needGoodLeaves: boolean): void {
    const buffer = this.buffers.get(index);
    this.buffers.delete(index);
    if (!buffer) {
      // Cannot happen (the swarm accepted every block into it); fetch it again rather than stall.
      this.swarm.pieceCorrupt(index, this.clock());
      return;
    }
    this.track(
      this.store.writePiece(index, buffer).then(
        (result) =>
          this.contain(() => {
            const now = this.clock();
            if (result === 'verified') {
              this.swarm.pieceVerified(index, now, needGoodLeaves ? leavesOf(buffer) : undefined);
              this.safeEmit('piece-verified', index);
            } else {
              this.swarm.pieceCorrupt(index, now, recordLeaves ? leavesOf(buffer) : undefined);
            }
            this.recycle(buffer);
            this.apply();
            this.safeEmit('progress', this.progress);
          }),
        (err: unknown) => this.contain(() => this.onStoreFailure(index, err)),
      ),
    );
  }

  /** Keeps a piece buffer the store has settled (it holds no reference once writePiece resolved). */
  private recycle(buffer: Buffer): void {
    if (buffer.length === this.geometry.pieceLength && this.spareBuffers.length < this.piecesInFlight) this.spareBuffers.push(buffer);
  }

  private fetchFromWebseed(index: number, reason: WebseedReason): void {
    const source = this.webseed;
    if (!source) return this.swarm.webseedFailed(index, this.clock());
    this.safeEmit('webseed-fetch', { index, reason } satisfies WebseedFetchEvent);
    this.track(
      source.fetchPiece(index).then(
        (data) =>
          this.store.writePiece(index, data).then(
            (result) =>
              this.contain(() => {
                const now = this.clock();
                if (result === 'verified') {
                  this.swarm.pieceVerified(index, now);
                  this.safeEmit('piece-verified', index);
                } else {
                  this.swarm.pieceCorrupt(index, now);
                }
                this.apply();
                this.safeEmit('progress', this.progress);
              }),
            (err: unknown) => this.contain(() => this.onStoreFailure(index, err)),
          ),
        (err: unknown) =>
          this.contain(() => {
            this.safeEmit('webseed-error', err instanceof Error ? err : new Error(String(err)));
            this.swarm.webseedFailed(index, this.clock());
            this.apply();
          }),
      ),
    );
  }

  private onStoreFailure(index: number, err: unknown): void {
    this.swarm.pieceWriteFailed(index, this.clock());
    this.apply();
    if (this.storeFailure) return;
    this.storeFailure = err instanceof Error ? err : new Error(String(err));
    this.safeEmit('store-error', this.storeFailure);
  }

  // ---------------------------------------------------------------- block hashes (blame)

  /** Asks the peer for the piece's block hashes (BEP 52), provable from the piece layer alone. */
  private requestBlockHashes(link: PeerLink, index: number, now: number): void {
    const request = this.blockHashRequest(index);
    if (!request || !link.conn.hashRequest(request, now)) {
      this.swarm.blockHashes(index, undefined, now);
      return;
    }
    this.hashRequests.set(index, request);
  }

  private blockHashRequest(index: number): HashRequestHeader | undefined {
    const located = this.geometry.fileOfPiece(index);
    if (!located) return undefined;
    const { tree, localPiece } = located;
    const length = tree.leavesPerPiece;
    if (length < 2 || length > 512) return undefined;
    return { piecesRoot: tree.piecesRoot, baseLayer: 0, index: localPiece * length, length, proofLayers: 0 };
  }

  private onHashes(header: HashRequestHeader, hashes: readonly Buffer[] | undefined, now: number): void {
    for (const [index, request] of this.hashRequests) {
      if (!request.piecesRoot.equals(header.piecesRoot) || request.index !== header.index || request.length !== header.length || request.baseLayer !== header.baseLayer) continue;
      this.hashRequests.delete(index);
      let leaves: Buffer[] | undefined;
      if (hashes) {
        try {
          leaves = this.geometry.fileOfPiece(index)?.tree.verifyHashes(request, hashes);
        } catch {
          leaves = undefined;
        }
      }
      this.swarm.blockHashes(index, leaves, now);
      return;
    }
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
      answerHashRequest(this.geometry, request, (piece) => (this.swarm.hasPiece(piece) ? this.leafHashes(piece) : undefined)).then((hashes) =>
        this.contain(() => {
          const now = this.clock();
          if (hashes) link.conn.hashes(request, hashes, now);
          else link.conn.hashReject(request, now);
          link.flush();
        }),
      );
    link.hashChain = link.hashChain.then(answer, answer);
  }

  // ---------------------------------------------------------------- uploading

  /**
   * Serves queued requests while the socket takes data and fewer than maxReadsPerPeer reads run.
   * Consecutive blocks of one piece (up to MAX_BLOCKS_PER_READ) are read with one disk read: a
   * thread-pool round trip per 16 KiB block was most of a seed's CPU.
   */
  private serve(link: PeerLink): void {
    while (!link.closed && !link.congested && link.reads < this.maxReadsPerPeer && link.serveQueue.length > 0) {
      if (link.uploadTimer) return;
      const wait = this.bandwidth?.upload.delay() ?? 0;
      if (wait > 0) {
        link.uploadTimer = setTimeout(() => {
          link.uploadTimer = undefined;
          this.contain(() => this.serve(link));
        }, Math.ceil(wait));
        link.uploadTimer.unref();
        return;
      }
      const r = link.serveQueue.shift() as { index: number; begin: number; length: number };
      const run = [r];
      let end = r.begin + r.length;
      while (run.length < MAX_BLOCKS_PER_READ && link.serveQueue[0]?.index === r.index && link.serveQueue[0].begin === end) {
        const next = link.serveQueue.shift() as { index: number; begin: number; length: number };
        run.push(next);
        end += next.length;
      }
      link.reads++;
      // Counted when the read starts: up to maxReadsPerPeer reads are in flight at once.
      this.bandwidth?.upload.record(end - r.begin);
      this.track(
        this.readForPeer({ index: r.index, begin: r.begin, length: end - r.begin }).then(
          (data) =>
            this.contain(() => {
              link.reads--;
              const now = this.clock();
              for (const q of run) {
                const block = data.subarray(q.begin - r.begin, q.begin - r.begin + q.length);
                if (link.conn.piece(q.index, q.begin, block, now)) this.swarm.blockSent(link.id, q, now);
              }
              this.dirty.add(link);
              this.apply();
              this.serve(link);
            }),
          (err: unknown) =>
            this.contain(() => {
              link.reads--;
              for (const q of run) link.conn.reject(q, this.clock());
              this.onStoreReadFailure(r.index, err);
              this.dirty.add(link);
              this.apply();
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
  private async readForPeer(r: { index: number; begin: number; length: number }): Promise<Buffer> {
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
    if (code === 'STORE_DATA_DAMAGED' || code === 'STORE_PIECE_NOT_VERIFIED') {
      this.swarm.pieceLost(index, this.clock());
      this.apply();
    }
  }

  // ---------------------------------------------------------------- helpers

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

/** A piece's block (leaf) hashes, one 32-byte hash per 16 KiB block. */
function leavesOf(data: Uint8Array): Buffer[] {
  const all = blockHashes(data);
  const out: Buffer[] = [];
  for (let i = 0; i < Math.ceil(data.length / BLOCK_SIZE); i++) out.push(all.subarray(i * HASH_SIZE, (i + 1) * HASH_SIZE));
  return out;
}
