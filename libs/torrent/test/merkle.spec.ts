import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { MerkleError, type MerkleErrorCode } from '../src/errors';
import {
  BLOCK_SIZE,
  FileHashTree,
  FileMerkleHasher,
  HASH_SIZE,
  type HashRequest,
  MAX_HASH_REQUEST_LENGTH,
  MerkleTree,
  blockHashes,
  merkleRoot,
  padHash,
  verifyBlock,
} from '../src/merkle';

// ---------------------------------------------------------------------------------------------
// helpers: an independent reference implementation of BEP 52 trees, built the obvious way

const KiB = 1024;
const ZERO_HASH: Buffer = Buffer.alloc(32);

const sha = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
function testData(length: number, seed = 1): Buffer {
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

/** Pad hash by definition: zero leaf, then each level hashes two copies of the one below. */
function referencePad(level: number): Buffer {
  let h = ZERO_HASH;
  for (let i = 0; i < level; i++) h = sha(h, h);
  return h;
}

const pow2AtLeast = (n: number): number => {
  let w = 1;
  while (w < n) w *= 2;
  return w;
};

/** All layers of a tree over `bottom` padded to `width` with `pad`: layers[0] = padded bottom. */
function referenceLayers(bottom: Buffer[], width: number, pad: Buffer): Buffer[][] {
  const layers: Buffer[][] = [[...bottom, ...Array<Buffer>(width - bottom.length).fill(pad)]];
  for (;;) {
    const below = layers[layers.length - 1] as Buffer[];
    if (below.length === 1) return layers;
    const above: Buffer[] = [];
    for (let i = 0; i < below.length; i += 2) above.push(sha(below[i] as Buffer, below[i + 1] as Buffer));
    layers.push(above);
  }
}

function referenceRoot(bottom: Buffer[], width: number, level = 0): Buffer {
  const layers = referenceLayers(bottom, width, referencePad(level));
  return (layers[layers.length - 1] as Buffer[])[0] as Buffer;
}

function referenceLeaves(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += BLOCK_SIZE) out.push(sha(data.subarray(at, at + BLOCK_SIZE)));
  return out;
}

/** The full tree of a file (BEP 52: leaves past the end are zero hashes). */
function referenceFileTree(data: Buffer): Buffer[][] {
  const leaves = referenceLeaves(data);
  return referenceLayers(leaves, pow2AtLeast(leaves.length), ZERO_HASH);
}

/** pieces root and piece layer (only for files longer than one piece) of a file. */
function referenceFile(data: Buffer, pieceLength: number): { piecesRoot?: Buffer; pieceLayer?: Buffer } {
  if (data.length === 0) return {};
  const layers = referenceFileTree(data);
  const piecesRoot = (layers[layers.length - 1] as Buffer[])[0] as Buffer;
  if (data.length <= pieceLength) return { piecesRoot };
  const numPieces = Math.ceil(data.length / pieceLength);
  const pieceLevel = Math.log2(pieceLength / BLOCK_SIZE);
  return { piecesRoot, pieceLayer: Buffer.concat((layers[pieceLevel] as Buffer[]).slice(0, numPieces)) };
}

const hashList = (layer: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  for (let at = 0; at < layer.length; at += HASH_SIZE) out.push(layer.subarray(at, at + HASH_SIZE));
  return out;
};

function hashInChunks(data: Buffer, pieceLength: number, cuts: number[]) {
  const hasher = new FileMerkleHasher(pieceLength);
  let at = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    hasher.update(data.subarray(at, cut));
    at = cut;
  }
  hasher.update(data.subarray(at));
  return hasher.digest();
}

function merkleError(run: () => unknown): MerkleError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(MerkleError);
    return err as MerkleError;
  }
  throw new Error('expected a MerkleError, but nothing was thrown');
}

const expectMerkleError = (run: () => unknown, code: MerkleErrorCode): void => {
  expect(merkleError(run).code).toBe(code);
};

const flipBit = (data: Buffer, at: number, bit = 0): Buffer => {
  const copy = Buffer.from(data);
  copy[at] = (copy[at] as number) ^ (1 << bit);
  return copy;
};

