import type * as grpc from '@grpc/grpc-js';
import type { AnnounceRequest, AnnounceResponse, AnnounceStreamRequest, AnnounceStreamResponse } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';

/**
 * Stable codes of a failed announce:
 * - the controller's own code (e.g. TRACKER_BAD_REQUEST, TRACKER_UNAVAILABLE) when it answered
 *   with an error; `status` holds the grpc status;
 * - TRACKER_TIMEOUT: no answer within the timeout (the stream is then replaced);
 * - TRACKER_STREAM_CLOSED: the stream ended (controller restart, network, revocation) with the
 *   announce unanswered; `status` holds the stream's grpc status when it had one.
 */
export class AnnounceError extends ShoalError {
  constructor(
    code: string,
    message: string,
    readonly status?: number,
  ) {
    super(code, message);
  }
}

export interface TrackerClientOptions {
  /** Milliseconds an announce may wait for its answer. Default 10000, as a unary call's deadline. */
  timeoutMs?: number;
}

type AnnounceFields = Omit<AnnounceRequest, 'event' | 'uploaded' | 'downloaded'> & Partial<Pick<AnnounceRequest, 'event' | 'uploaded' | 'downloaded'>>;

type AnnounceStream = grpc.ClientDuplexStream<AnnounceStreamRequest, AnnounceStreamResponse>;

interface Waiting {
  /** The stream the announce went out on: only its end fails the announce. */
  stream: AnnounceStream;
  resolve(response: AnnounceResponse): void;
  reject(err: AnnounceError): void;
  timer: NodeJS.Timeout;
}

/**
 * The agent's tracker client: announces as messages on one Tracker.AnnounceStream, opened on the
 * first announce and again on the next one after it ends, matched to their answers by id. A
 * stream costs the controller far less per announce than a unary call (see tracker.proto).
 */
export class TrackerClient {
  private stream: AnnounceStream | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;
  private readonly timeoutMs: number;

  /** `client`: a shoal.v1.Tracker client; closed with this one. */
  constructor(
    private readonly client: grpc.Client,
    options: TrackerClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  announce(request: AnnounceFields): Promise<AnnounceResponse> {
    if (this.closed) return Promise.reject(new AnnounceError('TRACKER_STREAM_CLOSED', 'the tracker client is closed'));
    const stream = this.open();
    const id = this.nextId++;
    return new Promise<AnnounceResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new AnnounceError('TRACKER_TIMEOUT', `no answer from the tracker within ${this.timeoutMs} ms`));
        // A stream that leaves an announce unanswered this long is not trusted with the next one
        // (a connection that died without a reset would swallow every announce): start afresh.
        if (this.stream === stream) {
          this.stream = undefined;
          stream.cancel();
        }
      }, this.timeoutMs);
      timer.unref();
      this.waiting.set(id, { stream, resolve, reject, timer });
      stream.write({ id, announce: request as AnnounceRequest });
    });
  }

  /** Fails the announces still waiting, ends the stream and closes the underlying client. */
  close(): void {
    this.closed = true;
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
    this.failAll(new AnnounceError('TRACKER_STREAM_CLOSED', 'the tracker client was closed'));
    this.client.close();
  }

  private open(): AnnounceStream {
    if (this.stream) return this.stream;
    const method = (this.client as unknown as Record<string, () => AnnounceStream>).AnnounceStream;
    if (typeof method !== 'function') throw new TypeError('not a shoal.v1.Tracker client');
    const stream = method.call(this.client);
    const ended = (err: AnnounceError) => {
      if (this.stream === stream) this.stream = undefined;
      this.failAll(err, stream);
    };
    stream.on('data', (answer: AnnounceStreamResponse) => this.settle(answer));
    stream.on('error', (err: grpc.ServiceError) =>
      ended(new AnnounceError(err.metadata?.get('shoal-error-code')[0]?.toString() || 'TRACKER_STREAM_CLOSED', `announce stream: ${err.details || err.message}`, err.code)),
    );
    stream.on('end', () => ended(new AnnounceError('TRACKER_STREAM_CLOSED', 'the tracker ended the announce stream')));
    this.stream = stream;
    return stream;
  }

  private settle(answer: AnnounceStreamResponse): void {
    const waiting = this.waiting.get(answer.id);
    if (!waiting) return;
    this.waiting.delete(answer.id);
    clearTimeout(waiting.timer);
    if (answer.status === 0 && answer.announce) waiting.resolve(answer.announce);
    else waiting.reject(new AnnounceError(answer.errorCode || 'TRACKER_ANNOUNCE_FAILED', answer.error || `announce failed with status ${answer.status}`, answer.status));
  }

  /** Fails the announces waiting on `stream`, or on any stream. */
  private failAll(err: AnnounceError, stream?: AnnounceStream): void {
    for (const [id, waiting] of this.waiting) {
      if (stream && waiting.stream !== stream) continue;
      this.waiting.delete(id);
      clearTimeout(waiting.timer);
      waiting.reject(err);
    }
  }
}
