import fc from 'fast-check';
import type { RevealContext, SeedingPolicy } from '../../src';
import { cycling, DRAW } from '../support';

export interface RevealCase {
  excluded: boolean[];
  copies: number[];
  /** The origin is expected to deliver it (default: none is). */
  deferred?: boolean[];
  draws: number[];
}

export const arbRevealCase: fc.Arbitrary<RevealCase> = fc.integer({ min: 1, max: 48 }).chain((n) =>
  fc.record({
    excluded: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
    // Fractions: pieces revealed only to choked peers count part of a copy.
    copies: fc.array(fc.oneof(fc.integer({ min: 0, max: 6 }), fc.double({ min: 0, max: 2, noNaN: true })), { minLength: n, maxLength: n }),
    deferred: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
    draws: fc.array(fc.double(DRAW), { minLength: 1, maxLength: 4 }),
  }),
);

export function revealContext(c: RevealCase): RevealContext {
  return {
    numPieces: c.excluded.length,
    isExcluded: (i) => c.excluded[i] === true,
    copies: (i) => c.copies[i] ?? 0,
    deferred: (i) => c.deferred?.[i] === true,
    random: cycling(c.draws),
  };
}

/** The contract every SeedingPolicy keeps. */
export function describeSeedingCompliance(label: string, make: () => SeedingPolicy): void {
  describe(`SeedingPolicy compliance: ${label}`, () => {
    test('a revealing policy keeps at least one piece revealed; an announcing one none', () => {
      const policy = make();
      if (policy.reveals) expect(policy.revealAhead).toBeGreaterThanOrEqual(1);
      else expect(policy.revealAhead).toBe(0);
    });

    test('never reveals an excluded piece (the peer has it, or it was revealed already)', () => {
      fc.assert(
        fc.property(arbRevealCase, (c) => {
          const got = make().nextReveal(revealContext(c));
          if (got !== undefined) expect(c.excluded[got]).toBe(false);
        }),
      );
    });

    test('a revealing policy offers a piece while one the swarm lacks is left, and undefined after', () => {
      fc.assert(
        fc.property(arbRevealCase, (c) => {
          const policy = make();
          const got = policy.nextReveal(revealContext(c));
          if (!policy.reveals || c.copies.every((copies, i) => c.excluded[i] || copies >= 1)) expect(got).toBeUndefined();
          else expect(got).toBeDefined();
        }),
      );
    });
  });
}
