import fc from 'fast-check';
import { BLOCK_SIZE } from '@shoal/torrent';
import {
  decodeFrames,
  DEFAULT_MAX_FRAME_LENGTH,
  encodeMessage,
  FrameDecoder,
  WireError,
  WireUsageError,
  type WireErrorCode,
  type WireMessage,
} from '../src';
import { GEOMETRY, splitAt, wireMessage } from './support';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const root = Buffer.alloc(32, 0x22);

function decodeAll(decoder: FrameDecoder, chunks: Buffer[]): WireMessage[] {
  const out: WireMessage[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    for (let m = decoder.next(); m !== null; m = decoder.next()) out.push(m);
  }
  return out;
}

/** The code a byte stream fails with, fed whole. */
function failure(bytes: Buffer, limits = GEOMETRY): WireErrorCode | 'none' {
  try {
    decodeFrames(bytes, limits);
    return 'none';
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    return e.code;
  }
}

/** The code after feeding only `bytes` (an incomplete frame), or 'waiting'. */
function failureOnPrefix(bytes: Buffer): WireErrorCode | 'waiting' {
  const decoder = new FrameDecoder(GEOMETRY);
  decoder.push(bytes);
  try {
    expect(decoder.next()).toBeNull();
    return 'waiting';
  } catch (e) {
    if (!(e instanceof WireError)) throw e;
    return e.code;
  }
}

const hashHeader = (id: number, base: number, index: number, length: number, proof: number, extra = ''): Buffer => {
  const body = Buffer.concat([root, hex([base, index, length, proof].map((n) => n.toString(16).padStart(8, '0')).join('')), hex(extra)]);
  const out = Buffer.alloc(5);
  out.writeUInt32BE(1 + body.length, 0);
  out[4] = id;
  return Buffer.concat([out, body]);
};

