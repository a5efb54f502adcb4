import type { TLSSocket } from 'node:tls';
import type { NodeId, QueryMethod, Sender } from '@shoal/dht';
import { DhtTransportError } from './errors';
import { FrameReader, decodeHello, encodeFrame, encodeHello } from './framing';

/** Who is at the other end, as the connection's certificate proved it. */
export interface LinkPeer {
  /** SHA-256 of the certificate's SubjectPublicKeyInfo (nodeIdFromPublicKeyDer). */
  id: NodeId;
  idHex: string;
  agentId: string;
  serial: string;
  /** The socket's remote IP, canonical (libs/dht canonicalIp). */
  address: string;
}

/** The node's view of a link's peer: a Sender that also carries the link its replies go back on. */
export interface LinkSender extends Sender {
  readonly link: DhtLink;
}

/** A query of ours waiting for its answer on this link. */
export interface OutstandingQuery {
  rpc: number;
  method: QueryMethod;
}

export interface LinkEvents {
  /** A frame after the hello: a KRPC message (or garbage, for the node to count). */
  message(link: DhtLink, bytes: Buffer): void;
  /** The link is gone; `reason` says why when it was not an orderly close. */
  closed(link: DhtLink, reason: Error | undefined): void;
}

export interface LinkOptions {
  socket: TLSSocket;
  peer: LinkPeer;
  direction: 'inbound' | 'outbound';
  /** Our DHT port, sent in our hello. */
  ownPort: number;
  /** The port we dialled (outbound): proven reachable, so it wins over what the hello says. */
  dialledPort?: number;
  /** The peer's site label, when the tracker reported one. */
  site?: string;
  helloTimeoutMs: number;
  idleTimeoutMs: number;
  /** Bytes queued for the peer beyond which it counts as not reading. */
  maxWriteBuffer: number;
  events: LinkEvents;
}

/**
 * One DHT connection with another node, either direction: frames in and out, the hello exchange,
 * idle and hello timeouts, backpressure. Queries and replies travel both ways on it; the service
 * decides what they mean.
 */
export class DhtLink {
  readonly peer: LinkPeer;
  readonly direction: 'inbound' | 'outbound';
  readonly outstanding = new Map<string, OutstandingQuery>();
  /** When a frame last went either way (for choosing which idle link to close first). */
  lastActive = Date.now();
  private readonly socket: TLSSocket;
  private readonly reader = new FrameReader();
  private readonly options: LinkOptions;
  private helloTimer: NodeJS.Timeout | undefined;
  private senderView: LinkSender | undefined;
  private closed = false;

  constructor(options: LinkOptions) {
    this.options = options;
    this.socket = options.socket;
    this.peer = options.peer;
    this.direction = options.direction;
    this.helloTimer = setTimeout(() => this.close(new DhtTransportError('DHT_HELLO_TIMEOUT', `no hello within ${options.helloTimeoutMs} ms`)), options.helloTimeoutMs);
    this.helloTimer.unref();
    this.socket.setTimeout(options.idleTimeoutMs);
    this.socket.on('timeout', () => {
      // Still waiting for answers: keep it, and look again after another idle period.
      if (this.outstanding.size > 0) this.socket.setTimeout(options.idleTimeoutMs);
      else this.close();
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => {
      try {
        this.reader.end();
        this.close();
      } catch (err) {
        this.close(err as Error);
      }
    });
    this.socket.on('error', (err) => this.close(err));
    this.socket.on('close', () => this.close());
    this.write(encodeHello({ port: options.ownPort }));
  }

  /** The peer as the node sees it, once its hello arrived. */
  get sender(): LinkSender | undefined {
    return this.senderView;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  send(message: Buffer): void {
    if (!this.closed) this.write(message);
  }

  close(reason?: Error): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.helloTimer);
    this.socket.destroy();
    this.options.events.closed(this, reason);
  }

  private write(payload: Buffer): void {
    if (this.socket.writableLength > this.options.maxWriteBuffer) {
      this.close(new DhtTransportError('DHT_PEER_NOT_READING', `${this.socket.writableLength} bytes wait to be sent`));
      return;
    }
    this.lastActive = Date.now();
    this.socket.write(encodeFrame(payload));
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let frames: Buffer[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.close(err as Error);
      return;
    }
    if (frames.length > 0) this.lastActive = Date.now();
    for (const frame of frames) {
      if (this.closed) return;
      if (this.senderView) {
        this.options.events.message(this, frame);
        continue;
      }
      let port: number;
      try {
        port = decodeHello(frame).port;
      } catch (err) {
        this.close(err as Error);
        return;
      }
      clearTimeout(this.helloTimer);
      const { site } = this.options;
      this.senderView = {
        id: this.peer.id,
        address: this.peer.address,
        port: this.options.dialledPort ?? port,
        agentId: this.peer.agentId,
        ...(site !== undefined ? { site } : {}),
        link: this,
      };
    }
  }
}
