import { type Location, PeerIndex } from '@shoal/topology';

/** Which of the peers we could dial to dial first. */
export interface RankCandidate {
  readonly id: string;
  readonly location: Location;
}

export interface RankContext {
  readonly self: Location;
  readonly selfId: string;
  /** How many to return (connection slots left). */
  readonly count: number;
  random(): number;
}

export interface PeerRanking {
  readonly name: string;
  rank<P extends RankCandidate>(candidates: readonly P[], ctx: RankContext): P[];
}

/**
 * Same site, then zone, then region, with `remoteShare` of the slots kept for random peers
 * further away so pieces keep crossing sites (the tracker ranks the same way).
 */
export class TopologyRanking implements PeerRanking {
  readonly name = 'topology';
  constructor(private readonly remoteShare: number) {}

  rank<P extends RankCandidate>(candidates: readonly P[], ctx: RankContext): P[] {
    return new PeerIndex<P>(candidates).select({ asker: ctx.self, askerId: ctx.selfId, count: ctx.count, remoteShare: this.remoteShare, random: ctx.random });
  }
}

/** Uniform, ignoring location (a baseline for the lab). */
export class RandomRanking implements PeerRanking {
  readonly name = 'random';

  rank<P extends RankCandidate>(candidates: readonly P[], ctx: RankContext): P[] {
    const pool = candidates.filter((c) => c.id !== ctx.selfId);
    for (let i = pool.length - 1; i > 0; i--) {
      const j = Math.min(i, Math.floor(ctx.random() * (i + 1)));
      [pool[i], pool[j]] = [pool[j] as P, pool[i] as P];
    }
    return pool.slice(0, Math.max(0, ctx.count));
  }
}
