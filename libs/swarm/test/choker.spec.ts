import fc from 'fast-check';
import {
  type ChokeContext,
  type ChokePeer,
  type Choker,
  FleetChoker,
  OPTIMISTIC_ROTATION_MS,
  policiesOf,
  SEED_ROTATION_MS,
  type SwarmConfig,
  swarmConfig,
  TitForTatChoker,
} from '../src';
import { arbChokeCase, chokeContext, describeChokerCompliance, frozenPeers } from './compliance/choker';
import { mulberry32 } from './support';

const CHOKERS: Record<SwarmConfig['choker'], () => Choker> = {
  'tit-for-tat': () => policiesOf(swarmConfig({ choker: 'tit-for-tat' })).choker,
  fleet: () => policiesOf(swarmConfig({ choker: 'fleet' })).choker,
};

for (const [name, make] of Object.entries(CHOKERS)) describeChokerCompliance(name, make);

function peer(key: number, over: Partial<ChokePeer> = {}): ChokePeer {
  return { key, interested: true, unchoked: false, snubbed: false, downloadRate: 0, uploadRate: 0, unchokedAt: -Infinity, ...over };
}

function ctx(over: Partial<ChokeContext> = {}): ChokeContext {
  return { seeding: false, slots: 2, now: 1_000_000, random: () => 0, optimistic: undefined, ...over };
}

/**
 * Runs a choker round after round as the swarm does: `unchokedAt` is set when a peer goes from
 * choked to unchoked and kept while it stays unchoked. Returns every round's unchoked keys.
 */
function rounds(choker: Choker, peers: ChokePeer[], options: { seeding: boolean; slots: number; everyMs: number; until: number; seed: number }): Set<number>[] {
  let state = peers.map((p) => ({ ...p }));
  let optimistic: ChokeContext['optimistic'];
  const random = mulberry32(options.seed);
  const out: Set<number>[] = [];
  for (let now = 0; now <= options.until; now += options.everyMs) {
    const decision = choker.choose(state, { seeding: options.seeding, slots: options.slots, now, random, optimistic });
    optimistic = decision.optimistic;
    state = state.map((p) => {
      const unchoked = decision.unchoke.has(p.key);
      return { ...p, unchoked, unchokedAt: unchoked && !p.unchoked ? now : p.unchokedAt };
    });
    out.push(decision.unchoke);
  }
  return out;
}

