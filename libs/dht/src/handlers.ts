import { MAX_ADDRESSES_PER_PEER, KRPC_ERROR, type DhtQuery, type QueryMethod } from './codec';
import { type DhtConfig, replyNodes } from './config';
import type { Contact, PeerInfo, Sender } from './contact';
import { infoHashTarget, type NodeId } from './node-id';
import type { PeerStore } from './peer-store';
import type { RandomBytes } from './random';
import type { RoutingTable } from './routing-table';
import type { TokenIssuer } from './tokens';

/** What a query handler needs from its node. */
export interface HandlerContext {
  readonly config: DhtConfig;
  readonly table: RoutingTable;
  readonly tokens: TokenIssuer;
  readonly peers: PeerStore;
  readonly randomBytes: RandomBytes;
}

/** The body of an answer; the node adds the transaction id and its own id. */
export type HandlerReply =
  | { type: 'response'; nodes: Contact[]; token?: Buffer; values?: PeerInfo[] }
  | { type: 'error'; code: number; message: string };

type Handler<M extends QueryMethod> = (context: HandlerContext, now: number, from: Sender, query: Extract<DhtQuery, { method: M }>) => HandlerReply;

/** ping: proves we are alive; the reply's id is the whole answer. */
export const handlePing: Handler<'ping'> = () => ({ type: 'response', nodes: [] });

/** find_node: the nodes we know closest to the target (see `replyNodes`), never the requester itself. */
export const handleFindNode: Handler<'find_node'> = (context, _now, from, query) => ({
  type: 'response',
  nodes: closestFor(context, query.target, from.id),
});

/**
 * get_peers: the closest nodes (always, so the requester's lookup can go on and find the k nodes
 * to announce to), a write token bound to the requester's id and IP, and the peers we store.
 */
export const handleGetPeers: Handler<'get_peers'> = (context, now, from, query) => {
  const values = context.peers.peers(now, query.infoHash, context.config.maxPeersPerReply, context.randomBytes);
  return {
    type: 'response',
    nodes: closestFor(context, infoHashTarget(query.infoHash), from.id),
    token: context.tokens.issue(now, from.id, from.address),
    ...(values.length > 0 ? { values } : {}),
  };
};

/**
 * announce_peer: stores the announcer as a peer of the info-hash if its token is one we issued to
 * its id and IP. The stored identity is the agent id of the announcer's certificate (never a
 * field of the message) and the address its message came from comes first.
 */
export const handleAnnouncePeer: Handler<'announce_peer'> = (context, now, from, query) => {
  if (!context.tokens.valid(now, query.token, from.id, from.address)) {
    return { type: 'error', code: KRPC_ERROR.protocol, message: 'bad or expired token' };
  }
  if (from.agentId === undefined) {
    return { type: 'error', code: KRPC_ERROR.protocol, message: 'announcer certificate names no agent' };
  }
  const addresses = [from.address, ...query.addresses.filter((a) => a !== from.address)].slice(0, MAX_ADDRESSES_PER_PEER);
  context.peers.announce(now, query.infoHash, { agentId: from.agentId, addresses, port: query.port });
  return { type: 'response', nodes: [] };
};

/** Dispatch by method. */
export function handleQuery(context: HandlerContext, now: number, from: Sender, query: DhtQuery): HandlerReply {
  switch (query.method) {
    case 'ping':
      return handlePing(context, now, from, query);
    case 'find_node':
      return handleFindNode(context, now, from, query);
    case 'get_peers':
      return handleGetPeers(context, now, from, query);
    case 'announce_peer':
      return handleAnnouncePeer(context, now, from, query);
  }
}

function closestFor(context: HandlerContext, target: NodeId, requester: NodeId): Contact[] {
  return context.table.closest(target, replyNodes(context.config), requester);
}
