import { type BDict, type BValue, type DecodeLimits, decode, encode, utf8Key } from './bencode';
import { BencodeError, MetainfoError } from './errors';
import { BLOCK_SIZE, HASH_SIZE, isPowerOfTwo, log2, merkleRoot, nextPowerOfTwo, sha256 } from './merkle';
import { MAX_PATH_DEPTH, SiblingNames, checkComponent, decodeComponent } from './paths';

/** Largest piece length we accept: far above any sane choice, low enough to bound a piece buffer. */
export const MAX_PIECE_LENGTH = 256 * 1024 * 1024;

/**
 * Decoder limits for untrusted metainfo; piece layers of a 50 GB package at 64 KiB pieces fit.
 * A path of MAX_PATH_DEPTH components nests MAX_PATH_DEPTH + 4 deep (top, info, file tree, the
 * file entry); one level more lets the file-tree walker report a too-deep path as an unsafe path.
 */
export const DEFAULT_METAINFO_LIMITS: DecodeLimits = {
  maxInputLength: 64 * 1024 * 1024,
  maxStringLength: 64 * 1024 * 1024,
  maxDepth: MAX_PATH_DEPTH + 5,
};

export interface PackageFile {
  /** Path components inside the package, in file-tree order. */
  path: string[];
  length: number;
  /** Merkle root of the file; absent for an empty file. */
  piecesRoot?: Buffer;
  executable: boolean;
  /** First piece of the file in the package's piece space (files are piece-aligned in v2). */
  firstPiece: number;
  numPieces: number;
}

export interface Metainfo {
  /** SHA-256 of the bencoded info dictionary: the package's identity. */
  infoHash: Buffer;
  name: string;
  pieceLength: number;
  files: PackageFile[];
  totalLength: number;
  numPieces: number;
  /**
   * True when the file tree is one file at top level: it is stored as `<dest>/<file>`, otherwise
   * as `<dest>/<name>/<path>` (as libtorrent lays them out).
   */
  singleFile: boolean;
  /** Piece layer per pieces root (binary-string key), for files longer than one piece. */
  pieceLayers: ReadonlyMap<string, Buffer>;
  /** Fleet CA certificate (PEM) the package is bound to, from `info.ssl-cert`. */
  sslCert?: string;
  /** BEP 19 webseed URLs. */
  urlList: string[];
}

/** The 20-byte form of an info-hash used on the wire and at trackers (BEP 52). */
export function truncatedInfoHash(infoHash: Buffer): Buffer {
  return infoHash.subarray(0, 20);
}

/** Relative path of a file on disk below the download folder. */
export function diskPath(meta: Pick<Metainfo, 'name' | 'singleFile'>, file: Pick<PackageFile, 'path'>): string[] {
  return meta.singleFile ? file.path : [meta.name, ...file.path];
}

/** The piece layer entry of a file, or undefined for files of one piece or none. */
export function pieceLayerOf(meta: Metainfo, file: PackageFile): Buffer | undefined {
  return file.piecesRoot ? meta.pieceLayers.get(file.piecesRoot.toString('latin1')) : undefined;
}

