import fc from 'fast-check';
import { AnnounceAllSeeding, policiesOf, type SeedingPolicy, SuperSeeding, type SwarmConfig, swarmConfig } from '../src';
import { arbRevealCase, describeSeedingCompliance, type RevealCase, revealContext } from './compliance/seeding';

const SEEDINGS: Record<SwarmConfig['seeding'], () => SeedingPolicy> = {
  'super-seed': () => policiesOf(swarmConfig({ seeding: 'super-seed' })).seeding,
  'announce-all': () => policiesOf(swarmConfig({ seeding: 'announce-all' })).seeding,
};

for (const [name, make] of Object.entries(SEEDINGS)) describeSeedingCompliance(name, make);

describe('SuperSeeding', () => {
  test('reveals a least-copied piece the peer lacks, and only one the swarm has no copy of yet', () => {
    fc.assert(
      fc.property(arbRevealCase, (c) => {
        const got = new SuperSeeding(2).nextReveal(revealContext({ ...c, deferred: undefined }));
        const open = c.copies.filter((copies, i) => !c.excluded[i] && copies < 1);
        if (open.length === 0) return expect(got).toBeUndefined();
        expect(c.copies[got as number]).toBe(Math.min(...open));
      }),
    );
  });

  test('pieces the origin delivers rank half a copy lower, but are still offered while the swarm lacks them', () => {
    fc.assert(
      fc.property(arbRevealCase, (c) => {
        const got = new SuperSeeding(2).nextReveal(revealContext(c));
        const rank = (i: number) => (c.copies[i] as number) + (c.deferred?.[i] ? 0.5 : 0);
        const open = c.copies.map((_, i) => i).filter((i) => !c.excluded[i] && (c.copies[i] as number) < 1);
        if (open.length === 0) return expect(got).toBeUndefined();
        expect(rank(got as number)).toBe(Math.min(...open.map(rank)));
      }),
    );
    const c: RevealCase = { excluded: [false, false, false, false], copies: [0, 0, 0.4, 0.9], deferred: [true, true, false, true], draws: [0] };
    expect(new SuperSeeding(2).nextReveal(revealContext(c))).toBe(2);
    expect(new SuperSeeding(2).nextReveal(revealContext({ ...c, excluded: [false, false, true, false] }))).toBe(0);
    expect(new SuperSeeding(2).nextReveal(revealContext({ ...c, excluded: [true, true, true, false] }))).toBe(3);
  });

  test('ties go to the draw, so consecutive peers are offered different pieces', () => {
    const c: RevealCase = { excluded: [false, false, false, false], copies: [1, 0, 1, 0], draws: [] };
    const from = (draw: number) => new SuperSeeding(2).nextReveal({ ...revealContext(c), random: () => draw });
    expect(from(0)).toBe(1);
    expect(from(0.6)).toBe(3);
  });

  test('revealAhead comes from the configuration', () => {
    expect(policiesOf(swarmConfig({ revealAhead: 5 })).seeding.revealAhead).toBe(5);
    expect(new SuperSeeding().reveals).toBe(true);
  });
});

describe('AnnounceAllSeeding', () => {
  test('reveals nothing: the seed announces every piece', () => {
    fc.assert(
      fc.property(arbRevealCase, (c) => {
        expect(new AnnounceAllSeeding().nextReveal()).toBeUndefined();
        expect(SEEDINGS['announce-all']().nextReveal(revealContext(c))).toBeUndefined();
      }),
    );
  });
});
