import { hash } from 'node:crypto';
import { MerkleError } from './errors';

/**
 * BEP 52 merkle trees: SHA-256 over 16 KiB blocks, leaves padded with zero hashes up to a power
 * of two. Layers are flat Buffers of concatenated 32-byte hashes (the `piece layers` format), so a
 * layer of a million pieces is one allocation, not a million.
 *
 * Levels count up from the leaves: level 0 holds block hashes, level `height` holds the root.
 */
export const BLOCK_SIZE = 16 * 1024;
export const HASH_SIZE = 32;
/** BEP 52: "Length SHOULD NOT be greater than 512"; we refuse larger hash requests. */
export const MAX_HASH_REQUEST_LENGTH = 512;

// One-shot crypto.hash: a tree has as many inner nodes as leaves, and for 64-byte inputs the
// per-call cost of a Hash object dominates (about 1.5x slower, measured).
export function sha256(data: Uint8Array): Buffer {
  return hash('sha256', data, 'buffer');
}

const pairScratch = Buffer.allocUnsafe(2 * HASH_SIZE);

export function hashPair(left: Uint8Array, right: Uint8Array): Buffer {
  pairScratch.set(left, 0);
  pairScratch.set(right, HASH_SIZE);
  return hash('sha256', pairScratch, 'buffer');
}

const padHashes: Buffer[] = [Buffer.alloc(HASH_SIZE)];

/** Root of a subtree of 2^level zero leaves: what stands in for nodes past the end of a file. */
export function padHash(level: number): Buffer {
  while (padHashes.length <= level) {
    const below = padHashes[padHashes.length - 1] as Buffer;
    padHashes.push(hashPair(below, below));
  }
  return padHashes[level] as Buffer;
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

export function nextPowerOfTwo(n: number): number {
  return n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n));
}

export function log2(powerOfTwo: number): number {
  return Math.round(Math.log2(powerOfTwo));
}

export function hashAt(layer: Buffer, index: number): Buffer {
  return layer.subarray(index * HASH_SIZE, (index + 1) * HASH_SIZE);
}

export function hashCount(layer: Buffer): number {
  return layer.length / HASH_SIZE;
}

/** Leaf hashes (level 0) of consecutive blocks: the last block may be short. */
export function blockHashes(data: Uint8Array): Buffer {
  const count = Math.ceil(data.length / BLOCK_SIZE);
  const out = Buffer.allocUnsafe(count * HASH_SIZE);
  for (let i = 0; i < count; i++) {
    sha256(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).copy(out, i * HASH_SIZE);
  }
  return out;
}

/** One level up: pairs hashed, a missing right sibling replaced by the pad hash of `level`. */
function parentLayer(layer: Buffer, level: number): Buffer {
  const count = hashCount(layer);
  const parents = Math.ceil(count / 2);
  const out = Buffer.allocUnsafe(parents * HASH_SIZE);
  for (let i = 0; i < parents; i++) {
    const right = 2 * i + 1 < count ? hashAt(layer, 2 * i + 1) : padHash(level);
    hashPair(hashAt(layer, 2 * i), right).copy(out, i * HASH_SIZE);
  }
  return out;
}

/**
 * Root of `layer` (hashes at `level`) padded to `width` nodes. `width` must be a power of two
 * at least as large as the layer.
 */
export function merkleRoot(layer: Buffer, width: number, level = 0): Buffer {
  const count = hashCount(layer);
  if (!isPowerOfTwo(width) || width < count) {
    throw new MerkleError('MERKLE_BAD_INPUT', `width ${width} cannot hold ${count} hashes`);
  }
  if (count === 0) return padHash(level + log2(width));
  let current = layer;
  let currentLevel = level;
  for (let w = width; w > 1; w /= 2) {
    current = parentLayer(current, currentLevel);
    currentLevel++;
  }
  return Buffer.from(current);
}

/**
 * A complete tree above a bottom layer at `baseLevel`, padded to `width`. Only live nodes are
 * stored; nodes past them are pad hashes.
 */
export class MerkleTree {
  /** layers[0] is the bottom layer; the last layer holds the root alone. */
  private readonly layers: Buffer[];

  constructor(
    bottom: Buffer,
    readonly width: number,
    readonly baseLevel = 0,
  ) {
    const count = hashCount(bottom);
    if (!isPowerOfTwo(width) || width < count || count === 0) {
      throw new MerkleError('MERKLE_BAD_INPUT', `width ${width} cannot hold ${count} hashes`);
    }
    this.layers = [bottom];
    for (let w = width, level = baseLevel; w > 1; w /= 2, level++) {
      this.layers.push(parentLayer(this.layers[this.layers.length - 1] as Buffer, level));
    }
  }

