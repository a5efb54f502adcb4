import { Agent as HttpAgent, type ClientRequest, type IncomingMessage, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { type SecureContext, createSecureContext } from 'node:tls';
import type { Metainfo, PackageFile } from '@shoal/torrent';
import { type Gate, type PacedReads, pacedReads } from '../bandwidth';
import { WebseedError } from './errors';
import { type PieceSpan, piecedFiles, pieceSpan, usableUrls, webseedFileUrl } from './piece-map';

export interface WebseedClientOptions {
  metainfo: Metainfo;
  urls: readonly string[];
  /** Extra trusted CA certificate(s), PEM, added to Node's default CAs (e.g. the fleet CA for the dev origin). */
  ca?: Buffer | string;
  /** Requests in flight across all URLs; more fetchPiece calls wait their turn. Default 4. */
  maxConcurrent?: number;
  /** A request fails with WEBSEED_TIMEOUT when the server sends nothing for this long. Default 30000. */
  timeoutMs?: number;
  /** The download cap: response bodies are read only while it allows (time held back is not a timeout). */
  readGate?: Gate;
}

export interface WebseedStats {
  /** HTTP requests sent (redirect hops and failed ones included). */
  requests: number;
  /** Body bytes received, including those of requests that then failed: the origin traffic. */
  bytes: number;
  /** Requests that failed (each URL tried for a piece counts once). */
  failures: number;
}

const DEFAULT_MAX_CONCURRENT = 4;
const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

interface Waiter {
  resolve(): void;
  reject(err: WebseedError): void;
}

/**
 * Fetches pieces from BEP 19 webseeds: one HTTP range request per piece, over keep-alive
 * connections, with failover across URLs. It returns the bytes the server sent for the piece's
 * range, exactly `length` of them; verifying them is the caller's job (the store hashes on write).
 *
 * Answers accepted: 206 whose Content-Range names exactly the bytes asked for (and the file's
 * size, when the server gives it). A 200 (a server ignoring Range) is accepted only for a piece
 * that starts its file: its first bytes are the piece and the connection is dropped after them;
 * for any other piece a 200 would mean downloading the file up to the piece, so it is refused
 * (WEBSEED_BAD_RANGE) and the next URL is tried. Redirects are followed (up to 5). A body longer
 * than the piece is cut off with WEBSEED_LONG_BODY; memory per request is the piece, nothing more.
 *
 * The URL that served the last piece is tried first for the next one.
 */
export class WebseedClient {
  readonly stats: WebseedStats = { requests: 0, bytes: 0, failures: 0 };

  private readonly metainfo: Metainfo;
  private readonly files: PackageFile[];
  private readonly urls: URL[];
  private readonly maxConcurrent: number;
  private readonly timeoutMs: number;
  private readonly readGate: Gate | undefined;
  private readonly ca: string | undefined;
  private httpsAgentIfUsed: HttpsAgent | undefined;
  private readonly httpAgent: HttpAgent;
  private preferred = 0;
  private active = 0;
  private readonly waiting: Waiter[] = [];
  /** Abort functions of the requests in flight. */
  private readonly aborts = new Set<(err: WebseedError) => void>();
  private readonly fetches = new Set<Promise<Buffer>>();
  private closed = false;

  constructor(options: WebseedClientOptions) {
    this.metainfo = options.metainfo;
    this.files = piecedFiles(options.metainfo);
    this.urls = usableUrls(options.urls);
    this.maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.readGate = options.readGate;
    if (!Number.isSafeInteger(this.maxConcurrent) || this.maxConcurrent < 1) {
      throw new WebseedError('WEBSEED_BAD_OPTIONS', `maxConcurrent must be a positive integer, got ${this.maxConcurrent}`);
    }
    if (!Number.isFinite(this.timeoutMs) || this.timeoutMs <= 0) throw new WebseedError('WEBSEED_BAD_OPTIONS', `timeoutMs must be positive, got ${this.timeoutMs}`);
    this.ca = options.ca?.toString();
    this.httpAgent = new HttpAgent({ keepAlive: true, scheduling: 'lifo' });
  }

  /** Made on the first https request: most sessions never need the origin. */
  private httpsAgent(): HttpsAgent {
    this.httpsAgentIfUsed ??= new HttpsAgent({ keepAlive: true, scheduling: 'lifo', ...(this.ca === undefined ? {} : { secureContext: secureContextTrusting(this.ca) }) });
    return this.httpsAgentIfUsed;
  }

  /** True while the client is open and has at least one http(s) URL. */
  get available(): boolean {
    return !this.closed && this.urls.length > 0;
  }

  /** The piece's bytes from the first URL that serves them; waits while maxConcurrent requests are in flight. */
  fetchPiece(index: number): Promise<Buffer> {
    const fetch = this.fetch(index);
    this.fetches.add(fetch);
    const forget = () => this.fetches.delete(fetch);
    fetch.then(forget, forget);
    return fetch;
  }

  /** Fails every pending and queued fetch with WEBSEED_CLOSED and destroys the keep-alive sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closedError = () => new WebseedError('WEBSEED_CLOSED', 'the webseed client was closed');
    for (const waiter of this.waiting.splice(0)) waiter.reject(closedError());
    for (const abort of this.aborts) abort(closedError());
    await Promise.allSettled(this.fetches);
    this.httpsAgentIfUsed?.destroy();
    this.httpAgent.destroy();
  }

  private async fetch(index: number): Promise<Buffer> {
    if (this.closed) throw new WebseedError('WEBSEED_CLOSED', 'the webseed client was closed');
    if (this.urls.length === 0) throw new WebseedError('WEBSEED_NO_URL', 'the package has no http(s) webseed URL');
    const span = pieceSpan(this.metainfo, this.files, index);
    await this.acquire();
    try {
      const attempts: WebseedError[] = [];
      const first = this.preferred;
      for (let i = 0; i < this.urls.length; i++) {
        const which = (first + i) % this.urls.length;
        const url = webseedFileUrl(this.urls[which] as URL, this.metainfo, span.file);
        try {
          const piece = await this.request(url, span, MAX_REDIRECTS, true);
          this.preferred = which;
          return piece;
        } catch (err) {
          const failure = asWebseedError(err, url);
          if (failure.code === 'WEBSEED_CLOSED') throw failure;
          this.stats.failures++;
          attempts.push(failure);
        }
      }
      const last = attempts[attempts.length - 1] as WebseedError;
      if (attempts.length === 1) throw last;
      throw new WebseedError(last.code, `piece ${index}: every webseed failed: ${attempts.map((a) => a.message).join('; ')}`, { attempts });
    } finally {
      this.release();
    }
  }

  private acquire(): Promise<void> {
    if (this.active < this.maxConcurrent) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Hands the slot to the next waiter, if any. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next.resolve();
    else this.active--;
  }

  /**
   * One GET of the piece's range at `url`. `retryStale`: a keep-alive socket the server closed
   * while idle fails the request at once (ECONNRESET before any answer); that is retried once on a
   * fresh connection without counting as a failure.
   */
  private request(url: URL, span: PieceSpan, redirectsLeft: number, retryStale: boolean): Promise<Buffer> {
    const shown = url.href;
    const first = span.offset;
    const last = span.offset + span.length - 1;
    return new Promise<Buffer>((resolve, reject) => {
      if (this.closed) return reject(new WebseedError('WEBSEED_CLOSED', 'the webseed client was closed'));
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
      const req: ClientRequest = send(url, {
        method: 'GET',
        agent: url.protocol === 'https:' ? this.httpsAgent() : this.httpAgent,
        headers: { range: `bytes=${first}-${last}`, 'accept-encoding': 'identity', 'user-agent': 'shoal-agent' },
      });
      this.stats.requests++;
      let settled = false;
      let response: IncomingMessage | undefined;
      const finish = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.aborts.delete(fail);
        outcome();
      };
      const fail = (err: WebseedError) =>
        finish(() => {
          req.destroy();
          response?.destroy();
          reject(err);
        });
      let paced: PacedReads | undefined;
      const timer = setTimeout(() => {
        if (paced?.paused) timer.refresh();
        else fail(new WebseedError('WEBSEED_TIMEOUT', `${shown}: nothing received for ${this.timeoutMs} ms`, { url: shown }));
      }, this.timeoutMs);
      this.aborts.add(fail);
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        if (!response && retryStale && req.reusedSocket && err.code === 'ECONNRESET') {
          finish(() => this.request(url, span, redirectsLeft, false).then(resolve, reject));
          return;
        }
        fail(
          response
            ? new WebseedError('WEBSEED_SHORT_BODY', `${shown}: the connection broke during the body: ${err.message}`, { url: shown, cause: err })
            : new WebseedError('WEBSEED_NETWORK', `${shown}: ${err.message}`, { url: shown, cause: err }),
        );
      });
      req.on('response', (res: IncomingMessage) => {
        response = res;
        timer.refresh();
        res.on('error', (err) => fail(new WebseedError('WEBSEED_SHORT_BODY', `${shown}: the body broke off: ${err.message}`, { url: shown, cause: err })));
        const status = res.statusCode ?? 0;
        if (REDIRECT_STATUSES.has(status)) {
          const target = redirectTarget(url, res.headers.location);
          if (!target) return fail(new WebseedError('WEBSEED_BAD_RESPONSE', `${shown}: redirect ${status} without a usable http(s) Location`, { url: shown }));
          if (redirectsLeft === 0) return fail(new WebseedError('WEBSEED_BAD_RESPONSE', `${shown}: more than ${MAX_REDIRECTS} redirects`, { url: shown }));
          // The redirect's own body is not wanted: drop this connection rather than read it.
          return finish(() => {
            res.destroy();
            this.request(target, span, redirectsLeft - 1, true).then(resolve, reject);
          });
        }
        const problem = checkAnswer(res, span, first, last);
        if (problem) return fail(new WebseedError(problem.code, `${shown}: ${problem.message}`, { url: shown, ...(problem.code === 'WEBSEED_HTTP_STATUS' ? { status } : {}) }));
        // A 200 for a piece shorter than its file: the piece is the body's first bytes.
        const prefixOfLongerBody = status === 200 && span.length < span.file.length;
        const piece = Buffer.allocUnsafe(span.length);
        let received = 0;
        if (this.readGate) paced = pacedReads(res, this.readGate);
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          timer.refresh();
          this.stats.bytes += chunk.length;
          const room = span.length - received;
          if (chunk.length > room && !prefixOfLongerBody) {
            return fail(new WebseedError('WEBSEED_LONG_BODY', `${shown}: the body goes past the ${span.length} bytes asked for`, { url: shown }));
          }
          chunk.copy(piece, received, 0, Math.min(room, chunk.length));
          received += Math.min(room, chunk.length);
          if (prefixOfLongerBody && received === span.length) {
            finish(() => {
              res.destroy();
              resolve(piece);
            });
          }
        });
        res.on('end', () => {
          if (received === span.length) finish(() => resolve(piece));
          else fail(new WebseedError('WEBSEED_SHORT_BODY', `${shown}: the body ended after ${received} of ${span.length} bytes`, { url: shown }));
        });
      });
      req.end();
    });
  }
}

