import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config';
import { notModified, rangeStillValid, resolveRange } from '../src/origin';

describe('Range header', () => {
  test('single ranges resolve and clamp to the file', () => {
    expect(resolveRange(undefined, 10)).toEqual({ kind: 'full' });
    expect(resolveRange('bytes=0-0', 10)).toEqual({ kind: 'partial', start: 0, end: 0 });
    expect(resolveRange('bytes=2-', 10)).toEqual({ kind: 'partial', start: 2, end: 9 });
    expect(resolveRange('bytes=-3', 10)).toEqual({ kind: 'partial', start: 7, end: 9 });
    expect(resolveRange('bytes=-30', 10)).toEqual({ kind: 'partial', start: 0, end: 9 });
    expect(resolveRange('bytes=5-500', 10)).toEqual({ kind: 'partial', start: 5, end: 9 });
    expect(resolveRange(' Bytes= 1-2 ', 10)).toEqual({ kind: 'partial', start: 1, end: 2 });
    expect(resolveRange(`bytes=0-${'9'.repeat(400)}`, 10)).toEqual({ kind: 'partial', start: 0, end: 9 });
  });

  test('other units are ignored: the whole file', () => {
    for (const header of ['items=0-1', 'bytes', '', 'garbage', '=0-1', 'bytes 0-1']) expect(resolveRange(header, 10)).toEqual({ kind: 'full' });
  });

  test('unsatisfiable, malformed and multiple ranges are refused', () => {
    for (const header of ['bytes=10-', 'bytes=10-20', 'bytes=3-2', 'bytes=-0', 'bytes=-', 'bytes=', 'bytes=a-b', 'bytes=1-2-3', 'bytes=0-1,2-3', 'bytes=0-1,', 'bytes=+1-2', 'bytes=0x1-2', 'bytes=1.5-2', `bytes=${'9'.repeat(400)}-`]) {
      expect({ header, kind: resolveRange(header, 10).kind }).toEqual({ header, kind: 'unsatisfiable' });
    }
    expect(resolveRange('bytes=0-', 0).kind).toBe('unsatisfiable');
    expect(resolveRange('bytes=-1', 0).kind).toBe('unsatisfiable');
  });

  test('any header and size: the whole file, a refusal, or a range inside the file', () => {
    const header = fc.oneof(fc.string(), fc.string().map((s) => `bytes=${s}`), fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `bytes=${a}-${b}`));
    fc.assert(
      fc.property(header, fc.nat(1 << 30), (text, size) => {
        const answer = resolveRange(text, size);
        if (answer.kind === 'partial') return answer.start >= 0 && answer.start <= answer.end && answer.end < size;
        return true;
      }),
    );
  });
});

describe('validators', () => {
  const validators = { etag: '"5-a"', lastModified: new Date('2024-05-01T10:00:00.750Z') };

  test('If-None-Match wins over If-Modified-Since and compares weakly', () => {
    expect(notModified({ ifNoneMatch: '"5-a"' }, validators)).toBe(true);
    expect(notModified({ ifNoneMatch: 'W/"5-a"' }, validators)).toBe(true);
    expect(notModified({ ifNoneMatch: '*' }, validators)).toBe(true);
    expect(notModified({ ifNoneMatch: '"x"', ifModifiedSince: 'Wed, 01 May 2024 10:00:00 GMT' }, validators)).toBe(false);
    expect(notModified({ ifModifiedSince: 'Wed, 01 May 2024 10:00:00 GMT' }, validators)).toBe(true);
    expect(notModified({ ifModifiedSince: 'Wed, 01 May 2024 09:59:59 GMT' }, validators)).toBe(false);
    expect(notModified({ ifModifiedSince: 'yesterday' }, validators)).toBe(false);
    expect(notModified({}, validators)).toBe(false);
  });

  test('If-Range: strong tag or exact date, else the whole file', () => {
    expect(rangeStillValid(undefined, validators)).toBe(true);
    expect(rangeStillValid('"5-a"', validators)).toBe(true);
    expect(rangeStillValid('W/"5-a"', validators)).toBe(false);
    expect(rangeStillValid('"6-a"', validators)).toBe(false);
    expect(rangeStillValid('Wed, 01 May 2024 10:00:00 GMT', validators)).toBe(true);
    expect(rangeStillValid('Wed, 01 May 2024 10:00:01 GMT', validators)).toBe(false);
    expect(rangeStillValid('soon', validators)).toBe(false);
  });
});

describe('originDir setting', () => {
  test('off by default; an existing folder becomes absolute; anything else is refused', () => {
    expect(loadConfig({ env: { SHOAL_DATA_DIR: '/d' } }).originDir).toBe('');
    expect(loadConfig({ env: { SHOAL_DATA_DIR: '/d', SHOAL_ORIGIN_DIR: '  ' } }).originDir).toBe('');
    const dir = mkdtempSync(join(tmpdir(), 'shoal-origin-config-'));
    try {
      expect(loadConfig({ env: { SHOAL_DATA_DIR: '/d', SHOAL_ORIGIN_DIR: dir } }).originDir).toBe(dir);
      expect(() => loadConfig({ env: { SHOAL_DATA_DIR: '/d', SHOAL_ORIGIN_DIR: join(dir, 'absent') } })).toThrow(/originDir \(SHOAL_ORIGIN_DIR\): must be an existing folder/);
      expect(() => loadConfig({ env: {}, overrides: { dataDir: '/d', originDir: 42 } })).toThrow(/originDir \(command line\): must be a non-empty string, got 42/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
