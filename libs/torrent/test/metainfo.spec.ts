import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { type BDict, type BValue, decode, encode, utf8Key } from '../src/bencode';
import { BencodeError, MetainfoError, type MetainfoErrorCode } from '../src/errors';
import { BLOCK_SIZE, FileMerkleHasher } from '../src/merkle';
import {
  type BuildMetainfoOptions,
  DEFAULT_METAINFO_LIMITS,
  MAX_PIECE_LENGTH,
  type Metainfo,
  type PackageFileInput,
  buildMetainfo,
  diskPath,
  parseMetainfo,
  pieceLayerOf,
  truncatedInfoHash,
} from '../src/metainfo';
import { MAX_PATH_DEPTH, checkComponent } from '../src/paths';

// ---------------------------------------------------------------------------------------------
// helpers

const KiB = 1024;
const PIECE = 32 * KiB;

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');
const sha256 = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest();

/** Deterministic pseudo-random bytes (xorshift32). */
function testData(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A package file hashed the way `shoal pack` hashes it. */
function hashedFile(path: string[], data: Buffer, options: { pieceLength?: number; executable?: boolean } = {}): PackageFileInput {
  const hasher = new FileMerkleHasher(options.pieceLength ?? PIECE);
  hasher.update(data);
  const { length, piecesRoot, pieceLayer } = hasher.digest();
  return { path, length, executable: options.executable ?? false, ...(piecesRoot ? { piecesRoot } : {}), ...(pieceLayer ? { pieceLayer } : {}) };
}

const build = (files: PackageFileInput[], options: Partial<BuildMetainfoOptions> = {}) =>
  buildMetainfo({ name: 'pkg', pieceLength: PIECE, files, ...options });

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

function expectRejected(input: Uint8Array, code: MetainfoErrorCode, field?: string): MetainfoError {
  const err = metainfoError(() => parseMetainfo(input));
  expect(err.code).toBe(code);
  if (field !== undefined) expect(err.field).toBe(field);
  return err;
}

/** The parts of a decoded torrent, as mutable Maps. */
interface Parts {
  top: BDict;
  info: BDict;
  tree: BDict;
  layers: BDict;
}

/** Decodes `valid`, lets `change` edit it, and re-encodes: the way to make one thing wrong. */
function edited(valid: Buffer, change: (parts: Parts) => void): Buffer {
  const top = decode(Buffer.from(valid)) as BDict;
  const info = top.get('info') as BDict;
  change({ top, info, tree: info.get('file tree') as BDict, layers: top.get('piece layers') as BDict });
  return encode(top);
}

/** The node of `path` in a decoded file tree. */
function nodeAt(tree: BDict, ...path: string[]): BDict {
  let node = tree;
  for (const component of path) node = node.get(utf8Key(component)) as BDict;
  return node;
}

/** The `''` entry (length, pieces root, attr) of the file at `path`. */
const entryAt = (tree: BDict, ...path: string[]): BDict => nodeAt(tree, ...path).get('') as BDict;

/** A file node as it appears in a file tree. */
const fileNode = (length: number, piecesRoot: Buffer | undefined = sha256(bytes(`root ${length}`))): BDict =>
  new Map([['', new Map<string, BValue>([['length', length], ...(piecesRoot && length > 0 ? [['pieces root', piecesRoot] as [string, BValue]] : [])])]]);

/** A whole torrent around a hand-made file tree (files here are one piece or empty). */
function torrentWithTree(tree: BValue, pieceLayers: BDict = new Map()): Buffer {
  const info = new Map<string, BValue>([
    ['file tree', tree],
    ['meta version', 2],
    ['name', bytes('pkg')],
    ['piece length', PIECE],
  ]);
  return encode(new Map<string, BValue>([['info', info], ['piece layers', pieceLayers]]));
}

/** Invariants every accepted metainfo must satisfy. */
function checkInvariants(meta: Metainfo): void {
  let nextPiece = 0;
  let total = 0;
  for (const file of meta.files) {
    expect(file.firstPiece).toBe(nextPiece);
    expect(file.numPieces).toBe(Math.ceil(file.length / meta.pieceLength));
    expect(file.piecesRoot?.length ?? 32).toBe(32);
    expect(file.piecesRoot === undefined).toBe(file.length === 0);
    expect(file.path.length).toBeGreaterThan(0);
    expect(file.path.length).toBeLessThanOrEqual(MAX_PATH_DEPTH);
    for (const component of file.path) checkComponent(component, 'test');
    nextPiece += file.numPieces;
    total += file.length;
  }
  expect(meta.numPieces).toBe(nextPiece);
  expect(meta.totalLength).toBe(total);
  expect(meta.infoHash).toHaveLength(32);
}

/**
 * What parsing untrusted bytes may do: return valid metainfo, or throw a MetainfoError.
 * Returns whether the input was accepted, so fuzzers can show they reach both outcomes.
 */
function parsesOrThrowsMetainfoError(input: Uint8Array): boolean {
  let meta: Metainfo;
  try {
    meta = parseMetainfo(input);
  } catch (err) {
    if (err instanceof MetainfoError) return false;
    throw err;
  }
  checkInvariants(meta);
  return true;
}

// --- the package most tests start from ---------------------------------------------------------

const DATA = {
  tool: testData(70_000, 1), // 3 pieces of 32 KiB: has a piece layer
  readme: testData(1000, 2),
  deep: testData(PIECE, 3), // exactly one piece: no piece layer
  last: testData(1, 4),
};

/** Given in a scrambled order: the file tree sorts them. */
const MULTI_FILES: PackageFileInput[] = [
  hashedFile(['z-last'], DATA.last),
  hashedFile(['lib', 'a', 'b', 'c', 'deep.dat'], DATA.deep),
  hashedFile(['docs', 'README.md'], DATA.readme),
  hashedFile(['bin', 'tool'], DATA.tool, { executable: true }),
  hashedFile(['bin', 'empty.txt'], Buffer.alloc(0)),
];

const MULTI = build(MULTI_FILES, { name: 'demo-1.0' });
const toolRoot = (MULTI_FILES[3] as PackageFileInput).piecesRoot as Buffer;
const readmeRoot = (MULTI_FILES[2] as PackageFileInput).piecesRoot as Buffer;

// ---------------------------------------------------------------------------------------------

describe('parseMetainfo of built packages', () => {
  it('a single-file package: info-hash is SHA-256 of the bencoded info dictionary', () => {
    const data = bytes('hello world\n');
    const root = sha256(data); // one block: the pieces root is the block hash
    const infoBytes = Buffer.concat([
      bytes('d9:file treed9:hello.txtd0:d6:lengthi12e11:pieces root32:'),
      root,
      bytes('eee12:meta versioni2e4:name9:hello.txt12:piece lengthi16384ee'),
    ]);
    const torrent = Buffer.concat([bytes('d4:info'), infoBytes, bytes('12:piece layersdee')]);
    const meta = parseMetainfo(torrent);

    expect(meta.infoHash).toEqual(sha256(infoBytes));
    expect(truncatedInfoHash(meta.infoHash)).toEqual(sha256(infoBytes).subarray(0, 20));
    expect(truncatedInfoHash(meta.infoHash)).toHaveLength(20);
    expect(meta).toMatchObject({
      name: 'hello.txt',
      pieceLength: 16384,
      totalLength: 12,
      numPieces: 1,
      singleFile: true,
      urlList: [],
      files: [{ path: ['hello.txt'], length: 12, piecesRoot: root, executable: false, firstPiece: 0, numPieces: 1 }],
    });
    expect(meta.sslCert).toBeUndefined();
    expect(meta.pieceLayers.size).toBe(0);
    expect(diskPath(meta, meta.files[0] as Metainfo['files'][number])).toEqual(['hello.txt']);

    // buildMetainfo produces exactly these bytes for the same file
    const built = buildMetainfo({ name: 'hello.txt', pieceLength: 16384, files: [hashedFile(['hello.txt'], data, { pieceLength: 16384 })] });
    expect(built.bytes).toEqual(torrent);
    expect(built.metainfo.infoHash).toEqual(meta.infoHash);
  });

  it('a single-file package longer than one piece carries its piece layer', () => {
    const data = testData(100_000, 9);
    const file = hashedFile(['app.bin'], data);
    const { bytes: torrent, metainfo } = build([file], { name: 'app.bin' });
    const meta = parseMetainfo(torrent);
    expect(meta).toEqual(metainfo);
    expect(meta.singleFile).toBe(true);
    expect(meta.numPieces).toBe(4);
    expect(meta.files).toEqual([
      { path: ['app.bin'], length: 100_000, piecesRoot: file.piecesRoot, executable: false, firstPiece: 0, numPieces: 4 },
    ]);
    expect(pieceLayerOf(meta, meta.files[0] as Metainfo['files'][number])).toEqual(file.pieceLayer);
    expect([...meta.pieceLayers.keys()]).toEqual([(file.piecesRoot as Buffer).toString('latin1')]);
  });

  it('a multi-file package: files in file-tree order, piece-aligned', () => {
    const meta = parseMetainfo(MULTI.bytes);
    expect(meta).toEqual(MULTI.metainfo);
    expect(meta.name).toBe('demo-1.0');
    expect(meta.singleFile).toBe(false);
    expect(meta.files).toEqual([
      { path: ['bin', 'empty.txt'], length: 0, executable: false, firstPiece: 0, numPieces: 0 },
      { path: ['bin', 'tool'], length: 70_000, piecesRoot: toolRoot, executable: true, firstPiece: 0, numPieces: 3 },
      { path: ['docs', 'README.md'], length: 1000, piecesRoot: readmeRoot, executable: false, firstPiece: 3, numPieces: 1 },
      {
        path: ['lib', 'a', 'b', 'c', 'deep.dat'],
        length: PIECE,
        piecesRoot: (MULTI_FILES[1] as PackageFileInput).piecesRoot,
        executable: false,
        firstPiece: 4,
        numPieces: 1,
      },
      { path: ['z-last'], length: 1, piecesRoot: (MULTI_FILES[0] as PackageFileInput).piecesRoot, executable: false, firstPiece: 5, numPieces: 1 },
    ]);
    expect(meta.files[0]).not.toHaveProperty('piecesRoot');
    expect(meta.totalLength).toBe(70_000 + 1000 + PIECE + 1);
    expect(meta.numPieces).toBe(6);
    checkInvariants(meta);
    expect([...meta.pieceLayers.keys()]).toEqual([toolRoot.toString('latin1')]);
    expect(pieceLayerOf(meta, meta.files[1] as Metainfo['files'][number])).toEqual((MULTI_FILES[3] as PackageFileInput).pieceLayer);
    expect(pieceLayerOf(meta, meta.files[2] as Metainfo['files'][number])).toBeUndefined();
    expect(diskPath(meta, meta.files[3] as Metainfo['files'][number])).toEqual(['demo-1.0', 'lib', 'a', 'b', 'c', 'deep.dat']);
  });

  it('computes the info-hash over the info dictionary bytes as they appear in the file', () => {
    const top = decode(MULTI.bytes) as BDict;
    const infoBytes = encode(top.get('info') as BDict);
    expect(MULTI.bytes.includes(infoBytes)).toBe(true);
    expect(MULTI.metainfo.infoHash).toEqual(sha256(infoBytes));
    // unknown keys inside info are part of the identity too
    const extended = edited(MULTI.bytes, ({ info }) => info.set('x-custom', bytes('value')));
    expect(parseMetainfo(extended).infoHash).toEqual(sha256(encode((decode(extended) as BDict).get('info') as BDict)));
    expect(parseMetainfo(extended).infoHash).not.toEqual(MULTI.metainfo.infoHash);
  });

  it('a folder holding one nested file is not a single-file package', () => {
    const meta = build([hashedFile(['dir', 'only.txt'], DATA.readme)]).metainfo;
    expect(meta.singleFile).toBe(false);
    expect(diskPath(meta, meta.files[0] as Metainfo['files'][number])).toEqual(['pkg', 'dir', 'only.txt']);
  });

  it('reports url-list and ssl-cert; ssl-cert is part of the info-hash, url-list is not', () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const urls = ['https://cdn.example.com/packages/', 'http://origin.local:8080/x'];
    const withBoth = build(MULTI_FILES, { name: 'demo-1.0', sslCert: pem, urlList: urls });
    const meta = parseMetainfo(withBoth.bytes);
    expect(meta.sslCert).toBe(pem);
    expect(meta.urlList).toEqual(urls);

    const otherUrls = build(MULTI_FILES, { name: 'demo-1.0', sslCert: pem, urlList: ['https://elsewhere.example/'] });
    expect(otherUrls.metainfo.infoHash).toEqual(meta.infoHash);
    const otherCert = build(MULTI_FILES, { name: 'demo-1.0', sslCert: pem.replace('MIIB', 'MIIC'), urlList: urls });
    expect(otherCert.metainfo.infoHash).not.toEqual(meta.infoHash);
    expect(MULTI.metainfo.infoHash).not.toEqual(meta.infoHash);
  });

  it('accepts url-list as a single string (BEP 19)', () => {
    const torrent = edited(MULTI.bytes, ({ top }) => top.set('url-list', bytes('https://cdn.example.com/p/')));
    expect(parseMetainfo(torrent).urlList).toEqual(['https://cdn.example.com/p/']);
  });

  it('is reproducible, and created by / creation date stay outside the info-hash', () => {
    expect(build(MULTI_FILES, { name: 'demo-1.0' }).bytes).toEqual(MULTI.bytes);
    const stamped = build(MULTI_FILES, { name: 'demo-1.0', createdBy: 'shoal 1.0', creationDate: 1_700_000_000 });
    expect(stamped.bytes).not.toEqual(MULTI.bytes);
    expect(stamped.metainfo.infoHash).toEqual(MULTI.metainfo.infoHash);
    const top = decode(stamped.bytes) as BDict;
    expect(top.get('created by')).toEqual(bytes('shoal 1.0'));
    expect(top.get('creation date')).toBe(1_700_000_000);
  });

  it('marks executables from attr "x" and ignores "h"', () => {
    for (const [attr, executable] of [['x', true], ['h', false], ['xh', true], ['hx', true], ['', false]] as const) {
      const torrent = edited(MULTI.bytes, ({ tree }) => entryAt(tree, 'docs', 'README.md').set('attr', bytes(attr)));
      expect(parseMetainfo(torrent).files[2]?.executable).toBe(executable);
    }
  });

  it.each([16 * KiB, 64 * KiB, MAX_PIECE_LENGTH])('accepts piece length %d', (pieceLength) => {
    const file = hashedFile(['f'], DATA.tool, { pieceLength });
    const meta = buildMetainfo({ name: 'p', pieceLength, files: [file] }).metainfo;
    expect(meta.pieceLength).toBe(pieceLength);
    expect(meta.numPieces).toBe(Math.ceil(70_000 / pieceLength));
  });

  it(`accepts a path exactly ${MAX_PATH_DEPTH} components deep`, () => {
    const path = [...Array<string>(MAX_PATH_DEPTH - 1).fill('d'), 'f'];
    const meta = build([hashedFile(path, DATA.readme)]).metainfo;
    expect(meta.files[0]?.path).toEqual(path);
  });

  it('accepts unusual but safe names', () => {
    const names = ['.hidden', '..dots', 'dots..', ' spaced ', 'a'.repeat(255), 'é'.repeat(127), '日本語.txt', 'emoji 😀', 'semi;colon', '\ufeffbom'];
    const meta = build(names.map((n, i) => hashedFile([n], testData(10, i + 1)))).metainfo;
    expect(new Set(meta.files.map((f) => f.path[0]))).toEqual(new Set(names));
  });
});

