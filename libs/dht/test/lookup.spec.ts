import { type Contact, Lookup, type LookupEndpoint, type LookupOptions } from '../src';
import { contact, idWithPrefix } from './support';

const SELF = idWithPrefix('1111');
const TARGET = idWithPrefix('');

/** Node n at distance n * 2^16 from the target (smaller n: closer), in its own /24. */
function node(n: number): Contact {
  const id = idWithPrefix('');
  id.writeUInt16BE(n, 28);
  return contact(id, `10.0.${n >> 8}.${n & 255}`);
}

function lookup(seeds: Contact[], overrides: Partial<LookupOptions> = {}): Lookup {
  return new Lookup({
    lookup: 1,
    kind: 'find_node',
    purpose: 'lookup',
    target: TARGET,
    selfId: SELF,
    k: 4,
    alpha: 2,
    contactsPerReply: 8,
    maxQueries: 100,
    distrustAfterFailures: 2,
    seeds,
    now: 0,
    ...overrides,
  });
}

type Behaviour = Contact[] | 'dead';

/**
 * Drives a lookup in lock-step rounds: everything `next` offers is answered (or fails) before the
 * next call. `world` maps "address:port" to what answers there.
 */
function run(l: Lookup, world: Map<string, Behaviour>): string[][] {
  const rounds: string[][] = [];
  for (let guard = 0; guard < 100 && !l.finished; guard++) {
    const batch = l.next(Infinity);
    if (batch.length === 0) continue;
    rounds.push(batch.map((e) => `${e.contact.address}`));
    for (const endpoint of batch) settle(l, endpoint, world);
  }
  return rounds;
}

function settle(l: Lookup, endpoint: LookupEndpoint, world: Map<string, Behaviour>): void {
  const behaviour = world.get(`${endpoint.contact.address}:${endpoint.contact.port}`);
  if (behaviour === undefined || behaviour === 'dead') l.failed(endpoint);
  else l.answered(endpoint, behaviour);
}

const world = (entries: [Contact, Behaviour][]): Map<string, Behaviour> => new Map(entries.map(([c, b]) => [`${c.address}:${c.port}`, b]));

describe('lookup', () => {
  test('queries alpha at a time, closest first, and ends when the k closest have answered', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => node(100 - i * 10));
    const l = lookup(nodes.slice(0, 6), { alpha: 2, k: 4 });
    const first = l.next(Infinity);
    expect(first.map((e) => e.contact)).toEqual([node(50), node(60)]);
    expect(l.next(Infinity)).toEqual([]);
    for (const e of first) l.answered(e, []);
    expect(l.next(Infinity).map((e) => e.contact)).toEqual([node(70), node(80)]);
    expect(l.finished).toBe(false);
  });

  test('rounds: the longest chain of replies that led to a query; the closest nodes are found', () => {
    // 90 (seed) knows 40, 40 knows 5, 5 knows 1..4: four sequential exchanges.
    const w = world([
      [node(90), [node(40)]],
      [node(40), [node(5)]],
      [node(5), [node(1), node(2), node(3), node(4)]],
      [node(1), []],
      [node(2), []],
      [node(3), []],
      [node(4), []],
    ]);
    const l = lookup([node(90)], { k: 4, alpha: 3 });
    run(l, w);
    const result = l.result(10);
    expect(l.finished).toBe(true);
    expect(result.closest).toEqual([node(1), node(2), node(3), node(4)]);
    expect(result.rounds).toBe(4);
    expect(result.queries).toBe(7);
    expect(result.answers).toBe(7);
    expect(result.exhausted).toBe(false);
  });

  test('a node named again from a shallower reply takes the shallower round', () => {
    const w = world([
      [node(90), [node(40)]],
      [node(80), [node(2)]],
      [node(40), [node(2)]],
      [node(2), []],
    ]);
    const l = lookup([node(90), node(80)], { k: 2, alpha: 1 });
    run(l, w);
    expect(l.result(0).rounds).toBe(2);
  });

  test('dead nodes leave the window: the k closest answering nodes are still found', () => {
    const w = world([
      [node(90), [node(1), node(2), node(3), node(4), node(5), node(6)]],
      [node(1), 'dead'],
      [node(2), []],
      [node(3), 'dead'],
      [node(4), []],
      [node(5), []],
      [node(6), []],
    ]);
    const l = lookup([node(90)], { k: 4 });
    run(l, w);
    const result = l.result(0);
    expect(result.closest).toEqual([node(2), node(4), node(5), node(6)]);
    expect(result.failures).toBe(2);
  });

  test('a slow query frees its slot; its late answer still counts', () => {
    const l = lookup([node(10), node(20), node(30)], { alpha: 1, k: 3 });
    const [first] = l.next(Infinity) as [LookupEndpoint];
    expect(first.contact).toEqual(node(10));
    l.slow(first);
    const [second] = l.next(Infinity) as [LookupEndpoint];
    expect(second.contact).toEqual(node(20));
    l.answered(first, [node(1)]);
    l.answered(second, []);
    expect(l.next(Infinity).map((e) => e.contact)).toEqual([node(1)]);
  });

  test('the node limit on queries in flight is respected', () => {
    const l = lookup([node(10), node(20), node(30)], { alpha: 3 });
    expect(l.next(1)).toHaveLength(1);
    expect(l.next(0)).toHaveLength(0);
    expect(l.finished).toBe(false);
  });

  test('stops at maxQueries and says so', () => {
    const chain = Array.from({ length: 20 }, (_, i) => node(1000 - i * 40));
    const w = world(chain.map((c, i) => [c, chain[i + 1] ? [chain[i + 1] as Contact] : []]));
    const l = lookup([chain[0] as Contact], { maxQueries: 5, alpha: 1, k: 2 });
    run(l, w);
    expect(l.finished).toBe(true);
    expect(l.result(0)).toMatchObject({ queries: 5, exhausted: true });
  });

  test('never queries itself, and takes at most contactsPerReply contacts from one reply', () => {
    const self = contact(SELF, '10.9.9.9');
    const padded = [self, ...Array.from({ length: 20 }, (_, i) => node(i + 1))];
    const l = lookup([node(500)], { contactsPerReply: 5, k: 20, alpha: 20 });
    const [seed] = l.next(Infinity) as [LookupEndpoint];
    l.answered(seed, padded);
    const asked = l.next(Infinity).map((e) => e.contact);
    expect(asked).toEqual([node(1), node(2), node(3), node(4)]);
  });
});