/** Parses and fully validates untrusted metainfo (BEP 52 v2-only plus Shoal's path rules). */
export function parseMetainfo(input: Uint8Array, limits: Partial<DecodeLimits> = {}): Metainfo {
  let root: BValue;
  try {
    root = decode(input, { ...DEFAULT_METAINFO_LIMITS, ...limits });
  } catch (err) {
    if (err instanceof BencodeError) {
      const code = err.code === 'BENCODE_INPUT_TOO_LARGE' ? 'METAINFO_TOO_LARGE' : 'METAINFO_NOT_BENCODE';
      throw new MetainfoError(code, `not valid bencode: ${err.message}`, undefined, { cause: err });
    }
    throw err;
  }
  const top = asDict(root, 'metainfo');
  const info = asDict(required(top, 'info', 'metainfo'), 'info');

  // BEP 52: check the version before anything else, so newer formats get the right message.
  const metaVersion = asInt(required(info, 'meta version', 'info'), 'info.meta version');
  if (metaVersion !== 2) {
    throw new MetainfoError('METAINFO_UNSUPPORTED_VERSION', `meta version ${metaVersion} is not supported (want 2)`, 'info.meta version');
  }
  const pieceLength = asInt(required(info, 'piece length', 'info'), 'info.piece length');
  if (!isPowerOfTwo(pieceLength) || pieceLength < BLOCK_SIZE || pieceLength > MAX_PIECE_LENGTH) {
    throw new MetainfoError(
      'METAINFO_BAD_PIECE_LENGTH',
      `${pieceLength} is not a power of two between ${BLOCK_SIZE} and ${MAX_PIECE_LENGTH}`,
      'info.piece length',
    );
  }
  const name = decodeComponent(asBytes(required(info, 'name', 'info'), 'info.name'), 'info.name');
  const tree = asDict(required(info, 'file tree', 'info'), 'info.file tree');
  const files = walkFileTree(tree, pieceLength);
  if (files.length === 0) throw new MetainfoError('METAINFO_BAD_FILE_TREE', 'describes no files', 'info.file tree');
  const singleFile = files.length === 1 && (files[0] as PackageFile).path.length === 1;

  const pieceLayers = checkPieceLayers(
    asDict(required(top, 'piece layers', 'metainfo'), 'piece layers'),
    files,
    pieceLength,
  );
  const sslCertValue = info.get('ssl-cert');
  const sslCert = sslCertValue === undefined ? undefined : asText(sslCertValue, 'info.ssl-cert');
  const urlList = parseUrlList(top.get('url-list'));

  const last = files.reduce((end, f) => Math.max(end, f.firstPiece + f.numPieces), 0);
  return {
    infoHash: sha256(encode(info)),
    name,
    pieceLength,
    files,
    totalLength: files.reduce((sum, f) => sum + f.length, 0),
    numPieces: last,
    singleFile,
    pieceLayers,
    ...(sslCert === undefined ? {} : { sslCert }),
    urlList,
  };
}

function walkFileTree(tree: BDict, pieceLength: number): PackageFile[] {
  if (tree.has('')) {
    throw new MetainfoError('METAINFO_BAD_FILE_TREE', 'the root of the file tree must not be a file', 'info.file tree');
  }
  const files: PackageFile[] = [];
  let nextPiece = 0;
  const visit = (dir: BDict, prefix: string[]): void => {
    if (dir.size === 0) {
      throw new MetainfoError('METAINFO_BAD_FILE_TREE', 'empty directory', fieldOf(prefix));
    }
    if (prefix.length >= MAX_PATH_DEPTH) {
      throw new MetainfoError('METAINFO_UNSAFE_PATH', `paths deeper than ${MAX_PATH_DEPTH} levels`, fieldOf(prefix));
    }
    const siblings = new SiblingNames();
    for (const [rawKey, child] of dir) {
      const where = fieldOf(prefix);
      const component = decodeComponent(Buffer.from(rawKey, 'latin1'), where);
      siblings.add(component, where);
      const path = [...prefix, component];
      const node = asDict(child, fieldOf(path));
      const entry = node.get('');
      if (entry === undefined) {
        visit(node, path);
        continue;
      }
      if (node.size !== 1) {
        throw new MetainfoError('METAINFO_BAD_FILE_TREE', 'a file entry must have no siblings', fieldOf(path));
      }
      const file = parseFileEntry(asDict(entry, fieldOf(path)), path, pieceLength, nextPiece);
      nextPiece += file.numPieces;
      files.push(file);
    }
  };
  visit(tree, []);
  return files;
}

