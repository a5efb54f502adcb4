import fc from 'fast-check';
import type { PickContext, PiecePicker } from '../../src';
import { cycling, DRAW } from '../support';

export interface PickCase {
  candidate: boolean[];
  /** Holders per piece; a candidate is held by the asking peer at least. */
  availability: number[];
  verifiedPieces: number;
  draws: number[];
}

export const arbPickCase: fc.Arbitrary<PickCase> = fc.integer({ min: 1, max: 48 }).chain((n) =>
  fc
    .record({
      candidate: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      availability: fc.array(fc.integer({ min: 0, max: 12 }), { minLength: n, maxLength: n }),
      verifiedPieces: fc.integer({ min: 0, max: 8 }),
      draws: fc.array(fc.double(DRAW), { minLength: 1, maxLength: 4 }),
    })
    .map((c) => ({ ...c, availability: c.availability.map((a, i) => (c.candidate[i] ? Math.max(1, a) : a)) })),
);

export function pickContext(c: PickCase, random = cycling(c.draws)): PickContext {
  return {
    numPieces: c.candidate.length,
    verifiedPieces: c.verifiedPieces,
    isCandidate: (i) => c.candidate[i] === true,
    availability: (i) => c.availability[i] ?? 0,
    random,
  };
}

/** The contract every PiecePicker keeps, whatever its strategy. */
export function describePiecePickerCompliance(label: string, make: () => PiecePicker): void {
  describe(`PiecePicker compliance: ${label}`, () => {
    test('has a name', () => {
      expect(make().name).toMatch(/^[a-z-]+$/);
    });

    test('returns only candidates, and undefined exactly when there is none', () => {
      fc.assert(
        fc.property(arbPickCase, (c) => {
          const got = make().pick(pickContext(c));
          if (!c.candidate.includes(true)) expect(got).toBeUndefined();
          else {
            expect(got).toBeDefined();
            expect(c.candidate[got as number]).toBe(true);
          }
        }),
      );
    });

    test('is a function of its context and draws', () => {
      fc.assert(
        fc.property(arbPickCase, (c) => {
          expect(make().pick(pickContext(c))).toBe(make().pick(pickContext(c)));
        }),
      );
    });

    test('copes with draws at the edges of [0, 1)', () => {
      for (const draw of [0, 0.5, 1 - Number.EPSILON]) {
        const c: PickCase = { candidate: [false, true, false, true], availability: [0, 2, 0, 1], verifiedPieces: 99, draws: [draw] };
        expect([1, 3]).toContain(make().pick(pickContext(c)));
      }
    });
  });
}
