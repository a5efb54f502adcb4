import { type BEncodable, type BValue, decode, encode } from '@shoal/torrent';
import fc from 'fast-check';
import {
  type Contact,
  decodeMessage,
  DhtError,
  type DhtMessage,
  encodeMessage,
  formatIp,
  MAX_MESSAGE_BYTES,
  MAX_NODES_PER_MESSAGE,
  MAX_VALUES_PER_MESSAGE,
  type PeerInfo,
  unusableAddressReason,
} from '../src';
import { expectDhtError } from './support';

const bytes = (min: number, max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));
const nodeId = bytes(32, 32);
const infoHash = bytes(20, 20);
const port = fc.integer({ min: 1, max: 65535 });
const ipv4 = bytes(4, 4).filter((b) => unusableAddressReason(b) === undefined).map(formatIp);
const ipv6 = bytes(16, 16).filter((b) => unusableAddressReason(b) === undefined).map(formatIp);
const address = fc.oneof(ipv4, ipv6);
const contactOf = (addr: fc.Arbitrary<string>): fc.Arbitrary<Contact> => fc.record({ id: nodeId, address: addr, port });
/** Nodes as the decoder returns them: IPv4 (`nodes`) before IPv6 (`nodes6`). */
const nodes = fc
  .tuple(fc.array(contactOf(ipv4), { maxLength: 16 }), fc.array(contactOf(ipv6), { maxLength: 16 }))
  .map(([v4, v6]) => [...v4, ...v6]);
const agentId = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/);
const peer: fc.Arbitrary<PeerInfo> = fc.record({ agentId, addresses: fc.uniqueArray(address, { minLength: 1, maxLength: 4 }), port });
const transactionId = bytes(1, 8);

const message: fc.Arbitrary<DhtMessage> = fc.oneof(
  fc.record({ type: fc.constant('query' as const), transactionId, senderId: nodeId, query: fc.constant({ method: 'ping' as const }) }),
  fc.record({ type: fc.constant('query' as const), transactionId, senderId: nodeId, query: fc.record({ method: fc.constant('find_node' as const), target: nodeId }) }),
  fc.record({ type: fc.constant('query' as const), transactionId, senderId: nodeId, query: fc.record({ method: fc.constant('get_peers' as const), infoHash }) }),
  fc.record({
    type: fc.constant('query' as const),
    transactionId,
    senderId: nodeId,
    query: fc.record({
      method: fc.constant('announce_peer' as const),
      infoHash,
      port,
      token: bytes(1, 32),
      addresses: fc.uniqueArray(address, { maxLength: 4 }),
    }),
  }),
  fc.record(
    {
      type: fc.constant('response' as const),
      transactionId,
      senderId: nodeId,
      nodes,
      token: bytes(1, 32),
      values: fc.array(peer, { maxLength: MAX_VALUES_PER_MESSAGE }),
    },
    { requiredKeys: ['type', 'transactionId', 'senderId', 'nodes'] },
  ),
  fc.record({
    type: fc.constant('error' as const),
    transactionId,
    senderId: nodeId,
    code: fc.integer({ min: 0, max: 9999 }),
    message: fc.string({ unit: 'grapheme', maxLength: 40 }),
  }),
);

/** Decoding either gives a message that survives re-encoding, or throws a DhtError: nothing else. */
function decodesSafely(input: Uint8Array): void {
  let decoded: DhtMessage;
  try {
    decoded = decodeMessage(input);
  } catch (error) {
    if (!(error instanceof DhtError)) throw error;
    return;
  }
  expect(decodeMessage(encodeMessage(decoded))).toEqual(decoded);
}

type Mutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'digit'; at: number; digit: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  // Bencode lengths and integers are ASCII digits: change one to reach lengths and counts.
  fc.record({ kind: fc.constant('digit' as const), at: fc.nat(), digit: fc.integer({ min: 0x30, max: 0x39 }) }),
);

