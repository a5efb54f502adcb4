import {
  type Contact,
  decodeMessage,
  type DhtAction,
  type DhtConfig,
  DhtNode,
  DhtSimNetwork,
  encodeMessage,
  type ErrorMessage,
  infoHashTarget,
  KRPC_ERROR,
  parseRoutingState,
  type QueryMessage,
  type ResponseMessage,
  type Sender,
} from '../src';
import { contact, expectDhtError, idNumbered, idWithPrefix, randomSource } from './support';

const SEC = 1000;
const MIN = 60 * SEC;
const INFO_HASH = Buffer.alloc(20, 0x5a);

function makeNode(id = idWithPrefix('0'), config: Partial<DhtConfig> = {}, seed = 1): DhtNode {
  return new DhtNode({ id, randomBytes: randomSource(seed), now: 0, config });
}

const senderOf = (c: Contact, agentId = 'agent-x'): Sender => ({ id: c.id, address: c.address, port: c.port, agentId });

function query(from: Contact, q: QueryMessage['query'], transactionId = Buffer.from('tx01')): Buffer {
  return encodeMessage({ type: 'query', transactionId, senderId: from.id, query: q });
}

function replies(node: DhtNode): (ResponseMessage | ErrorMessage)[] {
  return node
    .takeActions()
    .filter((a): a is Extract<DhtAction, { type: 'reply' }> => a.type === 'reply')
    .map((a) => decodeMessage(a.bytes) as ResponseMessage | ErrorMessage);
}

function queriesOf(actions: DhtAction[]): Extract<DhtAction, { type: 'query' }>[] {
  return actions.filter((a): a is Extract<DhtAction, { type: 'query' }> => a.type === 'query');
}

/** A node whose table holds 40 nodes spread over the id space, each in its own /24. */
function populated(): { node: DhtNode; known: Contact[] } {
  const node = makeNode();
  const random = randomSource(7);
  const known = Array.from({ length: 40 }, (_, i) => contact(random(32), `10.1.${i}.1`));
  for (const c of known) node.table.insert(c, 0, 'response');
  return { node, known };
}