function parseFileEntry(entry: BDict, path: string[], pieceLength: number, firstPiece: number): PackageFile {
  const where = fieldOf(path);
  const length = asInt(required(entry, 'length', where), `${where}.length`);
  if (length < 0) throw new MetainfoError('METAINFO_BAD_FILE_TREE', 'negative length', `${where}.length`);
  const rootValue = entry.get('pieces root');
  let piecesRoot: Buffer | undefined;
  if (length > 0) {
    if (rootValue === undefined) {
      throw new MetainfoError('METAINFO_MISSING_FIELD', 'non-empty file without pieces root', `${where}.pieces root`);
    }
    piecesRoot = asBytes(rootValue, `${where}.pieces root`);
    if (piecesRoot.length !== HASH_SIZE) {
      throw new MetainfoError('METAINFO_BAD_PIECES_ROOT', `must be ${HASH_SIZE} bytes, not ${piecesRoot.length}`, `${where}.pieces root`);
    }
  } else if (rootValue !== undefined) {
    throw new MetainfoError('METAINFO_BAD_PIECES_ROOT', 'an empty file has no pieces root', `${where}.pieces root`);
  }
  const attrValue = entry.get('attr');
  const attr = attrValue === undefined ? '' : asBytes(attrValue, `${where}.attr`).toString('latin1');
  // 'l' (symlink) could point outside the package and 'p' (pad) has no place in v2-only trees.
  const unsupported = attr.replace(/[xh]/g, '');
  if (unsupported.length > 0) {
    throw new MetainfoError('METAINFO_BAD_FILE_TREE', `unsupported file attributes ${JSON.stringify(unsupported)}`, `${where}.attr`);
  }
  return {
    path,
    length,
    ...(piecesRoot ? { piecesRoot } : {}),
    executable: attr.includes('x'),
    firstPiece,
    numPieces: Math.ceil(length / pieceLength),
  };
}

function checkPieceLayers(layers: BDict, files: PackageFile[], pieceLength: number): Map<string, Buffer> {
  const needed = new Map<string, PackageFile>();
  for (const file of files) {
    if (file.piecesRoot && file.length > pieceLength) needed.set(file.piecesRoot.toString('latin1'), file);
  }
  const out = new Map<string, Buffer>();
  for (const [key, value] of layers) {
    const where = `piece layers.${Buffer.from(key, 'latin1').toString('hex')}`;
    const file = needed.get(key);
    if (!file) {
      throw new MetainfoError('METAINFO_BAD_PIECE_LAYER', 'no file longer than one piece has this pieces root', where);
    }
    const layer = asBytes(value, where);
    if (layer.length !== file.numPieces * HASH_SIZE) {
      throw new MetainfoError(
        'METAINFO_BAD_PIECE_LAYER',
        `holds ${layer.length} bytes, ${file.path.join('/')} needs ${file.numPieces} hashes of ${HASH_SIZE}`,
        where,
      );
    }
    const root = merkleRoot(layer, nextPowerOfTwo(file.numPieces), log2(pieceLength / BLOCK_SIZE));
    if (!root.equals(file.piecesRoot as Buffer)) {
      throw new MetainfoError('METAINFO_BAD_PIECE_LAYER', `does not hash to the pieces root of ${file.path.join('/')}`, where);
    }
    out.set(key, layer);
  }
  for (const [key, file] of needed) {
    if (!out.has(key)) {
      throw new MetainfoError('METAINFO_BAD_PIECE_LAYER', `missing for ${file.path.join('/')}`, 'piece layers');
    }
  }
  return out;
}

function parseUrlList(value: BValue | undefined): string[] {
  if (value === undefined) return [];
  const items = Array.isArray(value) ? value : [value];
  return items.map((item, i) => {
    const where = Array.isArray(value) ? `url-list[${i}]` : 'url-list';
    const text = asText(item, where);
    checkWebseedUrl(text, where);
    return text;
  });
}

export function checkWebseedUrl(text: string, where: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new MetainfoError('METAINFO_BAD_URL', `${JSON.stringify(text)} is not a URL`, where);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new MetainfoError('METAINFO_BAD_URL', `${JSON.stringify(text)} is not http(s)`, where);
  }
}

function fieldOf(path: string[]): string {
  return path.length === 0 ? 'info.file tree' : `info.file tree/${path.join('/')}`;
}

function required(dict: BDict, key: string, where: string): BValue {
  const value = dict.get(key);
  if (value === undefined) throw new MetainfoError('METAINFO_MISSING_FIELD', `missing "${key}"`, where);
  return value;
}

function asDict(value: BValue, where: string): BDict {
  if (!(value instanceof Map)) throw new MetainfoError('METAINFO_WRONG_TYPE', 'expected a dictionary', where);
  return value;
}

function asInt(value: BValue, where: string): number {
  if (typeof value !== 'number') throw new MetainfoError('METAINFO_WRONG_TYPE', 'expected an integer', where);
  return value;
}

