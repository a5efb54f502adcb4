import { MAX_MESSAGE_BYTES } from '@shoal/dht';
import { type BValue, decode, encode } from '@shoal/torrent';
import { DhtTransportError } from './errors';

/**
 * DHT messages on a TLS stream: each frame is a 4-byte big-endian length followed by that many
 * bytes. The first frame each side sends is its hello (below); every later frame is one KRPC
 * message (libs/dht codec). A length of 0 or above MAX_FRAME_BYTES ends the connection before any
 * byte of the frame is buffered, so a connection holds at most one frame's worth of memory.
 */
export const FRAME_HEADER_BYTES = 4;
/** The codec's own cap: no valid message is longer, so no longer frame is worth reading. */
export const MAX_FRAME_BYTES = MAX_MESSAGE_BYTES;
/** A hello is a few bytes; this leaves room for keys later versions may add. */
export const MAX_HELLO_BYTES = 256;

export function encodeFrame(payload: Uint8Array): Buffer {
  if (payload.length === 0 || payload.length > MAX_FRAME_BYTES) {
    throw new DhtTransportError(payload.length === 0 ? 'DHT_FRAME_EMPTY' : 'DHT_FRAME_TOO_LARGE', `a frame carries 1..${MAX_FRAME_BYTES} bytes, not ${payload.length}`);
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** Cuts a byte stream into frames; throws DhtTransportError on a length it refuses or a stream cut mid-frame. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length of the frame being read, once its header is complete. */
  private expected: number | undefined;

  /** Bytes held for a frame not yet complete. */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** The frames `chunk` completes, in order. */
  push(chunk: Uint8Array): Buffer[] {
    if (chunk.length > 0) {
      this.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const frames: Buffer[] = [];
    for (;;) {
      if (this.expected === undefined) {
        if (this.buffered < FRAME_HEADER_BYTES) return frames;
        const length = this.take(FRAME_HEADER_BYTES).readUInt32BE(0);
        if (length === 0) throw new DhtTransportError('DHT_FRAME_EMPTY', 'a frame of length 0');
        if (length > MAX_FRAME_BYTES) throw new DhtTransportError('DHT_FRAME_TOO_LARGE', `a frame of ${length} bytes exceeds ${MAX_FRAME_BYTES}`);
        this.expected = length;
      }
      if (this.buffered < this.expected) return frames;
      frames.push(this.take(this.expected));
      this.expected = undefined;
    }
  }

  /** The stream ended: anything left is a truncated frame. */
  end(): void {
    if (this.buffered > 0 || this.expected !== undefined) {
      throw new DhtTransportError('DHT_FRAME_TRUNCATED', `the stream ended inside a frame (${this.buffered} bytes of ${this.expected ?? 'a header'})`);
    }
  }

  private take(count: number): Buffer {
    const joined = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
    // Copied out: a frame outlives the socket's chunk it came in (the node may keep parts of it).
    const taken = Buffer.from(joined.subarray(0, count));
    const rest = joined.subarray(count);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return taken;
  }
}

/**
 * The first frame on a DHT connection, from each side: the port its DHT listens on (the agent's
 * peer port). TLS proves who the sender is and the socket where it is, but a dialler's source port
 * is ephemeral: without the hello, nodes that query us could not enter our routing table.
 * Bencoded {"port": N}; unknown keys are ignored so later versions can add some.
 */
export interface DhtHello {
  port: number;
}

export function encodeHello(hello: DhtHello): Buffer {
  return encode(new Map([['port', hello.port]]));
}

export function decodeHello(bytes: Uint8Array): DhtHello {
  if (bytes.length > MAX_HELLO_BYTES) throw new DhtTransportError('DHT_BAD_HELLO', `a hello of ${bytes.length} bytes exceeds ${MAX_HELLO_BYTES}`);
  let value: BValue;
  try {
    value = decode(bytes, { maxDepth: 2 });
  } catch (err) {
    throw new DhtTransportError('DHT_BAD_HELLO', `the hello is not bencode: ${(err as Error).message}`, { cause: err });
  }
  if (!(value instanceof Map)) throw new DhtTransportError('DHT_BAD_HELLO', 'the hello must be a dictionary');
  const port = value.get('port');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DhtTransportError('DHT_BAD_HELLO', 'the hello must name a port in 1..65535');
  }
  return { port };
}
