import fc from 'fast-check';
import {
  DhtError,
  dhtConfig,
  MAX_ROUTING_STATE_BYTES,
  MAX_ROUTING_STATE_CONTACTS,
  parseRoutingState,
  RoutingTable,
  serializeRoutingState,
} from '../src';
import { contact, expectDhtError, idNumbered, idWithPrefix, randomSource } from './support';

const SELF = idWithPrefix('');

function filledTable(): RoutingTable {
  const t = new RoutingTable(SELF, dhtConfig({ maxPerGroupPerBucket: 0, maxPerGroupInTable: 0 }), 0);
  const random = randomSource(11);
  for (let i = 0; i < 400; i++) t.insert(contact(random(32), i % 2 ? `10.0.${i >> 8}.${i & 255}` : `2001:db8::${(i + 1).toString(16)}`, 1000 + i, i % 3 ? undefined : `site-${i % 5}`), 0, 'response');
  return t;
}

const valid = (): Record<string, unknown> => JSON.parse(serializeRoutingState(filledTable(), 1234)) as Record<string, unknown>;

describe('persisted routing table', () => {
  test('round trip: every node and replacement comes back, in order, with its site', () => {
    const t = filledTable();
    const state = parseRoutingState(serializeRoutingState(t, 1234));
    expect(state.nodeId).toEqual(SELF);
    expect(state.savedAt).toBe(1234);
    expect(state.nodes).toEqual(t.contacts().nodes);
    expect(state.replacements).toEqual(t.contacts().replacements);
    expect(state.nodes.length).toBe(t.size);
    expect(state.nodes.some((c) => c.site !== undefined)).toBe(true);
    // Bytes work as well as text.
    expect(parseRoutingState(Buffer.from(serializeRoutingState(t, 1234)))).toEqual(state);
  });

  test.each<[string, (s: Record<string, unknown>) => unknown, string]>([
    ['not an object', () => [], 'file'],
    ['another format', (s) => ({ ...s, format: 'libtorrent-dht' }), 'format'],
    ['a newer version', (s) => ({ ...s, version: 2 }), 'version'],
    ['an unknown key', (s) => ({ ...s, extra: 1 }), 'file'],
    ['a __proto__ key', (s) => JSON.parse(JSON.stringify(s).replace('{', '{"__proto__":{"polluted":1},')), 'file'],
    ['a bad own id', (s) => ({ ...s, nodeId: 'zz' }), 'nodeId'],
    ['a negative savedAt', (s) => ({ ...s, savedAt: -1 }), 'savedAt'],
    ['nodes not a list', (s) => ({ ...s, nodes: {} }), 'nodes'],
    ['a node id in upper case', (s) => ({ ...s, nodes: [{ id: 'A'.repeat(64), address: '10.0.0.1', port: 1 }] }), 'nodes[0].id'],
    ['a node without address', (s) => ({ ...s, nodes: [{ id: 'a'.repeat(64), port: 1 }] }), 'nodes[0].address'],
    ['a host name', (s) => ({ ...s, nodes: [{ id: 'a'.repeat(64), address: 'evil.example', port: 1 }] }), 'nodes[0].address'],
    ['a multicast address', (s) => ({ ...s, nodes: [{ id: 'a'.repeat(64), address: '224.0.0.1', port: 1 }] }), 'nodes[0].address'],
    ['port 0', (s) => ({ ...s, nodes: [{ id: 'a'.repeat(64), address: '10.0.0.1', port: 0 }] }), 'nodes[0].port'],
    ['port 1.5', (s) => ({ ...s, nodes: [{ id: 'a'.repeat(64), address: '10.0.0.1', port: 1.5 }] }), 'nodes[0].port'],
    ['a site with a newline', (s) => ({ ...s, replacements: [{ id: 'a'.repeat(64), address: '10.0.0.1', port: 1, site: 'a\nb' }] }), 'replacements[0].site'],
    ['an unknown node key', (s) => ({ ...s, nodes: [{ id: 'a'.repeat(64), address: '10.0.0.1', port: 1, trusted: true }] }), 'nodes[0]'],
    [
      'too many contacts',
      (s) => ({ ...s, nodes: Array.from({ length: MAX_ROUTING_STATE_CONTACTS / 2 + 1 }, () => ({ id: 'a'.repeat(64), address: '10.0.0.1', port: 1 })), replacements: Array.from({ length: MAX_ROUTING_STATE_CONTACTS / 2 }, () => ({ id: 'a'.repeat(64), address: '10.0.0.1', port: 1 })) }),
      'nodes',
    ],
  ])('refuses %s', (_name, change, field) => {
    const error = expectDhtError(() => parseRoutingState(JSON.stringify(change(valid()))), 'DHT_BAD_STATE');
    expect(error.message.startsWith(`${field}:`)).toBe(true);
  });

  test('refuses what is not JSON, or too large, before looking inside', () => {
    expectDhtError(() => parseRoutingState('{"format":'), 'DHT_BAD_STATE');
    expectDhtError(() => parseRoutingState(Buffer.from([0xff, 0xfe, 0x00])), 'DHT_BAD_STATE');
    expectDhtError(() => parseRoutingState(' '.repeat(MAX_ROUTING_STATE_BYTES + 1)), 'DHT_BAD_STATE');
    expectDhtError(() => parseRoutingState(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), 'DHT_BAD_STATE');
  });

  test('fuzz: truncated, mutated and arbitrary JSON files give DHT_BAD_STATE or a valid state, nothing else', () => {
    const text = serializeRoutingState(filledTable(), 99);
    const check = (input: string): void => {
      try {
        const state = parseRoutingState(input);
        for (const c of [...state.nodes, ...state.replacements]) expect(c.id).toHaveLength(32);
      } catch (error) {
        if (!(error instanceof DhtError) || error.code !== 'DHT_BAD_STATE') throw error;
      }
    };
    fc.assert(fc.property(fc.nat(text.length), (cut) => check(text.slice(0, cut))), { numRuns: 300 });
    fc.assert(
      fc.property(fc.nat(text.length - 1), fc.string({ minLength: 1, maxLength: 3 }), (at, insert) => check(text.slice(0, at) + insert + text.slice(at + 1))),
      { numRuns: 1000 },
    );
    fc.assert(fc.property(fc.jsonValue(), (value) => check(JSON.stringify(value))), { numRuns: 1000 });
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom('nodes', 'replacements', 'nodeId', 'savedAt', 'version'), (value, key) => check(JSON.stringify({ ...valid(), [key]: value }))),
      { numRuns: 300 },
    );
  });

  test('a node saved under another id (its key changed) is still readable', () => {
    const state = parseRoutingState(serializeRoutingState(new RoutingTable(idNumbered('1', 5), dhtConfig(), 0), 0));
    expect(state.nodeId).toEqual(idNumbered('1', 5));
    expect(state.nodes).toEqual([]);
  });
});
