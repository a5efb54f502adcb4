import { type Location, PeerIndex, proximity } from '../src';
import { mulberry32 } from './prng';

interface Peer {
  id: string;
  location: Location;
}

const loc = (region: string, zone: string, site: string): Location => ({ region, zone, site });
const HOME = loc('eu', 'eu-1', 'ams');

/** `n` peers named `${prefix}${i}` at `location`. */
const group = (prefix: string, n: number, location: Location): Peer[] =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, location }));

/** 5 same-site, 6 same-zone, 7 same-region and 8 remote peers (from HOME's point of view). */
const tiered = (): Peer[] => [
  ...group('site', 5, HOME),
  ...group('zone', 6, loc('eu', 'eu-1', 'rtm')),
  ...group('region', 7, loc('eu', 'eu-2', 'fra')),
  ...group('remote', 8, loc('us', 'us-1', 'nyc')),
];

const tierOf = (asker: Location) => (p: Peer) => proximity(asker, p.location);

describe('PeerIndex.select', () => {
  test('fills tiers in order: same site, same zone, same region, then the rest', () => {
    const index = new PeerIndex(tiered());
    const cases: [number, number[]][] = [
      [3, [3, 3, 3]],
      [5, [3, 3, 3, 3, 3]],
      [8, [3, 3, 3, 3, 3, 2, 2, 2]],
      [18, [...Array(5).fill(3), ...Array(6).fill(2), ...Array(7).fill(1)]],
      [20, [...Array(5).fill(3), ...Array(6).fill(2), ...Array(7).fill(1), 0, 0]],
    ];
    for (const [count, tiers] of cases) {
      for (let seed = 0; seed < 20; seed++) {
        const got = index.select({ asker: HOME, count, remoteShare: 0, random: mulberry32(seed) });
        expect(got.map(tierOf(HOME))).toEqual(tiers);
      }
    }
  });

  test('keeps round(n * remoteShare) slots for remote peers, picked at random', () => {
    const index = new PeerIndex(tiered());
    const remoteSeen = new Set<string>();
    for (let seed = 0; seed < 50; seed++) {
      const got = index.select({ asker: HOME, count: 10, remoteShare: 0.2, random: mulberry32(seed) });
      expect(got.map(tierOf(HOME))).toEqual([3, 3, 3, 3, 3, 2, 2, 2, 0, 0]);
      got.filter((p) => tierOf(HOME)(p) === 0).forEach((p) => remoteSeen.add(p.id));
    }
    expect(remoteSeen.size).toBe(8);
    // round(4 * 0.3) = 1; round(4 * 0.5) = 2 (half rounds up); share 1: all remote.
    expect(index.select({ asker: HOME, count: 4, remoteShare: 0.3, random: mulberry32(1) }).map(tierOf(HOME))).toEqual([3, 3, 3, 0]);
    expect(index.select({ asker: HOME, count: 4, remoteShare: 0.5, random: mulberry32(1) }).map(tierOf(HOME))).toEqual([3, 3, 0, 0]);
    expect(index.select({ asker: HOME, count: 4, remoteShare: 1, random: mulberry32(1) }).map(tierOf(HOME))).toEqual([0, 0, 0, 0]);
    // A share out of range is clamped.
    expect(index.select({ asker: HOME, count: 4, remoteShare: 7, random: mulberry32(1) }).map(tierOf(HOME))).toEqual([0, 0, 0, 0]);
    expect(index.select({ asker: HOME, count: 4, remoteShare: -1, random: mulberry32(1) }).map(tierOf(HOME))).toEqual([3, 3, 3, 3]);
    expect(index.select({ asker: HOME, count: 4, remoteShare: NaN, random: mulberry32(1) }).map(tierOf(HOME))).toEqual([3, 3, 3, 3]);
  });

  test('unused remote slots fall back to the tiers', () => {
    const noRemote = new PeerIndex(tiered().filter((p) => !p.id.startsWith('remote')));
    expect(noRemote.select({ asker: HOME, count: 10, remoteShare: 0.5, random: mulberry32(3) }).map(tierOf(HOME))).toEqual([
      3, 3, 3, 3, 3, 2, 2, 2, 2, 2,
    ]);
    const oneRemote = new PeerIndex(tiered().filter((p) => !p.id.startsWith('remote') || p.id === 'remote0'));
    expect(oneRemote.select({ asker: HOME, count: 10, remoteShare: 0.5, random: mulberry32(3) }).map(tierOf(HOME))).toEqual([
      3, 3, 3, 3, 3, 2, 2, 2, 2, 0,
    ]);
  });

  test('never returns the asker, wherever it sits', () => {
    const peers = tiered();
    const index = new PeerIndex(peers);
    for (const asker of peers) {
      for (const count of [1, 5, 25, 26, 100]) {
        const got = index.select({ asker: asker.location, askerId: asker.id, count, remoteShare: 0.25, random: mulberry32(count) });
        expect(got.map((p) => p.id)).not.toContain(asker.id);
        expect(got).toHaveLength(Math.min(count, peers.length - 1));
      }
    }
    // An asker that is not in the swarm takes nothing away.
    expect(index.select({ asker: HOME, askerId: 'stranger', count: 100, remoteShare: 0, random: mulberry32(0) })).toHaveLength(26);
  });

  test('returns distinct peers; duplicate ids in the input count once', () => {
    const peers = [...tiered(), ...tiered()];
    const index = new PeerIndex(peers);
    expect(index.size).toBe(26);
    for (let seed = 0; seed < 30; seed++) {
      const got = index.select({ asker: HOME, count: 17, remoteShare: 0.3, random: mulberry32(seed) });
      expect(new Set(got.map((p) => p.id)).size).toBe(17);
    }
  });

  test('a count larger than the swarm returns every other peer, nearest first', () => {
    const peers = tiered();
    const index = new PeerIndex(peers);
    const got = index.select({ asker: HOME, askerId: 'site0', count: 1000, remoteShare: 0.5, random: mulberry32(9) });
    expect(got.map((p) => p.id).sort()).toEqual(peers.map((p) => p.id).filter((id) => id !== 'site0').sort());
    const tiers = got.map(tierOf(HOME));
    expect(tiers).toEqual([...tiers].sort((a, b) => b - a));
    expect(index.select({ asker: HOME, count: Infinity, remoteShare: 0, random: mulberry32(9) })).toHaveLength(26);
  });

  test('degenerate counts and swarms', () => {
    const index = new PeerIndex(tiered());
    for (const count of [0, -3, NaN, 0.9]) {
      expect(index.select({ asker: HOME, count, remoteShare: 0.5, random: mulberry32(1) })).toEqual([]);
    }
    expect(index.select({ asker: HOME, count: 2.9, remoteShare: 0, random: mulberry32(1) })).toHaveLength(2);
    const empty = new PeerIndex<Peer>([]);
    expect(empty.size).toBe(0);
    expect(empty.select({ asker: HOME, count: 10, remoteShare: 0.5, random: mulberry32(1) })).toEqual([]);
    const alone = new PeerIndex([{ id: 'me', location: HOME }]);
    expect(alone.select({ asker: HOME, askerId: 'me', count: 10, remoteShare: 0.5, random: mulberry32(1) })).toEqual([]);
  });

  test('a random source that strays outside [0, 1) still yields valid, distinct picks', () => {
    const index = new PeerIndex(tiered());
    for (const value of [1, 1.5, -0.2, NaN, 0.999999999999]) {
      const got = index.select({ asker: HOME, count: 12, remoteShare: 0.25, random: () => value });
      expect(new Set(got.map((p) => p.id)).size).toBe(12);
      expect(got.map(tierOf(HOME))).toEqual([3, 3, 3, 3, 3, 2, 2, 2, 2, 0, 0, 0]);
    }
  });

  describe('empty / unknown labels', () => {
    const peers: Peer[] = [
      ...group('blank', 4, loc('', '', '')),
      ...group('noregion', 4, loc('', 'eu-1', 'ams')),
      ...group('nozone', 4, loc('eu', '', 'ams')),
      ...group('nosite', 4, loc('eu', 'eu-1', '')),
      ...group('site', 4, HOME),
      ...group('twin', 4, loc('us', 'eu-1', 'ams')),
    ];
    const index = new PeerIndex(peers);
    const ids = (got: Peer[]) => got.map((p) => p.id.replace(/\d+$/, ''));

    test('an asker with an unknown region sees everyone as remote (random order, no preference)', () => {
      const blank = loc('', '', '');
      const got = index.select({ asker: blank, count: 24, remoteShare: 0, random: mulberry32(2) });
      expect(got).toHaveLength(24);
      expect(got.every((p) => proximity(blank, p.location) === 0)).toBe(true);
      // Same labels below an unknown region do not bring peers closer.
      const noRegionAsker = loc('', 'eu-1', 'ams');
      const first = new Map<string, number>();
      for (let seed = 0; seed < 200; seed++) {
        const [pick] = ids(index.select({ asker: noRegionAsker, count: 1, remoteShare: 0, random: mulberry32(seed) }));
        first.set(pick as string, (first.get(pick as string) ?? 0) + 1);
      }
      expect(first.size).toBe(6);
    });

    test('peers with an unknown zone or site rank by what is known', () => {
      const got = ids(index.select({ asker: HOME, count: 24, remoteShare: 0, random: mulberry32(4) }));
      expect(got.slice(0, 4)).toEqual(Array(4).fill('site'));
      expect(got.slice(4, 8)).toEqual(Array(4).fill('nosite'));
      expect(got.slice(8, 12)).toEqual(Array(4).fill('nozone'));
      expect(new Set(got.slice(12))).toEqual(new Set(['blank', 'noregion', 'twin']));
    });

    test('an asker with an unknown zone or site gets no site/zone tier', () => {
      const noSite = ids(index.select({ asker: loc('eu', 'eu-1', ''), count: 12, remoteShare: 0, random: mulberry32(5) }));
      expect(new Set(noSite.slice(0, 8))).toEqual(new Set(['site', 'nosite']));
      expect(noSite.slice(8)).toEqual(Array(4).fill('nozone'));
      const noZone = ids(index.select({ asker: loc('eu', '', 'ams'), count: 12, remoteShare: 0, random: mulberry32(5) }));
      expect(new Set(noZone)).toEqual(new Set(['site', 'nosite', 'nozone']));
      const unknownSite = ids(index.select({ asker: loc('eu', 'eu-1', 'nowhere'), count: 8, remoteShare: 0, random: mulberry32(5) }));
      expect(new Set(unknownSite)).toEqual(new Set(['site', 'nosite']));
      const unknownRegion = index.select({ asker: loc('mars', 'eu-1', 'ams'), count: 24, remoteShare: 0, random: mulberry32(5) });
      expect(unknownRegion).toHaveLength(24);
    });
  });

  test('samples each tier uniformly (frequency check over many seeded runs)', () => {
    // 3 same-site peers always fit; 2 of the 20 same-zone peers and 1 of the 40 remote ones are drawn.
    const peers = [...group('site', 3, HOME), ...group('zone', 20, loc('eu', 'eu-1', 'rtm')), ...group('remote', 40, loc('us', 'u', 'n'))];
    const index = new PeerIndex(peers);
    const runs = 20_000;
    const hits = new Map<string, number>();
    const firstSlot = new Map<string, number>();
    for (let seed = 0; seed < runs; seed++) {
      const got = index.select({ asker: HOME, count: 6, remoteShare: 0.2, random: mulberry32(seed * 7919 + 1) });
      got.forEach((p) => hits.set(p.id, (hits.get(p.id) ?? 0) + 1));
      firstSlot.set(got[0]?.id as string, (firstSlot.get(got[0]?.id as string) ?? 0) + 1);
    }
    for (let i = 0; i < 3; i++) expect(hits.get(`site${i}`)).toBe(runs);
    const within = (observed: number | undefined, expected: number, tolerance: number) => {
      expect(observed).toBeGreaterThan(expected * (1 - tolerance));
      expect(observed).toBeLessThan(expected * (1 + tolerance));
    };
    for (let i = 0; i < 20; i++) within(hits.get(`zone${i}`), (runs * 2) / 20, 0.1);
    for (let i = 0; i < 40; i++) within(hits.get(`remote${i}`), runs / 40, 0.15);
    // Order inside a tier is random too.
    for (let i = 0; i < 3; i++) within(firstSlot.get(`site${i}`), runs / 3, 0.05);
  });

  test('is deterministic for a given random source and independent of input order', () => {
    const peers = tiered();
    const shuffled = [...peers].reverse();
    const a = new PeerIndex(peers).select({ asker: HOME, count: 12, remoteShare: 0.2, random: mulberry32(42) });
    const b = new PeerIndex(shuffled).select({ asker: HOME, count: 12, remoteShare: 0.2, random: mulberry32(42) });
    expect(b.map((p) => p.id)).toEqual(a.map((p) => p.id));
    const c = new PeerIndex(peers).select({ asker: HOME, count: 12, remoteShare: 0.2, random: mulberry32(43) });
    expect(c.map((p) => p.id)).not.toEqual(a.map((p) => p.id));
  });

  test('exclude skips peers and gives their slots to the next candidates', () => {
    const index = new PeerIndex(tiered());
    const gone = new Set(['site0', 'site1', 'remote0', 'remote1', 'remote2', 'remote3', 'remote4', 'remote5', 'remote6']);
    for (let seed = 0; seed < 30; seed++) {
      const got = index.select({ asker: HOME, count: 10, remoteShare: 0.2, random: mulberry32(seed), exclude: (p) => gone.has(p.id) });
      expect(got.filter((p) => gone.has(p.id))).toEqual([]);
      // 3 site peers left, then zone peers; only one remote peer is left for the two remote slots.
      expect(got.map(tierOf(HOME))).toEqual([3, 3, 3, 2, 2, 2, 2, 2, 2, 0]);
      expect(got.find((p) => p.id.startsWith('remote'))?.id).toBe('remote7');
    }
    const all = index.select({ asker: HOME, count: 100, remoteShare: 0, random: mulberry32(1), exclude: () => true });
    expect(all).toEqual([]);
  });

  test('select costs O(count): one random draw per returned peer, whatever the swarm size', () => {
    const regions = ['eu', 'us', 'ap'];
    const peers: Peer[] = [];
    for (let i = 0; i < 200_000; i++) {
      const region = regions[i % 3] as string;
      peers.push({ id: `p${i}`, location: loc(region, `${region}-${i % 7}`, `s${i % 31}`) });
    }
    const index = new PeerIndex(peers);
    let draws = 0;
    const source = mulberry32(5);
    const counted = () => {
      draws++;
      return source();
    };
    const started = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) {
      const asker = peers[i * 13] as Peer;
      const got = index.select({ asker: asker.location, askerId: asker.id, count: 50, remoteShare: 0.1, random: counted });
      if (got.length !== 50) throw new Error('short result');
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    expect(draws).toBe(10_000 * 50);
    expect(ms).toBeLessThan(5_000);
  });

  test('get / has / peers', () => {
    const index = new PeerIndex(tiered());
    expect(index.get('zone3')?.location).toEqual(loc('eu', 'eu-1', 'rtm'));
    expect(index.get('nope')).toBeUndefined();
    expect(index.has('remote7')).toBe(true);
    const regions = index.peers().map((p) => p.location.region);
    expect(regions).toEqual([...regions].sort());
  });
});

describe('PeerIndex.select re-entrancy', () => {
  test('an exclude callback may itself call select on the same index', () => {
    const index = new PeerIndex(tiered());
    const inner: string[][] = [];
    const got = index.select({
      asker: HOME,
      count: 10,
      remoteShare: 0.2,
      random: mulberry32(1),
      exclude: (p) => {
        inner.push(index.select({ asker: p.location, askerId: p.id, count: 3, remoteShare: 0, random: mulberry32(2) }).map((q) => q.id));
        return false;
      },
    });
    expect(new Set(got.map((p) => p.id)).size).toBe(10);
    expect(got.map(tierOf(HOME))).toEqual([3, 3, 3, 3, 3, 2, 2, 2, 0, 0]);
    expect(inner).toHaveLength(10);
    inner.forEach((ids) => expect(new Set(ids).size).toBe(3));
    // The shared scratch is still sound afterwards.
    const again = index.select({ asker: HOME, count: 26, remoteShare: 0, random: mulberry32(3) });
    expect(new Set(again.map((p) => p.id)).size).toBe(26);
  });
});
