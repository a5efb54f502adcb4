import { canonicalIp, ipBytes, unusableAddressReason } from './address';
import type { Contact } from './contact';
import { DhtError } from './errors';
import { type NodeId, nodeIdFromHex } from './node-id';
import type { RoutingTable } from './routing-table';

/**
 * The routing table saved across restarts, as JSON:
 *
 *   {"format": "shoal-dht-routing-table", "version": 1, "nodeId": "<hex>", "savedAt": <ms>,
 *    "nodes": [{"id": "<hex>", "address": "10.0.0.7", "port": 6881, "site": "eu-1"?}, ...],
 *    "replacements": [...]}
 *
 * A restarted node bootstraps from these contacts (they answer again before re-entering the
 * table), so a saved table from an older key is still useful. The file is read as hostile input:
 * size and count caps, every field checked, unknown keys refused, one DHT_BAD_STATE error naming
 * the field at fault.
 */
export const ROUTING_STATE_FORMAT = 'shoal-dht-routing-table';
export const ROUTING_STATE_VERSION = 1;
export const MAX_ROUTING_STATE_BYTES = 1024 * 1024;
/** Nodes and replacements together; a table of a million-node fleet holds a few hundred. */
export const MAX_ROUTING_STATE_CONTACTS = 4096;
const MAX_SITE_LENGTH = 253;
const TOP_KEYS = ['format', 'version', 'nodeId', 'savedAt', 'nodes', 'replacements'];
const CONTACT_KEYS = ['id', 'address', 'port', 'site'];

export interface RoutingState {
  nodeId: NodeId;
  savedAt: number;
  nodes: Contact[];
  replacements: Contact[];
}

export function serializeRoutingState(table: RoutingTable, now: number): string {
  const { nodes, replacements } = table.contacts();
  const plain = (c: Contact): Record<string, unknown> => ({
    id: c.id.toString('hex'),
    address: c.address,
    port: c.port,
    ...(c.site !== undefined ? { site: c.site } : {}),
  });
  return `${JSON.stringify({
    format: ROUTING_STATE_FORMAT,
    version: ROUTING_STATE_VERSION,
    nodeId: table.id.toString('hex'),
    savedAt: now,
    nodes: nodes.map(plain),
    replacements: replacements.map(plain),
  })}\n`;
}

export function parseRoutingState(input: string | Uint8Array): RoutingState {
  const size = typeof input === 'string' ? Buffer.byteLength(input, 'utf8') : input.length;
  if (size > MAX_ROUTING_STATE_BYTES) bad(`${size} bytes exceed ${MAX_ROUTING_STATE_BYTES}`, 'file');
  let root: unknown;
  try {
    root = JSON.parse(typeof input === 'string' ? input : Buffer.from(input).toString('utf8'));
  } catch (error) {
    throw new DhtError('DHT_BAD_STATE', `not JSON (${(error as Error).message})`, 'file', { cause: error });
  }
  const top = record(root, 'file', TOP_KEYS);
  if (top.format !== ROUTING_STATE_FORMAT) bad(`must be ${JSON.stringify(ROUTING_STATE_FORMAT)}`, 'format');
  if (top.version !== ROUTING_STATE_VERSION) bad(`unsupported version ${describe(top.version)} (this node reads ${ROUTING_STATE_VERSION})`, 'version');
  const nodeId = hexId(top.nodeId, 'nodeId');
  if (typeof top.savedAt !== 'number' || !Number.isSafeInteger(top.savedAt) || top.savedAt < 0) bad('must be a non-negative integer (ms)', 'savedAt');
  const nodes = contactList(top.nodes, 'nodes');
  const replacements = contactList(top.replacements, 'replacements');
  if (nodes.length + replacements.length > MAX_ROUTING_STATE_CONTACTS) {
    bad(`${nodes.length + replacements.length} contacts exceed ${MAX_ROUTING_STATE_CONTACTS}`, 'nodes');
  }
  return { nodeId, savedAt: top.savedAt as number, nodes, replacements };
}

function contactList(value: unknown, field: string): Contact[] {
  if (!Array.isArray(value)) return bad('must be a list', field);
  if (value.length > MAX_ROUTING_STATE_CONTACTS) bad(`${value.length} contacts exceed ${MAX_ROUTING_STATE_CONTACTS}`, field);
  return value.map((item, i) => {
    const at = `${field}[${i}]`;
    const entry = record(item, at, CONTACT_KEYS);
    if (typeof entry.address !== 'string') bad('must be a string', `${at}.address`);
    let address: string;
    try {
      address = canonicalIp(entry.address as string, `${at}.address`);
    } catch (error) {
      throw new DhtError('DHT_BAD_STATE', (error as Error).message, undefined, { cause: error });
    }
    const unusable = unusableAddressReason(ipBytes(address));
    if (unusable) bad(`${unusable} cannot be a node's`, `${at}.address`);
    const port = entry.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) bad('must be an integer in 1..65535', `${at}.port`);
    const contact: Contact = { id: hexId(entry.id, `${at}.id`), address, port: port as number };
    if (entry.site === undefined) return contact;
    if (typeof entry.site !== 'string' || entry.site.length === 0 || entry.site.length > MAX_SITE_LENGTH || /[\u0000-\u001f\u007f]/.test(entry.site)) {
      bad(`must be a label of 1..${MAX_SITE_LENGTH} printable characters`, `${at}.site`);
    }
    return { ...contact, site: entry.site as string };
  });
}

function record(value: unknown, field: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return bad('must be an object', field);
  for (const key of Object.keys(value)) if (!keys.includes(key)) bad(`unknown key ${JSON.stringify(key.slice(0, 40))}`, field);
  return value as Record<string, unknown>;
}

function hexId(value: unknown, field: string): NodeId {
  if (typeof value !== 'string' || !/^[0-9a-f]{64}$/.test(value)) bad('must be a node id: 64 lowercase hex digits', field);
  return nodeIdFromHex(value as string, field);
}

function describe(value: unknown): string {
  return typeof value === 'number' ? String(value) : typeof value;
}

function bad(message: string, field: string): never {
  throw new DhtError('DHT_BAD_STATE', message, field);
}
