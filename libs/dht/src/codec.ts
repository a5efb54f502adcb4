import { type BDict, type BEncodable, BencodeError, type BValue, decode, encode } from '@shoal/torrent';
import { formatIp, ipBytes, unusableAddressReason } from './address';
import type { Contact, PeerInfo } from './contact';
import { DhtError, type DhtErrorCode } from './errors';
import { INFO_HASH_BYTES, NODE_ID_BYTES, type NodeId } from './node-id';

/**
 * KRPC messages (BEP 5) with Shoal's changes: 256-bit node ids; every message carries its sender's
 * id, errors included (top-level "id"), so it can be checked against the certificate; a compact
 * node is id(32) + IPv4(4) + port(2) in `nodes` or id(32) + IPv6(16) + port(2) in `nodes6` (as
 * BEP 32); a peer is a dictionary {agent, ips, port} (agent id, 1..4 addresses, peer-wire port).
 *
 *   query     {t, y: "q", q: method, a: {id, ...arguments}}
 *   response  {t, y: "r", r: {id, nodes?, nodes6?, token?, values?}}
 *   error     {t, y: "e", e: [code, text], id}
 *
 * The decoder is strict about everything it reads (types, lengths, counts, canonical bencode)
 * and ignores keys it does not know, so later versions can add some. Every failure is a
 * DhtError; no input makes it throw anything else.
 */

/** Largest message accepted or produced; the largest valid message (32 IPv6 nodes, 64 peers with 4 addresses) is 12,674 bytes. */
export const MAX_MESSAGE_BYTES = 16 * 1024;
export const MAX_TRANSACTION_ID_BYTES = 8;
export const MAX_TOKEN_BYTES = 32;
/** Nodes in one reply, `nodes` and `nodes6` together. */
export const MAX_NODES_PER_MESSAGE = 32;
/** Peers in one get_peers reply. */
export const MAX_VALUES_PER_MESSAGE = 64;
/** Addresses of one peer (a host with IPv4 and IPv6 on a couple of interfaces). */
export const MAX_ADDRESSES_PER_PEER = 4;
export const MAX_ERROR_TEXT_BYTES = 256;
/** Top dict > r > values > peer > ips. */
const MAX_DEPTH = 5;
const MAX_METHOD_BYTES = 32;
const COMPACT_V4 = NODE_ID_BYTES + 4 + 2;
const COMPACT_V6 = NODE_ID_BYTES + 16 + 2;
/** The agent id rule of the fleet CA (libs/pki names.ts): the CN of every agent certificate. */
const AGENT_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** KRPC error codes (BEP 5). */
export const KRPC_ERROR = { generic: 201, server: 202, protocol: 203, methodUnknown: 204 } as const;

export type QueryMethod = 'ping' | 'find_node' | 'get_peers' | 'announce_peer';
const METHODS: readonly string[] = ['ping', 'find_node', 'get_peers', 'announce_peer'] satisfies QueryMethod[];

export type DhtQuery =
  | { method: 'ping' }
  | { method: 'find_node'; target: NodeId }
  | { method: 'get_peers'; infoHash: Buffer }
  /** `addresses`: the announcer's other addresses; the one its message came from is always stored. */
  | { method: 'announce_peer'; infoHash: Buffer; port: number; token: Buffer; addresses: string[] };

export interface QueryMessage {
  type: 'query';
  transactionId: Buffer;
  senderId: NodeId;
  query: DhtQuery;
}

/** Responses do not name their query: the node checks the fields against the query it sent. */
export interface ResponseMessage {
  type: 'response';
  transactionId: Buffer;
  senderId: NodeId;
  nodes: Contact[];
  token?: Buffer;
  values?: PeerInfo[];
}

export interface ErrorMessage {
  type: 'error';
  transactionId: Buffer;
  senderId: NodeId;
  code: number;
  message: string;
}

export type DhtMessage = QueryMessage | ResponseMessage | ErrorMessage;

// ---------------------------------------------------------------- decoding

