import { ShoalError } from '@shoal/torrent';

export type PkiInputErrorCode =
  | 'PKI_INVALID_FLEET'
  | 'PKI_INVALID_AGENT_ID'
  | 'PKI_INVALID_PACKAGE_SCOPE'
  | 'PKI_INVALID_SUBJECT_ALT_NAME'
  | 'PKI_INVALID_ARGUMENT';

export type KeyErrorCode = 'PKI_KEY_MALFORMED' | 'PKI_KEY_MISMATCH' | 'PKI_UNSUPPORTED_KEY' | 'PKI_WEAK_KEY';

export type CsrErrorCode =
  | 'PKI_CSR_TOO_LARGE'
  | 'PKI_CSR_MALFORMED'
  | 'PKI_CSR_UNSUPPORTED_ALGORITHM'
  | 'PKI_CSR_BAD_SIGNATURE';

export type CertificateAuthorityErrorCode =
  | 'PKI_CA_MALFORMED'
  | 'PKI_CA_NOT_CA'
  | 'PKI_CA_KEY_MISMATCH'
  | 'PKI_CA_EXPIRED'
  | 'PKI_CA_LIFETIME_EXCEEDED';

export type RevocationListErrorCode =
  | 'PKI_CRL_MALFORMED'
  | 'PKI_CRL_TOO_LARGE'
  | 'PKI_CRL_BAD_SIGNATURE'
  | 'PKI_CRL_WRONG_FLEET'
  | 'PKI_CRL_ROLLBACK';

export type PeerCertificateErrorCode = 'PKI_CERT_MALFORMED' | 'PKI_NOT_FLEET_CERT';

export type PkiErrorCode =
  | PkiInputErrorCode
  | KeyErrorCode
  | CsrErrorCode
  | CertificateAuthorityErrorCode
  | RevocationListErrorCode
  | PeerCertificateErrorCode;

/** Base of every error @shoal/pki raises on purpose: catch this and switch on `code`. */
export class PkiError extends ShoalError {
  constructor(
    override readonly code: PkiErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A name, time or number passed by the caller breaks a rule of the certificate profile. */
export class PkiInputError extends PkiError {
  constructor(
    override readonly code: PkiInputErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A key that cannot be read, does not belong with its partner, or fails the key policy. */
export class KeyError extends PkiError {
  constructor(
    override readonly code: KeyErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A certificate signing request refused before anything was issued from it. */
export class CsrError extends PkiError {
  constructor(
    override readonly code: CsrErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The fleet CA cannot be loaded, or cannot issue what was asked at the time given. */
export class CertificateAuthorityError extends PkiError {
  constructor(
    override readonly code: CertificateAuthorityErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A signed revocation list that must not be applied. */
export class RevocationListError extends PkiError {
  constructor(
    override readonly code: RevocationListErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A peer certificate that does not carry a Shoal identity of the expected fleet. */
export class PeerCertificateError extends PkiError {
  constructor(
    override readonly code: PeerCertificateErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}
