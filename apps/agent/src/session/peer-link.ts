import type { TLSSocket } from 'node:tls';
import type { BlockRequest, ConnectionEvent, PeerConnection, PexState, WireError } from '@shoal/wire';
import { type Gate, pacedReads } from '../bandwidth';
import { SessionPeerError } from './errors';
import { ipBytes } from '@shoal/dht';

export interface PeerLinkHooks {
  /** One event drained from the connection (in order). A throw closes this peer only. */
  event(link: PeerLink, event: ConnectionEvent): void;
  /** The socket took its buffered data ('drain' after a write returned false). */
  writable(link: PeerLink): void;
}

/** How long a closed link's socket may take to finish its TLS close before it is destroyed. */
const SOCKET_LINGER_MS = 1000;

function bitOf(bits: Uint8Array, index: number): boolean {
  return (((bits[index >> 3] ?? 0) >> (7 - (index & 7))) & 1) === 1;
}

/**
 * One peer of a session: a TLS socket joined to a sans-IO PeerConnection, plus the bookkeeping
 * the session keeps per peer. The link does the I/O (socket events in, frames out, backpressure,
 * closing the socket once the connection closed); the session decides what to send.
 */
export class PeerLink {
  /** Block keys we requested from this peer and still wait for (the session's view). */
  readonly outstanding = new Set<number>();
  /** Pieces the peer rejected recently: not asked again until the next tick or unchoke. */
  readonly rejected = new Set<number>();
  /** Peer requests accepted by the connection, waiting for a disk read. */
  readonly serveQueue: BlockRequest[] = [];
  /** Disk reads in progress for this peer. */
  reads = 0;
  /** Pieces the peer announced (our copy, to count `wanted` exactly once per piece). */
  readonly peerPieces: Uint8Array;
  /** Pieces the peer has that we lack: we are interested while this is > 0. */
  wanted = 0;
  bytesDown = 0;
  bytesUp = 0;
  /** BEP 52 hash requests are answered one after another. */
  hashChain: Promise<void> = Promise.resolve();
  /** Resolves once the socket is closed. */
  readonly socketClosed: Promise<void>;
  /** Set while serving waits for the upload cap. */
  uploadTimer: NodeJS.Timeout | undefined;
  /** Peer exchange (BEP 11) with this peer, from the handshake on. */
  pex: PexState | undefined;
  /** The peer's address (4 or 16 bytes) and port, as the socket saw them at attach: a closed socket forgets them. */
  readonly remoteIp: Buffer | undefined;
  readonly remotePort: number | undefined;
  /** Our own address on this connection. */
  readonly localIp: Buffer | undefined;

  private congestedFlag = false;
  private flushing = false;
  private socketOpen = true;
  /** Frames waiting for the end of this event-loop turn, written then as one corked batch. */
  private unsent: Buffer[] = [];
  private writeScheduled = false;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly socket: TLSSocket,
    readonly conn: PeerConnection,
    private readonly clock: () => number,
    private readonly hooks: PeerLinkHooks,
    /** The download cap: reads pause while it says wait. */
    private readonly readGate?: Gate,
  ) {
    this.peerPieces = new Uint8Array(Math.ceil(conn.numPieces / 8));
    this.remoteIp = socketIpBytes(socket.remoteAddress);
    this.remotePort = socket.remotePort;
    this.localIp = socketIpBytes(socket.localAddress);
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /** Wires the socket up and sends what the connection has ready (the initiator's handshake). */
  start(): void {
    const { socket } = this;
    if (typeof socket.setNoDelay === 'function') socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.conn.receive(chunk, this.clock());
      this.flush();
    });
    if (this.readGate) pacedReads(socket, this.readGate);
    socket.on('end', () => {
      this.conn.end();
      this.flush();
    });
    socket.on('error', (err: Error) => {
      this.conn.close(new SessionPeerError('SOCKET_ERROR', `socket error: ${err.message}`, { cause: err }));
      this.flush();
    });
    socket.on('close', () => {
      this.socketOpen = false;
      clearTimeout(this.uploadTimer);
      this.conn.close(new SessionPeerError('SOCKET_ERROR', 'socket closed'));
      this.flush();
    });
    socket.on('drain', () => {
      if (!this.congestedFlag) return;
      this.congestedFlag = false;
      this.guarded(() => this.hooks.writable(this));
    });
    this.flush();
  }

  get closed(): boolean {
    return this.conn.closed;
  }

  /** A write returned false: serve no more blocks until 'drain'. */
  get congested(): boolean {
    return this.congestedFlag;
  }

  peerHas(index: number): boolean {
    return bitOf(this.peerPieces, index);
  }

  /** Closes the connection; the 'closed' event reaches the session through `flush`. */
  close(reason: WireError): void {
    this.conn.close(reason);
    this.flush();
  }

  /**
   * Writes what the connection produced and hands its events to the session, until both are
   * empty (handling an event may produce more). Re-entrant calls fold into the running loop.
   */
  flush(): void {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (;;) {
        const { outgoing, events } = this.conn.drain();
        if (outgoing.length === 0 && events.length === 0) break;
        if (outgoing.length > 0 && this.socketOpen) this.queue(outgoing);
        for (const event of events) {
          this.guarded(() => this.hooks.event(this, event));
          if (event.type === 'closed') this.shutdown(event.reason);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Writes are held to the end of the event-loop turn: a TLS socket encrypts and sends each
   * write as its own record and syscall, and a downloader answering every arriving block with a
   * request would otherwise make one tiny record per 16 KiB block, on both ends of the link.
   */
  private queue(frames: Buffer[]): void {
    for (const frame of frames) this.unsent.push(frame);
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => this.writeUnsent());
  }

  private writeUnsent(): void {
    this.writeScheduled = false;
    const frames = this.unsent;
    this.unsent = [];
    if (frames.length > 0 && this.socketOpen && this.socket.writable) this.write(frames);
  }

  private write(frames: Buffer[]): void {
    let ok = true;
    if (frames.length === 1) {
      ok = this.socket.write(frames[0] as Buffer);
    } else {
      this.socket.cork();
      for (const frame of frames) ok = this.socket.write(frame) && ok;
      this.socket.uncork();
    }
    if (!ok) this.congestedFlag = true;
  }

  /** Runs a session hook; a throw there is a session bug: it closes this peer, nothing else. */
  private guarded(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.conn.close(new SessionPeerError('SESSION_INTERNAL', `internal error while handling peer ${this.name}: ${(err as Error)?.message}`, { cause: err }));
    }
  }

  private shutdown(reason: WireError): void {
    if (!this.socketOpen) return;
    const graceful = reason instanceof SessionPeerError && reason.sessionCode !== 'SOCKET_ERROR' && reason.sessionCode !== 'SESSION_INTERNAL';
    if (graceful || reason.code === 'WIRE_PEER_CLOSED') {
      this.writeUnsent();
      this.socket.end();
      setTimeout(() => this.socket.destroy(), SOCKET_LINGER_MS).unref();
    } else {
      this.socket.destroy();
    }
  }
}

/** The 4 or 16 bytes of a socket's address (compact PEX contacts); undefined when it has none usable (a zone id, say). */
function socketIpBytes(text: string | undefined): Buffer | undefined {
  if (text === undefined) return undefined;
  try {
    return ipBytes(text);
  } catch {
    return undefined;
  }
}
