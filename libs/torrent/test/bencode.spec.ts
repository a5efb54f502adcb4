import fc from 'fast-check';
import { type BValue, type DecodeLimits, DEFAULT_DECODE_LIMITS, decode, encode, utf8Key } from '../src/bencode';
import { BencodeError, type BencodeErrorCode } from '../src/errors';

// ---------------------------------------------------------------------------------------------
// helpers

/** Bytes of a latin1 string: one char per byte, so test inputs can spell any byte. */
const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Runs `decode` and returns the BencodeError it throws; fails if it throws anything else or accepts. */
function decodeError(input: Uint8Array | string, limits?: Partial<DecodeLimits>): BencodeError {
  const data = typeof input === 'string' ? bytes(input) : input;
  try {
    decode(data, limits);
  } catch (err) {
    expect(err).toBeInstanceOf(BencodeError);
    return err as BencodeError;
  }
  throw new Error(`decode accepted ${JSON.stringify(Buffer.from(data).toString('latin1').slice(0, 80))}`);
}

function expectDecodeError(
  input: Uint8Array | string,
  code: BencodeErrorCode,
  offset: number,
  limits?: Partial<DecodeLimits>,
): void {
  const err = decodeError(input, limits);
  expect({ code: err.code, offset: err.offset }).toEqual({ code, offset });
}

/**
 * What decoding untrusted bytes may do: return a value (which must then be canonical, i.e.
 * re-encode to exactly the input) or throw a BencodeError. Anything else fails the test.
 */
function decodesCanonicallyOrThrowsTyped(input: Uint8Array, limits?: Partial<DecodeLimits>): boolean {
  let value: BValue;
  try {
    value = decode(input, limits);
  } catch (err) {
    if (err instanceof BencodeError) return true;
    throw err;
  }
  expect(encode(value).equals(Buffer.from(input))).toBe(true);
  return true;
}

function encodeError(value: unknown): BencodeError {
  try {
    encode(value as Parameters<typeof encode>[0]);
  } catch (err) {
    expect(err).toBeInstanceOf(BencodeError);
    return err as BencodeError;
  }
  throw new Error('encode accepted the value');
}

const nested = (open: string, depth: number, inner = ''): string => open.repeat(depth) + inner + 'e'.repeat(depth);

/** Map with keys inserted in the given order. */
const dict = (entries: [string, BValue][]): Map<string, BValue> => new Map(entries);

// --- fast-check arbitraries ------------------------------------------------------------------

/** A dictionary key in the binary-string form: any bytes, one char per byte. */
const binaryKey = fc.uint8Array({ maxLength: 6 }).map((u) => Buffer.from(u).toString('latin1'));

/** Integers as bencode carries them (`+ 0` turns a possible -0 into 0: bencode has no -0). */
const bInteger = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.maxSafeInteger()).map((n) => n + 0);

const bBytes = fc.uint8Array({ maxLength: 24 }).map((u) => Buffer.from(u));

const { value: bValue } = fc.letrec<{ value: BValue }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 5, depthIdentifier: 'bvalue' },
    bInteger,
    bBytes,
    fc.array(tie('value'), { maxLength: 5, depthIdentifier: 'bvalue' }),
    fc
      .uniqueArray(fc.tuple(binaryKey, tie('value')), {
        selector: ([key]) => key,
        maxLength: 5,
        depthIdentifier: 'bvalue',
      })
      .map((entries) => new Map(entries)),
  ),
}));

/** A valid encoding together with a position inside it (for mutations). */
const encodingWithPosition = bValue
  .map((value) => encode(value))
  .chain((enc) => fc.tuple(fc.constant(enc), fc.nat({ max: enc.length })));

/** Bytes drawn mostly from bencode's own alphabet, so random inputs get past the first byte. */
const bencodeishBytes = fc
  .array(
    fc.oneof(
      fc.constantFrom(...'ilde:-0123456789'.split('').map((c) => c.charCodeAt(0))),
      fc.integer({ min: 0, max: 255 }),
    ),
    { maxLength: 64 },
  )
  .map((arr) => Uint8Array.from(arr));