/** Why an answer cannot carry the piece, or undefined when its body may be read. */
function checkAnswer(res: IncomingMessage, span: PieceSpan, first: number, last: number): { code: WebseedError['code']; message: string } | undefined {
  const status = res.statusCode ?? 0;
  const encoding = res.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return { code: 'WEBSEED_BAD_RESPONSE', message: `the body is encoded (${encoding.slice(0, 40)})` };
  const declared = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
  if (status === 206) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
    if (!range) return { code: 'WEBSEED_BAD_RANGE', message: `206 without a usable Content-Range (${JSON.stringify((res.headers['content-range'] ?? '').slice(0, 80))})` };
    if (Number(range[1]) !== first || Number(range[2]) !== last) return { code: 'WEBSEED_BAD_RANGE', message: `asked for bytes ${first}-${last}, got ${range[1]}-${range[2]}` };
    if (range[3] !== '*' && Number(range[3]) !== span.file.length) {
      return { code: 'WEBSEED_BAD_RANGE', message: `the file has ${range[3]} bytes there, the package says ${span.file.length}` };
    }
    return lengthProblem(declared, span.length);
  }
  if (status === 200) {
    if (first !== 0) return { code: 'WEBSEED_BAD_RANGE', message: `the server ignored the Range header (200) for bytes ${first}-${last}` };
    if (declared !== undefined && declared !== span.file.length) return { code: 'WEBSEED_BAD_RANGE', message: `the file has ${declared} bytes there, the package says ${span.file.length}` };
    return undefined;
  }
  return { code: 'WEBSEED_HTTP_STATUS', message: `HTTP ${status}` };
}

