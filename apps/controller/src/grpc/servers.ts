import * as grpc from '@grpc/grpc-js';
import type { PeerIdentity } from '@shoal/pki';
import {
  type AnnounceRequest,
  type AnnounceResponse,
  type AnnounceStreamResponse,
  type EnrollRequest,
  type EnrollResponse,
  type GetRevocationsRequest,
  type PeerMessage,
  type RenewRequest,
  type RenewResponse,
  type ScrapeRequest,
  type ScrapeResponse,
  type SignedRevocationListMessage,
  shoalV1,
} from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';
import type { ControlStreams } from '../control/control-streams';
import type { EnrollmentService } from '../enrollment/enrollment.service';
import type { FleetPki } from '../pki/fleet-pki';
import type { AgentRegistry } from '../registry/agents.service';
import type { TrackerService } from '../tracker';
import type { HostPort } from '../config';
import { announceStreamHandler } from './announce-stream';
import { type CallContext, type UnaryObserver, tolerantService, unaryHandler } from './calls';

/** Nothing an agent sends is near this; larger messages are refused before they are decoded. */
const MAX_MESSAGE_BYTES = 256 * 1024;

export interface GrpcDependencies {
  enrollment: EnrollmentService;
  control: ControlStreams;
  tracker: TrackerService;
  pki: FleetPki;
  registry: AgentRegistry;
  tls: { caPem: string; certPem: string; keyPem: string };
  observe: UnaryObserver;
}

export interface RunningGrpc {
  /** Mutual TLS: Identity, Tracker, Control. */
  mtlsPort: number;
  /** Server-authenticated TLS: Enrollment only. */
  enrollPort: number;
  close(): Promise<void>;
}

/**
 * Two listeners: enrollment over server-authenticated TLS (the agent has no certificate yet),
 * and everything else over mutual TLS, where grpc-js refuses any client certificate the fleet
 * CA did not sign (and expired ones) in the handshake; revocation is checked on every call.
 */
export async function startGrpc(deps: GrpcDependencies, listen: { mtls: HostPort; enroll: HostPort; keepaliveSeconds: number }): Promise<RunningGrpc> {
  const v1 = shoalV1();
  // Channelz (grpc-js's call statistics for its admin service, which Shoal does not serve) cost
  // about 12 % of a no-op unary call's server CPU under the tracker benchmark's load.
  const options = { 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES, 'grpc.enable_channelz': 0 };
  const keyCertPairs = [{ private_key: Buffer.from(deps.tls.keyPem), cert_chain: Buffer.from(deps.tls.certPem) }];

  const agent = (context: CallContext): PeerIdentity & { role: 'agent'; agentId: string } => {
    const identity = deps.pki.identify(context.peerCertificate);
    if (identity.role !== 'agent') throw new ShoalError('AUTH_NOT_AN_AGENT', 'only agent certificates may call this');
    return identity;
  };

  const enrollServer = new grpc.Server(options);
  enrollServer.addService(tolerantService(v1.Enrollment.service), {
    Enroll: unaryHandler<EnrollRequest, EnrollResponse>('Enroll', (request, context) => deps.enrollment.enroll(request, context.peerAddress), deps.observe),
  });

  // An agent's control stream is quiet for hours: a connection that died without a reset (host
  // lost, a NAT or balancer dropping idle flows) would otherwise keep it registered as connected,
  // and commands sent to it would go nowhere. grpc-js closes a connection whose ping goes unanswered.
  const mtlsServer = new grpc.Server({
    ...options,
    'grpc.keepalive_time_ms': listen.keepaliveSeconds * 1000,
    'grpc.keepalive_timeout_ms': Math.max(1000, Math.round((listen.keepaliveSeconds * 1000) / 3)),
  });
  mtlsServer.addService(tolerantService(v1.Identity.service), {
    Renew: unaryHandler<RenewRequest, RenewResponse>('Renew', async (request, context) => deps.enrollment.renew(agent(context).agentId, request), deps.observe),
    GetRevocations: unaryHandler<GetRevocationsRequest, SignedRevocationListMessage>(
      'GetRevocations',
      async (_request, context) => {
        agent(context);
        return deps.pki.revocations;
      },
      deps.observe,
    ),
  });
  const announce = async (request: AnnounceRequest, context: CallContext): Promise<AnnounceResponse> => {
    const { agentId } = agent(context);
    deps.registry.touch(agentId);
    return deps.tracker.announce({ agentId, location: await deps.registry.location(agentId) }, request, context.peerAddress);
  };
  mtlsServer.addService(withCachedPeerEncoding(tolerantService(v1.Tracker.service)), {
    Announce: unaryHandler<AnnounceRequest, AnnounceResponse>('Announce', announce, deps.observe),
    AnnounceStream: announceStreamHandler(announce, deps.observe),
    Scrape: unaryHandler<ScrapeRequest, ScrapeResponse>(
      'Scrape',
      async (request, context) => {
        agent(context);
        return deps.tracker.scrape(request);
      },
      deps.observe,
    ),
  });

  mtlsServer.addService(v1.Control.service, { Stream: deps.control.handler });

  const ca = Buffer.from(deps.tls.caPem);
  const enrollPort = await bind(enrollServer, listen.enroll, withoutNagle(grpc.ServerCredentials.createSsl(null, keyCertPairs, false)));
  const mtlsPort = await bind(mtlsServer, listen.mtls, withoutNagle(grpc.ServerCredentials.createSsl(ca, keyCertPairs, true)));
  return {
    enrollPort,
    mtlsPort,
    close: async () => {
      deps.control.closeAll();
      await Promise.all([shutdown(enrollServer), shutdown(mtlsServer)]);
    },
  };
}

