import { PeerStore } from '../src';
import { randomSource } from './support';

const MIN = 60_000;
const IH = Buffer.alloc(20, 1);
const OTHER = Buffer.alloc(20, 2);
const peer = (n: number): { agentId: string; addresses: string[]; port: number } => ({ agentId: `agent-${n}`, addresses: [`10.0.0.${n}`], port: 6881 });

describe('peer store', () => {
  test('an announce lives 30 minutes after its last refresh', () => {
    const store = new PeerStore({ ttlMs: 30 * MIN, maxPerInfoHash: 100, maxTotal: 1000 });
    store.announce(0, IH, peer(1));
    store.announce(10 * MIN, IH, peer(2));
    expect(store.peers(30 * MIN - 1, IH, 10, randomSource())).toHaveLength(2);
    expect(store.peers(30 * MIN, IH, 10, randomSource())).toEqual([peer(2)]);
    store.announce(35 * MIN, IH, peer(2));
    expect(store.peers(64 * MIN, IH, 10, randomSource())).toEqual([peer(2)]);
    store.expire(65 * MIN);
    expect(store.size).toBe(0);
    expect(store.infoHashCount).toBe(0);
  });

  test('a re-announce replaces the peer record (new port, addresses)', () => {
    const store = new PeerStore({ ttlMs: 30 * MIN, maxPerInfoHash: 100, maxTotal: 1000 });
    store.announce(0, IH, peer(1));
    store.announce(1, IH, { ...peer(1), port: 7000 });
    expect(store.peers(2, IH, 10, randomSource())).toEqual([{ ...peer(1), port: 7000 }]);
    expect(store.size).toBe(1);
  });

  test('per info-hash cap: the oldest announce makes room', () => {
    const store = new PeerStore({ ttlMs: 30 * MIN, maxPerInfoHash: 3, maxTotal: 1000 });
    for (let i = 1; i <= 5; i++) store.announce(i, IH, peer(i));
    store.announce(6, OTHER, peer(9));
    expect(store.peers(7, IH, 10, randomSource()).map((p) => p.agentId).sort()).toEqual(['agent-3', 'agent-4', 'agent-5']);
    expect(store.size).toBe(4);
  });

  test('overall cap: the oldest announce of any info-hash makes room', () => {
    const store = new PeerStore({ ttlMs: 30 * MIN, maxPerInfoHash: 10, maxTotal: 3 });
    store.announce(1, IH, peer(1));
    store.announce(2, OTHER, peer(2));
    store.announce(3, IH, peer(3));
    store.announce(4, OTHER, peer(4));
    expect(store.size).toBe(3);
    expect(store.peers(5, IH, 10, randomSource()).map((p) => p.agentId)).toEqual(['agent-3']);
    // Evicting the last peer of an info-hash does not lose the new one.
    const one = new PeerStore({ ttlMs: 30 * MIN, maxPerInfoHash: 1, maxTotal: 1 });
    one.announce(1, IH, peer(1));
    one.announce(2, IH, peer(2));
    expect(one.peers(3, IH, 10, randomSource())).toEqual([peer(2)]);
  });

  test('a reply carries at most the asked number, a uniform sample of distinct peers', () => {
    const store = new PeerStore({ ttlMs: 30 * MIN, maxPerInfoHash: 100, maxTotal: 1000 });
    for (let i = 1; i <= 50; i++) store.announce(i, IH, peer(i));
    const random = randomSource(4);
    const counts = new Map<string, number>();
    for (let round = 0; round < 200; round++) {
      const sample = store.peers(100, IH, 10, random);
      expect(sample).toHaveLength(10);
      expect(new Set(sample.map((p) => p.agentId)).size).toBe(10);
      for (const p of sample) counts.set(p.agentId, (counts.get(p.agentId) ?? 0) + 1);
    }
    // Every peer turns up (200 x 10 draws over 50 peers: 40 each on average).
    expect(counts.size).toBe(50);
    expect(Math.min(...counts.values())).toBeGreaterThan(15);
  });
});
