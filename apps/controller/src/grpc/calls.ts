import * as grpc from '@grpc/grpc-js';
import { ShoalError } from '@shoal/torrent';

/**
 * Plumbing shared by every gRPC method: request decoding that cannot crash, typed errors mapped
 * to status codes, and the caller's identity taken from its client certificate.
 */
const MALFORMED = Symbol('malformed request');

interface MalformedRequest {
  [MALFORMED]: string;
}

/**
 * A copy of a service definition whose request decoder never throws: grpc-js would answer a
 * message it cannot decode with INTERNAL, which is the server's fault; a garbled request is the
 * caller's (INVALID_ARGUMENT).
 */
export function tolerantService(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer) => {
          try {
            return method.requestDeserialize(bytes);
          } catch (err) {
            return { [MALFORMED]: (err as Error).message } satisfies MalformedRequest;
          }
        },
      },
    ]),
  ) as grpc.ServiceDefinition;
}

/** Why a request from a `tolerantService` decoder could not be decoded, or undefined if it was. */
export function malformedReason(request: unknown): string | undefined {
  return typeof request === 'object' && request !== null && MALFORMED in request ? (request as MalformedRequest)[MALFORMED] : undefined;
}

export class GrpcError extends ShoalError {
  constructor(
    readonly status: grpc.status,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** Status for a typed error from a service, by what its code says about whose fault it is. */
export function statusFor(err: ShoalError): grpc.status {
  if (err instanceof GrpcError) return err.status;
  if (/REVOKED|NOT_ALLOWED|FORBIDDEN|NOT_AN_AGENT/.test(err.code)) return grpc.status.PERMISSION_DENIED;
  if (/TOKEN|^AUTH_|PKI_NOT_FLEET_CERT/.test(err.code)) return grpc.status.UNAUTHENTICATED;
  if (/NOT_FOUND|UNKNOWN_AGENT/.test(err.code)) return grpc.status.NOT_FOUND;
  if (/UNAVAILABLE/.test(err.code)) return grpc.status.UNAVAILABLE;
  if (/NO_IDENTITY/.test(err.code)) return grpc.status.UNAUTHENTICATED;
  return grpc.status.INVALID_ARGUMENT;
}

export interface CallContext {
  /** The DER client certificate, when the transport is mutual TLS. */
  peerCertificate?: Buffer;
  /** ip of the caller as the transport sees it. */
  peerAddress: string;
}

export type UnaryImplementation<Req, Res> = (request: Req, context: CallContext) => Promise<Res>;

export interface UnaryObserver {
  /** Called once per finished call, for metrics and logs. */
  (method: string, status: grpc.status, seconds: number, err?: unknown): void;
}

/** Adapts a promise-returning implementation to a grpc-js unary handler. */
export function unaryHandler<Req, Res>(
  method: string,
  implementation: UnaryImplementation<Req, Res>,
  observe: UnaryObserver,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = process.hrtime.bigint();
    const finish = (status: grpc.status, err?: unknown) =>
      observe(method, status, Number(process.hrtime.bigint() - started) / 1e9, err);
    const request = call.request as Req;
    const malformed = malformedReason(request);
    if (malformed !== undefined) {
      finish(grpc.status.INVALID_ARGUMENT);
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `malformed request: ${malformed}` });
      return;
    }
    const context = callerOf(call);
    implementation(request as Req, context).then(
      (response) => {
        finish(grpc.status.OK);
        callback(null, response);
      },
      (err: unknown) => {
        if (err instanceof ShoalError) {
          const status = statusFor(err);
          finish(status);
          callback({ code: status, details: err.message, metadata: codeMetadata(err.code) });
        } else {
          finish(grpc.status.INTERNAL, err);
          callback({ code: grpc.status.INTERNAL, details: 'internal error' });
        }
      },
    );
  };
}

function codeMetadata(code: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('shoal-error-code', code);
  return metadata;
}

/**
 * What the transport says about the caller, by HTTP/2 session (one TLS connection; TLS 1.3
 * cannot renegotiate, so its certificate and address never change). grpc-js re-reads both on
 * every call: getAuthContext() copies the certificate out of OpenSSL (about 40 µs per
 * announce) and getPeer() builds a SocketAddress (about 3 % of an announce).
 */
const callerBySession = new WeakMap<object, Readonly<CallContext>>();

/** Any grpc-js server call: unary or streaming. */
type ServerCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'getPeer'>;

export function callerOf(call: ServerCall): Readonly<CallContext> {
  const session = sessionOf(call);
  let caller = session ? callerBySession.get(session) : undefined;
  if (!caller) {
    const raw = call.getAuthContext()?.sslPeerCertificate?.raw;
    caller = Object.freeze({ peerAddress: hostOf(call.getPeer()), ...(raw && raw.length > 0 ? { peerCertificate: raw } : {}) });
    if (session) callerBySession.set(session, caller);
  }
  return caller;
}

/**
 * The HTTP/2 session under a grpc-js server call. grpc-js does not expose it, so this walks its
 * internals (call -> interceptor chain -> stream.session) and answers undefined if they change,
 * in which case every call simply reads its certificate again.
 */
function sessionOf(call: ServerCall): object | undefined {
  type Layer = { nextCall?: Layer; stream?: { session?: object } };
  let layer = (call as unknown as { call?: Layer }).call;
  for (let depth = 0; layer && depth < 8; depth++) {
    const session = layer.stream?.session;
    if (session && typeof session === 'object') return session;
    layer = layer.nextCall;
  }
  return undefined;
}

/** "ipv4:1.2.3.4:5", "ipv6:[::1]:5" or "1.2.3.4:5" -> the address alone. */
export function hostOf(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(bare);
  if (bracketed) return bracketed[1] as string;
  const lastColon = bare.lastIndexOf(':');
  return lastColon > 0 && bare.indexOf(':') === lastColon ? bare.slice(0, lastColon) : bare;
}
