import type { PeerCloseCode } from './errors';
import type { WebseedReason } from './policies/webseed';

/** A block on the wire: piece index, byte offset in the piece, length. */
export interface BlockRef {
  index: number;
  begin: number;
  length: number;
}

/**
 * What the swarm asks its adapter to do. Peer actions name the adapter's peer key; the adapter
 * maps them onto its wire connection (or, in the simulator, onto virtual links).
 */
export type SwarmAction =
  | { type: 'choke' | 'unchoke' | 'interested' | 'not-interested'; peer: number }
  | ({ type: 'request' | 'cancel'; peer: number } & BlockRef)
  /** Announce a verified (or, super-seeding, revealed) piece to one peer. */
  | { type: 'have'; peer: number; index: number }
  /** Read this block and send it to the peer, then call `blockSent`. */
  | ({ type: 'serve'; peer: number } & BlockRef)
  /**
   * Every block of the piece arrived: write and verify it, then call `pieceVerified` or
   * `pieceCorrupt`. `recordLeaves`: on failure pass the failed data's block hashes (several peers
   * contributed, blame needs them). `needGoodLeaves`: on success pass the block hashes (a failed
   * attempt waits for them).
   */
  | { type: 'write'; index: number; recordLeaves: boolean; needGoodLeaves: boolean }
  /** Ask the peer for the piece's block hashes (BEP 52), check them, then call `blockHashes`. */
  | { type: 'request-block-hashes'; peer: number; index: number }
  /** Fetch the piece from the webseed, write and verify it, then call `pieceVerified`/`pieceCorrupt` or `webseedFailed`. */
  | { type: 'webseed-fetch'; index: number; reason: WebseedReason }
  | { type: 'close'; peer: number; code: PeerCloseCode; message: string }
  /** A piece failed verification; `senders` are the peers that supplied it ('webseed' for the origin). */
  | { type: 'piece-failed'; index: number; senders: string[] }
  | { type: 'banned'; name: string; strikes: number }
  | { type: 'complete' };
