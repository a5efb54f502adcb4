import fc from 'fast-check';
import { MetainfoError } from '../src/errors';
import { MAX_COMPONENT_BYTES, MAX_PATH_DEPTH, SiblingNames, checkComponent, collisionKey, decodeComponent } from '../src/paths';

// ---------------------------------------------------------------------------------------------
// helpers

const raw = (text: string): Buffer => Buffer.from(text, 'latin1');

/** Runs `run` and returns the MetainfoError it throws; fails on any other outcome. */
function metainfoError(run: () => unknown): MetainfoError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(MetainfoError);
    return err as MetainfoError;
  }
  throw new Error('expected a MetainfoError, but nothing was thrown');
}

const expectUnsafe = (run: () => unknown, where: string): MetainfoError => {
  const err = metainfoError(run);
  expect(err.code).toBe('METAINFO_UNSAFE_PATH');
  expect(err.field).toBe(where);
  return err;
};

const UNSAFE_TEXT: [string, string][] = [
  ['', 'empty'],
  ['.', 'current directory'],
  ['..', 'parent directory'],
  ['a/b', 'slash'],
  ['/', 'lone slash'],
  ['/abs', 'absolute'],
  ['a\\b', 'backslash'],
  ['\\\\server\\share', 'UNC'],
  ['nul\u0000', 'NUL'],
  ['\u0001', 'U+0001'],
  ['line\nfeed', 'newline'],
  ['carriage\rreturn', 'carriage return'],
  ['\u001b[2J', 'terminal escape'],
  ['\u001f', 'U+001F'],
  ['\u007f', 'DEL'],
  ['C:', 'drive'],
  ['z:file', 'drive-relative path'],
  ['a'.repeat(MAX_COMPONENT_BYTES + 1), 'one byte too long'],
  ['€'.repeat(86), '258 UTF-8 bytes in 86 chars'],
];

const SAFE_TEXT = ['a', '.a', '..a', 'a.', 'a..', '...', ' ', 'name with spaces', 'é', '日本語', '😀', 'a'.repeat(MAX_COMPONENT_BYTES), '€'.repeat(85), 'ab:c', '1:', '\u00a0nbsp', '\ufeffbom'];

// ---------------------------------------------------------------------------------------------

describe('limits', () => {
  it('are the documented ones', () => {
    expect(MAX_COMPONENT_BYTES).toBe(255);
    expect(MAX_PATH_DEPTH).toBe(32);
  });
});

