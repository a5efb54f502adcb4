export { TrustError, type TrustErrorCode } from './errors';
export { type Signer, type SigningKey, computeKeyId, generateSigningKey, signerFromPrivateKeyPem } from './keys';
export { type MetadataStore, FileMetadataStore } from './store';
export { DEFAULT_CHANNEL, MAX_INSTALL_COMMAND_LENGTH, type ReleaseRecord, servedTargetPath, targetPathOf } from './release';
export { type SemVer, compareSemVer, parseSemVer } from './semver';
export {
  DEFAULT_EXPIRY,
  DEFAULT_RENEW_WHEN_REMAINING,
  type InitializeOptions,
  type OnlineRole,
  type OnlineSigners,
  type OpenOptions,
  type PublishRequest,
  type PublishResult,
  type RepositoryOptions,
  type RotateRootRequest,
  type TopLevelRole,
  TufRepository,
} from './repository';
export { type ReleaseVerifierOptions, type VerifiedRelease, ReleaseVerifier } from './verifier';
export { type NodeFetcherOptions, NodeFetcher } from './fetcher';
