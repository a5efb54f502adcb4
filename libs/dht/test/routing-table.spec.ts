import { commonPrefixLength, compareDistance, dhtConfig, type DhtConfig, NODE_ID_BITS, RoutingTable } from '../src';
import { contact, idNumbered, idWithPrefix, randomSource } from './support';

const SELF = idWithPrefix('');
const MIN = 60_000;

function table(overrides: Partial<DhtConfig> = {}, now = 0): RoutingTable {
  return new RoutingTable(SELF, dhtConfig(overrides), now);
}

/** A distinct address per n, each in its own /24 (no diversity limit hit unless wanted). */
const addressOf = (n: number): string => `10.${(n >> 8) & 255}.${n & 255}.1`;

describe('routing table: buckets', () => {
  test('the first k nodes share one bucket; the k+1th splits the bucket that holds our own id', () => {
    const t = table();
    for (let i = 0; i < 8; i++) expect(t.insert(contact(idNumbered('1', i), addressOf(i)), 0, 'response').outcome).toBe('added');
    expect(t.bucketCount).toBe(1);
    // Shares the first bit with us: the split makes bucket 0 (far half, 8 nodes) and bucket 1 (ours).
    expect(t.insert(contact(idNumbered('01', 1), addressOf(100)), 0, 'response').outcome).toBe('added');
    expect(t.bucketCount).toBe(2);
    expect(t.bucket(0).nodes).toHaveLength(8);
    expect(t.bucket(1).nodes).toHaveLength(1);
    // The far bucket does not contain our id: full means full (the newcomer is cached).
    expect(t.insert(contact(idNumbered('1', 99), addressOf(99)), 0, 'response').outcome).toBe('cached');
    expect(t.bucketCount).toBe(2);
  });

  test('bucket i holds the ids sharing exactly i bits with ours; the last bucket everything closer', () => {
    const random = randomSource(3);
    const t = table({ maxPerGroupPerBucket: 0, maxPerGroupInTable: 0 });
    for (let i = 0; i < 2000; i++) t.insert(contact(random(32), addressOf(i)), 0, 'response');
    const last = t.bucketCount - 1;
    expect(last).toBeGreaterThan(5);
    for (let b = 0; b <= last; b++) {
      const { nodes } = t.bucket(b);
      expect(nodes.length).toBeLessThanOrEqual(8);
      for (const node of nodes) {
        const shared = commonPrefixLength(SELF, node.id);
        if (b < last) expect(shared).toBe(b);
        else expect(shared).toBeGreaterThanOrEqual(b);
        expect(t.bucketIndexOf(node.id)).toBe(b);
      }
    }
    // Far buckets are full of random nodes; the table stays small (about k per level).
    expect(t.bucket(0).nodes).toHaveLength(8);
    expect(t.size).toBeLessThanOrEqual(8 * (last + 1));
  });

  test('k is configurable (8..20)', () => {
    const t = table({ k: 20 });
    for (let i = 0; i < 20; i++) t.insert(contact(idNumbered('1', i), addressOf(i)), 0, 'response');
    expect(t.bucketCount).toBe(1);
    expect(t.size).toBe(20);
  });

  test('our own id is never inserted, and splitting stops at 256 buckets', () => {
    const t = table({ k: 8, maxPerGroupPerBucket: 0, maxPerGroupInTable: 0 });
    expect(t.insert(contact(SELF, '10.0.0.1'), 0, 'response').outcome).toBe('self');
    // Ids differing from ours only in the last byte force splits down to the bottom.
    for (let i = 1; i <= 40; i++) t.insert(contact(idNumbered('', i), addressOf(i)), 0, 'response');
    expect(t.bucketCount).toBeLessThanOrEqual(NODE_ID_BITS);
    expect(t.size).toBeGreaterThan(8);
  });

  test('closest() returns nodes by XOR distance, without stale nodes or the excluded id', () => {
    const random = randomSource(5);
    const t = table({ maxPerGroupPerBucket: 0, maxPerGroupInTable: 0 });
    const inserted = Array.from({ length: 300 }, (_, i) => contact(random(32), addressOf(i)));
    for (const c of inserted) t.insert(c, 0, 'response');
    const target = random(32);
    const closest = t.closest(target, 8);
    expect(closest).toHaveLength(8);
    for (let i = 1; i < closest.length; i++) expect(compareDistance((closest[i - 1] as typeof closest[0]).id, (closest[i] as typeof closest[0]).id, target)).toBeLessThan(0);
    const first = closest[0] as (typeof closest)[0];
    expect(t.closest(target, 8, first.id).map((c) => c.id)).not.toContainEqual(first.id);
    t.failed(first);
    t.failed(first);
    expect(t.closest(target, 8).map((c) => c.id)).not.toContainEqual(first.id);
  });
});