  get topLevel(): number {
    return this.baseLevel + this.layers.length - 1;
  }

  get root(): Buffer {
    return hashAt(this.layers[this.layers.length - 1] as Buffer, 0);
  }

  /** Node `index` at absolute `level`; pad hash past the live nodes. */
  node(level: number, index: number): Buffer {
    const layer = this.layers[level - this.baseLevel];
    const width = this.width >> (level - this.baseLevel);
    if (!layer || index < 0 || index >= width) {
      throw new MerkleError('MERKLE_BAD_INPUT', `no node ${index} at level ${level}`);
    }
    return index < hashCount(layer) ? hashAt(layer, index) : padHash(level);
  }
}

/**
 * Incremental hasher for one file (sans-IO): feed bytes in any chunking, get `pieces root` and
 * the piece layer. Memory is one piece's leaf hashes plus 32 bytes per finished piece.
 */
export class FileMerkleHasher {
  private readonly blocksPerPiece: number;
  private readonly leaves: Buffer;
  private leafCount = 0;
  private readonly pieceHashes: Buffer[] = [];
  private readonly carry = Buffer.allocUnsafe(BLOCK_SIZE);
  private carryLength = 0;
  private length = 0;
  /** Set once a short block has been added: only the end of a file may hold one. */
  private sealed = false;

  constructor(pieceLength: number) {
    if (!isPowerOfTwo(pieceLength) || pieceLength < BLOCK_SIZE) {
      throw new MerkleError('MERKLE_BAD_INPUT', `piece length ${pieceLength} is not a power of two >= 16 KiB`);
    }
    this.blocksPerPiece = pieceLength / BLOCK_SIZE;
    this.leaves = Buffer.alloc(this.blocksPerPiece * HASH_SIZE);
  }

  update(chunk: Uint8Array): void {
    this.checkOpen();
    this.length += chunk.length;
    let offset = 0;
    if (this.carryLength > 0) {
      const take = Math.min(BLOCK_SIZE - this.carryLength, chunk.length);
      this.carry.set(chunk.subarray(0, take), this.carryLength);
      this.carryLength += take;
      offset = take;
      if (this.carryLength < BLOCK_SIZE) return;
      this.addLeaf(this.carry);
      this.carryLength = 0;
    }
    while (chunk.length - offset >= BLOCK_SIZE) {
      this.addLeaf(chunk.subarray(offset, offset + BLOCK_SIZE));
      offset += BLOCK_SIZE;
    }
    if (offset < chunk.length) {
      this.carry.set(chunk.subarray(offset), 0);
      this.carryLength = chunk.length - offset;
    }
  }

  /**
   * Adds bytes whose leaf hashes were computed elsewhere (on worker threads): `leafHashes` covers
   * `byteLength` bytes of whole blocks, except that the last block of a file may be short.
   */
  updateHashed(leafHashes: Buffer, byteLength: number): void {
    this.checkOpen();
    const count = hashCount(leafHashes);
    if (this.carryLength > 0 || !Number.isSafeInteger(count) || count !== Math.ceil(byteLength / BLOCK_SIZE)) {
      throw new MerkleError('MERKLE_BAD_INPUT', `${count} leaf hashes cannot cover ${byteLength} bytes here`);
    }
    this.length += byteLength;
    for (let i = 0; i < count; i++) this.addLeafHash(hashAt(leafHashes, i));
    this.sealed = byteLength % BLOCK_SIZE !== 0;
  }

  private checkOpen(): void {
    if (this.sealed) throw new MerkleError('MERKLE_BAD_INPUT', 'data after the short final block of a file');
  }

  private addLeaf(block: Uint8Array): void {
    this.addLeafHash(sha256(block));
  }

  private addLeafHash(hash: Buffer): void {
    hash.copy(this.leaves, this.leafCount * HASH_SIZE);
    this.leafCount++;
    if (this.leafCount === this.blocksPerPiece) {
      this.pieceHashes.push(merkleRoot(this.leaves, this.blocksPerPiece));
      this.leafCount = 0;
    }
  }

  /** Result for the bytes fed so far; `piecesRoot` is absent for an empty file. */
  digest(): { length: number; piecesRoot?: Buffer; pieceLayer?: Buffer } {
    if (this.carryLength > 0) {
      this.addLeaf(this.carry.subarray(0, this.carryLength));
      this.carryLength = 0;
    }
    const length = this.length;
    if (length === 0) return { length };
    const leaves = this.leaves.subarray(0, this.leafCount * HASH_SIZE);
    if (this.pieceHashes.length === 0) {
      return { length, piecesRoot: merkleRoot(leaves, nextPowerOfTwo(this.leafCount)) };
    }
    if (this.leafCount > 0) {
      this.pieceHashes.push(merkleRoot(leaves, this.blocksPerPiece));
      this.leafCount = 0;
    }
    const pieceLayer = Buffer.concat(this.pieceHashes);
    if (this.pieceHashes.length === 1) return { length, piecesRoot: pieceLayer };
    const piecesRoot = merkleRoot(pieceLayer, nextPowerOfTwo(this.pieceHashes.length), log2(this.blocksPerPiece));
    return { length, piecesRoot, pieceLayer };
  }
}