export function decodeMessage(input: Uint8Array): DhtMessage {
  if (!(input instanceof Uint8Array)) throw new DhtError('DHT_BAD_ARGUMENT', 'a message is a byte array');
  if (input.length > MAX_MESSAGE_BYTES) {
    throw new DhtError('DHT_MESSAGE_TOO_LARGE', `message of ${input.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  }
  let root: BValue;
  try {
    root = decode(input, { maxInputLength: MAX_MESSAGE_BYTES, maxStringLength: MAX_MESSAGE_BYTES, maxDepth: MAX_DEPTH });
  } catch (error) {
    if (error instanceof BencodeError) throw new DhtError('DHT_NOT_BENCODE', error.message, undefined, { cause: error });
    throw error;
  }
  const plain = new Reader(undefined);
  const top = plain.dict(root, 'message');
  const transactionId = plain.bytes(top, 't', 't', 1, MAX_TRANSACTION_ID_BYTES);
  const kind = plain.text(top, 'y', 'y', 1);
  if (kind === 'q') return decodeQuery(top, new Reader(transactionId), transactionId);
  if (kind === 'r') return decodeResponse(top, plain, transactionId);
  if (kind === 'e') return decodeError(top, plain, transactionId);
  return plain.fail('DHT_BAD_VALUE', `message type must be q, r or e, not ${JSON.stringify(kind)}`, 'y');
}

function decodeQuery(top: BDict, r: Reader, transactionId: Buffer): QueryMessage {
  const method = r.text(top, 'q', 'q', MAX_METHOD_BYTES);
  const args = r.dict(top.get('a'), 'a');
  const senderId = r.id(args, 'id', 'a.id');
  if (!METHODS.includes(method)) return r.fail('DHT_UNKNOWN_METHOD', `unknown method ${JSON.stringify(method)}`, 'q');
  let query: DhtQuery;
  switch (method as QueryMethod) {
    case 'ping':
      query = { method: 'ping' };
      break;
    case 'find_node':
      query = { method: 'find_node', target: r.id(args, 'target', 'a.target') };
      break;
    case 'get_peers':
      query = { method: 'get_peers', infoHash: r.infoHash(args, 'a.info_hash') };
      break;
    case 'announce_peer':
      query = {
        method: 'announce_peer',
        infoHash: r.infoHash(args, 'a.info_hash'),
        port: r.port(args, 'port', 'a.port'),
        token: copy(r.bytes(args, 'token', 'a.token', 1, MAX_TOKEN_BYTES)),
        addresses: args.has('ips') ? r.addresses(args.get('ips'), 'a.ips', 0) : [],
      };
      break;
  }
  return { type: 'query', transactionId: copy(transactionId), senderId, query };
}

function decodeResponse(top: BDict, r: Reader, transactionId: Buffer): ResponseMessage {
  const body = r.dict(top.get('r'), 'r');
  const message: ResponseMessage = { type: 'response', transactionId: copy(transactionId), senderId: r.id(body, 'id', 'r.id'), nodes: [] };
  if (body.has('nodes')) message.nodes.push(...r.compactNodes(body, 'nodes', COMPACT_V4));
  if (body.has('nodes6')) message.nodes.push(...r.compactNodes(body, 'nodes6', COMPACT_V6));
  if (message.nodes.length > MAX_NODES_PER_MESSAGE) {
    r.fail('DHT_TOO_MANY', `${message.nodes.length} nodes exceed ${MAX_NODES_PER_MESSAGE}`, 'r.nodes');
  }
  if (body.has('token')) message.token = copy(r.bytes(body, 'token', 'r.token', 1, MAX_TOKEN_BYTES));
  if (body.has('values')) message.values = r.peers(body.get('values'), 'r.values');
  return message;
}

function decodeError(top: BDict, r: Reader, transactionId: Buffer): ErrorMessage {
  const list = top.get('e');
  if (!Array.isArray(list)) return r.fail(list === undefined ? 'DHT_MISSING_FIELD' : 'DHT_WRONG_TYPE', 'an error is a list [code, text]', 'e');
  if (list.length !== 2) r.fail('DHT_BAD_LENGTH', `an error list has 2 items, not ${list.length}`, 'e');
  const [code, text] = list;
  if (typeof code !== 'number') return r.fail('DHT_WRONG_TYPE', 'the error code is an integer', 'e[0]');
  if (code < 0 || code > 9999) r.fail('DHT_BAD_VALUE', `error code ${code} is outside 0..9999`, 'e[0]');
  if (!Buffer.isBuffer(text)) return r.fail('DHT_WRONG_TYPE', 'the error text is a string', 'e[1]');
  if (text.length > MAX_ERROR_TEXT_BYTES) r.fail('DHT_BAD_LENGTH', `error text longer than ${MAX_ERROR_TEXT_BYTES} bytes`, 'e[1]');
  return { type: 'error', transactionId: copy(transactionId), senderId: r.id(top, 'id', 'id'), code, message: r.utf8(text, 'e[1]') };
}

/** A copy, so that a kept field does not pin the whole message buffer. */
function copy(view: Buffer): Buffer {
  return Buffer.from(view);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Field checks; `tid` rides on every error when the message is a query (see DhtError). */
class Reader {
  constructor(private readonly tid: Buffer | undefined) {}

  fail(code: DhtErrorCode, message: string, field: string): never {
    throw new DhtError(code, message, field, { queryTransactionId: this.tid && copy(this.tid) });
  }

  dict(value: BValue | undefined, field: string): BDict {
    if (value === undefined) this.fail('DHT_MISSING_FIELD', 'required', field);
    if (!(value instanceof Map)) this.fail('DHT_WRONG_TYPE', 'must be a dictionary', field);
    return value;
  }

  bytes(d: BDict, key: string, field: string, min: number, max: number): Buffer {
    const value = d.get(key);
    if (value === undefined) this.fail('DHT_MISSING_FIELD', 'required', field);
    if (!Buffer.isBuffer(value)) this.fail('DHT_WRONG_TYPE', 'must be a byte string', field);
    if (value.length < min || value.length > max) {
      this.fail('DHT_BAD_LENGTH', min === max ? `must be ${min} bytes, not ${value.length}` : `must be ${min}..${max} bytes, not ${value.length}`, field);
    }
    return value;
  }

  text(d: BDict, key: string, field: string, max: number): string {
    return this.bytes(d, key, field, 1, max).toString('latin1');
  }

  utf8(bytes: Buffer, field: string): string {
    try {
      return UTF8.decode(bytes);
    } catch {
      return this.fail('DHT_BAD_VALUE', 'not UTF-8', field);
    }
  }

  id(d: BDict, key: string, field: string): NodeId {
    return copy(this.bytes(d, key, field, NODE_ID_BYTES, NODE_ID_BYTES));
  }

  infoHash(d: BDict, field: string): Buffer {
    return copy(this.bytes(d, 'info_hash', field, INFO_HASH_BYTES, INFO_HASH_BYTES));
  }

  port(d: BDict, key: string, field: string): number {
    const value = d.get(key);
    if (value === undefined) this.fail('DHT_MISSING_FIELD', 'required', field);
    if (typeof value !== 'number') this.fail('DHT_WRONG_TYPE', 'must be an integer', field);
    if (value < 1 || value > 65535) this.fail('DHT_BAD_VALUE', `port ${value} is outside 1..65535`, field);
    return value;
  }

  address(bytes: Buffer, field: string): string {
    if (bytes.length !== 4 && bytes.length !== 16) this.fail('DHT_BAD_LENGTH', `an address is 4 or 16 bytes, not ${bytes.length}`, field);
    const unusable = unusableAddressReason(bytes);
    if (unusable) this.fail('DHT_BAD_VALUE', `${unusable} cannot be a node's`, field);
    return formatIp(bytes);
  }

  addresses(value: BValue | undefined, field: string, min: number): string[] {
    if (!Array.isArray(value)) return this.fail('DHT_WRONG_TYPE', 'must be a list of addresses', field);
    if (value.length < min || value.length > MAX_ADDRESSES_PER_PEER) {
      this.fail(value.length < min ? 'DHT_BAD_LENGTH' : 'DHT_TOO_MANY', `must hold ${min}..${MAX_ADDRESSES_PER_PEER} addresses, not ${value.length}`, field);
    }
    const out: string[] = [];
    for (const [i, item] of value.entries()) {
      if (!Buffer.isBuffer(item)) this.fail('DHT_WRONG_TYPE', 'an address is a byte string', `${field}[${i}]`);
      const address = this.address(item, `${field}[${i}]`);
      if (!out.includes(address)) out.push(address);
    }
    return out;
  }

  compactNodes(d: BDict, key: 'nodes' | 'nodes6', entryBytes: number): Contact[] {
    const field = `r.${key}`;
    const value = d.get(key);
    if (!Buffer.isBuffer(value)) return this.fail('DHT_WRONG_TYPE', 'must be a byte string of compact nodes', field);
    if (value.length % entryBytes !== 0) this.fail('DHT_BAD_LENGTH', `${value.length} bytes is not a multiple of ${entryBytes}`, field);
    const count = value.length / entryBytes;
    if (count > MAX_NODES_PER_MESSAGE) this.fail('DHT_TOO_MANY', `${count} nodes exceed ${MAX_NODES_PER_MESSAGE}`, field);
    const out: Contact[] = [];
    for (let i = 0; i < count; i++) {
      const at = i * entryBytes;
      const addressEnd = at + entryBytes - 2;
      const port = value.readUInt16BE(addressEnd);
      if (port === 0) this.fail('DHT_BAD_VALUE', 'port 0', `${field}[${i}]`);
      out.push({
        id: copy(value.subarray(at, at + NODE_ID_BYTES)),
        address: this.address(value.subarray(at + NODE_ID_BYTES, addressEnd), `${field}[${i}]`),
        port,
      });
    }
    return out;
  }

  peers(value: BValue | undefined, field: string): PeerInfo[] {
    if (!Array.isArray(value)) return this.fail('DHT_WRONG_TYPE', 'must be a list of peers', field);
    if (value.length > MAX_VALUES_PER_MESSAGE) this.fail('DHT_TOO_MANY', `${value.length} peers exceed ${MAX_VALUES_PER_MESSAGE}`, field);
    return value.map((item, i) => {
      const peer = this.dict(item, `${field}[${i}]`);
      const agentId = this.text(peer, 'agent', `${field}[${i}].agent`, 63);
      if (!AGENT_ID.test(agentId)) this.fail('DHT_BAD_VALUE', 'an agent id matches [a-z0-9][a-z0-9-]{0,62}', `${field}[${i}].agent`);
      return { agentId, addresses: this.addresses(peer.get('ips'), `${field}[${i}].ips`, 1), port: this.port(peer, 'port', `${field}[${i}].port`) };
    });
  }
}

// ---------------------------------------------------------------- encoding

/**
 * The bytes of a message. Refuses (DHT_BAD_ARGUMENT) anything the decoder would refuse, so a node
 * never sends what a peer must drop.
 */
export function encodeMessage(message: DhtMessage): Buffer {
  checkBytes(message.transactionId, 1, MAX_TRANSACTION_ID_BYTES, 'transactionId');
  checkBytes(message.senderId, NODE_ID_BYTES, NODE_ID_BYTES, 'senderId');
  const top = new Map<string, BEncodable>([['t', message.transactionId]]);
  switch (message.type) {
    case 'query': {
      top.set('y', 'q');
      top.set('q', message.query.method);
      top.set('a', queryArguments(message.senderId, message.query));
      break;
    }
    case 'response': {
      top.set('y', 'r');
      top.set('r', responseBody(message));
      break;
    }
    case 'error': {
      if (!Number.isSafeInteger(message.code) || message.code < 0 || message.code > 9999) argument('an error code is an integer in 0..9999', 'code');
      const text = Buffer.from(message.message, 'utf8');
      top.set('y', 'e');
      top.set('e', [message.code, text.length > MAX_ERROR_TEXT_BYTES ? truncateUtf8(text, MAX_ERROR_TEXT_BYTES) : text]);
      top.set('id', message.senderId);
      break;
    }
    default:
      argument('unknown message type', 'type');
  }
  const bytes = encode(top);
  if (bytes.length > MAX_MESSAGE_BYTES) argument(`message of ${bytes.length} bytes exceeds ${MAX_MESSAGE_BYTES}`, 'message');
  return bytes;
}

function queryArguments(senderId: NodeId, query: DhtQuery): Map<string, BEncodable> {
  const args = new Map<string, BEncodable>([['id', senderId]]);
  switch (query.method) {
    case 'ping':
      break;
    case 'find_node':
      checkBytes(query.target, NODE_ID_BYTES, NODE_ID_BYTES, 'target');
      args.set('target', query.target);
      break;
    case 'get_peers':
      checkBytes(query.infoHash, INFO_HASH_BYTES, INFO_HASH_BYTES, 'infoHash');
      args.set('info_hash', query.infoHash);
      break;
    case 'announce_peer':
      checkBytes(query.infoHash, INFO_HASH_BYTES, INFO_HASH_BYTES, 'infoHash');
      checkBytes(query.token, 1, MAX_TOKEN_BYTES, 'token');
      checkPort(query.port, 'port');
      args.set('info_hash', query.infoHash);
      args.set('port', query.port);
      args.set('token', query.token);
      if (query.addresses.length > 0) args.set('ips', addressList(query.addresses, 'addresses'));
      break;
    default:
      argument('unknown query method', 'method');
  }
  return args;
}

function responseBody(message: ResponseMessage): Map<string, BEncodable> {
  const body = new Map<string, BEncodable>([['id', message.senderId]]);
  if (message.nodes.length > MAX_NODES_PER_MESSAGE) argument(`${message.nodes.length} nodes exceed ${MAX_NODES_PER_MESSAGE}`, 'nodes');
  const v4: Buffer[] = [];
  const v6: Buffer[] = [];
  for (const [i, node] of message.nodes.entries()) {
    checkBytes(node.id, NODE_ID_BYTES, NODE_ID_BYTES, `nodes[${i}].id`);
    checkPort(node.port, `nodes[${i}].port`);
    const address = usableAddress(node.address, `nodes[${i}].address`);
    const port = Buffer.alloc(2);
    port.writeUInt16BE(node.port);
    (address.length === 4 ? v4 : v6).push(node.id, address, port);
  }
  if (v4.length > 0) body.set('nodes', Buffer.concat(v4));
  if (v6.length > 0) body.set('nodes6', Buffer.concat(v6));
  if (message.token !== undefined) {
    checkBytes(message.token, 1, MAX_TOKEN_BYTES, 'token');
    body.set('token', message.token);
  }
  if (message.values !== undefined) {
    if (message.values.length > MAX_VALUES_PER_MESSAGE) argument(`${message.values.length} peers exceed ${MAX_VALUES_PER_MESSAGE}`, 'values');
    body.set(
      'values',
      message.values.map((peer, i) => {
        if (typeof peer.agentId !== 'string' || !AGENT_ID.test(peer.agentId)) argument('an agent id matches [a-z0-9][a-z0-9-]{0,62}', `values[${i}].agentId`);
        if (peer.addresses.length < 1) argument('a peer has at least one address', `values[${i}].addresses`);
        checkPort(peer.port, `values[${i}].port`);
        return new Map<string, BEncodable>([
          ['agent', peer.agentId],
          ['ips', addressList(peer.addresses, `values[${i}].addresses`)],
          ['port', peer.port],
        ]);
      }),
    );
  }
  return body;
}

function addressList(addresses: readonly string[], field: string): Buffer[] {
  if (addresses.length > MAX_ADDRESSES_PER_PEER) argument(`${addresses.length} addresses exceed ${MAX_ADDRESSES_PER_PEER}`, field);
  return addresses.map((address, i) => usableAddress(address, `${field}[${i}]`));
}

function usableAddress(text: string, field: string): Buffer {
  const bytes = ipBytes(text, field);
  const unusable = unusableAddressReason(bytes);
  if (unusable) argument(`${unusable} cannot be a node's`, field);
  return bytes;
}

function checkBytes(value: unknown, min: number, max: number, field: string): void {
  if (!(value instanceof Uint8Array) || value.length < min || value.length > max) {
    argument(min === max ? `must be ${min} bytes` : `must be ${min}..${max} bytes`, field);
  }
}

function checkPort(port: unknown, field: string): void {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) argument('a port is an integer in 1..65535', field);
}

function argument(message: string, field: string): never {
  throw new DhtError('DHT_BAD_ARGUMENT', message, field);
}

/** The longest prefix of `text` within `max` bytes that ends on a character boundary. */
function truncateUtf8(text: Buffer, max: number): Buffer {
  let end = max;
  // Continuation bytes are 10xxxxxx: back up to the start of the cut character.
  while (end > 0 && ((text[end] as number) & 0xc0) === 0x80) end--;
  return text.subarray(0, end);
}