describe('routing table: LRU, replacements, eviction', () => {
  /** A table whose far bucket (ids starting with 1) is full: nodes 0..7, node 0 least recently seen. */
  function fullFarBucket(overrides: Partial<DhtConfig> = {}): { t: RoutingTable; far: ReturnType<typeof contact>[] } {
    const t = table(overrides);
    const far = Array.from({ length: 8 }, (_, i) => contact(idNumbered('1', i), addressOf(i)));
    for (const [i, c] of far.entries()) t.insert(c, i, 'response');
    t.insert(contact(idNumbered('01', 1), addressOf(100)), 0, 'response');
    return { t, far };
  }

  test('hearing from a known node moves it to the most recently seen end', () => {
    const { t, far } = fullFarBucket();
    expect(t.insert(far[0] as ReturnType<typeof contact>, 10, 'query').outcome).toBe('updated');
    expect(t.bucket(0).nodes.map((c) => c.id)).toEqual([...far.slice(1), far[0]].map((c) => c?.id));
  });

  test('a full bucket of good nodes caches newcomers (bounded, most recent kept) and pings nobody', () => {
    const { t } = fullFarBucket({ replacementCacheSize: 3 });
    for (let i = 0; i < 5; i++) {
      const result = t.insert(contact(idNumbered('1', 100 + i), addressOf(100 + i)), 60_000, 'response');
      expect(result).toEqual({ outcome: 'cached' });
    }
    expect(t.bucket(0).replacements.map((c) => c.id)).toEqual([102, 103, 104].map((n) => idNumbered('1', n)));
  });

  test('ping before evict: a questionable node is pinged; if it answers it stays, the newcomer waits', () => {
    const { t, far } = fullFarBucket();
    const later = 15 * MIN + 10;
    const result = t.insert(contact(idNumbered('1', 200), addressOf(200)), later, 'response');
    // The least recently seen questionable node (not heard from for 15 minutes) is asked first.
    expect(result).toEqual({ outcome: 'cached', ping: far[0] });
    // A second newcomer meanwhile pings the next questionable node, not the same one again.
    expect(t.insert(contact(idNumbered('1', 201), addressOf(201)), later, 'response').ping).toEqual(far[1]);
    expect(t.insert(far[0] as ReturnType<typeof contact>, later + 1, 'response').outcome).toBe('updated');
    expect(t.bucket(0).nodes).toContainEqual(far[0]);
    expect(t.bucket(0).replacements).toHaveLength(2);
  });

  test('a node that fails maxFailures queries in a row is evicted for the most recent replacement', () => {
    const { t, far } = fullFarBucket({ maxFailures: 2 });
    const newcomer = contact(idNumbered('1', 300), addressOf(300));
    t.insert(newcomer, 15 * MIN + 1, 'response');
    const victim = far[0] as ReturnType<typeof contact>;
    expect(t.failed(victim)).toBe('counted');
    expect(t.failed(victim)).toBe('evicted');
    expect(t.get(victim.id)).toBeUndefined();
    expect(t.bucket(0).nodes).toContainEqual(newcomer);
    expect(t.bucket(0).replacements).toHaveLength(0);
  });

  test('a stale node without a replacement stays until a newcomer takes its place at once', () => {
    const { t, far } = fullFarBucket({ maxFailures: 1 });
    const victim = far[3] as ReturnType<typeof contact>;
    expect(t.failed(victim)).toBe('stale');
    expect(t.get(victim.id)?.failures).toBe(1);
    const newcomer = contact(idNumbered('1', 400), addressOf(400));
    expect(t.insert(newcomer, 5, 'query').outcome).toBe('replaced');
    expect(t.get(victim.id)).toBeUndefined();
    expect(t.get(newcomer.id)?.lastResponded).toBeUndefined();
  });

  test('an answer resets the failure count', () => {
    const { t, far } = fullFarBucket({ maxFailures: 2 });
    const node = far[2] as ReturnType<typeof contact>;
    t.failed(node);
    t.insert(node, 100, 'response');
    expect(t.get(node.id)?.failures).toBe(0);
    expect(t.failed(node)).toBe('counted');
  });

  test('a failure at another address than the known one does not count against the node', () => {
    const { t, far } = fullFarBucket({ maxFailures: 1 });
    const node = far[1] as ReturnType<typeof contact>;
    expect(t.failed({ ...node, address: '10.99.99.99' })).toBe('unknown');
    expect(t.get(node.id)?.failures).toBe(0);
  });

  test('a verified node that moved is updated to its new address', () => {
    const { t, far } = fullFarBucket();
    const node = far[1] as ReturnType<typeof contact>;
    t.insert({ ...node, address: '10.200.0.9' }, 50, 'response');
    expect(t.get(node.id)?.contact.address).toBe('10.200.0.9');
  });
});