describe('checkComponent', () => {
  it.each(UNSAFE_TEXT)('rejects %j (%s)', (text) => {
    expectUnsafe(() => checkComponent(text, 'where/it/was'), 'where/it/was');
  });

  it.each(SAFE_TEXT)('accepts %j', (text) => {
    expect(() => checkComponent(text, 'x')).not.toThrow();
  });

  it('counts the length in UTF-8 bytes, not in UTF-16 units', () => {
    expect(() => checkComponent('é'.repeat(127) + 'a', 'x')).not.toThrow(); // 255 bytes
    expectUnsafe(() => checkComponent('é'.repeat(128), 'x'), 'x'); // 128 chars, 256 bytes
    expect(() => checkComponent('😀'.repeat(63), 'x')).not.toThrow(); // 252 bytes
    expectUnsafe(() => checkComponent('😀'.repeat(64), 'x'), 'x'); // 256 bytes
  });

  it('rejects every C0 control character and DEL, wherever it is', () => {
    for (let c = 0; c < 0x20; c++) {
      for (const text of [String.fromCharCode(c), `a${String.fromCharCode(c)}`, `${String.fromCharCode(c)}a`]) {
        expectUnsafe(() => checkComponent(text, 'x'), 'x');
      }
    }
    expectUnsafe(() => checkComponent('a\u007fb', 'x'), 'x');
  });

  it('names the offending component in the message', () => {
    expect(metainfoError(() => checkComponent('..', 'dir')).message).toContain('".."');
  });

  it('never throws anything but MetainfoError, and accepts only components free of separators and controls', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (text) => {
        let ok = true;
        try {
          checkComponent(text, 'p');
        } catch (err) {
          if (!(err instanceof MetainfoError)) throw err;
          ok = false;
        }
        if (ok) {
          expect(text).not.toMatch(/[/\\\u0000-\u001f\u007f]/);
          expect(['', '.', '..']).not.toContain(text);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('decodeComponent', () => {
  it('decodes UTF-8 bytes to the same text', () => {
    for (const text of SAFE_TEXT) expect(decodeComponent(Buffer.from(text, 'utf8'), 'x')).toBe(text);
  });

  it('keeps a leading byte order mark, so the name round-trips to the same bytes', () => {
    const bytes = Buffer.from('\ufeffname', 'utf8');
    expect(Buffer.from(decodeComponent(bytes, 'x'), 'utf8')).toEqual(bytes);
  });

  it.each<[string, string]>([
    ['\xff', 'invalid byte'],
    ['\xfe\xff', 'UTF-16 byte order mark'],
    ['abc\x80', 'lone continuation byte'],
    ['\xc3', 'truncated two-byte sequence'],
    ['\xe2\x82', 'truncated three-byte sequence'],
    ['\xc0\xaf', 'overlong "/"'],
    ['\xc0\xae\xc0\xae', 'overlong ".."'],
    ['\xe0\x80\xaf', 'three-byte overlong "/"'],
    ['\xed\xa0\x80', 'encoded high surrogate'],
    ['\xed\xbf\xbf', 'encoded low surrogate'],
    ['\xf4\x90\x80\x80', 'beyond U+10FFFF'],
    ['\xf8\x88\x80\x80\x80', 'five-byte form'],
    ['caf\xe9', 'latin1, not UTF-8'],
  ])('rejects %j (%s) as METAINFO_UNSAFE_PATH', (bytes) => {
    expectUnsafe(() => decodeComponent(raw(bytes), 'tree/dir'), 'tree/dir');
  });

  it.each(UNSAFE_TEXT)('rejects valid UTF-8 that is unsafe: %j (%s)', (text) => {
    expectUnsafe(() => decodeComponent(Buffer.from(text, 'utf8'), 'w'), 'w');
  });

  it('on random bytes, returns text that re-encodes to the same bytes or throws METAINFO_UNSAFE_PATH', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        let text: string;
        try {
          text = decodeComponent(bytes, 'p');
        } catch (err) {
          expect(err).toBeInstanceOf(MetainfoError);
          expect((err as MetainfoError).code).toBe('METAINFO_UNSAFE_PATH');
          return;
        }
        expect(Buffer.from(text, 'utf8')).toEqual(Buffer.from(bytes));
        expect(() => checkComponent(text, 'p')).not.toThrow();
      }),
      { numRuns: 1000 },
    );
  });
});

describe('collisionKey', () => {
  it.each<[string, string, string]>([
    ['precomposed vs decomposed é', '\u00e9', 'e\u0301'],
    ['precomposed vs decomposed, in a longer name', 'Caf\u00e9.txt', 'Cafe\u0301.txt'],
    ['Angstrom sign vs Å', '\u212b', '\u00c5'],
    ['Kelvin sign vs K', '\u212a', 'k'],
    ['case', 'Readme', 'README'],
    ['case of non-ASCII letters', '\u00c9COLE', '\u00e9cole'],
    ['Greek case', '\u03a3\u039f\u03a6\u0399\u0391', '\u03c3\u03bf\u03c6\u03b9\u03b1'],
    ['compatibility ligature', '\ufb01le', 'file'],
    ['fullwidth letters', '\uff32\uff25\uff21\uff24\uff2d\uff25', 'readme'],
    ['superscript digit', 'x\u00b2', 'x2'],
    ['capital sharp s vs sharp s', '\u1e9e', '\u00df'],
    ['capital sharp s vs ss', 'stra\u1e9ee', 'STRASSE'],
    ['Greek letter whose upper case needs recomposing', '\u1fd2', '\u1fd2'.toUpperCase()],
  ])('folds %s to one key', (_name, a, b) => {
    expect(Buffer.from(a)).not.toEqual(Buffer.from(b));
    expect(collisionKey(a)).toBe(collisionKey(b));
  });

  it.each<[string, string]>([
    ['a', 'b'],
    ['file.txt', 'file.txt.bak'],
    ['e', '\u00e9'],
    ['\u00e9', '\u00e8'],
    ['1', 'l'],
    ['a b', 'ab'],
  ])('keeps %j and %j apart', (a, b) => {
    expect(collisionKey(a)).not.toBe(collisionKey(b));
  });

  it('is idempotent and insensitive to normalisation form and case', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.string({ unit: 'grapheme-composite', maxLength: 12 })),
        (text) => {
          const key = collisionKey(text);
          expect(collisionKey(key)).toBe(key);
          expect(collisionKey(text.normalize('NFD'))).toBe(key);
          expect(collisionKey(text.normalize('NFC'))).toBe(key);
          expect(collisionKey(text.normalize('NFKD'))).toBe(key);
          expect(collisionKey(text.toUpperCase())).toBe(key);
          expect(collisionKey(text.toLowerCase())).toBe(key);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('is idempotent and case-insensitive for every code point that has a case or a compatibility form', () => {
    // Case mappings and compatibility decompositions all lie below U+30000.
    const broken: string[] = [];
    for (let cp = 0; cp < 0x30000; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      const text = String.fromCodePoint(cp);
      const key = collisionKey(text);
      if (collisionKey(key) !== key || collisionKey(text.toUpperCase()) !== key || collisionKey(text.toLowerCase()) !== key) {
        broken.push(`U+${cp.toString(16).toUpperCase()}`);
      }
    }
    expect(broken).toEqual([]);
  });
});

describe('SiblingNames', () => {
  it('accepts names that stay distinct', () => {
    const names = new SiblingNames();
    for (const n of ['a', 'b', 'a.txt', 'é', 'e', '日本']) expect(() => names.add(n, 'dir')).not.toThrow();
  });

  it.each<[string, string]>([
    ['README', 'Readme'],
    ['\u00e9', 'e\u0301'],
    ['same', 'same'],
  ])('rejects %j after %j with METAINFO_PATH_COLLISION, naming both', (first, second) => {
    const names = new SiblingNames();
    names.add(first, 'tree/dir');
    const err = metainfoError(() => names.add(second, 'tree/dir'));
    expect(err.code).toBe('METAINFO_PATH_COLLISION');
    expect(err.field).toBe('tree/dir');
    expect(err.message).toContain(JSON.stringify(first));
    expect(err.message).toContain(JSON.stringify(second));
  });

  it('tracks one directory: separate instances do not interfere', () => {
    const left = new SiblingNames();
    const right = new SiblingNames();
    left.add('README', 'a');
    expect(() => right.add('readme', 'b')).not.toThrow();
  });

  it('still rejects a collision after many other names', () => {
    const names = new SiblingNames();
    for (let i = 0; i < 500; i++) names.add(`file-${i}`, 'd');
    expect(metainfoError(() => names.add('FILE-250', 'd')).code).toBe('METAINFO_PATH_COLLISION');
  });
});
