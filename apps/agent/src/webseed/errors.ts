import { ShoalError } from '@shoal/torrent';

/**
 * Stable codes of webseed failures:
 * - WEBSEED_NO_URL: the client has no usable http(s) URL
 * - WEBSEED_BAD_PIECE: the piece index is not in the package (a caller bug)
 * - WEBSEED_HTTP_STATUS: the server answered a status other than 206 (or an acceptable 200); `status`
 * - WEBSEED_BAD_RANGE: the answer is not the range asked for: Content-Range names other bytes or
 *   another file size, or a 200 ignored the Range of a piece that does not start the file
 * - WEBSEED_BAD_RESPONSE: an encoded body, a redirect without a usable Location, too many redirects
 * - WEBSEED_SHORT_BODY: the body ended (or the connection closed) before the piece was complete
 * - WEBSEED_LONG_BODY: the body went past the piece; it is cut off, never buffered
 * - WEBSEED_TIMEOUT: the server sent nothing for `timeoutMs`
 * - WEBSEED_NETWORK: connecting failed (refused, DNS, TLS certificate) or the socket broke
 * - WEBSEED_CLOSED: `close()` was called
 * - WEBSEED_BAD_OPTIONS: the client was constructed with an invalid maxConcurrent or timeoutMs
 * With several URLs, when every one fails for a piece, the error thrown carries the last attempt's
 * code and lists every attempt in `attempts`; with one URL, its error is thrown as it is.
 */
export type WebseedErrorCode =
  | 'WEBSEED_NO_URL'
  | 'WEBSEED_BAD_PIECE'
  | 'WEBSEED_HTTP_STATUS'
  | 'WEBSEED_BAD_RANGE'
  | 'WEBSEED_BAD_RESPONSE'
  | 'WEBSEED_SHORT_BODY'
  | 'WEBSEED_LONG_BODY'
  | 'WEBSEED_TIMEOUT'
  | 'WEBSEED_NETWORK'
  | 'WEBSEED_CLOSED'
  | 'WEBSEED_BAD_OPTIONS';

export class WebseedError extends ShoalError {
  /** The URL of the failed request, when one was made. */
  readonly url: string | undefined;
  /** The HTTP status, for WEBSEED_HTTP_STATUS. */
  readonly status: number | undefined;
  /** One error per URL tried, when several URLs all failed for a piece; otherwise empty. */
  readonly attempts: readonly WebseedError[];

  constructor(
    override readonly code: WebseedErrorCode,
    message: string,
    options: { url?: string; status?: number; attempts?: readonly WebseedError[]; cause?: unknown } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.url = options.url;
    this.status = options.status;
    this.attempts = options.attempts ?? [];
  }
}
