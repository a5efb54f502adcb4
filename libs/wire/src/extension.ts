import type { BDict, BValue } from '@shoal/torrent';
import { WireError, WireUsageError } from './errors';

/** Extension names (keys of `m`) are short ASCII words such as `ut_pex`. */
export const MAX_EXTENSION_NAME_LENGTH = 64;
/** Entries of `m` we accept (libtorrent announces about ten). */
export const MAX_EXTENSIONS = 64;
/** Bytes of the `v` client version string. */
export const MAX_CLIENT_VERSION_LENGTH = 128;
/** Largest `reqq` we take at face value. */
export const MAX_REQQ = 65535;

/** The BEP 10 extended handshake, as Shoal reads and writes it. Unknown keys are ignored. */
export interface ExtendedHandshake {
  /** Extension name -> the message id the sender wants to receive it under (1..255). */
  m: Map<string, number>;
  /** Sender's listen port (`p`). */
  listenPort?: number;
  /** Client name and version (`v`), UTF-8. */
  clientVersion?: string;
  /** Outstanding requests the sender queues before dropping or rejecting (`reqq`). */
  reqq?: number;
  /** Our address as the sender sees it (`yourip`): 4 or 16 bytes. */
  yourIp?: Buffer;
}

export interface ExtendedHandshakeInit {
  /** Extension name -> id (1..255); 0 announces the extension as disabled. */
  m: ReadonlyMap<string, number> | Readonly<Record<string, number>>;
  listenPort?: number;
  clientVersion?: string;
  reqq?: number;
  yourIp?: Uint8Array;
}

function usage(message: string): never {
  throw new WireUsageError(`extended handshake: ${message}`);
}

function bad(message: string): never {
  throw new WireError('WIRE_BAD_EXTENDED_HANDSHAKE', `extended handshake: ${message}`);
}

function checkName(name: string, fail: (m: string) => never): void {
  if (name.length === 0 || name.length > MAX_EXTENSION_NAME_LENGTH) {
    fail(`extension name of ${name.length} bytes outside 1..${MAX_EXTENSION_NAME_LENGTH}`);
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) fail('extension names are printable ASCII');
  }
}

/** Builds the dictionary of an extended handshake (id 0). Throws WireUsageError on bad input. */
export function buildExtendedHandshake(init: ExtendedHandshakeInit): BDict {
  const entries = init.m instanceof Map ? [...init.m] : Object.entries(init.m);
  if (entries.length > MAX_EXTENSIONS) usage(`more than ${MAX_EXTENSIONS} extensions`);
  const m: BDict = new Map();
  const ids = new Set<number>();
  for (const [name, id] of entries) {
    checkName(name, usage);
    if (!Number.isInteger(id) || id < 0 || id > 255) usage(`id of ${name} must be in 0..255, got ${id}`);
    if (id !== 0) {
      if (ids.has(id)) usage(`id ${id} is announced twice`);
      ids.add(id);
    }
    m.set(name, id);
  }
  const out: BDict = new Map([['m', m]]);
  if (init.listenPort !== undefined) {
    if (!Number.isInteger(init.listenPort) || init.listenPort < 1 || init.listenPort > 65535) {
      usage(`listen port must be in 1..65535, got ${init.listenPort}`);
    }
    out.set('p', init.listenPort);
  }
  if (init.clientVersion !== undefined) {
    const v = Buffer.from(init.clientVersion, 'utf8');
    if (v.length > MAX_CLIENT_VERSION_LENGTH) usage(`client version longer than ${MAX_CLIENT_VERSION_LENGTH} bytes`);
    out.set('v', v);
  }
  if (init.reqq !== undefined) {
    if (!Number.isInteger(init.reqq) || init.reqq < 1 || init.reqq > MAX_REQQ) usage(`reqq must be in 1..${MAX_REQQ}, got ${init.reqq}`);
    out.set('reqq', init.reqq);
  }
  if (init.yourIp !== undefined) {
    if (init.yourIp.length !== 4 && init.yourIp.length !== 16) usage('yourip must be 4 or 16 bytes');
    out.set('yourip', Buffer.from(init.yourIp));
  }
  return out;
}

function int(value: BValue | undefined, key: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number') bad(`${key} is not an integer`);
  if (value < min || value > max) bad(`${key} = ${value} outside ${min}..${max}`);
  return value;
}

/**
 * Reads and validates an extended handshake dictionary (BEP 10). Ids 0 mean "disabled" and are
 * dropped from `m`; known keys of the wrong type or range, too many or overlong names, and
 * duplicate ids throw WIRE_BAD_EXTENDED_HANDSHAKE. Unknown keys are ignored, as BEP 10 says.
 */
export function parseExtendedHandshake(dict: BDict): ExtendedHandshake {
  const m = new Map<string, number>();
  const rawM = dict.get('m');
  if (rawM !== undefined) {
    if (!(rawM instanceof Map)) bad('m is not a dictionary');
    if (rawM.size > MAX_EXTENSIONS) bad(`more than ${MAX_EXTENSIONS} extensions in m`);
    const ids = new Set<number>();
    for (const [name, value] of rawM) {
      checkName(name, bad);
      const id = int(value, `m.${name}`, 0, 255) as number;
      if (id === 0) continue;
      if (ids.has(id)) bad(`id ${id} is announced twice in m`);
      ids.add(id);
      m.set(name, id);
    }
  }
  const out: ExtendedHandshake = { m };
  const listenPort = int(dict.get('p'), 'p', 1, 65535);
  if (listenPort !== undefined) out.listenPort = listenPort;
  const reqq = int(dict.get('reqq'), 'reqq', 1, Number.MAX_SAFE_INTEGER);
  if (reqq !== undefined) out.reqq = Math.min(reqq, MAX_REQQ);
  const v = dict.get('v');
  if (v !== undefined) {
    if (!Buffer.isBuffer(v)) bad('v is not a string');
    if (v.length > MAX_CLIENT_VERSION_LENGTH) bad(`v longer than ${MAX_CLIENT_VERSION_LENGTH} bytes`);
    out.clientVersion = v.toString('utf8');
  }
  const yourIp = dict.get('yourip');
  if (yourIp !== undefined) {
    if (!Buffer.isBuffer(yourIp) || (yourIp.length !== 4 && yourIp.length !== 16)) bad('yourip is not 4 or 16 bytes');
    out.yourIp = yourIp;
  }
  return out;
}
