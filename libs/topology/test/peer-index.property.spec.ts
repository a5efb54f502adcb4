import fc from 'fast-check';
import { type Location, PeerIndex, proximity } from '../src';
import { mulberry32 } from './prng';

interface Peer {
  id: string;
  location: Location;
}

// Small alphabets so that matches (and unknown '' labels) are frequent.
const arbLocation = fc.record({
  region: fc.constantFrom('', 'eu', 'us'),
  zone: fc.constantFrom('', 'z1', 'z2'),
  site: fc.constantFrom('', 's1', 's2', 's3'),
});

const arbCase = fc
  .record({
    locations: fc.array(arbLocation, { maxLength: 60 }),
    asker: arbLocation,
    askerInSwarm: fc.boolean(),
    askerSlot: fc.nat(),
    count: fc.integer({ min: 0, max: 70 }),
    remoteShare: fc.double({ min: 0, max: 1, noNaN: true }),
    seed: fc.integer(),
  })
  .map((c) => {
    const peers: Peer[] = c.locations.map((location, i) => ({ id: `p${i}`, location }));
    let askerId = 'asker';
    if (c.askerInSwarm && peers.length > 0) {
      const slot = c.askerSlot % peers.length;
      askerId = `p${slot}`;
      peers[slot] = { id: askerId, location: c.asker };
    }
    return { ...c, peers, askerId };
  });

describe('PeerIndex.select properties', () => {
  test('size, distinctness, no asker, tier order, and the greedy tier counts under the remote quota', () => {
    fc.assert(
      fc.property(arbCase, ({ peers, asker, askerId, count, remoteShare, seed }) => {
        const index = new PeerIndex(peers);
        const got = index.select({ asker, askerId, count, remoteShare, random: mulberry32(seed) });
        const others = peers.filter((p) => p.id !== askerId);
        const n = Math.min(count, others.length);

        expect(got).toHaveLength(n);
        expect(new Set(got.map((p) => p.id)).size).toBe(n);
        expect(got.some((p) => p.id === askerId)).toBe(false);

        const tiers = got.map((p) => proximity(asker, p.location));
        expect(tiers).toEqual([...tiers].sort((a, b) => b - a));

        const size = (t: number) => others.filter((p) => proximity(asker, p.location) === t).length;
        const gotIn = (t: number) => tiers.filter((x) => x === t).length;
        const quota = Math.min(Math.round(n * remoteShare), size(0));
        let local = n - quota;
        for (const t of [3, 2, 1]) {
          const expected = Math.min(size(t), local);
          expect(gotIn(t)).toBe(expected);
          local -= expected;
        }
        expect(gotIn(0)).toBe(quota + local);
        // The headline: as many same-site peers as the remote quota allows.
        expect(gotIn(3)).toBe(Math.min(size(3), n - quota));
      }),
      { numRuns: 2000 },
    );
  });

  test('the same random source gives the same answer, whatever the input order', () => {
    fc.assert(
      fc.property(arbCase, fc.integer(), ({ peers, asker, askerId, count, remoteShare, seed }, shuffleSeed) => {
        const random = mulberry32(shuffleSeed);
        const shuffled = peers
          .map((p) => ({ p, k: random() }))
          .sort((a, b) => a.k - b.k)
          .map((x) => x.p);
        const a = new PeerIndex(peers).select({ asker, askerId, count, remoteShare, random: mulberry32(seed) });
        const b = new PeerIndex(shuffled).select({ asker, askerId, count, remoteShare, random: mulberry32(seed) });
        expect(b.map((p) => p.id)).toEqual(a.map((p) => p.id));
      }),
      { numRuns: 500 },
    );
  });

  test('with exclusions: never an excluded peer, and still as many as remain', () => {
    fc.assert(
      fc.property(arbCase, fc.array(fc.nat({ max: 59 }), { maxLength: 30 }), ({ peers, asker, askerId, count, remoteShare, seed }, excludedSlots) => {
        const excluded = new Set(excludedSlots.map((i) => `p${i}`));
        const index = new PeerIndex(peers);
        const got = index.select({ asker, askerId, count, remoteShare, random: mulberry32(seed), exclude: (p) => excluded.has(p.id) });
        const eligible = peers.filter((p) => p.id !== askerId && !excluded.has(p.id));
        expect(got).toHaveLength(Math.min(count, eligible.length));
        expect(got.some((p) => excluded.has(p.id) || p.id === askerId)).toBe(false);
        expect(new Set(got.map((p) => p.id)).size).toBe(got.length);
        const tiers = got.map((p) => proximity(asker, p.location));
        expect(tiers).toEqual([...tiers].sort((a, b) => b - a));
      }),
      { numRuns: 1000 },
    );
  });
});