const RUNS = 1000;

// ---------------------------------------------------------------------------------------------

describe('decode: canonical values', () => {
  it.each<[string, BValue]>([
    ['i0e', 0],
    ['i42e', 42],
    ['i-42e', -42],
    ['i9007199254740991e', Number.MAX_SAFE_INTEGER],
    ['i-9007199254740991e', Number.MIN_SAFE_INTEGER],
    ['0:', Buffer.alloc(0)],
    ['3:abc', bytes('abc')],
    ['4:\x00\xff\x80e', bytes('\x00\xff\x80e')],
    ['le', []],
    ['li1e2:xye', [1, bytes('xy')]],
    ['de', new Map()],
    ['d1:ai1e1:bli2eee', dict([['a', 1], ['b', [2]]])],
    ['d0:i0ee', dict([['', 0]])],
    ['d1:\xffi1ee', dict([['\xff', 1]])],
  ])('%j', (input, expected) => {
    expect(decode(bytes(input))).toEqual(expected);
  });

  it('orders keys by raw bytes: "A" < "a" < "aa" < "b" < byte 0xff', () => {
    const value = decode(bytes('d1:Ai1e1:ai2e2:aai3e1:bi4e1:\xffi5ee')) as Map<string, BValue>;
    expect([...value.keys()]).toEqual(['A', 'a', 'aa', 'b', '\xff']);
  });

  it('accepts a plain Uint8Array that is a window into a larger buffer', () => {
    const backing = bytes('XXXXli7e1:ze!!');
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 4, 8);
    expect(decode(view)).toEqual([7, bytes('z')]);
  });

  it('returns byte strings as views into the input (no copy)', () => {
    const input = bytes('5:hello');
    const value = decode(input) as Buffer;
    input[2] = 'J'.charCodeAt(0);
    expect(value.toString('latin1')).toBe('Jello');
  });
});

