import { WireError, type WireErrorCode } from '@shoal/wire';

/**
 * Why the session (rather than the wire protocol) ended a peer connection:
 * - PEER_BANNED: the peer sent data that failed verification too often (strikes);
 * - PEER_LIMIT: the session already holds `maxPeers` connections;
 * - PEER_DUPLICATE: a second connection with the same peer (both dialled at once): the one the
 *   lower agent id initiated is kept, on both sides;
 * - SESSION_CLOSED: `close()` was called;
 * - SOCKET_ERROR: the transport failed (reset, TLS error);
 * - SESSION_INTERNAL: a bug in the session surfaced while handling this peer (the peer is closed,
 *   the process and the other peers go on).
 */
export type SessionPeerCode = 'PEER_BANNED' | 'PEER_LIMIT' | 'PEER_DUPLICATE' | 'SESSION_CLOSED' | 'SOCKET_ERROR' | 'SESSION_INTERNAL';

const WIRE_CODE: Record<SessionPeerCode, WireErrorCode> = {
  PEER_BANNED: 'WIRE_PROTOCOL_VIOLATION',
  PEER_LIMIT: 'WIRE_LOCAL_CLOSE',
  PEER_DUPLICATE: 'WIRE_LOCAL_CLOSE',
  SESSION_CLOSED: 'WIRE_LOCAL_CLOSE',
  SOCKET_ERROR: 'WIRE_PEER_CLOSED',
  SESSION_INTERNAL: 'WIRE_INTERNAL_ERROR',
};

/**
 * A close reason decided by the session. It is a WireError (so 'peer-closed' always carries one,
 * with the nearest wire code: a ban is a WIRE_PROTOCOL_VIOLATION) plus a precise `sessionCode`.
 */
export class SessionPeerError extends WireError {
  constructor(
    readonly sessionCode: SessionPeerCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(WIRE_CODE[sessionCode], message, options);
  }
}
