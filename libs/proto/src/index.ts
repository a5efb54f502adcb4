import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/**
 * The controller <-> agent gRPC API. The .proto files in ../proto are the contract; these types
 * mirror them as @grpc/proto-loader presents them (camelCase fields, 64-bit integers as
 * numbers, bytes as Buffers, enums as strings, defaults filled in).
 */
export const PROTO_DIR = join(__dirname, '..', 'proto');
const PROTO_FILES = ['shoal/v1/enrollment.proto', 'shoal/v1/tracker.proto', 'shoal/v1/control.proto'];

interface ServiceClientConstructor {
  new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions): grpc.Client;
  service: grpc.ServiceDefinition;
}

interface ShoalV1 {
  Enrollment: ServiceClientConstructor;
  Identity: ServiceClientConstructor;
  Tracker: ServiceClientConstructor;
  Control: ServiceClientConstructor;
}

let loaded: ShoalV1 | undefined;

/** The shoal.v1 package: service definitions for servers, client constructors for callers. */
export function shoalV1(): ShoalV1 {
  if (!loaded) {
    const definition = loadSync(PROTO_FILES, {
      includeDirs: [PROTO_DIR],
      keepCase: false,
      longs: Number,
      enums: String,
      bytes: Buffer,
      defaults: true,
      arrays: true,
      objects: true,
      oneofs: true,
    });
    const root = grpc.loadPackageDefinition(definition) as unknown as { shoal: { v1: ShoalV1 } };
    loaded = root.shoal.v1;
  }
  return loaded;
}

export interface Endpoints {
  grpc: string;
  rest: string;
  tufMetadata: string;
  tufTargets: string;
}

export interface SignedRevocationListMessage {
  payload: string;
  signature: string;
}

export interface EnrollRequest {
  bootstrapToken: string;
  csrPem: string;
  hostname: string;
  softwareVersion: string;
}

export interface EnrollResponse {
  agentId: string;
  certificatePem: string;
  caPem: string;
  tufRoot: Buffer;
  endpoints: Endpoints;
  labels: Record<string, string>;
  revocations: SignedRevocationListMessage;
}

export interface RenewRequest {
  csrPem: string;
}

export interface RenewResponse {
  certificatePem: string;
}

export interface GetRevocationsRequest {
  newerThan: number;
}

export type AnnounceEvent =
  | 'ANNOUNCE_EVENT_NONE'
  | 'ANNOUNCE_EVENT_STARTED'
  | 'ANNOUNCE_EVENT_COMPLETED'
  | 'ANNOUNCE_EVENT_STOPPED';

export interface AnnounceRequest {
  infoHash: Buffer;
  port: number;
  addresses: string[];
  left: number;
  uploaded: number;
  downloaded: number;
  event: AnnounceEvent;
  numwant: number;
}

export interface PeerMessage {
  agentId: string;
  addresses: string[];
  port: number;
  region: string;
  zone: string;
  site: string;
  seed: boolean;
}

export interface AnnounceResponse {
  intervalSeconds: number;
  peers: PeerMessage[];
  seeders: number;
  leechers: number;
}

export interface AnnounceStreamRequest {
  id: number;
  /** null when the message did not carry one (proto3 sub-messages are optional). */
  announce: AnnounceRequest | null;
}

export interface AnnounceStreamResponse {
  id: number;
  announce?: AnnounceResponse | null;
  /** grpc status code; 0 = OK. */
  status: number;
  error: string;
  errorCode: string;
}

export interface ScrapeRequest {
  infoHashes: Buffer[];
}

export interface ScrapeResponse {
  swarms: { infoHash: Buffer; seeders: number; leechers: number }[];
}

export type BandwidthClass = 'BANDWIDTH_CLASS_NORMAL' | 'BANDWIDTH_CLASS_BACKGROUND';

export interface FetchReleaseMessage {
  name: string;
  version: string;
  install: boolean;
  bandwidthClass: BandwidthClass;
  rolloutId: string;
}

export interface ControllerCommand {
  commandId: string;
  command?: 'fetch' | 'cancel' | 'revocations' | 'renew';
  fetch?: FetchReleaseMessage | null;
  cancel?: { name: string; version: string } | null;
  revocations?: SignedRevocationListMessage | null;
  renew?: Record<string, never> | null;
}

export type ReleasePhase =
  | 'RELEASE_PHASE_UNSPECIFIED'
  | 'RELEASE_PHASE_FETCHING'
  | 'RELEASE_PHASE_COMPLETE'
  | 'RELEASE_PHASE_INSTALLING'
  | 'RELEASE_PHASE_INSTALLED'
  | 'RELEASE_PHASE_FAILED'
  | 'RELEASE_PHASE_CANCELLED';

export interface ReleaseProgressMessage {
  name: string;
  version: string;
  phase: ReleasePhase;
  verifiedPieces: number;
  totalPieces: number;
  bytesFromPeers: number;
  bytesFromOrigin: number;
  message: string;
  rolloutId: string;
  exitCode: number;
}

export interface AgentReport {
  report?: 'hello' | 'result' | 'progress';
  hello?: { softwareVersion: string; revocationVersion: number; releases: ReleaseProgressMessage[] } | null;
  result?: { commandId: string; ok: boolean; message: string } | null;
  progress?: ReleaseProgressMessage | null;
}

/** Promise wrapper for a unary call on a proto-loader client. */
export function unary<Req, Res>(
  client: grpc.Client,
  method: string,
  request: Req,
  options: { deadlineMs?: number; metadata?: grpc.Metadata } = {},
): Promise<Res> {
  const fn = (client as unknown as Record<string, unknown>)[method];
  if (typeof fn !== 'function') return Promise.reject(new TypeError(`no method ${method} on this client`));
  const deadline = new Date(Date.now() + (options.deadlineMs ?? 10_000));
  return new Promise<Res>((resolve, reject) => {
    (fn as (...args: unknown[]) => void).call(
      client,
      request,
      options.metadata ?? new grpc.Metadata(),
      { deadline },
      (err: grpc.ServiceError | null, response: Res) => (err ? reject(err) : resolve(response)),
    );
  });
}