describe('parseMetainfo rejections', () => {
  it('not bencode: garbage, truncated, trailing bytes, non-canonical', () => {
    const err = expectRejected(bytes('this is not a torrent'), 'METAINFO_NOT_BENCODE');
    expect(err.cause).toBeInstanceOf(BencodeError);
    expectRejected(MULTI.bytes.subarray(0, MULTI.bytes.length - 1), 'METAINFO_NOT_BENCODE');
    expectRejected(Buffer.concat([MULTI.bytes, bytes('x')]), 'METAINFO_NOT_BENCODE');
    expectRejected(Buffer.alloc(0), 'METAINFO_NOT_BENCODE');
    // the same torrent with the top-level keys out of order is not canonical
    const text = torrentWithTree(new Map([['f', fileNode(5)]])).toString('latin1');
    const swapped = text.replace(/^d(4:info.*)(12:piece layersde)e$/s, 'd$2$1e');
    expect(swapped).not.toBe(text);
    expectRejected(bytes(swapped), 'METAINFO_NOT_BENCODE');
  });

  it('too large: METAINFO_TOO_LARGE', () => {
    const err = metainfoError(() => parseMetainfo(MULTI.bytes, { maxInputLength: MULTI.bytes.length - 1 }));
    expect(err.code).toBe('METAINFO_TOO_LARGE');
    expect(() => parseMetainfo(MULTI.bytes, { maxInputLength: MULTI.bytes.length })).not.toThrow();
    expect(DEFAULT_METAINFO_LIMITS.maxInputLength).toBeGreaterThanOrEqual(64 * 1024 * 1024);
  });

  it('top level not a dictionary, missing or mistyped info', () => {
    expectRejected(bytes('li1ee'), 'METAINFO_WRONG_TYPE', 'metainfo');
    expectRejected(edited(MULTI.bytes, ({ top }) => top.delete('info')), 'METAINFO_MISSING_FIELD', 'metainfo');
    expectRejected(edited(MULTI.bytes, ({ top }) => top.set('info', 5)), 'METAINFO_WRONG_TYPE', 'info');
  });

  describe('meta version', () => {
    it.each([1, 3, 0, -2])('%d is METAINFO_UNSUPPORTED_VERSION', (version) => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('meta version', version)), 'METAINFO_UNSUPPORTED_VERSION', 'info.meta version');
    });

    it.each([1, 3])('%d is reported before any other problem', (version) => {
      const v1ish = edited(MULTI.bytes, ({ top, info }) => {
        info.set('meta version', version);
        info.delete('file tree');
        info.delete('name');
        info.set('piece length', 12345);
        info.set('pieces', Buffer.alloc(20));
        info.set('length', 5);
        top.delete('piece layers');
        top.set('url-list', bytes('gopher://x'));
      });
      expectRejected(v1ish, 'METAINFO_UNSUPPORTED_VERSION');
    });

    it('missing is METAINFO_MISSING_FIELD, not an integer is METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.delete('meta version')), 'METAINFO_MISSING_FIELD', 'info');
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('meta version', bytes('2'))), 'METAINFO_WRONG_TYPE', 'info.meta version');
    });
  });

  describe('piece length', () => {
    it.each([
      ['not a power of two', 48 * KiB],
      ['below 16 KiB', 8 * KiB],
      ['one below 16 KiB', 16 * KiB - 1],
      ['zero', 0],
      ['negative', -32 * KiB],
      ['above MAX_PIECE_LENGTH', 2 * MAX_PIECE_LENGTH],
      ['huge', 2 ** 52],
    ])('%s is METAINFO_BAD_PIECE_LENGTH', (_name, pieceLength) => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('piece length', pieceLength)), 'METAINFO_BAD_PIECE_LENGTH', 'info.piece length');
    });

    it('missing or not an integer', () => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.delete('piece length')), 'METAINFO_MISSING_FIELD', 'info');
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('piece length', [PIECE])), 'METAINFO_WRONG_TYPE', 'info.piece length');
    });
  });

  describe('name', () => {
    it('missing is METAINFO_MISSING_FIELD, not a string is METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.delete('name')), 'METAINFO_MISSING_FIELD', 'info');
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('name', 7)), 'METAINFO_WRONG_TYPE', 'info.name');
    });

    it.each(['', '.', '..', 'a/b', 'a\\b', 'nul\x00', 'C:', '\xff'])('%j is METAINFO_UNSAFE_PATH', (name) => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('name', bytes(name))), 'METAINFO_UNSAFE_PATH', 'info.name');
    });
  });

  describe('file tree shape', () => {
    it('missing or not a dictionary', () => {
      expectRejected(edited(MULTI.bytes, ({ info }) => info.delete('file tree')), 'METAINFO_MISSING_FIELD', 'info');
      expectRejected(edited(MULTI.bytes, ({ info }) => info.set('file tree', [])), 'METAINFO_WRONG_TYPE', 'info.file tree');
    });

    it('the root of the tree is a file: METAINFO_BAD_FILE_TREE', () => {
      expectRejected(torrentWithTree(fileNode(5)), 'METAINFO_BAD_FILE_TREE', 'info.file tree');
    });

    it('an empty tree or an empty directory: METAINFO_BAD_FILE_TREE', () => {
      expectRejected(torrentWithTree(new Map()), 'METAINFO_BAD_FILE_TREE', 'info.file tree');
      expectRejected(
        edited(MULTI.bytes, ({ tree }) => nodeAt(tree, 'lib', 'a').set('empty', new Map())),
        'METAINFO_BAD_FILE_TREE',
        'info.file tree/lib/a/empty',
      );
    });

    it('a file entry with siblings: METAINFO_BAD_FILE_TREE', () => {
      expectRejected(
        edited(MULTI.bytes, ({ tree }) => nodeAt(tree, 'bin', 'tool').set('sibling', fileNode(1))),
        'METAINFO_BAD_FILE_TREE',
        'info.file tree/bin/tool',
      );
    });

    it('a node or a file entry that is not a dictionary: METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => tree.set('odd', 5)), 'METAINFO_WRONG_TYPE', 'info.file tree/odd');
      expectRejected(
        edited(MULTI.bytes, ({ tree }) => nodeAt(tree, 'docs', 'README.md').set('', bytes('x'))),
        'METAINFO_WRONG_TYPE',
        'info.file tree/docs/README.md',
      );
    });
  });

  describe('file entries', () => {
    const at = 'info.file tree/docs/README.md';
    const readme = (tree: BDict): BDict => entryAt(tree, 'docs', 'README.md');

    it('negative length: METAINFO_BAD_FILE_TREE', () => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).set('length', -1)), 'METAINFO_BAD_FILE_TREE', `${at}.length`);
    });

    it('missing or mistyped length', () => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).delete('length')), 'METAINFO_MISSING_FIELD', at);
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).set('length', bytes('1000'))), 'METAINFO_WRONG_TYPE', `${at}.length`);
    });

    it('non-empty file without pieces root: METAINFO_MISSING_FIELD', () => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).delete('pieces root')), 'METAINFO_MISSING_FIELD', `${at}.pieces root`);
    });

    it.each([0, 20, 31, 33, 64])('pieces root of %d bytes: METAINFO_BAD_PIECES_ROOT', (size) => {
      expectRejected(
        edited(MULTI.bytes, ({ tree }) => readme(tree).set('pieces root', Buffer.alloc(size, 1))),
        'METAINFO_BAD_PIECES_ROOT',
        `${at}.pieces root`,
      );
    });

    it('pieces root that is not a string: METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).set('pieces root', 1)), 'METAINFO_WRONG_TYPE', `${at}.pieces root`);
    });

    it('empty file with a pieces root: METAINFO_BAD_PIECES_ROOT', () => {
      expectRejected(
        edited(MULTI.bytes, ({ tree }) => entryAt(tree, 'bin', 'empty.txt').set('pieces root', Buffer.alloc(32))),
        'METAINFO_BAD_PIECES_ROOT',
        'info.file tree/bin/empty.txt.pieces root',
      );
    });

    it.each(['l', 'p', 'xl', 'px', 'xhl', 'z'])('attr %j: METAINFO_BAD_FILE_TREE', (attr) => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).set('attr', bytes(attr))), 'METAINFO_BAD_FILE_TREE', `${at}.attr`);
    });

    it('attr that is not a string: METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ tree }) => readme(tree).set('attr', 1)), 'METAINFO_WRONG_TYPE', `${at}.attr`);
    });
  });

  describe('piece layers', () => {
    const toolKey = toolRoot.toString('latin1');
    const toolLayer = (MULTI_FILES[3] as PackageFileInput).pieceLayer as Buffer;

    it('missing dictionary: METAINFO_MISSING_FIELD; not a dictionary: METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ top }) => top.delete('piece layers')), 'METAINFO_MISSING_FIELD', 'metainfo');
      expectRejected(edited(MULTI.bytes, ({ top }) => top.set('piece layers', [])), 'METAINFO_WRONG_TYPE', 'piece layers');
    });

    it('missing layer for a file longer than one piece: METAINFO_BAD_PIECE_LAYER', () => {
      expectRejected(edited(MULTI.bytes, ({ layers }) => layers.delete(toolKey)), 'METAINFO_BAD_PIECE_LAYER', 'piece layers');
    });

    it.each([
      ['one hash short', toolLayer.subarray(32)],
      ['one hash too many', Buffer.concat([toolLayer, Buffer.alloc(32)])],
      ['one byte short', toolLayer.subarray(1)],
      ['empty', Buffer.alloc(0)],
    ])('layer %s: METAINFO_BAD_PIECE_LAYER', (_name, layer) => {
      expectRejected(
        edited(MULTI.bytes, ({ layers }) => layers.set(toolKey, layer)),
        'METAINFO_BAD_PIECE_LAYER',
        `piece layers.${toolRoot.toString('hex')}`,
      );
    });

    it('layer that does not hash to the pieces root: METAINFO_BAD_PIECE_LAYER', () => {
      const flipped = Buffer.from(toolLayer);
      flipped[40] = (flipped[40] as number) ^ 1;
      const swapped = Buffer.concat([toolLayer.subarray(32, 64), toolLayer.subarray(0, 32), toolLayer.subarray(64)]);
      for (const layer of [flipped, swapped]) {
        expectRejected(edited(MULTI.bytes, ({ layers }) => layers.set(toolKey, layer)), 'METAINFO_BAD_PIECE_LAYER');
      }
    });

    it('layer that is not a string: METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ layers }) => layers.set(toolKey, [toolLayer])), 'METAINFO_WRONG_TYPE');
    });

    it('layer for no file, or for a file of one piece: METAINFO_BAD_PIECE_LAYER', () => {
      const stranger = sha256(bytes('no such file'));
      expectRejected(
        edited(MULTI.bytes, ({ layers }) => layers.set(stranger.toString('latin1'), toolLayer)),
        'METAINFO_BAD_PIECE_LAYER',
        `piece layers.${stranger.toString('hex')}`,
      );
      expectRejected(
        edited(MULTI.bytes, ({ layers }) => layers.set(readmeRoot.toString('latin1'), readmeRoot)),
        'METAINFO_BAD_PIECE_LAYER',
        `piece layers.${readmeRoot.toString('hex')}`,
      );
    });
  });

  describe('url-list', () => {
    it.each(['ftp://cdn.example.com/p/', 'file:///etc/passwd', 'javascript:alert(1)', 'not a url', '', '/relative/path', 'data:text/plain,hi'])(
      '%j: METAINFO_BAD_URL',
      (url) => {
        expectRejected(edited(MULTI.bytes, ({ top }) => top.set('url-list', bytes(url))), 'METAINFO_BAD_URL', 'url-list');
        expectRejected(
          edited(MULTI.bytes, ({ top }) => top.set('url-list', [bytes('https://ok.example/'), bytes(url)])),
          'METAINFO_BAD_URL',
          'url-list[1]',
        );
      },
    );

    it('entries that are not strings or not UTF-8: METAINFO_WRONG_TYPE', () => {
      expectRejected(edited(MULTI.bytes, ({ top }) => top.set('url-list', 5)), 'METAINFO_WRONG_TYPE', 'url-list');
      expectRejected(edited(MULTI.bytes, ({ top }) => top.set('url-list', [5])), 'METAINFO_WRONG_TYPE', 'url-list[0]');
      expectRejected(edited(MULTI.bytes, ({ top }) => top.set('url-list', [[bytes('https://x/')]])), 'METAINFO_WRONG_TYPE', 'url-list[0]');
      expectRejected(edited(MULTI.bytes, ({ top }) => top.set('url-list', bytes('https://x/\xff'))), 'METAINFO_WRONG_TYPE', 'url-list');
    });
  });

  it('ssl-cert that is not a string or not UTF-8: METAINFO_WRONG_TYPE', () => {
    expectRejected(edited(MULTI.bytes, ({ info }) => info.set('ssl-cert', 1)), 'METAINFO_WRONG_TYPE', 'info.ssl-cert');
    expectRejected(edited(MULTI.bytes, ({ info }) => info.set('ssl-cert', bytes('\xc3\x28'))), 'METAINFO_WRONG_TYPE', 'info.ssl-cert');
  });
});

