import { createHash } from 'node:crypto';

/**
 * The session's swarm policies, kept as small pure functions so the swarm issue (rarest-first,
 * tit-for-tat choker, merkle smart ban, bandwidth-delay queues) can replace them one by one.
 */

// ------------------------------------------------------------------ piece picking

export interface PiecePickContext {
  numPieces: number;
  /** A piece this peer could start now: it has it, we lack it, nobody is fetching it. */
  isCandidate(index: number): boolean;
  /** Uniform in [0, 1). */
  random(): number;
}

/**
 * Random piece picking: a random starting point, then the first candidate at or after it
 * (wrapping). It costs the distance to the next candidate rather than a full scan, at the price
 * of a mild bias towards candidates that follow long runs of non-candidates; rarest-first
 * replaces it.
 */
export function pickPiece(ctx: PiecePickContext): number | undefined {
  const n = ctx.numPieces;
  if (n <= 0) return undefined;
  const start = Math.min(n - 1, Math.floor(ctx.random() * n));
  for (let k = 0; k < n; k++) {
    const index = start + k < n ? start + k : start + k - n;
    if (ctx.isCandidate(index)) return index;
  }
  return undefined;
}

// ------------------------------------------------------------------ request pipelining

/** Blocks we may still request from a peer: our queue depth, capped by the peer's `reqq`. */
export function requestBudget(queueDepth: number, peerReqq: number, outstanding: number): number {
  return Math.max(0, Math.min(queueDepth, peerReqq) - outstanding);
}

/**
 * Requests are topped up once this many slots are free (a quarter of the queue), so several go
 * out in one write instead of one per received block.
 */
export function refillBatch(queueDepth: number): number {
  return Math.max(1, queueDepth >> 2);
}

/** At most this many peers fetch one block at a time in end game. */
export const END_GAME_MAX_REQUESTERS = 2;

/**
 * End game: every missing piece is already being fetched, so idle peers may duplicate the
 * outstanding blocks (the loser is cancelled when the first copy arrives).
 */
export function inEndGame(state: { missingPieces: number; piecesInFlight: number }): boolean {
  return state.missingPieces > 0 && state.missingPieces <= state.piecesInFlight;
}

// ------------------------------------------------------------------ choking

export interface ChokeCandidate {
  id: number;
  /** The peer wants data from us. */
  interested: boolean;
  /** We unchoke it now. */
  unchoked: boolean;
}

export const DEFAULT_MAX_UNCHOKED = 8;

/**
 * Fleet peers are trusted not to free-ride: unchoke interested peers up to `maxUnchoked`,
 * keeping those already unchoked (no churn), then the longest-waiting ones (candidates come in
 * connection order). Uninterested peers are choked. Round-robin rotation comes later.
 */
export function chooseUnchoked(peers: readonly ChokeCandidate[], maxUnchoked: number): Set<number> {
  const out = new Set<number>();
  for (const p of peers) if (p.interested && p.unchoked && out.size < maxUnchoked) out.add(p.id);
  for (const p of peers) if (p.interested && !p.unchoked && out.size < maxUnchoked) out.add(p.id);
  return out;
}

// ------------------------------------------------------------------ blame (strikes, ban)

/** A peer is closed and banned from the session at this many strikes. */
export const STRIKES_TO_BAN = 3;

/** One block of a piece that failed verification: who sent it and what it hashed to. */
export interface BlockRecord {
  begin: number;
  length: number;
  sender: string;
  hash: Buffer;
}

export function blockDigest(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * Strikes owed right away for a corrupt piece: only a sole contributor is certainly guilty. When
 * several peers supplied blocks, blame waits for the piece to verify (see `blameAfterVerified`),
 * so honest peers are never struck for someone else's bad data.
 */
export function blameCorruptPiece(contributors: ReadonlySet<string>): string[] {
  return contributors.size === 1 ? [...contributors] : [];
}

/**
 * Once a piece verified, the blocks recorded from its failed attempts that differ from the good
 * data name the peers that sent bad data (libtorrent's smart ban, on whole blocks). One strike per
 * peer per piece.
 */
export function blameAfterVerified(records: readonly BlockRecord[], good: Buffer): string[] {
  const guilty = new Set<string>();
  const goodHashes = new Map<number, Buffer>();
  for (const r of records) {
    if (guilty.has(r.sender)) continue;
    let hash = goodHashes.get(r.begin);
    if (!hash) {
      hash = blockDigest(good.subarray(r.begin, r.begin + r.length));
      goodHashes.set(r.begin, hash);
    }
    if (!hash.equals(r.hash)) guilty.add(r.sender);
  }
  return [...guilty];
}

/**
 * Re-fetching a piece that failed: prefer peers that did not contribute to a failed attempt.
 * A suspect may take it only when no other usable peer holding the piece is above suspicion.
 */
export function mayRetryFrom(peer: string, suspects: ReadonlySet<string>, alternatives: Iterable<string>): boolean {
  if (!suspects.has(peer)) return true;
  for (const other of alternatives) if (other !== peer && !suspects.has(other)) return false;
  return true;
}
