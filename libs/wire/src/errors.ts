import { ShoalError } from '@shoal/torrent';

/**
 * Why a peer connection was closed. Every code but the last three names something the remote
 * peer did wrong; a connection closes on the first one (DESIGN.md, "Reliability rules"), except
 * the two PEX codes: a ut_pex message breaking BEP 11 is ignored and counted, not a reason to
 * drop a peer that serves data (see pex.ts).
 */
export type WireErrorCode =
  /** The 68-byte handshake is malformed (length byte, protocol string). */
  | 'WIRE_BAD_HANDSHAKE'
  /** The handshake names another torrent than this connection's. */
  | 'WIRE_INFOHASH_MISMATCH'
  /** The remote peer id is our own: we connected to ourselves. */
  | 'WIRE_SELF_CONNECTION'
  /** The handshake did not complete within `handshakeTimeoutMs`. */
  | 'WIRE_HANDSHAKE_TIMEOUT'
  /** No complete message (not even a keep-alive) within `idleTimeoutMs`. */
  | 'WIRE_IDLE_TIMEOUT'
  /** A length prefix above the cap for its message type (decided on the prefix alone). */
  | 'WIRE_FRAME_TOO_LARGE'
  /** A message whose length is wrong for its type (fixed-size messages, empty piece blocks). */
  | 'WIRE_BAD_PAYLOAD_LENGTH'
  /** A message id Shoal does not speak: the fleet is closed, so there is nothing to skip. */
  | 'WIRE_UNKNOWN_MESSAGE'
  /** A BEP 6 or BEP 10 message on a connection that did not negotiate that extension. */
  | 'WIRE_NOT_NEGOTIATED'
  /** A message in the wrong place: bitfield / have all / have none late or twice, or missing. */
  | 'WIRE_OUT_OF_ORDER'
  /** A bitfield of the wrong length or with spare bits set. */
  | 'WIRE_BAD_BITFIELD'
  /** A piece index at or beyond the torrent's piece count. */
  | 'WIRE_BAD_PIECE_INDEX'
  /** A request (or reject / cancel) of zero bytes, or one that runs past the end of its piece. */
  | 'WIRE_BAD_REQUEST'
  /** A request (or reject / cancel) for more than one 16 KiB block. */
  | 'WIRE_REQUEST_TOO_LARGE'
  /** More queued requests than we announced (`reqq`), without the fast extension to reject. */
  | 'WIRE_REQUEST_QUEUE_FULL'
  /** A piece for a block we never requested (or no longer wait for). */
  | 'WIRE_UNSOLICITED_PIECE'
  /** A piece for a requested offset with another length than the request. */
  | 'WIRE_BAD_PIECE_LENGTH'
  /** A reject for a request we never made (or that was already answered). */
  | 'WIRE_UNSOLICITED_REJECT'
  /** A hash request / hash reject header outside what any BEP 52 tree allows. */
  | 'WIRE_BAD_HASH_REQUEST'
  /** A hashes message whose header or hash count is inconsistent. */
  | 'WIRE_BAD_HASHES'
  /** Hashes or a hash reject for a hash request we never made. */
  | 'WIRE_UNSOLICITED_HASHES'
  /** An extended message whose payload is not one strictly bencoded dictionary within the caps. */
  | 'WIRE_BAD_EXTENDED'
  /** A BEP 10 handshake dictionary with a field of the wrong type or out of range. */
  | 'WIRE_BAD_EXTENDED_HANDSHAKE'
  /** An extended message id we did not announce in our `m` dictionary. */
  | 'WIRE_UNKNOWN_EXTENSION'
  /** A ut_pex dictionary that breaks BEP 11 (field types and lengths, counts, duplicates). Ignored, not closed. */
  | 'WIRE_BAD_PEX'
  /** A ut_pex message sooner after the previous one than the receive interval allows. Ignored, not closed. */
  | 'WIRE_PEX_TOO_FREQUENT'
  /** Any other breach of the wire protocol (available to callers, e.g. the swarm). */
  | 'WIRE_PROTOCOL_VIOLATION'
  /** The transport ended (`end()`), possibly in the middle of a frame. */
  | 'WIRE_PEER_CLOSED'
  /** The local side closed the connection (`close()`). */
  | 'WIRE_LOCAL_CLOSE'
  /** A bug in this library surfaced while handling input: the connection is closed, not the process. */
  | 'WIRE_INTERNAL_ERROR';

/** A peer-wire failure with a stable code; carried by the `closed` event. */
export class WireError extends ShoalError {
  constructor(
    override readonly code: WireErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/**
 * The local caller misused the API (a bad argument, a message the negotiated protocol does not
 * allow, sending before the handshake): a programming error, thrown rather than turned into a close.
 */
export class WireUsageError extends ShoalError {
  constructor(message: string) {
    super('WIRE_USAGE', message);
  }
}