describe('hostile paths', () => {
  const unsafe: [string, string][] = [
    ['..', 'parent reference'],
    ['.', 'current directory'],
    ['a/b', 'slash'],
    ['/etc', 'leading slash (absolute path)'],
    ['a\\b', 'backslash'],
    ['..\\..\\x', 'backslash traversal'],
    ['a\x00b', 'NUL'],
    ['\x01', 'control char 0x01'],
    ['tab\there', 'tab'],
    ['new\nline', 'newline'],
    ['esc\x1b[31m', 'escape sequence'],
    ['del\x7f', 'DEL'],
    ['\xff', 'invalid UTF-8 byte'],
    ['\xc3', 'truncated UTF-8 sequence'],
    ['\xc0\xaf', 'overlong "/"'],
    ['\xc0\xae\xc0\xae', 'overlong ".."'],
    ['\xed\xa0\x80', 'UTF-8 encoded surrogate'],
    ['a'.repeat(256), '256 bytes'],
    [utf8Key('é'.repeat(128)), '256 bytes of two-byte chars'],
    ['C:evil', 'drive letter'],
    ['c:', 'bare drive'],
  ];

  it.each(unsafe)('%j (%s) as a file name: METAINFO_UNSAFE_PATH', (key) => {
    expectRejected(torrentWithTree(new Map([[key, fileNode(5)]])), 'METAINFO_UNSAFE_PATH', 'info.file tree');
  });

  it.each(unsafe)('%j (%s) as a directory name: METAINFO_UNSAFE_PATH', (key) => {
    expectRejected(
      torrentWithTree(new Map([['ok', new Map([[key, new Map([['f', fileNode(5)]])]])]])),
      'METAINFO_UNSAFE_PATH',
      'info.file tree/ok',
    );
  });

  const deepTree = (components: number): BDict => {
    let node: BDict = fileNode(5);
    for (let i = 0; i < components; i++) node = new Map([['d', node]]);
    return node;
  };

  it(`accepts ${MAX_PATH_DEPTH} components and rejects ${MAX_PATH_DEPTH + 1} with METAINFO_UNSAFE_PATH`, () => {
    expect(parseMetainfo(torrentWithTree(deepTree(MAX_PATH_DEPTH))).files[0]?.path).toHaveLength(MAX_PATH_DEPTH);
    expectRejected(torrentWithTree(deepTree(MAX_PATH_DEPTH + 1)), 'METAINFO_UNSAFE_PATH');
  });

  it('rejects far deeper trees with a MetainfoError, without recursing through them', () => {
    for (const depth of [MAX_PATH_DEPTH + 2, 100, 1000]) {
      const err = metainfoError(() => parseMetainfo(torrentWithTree(deepTree(depth))));
      expect(['METAINFO_UNSAFE_PATH', 'METAINFO_NOT_BENCODE']).toContain(err.code);
    }
  });

  describe('names that collide after normalisation: METAINFO_PATH_COLLISION', () => {
    it.each([
      ['é precomposed vs decomposed', '\u00e9.txt', 'e\u0301.txt'],
      ['Å as U+00C5 vs U+212B (Angstrom sign)', '\u00c5', '\u212b'],
      ['case', 'Readme', 'README'],
      ['case and composition together', '\u00c9cole', 'e\u0301COLE'],
      ['compatibility ligature ﬁ', '\ufb01le', 'file'],
      ['fullwidth letters', '\uff21', 'a'],
    ])('%s', (_name, first, second) => {
      expect(Buffer.from(first)).not.toEqual(Buffer.from(second));
      const tree = new Map([
        [utf8Key(first), fileNode(5)],
        [utf8Key(second), fileNode(6)],
      ]);
      expectRejected(torrentWithTree(tree), 'METAINFO_PATH_COLLISION', 'info.file tree');
    });

    it('between a directory and a file, and deep inside the tree', () => {
      expectRejected(
        torrentWithTree(new Map([['Docs', new Map([['a', fileNode(1)]])], ['docs', fileNode(2)]])),
        'METAINFO_PATH_COLLISION',
        'info.file tree',
      );
      const sub = new Map([
        [utf8Key('\u00fc'), fileNode(1)],
        [utf8Key('U\u0308'), fileNode(2)],
      ]);
      expectRejected(torrentWithTree(new Map([['x', new Map([['sub', sub]])]])), 'METAINFO_PATH_COLLISION', 'info.file tree/x/sub');
    });

    it('but the same name in different directories is fine', () => {
      const tree = new Map([
        ['a', new Map([['readme', fileNode(1)]])],
        ['b', new Map([['README', fileNode(2)]])],
        ['c', new Map([[utf8Key('\u00e9'), fileNode(3)]])],
        ['d', new Map([[utf8Key('e\u0301'), fileNode(4)]])],
      ]);
      expect(parseMetainfo(torrentWithTree(tree)).files).toHaveLength(4);
    });
  });
});

