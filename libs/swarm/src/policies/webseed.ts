/**
 * When to fetch a piece from the webseed (BEP 19 origin) instead of waiting for peers, and which.
 * Every decision carries its reason; the adapter counts them in metrics.
 */
export type WebseedReason = 'no-peers' | 'piece-unavailable' | 'slow-peers' | 'origin-share';

export interface WebseedContext {
  readonly now: number;
  readonly numPieces: number;
  /** We lack it and nobody (peer or webseed) is fetching it. */
  isWanted(index: number): boolean;
  /** Connected peers that hold it: those that announced it, and seeds (also super-seeds, which announce little). */
  availability(index: number): number;
  /** Connected peers that announced it: a super-seed counts only for the pieces it revealed to us. */
  announcedBy(index: number): number;
  /** How long (ms) the piece has been wanted with no connected peer holding it (0: a peer has it). */
  unavailableFor(index: number): number;
  /**
   * Among us and the connected peers that lack the piece, we are the one its rendezvous hash
   * names: the peer expected to fetch it from the origin first, so that the fleet shares the
   * origin's pieces out instead of all fetching the same ones.
   */
  isResponsible(index: number): boolean;
  /**
   * How long (ms) the peer responsible for the piece has announced no new piece (or, if it never
   * did, since it connected): a responsible peer that keeps making progress is waited for.
   */
  responsibleQuietFor(index: number): number;
  /** Peers connected (handshake done). */
  readonly connectedPeers: number;
  /** Our origin fetches in flight. */
  readonly inFlight: number;
  /**
   * How long (ms) no connected peer has held a piece we want; undefined while some peer holds
   * one (0 would read as "peerless since now" to a policy waiting 0 ms).
   */
  readonly peerlessFor: number | undefined;
  /** Download rate from peers, bytes per second. */
  readonly peerRate: number;
  /** How long (ms) `peerRate` has been below the configured slow threshold; undefined: not slow, or no threshold. */
  readonly slowFor: number | undefined;
  random(): number;
}

export interface WebseedDecision {
  index: number;
  reason: WebseedReason;
}

export interface WebseedPolicy {
  readonly name: string;
  /**
   * The origin is asked for its share of the pieces (inOriginShare) alongside the peers, so
   * seeds offer those pieces last.
   */
  readonly sharesWithOrigin: boolean;
  next(ctx: WebseedContext): WebseedDecision | undefined;
}

/**
 * The pieces the origin is asked for first when it shares the work with seeds: every other
 * piece, so that both halves spread over the whole package. A rule every host computes alike,
 * so seeds and downloaders agree on it without a word.
 */
export function inOriginShare(index: number): boolean {
  return index % 2 === 1;
}

export class NeverWebseed implements WebseedPolicy {
  readonly name = 'never';
  readonly sharesWithOrigin = false;
  next(): WebseedDecision | undefined {
    return undefined;
  }
}

export interface FallbackTimings {
  /** Wait this long with no peer holding anything we want before using the origin. */
  noPeersMs: number;
  /** A piece nobody holds is fetched at once by its responsible peer, by the others after this. */
  unavailableMs: number;
  /** Peer download below the slow threshold this long: take rarest pieces from the origin too. */
  slowMs: number;
}

/**
 * Peers first; the origin only when (1) a piece no connected peer holds is ours by rendezvous hash
 * (at once), or has been unavailable for `unavailableMs` while the peer responsible for it
 * announced nothing new for as long (it is gone, stuck or cannot reach the origin), (2) no peer
 * has been connected for `noPeersMs`, or (3) peers have delivered below the slow threshold for
 * `slowMs`. Peers that are as empty as we are do not count as missing: they fetch their share.
 */
export class FallbackWebseed implements WebseedPolicy {
  readonly name = 'fallback';
  readonly sharesWithOrigin = false;
  constructor(private readonly timings: FallbackTimings) {}

  next(ctx: WebseedContext): WebseedDecision | undefined {
    const n = ctx.numPieces;
    const start = Math.min(n - 1, Math.floor(ctx.random() * n));
    const withPeers = ctx.connectedPeers > 0;
    let overdue: number | undefined;
    let rarest: number | undefined;
    let rarestCount = Infinity;
    for (let k = 0; k < n; k++) {
      const index = start + k < n ? start + k : start + k - n;
      if (!ctx.isWanted(index)) continue;
      const count = ctx.availability(index);
      if (count === 0 && withPeers) {
        if (ctx.isResponsible(index)) return { index, reason: 'piece-unavailable' };
        if (overdue === undefined && ctx.unavailableFor(index) >= this.timings.unavailableMs && ctx.responsibleQuietFor(index) >= this.timings.unavailableMs) {
          overdue = index;
        }
      }
      if (count < rarestCount) {
        rarest = index;
        rarestCount = count;
      }
    }
    if (overdue !== undefined) return { index: overdue, reason: 'piece-unavailable' };
    if (rarest === undefined) return undefined;
    if (!withPeers && ctx.peerlessFor !== undefined && ctx.peerlessFor >= this.timings.noPeersMs) return { index: rarest, reason: 'no-peers' };
    if (ctx.slowFor !== undefined && ctx.slowFor >= this.timings.slowMs) return { index: rarest, reason: 'slow-peers' };
    return undefined;
  }
}

/**
 * Origin fetches per host at once while peers are connected (alone, or with slow peers, it is
 * webseedConcurrency). The origin's uplink is shared by every host fetching from it: one piece
 * each completes, and is announced, soonest, so that fewer are also sent by a seed done with its
 * own pieces. Simulator at the lab's scale, 16 downloaders: 27.0 s with 4 at once, 26.0 s with 1.
 */
const SHARED_FETCHES_AT_ONCE = 1;

/**
 * The origin as a second source next to the seeds: everything FallbackWebseed does, and also,
 * while peers are connected, a piece of the origin's share (inOriginShare) that no peer has
 * announced and whose rendezvous hash names us. Seeds offer the origin's share last, so the
 * seed and the origin each send their own half first and meet at the end. While peers are
 * connected it keeps one fetch in flight (slow peers excepted). On 20 Mbit/s links
 * with the origin capped like one more host, the swarm finishes sooner than the seed alone could
 * send one copy, for about half a copy from the origin. 'fallback' spends less of the origin.
 */
export class AssistWebseed implements WebseedPolicy {
  readonly name = 'assist';
  readonly sharesWithOrigin = true;
  private readonly fallback: FallbackWebseed;

  constructor(timings: FallbackTimings) {
    this.fallback = new FallbackWebseed(timings);
  }

  next(ctx: WebseedContext): WebseedDecision | undefined {
    const fallback = this.fallback.next(ctx);
    if (ctx.connectedPeers === 0) return fallback;
    // Sharing the origin with peers: one piece at a time, unless the peers are slow.
    if (ctx.inFlight >= SHARED_FETCHES_AT_ONCE) return fallback?.reason === 'slow-peers' ? fallback : undefined;
    if (fallback) return fallback;
    const n = ctx.numPieces;
    const start = Math.min(n - 1, Math.floor(ctx.random() * n));
    for (let k = 0; k < n; k++) {
      const index = start + k < n ? start + k : start + k - n;
      if (inOriginShare(index) && ctx.isWanted(index) && ctx.announcedBy(index) === 0 && ctx.isResponsible(index)) return { index, reason: 'origin-share' };
    }
    return undefined;
  }
}