describe('lookup against hostile nodes', () => {
  /** Ids closer to the target than any real node, at addresses where nothing answers. */
  function invented(n: number): Contact {
    const id = idWithPrefix('');
    id[31] = n;
    return contact(id, `10.255.0.${n}`);
  }

  test('a node whose referrals keep failing is distrusted: the rest of its inventions are skipped', () => {
    const liar = node(300);
    const honest = node(310);
    const lies = Array.from({ length: 8 }, (_, i) => invented(i + 1));
    const w = world([
      [liar, lies],
      [honest, [node(1), node(2)]],
      [node(1), []],
      [node(2), []],
    ]);
    const l = lookup([liar, honest], { k: 2, alpha: 2, distrustAfterFailures: 2 });
    run(l, w);
    const result = l.result(0);
    expect(result.closest).toEqual([node(1), node(2)]);
    expect(result.distrusted).toBe(1);
    // Two lies were tried, the other six were never queried.
    expect(result.failures).toBe(2);
    expect(result.discarded).toBe(6);
    expect(result.queries).toBe(6);
  });

  test('a contact an honest node also named is not skipped when its other referrer is distrusted', () => {
    const liar = node(300);
    const honest = node(310);
    const shared = node(3);
    const w = world([
      [liar, [invented(1), invented(2), shared]],
      [honest, [shared, node(4)]],
      [shared, []],
      [node(4), []],
    ]);
    const l = lookup([liar, honest], { k: 2, alpha: 2 });
    run(l, w);
    expect(l.result(0).closest).toEqual([shared, node(4)]);
  });

  test('a false address for a real id does not hide the true one', () => {
    const liar = node(300);
    const honest = node(310);
    const real = node(2);
    const w = world([
      [liar, [{ ...real, address: '10.255.9.9' }]],
      [honest, [real]],
      [real, []],
    ]);
    const l = lookup([liar, honest], { k: 2, alpha: 1 });
    run(l, w);
    expect(l.result(0).closest).toEqual([real, liar]);
  });

  test('with several addresses for one id, the one more trusted referrers named is tried first', () => {
    const real = node(2);
    const liar = node(300);
    const honest1 = node(310);
    const honest2 = node(320);
    const l = lookup([liar, honest1, honest2], { k: 3, alpha: 3 });
    const seeds = l.next(Infinity);
    const at = (c: Contact): LookupEndpoint => seeds.find((e) => e.contact.address === c.address) as LookupEndpoint;
    l.answered(at(liar), [{ ...real, address: '10.255.9.9' }]);
    l.answered(at(honest1), [real]);
    l.answered(at(honest2), [real]);
    expect(l.next(Infinity).map((e) => e.contact)).toEqual([real]);
  });

  test('an honest node whose first referral was dead is not distrusted once another answers', () => {
    const w = world([
      [node(90), [node(1), node(2), node(3), node(4), node(5)]],
      [node(1), 'dead'],
      [node(2), []],
      [node(3), 'dead'],
      [node(4), 'dead'],
      [node(5), []],
    ]);
    const l = lookup([node(90)], { k: 2, alpha: 2 });
    run(l, w);
    expect(l.result(0)).toMatchObject({ closest: [node(2), node(5)], distrusted: 0, discarded: 0 });
  });
});
