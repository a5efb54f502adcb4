import fc from 'fast-check';
import type { Location } from '@shoal/topology';
import type { PeerRanking, RankContext } from '../../src';
import { mulberry32 } from '../support';

export interface Candidate {
  id: string;
  location: Location;
}

export interface RankCase {
  candidates: Candidate[];
  self: Location;
  selfId: string;
  count: number;
  seed: number;
}

// Small alphabets so that shared sites, zones and regions (and unknown '' labels) are common.
export const arbLocation: fc.Arbitrary<Location> = fc.record({
  region: fc.constantFrom('', 'eu', 'us'),
  zone: fc.constantFrom('', 'z1', 'z2'),
  site: fc.constantFrom('', 's1', 's2'),
});

export const arbRankCase: fc.Arbitrary<RankCase> = fc
  .record({
    locations: fc.array(arbLocation, { maxLength: 40 }),
    self: arbLocation,
    selfListed: fc.boolean(),
    count: fc.integer({ min: 0, max: 50 }),
    seed: fc.integer(),
  })
  .map(({ locations, self, selfListed, count, seed }) => {
    const candidates = locations.map((location, i) => ({ id: `peer-${i}`, location }));
    // The tracker may hand us our own entry back.
    const selfId = selfListed && candidates.length > 0 ? (candidates[0] as Candidate).id : 'self';
    return { candidates, self, selfId, count, seed };
  });

export function rankContext(c: RankCase): RankContext {
  return { self: c.self, selfId: c.selfId, count: c.count, random: mulberry32(c.seed) };
}

/** The contract every PeerRanking keeps. */
export function describeRankingCompliance(label: string, make: () => PeerRanking): void {
  describe(`PeerRanking compliance: ${label}`, () => {
    test('returns min(count, others) distinct candidates, never ourselves', () => {
      fc.assert(
        fc.property(arbRankCase, (c) => {
          const got = make().rank(c.candidates, rankContext(c));
          const others = c.candidates.filter((p) => p.id !== c.selfId);
          expect(got).toHaveLength(Math.min(c.count, others.length));
          expect(new Set(got.map((p) => p.id)).size).toBe(got.length);
          for (const p of got) expect(others).toContain(p);
        }),
      );
    });

    test('is a function of its inputs and draws', () => {
      fc.assert(
        fc.property(arbRankCase, (c) => {
          expect(make().rank(c.candidates, rankContext(c))).toEqual(make().rank(c.candidates, rankContext(c)));
        }),
      );
    });

    test('leaves the candidate list alone', () => {
      fc.assert(
        fc.property(arbRankCase, (c) => {
          const frozen = Object.freeze([...c.candidates]);
          make().rank(frozen, rankContext(c));
          expect(frozen).toEqual(c.candidates);
        }),
      );
    });
  });
}