describe('FrameDecoder', () => {
  it('yields the same messages however the stream is chunked', () => {
    fc.assert(
      fc.property(fc.array(wireMessage, { maxLength: 25 }), fc.array(fc.nat(), { maxLength: 30 }), (messages, cuts) => {
        // Compared through the (deterministic, separately tested) encoder: jest's deep equality
        // on 16 KiB blocks would dominate the run time.
        const stream = Buffer.concat(messages.map(encodeMessage));
        const whole = decodeAll(new FrameDecoder(GEOMETRY), [stream]);
        expect(whole.map((m) => m.type)).toEqual(messages.map((m) => m.type));
        expect(Buffer.concat(whole.map(encodeMessage)).equals(stream)).toBe(true);
        const decoder = new FrameDecoder(GEOMETRY);
        const chunked = decodeAll(decoder, splitAt(stream, cuts));
        expect(chunked.map((m) => m.type)).toEqual(messages.map((m) => m.type));
        expect(Buffer.concat(chunked.map(encodeMessage)).equals(stream)).toBe(true);
        expect(decoder.buffered).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('yields messages fed one byte at a time (a full block included)', () => {
    const messages: WireMessage[] = [
      { type: 'have', index: 1 },
      { type: 'piece', index: 2, begin: 0, block: Buffer.alloc(BLOCK_SIZE, 5) },
      { type: 'keep-alive' },
      { type: 'extended', id: 1, payload: new Map([['a', 1]]) },
    ];
    const stream = Buffer.concat(messages.map(encodeMessage));
    const chunks = [...stream].map((b) => Buffer.from([b]));
    expect(decodeAll(new FrameDecoder(GEOMETRY), chunks)).toEqual(messages);
  });

  it('returns frames inside one chunk as views (no copy)', () => {
    const stream = encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(1000, 1) });
    const [msg] = decodeAll(new FrameDecoder(GEOMETRY), [stream]);
    expect(msg?.type === 'piece' && msg.block.buffer).toBe(stream.buffer);
  });

  describe('refuses, with a specific code', () => {
    it.each<[string, string, WireErrorCode]>([
      ['an unknown message id', '00000001 0a', 'WIRE_UNKNOWN_MESSAGE'],
      ['id 18 (not in any BEP we speak)', '00000001 12', 'WIRE_UNKNOWN_MESSAGE'],
      ['a choke with a payload', '00000002 00 00', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a have of 3 bytes', '00000004 04 000001', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a have of 5 bytes', '00000006 04 0000000001', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a request of 11 bytes', '0000000c 06 00000001 00000000 000040', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a port of 1 byte', '00000002 09 1a', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a have-all with a payload', '00000002 0e 00', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['an empty piece', '00000009 07 00000000 00000000', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a piece of 16 KiB + 1', `0000400a 07 00000000 00000000 ${'00'.repeat(BLOCK_SIZE + 1)}`, 'WIRE_FRAME_TOO_LARGE'],
      ['a bitfield one byte short', '00000002 05 ff', 'WIRE_BAD_BITFIELD'],
      ['a bitfield one byte long', '00000004 05 ffc000', 'WIRE_BAD_BITFIELD'],
      ['a bitfield with spare bits set', '00000003 05 ffc1', 'WIRE_BAD_BITFIELD'],
      ['a have beyond the last piece', '00000005 04 0000000a', 'WIRE_BAD_PIECE_INDEX'],
      ['a suggest beyond the last piece', '00000005 0d ffffffff', 'WIRE_BAD_PIECE_INDEX'],
      ['a request beyond the last piece', '0000000d 06 0000000a 00000000 00004000', 'WIRE_BAD_PIECE_INDEX'],
      ['a piece beyond the last piece', '0000000a 07 0000000a 00000000 00', 'WIRE_BAD_PIECE_INDEX'],
      ['a request of 16 KiB + 1', '0000000d 06 00000000 00000000 00004001', 'WIRE_REQUEST_TOO_LARGE'],
      ['a reject of 16 KiB + 1', '0000000d 10 00000000 00000000 00004001', 'WIRE_REQUEST_TOO_LARGE'],
      ['a cancel of 4 GiB - 1', '0000000d 08 00000000 00000000 ffffffff', 'WIRE_REQUEST_TOO_LARGE'],
      ['a request of zero bytes', '0000000d 06 00000000 00000000 00000000', 'WIRE_BAD_REQUEST'],
      ['an extended message without an id', '00000001 14', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['an empty extended payload', '00000002 14 00', 'WIRE_BAD_EXTENDED'],
      ['a garbage extended payload', `00000006 14 00 ${Buffer.from('junk').toString('hex')}`, 'WIRE_BAD_EXTENDED'],
      ['a non-canonical extended payload', `0000000b 14 00 ${Buffer.from('d1:ai01ee').toString('hex')}`, 'WIRE_BAD_EXTENDED'],
      ['an extended dict with unsorted keys', `0000000f 14 00 ${Buffer.from('d1:bi1e1:ai1ee').toString('hex')}`, 'WIRE_BAD_EXTENDED'],
      ['an extended payload that is a list', `00000004 14 00 ${Buffer.from('le').toString('hex')}`, 'WIRE_BAD_EXTENDED'],
      ['trailing bytes after the extended dict', `00000005 14 00 ${Buffer.from('dee').toString('hex')}`, 'WIRE_BAD_EXTENDED'],
    ])('%s', (_name, bytes, code) => {
      expect(failure(hex(bytes))).toBe(code);
    });

    it('extended payloads nested deeper than 4', () => {
      const deep = Buffer.from('d1:ad1:ad1:ad1:adeeeee');
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 2 + deep.length, 20, 0]), deep]);
      expect(failure(frame)).toBe('WIRE_BAD_EXTENDED');
      const ok = Buffer.from('d1:ad1:ad1:adeeee');
      expect(failure(Buffer.concat([Buffer.from([0, 0, 0, 2 + ok.length, 20, 0]), ok]))).toBe('none');
    });

    it('hash messages whose header or count is inconsistent', () => {
      const h = (n: number): string => Buffer.alloc(32 * n, 0xee).toString('hex');
      expect(failure(hashHeader(21, 0, 0, 0, 0))).toBe('WIRE_BAD_HASH_REQUEST');
      expect(failure(hashHeader(21, 0, 0, 8193, 0))).toBe('WIRE_BAD_HASH_REQUEST');
      expect(failure(hashHeader(21, 65, 0, 2, 0))).toBe('WIRE_BAD_HASH_REQUEST');
      expect(failure(hashHeader(23, 0, 0, 2, 65))).toBe('WIRE_BAD_HASH_REQUEST');
      expect(failure(hashHeader(21, 0, 0, 1024, 0))).toBe('none'); // well formed; the tree owner rejects it
      expect(failure(hashHeader(22, 0, 0, 2, 0, h(2)))).toBe('none');
      expect(failure(hashHeader(22, 0, 0, 2, 0, h(3)))).toBe('WIRE_BAD_HASHES'); // one too many
      expect(failure(hashHeader(22, 0, 0, 4, 3, h(4)))).toBe('WIRE_BAD_HASHES'); // needs 2 uncles
      expect(failure(hashHeader(22, 0, 0, 4, 3, h(6)))).toBe('none');
      expect(failure(hashHeader(22, 0, 0, 3, 0, h(3)))).toBe('WIRE_BAD_HASHES'); // not a power of two
      expect(failure(hashHeader(22, 0, 0, 1024, 0, h(8)))).toBe('WIRE_BAD_HASHES'); // above 512
      expect(failure(hashHeader(22, 0, 0, 2, 0, h(1)))).toBe('WIRE_BAD_PAYLOAD_LENGTH'); // fewer than 2
      const misaligned = hashHeader(22, 0, 0, 2, 0, h(2) + 'ff');
      expect(failure(misaligned)).toBe('WIRE_BAD_PAYLOAD_LENGTH');
      const wrongHashRequestSize = hashHeader(21, 0, 0, 2, 0, 'ff');
      expect(failure(wrongHashRequestSize)).toBe('WIRE_BAD_PAYLOAD_LENGTH');
    });
  });

  describe('does not trust a length prefix', () => {
    it.each<[string, string, WireErrorCode | 'waiting']>([
      ['4 GiB - 1', 'ffffffff', 'WIRE_FRAME_TOO_LARGE'],
      ['2^31', '80000000', 'WIRE_FRAME_TOO_LARGE'],
      ['1 MiB', '00100000', 'WIRE_FRAME_TOO_LARGE'],
      ['a valid piece size: waits for the id', '00004009', 'waiting'],
      ['a piece one byte over, decided on the id', '0000400a 07', 'WIRE_FRAME_TOO_LARGE'],
      ['a have of 1000 bytes, decided on the id', '000003e8 04', 'WIRE_BAD_PAYLOAD_LENGTH'],
      ['a bitfield of the wrong size, decided on the id', '00000100 05', 'WIRE_BAD_BITFIELD'],
      ['an unknown id, decided on the id', '00000100 63', 'WIRE_UNKNOWN_MESSAGE'],
      ['an extended payload over the cap, decided on the id', '00004003 14', 'WIRE_FRAME_TOO_LARGE'],
    ])('%s', (_name, bytes, outcome) => {
      expect(failureOnPrefix(hex(bytes))).toBe(outcome);
    });

    it('sizes the overall cap from the torrent: bitfields of big torrents pass, nothing larger', () => {
      const numPieces = 3_276_800; // 50 GiB of 16 KiB pieces
      const decoder = new FrameDecoder({ numPieces });
      expect(decoder.maxMessageLength).toBe(1 + numPieces / 8);
      const bitfield = encodeMessage({ type: 'bitfield', bitfield: Buffer.alloc(numPieces / 8, 0xff) });
      decoder.push(bitfield);
      expect(decoder.next()).toMatchObject({ type: 'bitfield' });
      decoder.push(hex('00066001 07'));
      expect(() => decoder.next()).toThrow(expect.objectContaining({ code: 'WIRE_FRAME_TOO_LARGE' }));
    });

    it('allocates at most one frame, of its exact size, and only once its bytes are in', () => {
      const sizes: number[] = [];
      const spies = (['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const).map((name) => {
        const original = Buffer[name].bind(Buffer);
        return jest.spyOn(Buffer, name).mockImplementation(((size: number, ...rest: unknown[]) => {
          sizes.push(size);
          return (original as (...a: unknown[]) => Buffer)(size, ...rest);
        }) as never);
      });
      try {
        const decoder = new FrameDecoder(GEOMETRY);
        decoder.push(hex('7fffffff'));
        expect(() => decoder.next()).toThrow(expect.objectContaining({ code: 'WIRE_FRAME_TOO_LARGE' }));
        expect(sizes).toEqual([]);
        const piece = encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(BLOCK_SIZE) });
        sizes.length = 0;
        const d2 = new FrameDecoder(GEOMETRY);
        for (const part of splitAt(piece, [3, 4000, 9000])) {
          d2.push(part);
          d2.next();
        }
        expect(sizes).toEqual([BLOCK_SIZE + 9]);
        expect(Math.max(...sizes) + 4).toBeLessThanOrEqual(DEFAULT_MAX_FRAME_LENGTH);
      } finally {
        for (const spy of spies) spy.mockRestore();
      }
    });
  });

  it('stays failed after an error', () => {
    const decoder = new FrameDecoder(GEOMETRY);
    decoder.push(hex('00000001 0a'));
    expect(() => decoder.next()).toThrow(WireError);
    decoder.push(encodeMessage({ type: 'choke' }));
    expect(() => decoder.next()).toThrow(expect.objectContaining({ code: 'WIRE_UNKNOWN_MESSAGE' }));
  });

  it('honours configured caps', () => {
    const small = { ...GEOMETRY, maxFrameLength: 4 + 9 + 1000, maxExtendedPayload: 10 };
    expect(failure(encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(1000) }), small)).toBe('none');
    expect(failure(encodeMessage({ type: 'piece', index: 0, begin: 0, block: Buffer.alloc(1001) }), small)).toBe('WIRE_FRAME_TOO_LARGE');
    expect(failure(encodeMessage({ type: 'extended', id: 1, payload: new Map([['a', Buffer.alloc(3)]]) }), small)).toBe('none');
    expect(failure(encodeMessage({ type: 'extended', id: 1, payload: new Map([['a', Buffer.alloc(4)]]) }), small)).toBe(
      'WIRE_FRAME_TOO_LARGE',
    );
  });

  it('refuses nonsensical limits (a local error)', () => {
    expect(() => new FrameDecoder({ numPieces: 0 })).toThrow(WireUsageError);
    expect(() => new FrameDecoder({ numPieces: 1.5 })).toThrow(WireUsageError);
    expect(() => new FrameDecoder({ numPieces: 1, maxFrameLength: 10 })).toThrow(WireUsageError);
    expect(() => new FrameDecoder({ numPieces: 1, maxExtendedPayload: 0 })).toThrow(WireUsageError);
  });
});