describe('TitForTatChoker while leeching', () => {
  test('regular slots go to the best senders; a snubbed peer holds no regular slot', () => {
    fc.assert(
      fc.property(arbChokeCase, (c) => {
        const { unchoke, optimistic } = new TitForTatChoker().choose(frozenPeers(c.peers), chokeContext({ ...c, seeding: false }));
        const regular = c.peers.filter((p) => unchoke.has(p.key) && p.key !== optimistic?.key);
        expect(regular.length).toBeLessThanOrEqual(c.slots);
        const waiting = c.peers.filter((p) => p.interested && !p.snubbed && !unchoke.has(p.key));
        for (const r of regular) {
          expect(r.snubbed).toBe(false);
          for (const w of waiting) expect(r.downloadRate).toBeGreaterThanOrEqual(w.downloadRate);
        }
      }),
    );
  });

  test('ties on download go to the peer we upload more to', () => {
    const peers = [peer(1, { downloadRate: 50, uploadRate: 1 }), peer(2, { downloadRate: 50, uploadRate: 9 }), peer(3, { downloadRate: 10 })];
    const { unchoke, optimistic } = new TitForTatChoker().choose(peers, ctx({ slots: 1 }));
    expect(unchoke.has(2)).toBe(true);
    expect(optimistic?.key).not.toBe(2);
  });

  test('the optimistic slot stays with its peer for 30 s, then rotates to another', () => {
    const peers = [peer(1, { downloadRate: 900 }), peer(2, { downloadRate: 800 }), peer(3, { unchoked: true, unchokedAt: 0 }), peer(4), peer(5)];
    const choker = new TitForTatChoker();
    const holder = { key: 3, since: 0 };
    expect(choker.choose(peers, ctx({ now: OPTIMISTIC_ROTATION_MS - 1, optimistic: holder })).optimistic).toEqual(holder);
    const rotated = choker.choose(peers, ctx({ now: OPTIMISTIC_ROTATION_MS, optimistic: holder }));
    expect(rotated.optimistic).toEqual({ key: expect.any(Number), since: OPTIMISTIC_ROTATION_MS });
    expect([4, 5]).toContain(rotated.optimistic?.key);
    expect(rotated.unchoke).toEqual(new Set([1, 2, rotated.optimistic?.key]));
  });

  test('the optimistic slot prefers newcomers (never unchoked) over peers that had a turn', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 10 }), fc.integer(), (veterans, newcomers, seed) => {
        const peers = [
          peer(100, { downloadRate: 1000 }),
          ...Array.from({ length: veterans }, (_, i) => peer(i + 1, { unchokedAt: 5_000 + i })),
          ...Array.from({ length: newcomers }, (_, i) => peer(i + 50)),
        ];
        const { optimistic } = new TitForTatChoker().choose(peers, ctx({ slots: 1, now: 100_000, random: mulberry32(seed) }));
        expect(optimistic?.key).toBeGreaterThanOrEqual(50);
        expect(optimistic?.key).toBeLessThan(100);
      }),
    );
  });

  test('a holder that lost interest or took a regular slot frees the optimistic slot', () => {
    const choker = new TitForTatChoker();
    const uninterested = choker.choose([peer(1, { interested: false }), peer(2)], ctx({ slots: 1, now: 10, optimistic: { key: 1, since: 0 } }));
    expect(uninterested.unchoke).toEqual(new Set([2]));
    expect(uninterested.optimistic).toBeUndefined();
    const promoted = choker.choose([peer(1, { downloadRate: 500 }), peer(2), peer(3)], ctx({ slots: 1, now: 10, optimistic: { key: 1, since: 0 } }));
    expect(promoted.unchoke.has(1)).toBe(true);
    expect(promoted.optimistic?.key).not.toBe(1);
    expect(promoted.unchoke.size).toBe(2);
  });

  test('with nobody else waiting, the holder keeps the slot past 30 s', () => {
    const holder = { key: 3, since: 0 };
    const decision = new TitForTatChoker().choose([peer(1, { downloadRate: 1 }), peer(3)], ctx({ slots: 1, now: 120_000, optimistic: holder }));
    expect(decision.optimistic).toEqual(holder);
  });

  test('over many rounds every interested peer gets unchoked, optimistically at least', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 3 }), fc.integer(), (n, slots, seed) => {
        const peers = Array.from({ length: n }, (_, i) => peer(i + 1, { downloadRate: i < slots ? 1000 : 0 }));
        // Every rotation serves one waiting newcomer; n rotations are enough for everyone.
        const served = new Set(rounds(new TitForTatChoker(), peers, { seeding: false, slots, everyMs: 10_000, until: (n + 1) * OPTIMISTIC_ROTATION_MS, seed }).flatMap((s) => [...s]));
        expect(served.size).toBe(n);
      }),
    );
  });
});