/** A BEP 52 `hash request` (and `hashes` / `hash reject`) header. */
export interface HashRequest {
  piecesRoot: Buffer;
  baseLayer: number;
  index: number;
  length: number;
  proofLayers: number;
}

/**
 * The merkle tree of one file as a package describes it: the piece layer (or, for a file of one
 * piece, just the root) is trusted; leaf hashes below the piece layer come from data or from a
 * peer's `hashes` message and are checked against it.
 */
export class FileHashTree {
  readonly numBlocks: number;
  readonly numPieces: number;
  /** Level of the root. */
  readonly height: number;
  /** Level whose nodes each cover one piece (the root for a file of one piece). */
  readonly pieceLevel: number;
  private readonly upper: MerkleTree;

  constructor(
    readonly fileLength: number,
    readonly pieceLength: number,
    readonly piecesRoot: Buffer,
    pieceLayer?: Buffer,
  ) {
    if (fileLength <= 0 || !isPowerOfTwo(pieceLength) || pieceLength < BLOCK_SIZE) {
      throw new MerkleError('MERKLE_BAD_INPUT', `no merkle tree for length ${fileLength}, piece length ${pieceLength}`);
    }
    this.numBlocks = Math.ceil(fileLength / BLOCK_SIZE);
    this.numPieces = Math.ceil(fileLength / pieceLength);
    this.height = log2(nextPowerOfTwo(this.numBlocks));
    this.pieceLevel = Math.min(log2(pieceLength / BLOCK_SIZE), this.height);
    if (this.numPieces === 1) {
      this.upper = new MerkleTree(piecesRoot, 1, this.height);
    } else {
      if (!pieceLayer || pieceLayer.length !== this.numPieces * HASH_SIZE) {
        throw new MerkleError('MERKLE_BAD_INPUT', `piece layer must hold ${this.numPieces} hashes`);
      }
      this.upper = new MerkleTree(pieceLayer, nextPowerOfTwo(this.numPieces), this.pieceLevel);
      if (!this.upper.root.equals(piecesRoot)) {
        throw new MerkleError('MERKLE_PROOF_MISMATCH', 'piece layer does not hash to the pieces root');
      }
    }
  }

  /** Leaves under one piece node: the width `pieceHash` pads a piece's blocks to. */
  get leavesPerPiece(): number {
    return 2 ** this.pieceLevel;
  }

  pieceHash(piece: number): Buffer {
    return this.upper.node(this.pieceLevel, piece);
  }

  /** Byte length of `piece` (the last piece of a file may be short). */
  pieceSize(piece: number): number {
    return Math.min(this.pieceLength, this.fileLength - piece * this.pieceLength);
  }

  /** Hash of a piece's data as the piece layer holds it. */
  hashPiece(data: Uint8Array): Buffer {
    return merkleRoot(blockHashes(data), this.leavesPerPiece);
  }

  verifyPiece(piece: number, data: Uint8Array): boolean {
    if (piece < 0 || piece >= this.numPieces || data.length !== this.pieceSize(piece)) return false;
    return this.hashPiece(data).equals(this.pieceHash(piece));
  }

  /** Checks a hash request against this tree's shape; throws MERKLE_BAD_REQUEST. */
  checkRequest(req: HashRequest): void {
    const bad = (why: string): never => {
      throw new MerkleError('MERKLE_BAD_REQUEST', `hash request ${JSON.stringify(describe(req))}: ${why}`);
    };
    if (!req.piecesRoot.equals(this.piecesRoot)) bad('pieces root is not this file');
    for (const field of ['baseLayer', 'index', 'length', 'proofLayers'] as const) {
      if (!Number.isSafeInteger(req[field]) || req[field] < 0) bad(`${field} must be a non-negative integer`);
    }
    if (req.baseLayer > this.height) bad(`base layer above the root (height ${this.height})`);
    const layerWidth = 2 ** (this.height - req.baseLayer);
    if (!isPowerOfTwo(req.length) || req.length < 2) bad('length must be a power of two >= 2');
    if (req.length > MAX_HASH_REQUEST_LENGTH) bad(`length above ${MAX_HASH_REQUEST_LENGTH}`);
    if (req.index % req.length !== 0) bad('index is not a multiple of length');
    if (req.index + req.length > layerWidth) bad('range runs past the end of the layer');
    // The last proof layer adds the sibling of the node at level baseLayer + proofLayers: the root
    // has none (libtorrent: proof_layers < num_layers - base).
    if (req.baseLayer + req.proofLayers >= this.height) bad('proof layers reach the root or above');
  }