function mutate(input: Buffer, m: Mutation): Buffer {
  const at = input.length === 0 ? 0 : m.at % input.length;
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(input);
      out[at] = m.value;
      return out;
    }
    case 'insert':
      return Buffer.concat([input.subarray(0, at), m.bytes, input.subarray(at)]);
    case 'delete':
      return Buffer.concat([input.subarray(0, at), input.subarray(at + m.count)]);
    case 'truncate':
      return input.subarray(0, at);
    case 'digit': {
      const digits = [...input.entries()].filter(([, b]) => b >= 0x30 && b <= 0x39).map(([i]) => i);
      const out = Buffer.from(input);
      if (digits.length > 0) out[digits[m.at % digits.length] as number] = m.digit;
      return out;
    }
  }
}

/** Any bencodable value: what a structure-aware mutation puts in place of a field. */
const anyValue: fc.Arbitrary<BEncodable> = fc.letrec<{ value: BEncodable }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer({ min: -1e6, max: 1e6 }),
    bytes(0, 60),
    fc.constantFrom('q', 'r', 'e', 'ping', 'find_node', 'get_peers', 'announce_peer'),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.array(fc.tuple(fc.constantFrom('id', 't', 'y', 'q', 'a', 'r', 'e', 'nodes', 'nodes6', 'token', 'values', 'ips', 'port', 'agent', 'info_hash', 'target'), tie('value')), { maxLength: 4 }).map((entries) => new Map(entries)),
  ),
})).value;

/** Replaces the value at a random path of the decoded message with `replacement`. */
function replaceAt(root: BValue, choice: number, replacement: BEncodable): BEncodable {
  const paths: (string | number)[][] = [];
  const walk = (value: BValue, path: (string | number)[]): void => {
    paths.push(path);
    if (value instanceof Map) for (const [key, child] of value) walk(child, [...path, key]);
    else if (Array.isArray(value)) value.forEach((child, i) => walk(child, [...path, i]));
  };
  walk(root, []);
  const path = paths[choice % paths.length] as (string | number)[];
  const rebuild = (value: BValue, depth: number): BEncodable => {
    if (depth === path.length) return replacement;
    const step = path[depth] as string | number;
    if (value instanceof Map) return new Map([...value].map(([key, child]) => [key, key === step ? rebuild(child, depth + 1) : child]));
    return (value as BValue[]).map((child, i) => (i === step ? rebuild(child, depth + 1) : child));
  };
  return rebuild(root, 0);
}

