import { ShoalError } from '@shoal/torrent';

/**
 * Stable codes of tracker failures:
 * - TRACKER_BAD_REQUEST: a request field is invalid (`field` names it) -> gRPC INVALID_ARGUMENT
 * - TRACKER_NO_IDENTITY: the caller passed no usable announcer identity (a wiring bug: the
 *   identity comes from the client certificate) -> gRPC UNAUTHENTICATED
 * - TRACKER_BAD_OPTIONS: the service was constructed with invalid options (at start-up)
 * - TRACKER_UNAVAILABLE: Redis failed or is unreachable (`cause` holds the error) -> UNAVAILABLE
 */
export type TrackerErrorCode = 'TRACKER_BAD_REQUEST' | 'TRACKER_NO_IDENTITY' | 'TRACKER_BAD_OPTIONS' | 'TRACKER_UNAVAILABLE';

export class TrackerError extends ShoalError {
  constructor(
    override readonly code: TrackerErrorCode,
    message: string,
    options?: { cause?: unknown; field?: string },
  ) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.field = options?.field;
  }

  /** The offending request or option field, for TRACKER_BAD_REQUEST and TRACKER_BAD_OPTIONS. */
  readonly field: string | undefined;
}
