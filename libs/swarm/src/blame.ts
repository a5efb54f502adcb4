/**
 * Smart ban. A piece that fails verification proves that some block in it is bad, not who sent
 * it. With the piece's block (leaf) hashes — from a BEP 52 hash request answered by any peer and
 * checked against the piece layer, or from the piece once a later attempt verified — each block
 * of the failed attempt is checked on its own, and only the senders of bad blocks are struck.
 * An honest peer is never struck for someone else's data.
 */

/** One block of a failed attempt: who sent it and its SHA-256 (its merkle leaf). */
export interface BlockRecord {
  block: number;
  sender: string;
  leaf: Uint8Array;
}

/** What the swarm remembers of a piece that failed, until blame is settled. */
export interface FailedPiece {
  /** Everybody who contributed to a failed attempt. */
  suspects: Set<string>;
  records: BlockRecord[];
  /** Block hashes were asked from a peer and not answered yet. */
  hashesAsked: boolean;
}

/** Only a sole contributor is certainly guilty without block hashes. */
export function soleContributor(contributors: ReadonlySet<string>): string | undefined {
  return contributors.size === 1 ? [...contributors][0] : undefined;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The senders of recorded blocks whose hash differs from the good leaf (one entry per peer). */
export function guiltyByLeaves(records: readonly BlockRecord[], goodLeaves: readonly Uint8Array[]): string[] {
  const guilty = new Set<string>();
  for (const r of records) {
    const good = goodLeaves[r.block];
    if (good && !sameBytes(good, r.leaf)) guilty.add(r.sender);
  }
  return [...guilty];
}

/**
 * Re-fetching a piece whose blame is open: prefer peers above suspicion; a suspect may take it
 * only when no other usable holder is above suspicion.
 */
export function mayRetryFrom(peer: string, suspects: ReadonlySet<string>, alternatives: Iterable<string>): boolean {
  if (!suspects.has(peer)) return true;
  for (const other of alternatives) if (other !== peer && !suspects.has(other)) return false;
  return true;
}
