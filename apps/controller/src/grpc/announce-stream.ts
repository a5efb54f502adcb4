import * as grpc from '@grpc/grpc-js';
import type { AnnounceRequest, AnnounceResponse, AnnounceStreamRequest, AnnounceStreamResponse } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';
import { type CallContext, type UnaryObserver, callerOf, malformedReason, statusFor } from './calls';

/**
 * Announces of one stream being answered at once. Past this, or while answers wait for the agent
 * to read them, the stream is not read, so an agent that floods its stream (or never reads) is
 * held back by HTTP/2 flow control rather than growing the controller's memory.
 */
export const MAX_ANNOUNCES_IN_FLIGHT_PER_STREAM = 64;

/** The method name announces on a stream are observed under (metrics, logs). */
export const ANNOUNCE_STREAM_METHOD = 'AnnounceStream';

export type AnnounceImplementation = (request: AnnounceRequest, context: CallContext) => Promise<AnnounceResponse>;

/** A status that says the caller itself may not announce: the stream ends with it. */
function endsTheStream(status: grpc.status): boolean {
  return status === grpc.status.UNAUTHENTICATED || status === grpc.status.PERMISSION_DENIED;
}

/**
 * Tracker.AnnounceStream: each message is one announce, answered with its id by the same
 * implementation the unary Announce uses (so identity, revocation and validation are checked per
 * announce). A bad announce gets its own status and the stream goes on; a caller that may not
 * announce (revoked, not an agent) gets its status as the stream's end; a message that cannot be
 * decoded ends the stream with INVALID_ARGUMENT, since it names no id to answer.
 */
export function announceStreamHandler(
  announce: AnnounceImplementation,
  observe: UnaryObserver,
): grpc.handleBidiStreamingCall<AnnounceStreamRequest, AnnounceStreamResponse> {
  return (call) => {
    const context = callerOf(call);
    let inFlight = 0;
    let answersWaiting = false;
    let inputEnded = false;
    let closed = false;
    const readMore = () => {
      if (inFlight < MAX_ANNOUNCES_IN_FLIGHT_PER_STREAM && !answersWaiting) call.resume();
    };
    const close = (status: grpc.status, details: string, code?: string) => {
      if (closed) return;
      closed = true;
      const metadata = new grpc.Metadata();
      if (code) metadata.set('shoal-error-code', code);
      call.emit('error', { code: status, details, metadata });
    };
    const answer = (response: AnnounceStreamResponse) => {
      if (closed || call.cancelled || call.write(response)) return;
      answersWaiting = true;
      call.pause();
    };
    call.on('drain', () => {
      answersWaiting = false;
      readMore();
    });
    const endWhenDone = () => {
      if (!inputEnded || inFlight > 0 || closed) return;
      closed = true;
      call.end();
    };
    const settle = () => {
      inFlight -= 1;
      readMore();
      endWhenDone();
    };

    call.on('data', (message: AnnounceStreamRequest) => {
      if (closed) return;
      const started = process.hrtime.bigint();
      const finish = (status: grpc.status, err?: unknown) => observe(ANNOUNCE_STREAM_METHOD, status, Number(process.hrtime.bigint() - started) / 1e9, err);
      const malformed = malformedReason(message);
      if (malformed !== undefined) {
        finish(grpc.status.INVALID_ARGUMENT);
        return close(grpc.status.INVALID_ARGUMENT, `malformed announce message: ${malformed}`);
      }
      const id = message.id;
      if (!message.announce) {
        finish(grpc.status.INVALID_ARGUMENT);
        return answer({ id, status: grpc.status.INVALID_ARGUMENT, error: 'announce: the message carries none', errorCode: 'TRACKER_BAD_REQUEST' });
      }
      inFlight += 1;
      if (inFlight >= MAX_ANNOUNCES_IN_FLIGHT_PER_STREAM) call.pause();
      announce(message.announce, context)
        .then(
          (response) => {
            finish(grpc.status.OK);
            answer({ id, announce: response, status: grpc.status.OK, error: '', errorCode: '' });
          },
          (err: unknown) => {
            if (!(err instanceof ShoalError)) {
              finish(grpc.status.INTERNAL, err);
              return answer({ id, status: grpc.status.INTERNAL, error: 'internal error', errorCode: '' });
            }
            const status = statusFor(err);
            finish(status);
            if (endsTheStream(status)) return close(status, err.message, err.code);
            answer({ id, status, error: err.message, errorCode: err.code });
          },
        )
        .finally(settle);
    });
    call.on('end', () => {
      inputEnded = true;
      endWhenDone();
    });
    // A client that goes away mid-stream: nothing to answer, the announces in flight finish alone.
    call.on('cancelled', () => (closed = true));
  };
}
