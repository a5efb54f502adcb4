/** Choking: which interested peers we upload to. */
export interface ChokePeer {
  readonly key: number;
  readonly interested: boolean;
  readonly unchoked: boolean;
  /** It stopped sending us data although we wait for blocks from it. */
  readonly snubbed: boolean;
  /** Bytes per second it sends us / we send it. */
  readonly downloadRate: number;
  readonly uploadRate: number;
  /** When we last unchoked it (-Infinity: never); kept while it stays unchoked. */
  readonly unchokedAt: number;
}

export interface ChokeContext {
  /** We hold the whole package (upload-only). */
  readonly seeding: boolean;
  /** Regular unchoke slots; one optimistic slot comes on top. */
  readonly slots: number;
  readonly now: number;
  random(): number;
  /** The optimistic unchoke of the previous round, if still connected, and since when. */
  readonly optimistic: { key: number; since: number } | undefined;
}

export interface ChokeDecision {
  unchoke: Set<number>;
  optimistic: { key: number; since: number } | undefined;
}

export interface Choker {
  readonly name: string;
  choose(peers: readonly ChokePeer[], ctx: ChokeContext): ChokeDecision;
}

/** How long the optimistic slot stays with one peer. */
export const OPTIMISTIC_ROTATION_MS = 30_000;
/** While seeding, a peer keeps its slot this long before the longest-waiting peer takes it. */
export const SEED_ROTATION_MS = 30_000;

/**
 * BitTorrent's choker: while downloading, the peers that send us the most (tit-for-tat); while
 * seeding, round-robin (each keeps its slot for SEED_ROTATION_MS, then the longest-waiting peer
 * takes it, so every peer gets the seed's pieces in turn). One optimistic slot rotates every
 * OPTIMISTIC_ROTATION_MS among choked interested peers, newcomers first, so new peers get
 * something to trade and better partners are discovered. Snubbed peers lose their regular slot.
 */
export class TitForTatChoker implements Choker {
  readonly name = 'tit-for-tat';

  choose(peers: readonly ChokePeer[], ctx: ChokeContext): ChokeDecision {
    const interested = peers.filter((p) => p.interested);
    const regular = ctx.seeding ? this.roundRobin(interested, ctx) : this.bestSenders(interested, ctx.slots);
    const unchoke = new Set(regular);
    const optimistic = this.optimisticSlot(interested, unchoke, ctx);
    if (optimistic) unchoke.add(optimistic.key);
    return { unchoke, optimistic };
  }

  private bestSenders(interested: readonly ChokePeer[], slots: number): number[] {
    return interested
      .filter((p) => !p.snubbed)
      .sort((a, b) => b.downloadRate - a.downloadRate || b.uploadRate - a.uploadRate || a.key - b.key)
      .slice(0, slots)
      .map((p) => p.key);
  }

  private roundRobin(interested: readonly ChokePeer[], ctx: ChokeContext): number[] {
    // The optimistic holder's turn is the optimistic slot's: counted here it would take over a
    // regular turn that just began.
    const keep = interested.filter((p) => p.unchoked && p.key !== ctx.optimistic?.key && ctx.now - p.unchokedAt < SEED_ROTATION_MS);
    // A peer whose turn just ended was served until now (its unchokedAt is its oldest moment):
    // it queues behind every choked peer, or it would win the slot straight back.
    const servedUntil = (p: ChokePeer) => (p.unchoked ? ctx.now : p.unchokedAt);
    const waiting = interested.filter((p) => !keep.includes(p)).sort((a, b) => servedUntil(a) - servedUntil(b) || a.key - b.key);
    return [...keep.sort((a, b) => a.unchokedAt - b.unchokedAt || a.key - b.key), ...waiting].slice(0, ctx.slots).map((p) => p.key);
  }

  private optimisticSlot(interested: readonly ChokePeer[], regular: ReadonlySet<number>, ctx: ChokeContext): ChokeDecision['optimistic'] {
    const current = ctx.optimistic;
    if (current && ctx.now - current.since < OPTIMISTIC_ROTATION_MS && !regular.has(current.key) && interested.some((p) => p.key === current.key)) {
      return current;
    }
    const choices = interested.filter((p) => !regular.has(p.key) && p.key !== current?.key);
    const pool = choices.filter((p) => p.unchokedAt === -Infinity);
    const from = pool.length > 0 ? pool : choices;
    if (from.length === 0) {
      // Nobody else to rotate to: the current holder keeps the slot if it still wants it.
      const stays = current && !regular.has(current.key) && interested.some((p) => p.key === current.key);
      return stays ? current : undefined;
    }
    const chosen = from[Math.min(from.length - 1, Math.floor(ctx.random() * from.length))] as ChokePeer;
    return { key: chosen.key, since: ctx.now };
  }
}

/**
 * Fleet peers are trusted not to free-ride: every interested peer is unchoked up to the slots
 * (and the optimistic slot's worth on top), keeping those already unchoked, then the longest
 * waiting. No rates, no rotation churn.
 */
export class FleetChoker implements Choker {
  readonly name = 'fleet';

  choose(peers: readonly ChokePeer[], ctx: ChokeContext): ChokeDecision {
    const limit = ctx.slots + 1;
    const interested = peers.filter((p) => p.interested);
    const ordered = [...interested.filter((p) => p.unchoked), ...interested.filter((p) => !p.unchoked).sort((a, b) => a.unchokedAt - b.unchokedAt || a.key - b.key)];
    return { unchoke: new Set(ordered.slice(0, limit).map((p) => p.key)), optimistic: undefined };
  }
}