describe('buildMetainfo refuses what parseMetainfo would refuse', () => {
  const small = (path: string[], seed = 1): PackageFileInput => hashedFile(path, testData(100, seed));

  it.each(['..', '.', '', 'a/b', 'x\x00', 'C:'])('package name %j: METAINFO_UNSAFE_PATH', (name) => {
    expect(metainfoError(() => build([small(['f'])], { name })).code).toBe('METAINFO_UNSAFE_PATH');
  });

  it.each([[['..', 'etc', 'passwd']], [['a', '..', 'b']], [['a/b']], [['dir\\file']], [['x\x00']], [['']], [['ok', '']], [['bell\x07']]])(
    'path %j: METAINFO_UNSAFE_PATH',
    (path) => {
      expect(metainfoError(() => build([small(path)])).code).toBe('METAINFO_UNSAFE_PATH');
    },
  );

  it('a file without a path: METAINFO_UNSAFE_PATH (it must not silently vanish)', () => {
    expect(metainfoError(() => build([small(['kept']), small([], 2)])).code).toBe('METAINFO_UNSAFE_PATH');
  });

  it('a path deeper than MAX_PATH_DEPTH: METAINFO_UNSAFE_PATH', () => {
    const path = [...Array<string>(MAX_PATH_DEPTH).fill('d'), 'f'];
    expect(metainfoError(() => build([small(path)])).code).toBe('METAINFO_UNSAFE_PATH');
  });

  it.each([
    ['case', ['Readme'], ['README']],
    ['Unicode normalisation', ['\u00e9'], ['e\u0301']],
    ['the same path twice', ['dir', 'f'], ['dir', 'f']],
    ['a file, then a directory of the same name', ['a'], ['a', 'b']],
    ['a directory, then a file of the same name', ['a', 'b'], ['a']],
    ['directories differing in case', ['Dir', 'x'], ['dir', 'y']],
  ])('collision by %s: METAINFO_PATH_COLLISION', (_name, first, second) => {
    expect(metainfoError(() => build([small(first, 1), small(second, 2)])).code).toBe('METAINFO_PATH_COLLISION');
  });

  it('a webseed that is not http(s): METAINFO_BAD_URL', () => {
    expect(metainfoError(() => build([small(['f'])], { urlList: ['ftp://x/'] })).code).toBe('METAINFO_BAD_URL');
  });

  it('a file longer than a piece without its layer, or with a wrong one: METAINFO_BAD_PIECE_LAYER', () => {
    const file = hashedFile(['big'], DATA.tool);
    const { pieceLayer: _dropped, ...withoutLayer } = file;
    expect(metainfoError(() => build([withoutLayer])).code).toBe('METAINFO_BAD_PIECE_LAYER');
    const wrong = { ...file, pieceLayer: Buffer.alloc((file.pieceLayer as Buffer).length) };
    expect(metainfoError(() => build([wrong])).code).toBe('METAINFO_BAD_PIECE_LAYER');
  });

  it('piece length out of range: METAINFO_BAD_PIECE_LENGTH', () => {
    expect(metainfoError(() => build([small(['f'])], { pieceLength: 3 * 16 * KiB })).code).toBe('METAINFO_BAD_PIECE_LENGTH');
  });
});