  /**
   * Serving side: the `hashes` payload for a request — the base hashes, then one uncle per proof
   * layer above the subtree they span (the first log2(length)-1 proof layers are implied).
   * `leavesOf(piece)` supplies the leaf hashes of a piece the request reaches below the piece
   * layer (the server computes them from data it holds).
   */
  hashesFor(req: HashRequest, leavesOf?: (piece: number) => Buffer): Buffer[] {
    this.checkRequest(req);
    const subtrees = new Map<number, MerkleTree>();
    const node = (level: number, index: number): Buffer => {
      if (level >= this.pieceLevel) return this.upper.node(level, index);
      const piece = Math.floor((index * 2 ** level) / this.leavesPerPiece);
      if (piece >= this.numPieces) return padHash(level);
      let subtree = subtrees.get(piece);
      if (!subtree) {
        if (!leavesOf) throw new MerkleError('MERKLE_BAD_REQUEST', 'request needs leaf hashes the server lacks');
        subtree = new MerkleTree(leavesOf(piece), this.leavesPerPiece, 0);
        if (!subtree.root.equals(this.pieceHash(piece))) {
          throw new MerkleError('MERKLE_PROOF_MISMATCH', `leaf hashes of piece ${piece} do not match its piece hash`);
        }
        subtrees.set(piece, subtree);
      }
      return subtree.node(level, index - piece * (this.leavesPerPiece >> level));
    };
    const out: Buffer[] = [];
    for (let i = 0; i < req.length; i++) out.push(node(req.baseLayer, req.index + i));
    for (const { level, index } of uncleNodes(req)) out.push(node(level, index));
    return out;
  }

  /**
   * Receiving side: checks a `hashes` payload against the trusted part of the tree (the piece
   * layer or the root) and returns the base hashes, now trusted. Throws MERKLE_PROOF_MISMATCH
   * when they do not prove out, MERKLE_BAD_REQUEST when the proof stops below a trusted node.
   */
  verifyHashes(req: HashRequest, hashes: readonly Buffer[]): Buffer[] {
    this.checkRequest(req);
    const uncles = uncleNodes(req);
    if (hashes.length !== req.length + uncles.length || hashes.some((h) => h.length !== HASH_SIZE)) {
      throw new MerkleError(
        'MERKLE_BAD_INPUT',
        `expected ${req.length + uncles.length} hashes of ${HASH_SIZE} bytes, got ${hashes.length}`,
      );
    }
    const base = hashes.slice(0, req.length);
    let node = merkleRoot(Buffer.concat(base), req.length, req.baseLayer);
    let index = req.index / req.length;
    let level = req.baseLayer + log2(req.length);
    for (let i = 0; i < uncles.length; i++) {
      const uncle = hashes[req.length + i] as Buffer;
      node = index % 2 === 0 ? hashPair(node, uncle) : hashPair(uncle, node);
      index = Math.floor(index / 2);
      level++;
    }
    if (level < this.pieceLevel) {
      throw new MerkleError('MERKLE_BAD_REQUEST', `proof ends at level ${level}, below the trusted piece layer`);
    }
    if (!node.equals(this.upper.node(level, index))) {
      throw new MerkleError('MERKLE_PROOF_MISMATCH', `hashes do not prove out to the trusted node at level ${level}`);
    }
    return base;
  }
}

/** The nodes whose siblings a `hashes` message carries as proof, lowest first. */
function uncleNodes(req: HashRequest): { level: number; index: number }[] {
  const implied = Math.max(0, log2(req.length) - 1);
  const out: { level: number; index: number }[] = [];
  for (let i = implied; i < req.proofLayers; i++) {
    const level = req.baseLayer + i + 1;
    const ancestor = Math.floor(req.index / 2 ** (i + 1));
    out.push({ level, index: ancestor ^ 1 });
  }
  return out;
}

function describe(req: HashRequest): object {
  return { ...req, piecesRoot: req.piecesRoot.toString('hex') };
}

/** Checks one block against a trusted leaf hash (e.g. from `verifyHashes`). */
export function verifyBlock(block: Uint8Array, leafHash: Uint8Array): boolean {
  return block.length > 0 && block.length <= BLOCK_SIZE && sha256(block).equals(leafHash);
}