describe('codec: round trips', () => {
  test('every message decodes to what was encoded', () => {
    fc.assert(
      fc.property(message, (m) => {
        const encoded = encodeMessage(m);
        expect(encoded.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
        expect(decodeMessage(encoded)).toEqual(m);
      }),
      { numRuns: 500 },
    );
  });

  test('a ping keeps the BEP 5 layout, with a 32-byte id', () => {
    const id = Buffer.alloc(32, 0x61);
    const encoded = encodeMessage({ type: 'query', transactionId: Buffer.from('aa'), senderId: id, query: { method: 'ping' } });
    expect(encoded.toString('latin1')).toBe(`d1:ad2:id32:${'a'.repeat(32)}e1:q4:ping1:t2:aa1:y1:qe`);
    const error = encodeMessage({ type: 'error', transactionId: Buffer.from('aa'), senderId: id, code: 201, message: 'A Generic Error Ocurred' });
    expect(error.toString('latin1')).toBe(`d1:eli201e23:A Generic Error Ocurrede2:id32:${'a'.repeat(32)}1:t2:aa1:y1:ee`);
  });

  test('the largest valid message fits the size cap', () => {
    const v6 = 'fe80:ffff:ffff:ffff:ffff:ffff:ffff:fffe';
    const largest = encodeMessage({
      type: 'response',
      transactionId: Buffer.alloc(8),
      senderId: Buffer.alloc(32),
      nodes: Array.from({ length: MAX_NODES_PER_MESSAGE }, () => ({ id: Buffer.alloc(32, 1), address: v6, port: 65535 })),
      token: Buffer.alloc(32),
      values: Array.from({ length: MAX_VALUES_PER_MESSAGE }, (_, i) => ({
        agentId: `${'a'.repeat(60)}${String(i).padStart(3, '0')}`,
        addresses: [v6, '2001:db8::1', '2001:db8::2', '2001:db8::3'],
        port: 65535,
      })),
    });
    expect(largest.length).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(decodeMessage(largest).type).toBe('response');
  });

  test('unknown keys are ignored, so later versions can add fields', () => {
    const id = Buffer.alloc(32, 2);
    const withExtra = encode(new Map<string, BEncodable>([['a', new Map<string, BEncodable>([['id', id], ['want', ['n4']]])], ['q', 'ping'], ['t', 'xy'], ['v', 'LT01'], ['y', 'q']]));
    expect(decodeMessage(withExtra)).toEqual({ type: 'query', transactionId: Buffer.from('xy'), senderId: id, query: { method: 'ping' } });
  });

  test('an IPv4-mapped address is sent as IPv4, duplicate peer addresses collapse', () => {
    const id = Buffer.alloc(32, 3);
    const encoded = encodeMessage({ type: 'response', transactionId: Buffer.from('t'), senderId: id, nodes: [{ id, address: '::ffff:10.1.2.3', port: 1 }] });
    expect(decodeMessage(encoded)).toMatchObject({ nodes: [{ address: '10.1.2.3' }] });
  });
});

describe('codec: refusals carry their code and field', () => {
  const id = Buffer.alloc(32, 4);
  const query = (args: [string, BEncodable][], method = 'find_node'): Buffer =>
    encode(new Map<string, BEncodable>([['a', new Map<string, BEncodable>([['id', id], ...args])], ['q', method], ['t', 'tx'], ['y', 'q']]));
  const response = (body: [string, BEncodable][]): Buffer => encode(new Map<string, BEncodable>([['r', new Map<string, BEncodable>([['id', id], ...body])], ['t', 'tx'], ['y', 'r']]));
  const node = (address: Buffer, p = 1): Buffer => Buffer.concat([Buffer.alloc(32, 9), address, Buffer.from([p >> 8, p & 255])]);

  test.each<[string, Buffer, string, string | undefined]>([
    ['not bencode', Buffer.from('hello'), 'DHT_NOT_BENCODE', undefined],
    ['not a dictionary', encode(['x']), 'DHT_WRONG_TYPE', 'message'],
    ['no transaction id', encode(new Map([['y', 'q']])), 'DHT_MISSING_FIELD', 't'],
    ['a 9-byte transaction id', encode(new Map([['t', '123456789'], ['y', 'q']])), 'DHT_BAD_LENGTH', 't'],
    ['an unknown message type', encode(new Map([['t', 'aa'], ['y', 'x']])), 'DHT_BAD_VALUE', 'y'],
    ['a short node id', encode(new Map<string, BEncodable>([['a', new Map([['id', Buffer.alloc(20)]])], ['q', 'ping'], ['t', 'aa'], ['y', 'q']])), 'DHT_BAD_LENGTH', 'a.id'],
    ['a 20-byte target', query([['target', Buffer.alloc(20)]]), 'DHT_BAD_LENGTH', 'a.target'],
    ['a 32-byte info-hash', query([['info_hash', Buffer.alloc(32)]], 'get_peers'), 'DHT_BAD_LENGTH', 'a.info_hash'],
    ['port 0', query([['info_hash', Buffer.alloc(20)], ['port', 0], ['token', 'x']], 'announce_peer'), 'DHT_BAD_VALUE', 'a.port'],
    ['a port as a string', query([['info_hash', Buffer.alloc(20)], ['port', '80'], ['token', 'x']], 'announce_peer'), 'DHT_WRONG_TYPE', 'a.port'],
    ['no token', query([['info_hash', Buffer.alloc(20)], ['port', 80]], 'announce_peer'), 'DHT_MISSING_FIELD', 'a.token'],
    ['a 33-byte token', query([['info_hash', Buffer.alloc(20)], ['port', 80], ['token', Buffer.alloc(33)]], 'announce_peer'), 'DHT_BAD_LENGTH', 'a.token'],
    ['5 announced addresses', query([['info_hash', Buffer.alloc(20)], ['port', 80], ['token', 'x'], ['ips', Array.from({ length: 5 }, (_, i) => Buffer.from([10, 0, 0, i + 1]))]], 'announce_peer'), 'DHT_TOO_MANY', 'a.ips'],
    ['an unknown method', query([], 'store'), 'DHT_UNKNOWN_METHOD', 'q'],
    ['nodes not a multiple of 38', response([['nodes', Buffer.alloc(39)]]), 'DHT_BAD_LENGTH', 'r.nodes'],
    ['33 nodes', response([['nodes', Buffer.concat(Array.from({ length: 33 }, () => node(Buffer.from([10, 0, 0, 1]))))]]), 'DHT_TOO_MANY', 'r.nodes'],
    ['17 + 17 nodes in two families', response([
      ['nodes', Buffer.concat(Array.from({ length: 17 }, () => node(Buffer.from([10, 0, 0, 1]))))],
      ['nodes6', Buffer.concat(Array.from({ length: 17 }, () => node(Buffer.from('20010db8000000000000000000000001', 'hex'))))],
    ]), 'DHT_TOO_MANY', 'r.nodes'],
    ['a multicast node', response([['nodes', node(Buffer.from([224, 0, 0, 1]))]]), 'DHT_BAD_VALUE', 'r.nodes[0]'],
    ['an unspecified IPv6 node', response([['nodes6', node(Buffer.alloc(16))]]), 'DHT_BAD_VALUE', 'r.nodes6[0]'],
    ['a node on port 0', response([['nodes', node(Buffer.from([10, 0, 0, 1]), 0)]]), 'DHT_BAD_VALUE', 'r.nodes[0]'],
    ['65 peers', response([['values', Array.from({ length: 65 }, () => new Map<string, BEncodable>([['agent', 'a'], ['ips', [Buffer.from([10, 0, 0, 1])]], ['port', 1]]))]]), 'DHT_TOO_MANY', 'r.values'],
    ['a peer without addresses', response([['values', [new Map<string, BEncodable>([['agent', 'a'], ['ips', []], ['port', 1]])]]]), 'DHT_BAD_LENGTH', 'r.values[0].ips'],
    ['a peer with a bad agent id', response([['values', [new Map<string, BEncodable>([['agent', 'A B'], ['ips', [Buffer.from([10, 0, 0, 1])]], ['port', 1]])]]]), 'DHT_BAD_VALUE', 'r.values[0].agent'],
    ['an address of 5 bytes', response([['values', [new Map<string, BEncodable>([['agent', 'a'], ['ips', [Buffer.alloc(5, 1)]], ['port', 1]])]]]), 'DHT_BAD_LENGTH', 'r.values[0].ips[0]'],
    ['an error of 3 items', encode(new Map<string, BEncodable>([['e', [201, 'x', 1]], ['id', id], ['t', 'aa'], ['y', 'e']])), 'DHT_BAD_LENGTH', 'e'],
    ['an error text that is not UTF-8', encode(new Map<string, BEncodable>([['e', [201, Buffer.from([0xff])]], ['id', id], ['t', 'aa'], ['y', 'e']])), 'DHT_BAD_VALUE', 'e[1]'],
    ['an error without sender id', encode(new Map<string, BEncodable>([['e', [201, 'x']], ['t', 'aa'], ['y', 'e']])), 'DHT_MISSING_FIELD', 'id'],
  ])('%s', (_name, input, code, field) => {
    const error = expectDhtError(() => decodeMessage(input), code as DhtError['code']);
    expect(error.field).toBe(field);
  });

  test('oversized input is refused before it is parsed', () => {
    expectDhtError(() => decodeMessage(Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x64)), 'DHT_MESSAGE_TOO_LARGE');
    expectDhtError(() => decodeMessage(Buffer.from(`${MAX_MESSAGE_BYTES * 2}:`)), 'DHT_NOT_BENCODE');
  });

  test('a malformed query carries its transaction id (for a KRPC error reply); a malformed reply does not', () => {
    const bad = expectDhtError(() => decodeMessage(query([['target', Buffer.alloc(3)]])), 'DHT_BAD_LENGTH');
    expect(bad.queryTransactionId).toEqual(Buffer.from('tx'));
    const unknown = expectDhtError(() => decodeMessage(query([], 'vote')), 'DHT_UNKNOWN_METHOD');
    expect(unknown.queryTransactionId).toEqual(Buffer.from('tx'));
    expect(expectDhtError(() => decodeMessage(response([['nodes', Buffer.alloc(5)]])), 'DHT_BAD_LENGTH').queryTransactionId).toBeUndefined();
  });

  test('decoded fields are copies: they do not pin the message buffer', () => {
    const input = encodeMessage({ type: 'query', transactionId: Buffer.from('ab'), senderId: id, query: { method: 'find_node', target: id } });
    const decoded = decodeMessage(input) as Extract<DhtMessage, { type: 'query' }>;
    input.fill(0);
    expect(decoded.senderId).toEqual(id);
  });

  test('the encoder refuses what the decoder would refuse', () => {
    expectDhtError(() => encodeMessage({ type: 'query', transactionId: Buffer.alloc(9), senderId: id, query: { method: 'ping' } }), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => encodeMessage({ type: 'query', transactionId: Buffer.from('a'), senderId: id.subarray(1), query: { method: 'ping' } }), 'DHT_BAD_ARGUMENT');
    const node: Contact = { id, address: '224.0.0.1', port: 1 };
    expectDhtError(() => encodeMessage({ type: 'response', transactionId: Buffer.from('a'), senderId: id, nodes: [node] }), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => encodeMessage({ type: 'response', transactionId: Buffer.from('a'), senderId: id, nodes: [{ ...node, address: 'localhost' }] }), 'DHT_BAD_ADDRESS');
    expectDhtError(
      () => encodeMessage({ type: 'response', transactionId: Buffer.from('a'), senderId: id, nodes: [], values: [{ agentId: 'Agent', addresses: ['10.0.0.1'], port: 1 }] }),
      'DHT_BAD_ARGUMENT',
    );
    // Long error texts are cut on a character boundary.
    const long = encodeMessage({ type: 'error', transactionId: Buffer.from('a'), senderId: id, code: 203, message: 'é'.repeat(200) });
    expect((decodeMessage(long) as Extract<DhtMessage, { type: 'error' }>).message).toBe('é'.repeat(128));
  });
});