// ---------------------------------------------------------------------------------------------
// fuzzing: whatever the bytes, parseMetainfo returns valid metainfo or throws a MetainfoError

const SMALL = build(
  [hashedFile(['a', 'x'], testData(40_000, 5)), hashedFile(['b'], testData(10, 6)), hashedFile(['c'], Buffer.alloc(0))],
  { name: 'fz', urlList: ['https://w.example/'], sslCert: 'PEM' },
).bytes;

const interestingKeys = [
  '',
  'length',
  'pieces root',
  'attr',
  'a',
  'A',
  'b',
  '..',
  '.',
  'a/b',
  '\x00',
  '\xff',
  'C:',
  utf8Key('\u00e9'),
  utf8Key('e\u0301'),
  'info',
  'file tree',
  'piece layers',
];
const fuzzKey = fc.oneof(fc.constantFrom(...interestingKeys), fc.uint8Array({ maxLength: 4 }).map((u) => Buffer.from(u).toString('latin1')));
const fuzzScalar: fc.Arbitrary<BValue> = fc.oneof(
  fc.integer({ min: -3, max: 200_000 }),
  fc.constantFrom(0, 1, -1, 2, 3, PIECE, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER),
  fc.constantFrom(0, 1, 20, 31, 32, 33, 64, 96).map((n) => testData(n, n + 1)),
  fc.constantFrom('x', 'l', 'p', 'h', 'https://ok.example/', 'ftp://no', '..', '\xff').map((s) => bytes(s)),
);
const { value: fuzzValue } = fc.letrec<{ value: BValue }>((tie) => ({
  value: fc.oneof(
    { maxDepth: 5, depthIdentifier: 'fuzz' },
    fuzzScalar,
    fc.array(tie('value'), { maxLength: 3, depthIdentifier: 'fuzz' }),
    fc
      .uniqueArray(fc.tuple(fuzzKey, tie('value')), { selector: ([k]) => k, maxLength: 4, depthIdentifier: 'fuzz' })
      .map((entries) => new Map(entries)),
  ),
}));
/** File nodes that mostly look right (so the walker gets past them), sometimes subtly wrong. */
const plausibleFile: fc.Arbitrary<BValue> = fc
  .record({
    length: fc.constantFrom(0, 1, 100, PIECE, PIECE, 1000, PIECE + 1, -1),
    root: fc.constantFrom(undefined, 31, 32, 32, 32, 32),
    attr: fc.constantFrom(undefined, undefined, undefined, 'x', 'l', 'xh'),
  })
  .map(({ length, root, attr }) => {
    const entry = new Map<string, BValue>([['length', length]]);
    if (root !== undefined) entry.set('pieces root', testData(root, length + 7));
    if (attr !== undefined) entry.set('attr', bytes(attr));
    return new Map([['', entry]]);
  });
