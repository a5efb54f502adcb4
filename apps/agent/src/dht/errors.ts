import { ShoalError } from '@shoal/torrent';

export type DhtTransportCode =
  /** A frame announced more bytes than a DHT message may have (MAX_FRAME_BYTES). */
  | 'DHT_FRAME_TOO_LARGE'
  /** A frame of length 0: no DHT message is empty. */
  | 'DHT_FRAME_EMPTY'
  /** The stream ended in the middle of a frame. */
  | 'DHT_FRAME_TRUNCATED'
  /** The first frame was not a hello (bencoded {port}), or the hello was malformed. */
  | 'DHT_BAD_HELLO'
  /** No hello arrived in time after the TLS handshake. */
  | 'DHT_HELLO_TIMEOUT'
  /** The node at a contact's address presented a certificate of another node id. */
  | 'DHT_WRONG_NODE'
  /** A connection to ourselves (our own address among the bootstrap endpoints). */
  | 'DHT_SELF'
  /** Every connection slot holds queries in flight; a new connection is refused. */
  | 'DHT_CONNECTION_LIMIT'
  /** Too many queries in flight on one connection. */
  | 'DHT_IN_FLIGHT_LIMIT'
  /** The peer does not read: more than MAX_WRITE_BUFFER bytes wait to be sent. */
  | 'DHT_PEER_NOT_READING'
  /** The connection closed (by either side, the idle timeout, a revocation or shutdown). */
  | 'DHT_CONNECTION_CLOSED';

/** Why the DHT transport refused or closed a connection, or failed a query; stable codes for logs and metrics. */
export class DhtTransportError extends ShoalError {
  constructor(
    override readonly code: DhtTransportCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