function lengthProblem(declared: number | undefined, wanted: number): { code: WebseedError['code']; message: string } | undefined {
  if (declared === undefined || declared === wanted) return undefined;
  return declared > wanted
    ? { code: 'WEBSEED_LONG_BODY', message: `Content-Length ${declared} for a range of ${wanted} bytes` }
    : { code: 'WEBSEED_SHORT_BODY', message: `Content-Length ${declared} for a range of ${wanted} bytes` };
}

function redirectTarget(from: URL, location: string | undefined): URL | undefined {
  if (!location || !URL.canParse(location, from.href)) return undefined;
  const target = new URL(location, from);
  return target.protocol === 'http:' || target.protocol === 'https:' ? target : undefined;
}

function asWebseedError(err: unknown, url: URL): WebseedError {
  if (err instanceof WebseedError) return err;
  return new WebseedError('WEBSEED_NETWORK', `${url.href}: ${(err as Error).message}`, { url: url.href, cause: err });
}

const contextsByCa = new Map<string, SecureContext>();

/**
 * Node's default CAs plus `ca`, built once per process. Passing `ca: [...rootCertificates, ca]`
 * re-parses ~140 PEM certificates in a loop (20-30 ms of CPU; 16 agents starting a fetch
 * together spent a tenth of their startup CPU on it). Adding `ca` to a default context instead
 * copies the store Node already holds and parses one certificate (under 2 ms): adding a CA to
 * a context that uses the shared root store gives the context its own copy of that store.
 */
function secureContextTrusting(ca: string): SecureContext {
  let context = contextsByCa.get(ca);
  if (!context) {
    context = createSecureContext();
    (context.context as { addCACert(pem: string): void }).addCACert(ca);
    contextsByCa.set(ca, context);
  }
  return context;
}