/** Names that are safe and distinct after folding, mixed with hostile ones. */
const treeKey = fc.oneof(
  { arbitrary: fc.constantFrom('a', 'b', 'dir', 'f.txt', utf8Key('\u00e9'), utf8Key('日本')), weight: 6 },
  { arbitrary: fuzzKey, weight: 1 },
);
const { tree: fuzzTree } = fc.letrec<{ tree: BValue; node: BValue }>((tie) => ({
  tree: fc
    .uniqueArray(fc.tuple(treeKey, tie('node')), { selector: ([k]) => k, maxLength: 4, depthIdentifier: 'tree' })
    .map((entries) => new Map(entries)),
  node: fc.oneof(
    { maxDepth: 4, depthIdentifier: 'tree' },
    { arbitrary: plausibleFile, weight: 5 },
    { arbitrary: fuzzValue, weight: 1 },
    { arbitrary: tie('tree'), weight: 3 },
  ),
}));

/** Where in a torrent a fuzzed value goes. */
const fuzzTargets: ((parts: Parts, value: BValue | undefined) => void)[] = [
  ({ info }, v) => (v === undefined ? info.delete('file tree') : info.set('file tree', v)),
  ({ info }, v) => (v === undefined ? info.delete('name') : info.set('name', v)),
  ({ info }, v) => (v === undefined ? info.delete('piece length') : info.set('piece length', v)),
  ({ info }, v) => (v === undefined ? info.delete('meta version') : info.set('meta version', v)),
  ({ info }, v) => (v === undefined ? info.delete('ssl-cert') : info.set('ssl-cert', v)),
  ({ top }, v) => (v === undefined ? top.delete('url-list') : top.set('url-list', v)),
  ({ top }, v) => (v === undefined ? top.delete('piece layers') : top.set('piece layers', v)),
  ({ top }, v) => (v === undefined ? top.delete('info') : top.set('info', v)),
  ({ tree }, v) => (v === undefined ? tree.delete('b') : tree.set('b', v)),
  ({ tree }, v) => (v === undefined ? tree.delete('a') : tree.set('a', v)),
];