/** A file and its tree, as a seeder (has the data) and a leecher (has only the metainfo) see it. */
function fileFixture(length: number, pieceLength: number, seed = 7) {
  const data = testData(length, seed);
  const digest = new FileMerkleHasher(pieceLength);
  digest.update(data);
  const { piecesRoot, pieceLayer } = digest.digest();
  if (!piecesRoot) throw new Error('fixture needs a non-empty file');
  const tree = new FileHashTree(length, pieceLength, piecesRoot, pieceLayer);
  const piece = (i: number): Buffer => data.subarray(i * pieceLength, (i + 1) * pieceLength);
  const leavesOf = (i: number): Buffer => blockHashes(piece(i));
  return { data, piecesRoot, pieceLayer, tree, piece, leavesOf, reference: referenceFileTree(data) };
}

/**
 * The `hashes` payload BEP 52 / libtorrent prescribe, computed from the reference tree:
 * `length` base hashes, then for i in 0..proofLayers-1 go up one layer and, once
 * i >= log2(length) - 1 (the layers the base hashes already imply), add the ancestor's sibling.
 */
function referencePayload(reference: Buffer[][], req: Omit<HashRequest, 'piecesRoot'>): Buffer[] {
  const base = reference[req.baseLayer] as Buffer[];
  const out = base.slice(req.index, req.index + req.length);
  const baseTreeLayers = Math.log2(req.length) - 1;
  let index = req.index;
  for (let i = 0; i < req.proofLayers; i++) {
    index >>= 1;
    const level = req.baseLayer + i + 1;
    if (i >= baseTreeLayers) out.push((reference[level] as Buffer[])[index ^ 1] as Buffer);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('padHash', () => {
  it('is 32 zero bytes at level 0', () => {
    expect(padHash(0)).toEqual(Buffer.alloc(32));
  });

  it('is H(pad(n) || pad(n)) one level up, for every level a 50 GB file needs and more', () => {
    for (let n = 0; n < 40; n++) {
      expect(padHash(n + 1)).toEqual(sha(padHash(n), padHash(n)));
      expect(padHash(n + 1)).toEqual(referencePad(n + 1));
    }
  });

  it('gives the same answer whether levels are asked in order or not', () => {
    expect(padHash(45)).toEqual(referencePad(45));
    expect(padHash(3)).toEqual(referencePad(3));
  });
});

describe('blockHashes', () => {
  it.each([0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 99])('of %d bytes', (length) => {
    const data = testData(length);
    expect(hashList(blockHashes(data))).toEqual(referenceLeaves(data));
  });
});

describe('merkleRoot', () => {
  it('matches the reference for 0..40 leaves at the smallest width and wider ones', () => {
    for (let count = 0; count <= 40; count++) {
      const leaves = Array.from({ length: count }, (_, i) => sha(Buffer.from([i, count])));
      for (const width of [pow2AtLeast(count), 2 * pow2AtLeast(count), 8 * pow2AtLeast(count)]) {
        expect(merkleRoot(Buffer.concat(leaves), width)).toEqual(referenceRoot(leaves, width));
      }
    }
  });

  it('pads with the pad hash of the layer it starts at', () => {
    for (const level of [1, 2, 6]) {
      for (const count of [1, 2, 3, 5, 9]) {
        const nodes = Array.from({ length: count }, (_, i) => sha(Buffer.from([level, i])));
        const width = pow2AtLeast(count) * 2;
        expect(merkleRoot(Buffer.concat(nodes), width, level)).toEqual(referenceRoot(nodes, width, level));
      }
    }
  });

  it('of no hashes is the pad hash of the root level', () => {
    expect(merkleRoot(Buffer.alloc(0), 8)).toEqual(referencePad(3));
    expect(merkleRoot(Buffer.alloc(0), 1, 4)).toEqual(referencePad(4));
  });

  it('of one hash at width 1 is that hash (as a copy)', () => {
    const h = sha(Buffer.from('x'));
    const root = merkleRoot(h, 1);
    expect(root).toEqual(h);
    root[0] = (root[0] as number) ^ 1;
    expect(h).toEqual(sha(Buffer.from('x')));
  });

  it.each([
    ['width not a power of two', 3, 2],
    ['width smaller than the layer', 2, 3],
    ['width 0', 0, 0],
  ])('rejects %s with MERKLE_BAD_INPUT', (_name, width, count) => {
    expectMerkleError(() => merkleRoot(Buffer.alloc(count * HASH_SIZE), width), 'MERKLE_BAD_INPUT');
  });
});

describe('MerkleTree', () => {
  it('stores the root and answers pad hashes past the live nodes', () => {
    const leaves = [sha(Buffer.from('a')), sha(Buffer.from('b')), sha(Buffer.from('c'))];
    const tree = new MerkleTree(Buffer.concat(leaves), 8, 0);
    const reference = referenceLayers(leaves, 8, ZERO_HASH);
    expect(tree.root).toEqual(referenceRoot(leaves, 8));
    expect(tree.topLevel).toBe(3);
    for (let level = 0; level <= 3; level++) {
      (reference[level] as Buffer[]).forEach((node, index) => expect(tree.node(level, index)).toEqual(node));
    }
    expectMerkleError(() => tree.node(0, 8), 'MERKLE_BAD_INPUT');
    expectMerkleError(() => tree.node(4, 0), 'MERKLE_BAD_INPUT');
    expectMerkleError(() => tree.node(0, -1), 'MERKLE_BAD_INPUT');
  });

  it('rejects an empty bottom layer and a width too small', () => {
    expectMerkleError(() => new MerkleTree(Buffer.alloc(0), 4), 'MERKLE_BAD_INPUT');
    expectMerkleError(() => new MerkleTree(Buffer.alloc(5 * HASH_SIZE), 4), 'MERKLE_BAD_INPUT');
  });
});

describe('FileMerkleHasher', () => {
  describe.each([16 * KiB, 64 * KiB])('piece length %d', (pieceLength) => {
    const lengths = [
      0,
      1,
      BLOCK_SIZE - 1,
      BLOCK_SIZE,
      BLOCK_SIZE + 1,
      pieceLength - 1,
      pieceLength,
      pieceLength + 1,
      2 * pieceLength,
      3 * pieceLength + 5,
      4 * pieceLength,
      5 * pieceLength - 1,
    ];

    it.each([...new Set(lengths)])('%d bytes in one update match the reference', (length) => {
      const data = testData(length, length + 1);
      const got = hashInChunks(data, pieceLength, []);
      const want = referenceFile(data, pieceLength);
      expect(got.length).toBe(length);
      expect(got.piecesRoot).toEqual(want.piecesRoot);
      expect(got.pieceLayer).toEqual(want.pieceLayer);
      // piece layer present exactly for files longer than one piece
      expect(got.pieceLayer !== undefined).toBe(length > pieceLength);
      expect(got.piecesRoot !== undefined).toBe(length > 0);
      if (got.pieceLayer) {
        const numPieces = Math.ceil(length / pieceLength);
        expect(got.pieceLayer.length).toBe(numPieces * HASH_SIZE);
        const pieceLevel = Math.log2(pieceLength / BLOCK_SIZE);
        // pieces root = root of the piece layer padded with padHash(pieceLevel)
        expect(got.piecesRoot).toEqual(merkleRoot(got.pieceLayer, pow2AtLeast(numPieces), pieceLevel));
        expect(got.piecesRoot).toEqual(referenceRoot(hashList(got.pieceLayer), pow2AtLeast(numPieces), pieceLevel));
      }
    });

    it('gives the same digest however the input is chunked', () => {
      const data = testData(5 * pieceLength + 123, 99);
      const whole = new Map<number, ReturnType<typeof hashInChunks>>();
      const digestOf = (length: number) => {
        let d = whole.get(length);
        if (!d) {
          d = hashInChunks(data.subarray(0, length), pieceLength, []);
          whole.set(length, d);
        }
        return d;
      };
      fc.assert(
        fc.property(
          fc.constantFrom(...lengths, 5 * pieceLength + 123),
          fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
          (length, fractions) => {
            const cuts = fractions.map((f) => Math.floor(f * length));
            expect(hashInChunks(data.subarray(0, length), pieceLength, cuts)).toEqual(digestOf(length));
          },
        ),
        { numRuns: 150 },
      );
    });

    it('gives the same digest when fed one byte at a time around block and piece edges', () => {
      const length = pieceLength + BLOCK_SIZE + 3;
      const data = testData(length, 5);
      const cuts: number[] = [];
      for (const edge of [BLOCK_SIZE, pieceLength, pieceLength + BLOCK_SIZE]) {
        for (let d = -2; d <= 2; d++) cuts.push(edge + d);
      }
      expect(hashInChunks(data, pieceLength, cuts)).toEqual(hashInChunks(data, pieceLength, []));
    });
  });

  it.each([0, 8 * KiB, 3 * 16 * KiB, 16 * KiB + 1, Number.NaN])('rejects piece length %p', (pieceLength) => {
    expectMerkleError(() => new FileMerkleHasher(pieceLength), 'MERKLE_BAD_INPUT');
  });
});

describe('FileHashTree', () => {
  const pieceLength = 64 * KiB;
  // 5 full pieces and a short 6th: 21 blocks, tree of 32 leaves (height 5), piece layer at level 2
  const fx = fileFixture(5 * pieceLength + 1000, pieceLength);

  it('describes the tree shape', () => {
    expect(fx.tree.numBlocks).toBe(21);
    expect(fx.tree.numPieces).toBe(6);
    expect(fx.tree.height).toBe(5);
    expect(fx.tree.pieceLevel).toBe(2);
    expect(fx.tree.leavesPerPiece).toBe(4);
    expect(fx.tree.pieceSize(0)).toBe(pieceLength);
    expect(fx.tree.pieceSize(5)).toBe(1000);
  });

  it('verifies every piece of the real data', () => {
    for (let i = 0; i < 6; i++) expect(fx.tree.verifyPiece(i, fx.piece(i))).toBe(true);
  });

  it('rejects a flipped bit anywhere in a piece', () => {
    for (let i = 0; i < 6; i++) {
      const p = fx.piece(i);
      for (const at of [0, p.length >> 1, p.length - 1]) {
        expect(fx.tree.verifyPiece(i, flipBit(p, at, at % 8))).toBe(false);
      }
    }
  });

  it('rejects a piece of the wrong size, another piece, or an index out of range', () => {
    const first = fx.piece(0);
    expect(fx.tree.verifyPiece(0, first.subarray(0, first.length - 1))).toBe(false);
    expect(fx.tree.verifyPiece(0, Buffer.concat([first, Buffer.alloc(1)]))).toBe(false);
    expect(fx.tree.verifyPiece(5, Buffer.concat([fx.piece(5), Buffer.alloc(1)]))).toBe(false);
    // the last piece padded with zeros to a full piece is not the last piece
    expect(fx.tree.verifyPiece(5, Buffer.concat([fx.piece(5), Buffer.alloc(pieceLength - 1000)]))).toBe(false);
    expect(fx.tree.verifyPiece(1, fx.piece(2))).toBe(false);
    expect(fx.tree.verifyPiece(-1, first)).toBe(false);
    expect(fx.tree.verifyPiece(6, first)).toBe(false);
    expect(fx.tree.verifyPiece(1000, first)).toBe(false);
  });

  it('verifies the pieces of a file of one piece (no piece layer) and of a one-block file', () => {
    for (const length of [1, BLOCK_SIZE, 3 * BLOCK_SIZE - 7, pieceLength]) {
      const data = testData(length, length);
      const root = referenceFile(data, pieceLength).piecesRoot as Buffer;
      const tree = new FileHashTree(length, pieceLength, root);
      expect(tree.numPieces).toBe(1);
      expect(tree.verifyPiece(0, data)).toBe(true);
      expect(tree.verifyPiece(0, flipBit(data, length - 1))).toBe(false);
      expect(tree.verifyPiece(1, data)).toBe(false);
    }
  });

  it('rejects a tampered piece layer with MERKLE_PROOF_MISMATCH', () => {
    const layer = fx.pieceLayer as Buffer;
    for (const at of [0, 3 * HASH_SIZE + 17, layer.length - 1]) {
      expectMerkleError(() => new FileHashTree(fx.data.length, pieceLength, fx.piecesRoot, flipBit(layer, at)), 'MERKLE_PROOF_MISMATCH');
    }
    // swapping two pieces is tampering too
    const swapped = Buffer.concat([layer.subarray(32, 64), layer.subarray(0, 32), layer.subarray(64)]);
    expectMerkleError(() => new FileHashTree(fx.data.length, pieceLength, fx.piecesRoot, swapped), 'MERKLE_PROOF_MISMATCH');
  });

  it('rejects a missing or wrongly sized piece layer and impossible shapes with MERKLE_BAD_INPUT', () => {
    const layer = fx.pieceLayer as Buffer;
    const length = fx.data.length;
    expectMerkleError(() => new FileHashTree(length, pieceLength, fx.piecesRoot), 'MERKLE_BAD_INPUT');
    expectMerkleError(() => new FileHashTree(length, pieceLength, fx.piecesRoot, layer.subarray(32)), 'MERKLE_BAD_INPUT');
    expectMerkleError(
      () => new FileHashTree(length, pieceLength, fx.piecesRoot, Buffer.concat([layer, padHash(2)])),
      'MERKLE_BAD_INPUT',
    );
    expectMerkleError(() => new FileHashTree(0, pieceLength, fx.piecesRoot), 'MERKLE_BAD_INPUT');
    expectMerkleError(() => new FileHashTree(length, 48 * KiB, fx.piecesRoot, layer), 'MERKLE_BAD_INPUT');
    expectMerkleError(() => new FileHashTree(length, 8 * KiB, fx.piecesRoot, layer), 'MERKLE_BAD_INPUT');
  });
});

describe('BEP 52 hash requests', () => {
  const pieceLength = 64 * KiB;
  const fx = fileFixture(5 * pieceLength + 1000, pieceLength); // height 5, piece level 2, 6 pieces
  const req = (r: Omit<HashRequest, 'piecesRoot'>): HashRequest => ({ piecesRoot: fx.piecesRoot, ...r });

  /** Serve with the seeder's tree, check against the reference layout, verify as a leecher. */
  function roundTrip(r: Omit<HashRequest, 'piecesRoot'>): Buffer[] {
    const hashes = fx.tree.hashesFor(req(r), fx.leavesOf);
    expect(hashes).toEqual(referencePayload(fx.reference, r));
    const leecher = new FileHashTree(fx.data.length, pieceLength, fx.piecesRoot, fx.pieceLayer);
    const base = leecher.verifyHashes(req(r), hashes);
    expect(base).toEqual(hashes.slice(0, r.length));
    return hashes;
  }

  describe('leaf requests (base layer 0) spanning one piece', () => {
    it.each([0, 1, 2, 3, 4, 5])('piece %d, proof reaching the piece layer', (piece) => {
      const hashes = roundTrip({ baseLayer: 0, index: 4 * piece, length: 4, proofLayers: 1 });
      expect(hashes).toHaveLength(4); // log2(4) - 1 = 1 proof layer is implied: no uncles
      expect(Buffer.concat(hashes.slice(0, 4))).toEqual(Buffer.concat(fx.reference[0]?.slice(4 * piece, 4 * piece + 4) ?? []));
    });

    it.each([0, 1, 2, 3, 4, 5])('piece %d, proof reaching the root', (piece) => {
      const hashes = roundTrip({ baseLayer: 0, index: 4 * piece, length: 4, proofLayers: 4 });
      expect(hashes).toHaveLength(4 + 3); // uncles at levels 2, 3, 4
    });

    it('with zero proof layers (the base hashes alone prove out to the piece layer)', () => {
      expect(roundTrip({ baseLayer: 0, index: 8, length: 4, proofLayers: 0 })).toHaveLength(4);
    });

    it('with a proof that stops half-way, at a level the piece layer implies', () => {
      expect(roundTrip({ baseLayer: 0, index: 12, length: 4, proofLayers: 2 })).toHaveLength(5);
    });

    it('pads the blocks past the end of the last piece with zero hashes', () => {
      const hashes = roundTrip({ baseLayer: 0, index: 20, length: 4, proofLayers: 1 });
      expect(hashes.slice(1, 4)).toEqual([ZERO_HASH, ZERO_HASH, ZERO_HASH]);
    });
  });

  it('serves two leaves with every uncle up to the root, including a pad uncle', () => {
    const hashes = roundTrip({ baseLayer: 0, index: 20, length: 2, proofLayers: 4 });
    // implied layers: log2(2) - 1 = 0, so 4 uncles: levels 1, 2, 3, 4
    expect(hashes).toHaveLength(2 + 4);
    expect(hashes[2]).toEqual(padHash(1)); // blocks 22-23 are past the end
    expect(hashes[3]).toEqual(fx.tree.pieceHash(4));
  });

  describe('piece-layer requests (base layer = piece level)', () => {
    it('the whole piece layer with its pads', () => {
      const hashes = roundTrip({ baseLayer: 2, index: 0, length: 8, proofLayers: 2 });
      expect(hashes).toHaveLength(8);
      expect(Buffer.concat(hashes.slice(0, 6))).toEqual(fx.pieceLayer);
      expect(hashes.slice(6)).toEqual([padHash(2), padHash(2)]);
    });

    it.each([
      [{ baseLayer: 2, index: 4, length: 4, proofLayers: 2 }, 4 + 1],
      [{ baseLayer: 2, index: 2, length: 2, proofLayers: 2 }, 2 + 2],
      [{ baseLayer: 2, index: 6, length: 2, proofLayers: 2 }, 2 + 2],
      [{ baseLayer: 2, index: 0, length: 2, proofLayers: 1 }, 2 + 1],
      [{ baseLayer: 3, index: 2, length: 2, proofLayers: 1 }, 2 + 1],
      [{ baseLayer: 1, index: 4, length: 2, proofLayers: 3 }, 2 + 3],
    ])('%j carries %d hashes', (r, count) => {
      expect(roundTrip(r)).toHaveLength(count);
    });
  });

  it('agrees with the reference layout for every valid request shape of this file', () => {
    let checked = 0;
    for (let baseLayer = 0; baseLayer < 5; baseLayer++) {
      const width = 32 >> baseLayer;
      for (let length = 2; length <= width; length *= 2) {
        for (let index = 0; index + length <= width; index += length) {
          for (let proofLayers = 0; baseLayer + proofLayers < 5; proofLayers++) {
            const r = { baseLayer, index, length, proofLayers };
            const hashes = fx.tree.hashesFor(req(r), fx.leavesOf);
            expect(hashes).toEqual(referencePayload(fx.reference, r));
            const ends = baseLayer + Math.max(Math.log2(length), proofLayers + 1);
            if (ends >= fx.tree.pieceLevel) {
              expect(fx.tree.verifyHashes(req(r), hashes)).toEqual(hashes.slice(0, length));
            } else {
              expectMerkleError(() => fx.tree.verifyHashes(req(r), hashes), 'MERKLE_BAD_REQUEST');
            }
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('refuses to verify a proof that stops below the trusted piece layer', () => {
    const r = req({ baseLayer: 0, index: 0, length: 2, proofLayers: 0 });
    const hashes = fx.tree.hashesFor(r, fx.leavesOf);
    expectMerkleError(() => fx.tree.verifyHashes(r, hashes), 'MERKLE_BAD_REQUEST');
  });

  describe('forged hashes', () => {
    const r = req({ baseLayer: 0, index: 8, length: 4, proofLayers: 4 });
    const honest = fx.tree.hashesFor(r, fx.leavesOf);

    it.each(honest.map((_, i) => i))('a modified hash at position %d is MERKLE_PROOF_MISMATCH', (at) => {
      const forged = honest.map((h, i) => (i === at ? flipBit(h, 31, 7) : h));
      expectMerkleError(() => fx.tree.verifyHashes(r, forged), 'MERKLE_PROOF_MISMATCH');
    });

    it('swapped base hashes are MERKLE_PROOF_MISMATCH', () => {
      const forged = [honest[1], honest[0], ...honest.slice(2)] as Buffer[];
      expectMerkleError(() => fx.tree.verifyHashes(r, forged), 'MERKLE_PROOF_MISMATCH');
    });

    it('the wrong number of hashes, or a hash of the wrong size, is MERKLE_BAD_INPUT', () => {
      expectMerkleError(() => fx.tree.verifyHashes(r, honest.slice(0, -1)), 'MERKLE_BAD_INPUT');
      expectMerkleError(() => fx.tree.verifyHashes(r, [...honest, ZERO_HASH]), 'MERKLE_BAD_INPUT');
      expectMerkleError(() => fx.tree.verifyHashes(r, []), 'MERKLE_BAD_INPUT');
      const short = honest.map((h, i) => (i === 5 ? h.subarray(0, 31) : h));
      expectMerkleError(() => fx.tree.verifyHashes(r, short), 'MERKLE_BAD_INPUT');
    });

    it('a server whose leaf hashes do not match its piece layer refuses to serve them', () => {
      const wrongLeaves = (piece: number): Buffer => flipBit(fx.leavesOf(piece), 0);
      expectMerkleError(() => fx.tree.hashesFor(r, wrongLeaves), 'MERKLE_PROOF_MISMATCH');
    });

    it('a server without leaf hashes cannot serve a leaf request', () => {
      expectMerkleError(() => fx.tree.hashesFor(r), 'MERKLE_BAD_REQUEST');
    });
  });

  describe('invalid requests are MERKLE_BAD_REQUEST on both sides', () => {
    const valid = { baseLayer: 0, index: 4, length: 4, proofLayers: 4 };
    const payload = fx.tree.hashesFor(req(valid), fx.leavesOf);

    it.each<[string, Partial<HashRequest>]>([
      ['index not a multiple of length', { index: 2 }],
      ['length not a power of two', { length: 3, index: 0 }],
      ['length 1', { length: 1 }],
      ['length 0', { length: 0, index: 0 }],
      ['length above 512', { length: 1024, index: 0 }],
      ['range past the end of the layer', { index: 32, length: 4 }],
      ['range straddling the end of the layer', { baseLayer: 2, index: 4, length: 8, proofLayers: 0 }],
      ['range past the end of the piece layer', { baseLayer: 2, index: 8, length: 2, proofLayers: 0 }],
      ['base layer above the root', { baseLayer: 6, index: 0, length: 2, proofLayers: 0 }],
      ['base layer at the root', { baseLayer: 5, index: 0, length: 1, proofLayers: 0 }],
      ['proof layers reaching above the root', { proofLayers: 5 }],
      ['proof layers far above the root', { proofLayers: 50 }],
      ['piece-layer proof reaching above the root', { baseLayer: 2, index: 0, length: 2, proofLayers: 3 }],
      ['wrong pieces root', { piecesRoot: padHash(5) }],
      ['negative index', { index: -4 }],
      ['negative base layer', { baseLayer: -1 }],
      ['negative proof layers', { proofLayers: -1 }],
      ['negative length', { length: -4 }],
      ['non-integer index', { index: 4.5 }],
      ['non-integer length', { length: 2.5 }],
      ['non-integer base layer', { baseLayer: 0.5 }],
      ['non-integer proof layers', { proofLayers: 1.5 }],
      ['NaN index', { index: Number.NaN }],
      ['infinite length', { length: Number.POSITIVE_INFINITY }],
    ])('%s', (_name, change) => {
      const bad = { ...req(valid), ...change };
      expectMerkleError(() => fx.tree.checkRequest(bad), 'MERKLE_BAD_REQUEST');
      expectMerkleError(() => fx.tree.hashesFor(bad, fx.leavesOf), 'MERKLE_BAD_REQUEST');
      expectMerkleError(() => fx.tree.verifyHashes(bad, payload), 'MERKLE_BAD_REQUEST');
    });

    it(`accepts exactly ${MAX_HASH_REQUEST_LENGTH} hashes and refuses ${2 * MAX_HASH_REQUEST_LENGTH}`, () => {
      // a big file described by its piece layer only: 2048 pieces of 16 KiB (height 11)
      const layer = Buffer.concat(Array.from({ length: 2048 }, (_, i) => sha(Buffer.from(`piece ${i}`))));
      const root = merkleRoot(layer, 2048);
      const big = new FileHashTree(2048 * BLOCK_SIZE, BLOCK_SIZE, root, layer);
      const ok = { piecesRoot: root, baseLayer: 0, index: 1536, length: 512, proofLayers: 10 };
      const hashes = big.hashesFor(ok);
      expect(hashes).toHaveLength(512 + 2);
      expect(big.verifyHashes(ok, hashes)).toEqual(hashList(layer).slice(1536, 2048));
      const tooLong = { ...ok, index: 1024, length: 1024 };
      expectMerkleError(() => big.checkRequest(tooLong), 'MERKLE_BAD_REQUEST');
      expectMerkleError(() => big.hashesFor(tooLong), 'MERKLE_BAD_REQUEST');
    });
  });
});

describe('smart ban: blaming the exact bad block of a piece', () => {
  const pieceLength = 64 * KiB;
  const fx = fileFixture(5 * pieceLength + 1000, pieceLength, 11);
  const leafRequest = (piece: number): HashRequest => ({
    piecesRoot: fx.piecesRoot,
    baseLayer: 0,
    index: piece * fx.tree.leavesPerPiece,
    length: fx.tree.leavesPerPiece,
    proofLayers: 1,
  });

  it('finds the one corrupted block among the blocks of a failed piece', () => {
    const piece = 3;
    const received = Buffer.from(fx.piece(piece));
    received[2 * BLOCK_SIZE + 500] = (received[2 * BLOCK_SIZE + 500] as number) ^ 0x40;
    expect(fx.tree.verifyPiece(piece, received)).toBe(false);

    // an honest peer serves the leaf hashes of the piece; we check them against the piece layer
    const leaves = fx.tree.verifyHashes(leafRequest(piece), fx.tree.hashesFor(leafRequest(piece), fx.leavesOf));
    const blame = leaves.map((leaf, block) => verifyBlock(received.subarray(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE), leaf));
    expect(blame).toEqual([true, true, false, true]);
  });

  it('verifies the short last block of the last piece and rejects it padded or truncated', () => {
    const last = fx.piece(5);
    const [leaf] = fx.tree.verifyHashes(leafRequest(5), fx.tree.hashesFor(leafRequest(5), fx.leavesOf));
    expect(verifyBlock(last, leaf as Buffer)).toBe(true);
    expect(verifyBlock(Buffer.concat([last, Buffer.alloc(1)]), leaf as Buffer)).toBe(false);
    expect(verifyBlock(last.subarray(1), leaf as Buffer)).toBe(false);
  });

  it('rejects an empty block and a block longer than 16 KiB even if the hash matches', () => {
    expect(verifyBlock(Buffer.alloc(0), sha(Buffer.alloc(0)))).toBe(false);
    const big = testData(BLOCK_SIZE + 1);
    expect(verifyBlock(big, sha(big))).toBe(false);
  });

  it('does not let a peer that sends forged leaf hashes frame honest blocks', () => {
    const r = leafRequest(1);
    const honest = fx.tree.hashesFor(r, fx.leavesOf);
    const framed = honest.map((h, i) => (i === 0 ? sha(Buffer.from('frame block 0')) : h));
    expectMerkleError(() => fx.tree.verifyHashes(r, framed), 'MERKLE_PROOF_MISMATCH');
  });
});