describe('codec: fuzzing (typed errors only)', () => {
  test('garbage bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (input) => decodesSafely(input)), { numRuns: 2000 });
  });

  test('truncations of valid messages', () => {
    fc.assert(
      fc.property(message, fc.nat(), (m, cut) => {
        const encoded = encodeMessage(m);
        const at = cut % encoded.length;
        expectDhtError(() => decodeMessage(encoded.subarray(0, at)), 'DHT_NOT_BENCODE');
      }),
      { numRuns: 500 },
    );
  });

  test('random mutations of valid messages', () => {
    fc.assert(
      fc.property(message, fc.array(mutation, { minLength: 1, maxLength: 4 }), (m, mutations) => {
        decodesSafely(mutations.reduce(mutate, encodeMessage(m)));
      }),
      { numRuns: 3000 },
    );
  });

  test('valid bencode with a field replaced by any value', () => {
    fc.assert(
      fc.property(message, fc.nat(), anyValue, (m, choice, replacement) => {
        decodesSafely(encode(replaceAt(decode(encodeMessage(m)), choice, replacement)));
      }),
      { numRuns: 3000 },
    );
  });

  test('oversized values: long strings, huge counts, deep nesting', () => {
    fc.assert(
      fc.property(message, fc.nat(), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 0, max: 3 }), (m, choice, size, shape) => {
        const big: BEncodable =
          shape === 0 ? Buffer.alloc(size, 0x41) : shape === 1 ? Array.from({ length: size % 300 }, () => 1) : shape === 2 ? 2 ** 53 - 1 : deepList(size % 80);
        const input = encode(replaceAt(decode(encodeMessage(m)), choice, big));
        decodesSafely(input);
      }),
      { numRuns: 1000 },
    );
  });
});

function deepList(depth: number): BEncodable {
  let value: BEncodable = [];
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}
