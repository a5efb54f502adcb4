import { DhtError } from './errors';

/**
 * IP addresses as the DHT sees them: canonical text (dotted quad; RFC 5952 for IPv6) in the API and
 * persisted state, 4 or 16 raw bytes on the wire. IPv4-mapped IPv6 addresses (what a dual-stack
 * socket reports for an IPv4 peer) become plain IPv4, so one host has one spelling.
 */
export type IpFamily = 4 | 6;

const IPV4_PART = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
/** The longest valid IPv6 text (8 groups of 4 digits + 7 colons, or an IPv4 tail); anything longer is refused unparsed. */
const MAX_ADDRESS_TEXT = 45;

/** Raw bytes of an address: 4 for IPv4 (mapped IPv6 included), 16 for IPv6. */
export function ipBytes(text: string, field = 'address'): Buffer {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_ADDRESS_TEXT) {
    throw new DhtError('DHT_BAD_ADDRESS', 'not an IPv4 or IPv6 address', field);
  }
  const v4 = text.includes(':') ? undefined : parseIpv4(text);
  if (v4) return v4;
  const v6 = text.includes(':') ? parseIpv6(text) : undefined;
  if (!v6) throw new DhtError('DHT_BAD_ADDRESS', `${JSON.stringify(text)} is not an IPv4 or IPv6 address`, field);
  return isIpv4Mapped(v6) ? Buffer.from(v6.subarray(12)) : v6;
}

/** Canonical text of 4 or 16 address bytes. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new DhtError('DHT_BAD_ADDRESS', `an address is 4 or 16 bytes, not ${bytes.length}`);
  if (isIpv4Mapped(bytes)) return formatIp(bytes.subarray(12));
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] as number) << 8) | (bytes[i + 1] as number));
  // RFC 5952: the longest run of two or more zero groups (the first on a tie) becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

/** The canonical spelling of an address; throws DHT_BAD_ADDRESS for anything else. */
export function canonicalIp(text: string, field = 'address'): string {
  return formatIp(ipBytes(text, field));
}

export function ipFamily(address: string): IpFamily {
  return address.includes(':') ? 6 : 4;
}

/**
 * Why an address cannot belong to a node, or undefined when it can. Loopback and private ranges
 * are fine (fleets live in them); unspecified, multicast and broadcast addresses are not.
 */
export function unusableAddressReason(bytes: Uint8Array): string | undefined {
  if (bytes.every((b) => b === 0)) return 'the unspecified address';
  if (bytes.length === 4) {
    const first = bytes[0] as number;
    if (first >= 224 && first <= 239) return 'a multicast address';
    if (bytes.every((b) => b === 255)) return 'the broadcast address';
    return undefined;
  }
  if (bytes[0] === 0xff) return 'a multicast address';
  if (isIpv4Mapped(bytes)) return 'an IPv4-mapped address (send it as IPv4)';
  return undefined;
}

export function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

function isIpv4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

function parseIpv4(text: string): Buffer | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = Buffer.alloc(4);
  for (const [i, part] of parts.entries()) {
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!IPV4_PART.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    out[i] = value;
  }
  return out;
}

function parseIpv6(text: string): Buffer | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] === '' ? [] : (halves[0] as string).split(':');
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] as string).split(':')) : [];
  const words: number[] = [];
  const pushGroups = (groups: string[], allowV4Tail: boolean): boolean => {
    for (const [i, group] of groups.entries()) {
      if (allowV4Tail && i === groups.length - 1 && group.includes('.')) {
        const v4 = parseIpv4(group);
        if (!v4) return false;
        words.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
      } else {
        if (!HEX_GROUP.test(group)) return false;
        words.push(parseInt(group, 16));
      }
    }
    return true;
  };
  const compressed = halves.length === 2;
  if (!pushGroups(head, !compressed)) return undefined;
  const headWords = words.length;
  if (!pushGroups(tail, true)) return undefined;
  const tailWords = words.length - headWords;
  const missing = 8 - headWords - tailWords;
  if (compressed ? missing < 1 : missing !== 0) return undefined;
  const all = [...words.slice(0, headWords), ...new Array<number>(missing).fill(0), ...words.slice(headWords)];
  const out = Buffer.alloc(16);
  for (const [i, word] of all.entries()) out.writeUInt16BE(word, i * 2);
  return out;
}

/**
 * The diversity group of an address: its /24 (IPv4) or /64 (IPv6). Hosts in one such prefix
 * usually share a rack, a switch or an operator; the routing table caps how many of them it keeps
 * so one failure or one hostile subnet cannot fill a bucket.
 */
export function ipPrefixGroup(address: string): string {
  if (!address.includes(':')) return `ip4:${address.slice(0, address.lastIndexOf('.'))}`;
  return `ip6:${ipBytes(address).subarray(0, 8).toString('hex')}`;
}
