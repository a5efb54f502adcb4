import { proximity } from '@shoal/topology';
import fc from 'fast-check';
import { type PeerRanking, policiesOf, RandomRanking, type SwarmConfig, swarmConfig, TopologyRanking } from '../src';
import { arbRankCase, describeRankingCompliance, rankContext } from './compliance/ranking';

const RANKINGS: Record<SwarmConfig['ranking'], () => PeerRanking> = {
  topology: () => policiesOf(swarmConfig({ ranking: 'topology' })).ranking,
  random: () => policiesOf(swarmConfig({ ranking: 'random' })).ranking,
};

for (const [name, make] of Object.entries(RANKINGS)) describeRankingCompliance(name, make);
describeRankingCompliance('topology, all local', () => new TopologyRanking(0));
describeRankingCompliance('topology, all remote', () => new TopologyRanking(1));

describe('TopologyRanking', () => {
  test('without a remote share, nearest first: site, then zone, then region', () => {
    fc.assert(
      fc.property(arbRankCase, (c) => {
        const got = new TopologyRanking(0).rank(c.candidates, rankContext(c));
        const tiers = got.map((p) => proximity(c.self, p.location));
        expect(tiers).toEqual([...tiers].sort((a, b) => b - a));
        // Nobody nearer was left out for somebody further.
        const worst = Math.min(...tiers);
        const left = c.candidates.filter((p) => p.id !== c.selfId && !got.includes(p));
        for (const p of left) expect(proximity(c.self, p.location)).toBeLessThanOrEqual(worst);
      }),
    );
  });

  test('keeps about remoteShare of the slots for peers outside our region', () => {
    const self = { region: 'eu', zone: 'z1', site: 's1' };
    const near = Array.from({ length: 20 }, (_, i) => ({ id: `near-${i}`, location: self }));
    const far = Array.from({ length: 20 }, (_, i) => ({ id: `far-${i}`, location: { region: 'us', zone: 'z1', site: 's1' } }));
    const got = new TopologyRanking(0.2).rank([...near, ...far], { self, selfId: 'me', count: 10, random: () => 0.3 });
    expect(got.filter((p) => p.id.startsWith('far-'))).toHaveLength(2);
    expect(got.slice(0, 8).every((p) => p.id.startsWith('near-'))).toBe(true);
  });
});

describe('RandomRanking', () => {
  test('with enough slots, every other candidate comes back', () => {
    fc.assert(
      fc.property(arbRankCase, (c) => {
        const got = new RandomRanking().rank(c.candidates, { ...rankContext(c), count: c.candidates.length });
        expect(new Set(got.map((p) => p.id))).toEqual(new Set(c.candidates.filter((p) => p.id !== c.selfId).map((p) => p.id)));
      }),
    );
  });

  test('ignores location: draws decide the order', () => {
    const self = { region: 'eu', zone: 'z1', site: 's1' };
    const candidates = [
      { id: 'far', location: { region: 'us', zone: '', site: '' } },
      { id: 'near', location: self },
    ];
    const first = new Set([0, 0.99].map((draw) => new RandomRanking().rank(candidates, { self, selfId: 'me', count: 1, random: () => draw })[0]?.id));
    expect(first).toEqual(new Set(['far', 'near']));
  });
});
