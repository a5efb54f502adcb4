import fc from 'fast-check';
import type { ChokeContext, ChokePeer, Choker } from '../../src';
import { mulberry32 } from '../support';

export interface ChokeCase {
  peers: ChokePeer[];
  seeding: boolean;
  slots: number;
  now: number;
  optimistic: ChokeContext['optimistic'];
  seed: number;
}

/** A key no peer of the case has: an optimistic holder that disconnected. */
const GONE_KEY = 999_999;

export const arbChokeCase: fc.Arbitrary<ChokeCase> = fc
  .record({
    peers: fc.array(
      fc.record({
        interested: fc.boolean(),
        unchoked: fc.boolean(),
        snubbed: fc.boolean(),
        downloadRate: fc.nat({ max: 1_000_000 }),
        uploadRate: fc.nat({ max: 1_000_000 }),
        unchokedAgo: fc.option(fc.nat({ max: 120_000 }), { nil: undefined }),
      }),
      { maxLength: 24 },
    ),
    seeding: fc.boolean(),
    slots: fc.integer({ min: 1, max: 8 }),
    now: fc.integer({ min: 200_000, max: 10_000_000 }),
    optimistic: fc.option(fc.record({ pick: fc.nat(), ago: fc.nat({ max: 60_000 }), gone: fc.boolean() }), { nil: undefined }),
    seed: fc.integer(),
  })
  .map(({ peers, now, optimistic, ...rest }) => {
    // Sparse keys: the adapter's keys are not array positions.
    const chokePeers: ChokePeer[] = peers.map((p, i) => ({
      key: i * 3 + 1,
      interested: p.interested,
      unchoked: p.unchoked,
      snubbed: p.snubbed,
      downloadRate: p.downloadRate,
      uploadRate: p.uploadRate,
      unchokedAt: p.unchokedAgo === undefined ? -Infinity : now - p.unchokedAgo,
    }));
    const holder = optimistic && (optimistic.gone || chokePeers.length === 0 ? GONE_KEY : (chokePeers[optimistic.pick % chokePeers.length] as ChokePeer).key);
    return { ...rest, now, peers: chokePeers, optimistic: optimistic && { key: holder as number, since: now - optimistic.ago } };
  });

export function chokeContext(c: ChokeCase): ChokeContext {
  return { seeding: c.seeding, slots: c.slots, now: c.now, optimistic: c.optimistic, random: mulberry32(c.seed) };
}

/** Frozen so that a choker that sorts or edits its input in place throws. */
export function frozenPeers(peers: readonly ChokePeer[]): readonly ChokePeer[] {
  return Object.freeze(peers.map((p) => Object.freeze({ ...p })));
}

/** The contract every Choker keeps: DESIGN.md's upload rules that hold whatever the strategy. */
export function describeChokerCompliance(label: string, make: () => Choker): void {
  describe(`Choker compliance: ${label}`, () => {
    test('never unchokes an uninterested or unknown peer', () => {
      fc.assert(
        fc.property(arbChokeCase, (c) => {
          const interested = new Set(c.peers.filter((p) => p.interested).map((p) => p.key));
          for (const key of make().choose(frozenPeers(c.peers), chokeContext(c)).unchoke) expect(interested.has(key)).toBe(true);
        }),
      );
    });

    test('never unchokes more than the slots plus one optimistic', () => {
      fc.assert(
        fc.property(arbChokeCase, (c) => {
          expect(make().choose(frozenPeers(c.peers), chokeContext(c)).unchoke.size).toBeLessThanOrEqual(c.slots + 1);
        }),
      );
    });

    test('leaves no regular slot idle while a willing, non-snubbed peer waits', () => {
      fc.assert(
        fc.property(arbChokeCase, (c) => {
          const willing = c.peers.filter((p) => p.interested && !p.snubbed).length;
          expect(make().choose(frozenPeers(c.peers), chokeContext(c)).unchoke.size).toBeGreaterThanOrEqual(Math.min(willing, c.slots));
        }),
      );
    });

    test('the optimistic peer, if any, is interested and unchoked', () => {
      fc.assert(
        fc.property(arbChokeCase, (c) => {
          const { unchoke, optimistic } = make().choose(frozenPeers(c.peers), chokeContext(c));
          if (optimistic === undefined) return;
          expect(unchoke.has(optimistic.key)).toBe(true);
          expect(c.peers.find((p) => p.key === optimistic.key)?.interested).toBe(true);
          expect(optimistic.since).toBeLessThanOrEqual(c.now);
        }),
      );
    });

    test('is a function of its inputs and draws', () => {
      fc.assert(
        fc.property(arbChokeCase, (c) => {
          const a = make().choose(frozenPeers(c.peers), chokeContext(c));
          const b = make().choose(frozenPeers(c.peers), chokeContext(c));
          expect([...a.unchoke].sort()).toEqual([...b.unchoke].sort());
          expect(a.optimistic).toEqual(b.optimistic);
        }),
      );
    });

    test('with nobody interested, unchokes nobody', () => {
      const peers = [1, 2, 3].map((key) => ({ key, interested: false, unchoked: true, snubbed: false, downloadRate: 100, uploadRate: 100, unchokedAt: 0 }));
      for (const seeding of [false, true]) {
        const decision = make().choose(peers, { seeding, slots: 4, now: 60_000, random: () => 0, optimistic: { key: 2, since: 50_000 } });
        expect(decision.unchoke.size).toBe(0);
        expect(decision.optimistic).toBeUndefined();
      }
    });
  });
}
