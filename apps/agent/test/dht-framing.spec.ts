import fc from 'fast-check';
import { MAX_MESSAGE_BYTES } from '@shoal/dht';
import { encode } from '@shoal/torrent';
import { DhtTransportError, FRAME_HEADER_BYTES, FrameReader, MAX_FRAME_BYTES, MAX_HELLO_BYTES, decodeHello, encodeFrame, encodeHello } from '../src/dht';

/** The DHT's stream framing and hello, without sockets: a byte stream in, frames or a typed error out. */

/** Feeds `stream` to a reader in the given chunk sizes; returns the frames, or the error code. */
function read(stream: Buffer, cuts: number[] = []): Buffer[] | string {
  const reader = new FrameReader();
  const frames: Buffer[] = [];
  let at = 0;
  try {
    for (const cut of [...cuts.map((c) => c % (stream.length + 1)).sort((a, b) => a - b), stream.length]) {
      frames.push(...reader.push(stream.subarray(at, Math.max(at, cut))));
      at = Math.max(at, cut);
    }
    reader.end();
    return frames;
  } catch (err) {
    if (!(err instanceof DhtTransportError)) throw err;
    return err.code;
  }
}

const payload = fc.uint8Array({ minLength: 1, maxLength: 2048 }).map((b) => Buffer.from(b));

test('frames survive any split of the stream into chunks', () => {
  fc.assert(
    fc.property(fc.array(payload, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (payloads, cuts) => {
      const stream = Buffer.concat(payloads.map(encodeFrame));
      expect(read(stream, cuts)).toEqual(payloads);
    }),
    { numRuns: 500 },
  );
});

test('the cap is the DHT codec cap; a frame at the cap passes, one byte more is refused before it is buffered', () => {
  expect(MAX_FRAME_BYTES).toBe(MAX_MESSAGE_BYTES);
  expect(read(encodeFrame(Buffer.alloc(MAX_FRAME_BYTES, 1)))).toEqual([Buffer.alloc(MAX_FRAME_BYTES, 1)]);
  const reader = new FrameReader();
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(MAX_FRAME_BYTES + 1);
  expect(() => reader.push(header)).toThrow(expect.objectContaining({ code: 'DHT_FRAME_TOO_LARGE' }));
  header.writeUInt32BE(0xffffffff);
  expect(read(Buffer.concat([header, Buffer.alloc(10)]))).toBe('DHT_FRAME_TOO_LARGE');
  expect(() => encodeFrame(Buffer.alloc(MAX_FRAME_BYTES + 1))).toThrow(expect.objectContaining({ code: 'DHT_FRAME_TOO_LARGE' }));
});

test('an empty frame and a stream cut inside a frame (header or body) are typed errors', () => {
  expect(read(Buffer.alloc(FRAME_HEADER_BYTES))).toBe('DHT_FRAME_EMPTY');
  expect(() => encodeFrame(Buffer.alloc(0))).toThrow(expect.objectContaining({ code: 'DHT_FRAME_EMPTY' }));
  fc.assert(
    fc.property(payload, fc.nat(), (body, cut) => {
      const frame = encodeFrame(body);
      const truncated = frame.subarray(0, 1 + (cut % (frame.length - 1)));
      expect(read(truncated)).toBe('DHT_FRAME_TRUNCATED');
    }),
    { numRuns: 300 },
  );
});

test('garbage streams end in frames or a typed error, never anything else, and never buffer past one frame', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 6 }), (bytes, cuts) => {
      const outcome = read(Buffer.from(bytes), cuts);
      if (typeof outcome === 'string') expect(['DHT_FRAME_EMPTY', 'DHT_FRAME_TOO_LARGE', 'DHT_FRAME_TRUNCATED']).toContain(outcome);
    }),
    { numRuns: 2000 },
  );
  const reader = new FrameReader();
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(MAX_FRAME_BYTES);
  reader.push(header);
  reader.push(Buffer.alloc(MAX_FRAME_BYTES - 1));
  expect(reader.pendingBytes).toBe(MAX_FRAME_BYTES - 1);
});

test('hello: a bencoded {port}, unknown keys ignored; anything else is DHT_BAD_HELLO', () => {
  expect(decodeHello(encodeHello({ port: 6881 }))).toEqual({ port: 6881 });
  expect(decodeHello(encode(new Map<string, number | string>([['port', 443], ['zz', 'later']])))).toEqual({ port: 443 });
  const bad = [
    Buffer.from('garbage'),
    encode([6881]),
    encode(new Map([['port', 0]])),
    encode(new Map([['port', 65536]])),
    encode(new Map([['port', '6881']])),
    encode(new Map([['prt', 6881]])),
    Buffer.from('d4:porti6881e'),
    encode(new Map<string, number | string>([['port', 6881], ['pad', 'x'.repeat(MAX_HELLO_BYTES)]])),
  ];
  for (const input of bad) expect(() => decodeHello(input)).toThrow(expect.objectContaining({ code: 'DHT_BAD_HELLO' }));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        decodeHello(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(DhtTransportError);
      }
    }),
    { numRuns: 2000 },
  );
});