function asBytes(value: BValue, where: string): Buffer {
  if (!Buffer.isBuffer(value)) throw new MetainfoError('METAINFO_WRONG_TYPE', 'expected a string', where);
  return value;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function asText(value: BValue, where: string): string {
  try {
    return utf8.decode(asBytes(value, where));
  } catch (err) {
    if (err instanceof MetainfoError) throw err;
    throw new MetainfoError('METAINFO_WRONG_TYPE', 'expected UTF-8 text', where);
  }
}

export interface PackageFileInput {
  /** Path inside the package; a single-file package has one component, its file name. */
  path: string[];
  length: number;
  piecesRoot?: Buffer;
  /** Required for files longer than one piece. */
  pieceLayer?: Buffer;
  executable?: boolean;
}

export interface BuildMetainfoOptions {
  name: string;
  pieceLength: number;
  files: PackageFileInput[];
  sslCert?: string;
  urlList?: string[];
  createdBy?: string;
  /** Unix seconds; left out when absent, which keeps output reproducible. */
  creationDate?: number;
}

/**
 * Encodes v2-only metainfo for hashed files and parses the result back, so nothing invalid
 * (unsafe names, collisions, inconsistent layers) can ever be produced.
 */
export function buildMetainfo(options: BuildMetainfoOptions): { bytes: Buffer; metainfo: Metainfo } {
  checkComponent(options.name, 'name');
  const fileTree = new Map<string, unknown>();
  const pieceLayers = new Map<string, Buffer>();
  for (const file of options.files) {
    if (file.path.length === 0 || file.path.length > MAX_PATH_DEPTH) {
      throw new MetainfoError('METAINFO_UNSAFE_PATH', `a path needs 1 to ${MAX_PATH_DEPTH} components`, file.path.join('/'));
    }
    let dir = fileTree;
    file.path.forEach((component, depth) => {
      checkComponent(component, file.path.join('/'));
      const key = utf8Key(component);
      if (depth === file.path.length - 1) {
        if (dir.has(key)) {
          throw new MetainfoError('METAINFO_PATH_COLLISION', 'listed twice', file.path.join('/'));
        }
        const entry = new Map<string, unknown>([['length', file.length]]);
        if (file.piecesRoot) entry.set('pieces root', file.piecesRoot);
        if (file.executable) entry.set('attr', 'x');
        dir.set(key, new Map([['', entry]]));
      } else {
        let next = dir.get(key);
        if (next === undefined) {
          next = new Map<string, unknown>();
          dir.set(key, next);
        }
        if (!(next instanceof Map) || next.has('')) {
          throw new MetainfoError('METAINFO_PATH_COLLISION', 'is both a file and a directory', file.path.slice(0, depth + 1).join('/'));
        }
        dir = next as Map<string, unknown>;
      }
    });
    if (file.piecesRoot && file.length > options.pieceLength && file.pieceLayer) {
      pieceLayers.set(file.piecesRoot.toString('latin1'), file.pieceLayer);
    }
  }
  const info = new Map<string, unknown>([
    ['file tree', fileTree],
    ['meta version', 2],
    ['name', options.name],
    ['piece length', options.pieceLength],
  ]);
  if (options.sslCert !== undefined) info.set('ssl-cert', options.sslCert);
  const top = new Map<string, unknown>([
    ['info', info],
    ['piece layers', pieceLayers],
  ]);
  for (const [i, url] of (options.urlList ?? []).entries()) checkWebseedUrl(url, `url-list[${i}]`);
  if (options.urlList && options.urlList.length > 0) top.set('url-list', options.urlList);
  if (options.createdBy !== undefined) top.set('created by', options.createdBy);
  if (options.creationDate !== undefined) top.set('creation date', options.creationDate);
  const bytes = encode(top as Parameters<typeof encode>[0]);
  return { bytes, metainfo: parseMetainfo(bytes, { maxInputLength: Math.max(bytes.length, DEFAULT_METAINFO_LIMITS.maxInputLength), maxStringLength: Math.max(bytes.length, DEFAULT_METAINFO_LIMITS.maxStringLength) }) };
}

/** The documented default piece length: about 1,000-2,000 pieces, between 16 KiB and 16 MiB. */
export function defaultPieceLength(totalLength: number): number {
  const MIN = BLOCK_SIZE;
  const MAX = 16 * 1024 * 1024;
  const TARGET_PIECES = 2048;
  return Math.min(MAX, Math.max(MIN, nextPowerOfTwo(Math.ceil(totalLength / TARGET_PIECES))));
}