describe('DhtNode: serving queries', () => {
  const requester = contact(idWithPrefix('1', 0x11), '10.9.9.9', 7000);

  test('ping, find_node: the reply carries our id and the closest nodes, never the requester', () => {
    const { node } = populated();
    node.table.insert(requester, 0, 'response');
    node.receive(1, senderOf(requester), query(requester, { method: 'ping' }));
    const [pong] = replies(node) as [ResponseMessage];
    expect(pong).toMatchObject({ type: 'response', transactionId: Buffer.from('tx01'), senderId: node.id, nodes: [] });

    node.receive(2, senderOf(requester), query(requester, { method: 'find_node', target: requester.id }));
    const [found] = replies(node) as [ResponseMessage];
    expect(found.nodes).toHaveLength(16);
    expect(found.nodes.map((n) => n.id)).not.toContainEqual(requester.id);
    expect(found.nodes).toEqual(node.table.closest(requester.id, 16, requester.id).map(({ id, address, port }) => ({ id, address, port })));
    expect(node.counters.queriesServed).toBe(2);
  });

  test('a querier with a known listening port enters the table (unverified answer: questionable); one without does not', () => {
    const node = makeNode();
    node.receive(1, senderOf(requester), query(requester, { method: 'ping' }));
    expect(node.table.get(requester.id)).toMatchObject({ lastResponded: undefined, lastSeen: 1 });
    const other = contact(idWithPrefix('11'), '10.9.9.8');
    node.receive(1, { id: other.id, address: other.address }, query(other, { method: 'ping' }));
    expect(node.table.get(other.id)).toBeUndefined();
    expect(replies(node)).toHaveLength(2);
  });

  test('a message claiming another id than its certificate proves is dropped and counted', () => {
    const node = makeNode();
    const impostor = contact(idWithPrefix('101'), '10.9.9.7');
    node.receive(1, senderOf(impostor), query(requester, { method: 'ping' }));
    expect(node.takeActions()).toEqual([]);
    expect(node.counters.senderMismatch).toBe(1);
    expect(node.table.size).toBe(0);
  });

  test('a malformed query is answered with KRPC error 203, an unknown method with 204; garbage is only counted', () => {
    const node = makeNode();
    const bad = Buffer.from(query(requester, { method: 'find_node', target: requester.id }).toString('latin1').replace('6:target32:', '6:target31:').replace(/.(e1:q9:find_node)/, '$1'), 'latin1');
    node.receive(1, senderOf(requester), bad);
    const [error] = replies(node) as [ErrorMessage];
    expect(error).toMatchObject({ type: 'error', code: KRPC_ERROR.protocol, transactionId: Buffer.from('tx01'), senderId: node.id });
    expect(error.message).toContain('a.target');

    const unknown = Buffer.from(query(requester, { method: 'ping' }).toString('latin1').replace('4:ping', '4:vote'), 'latin1');
    node.receive(2, senderOf(requester), unknown);
    expect(replies(node)).toMatchObject([{ type: 'error', code: KRPC_ERROR.methodUnknown }]);

    node.receive(3, senderOf(requester), Buffer.from('GET / HTTP/1.1\r\n'));
    expect(node.takeActions()).toEqual([]);
    expect(node.counters.malformed).toBe(3);
  });

  test('bad adapter input is a typed error, not a crash', () => {
    const node = makeNode();
    expectDhtError(() => node.receive(1, { ...senderOf(requester), id: Buffer.alloc(3) }, Buffer.alloc(0)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => node.receive(1, { ...senderOf(requester), address: 'host' }, Buffer.alloc(0)), 'DHT_BAD_ADDRESS');
    expectDhtError(() => node.receive(Number.NaN, senderOf(requester), Buffer.alloc(0)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => node.findNode(1, Buffer.alloc(20)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => node.getPeers(1, Buffer.alloc(32)), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => node.announce(1, INFO_HASH, 0), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => node.bootstrap(1, [{ id: Buffer.alloc(32), address: '10.0.0.1', port: 70000 }]), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => new DhtNode({ id: Buffer.alloc(32), randomBytes: () => Buffer.alloc(1), now: 0 }), 'DHT_BAD_ARGUMENT');
    expectDhtError(() => new DhtNode({ id: Buffer.alloc(32), randomBytes: randomSource(), now: 0, config: { k: 99 } }), 'DHT_BAD_CONFIG');
  });
});

describe('DhtNode: tokens and the peer store', () => {
  const announcer = contact(idWithPrefix('1', 0x22), '10.7.0.5', 7001);
  const reader = contact(idWithPrefix('1', 0x33), '10.7.0.6', 7002);

  function tokenFor(node: DhtNode, who: Contact, now: number): Buffer {
    node.receive(now, senderOf(who), query(who, { method: 'get_peers', infoHash: INFO_HASH }));
    const [reply] = replies(node) as [ResponseMessage];
    expect(reply.token).toBeDefined();
    return reply.token as Buffer;
  }

  const announceQuery = (who: Contact, token: Buffer, addresses: string[] = []): Buffer =>
    query(who, { method: 'announce_peer', infoHash: INFO_HASH, port: 6999, token, addresses });

  test('announce with a valid token: stored under the certificate agent id, source address first', () => {
    const node = makeNode();
    const token = tokenFor(node, announcer, 0);
    node.receive(1, senderOf(announcer, 'agent-22'), announceQuery(announcer, token, ['2001:db8::5', '10.7.0.5']));
    expect(replies(node)).toMatchObject([{ type: 'response' }]);
    node.receive(2, senderOf(reader), query(reader, { method: 'get_peers', infoHash: INFO_HASH }));
    const [reply] = replies(node) as [ResponseMessage];
    expect(reply.values).toEqual([{ agentId: 'agent-22', addresses: ['10.7.0.5', '2001:db8::5'], port: 6999 }]);
    expect(node.storedPeers).toBe(1);
  });

  test('a token is refused from another node, from another address, and after 10 minutes', () => {
    const node = makeNode();
    const token = tokenFor(node, announcer, 0);
    node.receive(1, senderOf(reader), announceQuery(reader, token));
    node.receive(1, { ...senderOf(announcer), address: '10.7.0.99' }, announceQuery(announcer, token));
    node.receive(10 * MIN, senderOf(announcer), announceQuery(announcer, token));
    const errors = replies(node);
    expect(errors).toHaveLength(3);
    for (const e of errors) expect(e).toMatchObject({ type: 'error', code: KRPC_ERROR.protocol, message: 'bad or expired token' });
    expect(node.storedPeers).toBe(0);
  });

  test('an announcer whose certificate names no agent cannot announce', () => {
    const node = makeNode();
    const token = tokenFor(node, announcer, 0);
    node.receive(1, { id: announcer.id, address: announcer.address, port: announcer.port }, announceQuery(announcer, token));
    expect(replies(node)).toMatchObject([{ type: 'error', message: 'announcer certificate names no agent' }]);
  });

  test('stored peers expire 30 minutes after their announce', () => {
    const node = makeNode();
    node.receive(0, senderOf(announcer, 'agent-22'), announceQuery(announcer, tokenFor(node, announcer, 0)));
    node.tick(30 * MIN - 1);
    expect(node.storedPeers).toBe(1);
    node.tick(30 * MIN);
    expect(node.storedPeers).toBe(0);
  });
});

describe('DhtNode: announcing', () => {
  /** Two nodes that know each other; `deliver` carries every query and reply between them at once. */
  function pair(): { a: DhtNode; b: DhtNode; deliver: (now: number) => DhtAction[] } {
    const aContact = contact(idWithPrefix('0'), '10.5.0.1', 7000);
    const bContact = contact(idWithPrefix('1'), '10.5.0.2', 7000);
    const a = makeNode(aContact.id, {}, 1);
    const b = makeNode(bContact.id, {}, 2);
    a.table.insert(bContact, 0, 'response');
    b.table.insert(aContact, 0, 'response');
    const deliver = (now: number): DhtAction[] => {
      const seen: DhtAction[] = [];
      for (let busy = true; busy; ) {
        busy = false;
        for (const [from, to, sender] of [
          [a, b, senderOf(aContact, 'agent-a')],
          [b, a, senderOf(bContact, 'agent-b')],
        ] as const) {
          for (const action of from.takeActions()) {
            seen.push(action);
            if ((action.type === 'query' && action.to.id.equals(to.id)) || action.type === 'reply') {
              to.receive(now, sender, action.bytes);
              busy = true;
            }
          }
        }
      }
      return seen;
    };
    return { a, b, deliver };
  }

  test('announce: get_peers to find the closest nodes and their tokens, then announce_peer to them; again every 15 minutes', () => {
    const { a, b, deliver } = pair();
    a.announce(0, INFO_HASH, 6999, ['2001:db8::1']);
    const first = deliver(1);
    expect(queriesOf(first).map((q) => q.method)).toEqual(['get_peers', 'announce_peer']);
    expect(first).toContainEqual(expect.objectContaining({ type: 'announced', infoHash: INFO_HASH, attempted: 1, stored: 1 }));
    expect(b.storedPeers).toBe(1);
    const reader = contact(idWithPrefix('11'), '10.5.0.3');
    b.receive(2, { id: reader.id, address: reader.address }, query(reader, { method: 'get_peers', infoHash: INFO_HASH }));
    expect((replies(b)[0] as ResponseMessage).values).toEqual([{ agentId: 'agent-a', addresses: ['10.5.0.1', '2001:db8::1'], port: 6999 }]);

    expect(a.nextDeadline()).toBe(15 * MIN);
    a.tick(15 * MIN);
    expect(queriesOf(deliver(15 * MIN)).map((q) => q.method)).toEqual(expect.arrayContaining(['get_peers', 'announce_peer']));
    a.stopAnnouncing(INFO_HASH);
    a.tick(30 * MIN);
    expect(queriesOf(deliver(30 * MIN)).filter((q) => q.method === 'announce_peer')).toEqual([]);
  });

  test('the peers a get_peers lookup finds come as lookup-peers actions, then in the result', () => {
    const { a, b, deliver } = pair();
    b.announce(0, INFO_HASH, 6999);
    a.announce(0, INFO_HASH, 7999);
    deliver(1);
    expect([a.storedPeers, b.storedPeers]).toEqual([1, 1]);
    // A stores B's announce and asks B, which stores A's: both come back, ours from our own store first.
    const lookup = a.getPeers(2, INFO_HASH);
    const actions = deliver(3);
    const peerB = { agentId: 'agent-b', addresses: ['10.5.0.2'], port: 6999 };
    const peerA = { agentId: 'agent-a', addresses: ['10.5.0.1'], port: 7999 };
    expect(actions.filter((x) => x.type === 'lookup-peers')).toEqual([
      { type: 'lookup-peers', lookup, infoHash: INFO_HASH, peers: [peerB] },
      { type: 'lookup-peers', lookup, infoHash: INFO_HASH, peers: [peerA] },
    ]);
    expect(actions).toContainEqual(expect.objectContaining({ type: 'lookup-finished', result: expect.objectContaining({ lookup, peers: [peerB, peerA], rounds: 1 }) }));
  });
});

describe('DhtNode: our queries', () => {
  test('a silent node: the query turns slow (the lookup moves on), then times out and counts against the node', () => {
    const node = makeNode(idWithPrefix('0'), { rpcSlowMs: 1 * SEC, rpcTimeoutMs: 5 * SEC, k: 8 });
    const silent = contact(idWithPrefix('1'), '10.3.0.1');
    const second = contact(idWithPrefix('11'), '10.3.0.2');
    node.table.insert(silent, 0, 'response');
    node.table.insert(second, 0, 'response');
    const lookup = node.findNode(0, idWithPrefix('1'));
    const sent = queriesOf(node.takeActions());
    expect(sent.map((q) => q.to)).toEqual([silent, second]);
    expect(node.nextDeadline()).toBe(1 * SEC);
    node.tick(1 * SEC);
    expect(node.takeActions()).toEqual([]);
    expect(node.nextDeadline()).toBe(5 * SEC);
    node.tick(5 * SEC);
    const actions = node.takeActions();
    expect(actions.filter((a) => a.type === 'rpc-timed-out')).toHaveLength(2);
    expect(actions).toContainEqual(expect.objectContaining({ type: 'lookup-finished', result: expect.objectContaining({ lookup, closest: [], failures: 2 }) }));
    expect(node.table.get(silent.id)?.failures).toBe(1);
    expect(node.counters.timeouts).toBe(2);
  });

  test('rpcFailed fails the query at once; a reply from another certificate is not taken as its answer', () => {
    const node = makeNode();
    const target = contact(idWithPrefix('1'), '10.3.0.1');
    const other = contact(idWithPrefix('11'), '10.3.0.2');
    node.table.insert(target, 0, 'response');
    node.findNode(0, target.id);
    const [sent] = queriesOf(node.takeActions()) as [Extract<DhtAction, { type: 'query' }>];
    const transactionId = (decodeMessage(sent.bytes) as QueryMessage).transactionId;
    node.receive(1, senderOf(other), encodeMessage({ type: 'response', transactionId, senderId: other.id, nodes: [] }));
    expect(node.counters.unexpected).toBe(1);
    expect(node.pendingRpcs).toBe(1);
    node.rpcFailed(2, sent.rpc);
    expect(node.pendingRpcs).toBe(0);
    expect(node.takeActions()).toContainEqual(expect.objectContaining({ type: 'lookup-finished' }));
    expect(node.table.get(target.id)?.failures).toBe(1);
  });

  test('a get_peers reply without a token is a bad reply: the node stays, the lookup does not use it', () => {
    const node = makeNode();
    const peer = contact(idWithPrefix('1'), '10.3.0.1');
    node.table.insert(peer, 0, 'response');
    node.getPeers(0, INFO_HASH);
    const [sent] = queriesOf(node.takeActions()) as [Extract<DhtAction, { type: 'query' }>];
    const transactionId = (decodeMessage(sent.bytes) as QueryMessage).transactionId;
    node.receive(1, senderOf(peer), encodeMessage({ type: 'response', transactionId, senderId: peer.id, nodes: [], values: [] }));
    expect(node.counters.badReplies).toBe(1);
    const finished = node.takeActions().find((a) => a.type === 'lookup-finished') as Extract<DhtAction, { type: 'lookup-finished' }>;
    expect(finished.result).toMatchObject({ closest: [], failures: 1 });
    expect(node.table.get(peer.id)?.lastResponded).toBe(1);
  });

  test('ping before evict: a full bucket pings its questionable node; two failures evict it for the newcomer', () => {
    const node = makeNode(idWithPrefix('0'), { maxFailures: 2 });
    const far = Array.from({ length: 8 }, (_, i) => contact(idNumbered('1', i), `10.4.${i}.1`));
    for (const c of far) node.table.insert(c, 0, 'response');
    node.table.insert(contact(idWithPrefix('01'), '10.4.100.1'), 0, 'response');
    const newcomer = contact(idNumbered('1', 99), '10.4.99.1');
    const later = 20 * MIN;
    node.receive(later, senderOf(newcomer), query(newcomer, { method: 'ping' }));
    const pings = queriesOf(node.takeActions());
    expect(pings).toMatchObject([{ method: 'ping', to: far[0] }]);
    node.rpcFailed(later + 1, (pings[0] as Extract<DhtAction, { type: 'query' }>).rpc);
    expect(node.table.get(far[0]?.id as Buffer)?.failures).toBe(1);
    // The next newcomer's arrival pings again: the node gets its second chance.
    node.receive(later + 2, senderOf(newcomer), query(newcomer, { method: 'ping' }));
    const again = queriesOf(node.takeActions());
    expect(again).toMatchObject([{ method: 'ping', to: far[0] }]);
    node.tick(later + 2 + 5 * SEC);
    expect(node.table.get(far[0]?.id as Buffer)).toBeUndefined();
    expect(node.table.get(newcomer.id)).toBeDefined();
  });

  test('buckets untouched for 15 minutes are refreshed by lookups of random ids in them', () => {
    const { node } = populated();
    expect(node.nextDeadline()).toBe(15 * MIN);
    node.tick(15 * MIN);
    const actions = node.takeActions();
    const refreshes = actions.filter((a): a is Extract<DhtAction, { type: 'bucket-refresh' }> => a.type === 'bucket-refresh');
    expect(refreshes.length).toBe(node.table.bucketCount);
    for (const r of refreshes) expect(node.table.bucketIndexOf(r.target)).toBe(r.bucket);
    expect(queriesOf(actions).every((q) => q.method === 'find_node')).toBe(true);
    expect(queriesOf(actions).length).toBeGreaterThan(0);
  });

  test('a clock that steps back does not move deadlines', () => {
    const node = makeNode();
    node.table.insert(contact(idWithPrefix('1'), '10.3.0.1'), 0, 'response');
    node.findNode(10 * SEC, idWithPrefix('1'));
    node.tick(5 * SEC);
    expect(node.nextDeadline()).toBe(11 * SEC);
  });
});

describe('DhtNode in a network (simulator, 300 nodes)', () => {
  function network(seed: number): DhtSimNetwork {
    // Bucket refreshes would add traffic these tests do not look at.
    const net = new DhtSimNetwork({ seed, nodes: 300, hostsPerSubnet: 20, latencyMs: [5, 40], config: { refreshIntervalMs: 24 * 60 * MIN } });
    net.populateTables();
    return net;
  }

  test('announced peers are found by get_peers from anywhere, re-announced, and forgotten once the announcer stops', () => {
    const net = network(3);
    const announcers = net.hosts.slice(0, 5);
    for (const host of announcers) net.at(0, host, (core, now) => core.announce(now, INFO_HASH, 6999));
    net.runUntil(() => net.now > 10 * SEC);

    const findPeers = (at: number): string[][] => {
      const readers = net.hosts.slice(100, 110);
      const lookups = readers.map((host) => ({ host, lookup: -1 }));
      for (const entry of lookups) net.at(at, entry.host, (core, now) => (entry.lookup = core.getPeers(now, INFO_HASH)));
      net.runUntil(() => lookups.every((e) => e.lookup >= 0 && net.result(e.host, e.lookup) !== undefined));
      return lookups.map((e) => (net.result(e.host, e.lookup)?.peers ?? []).map((p) => p.agentId).sort());
    };
    const everyone = announcers.map((h) => h.sender.agentId).sort();
    for (const found of findPeers(net.now)) expect(found).toEqual(everyone);

    // 45 minutes later the first announces have expired: only re-announces keep the peers findable.
    net.runUntil(() => net.now > 45 * MIN);
    for (const found of findPeers(net.now)) expect(found).toEqual(everyone);

    for (const host of announcers) net.at(net.now, host, (core) => core.stopAnnouncing(INFO_HASH));
    net.runUntil(() => net.now > 80 * MIN);
    for (const found of findPeers(net.now)) expect(found).toEqual([]);
  });

  test('a restarted node rejoins from its persisted table and finds peers', () => {
    const net = network(4);
    const announcer = net.hosts[0];
    const rejoining = net.hosts[150];
    if (!announcer || !rejoining) throw new Error('network too small');
    net.at(0, announcer, (core, now) => core.announce(now, INFO_HASH, 6999));
    net.runUntil(() => net.now > 10 * SEC);

    const saved = rejoining.core.saveState(net.now);
    const core = net.restart(rejoining);
    expect(core.table.size).toBe(0);
    const state = parseRoutingState(saved);
    let join = -1;
    let lookup = -1;
    // get_peers right away: it does not wait for the join.
    net.at(net.now, rejoining, (node, now) => {
      join = node.bootstrap(now, [...state.nodes, ...state.replacements]);
      lookup = node.getPeers(now, INFO_HASH);
    });
    net.runUntil(() => lookup >= 0 && net.result(rejoining, lookup) !== undefined && net.result(rejoining, join) !== undefined);
    expect(net.result(rejoining, lookup)?.peers.map((p) => p.agentId)).toEqual([announcer.sender.agentId]);
    expect(net.result(rejoining, join)?.closest).toHaveLength(8);
    // Only nodes that answered entered the table.
    expect(core.table.size).toBeGreaterThanOrEqual(8);
    expect(core.table.contacts().nodes.every((c) => net.hosts.some((h) => h.contact.id.equals(c.id) && h.contact.address === c.address))).toBe(true);
  });

  test('the same seed replays the same run', () => {
    const once = (): string => {
      const net = network(9);
      const host = net.hosts[7] as (typeof net.hosts)[0];
      let lookup = -1;
      net.at(0, host, (core, now) => (lookup = core.findNode(now, infoHashTarget(INFO_HASH))));
      net.runUntil(() => lookup >= 0 && net.result(host, lookup) !== undefined);
      return JSON.stringify({ result: net.result(host, lookup), messages: net.messages, now: net.now });
    };
    expect(once()).toBe(once());
  });
});
