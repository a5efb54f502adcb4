export * from './errors';
export { generateRsaKeyPair, MIN_RSA_BITS, MAX_RSA_BITS, type RsaKeyPair } from './keys';
export { ALL_PACKAGES_SCOPE, MAX_SUBJECT_ALT_NAMES } from './names';
export { CLOCK_SKEW_SECONDS } from './validity';
export { SERIAL_BYTES } from './serial';
export {
  createFleetCa,
  DEFAULT_CA_KEY_BITS,
  DEFAULT_CA_VALIDITY_DAYS,
  type FleetCaMaterial,
  type FleetCaOptions,
} from './fleet-ca';
export {
  CertificateAuthority,
  CONTROLLER_COMMON_NAME,
  DEFAULT_AGENT_CERT_LIFETIME_SECONDS,
  DEFAULT_CONTROLLER_CERT_LIFETIME_SECONDS,
  type AgentCertificateOptions,
  type ControllerCertificateOptions,
  type IssuedCertificate,
  type RevocationListInput,
} from './certificate-authority';
export { checkCsr, createCsr, MAX_CSR_BYTES, type CheckedCsr, type CreateCsrOptions, type CsrCheckOptions } from './csr';
export {
  verifyRevocationList,
  RevocationSet,
  MAX_REVOCATION_LIST_BYTES,
  REVOCATION_REASONS,
  type RevocationEntry,
  type RevocationList,
  type RevocationReason,
  type SignedRevocationList,
  type VerifyRevocationListOptions,
} from './revocation';
export {
  readPeerIdentity,
  certificateAllowsPackage,
  type AgentIdentity,
  type ControllerIdentity,
  type PeerIdentity,
} from './peer-identity';