describe('decode: non-canonical and malformed input is rejected with a code and the byte offset', () => {
  it.each<[string, string, BencodeErrorCode, number]>([
    ['integer with a leading zero', 'i03e', 'BENCODE_LEADING_ZERO', 1],
    ['integer 00', 'i00e', 'BENCODE_LEADING_ZERO', 1],
    ['negative integer with a leading zero', 'i-03e', 'BENCODE_LEADING_ZERO', 1],
    ['string length with a leading zero', '03:abc', 'BENCODE_LEADING_ZERO', 0],
    ['string length 00', '00:', 'BENCODE_LEADING_ZERO', 0],
    ['leading zero inside a list', 'li1e03:abce', 'BENCODE_LEADING_ZERO', 4],
    ['long integer with leading zeros', `i${'0'.repeat(20)}1e`, 'BENCODE_LEADING_ZERO', 1],
    ['long string length with leading zeros', `${'0'.repeat(20)}1:a`, 'BENCODE_LEADING_ZERO', 0],
    ['negative zero', 'i-0e', 'BENCODE_NEGATIVE_ZERO', 1],
    ['negative zero in a dict', 'd1:ai-0ee', 'BENCODE_NEGATIVE_ZERO', 5],
    ['empty integer', 'ie', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['lone minus', 'i-e', 'BENCODE_UNEXPECTED_BYTE', 2],
    ['plus sign', 'i+1e', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['space in an integer', 'i 1e', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['decimal point', 'i1.5e', 'BENCODE_UNEXPECTED_BYTE', 2],
    ['minus after digits', 'i1-2e', 'BENCODE_UNEXPECTED_BYTE', 2],
    ['negative string length', '-1:a', 'BENCODE_UNEXPECTED_BYTE', 0],
    ['string length without colon', '3xabc', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['unknown type byte', 'x', 'BENCODE_UNEXPECTED_BYTE', 0],
    ['bare end marker', 'e', 'BENCODE_UNEXPECTED_BYTE', 0],
    ['integer dict key', 'di1ei2ee', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['list dict key', 'dlei1ee', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['dict dict key', 'ddei1ee', 'BENCODE_UNEXPECTED_BYTE', 1],
    ['non-string key after a good one', 'd1:ai1ei2ei3ee', 'BENCODE_UNEXPECTED_BYTE', 7],
    ['dict key without a value', 'd1:ae', 'BENCODE_UNEXPECTED_BYTE', 4],
    ['unsorted keys', 'd1:bi1e1:ai2ee', 'BENCODE_KEY_ORDER', 7],
    ['unsorted keys, longer key first', 'd2:aai1e1:ai2ee', 'BENCODE_KEY_ORDER', 8],
    ['unsorted keys by byte, not by case-insensitive order', 'd1:ai1e1:Bi2ee', 'BENCODE_KEY_ORDER', 7],
    ['unsorted keys deep inside', 'ld1:ai1e1:ci2e1:bi3eee', 'BENCODE_KEY_ORDER', 14],
    ['duplicate keys', 'd1:ai1e1:ai2ee', 'BENCODE_DUPLICATE_KEY', 7],
    ['duplicate empty keys', 'd0:i1e0:i2ee', 'BENCODE_DUPLICATE_KEY', 6],
    ['trailing bytes after an integer', 'i1ei2e', 'BENCODE_TRAILING_BYTES', 3],
    ['trailing byte after a string', '0:x', 'BENCODE_TRAILING_BYTES', 2],
    ['extra end marker', 'lee', 'BENCODE_TRAILING_BYTES', 2],
    ['trailing newline', 'de\n', 'BENCODE_TRAILING_BYTES', 2],
    ['empty input', '', 'BENCODE_TRUNCATED', 0],
    ['integer beyond 2^53', 'i9007199254740992e', 'BENCODE_INTEGER_RANGE', 1],
    ['negative integer beyond -2^53', 'i-9007199254740992e', 'BENCODE_INTEGER_RANGE', 1],
    ['20-digit integer', 'i99999999999999999999e', 'BENCODE_INTEGER_RANGE', 1],
    ['string length beyond 2^53', '9007199254740992:', 'BENCODE_INTEGER_RANGE', 0],
    ['integer range inside a dict', 'd1:ai99999999999999999ee', 'BENCODE_INTEGER_RANGE', 5],
  ])('%s: %j', (_name, input, code, offset) => {
    expectDecodeError(input, code, offset);
  });

  it('says where it stopped in the message', () => {
    expect(decodeError('d1:bi1e1:ai2ee').message).toMatch(/at byte 7$/);
  });

  it('accepts prefixes-as-keys in order ("a" < "aa") and bytes above 0x7f after ASCII', () => {
    expect(() => decode(bytes('d1:ai1e2:aai2e1:zi3e1:\x80i4ee'))).not.toThrow();
  });
});

describe('decode: every strict prefix of a valid encoding is BENCODE_TRUNCATED', () => {
  const samples = [
    'i12345e',
    'i-7e',
    '11:hello world',
    'l4:spami42ee',
    'd3:bar4:spam3:fooi42ee',
    'd4:infod6:lengthi5e4:name3:abce5:otherli1eli2eeee',
    'lld0:0:eee',
  ];
  it.each(samples)('%j', (sample) => {
    expect(() => decode(bytes(sample))).not.toThrow();
    for (let cut = 0; cut < sample.length; cut++) {
      const err = decodeError(sample.slice(0, cut));
      expect(err.code).toBe('BENCODE_TRUNCATED');
      expect(err.offset).toBeGreaterThanOrEqual(0);
      expect(err.offset).toBeLessThanOrEqual(cut);
    }
  });

  it.each<[string, number]>([
    ['i12', 3], // ran out of digits at the end
    ['l', 1], // list never closed
    ['d1:a', 4], // value missing at the end
    ['5:ab', 0], // the string that runs past the end starts at 0
    ['li1e10:abc', 4], // the string that runs past the end starts at 4
  ])('offset of %j is %d', (input, offset) => {
    expectDecodeError(input, 'BENCODE_TRUNCATED', offset);
  });
});

describe('decode: limits', () => {
  it('has the documented defaults', () => {
    expect(DEFAULT_DECODE_LIMITS).toEqual({
      maxInputLength: 64 * 1024 * 1024,
      maxStringLength: 32 * 1024 * 1024,
      maxDepth: 64,
    });
  });

  it('accepts nesting of exactly 64 lists and rejects 65, pointing at the 65th opener', () => {
    expect(() => decode(bytes(nested('l', 64)))).not.toThrow();
    expectDecodeError(nested('l', 65), 'BENCODE_TOO_DEEP', 64);
  });

  it('counts dictionaries towards the depth', () => {
    const dicts = (depth: number): string => '0:d'.repeat(depth).slice(2) + 'e'.repeat(depth);
    expect(() => decode(bytes(dicts(64)))).not.toThrow();
    expectDecodeError(dicts(65), 'BENCODE_TOO_DEEP', 3 * 64);
  });

  it('honours a custom maxDepth', () => {
    expect(() => decode(bytes('llleee'), { maxDepth: 3 })).not.toThrow();
    expectDecodeError('lllleeee', 'BENCODE_TOO_DEEP', 3, { maxDepth: 3 });
    expectDecodeError('ld0:d0:leeee', 'BENCODE_TOO_DEEP', 7, { maxDepth: 3 });
    expectDecodeError('le', 'BENCODE_TOO_DEEP', 0, { maxDepth: 0 });
    expect(decode(bytes('i5e'), { maxDepth: 0 })).toBe(5);
  });

  it('rejects a string longer than maxStringLength at the string start, accepts one of exactly that length', () => {
    expect(decode(bytes('3:abc'), { maxStringLength: 3 })).toEqual(bytes('abc'));
    expectDecodeError('4:abcd', 'BENCODE_STRING_TOO_LONG', 0, { maxStringLength: 3 });
    expectDecodeError('l1:a4:abcde', 'BENCODE_STRING_TOO_LONG', 4, { maxStringLength: 3 });
    expectDecodeError('d4:abcdi1ee', 'BENCODE_STRING_TOO_LONG', 1, { maxStringLength: 3 });
  });

  it('rejects input longer than maxInputLength before looking at it', () => {
    expect(decode(bytes('5:abcde'), { maxInputLength: 7 })).toEqual(bytes('abcde'));
    expectDecodeError('5:abcde', 'BENCODE_INPUT_TOO_LARGE', 6, { maxInputLength: 6 });
    // even when the content would be garbage
    expectDecodeError('xxxxxxx', 'BENCODE_INPUT_TOO_LARGE', 6, { maxInputLength: 6 });
  });

  it('rejects a huge declared string length with a typed error, not an allocation', () => {
    expectDecodeError('99999999999:', 'BENCODE_STRING_TOO_LONG', 0);
    expectDecodeError('99999999999:abc', 'BENCODE_TRUNCATED', 0, { maxStringLength: Number.MAX_SAFE_INTEGER });
    expectDecodeError('l99999999999:e', 'BENCODE_STRING_TOO_LONG', 1);
  });

  it('does not allocate the declared length of a string that runs past the end', () => {
    const declared = DEFAULT_DECODE_LIMITS.maxStringLength; // 32 MiB: allowed, but not present
    const input = bytes(`l${declared}:abc`);
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 20; i++) expectDecodeError(input, 'BENCODE_TRUNCATED', 1);
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(grown).toBeLessThan(declared);
  });

  it('stops at the depth cap on very deep input, quickly and without a stack overflow', () => {
    const start = performance.now();
    expectDecodeError('l'.repeat(1_000_000), 'BENCODE_TOO_DEEP', 64);
    expectDecodeError('d0:'.repeat(300_000), 'BENCODE_TOO_DEEP', 3 * 64);
    expect(performance.now() - start).toBeLessThan(1000);
  });
});

describe('encode', () => {
  it.each<[string, Parameters<typeof encode>[0], string]>([
    ['zero', 0, 'i0e'],
    ['negative', -17, 'i-17e'],
    ['max safe integer', Number.MAX_SAFE_INTEGER, 'i9007199254740991e'],
    ['negative zero as 0', -0, 'i0e'],
    ['a JS string as UTF-8', 'é€', '5:\xc3\xa9\xe2\x82\xac'],
    ['an empty string', '', '0:'],
    ['a Buffer', bytes('\x00\xff'), '2:\x00\xff'],
    ['a Uint8Array window', new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4), '3:\x01\x02\x03'],
    ['a list', [1, 'a', []], 'li1e1:alee'],
    ['an empty map', new Map(), 'de'],
  ])('%s', (_name, value, expected) => {
    expect(encode(value).toString('latin1')).toBe(expected);
  });

  it('sorts dictionary keys by raw bytes, whatever the insertion order', () => {
    const keys = ['b', '\xff', 'a', 'B', 'aa', '', '\x00', 'A', '\x7f', '\x80'];
    const value = new Map(keys.map((k, i) => [k, i]));
    const encoded = encode(value);
    const decodedKeys = [...(decode(encoded) as Map<string, BValue>).keys()];
    expect(decodedKeys).toEqual(['', '\x00', 'A', 'B', 'a', 'aa', 'b', '\x7f', '\x80', '\xff']);
    const reversed = new Map([...value.entries()].reverse());
    expect(encode(reversed).equals(encoded)).toBe(true);
  });

  it('orders utf8Key keys by UTF-8 bytes, not by UTF-16 code units', () => {
    // U+FF61 is EF BD A1 in UTF-8 and 0xFF61 in UTF-16; U+10000 is F0 90 80 80 and 0xD800 0xDC00.
    const halfwidth = utf8Key('\uff61');
    const astral = utf8Key('\u{10000}');
    const encoded = encode(new Map([[astral, 1], [halfwidth, 2]]));
    expect(encoded.toString('latin1')).toBe(`d3:${halfwidth}i2e4:${astral}i1ee`);
    expect(() => decode(encoded)).not.toThrow();
  });

  it.each([1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53, -(2 ** 53), 1e300])(
    'rejects the number %p as BENCODE_UNENCODABLE',
    (n) => {
      const err = encodeError(n);
      expect(err.code).toBe('BENCODE_UNENCODABLE');
      expect(err.offset).toBe(-1);
    },
  );

  it('rejects an unsafe integer nested deep inside', () => {
    expect(encodeError([new Map([['a', [1, 0.5]]])]).code).toBe('BENCODE_UNENCODABLE');
  });

  it.each([['U+20AC', '\u20ac'], ['U+0100', '\u0100'], ['an astral char', '\u{1f600}'], ['mixed', 'ok\u0101']])(
    'rejects a map key that is not a binary string (%s)',
    (_name, key) => {
      expect(encodeError(new Map([[key, 1]])).code).toBe('BENCODE_UNENCODABLE');
    },
  );

  it.each([['true', true], ['null', null], ['undefined', undefined], ['a plain object', { a: 1 }], ['a bigint', 1n]])(
    'rejects %s',
    (_name, value) => {
      expect(encodeError(value).code).toBe('BENCODE_UNENCODABLE');
    },
  );

  it('has no "at byte" suffix in encode errors (there is no input offset)', () => {
    expect(encodeError(0.5).message).not.toMatch(/at byte/);
  });
});

describe('utf8Key', () => {
  it('is the identity on ASCII', () => {
    expect(utf8Key('piece length')).toBe('piece length');
  });

  it('turns text into one char per UTF-8 byte', () => {
    expect(utf8Key('é')).toBe('\xc3\xa9');
    expect(utf8Key('€')).toBe('\xe2\x82\xac');
    expect(utf8Key('\u{1f600}')).toBe('\xf0\x9f\x98\x80');
  });

  it('makes keys that encode as the UTF-8 bytes of the text and decode back to the same key', () => {
    const key = utf8Key('Übersicht.txt');
    const encoded = encode(new Map([[key, 1]]));
    expect(encoded.equals(Buffer.concat([bytes('d14:'), Buffer.from('Übersicht.txt', 'utf8'), bytes('i1ee')]))).toBe(true);
    expect([...(decode(encoded) as Map<string, BValue>).keys()]).toEqual([key]);
    expect(Buffer.from(key, 'latin1').toString('utf8')).toBe('Übersicht.txt');
  });
});

describe('properties', () => {
  it('(a) decode(encode(v)) deep-equals v, and encode(decode(x)) is x', () => {
    fc.assert(
      fc.property(bValue, (value) => {
        const encoded = encode(value);
        const decoded = decode(encoded);
        expect(decoded).toEqual(value);
        expect(encode(decoded).equals(encoded)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('(a) the encoding does not depend on map insertion order', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(binaryKey, bInteger), { selector: ([k]) => k, maxLength: 10 }), (entries) => {
        const forward = encode(new Map(entries));
        const backward = encode(new Map([...entries].reverse()));
        expect(backward.equals(forward)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('(b) random bytes: a canonical value or a BencodeError, nothing else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (input) => decodesCanonicallyOrThrowsTyped(input)),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(bencodeishBytes, (input) => decodesCanonicallyOrThrowsTyped(input)),
      { numRuns: 2 * RUNS },
    );
  });

  it('(b) random bytes under tight limits: still only BencodeErrors', () => {
    fc.assert(
      fc.property(
        bencodeishBytes,
        fc.record({ maxDepth: fc.nat(4), maxStringLength: fc.nat(8), maxInputLength: fc.nat(64) }),
        (input, limits) => decodesCanonicallyOrThrowsTyped(input, limits),
      ),
      { numRuns: RUNS },
    );
  });

  it('(c) every truncation of a valid encoding is BENCODE_TRUNCATED', () => {
    fc.assert(
      fc.property(encodingWithPosition, ([encoded, cut]) => {
        fc.pre(cut < encoded.length);
        const err = decodeError(encoded.subarray(0, cut));
        expect(err.code).toBe('BENCODE_TRUNCATED');
        expect(err.offset).toBeLessThanOrEqual(cut);
      }),
      { numRuns: RUNS },
    );
  });

  it('(d) a replaced byte: a canonical value or a BencodeError', () => {
    fc.assert(
      fc.property(encodingWithPosition, fc.integer({ min: 0, max: 255 }), ([encoded, at], byte) => {
        fc.pre(at < encoded.length);
        const mutated = Buffer.from(encoded);
        mutated[at] = byte;
        return decodesCanonicallyOrThrowsTyped(mutated);
      }),
      { numRuns: RUNS },
    );
  });

  it('(d) an inserted byte: a canonical value or a BencodeError', () => {
    fc.assert(
      fc.property(encodingWithPosition, fc.integer({ min: 0, max: 255 }), ([encoded, at], byte) => {
        const mutated = Buffer.concat([encoded.subarray(0, at), Buffer.from([byte]), encoded.subarray(at)]);
        return decodesCanonicallyOrThrowsTyped(mutated);
      }),
      { numRuns: RUNS },
    );
  });

  it('(d) a deleted byte: a canonical value or a BencodeError', () => {
    fc.assert(
      fc.property(encodingWithPosition, ([encoded, at]) => {
        fc.pre(at < encoded.length);
        const mutated = Buffer.concat([encoded.subarray(0, at), encoded.subarray(at + 1)]);
        return decodesCanonicallyOrThrowsTyped(mutated);
      }),
      { numRuns: RUNS },
    );
  });

  it('(e) huge declared lengths and deep nesting give typed errors fast', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: DEFAULT_DECODE_LIMITS.maxStringLength + 1, max: Number.MAX_SAFE_INTEGER }),
        fc.nat({ max: 4 }),
        fc.integer({ min: 65, max: 5000 }),
        (length, prefixDepth, depth) => {
          const hugeString = decodeError(`${'l'.repeat(prefixDepth)}${length}:abc`);
          expect(hugeString.code).toBe('BENCODE_STRING_TOO_LONG');
          expect(hugeString.offset).toBe(prefixDepth);
          const deep = decodeError('l'.repeat(depth) + 'e'.repeat(depth));
          expect(deep.code).toBe('BENCODE_TOO_DEEP');
          expect(deep.offset).toBe(64);
        },
      ),
      { numRuns: 300 },
    );
  });
});