/**
 * Announce answers repeat the same peers (the tracker hands out frozen records from its swarm
 * snapshot): each peer is encoded once, as the bytes of its repeated-field entry, and answers are
 * those entries concatenated with the scalar fields — a valid AnnounceResponse, since protobuf
 * fields may come in any order. Encoding 50 peers per answer was a fifth of an announce's CPU.
 * Answers on AnnounceStream embed the same bytes as their `announce` field.
 */
export function withCachedPeerEncoding(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const announce = service.Announce as grpc.MethodDefinition<AnnounceRequest, AnnounceResponse>;
  const stream = service.AnnounceStream as grpc.MethodDefinition<unknown, AnnounceStreamResponse>;
  const encoded = new WeakMap<PeerMessage, Buffer>();
  const entryOf = (peer: PeerMessage): Buffer => {
    let bytes = encoded.get(peer);
    if (!bytes) {
      // Only the peer: protobufjs writes any scalar that is present, zeros included, and a
      // later value of a field wins when decoding.
      bytes = announce.responseSerialize({ peers: [peer] } as unknown as AnnounceResponse);
      if (Object.isFrozen(peer)) encoded.set(peer, bytes);
    }
    return bytes;
  };
  // The whole answer in one buffer, the scalars by hand: protobufjs's fromObject and encode cost
  // more than the peers' bytes. With `id`, it is a stream answer: the id, then the announce as
  // its length-delimited field.
  const answer = (response: AnnounceResponse, id?: number): Buffer => {
    const entries = response.peers.map(entryOf);
    let length = 0;
    for (const entry of entries) length += entry.length;
    const scalars: [number, number][] = [
      [ANNOUNCE_RESPONSE.intervalSeconds, response.intervalSeconds],
      [ANNOUNCE_RESPONSE.seeders, response.seeders],
      [ANNOUNCE_RESPONSE.leechers, response.leechers],
    ];
    for (const [field, value] of scalars) length += varintLength(field * 8) + varintLength(value);
    const announceLength = length;
    if (id !== undefined) {
      length += varintLength(ANNOUNCE_STREAM_RESPONSE.id * 8) + varintLength(id);
      length += varintLength(ANNOUNCE_STREAM_RESPONSE.announce * 8 + 2) + varintLength(announceLength);
    }
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    if (id !== undefined) {
      at = writeVarint(out, at, ANNOUNCE_STREAM_RESPONSE.id * 8);
      at = writeVarint(out, at, id);
      at = writeVarint(out, at, ANNOUNCE_STREAM_RESPONSE.announce * 8 + 2);
      at = writeVarint(out, at, announceLength);
    }
    for (const [field, value] of scalars) at = writeVarint(out, writeVarint(out, at, field * 8), value);
    for (const entry of entries) {
      out.set(entry, at);
      at += entry.length;
    }
    return out;
  };
  return {
    ...service,
    Announce: { ...announce, responseSerialize: (response: AnnounceResponse) => answer(response) },
    AnnounceStream: {
      ...stream,
      // Errors (rare) take the general path.
      responseSerialize: (message: AnnounceStreamResponse) =>
        message.status !== 0 || !message.announce ? stream.responseSerialize({ ...message, announce: null }) : answer(message.announce, message.id),
    },
  };
}

/** Field numbers, from tracker.proto. */
const ANNOUNCE_RESPONSE = { intervalSeconds: 1, seeders: 3, leechers: 4 } as const;
const ANNOUNCE_STREAM_RESPONSE = { id: 1, announce: 2 } as const;

/** Bytes of a protobuf varint of a non-negative integer below 2^53. */
function varintLength(value: number): number {
  let bytes = 1;
  for (; value > 0x7f; value = Math.floor(value / 128)) bytes += 1;
  return bytes;
}

/** Writes a protobuf varint (non-negative integer below 2^53) at `at`; returns the next offset. */
function writeVarint(out: Buffer, at: number, value: number): number {
  for (; value > 0x7f; value = Math.floor(value / 128)) out[at++] = (value % 128) | 0x80;
  out[at++] = value;
  return at;
}

/**
 * Turns Nagle's algorithm off on every accepted connection. grpc-js leaves it on for the
 * sockets its server accepts, and writes an answer's headers, message and trailers as separate
 * writes: the last ones then waited for the client's delayed ACK, up to 40 ms. The tracker
 * benchmark showed it as a p99 of 35-50 ms at 2,000 announces/s with the controller half idle.
 * The option reaches net.Server through the constructor options grpc-js passes to
 * http2.createSecureServer.
 */
export function withoutNagle(credentials: grpc.ServerCredentials): grpc.ServerCredentials {
  const constructorOptions = credentials._getConstructorOptions();
  if (constructorOptions) credentials._getConstructorOptions = () => ({ ...constructorOptions, noDelay: true });
  return credentials;
}

function bind(server: grpc.Server, at: HostPort, credentials: grpc.ServerCredentials): Promise<number> {
  const host = at.host.includes(':') ? `[${at.host}]` : at.host;
  return new Promise((resolve, reject) => server.bindAsync(`${host}:${at.port}`, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
