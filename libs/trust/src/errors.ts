import { ShoalError } from '@shoal/torrent';

export type TrustErrorCode =
  // publishing and release rules
  | 'TRUST_INVALID_NAME'
  | 'TRUST_INVALID_VERSION'
  | 'TRUST_INVALID_CHANNEL'
  | 'TRUST_INVALID_INFOHASH'
  | 'TRUST_INVALID_INSTALL'
  | 'TRUST_BAD_METAINFO'
  | 'TRUST_INFOHASH_MISMATCH'
  | 'TRUST_VERSION_EXISTS'
  | 'TRUST_VERSION_NOT_NEWER'
  | 'TRUST_VERSION_UNORDERED'
  // repository keys and state
  | 'TRUST_BAD_KEY'
  | 'TRUST_KEY_MISMATCH'
  | 'TRUST_THRESHOLD'
  | 'TRUST_ALREADY_INITIALIZED'
  | 'TRUST_NOT_INITIALIZED'
  | 'TRUST_STORE_CORRUPT'
  | 'TRUST_BAD_STORE_NAME'
  | 'TRUST_BAD_OPTION'
  // verification by an agent
  | 'TRUST_EXPIRED'
  | 'TRUST_ROLLBACK'
  | 'TRUST_BAD_SIGNATURE'
  | 'TRUST_METADATA_MISMATCH'
  | 'TRUST_BAD_METADATA'
  | 'TRUST_UNKNOWN_RELEASE'
  | 'TRUST_TARGET_MISMATCH'
  | 'TRUST_BAD_CUSTOM'
  | 'TRUST_UNAVAILABLE';

/** A release, key or metadata file that breaks a TUF or Shoal rule; `cause` keeps the origin. */
export class TrustError extends ShoalError {
  constructor(
    override readonly code: TrustErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
