import { BLOCK_SIZE } from '@shoal/torrent';

export const BlockState = { Missing: 0, Requested: 1, Received: 2 } as const;

/**
 * One piece being assembled in memory: which blocks are missing, requested (and from whom) or
 * received (and from whom). `R` is the session's peer handle.
 */
export class PieceDownload<R> {
  readonly numBlocks: number;
  readonly state: Uint8Array;
  /** Who we asked for each block (several in end game). */
  readonly requesters: (R[] | undefined)[];
  /** Who supplied each received block (peer names). */
  readonly senders: (string | undefined)[];
  readonly buffer: Buffer;
  received = 0;
  /** Blocks in state Missing. */
  unrequested: number;
  /** Complete and handed to the store. */
  writing = false;
  /** A re-fetch after a corrupt attempt is fetched by one peer only (`owner`), to pin blame. */
  readonly exclusive: boolean;
  owner: R | undefined;

  constructor(
    readonly index: number,
    readonly size: number,
    exclusive = false,
  ) {
    this.numBlocks = Math.ceil(size / BLOCK_SIZE);
    this.state = new Uint8Array(this.numBlocks);
    this.requesters = new Array<R[] | undefined>(this.numBlocks).fill(undefined);
    this.senders = new Array<string | undefined>(this.numBlocks).fill(undefined);
    this.buffer = Buffer.allocUnsafe(size);
    this.unrequested = this.numBlocks;
    this.exclusive = exclusive;
  }

  blockLength(block: number): number {
    return Math.min(BLOCK_SIZE, this.size - block * BLOCK_SIZE);
  }

  get complete(): boolean {
    return this.received === this.numBlocks;
  }

  /** Peers that supplied at least one block. */
  contributors(): Set<string> {
    const out = new Set<string>();
    for (const s of this.senders) if (s !== undefined) out.add(s);
    return out;
  }

  markRequested(block: number, peer: R): void {
    if (this.state[block] === BlockState.Missing) {
      this.state[block] = BlockState.Requested;
      this.unrequested--;
    }
    const list = this.requesters[block];
    if (list) list.push(peer);
    else this.requesters[block] = [peer];
  }

  /** `peer` no longer fetches `block` (reject, choke, close); the block is missing again when nobody does. */
  release(block: number, peer: R): void {
    const list = this.requesters[block];
    if (!list) return;
    const at = list.indexOf(peer);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) {
      this.requesters[block] = undefined;
      if (this.state[block] === BlockState.Requested) {
        this.state[block] = BlockState.Missing;
        this.unrequested++;
      }
    }
  }

  /**
   * Stores a block's data; returns the other peers that were asked for it (to cancel), or null
   * when the block was already received (a duplicate).
   */
  receive(block: number, data: Uint8Array, sender: string, from: R): R[] | null {
    if (this.state[block] === BlockState.Received) return null;
    if (this.state[block] === BlockState.Missing) this.unrequested--;
    this.buffer.set(data, block * BLOCK_SIZE);
    this.state[block] = BlockState.Received;
    this.senders[block] = sender;
    this.received++;
    const others = (this.requesters[block] ?? []).filter((r) => r !== from);
    this.requesters[block] = undefined;
    return others;
  }

  /** Forgets the blocks `sender` supplied (a banned peer): they are fetched again. */
  discardFrom(sender: string): number {
    let n = 0;
    for (let b = 0; b < this.numBlocks; b++) {
      if (this.senders[b] === sender && this.state[b] === BlockState.Received) {
        this.senders[b] = undefined;
        this.state[b] = BlockState.Missing;
        this.received--;
        this.unrequested++;
        n++;
      }
    }
    return n;
  }
}