describe('TitForTatChoker while seeding (round-robin)', () => {
  test('every waiting peer gets a regular turn, and no peer waits more than a full cycle', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 4 }), fc.integer(), (n, slots, seed) => {
        const peers = Array.from({ length: n }, (_, i) => peer(i + 1, { downloadRate: i * 7, uploadRate: i * 13 }));
        const cycle = (Math.ceil(n / slots) + 1) * SEED_ROTATION_MS;
        const history = rounds(new TitForTatChoker(), peers, { seeding: true, slots, everyMs: 10_000, until: 4 * cycle, seed });
        const lastServed = new Map<number, number>();
        let longestWait = 0;
        history.forEach((unchoke, round) => {
          const now = round * 10_000;
          for (const p of peers) {
            if (unchoke.has(p.key)) lastServed.set(p.key, now);
            else longestWait = Math.max(longestWait, now - (lastServed.get(p.key) ?? 0));
          }
        });
        expect(lastServed.size).toBe(n);
        expect(longestWait).toBeLessThanOrEqual(cycle);
      }),
    );
  });

  test('a peer keeps its seed slot for 30 s, then the longest-waiting peer takes it', () => {
    const choker = new TitForTatChoker();
    const peers = [peer(1, { unchoked: true, unchokedAt: 0 }), peer(2, { unchokedAt: 5_000 }), peer(3, { unchokedAt: 1_000 })];
    const ignoreOptimistic = (now: number) => ctx({ seeding: true, slots: 1, now, optimistic: { key: 2, since: now } });
    expect(choker.choose(peers, ignoreOptimistic(SEED_ROTATION_MS - 1)).unchoke).toEqual(new Set([1, 2]));
    expect(choker.choose(peers, ignoreOptimistic(SEED_ROTATION_MS)).unchoke).toEqual(new Set([3, 2]));
  });

  test('the optimistic holder does not take over a regular turn that just began', () => {
    const peers = [peer(1, { unchoked: true, unchokedAt: 90_000 }), peer(6, { unchoked: true, unchokedAt: 90_000 }), peer(7, { unchokedAt: 1_000 })];
    const decision = new TitForTatChoker().choose(peers, ctx({ seeding: true, slots: 1, now: 100_000, optimistic: { key: 1, since: 90_000 } }));
    expect(decision.unchoke).toEqual(new Set([1, 6]));
    expect(decision.optimistic).toEqual({ key: 1, since: 90_000 });
  });

  test('upload and download rates do not matter while seeding', () => {
    const peers = [peer(1, { downloadRate: 1e9, uploadRate: 1e9, unchokedAt: 2_000 }), peer(2, { unchokedAt: 1_000 })];
    const { unchoke, optimistic } = new TitForTatChoker().choose(peers, ctx({ seeding: true, slots: 1, now: 100_000 }));
    expect([...unchoke].filter((k) => k !== optimistic?.key)).toEqual([2]);
  });
});

describe('FleetChoker', () => {
  test('unchokes every interested peer up to slots + 1, without an optimistic slot', () => {
    fc.assert(
      fc.property(arbChokeCase, (c) => {
        const { unchoke, optimistic } = new FleetChoker().choose(frozenPeers(c.peers), chokeContext(c));
        expect(optimistic).toBeUndefined();
        expect(unchoke.size).toBe(Math.min(c.slots + 1, c.peers.filter((p) => p.interested).length));
      }),
    );
  });

  test('keeps peers already unchoked (no churn), then the longest waiting', () => {
    fc.assert(
      fc.property(arbChokeCase, (c) => {
        const { unchoke } = new FleetChoker().choose(frozenPeers(c.peers), chokeContext(c));
        const keepers = c.peers.filter((p) => p.interested && p.unchoked);
        if (keepers.length <= c.slots + 1) for (const p of keepers) expect(unchoke.has(p.key)).toBe(true);
        const waiting = c.peers.filter((p) => p.interested && !p.unchoked);
        const admitted = waiting.filter((p) => unchoke.has(p.key));
        const passedOver = waiting.filter((p) => !unchoke.has(p.key));
        for (const a of admitted) for (const p of passedOver) expect(a.unchokedAt).toBeLessThanOrEqual(p.unchokedAt);
      }),
    );
  });

  test('snubbed and slow peers are served alike (fleet peers are trusted)', () => {
    const peers = [peer(1, { snubbed: true }), peer(2, { downloadRate: 1e6 }), peer(3)];
    expect(new FleetChoker().choose(peers, ctx({ slots: 2 })).unchoke).toEqual(new Set([1, 2, 3]));
  });
});
