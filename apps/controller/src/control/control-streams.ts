import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { AgentReport, ControllerCommand } from '@shoal/proto';
import { ShoalError } from '@shoal/torrent';
import type { FleetPki } from '../pki/fleet-pki';
import type { AgentRegistry } from '../registry/agents.service';
import { peerCertificateOf, statusFor } from '../grpc/calls';

type ControlCall = grpc.ServerDuplexStream<AgentReport, ControllerCommand>;

export interface CommandResultEvent {
  agentId: string;
  commandId: string;
  ok: boolean;
  message: string;
}

/**
 * The agents' control streams: one per connected agent (a new stream from the same agent
 * replaces the old one). Commands are pushed here; revocation lists go to every agent as soon as
 * they change, and a revoked agent's stream is closed at once.
 *
 * Events: 'connected' (agentId), 'disconnected' (agentId), 'result' (CommandResultEvent).
 */
export class ControlStreams extends EventEmitter {
  private readonly streams = new Map<string, { call: ControlCall; serial: string }>();

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
      const identity = this.pki.identify(peerCertificateOf(call).peerCertificate);
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
    this.streams.set(agentId, { call, serial });
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

  /** Pushes a command to a connected agent; returns its id, or undefined if the agent is not connected. */
  send(agentId: string, command: Omit<ControllerCommand, 'commandId'>): string | undefined {
    const stream = this.streams.get(agentId);
    if (!stream) return undefined;
    const commandId = randomUUID();
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
    } else if (report.result) {
      this.emit('result', { agentId, ...report.result } satisfies CommandResultEvent);
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
