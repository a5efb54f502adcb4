/**
 * Base of every error Shoal raises on purpose. `code` is stable and machine-readable (it is what
 * tests, logs and API clients match on); `message` is for people and may change.
 */
export class ShoalError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export type BencodeErrorCode =
  | 'BENCODE_TRUNCATED'
  | 'BENCODE_UNEXPECTED_BYTE'
  | 'BENCODE_LEADING_ZERO'
  | 'BENCODE_NEGATIVE_ZERO'
  | 'BENCODE_INTEGER_RANGE'
  | 'BENCODE_KEY_ORDER'
  | 'BENCODE_DUPLICATE_KEY'
  | 'BENCODE_TRAILING_BYTES'
  | 'BENCODE_TOO_DEEP'
  | 'BENCODE_STRING_TOO_LONG'
  | 'BENCODE_INPUT_TOO_LARGE'
  | 'BENCODE_UNENCODABLE';

/** A bencoded input that is not canonical bencode; `offset` is the byte where decoding stopped. */
export class BencodeError extends ShoalError {
  constructor(
    override readonly code: BencodeErrorCode,
    message: string,
    readonly offset: number,
  ) {
    super(code, offset >= 0 ? `${message} at byte ${offset}` : message);
  }
}

export type MetainfoErrorCode =
  | 'METAINFO_NOT_BENCODE'
  | 'METAINFO_MISSING_FIELD'
  | 'METAINFO_WRONG_TYPE'
  | 'METAINFO_UNSUPPORTED_VERSION'
  | 'METAINFO_BAD_PIECE_LENGTH'
  | 'METAINFO_BAD_FILE_TREE'
  | 'METAINFO_UNSAFE_PATH'
  | 'METAINFO_PATH_COLLISION'
  | 'METAINFO_BAD_PIECES_ROOT'
  | 'METAINFO_BAD_PIECE_LAYER'
  | 'METAINFO_BAD_URL'
  | 'METAINFO_TOO_LARGE';

/** Metainfo that breaks a BEP 52 rule or a Shoal safety rule; `field` says where. */
export class MetainfoError extends ShoalError {
  constructor(
    override readonly code: MetainfoErrorCode,
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(code, field ? `${field}: ${message}` : message, options);
  }
}

export type MerkleErrorCode = 'MERKLE_BAD_REQUEST' | 'MERKLE_PROOF_MISMATCH' | 'MERKLE_BAD_INPUT';

/** A hash request that cannot be served, or hashes that do not prove what they claim. */
export class MerkleError extends ShoalError {
  constructor(
    override readonly code: MerkleErrorCode,
    message: string,
  ) {
    super(code, message);
  }
}

export type PackErrorCode =
  | 'PACK_NOT_FOUND'
  | 'PACK_UNSUPPORTED_FILE'
  | 'PACK_EMPTY'
  | 'PACK_BAD_OPTION'
  | 'PACK_FILE_CHANGED'
  | 'PACK_IO';

/** Creating a package from a path on disk failed; `path` names the file at fault. */
export class PackError extends ShoalError {
  constructor(
    override readonly code: PackErrorCode,
    message: string,
    readonly path?: string,
    options?: { cause?: unknown },
  ) {
    super(code, path ? `${path}: ${message}` : message, options);
  }
}
