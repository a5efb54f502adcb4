import { mulberry32 } from '@shoal/swarm';
import { ShoalError } from '@shoal/torrent';
import { type Contact, DhtError, type DhtErrorCode, NODE_ID_BYTES, type NodeId, type RandomBytes, seededRandomBytes } from '../src';

/** Runs `action`, which must throw a DhtError (hence a ShoalError) with `code`; returns it. */
export function expectDhtError(action: () => unknown, code: DhtErrorCode): DhtError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ShoalError);
    expect(error).toBeInstanceOf(DhtError);
    expect((error as DhtError).code).toBe(code);
    return error as DhtError;
  }
  throw new Error(`expected ${code}, but nothing was thrown`);
}

/** Seeded random bytes: every run replays. */
export function randomSource(seed = 1): RandomBytes {
  return seededRandomBytes(mulberry32(seed));
}

/** An id from a bit pattern: `prefix` is a string of 0/1 for the leading bits, `fill` the rest (a byte). */
export function idWithPrefix(prefix: string, fill = 0): NodeId {
  const id = Buffer.alloc(NODE_ID_BYTES, fill);
  for (const [bit, char] of [...prefix].entries()) {
    const mask = 0x80 >> (bit & 7);
    const byte = bit >> 3;
    id[byte] = char === '1' ? (id[byte] as number) | mask : (id[byte] as number) & ~mask;
  }
  return id;
}

/** An id whose last byte is `n` on top of `prefix` (distinct ids in one region). */
export function idNumbered(prefix: string, n: number): NodeId {
  const id = idWithPrefix(prefix);
  id.writeUInt16BE(n, NODE_ID_BYTES - 2);
  return id;
}

export function contact(id: NodeId, address: string, port = 6881, site?: string): Contact {
  return site === undefined ? { id, address, port } : { id, address, port, site };
}
