import { ShoalError } from '@shoal/torrent';

export type DhtErrorCode =
  /** A DHT setting is out of range or of the wrong type. */
  | 'DHT_BAD_CONFIG'
  /** The adapter passed something the API does not accept (a 31-byte id, a port of 0...). */
  | 'DHT_BAD_ARGUMENT'
  /** Text that is not an IPv4 or IPv6 address, or an address no node can have. */
  | 'DHT_BAD_ADDRESS'
  /** A message longer than MAX_MESSAGE_BYTES. */
  | 'DHT_MESSAGE_TOO_LARGE'
  /** A message that is not canonical bencode (the BencodeError is the cause). */
  | 'DHT_NOT_BENCODE'
  | 'DHT_MISSING_FIELD'
  | 'DHT_WRONG_TYPE'
  /** A byte string of the wrong length (an id that is not 32 bytes, nodes not a multiple of 38...). */
  | 'DHT_BAD_LENGTH'
  /** A field of the right type and length whose value is refused (port 0, multicast address...). */
  | 'DHT_BAD_VALUE'
  /** More nodes, peers or addresses than a message may carry. */
  | 'DHT_TOO_MANY'
  /** A query naming a method this node does not serve (answered with KRPC error 204). */
  | 'DHT_UNKNOWN_METHOD'
  /** A persisted routing table that cannot be read back. */
  | 'DHT_BAD_STATE';

/**
 * Every error the DHT raises on purpose. `field` names the part at fault (`r.nodes`,
 * `nodes[3].port`). `queryTransactionId` is set when a malformed message was recognisably a query,
 * so the node can answer it with a KRPC error instead of leaving the sender to time out.
 */
export class DhtError extends ShoalError {
  constructor(
    override readonly code: DhtErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown; queryTransactionId?: Buffer },
  ) {
    super(code, field ? `${field}: ${message}` : message, options);
    this.queryTransactionId = options?.queryTransactionId;
  }

  readonly queryTransactionId: Buffer | undefined;
}
