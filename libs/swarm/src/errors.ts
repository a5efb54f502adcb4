import { ShoalError } from '@shoal/torrent';

/** A swarm option or piece layout that cannot work (a local programming or configuration error). */
export class SwarmConfigError extends ShoalError {
  constructor(message: string) {
    super('SWARM_BAD_CONFIG', message);
  }
}

/** Why the swarm closes a peer; the adapter turns it into its own close reason. */
export type PeerCloseCode = 'PEER_BANNED';