const encodingPosition = fc.nat({ max: SMALL.length });

describe('fuzzing parseMetainfo: valid metainfo or a MetainfoError, nothing else', () => {
  it('the fuzz seed itself is valid', () => {
    checkInvariants(parseMetainfo(SMALL));
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (input) => {
        parsesOrThrowsMetainfoError(input);
      }),
      { numRuns: 1000 },
    );
  });

  it('every truncation of a valid torrent is METAINFO_NOT_BENCODE', () => {
    for (let cut = 0; cut < SMALL.length; cut++) {
      expect(metainfoError(() => parseMetainfo(SMALL.subarray(0, cut))).code).toBe('METAINFO_NOT_BENCODE');
    }
  });

  it('single-byte replacements, insertions and deletions', () => {
    let accepted = 0;
    fc.assert(
      fc.property(encodingPosition, fc.integer({ min: 0, max: 255 }), fc.constantFrom('replace', 'insert', 'delete'), (at, byte, how) => {
        const before = SMALL.subarray(0, at);
        const after = SMALL.subarray(how === 'insert' ? at : at + 1);
        const middle = how === 'delete' ? Buffer.alloc(0) : Buffer.from([byte]);
        if (parsesOrThrowsMetainfoError(Buffer.concat([before, middle, after]))) accepted++;
      }),
      { numRuns: 2000 },
    );
    expect(accepted).toBeGreaterThan(0); // e.g. a changed byte inside a url or certificate
  });

  it('every single-byte replacement with a structural character', () => {
    for (let at = 0; at < SMALL.length; at++) {
      for (const c of 'ilde:0-') {
        const mutated = Buffer.from(SMALL);
        mutated[at] = c.charCodeAt(0);
        parsesOrThrowsMetainfoError(mutated);
      }
    }
  });

  it('random file trees in place of the real one', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fuzzTree, (tree) => {
        if (parsesOrThrowsMetainfoError(edited(SMALL, ({ info, layers }) => {
          info.set('file tree', tree);
          layers.clear();
        }))) accepted++;
      }),
      { numRuns: 1000 },
    );
    expect(accepted).toBeGreaterThan(10);
  });

  it('random values (or nothing) in any field', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: fuzzTargets.length - 1 }), fc.option(fc.oneof(fuzzValue, fuzzTree), { nil: undefined })), {
          minLength: 1,
          maxLength: 3,
        }),
        (changes) => {
          const input = edited(SMALL, (parts) => {
            for (const [target, value] of changes) {
              if (parts.top.get('info') === parts.info) (fuzzTargets[target] as (typeof fuzzTargets)[number])(parts, value);
            }
          });
          parsesOrThrowsMetainfoError(input);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('random whole documents built from metainfo-like keys', () => {
    fc.assert(
      fc.property(fuzzValue, (doc) => {
        parsesOrThrowsMetainfoError(encode(doc));
      }),
      { numRuns: 1000 },
    );
  });

  it('files of every length around a block and a piece build and parse', () => {
    for (const length of [1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, PIECE - 1, PIECE, PIECE + 1]) {
      const meta = build([hashedFile(['f'], testData(length, length))]).metainfo;
      checkInvariants(meta);
      expect(meta.pieceLayers.size).toBe(length > PIECE ? 1 : 0);
    }
  });
});