describe('routing table: diversity', () => {
  test('at most maxPerGroupPerBucket nodes of one /24 per bucket', () => {
    const t = table({ maxPerGroupPerBucket: 2 });
    const outcomes = [0, 1, 2, 3].map((i) => t.insert(contact(idNumbered('1', i), `192.168.7.${i + 1}`), 0, 'response').outcome);
    expect(outcomes).toEqual(['added', 'added', 'diversity', 'diversity']);
    expect(t.refusedForDiversity).toBe(2);
    // Another /24, or the same /24 in another bucket, is fine.
    expect(t.insert(contact(idNumbered('1', 9), '192.168.8.1'), 0, 'response').outcome).toBe('added');
  });

  test('IPv6 nodes are grouped by /64', () => {
    const t = table({ maxPerGroupPerBucket: 1 });
    expect(t.insert(contact(idNumbered('1', 1), '2001:db8:0:1::1'), 0, 'response').outcome).toBe('added');
    expect(t.insert(contact(idNumbered('1', 2), '2001:db8:0:1:ffff::2'), 0, 'response').outcome).toBe('diversity');
    expect(t.insert(contact(idNumbered('1', 3), '2001:db8:0:2::1'), 0, 'response').outcome).toBe('added');
  });

  test('at most maxPerGroupInTable nodes of one group in the whole table', () => {
    const t = table({ maxPerGroupPerBucket: 0, maxPerGroupInTable: 3, maxFailures: 1 });
    const outcomes = ['1', '01', '001', '0001'].map((prefix, i) => t.insert(contact(idNumbered(prefix, 1), `172.16.0.${i + 1}`), 0, 'response').outcome);
    expect(outcomes).toEqual(['added', 'added', 'added', 'diversity']);
  });

  test("'site' mode groups by the certificate's site label; nodes without one by prefix", () => {
    const t = table({ diversity: 'site', maxPerGroupPerBucket: 2 });
    const outcomes = [0, 1, 2].map((i) => t.insert(contact(idNumbered('1', i), `10.${i}.0.1`, 6881, 'eu-west/a/rack-1'), 0, 'response').outcome);
    expect(outcomes).toEqual(['added', 'added', 'diversity']);
    expect(t.insert(contact(idNumbered('1', 5), '10.9.0.1', 6881, 'us-east/b/rack-2'), 0, 'response').outcome).toBe('added');
    const unlabelled = [6, 7, 8].map((i) => t.insert(contact(idNumbered('1', i), `10.9.0.${i}`), 0, 'response').outcome);
    expect(unlabelled).toEqual(['added', 'added', 'diversity']);
  });

  test('loopback nodes (one host) are not limited', () => {
    const t = table({ maxPerGroupPerBucket: 1, maxPerGroupInTable: 1 });
    for (let i = 0; i < 8; i++) expect(t.insert(contact(idNumbered('1', i), '127.0.0.1', 7000 + i), 0, 'response').outcome).toBe('added');
  });

  test('a newcomer of a group that has its share of a full bucket is refused, not cached', () => {
    const t = table({ maxPerGroupPerBucket: 1, maxFailures: 1 });
    const far = Array.from({ length: 8 }, (_, i) => contact(idNumbered('1', i), addressOf(i)));
    for (const c of far) t.insert(c, 0, 'response');
    t.insert(contact(idNumbered('01', 1), addressOf(100)), 0, 'response');
    expect(t.insert(contact(idNumbered('1', 50), '10.0.0.2'), 1, 'response').outcome).toBe('diversity');
    expect(t.bucket(0).replacements).toHaveLength(0);
    expect(t.failed(far[0] as ReturnType<typeof contact>)).toBe('stale');
    // A stale node's place may go to a node of its own group.
    expect(t.insert(contact(idNumbered('1', 51), '10.0.0.3'), 2, 'response').outcome).toBe('replaced');
  });
});

