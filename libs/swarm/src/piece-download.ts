export const BlockState = { Missing: 0, Requested: 1, Received: 2 } as const;

/**
 * One piece being fetched from peers: which blocks are missing, requested (and from whom) or
 * received (and from whom). The data lives with the adapter; this is only the bookkeeping.
 */
export class PieceDownload {
  readonly state: Uint8Array;
  /** Peer keys we asked for each block (several in end game). */
  readonly requesters: (number[] | undefined)[];
  /** When each block was first requested (end game duplicates only blocks that are overdue). */
  readonly requestedAt: Float64Array;
  /** Peer names that supplied each received block. */
  readonly senders: (string | undefined)[];
  received = 0;
  /** Blocks in state Missing. */
  unrequested: number;
  /** Complete and handed to the adapter to write and verify. */
  writing = false;
  /** A re-fetch of a piece whose blame is unresolved is fetched by one peer only (`owner`). */
  owner: number | undefined;

  constructor(
    readonly index: number,
    readonly numBlocks: number,
    readonly exclusive: boolean,
  ) {
    this.state = new Uint8Array(numBlocks);
    this.requesters = new Array<number[] | undefined>(numBlocks).fill(undefined);
    this.requestedAt = new Float64Array(numBlocks);
    this.senders = new Array<string | undefined>(numBlocks).fill(undefined);
    this.unrequested = numBlocks;
  }

  get complete(): boolean {
    return this.received === this.numBlocks;
  }

  contributors(): Set<string> {
    const out = new Set<string>();
    for (const s of this.senders) if (s !== undefined) out.add(s);
    return out;
  }

  markRequested(block: number, peer: number, now: number): void {
    if (this.state[block] === BlockState.Missing) {
      this.state[block] = BlockState.Requested;
      this.requestedAt[block] = now;
      this.unrequested--;
    }
    const list = this.requesters[block];
    if (list) list.push(peer);
    else this.requesters[block] = [peer];
  }

  /** `peer` no longer fetches `block`; the block is missing again when nobody does. */
  release(block: number, peer: number): void {
    const list = this.requesters[block];
    if (!list) return;
    const at = list.indexOf(peer);
    if (at >= 0) list.splice(at, 1);
    if (list.length > 0) return;
    this.requesters[block] = undefined;
    if (this.state[block] === BlockState.Requested) {
      this.state[block] = BlockState.Missing;
      this.unrequested++;
    }
  }

  /** Records a block; returns the other requesters (to cancel), or null for a duplicate. */
  receive(block: number, sender: string, from: number): number[] | null {
    if (this.state[block] === BlockState.Received) return null;
    if (this.state[block] === BlockState.Missing) this.unrequested--;
    this.state[block] = BlockState.Received;
    this.senders[block] = sender;
    this.received++;
    const others = (this.requesters[block] ?? []).filter((r) => r !== from);
    this.requesters[block] = undefined;
    return others;
  }

  /** Forgets the blocks `sender` supplied (a banned peer): they are fetched again. */
  discardFrom(sender: string): void {
    for (let b = 0; b < this.numBlocks; b++) {
      if (this.senders[b] !== sender || this.state[b] !== BlockState.Received) continue;
      this.senders[b] = undefined;
      this.state[b] = BlockState.Missing;
      this.received--;
      this.unrequested++;
    }
  }
}
