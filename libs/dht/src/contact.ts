import type { NodeId } from './node-id';

/** Where a node listens, under the id its certificate proves. */
export interface Contact {
  readonly id: NodeId;
  /** Canonical IP text (see address.ts). */
  readonly address: string;
  readonly port: number;
  /**
   * The node's site label, set only by the adapter from the node's verified certificate (never
   * from a message): it groups nodes for the diversity limit in 'site' mode.
   */
  readonly site?: string;
}

/**
 * The verified origin of an incoming message, as the adapter established it on the connection
 * (or from the signature of a datagram): the message is ignored unless the id it claims is `id`.
 */
export interface Sender {
  /** SHA-256 of the public key of the certificate the sender presented (nodeIdFromPublicKeyDer). */
  readonly id: NodeId;
  /** The remote IP of the connection: tokens are bound to it, announced peers are stored with it. */
  readonly address: string;
  /**
   * The sender's DHT listening port when the adapter knows it (a datagram's source port, or a port
   * the transport's handshake states). Without it the sender is answered but not added to the
   * routing table: an ephemeral TCP source port would be useless to others.
   */
  readonly port?: number;
  /** The agent id (certificate CN): the identity an announce stores. Required to announce. */
  readonly agentId?: string;
  /** The site label of the sender's certificate, when it has one. */
  readonly site?: string;
}

/** A peer of a swarm, as get_peers returns it: dial one of `addresses` at `port` and expect `agentId`'s certificate. */
export interface PeerInfo {
  readonly agentId: string;
  readonly addresses: readonly string[];
  readonly port: number;
}

export function sameEndpoint(a: { address: string; port: number }, b: { address: string; port: number }): boolean {
  return a.port === b.port && a.address === b.address;
}