describe('routing table: refresh', () => {
  test('buckets untouched for 15 minutes are due, each with a random target inside the bucket', () => {
    const t = table({}, 0);
    for (let i = 0; i < 8; i++) t.insert(contact(idNumbered('1', i), addressOf(i)), 0, 'response');
    t.insert(contact(idNumbered('01', 1), addressOf(100)), 0, 'response');
    t.insert(contact(idNumbered('001', 1), addressOf(101)), 0, 'response');
    expect(t.refreshDue(15 * MIN - 1, randomSource())).toEqual([]);
    expect(t.nextRefreshAt()).toBe(15 * MIN);
    const due = t.refreshDue(15 * MIN, randomSource());
    expect(due.map((d) => d.bucket)).toEqual([0, 1]);
    for (const { bucket, target } of due) expect(t.bucketIndexOf(target)).toBe(bucket);
    // Marked touched: not due again until another 15 minutes pass.
    expect(t.refreshDue(15 * MIN + 1, randomSource())).toEqual([]);
  });

  test('an answer touches the bucket; a query from the node does not', () => {
    const t = table({}, 0);
    const node = contact(idNumbered('1', 1), addressOf(1));
    t.insert(node, 0, 'response');
    t.insert(node, 10 * MIN, 'query');
    expect(t.nextRefreshAt()).toBe(15 * MIN);
    t.insert(node, 10 * MIN, 'response');
    expect(t.nextRefreshAt()).toBe(25 * MIN);
  });

  test('random targets cover the whole bucket range', () => {
    const t = table();
    for (let i = 0; i < 8; i++) t.insert(contact(idNumbered('1', i), addressOf(i)), 0, 'response');
    t.insert(contact(idNumbered('01', 1), addressOf(100)), 0, 'response');
    const random = randomSource(9);
    const seen = new Set<number>();
    for (let i = 0; i < 64; i++) {
      const refresh = t.refreshDue(15 * MIN * (i + 1), random).find((d) => d.bucket === 1);
      if (refresh) seen.add((refresh.target[0] as number) >> 5);
    }
    // Bucket 1 is the last: ids starting with 0; the next two bits take every value.
    expect([...seen].sort()).toEqual([0, 1, 2, 3]);
  });
});
