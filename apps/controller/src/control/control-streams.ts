import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { AgentReport, ControllerCommand, ReleaseProgressMessage } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';
import type { FleetPki } from '../pki/fleet-pki';
import type { AgentRegistry } from '../registry/agents.service';
import { callerOf, statusFor } from '../grpc/calls';

type ControlCall = grpc.ServerDuplexStream<AgentReport, ControllerCommand>;

export interface CommandResultEvent {
  agentId: string;
  commandId: string;
  ok: boolean;
  message: string;
}

export interface ReleaseProgressEvent {
  agentId: string;
  progress: ReleaseProgressMessage;
}

export interface HelloEvent {
  agentId: string;
  softwareVersion: string;
  /** Every release the agent remembers, with where it stands. */
  releases: ReleaseProgressMessage[];
}

/**
 * The agents' control streams: one per connected agent (a new stream from the same agent
 * replaces the old one). Commands are pushed here; revocation lists go to every agent as soon as
 * they change, and a revoked agent's stream is closed at once.
 *
 * Events: 'connected' (agentId), 'disconnected' (agentId), 'hello' (HelloEvent), 'result'
 * (CommandResultEvent), 'progress' (ReleaseProgressEvent).
 */
export class ControlStreams extends EventEmitter {
  private readonly streams = new Map<string, { call: ControlCall; serial: string; connectedAt: number }>();

  constructor(
    private readonly pki: FleetPki,
    private readonly registry: AgentRegistry,
  ) {
    super();
    pki.on('revoked', () => this.onRevocation());
  }

  /** The grpc-js handler for Control.Stream. */
  readonly handler: grpc.handleBidiStreamingCall<AgentReport, ControllerCommand> = (call) => {
    let agentId: string;
    let serial: string;
    try {
      const identity = this.pki.identify(callerOf(call).peerCertificate);
      if (identity.role !== 'agent') throw new ShoalError('AUTH_NOT_AN_AGENT', 'only agent certificates may open a control stream');
      agentId = identity.agentId;
      serial = identity.serial;
    } catch (err) {
      const status = err instanceof ShoalError ? statusFor(err) : grpc.status.INTERNAL;
      call.emit('error', { code: status, details: err instanceof ShoalError ? err.message : 'internal error' });
      return;
    }
    const previous = this.streams.get(agentId);
    if (previous) previous.call.emit('error', { code: grpc.status.ABORTED, details: 'replaced by a newer control stream of this agent' });
    this.streams.set(agentId, { call, serial, connectedAt: Date.now() });
    // Headers now tell the agent its stream was accepted, before any command exists.
    call.sendMetadata(new grpc.Metadata());
    this.registry.touch(agentId);
    this.emit('connected', agentId);
    call.on('data', (report: AgentReport) => this.onReport(agentId, call, report));
    const forget = () => {
      if (this.streams.get(agentId)?.call === call) {
        this.streams.delete(agentId);
        this.emit('disconnected', agentId);
      }
    };
    call.on('end', () => {
      forget();
      call.end();
    });
    call.on('cancelled', forget);
    call.on('error', forget);
  };

  connected(): string[] {
    return [...this.streams.keys()].sort();
  }

  isConnected(agentId: string): boolean {
    return this.streams.has(agentId);
  }

  /** When the agent's current stream opened (ms since the epoch), if it has one. */
  connectedAt(agentId: string): number | undefined {
    return this.streams.get(agentId)?.connectedAt;
  }

  /**
   * Pushes a command to a connected agent; returns its id (`commandId` when given, so a caller
   * can recognise the result after a restart), or undefined if the agent is not connected.
   */
  send(agentId: string, command: Omit<ControllerCommand, 'commandId'>, commandId: string = randomUUID()): string | undefined {
    const stream = this.streams.get(agentId);
    if (!stream) return undefined;
    stream.call.write({ ...command, commandId });
    return commandId;
  }

  closeAll(): void {
    for (const { call } of this.streams.values()) call.end();
    this.streams.clear();
  }

  private onReport(agentId: string, call: ControlCall, report: AgentReport): void {
    this.registry.touch(agentId);
    if (report.hello) {
      if (report.hello.revocationVersion < this.pki.revocationVersion) {
        call.write({ commandId: randomUUID(), revocations: this.pki.revocations });
      }
      this.emit('hello', { agentId, softwareVersion: report.hello.softwareVersion, releases: report.hello.releases } satisfies HelloEvent);
    } else if (report.result) {
      this.emit('result', { agentId, ...report.result } satisfies CommandResultEvent);
    } else if (report.progress) {
      this.emit('progress', { agentId, progress: report.progress } satisfies ReleaseProgressEvent);
    }
  }

  private onRevocation(): void {
    for (const [agentId, { call, serial }] of this.streams) {
      if (this.pki.isRevoked(serial)) {
        this.streams.delete(agentId);
        call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: "this agent's certificate has been revoked" });
        this.emit('disconnected', agentId);
      } else {
        call.write({ commandId: randomUUID(), revocations: this.pki.revocations });
      }
    }
  }
}
