/**
 * Piece picking: which new piece to start fetching from a peer. Partial pieces are finished
 * before any new one starts (the swarm does that); the picker only chooses among candidates.
 */
export interface PickContext {
  readonly numPieces: number;
  /** Pieces we hold verified. */
  readonly verifiedPieces: number;
  /** The peer has it, we lack it, nobody fetches it, the peer did not just reject it. */
  isCandidate(index: number): boolean;
  /** Connected peers that announced the piece. */
  availability(index: number): number;
  /** Uniform in [0, 1). */
  random(): number;
}

export interface PiecePicker {
  readonly name: string;
  pick(ctx: PickContext): number | undefined;
}

/** Uniform among candidates: a random start, then the first candidate at or after it (wrapping). */
function randomCandidate(ctx: PickContext): number | undefined {
  const n = ctx.numPieces;
  const start = Math.min(n - 1, Math.floor(ctx.random() * n));
  for (let k = 0; k < n; k++) {
    const index = start + k < n ? start + k : start + k - n;
    if (ctx.isCandidate(index)) return index;
  }
  return undefined;
}

export class RandomPicker implements PiecePicker {
  readonly name = 'random';
  pick(ctx: PickContext): number | undefined {
    return randomCandidate(ctx);
  }
}

/**
 * Random for the first few pieces (a newcomer gets something to trade quickly, whatever its
 * rarity), then rarest-first: the candidate fewest connected peers hold, ties broken by a random
 * start so that peers do not all chase the same rare piece.
 */
export class RarestFirstPicker implements PiecePicker {
  readonly name = 'rarest-first';
  constructor(private readonly randomFirstPieces = 4) {}

  pick(ctx: PickContext): number | undefined {
    if (ctx.verifiedPieces < this.randomFirstPieces) return randomCandidate(ctx);
    const n = ctx.numPieces;
    const start = Math.min(n - 1, Math.floor(ctx.random() * n));
    let best: number | undefined;
    let bestCount = Infinity;
    for (let k = 0; k < n; k++) {
      const index = start + k < n ? start + k : start + k - n;
      // Rarity first: it is cheaper to read than candidacy, and most pieces are not rarer.
      const count = ctx.availability(index);
      if (count >= bestCount || !ctx.isCandidate(index)) continue;
      best = index;
      bestCount = count;
      // Only the asking peer holds it: nothing can be rarer.
      if (count <= 1) break;
    }
    return best;
  }
}
