import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { type AgentReport, type ControllerCommand, type ReleaseProgressMessage, shoalV1 } from '@shoal/proto';

export interface ControlClientOptions {
  /** host:port of the controller's mutual-TLS listener. */
  controller: string;
  /** The current identity: read at every (re)connection, so a renewed certificate is used. */
  identity(): { keyPem: string; certPem: string; caPem: string };
  softwareVersion: string;
  /** Version of the newest revocation list held, sent in the hello. */
  revocationVersion(): number;
  /** Where every release the agent remembers stands, sent in the hello. Default: none. */
  releases?(): ReleaseProgressMessage[];
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Keepalive pings on the connection; see CONTROL_KEEPALIVE. */
  keepalive?: Keepalive;
}

export interface Keepalive {
  /** A ping goes out after this long without one. */
  intervalMs: number;
  /** An unanswered ping past this ends the connection, and with it the stream. */
  timeoutMs: number;
}

/**
 * The control stream is quiet for hours when nothing is rolled out, and a connection that dies
 * without a reset (a controller host lost, a NAT or load balancer dropping idle flows) would
 * otherwise hold it open forever while commands go nowhere. HTTP/2 pings find that out: within
 * interval + timeout the stream ends and the client reconnects. The controller does not police
 * ping rates (grpc-js servers accept them).
 */
export const CONTROL_KEEPALIVE: Readonly<Keepalive> = Object.freeze({ intervalMs: 30_000, timeoutMs: 10_000 });

/** gRPC channel options that turn the keepalive on, also while no call is open. */
export function keepaliveChannelOptions(keepalive: Keepalive): grpc.ChannelOptions {
  return {
    'grpc.keepalive_time_ms': keepalive.intervalMs,
    'grpc.keepalive_timeout_ms': keepalive.timeoutMs,
    'grpc.keepalive_permit_without_calls': 1,
  };
}

/** A stream that stayed up this long resets the backoff. */
const STABLE_MS = 30_000;

/**
 * The agent's end of the control stream: keeps one stream open to the controller, reconnecting
 * with exponential backoff (with jitter) when it drops, and turns pushed commands into events.
 *
 * A connection gone silent is found by keepalive pings (CONTROL_KEEPALIVE) and replaced.
 *
 * Events: 'command' (ControllerCommand, reply(ok, message)), 'connected', 'disconnected'
 * ({ code, details }), 'rejected' ({ code, details }) when the controller refuses this agent
 * (revoked): the client keeps retrying, since a renewal or re-enrollment may fix it.
 *
 * Replies and reports go out on the stream open when they are sent, which may be a newer one
 * than the command came on; while no stream is open they are dropped (the next hello carries
 * the release states).
 */
export class ControlClient extends EventEmitter {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<AgentReport, ControllerCommand> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  /** The stream whose end has not been seen yet. */
  private open: grpc.ClientDuplexStream<AgentReport, ControllerCommand> | undefined;

  constructor(private readonly options: ControlClientOptions) {
    super();
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.open = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.client?.close();
  }

  private connect(): void {
    if (this.stopped) return;
    const { keyPem, certPem, caPem } = this.options.identity();
    this.client?.close();
    const client = new (shoalV1().Control)(
      this.options.controller,
      grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(keyPem), Buffer.from(certPem)),
      keepaliveChannelOptions(this.options.keepalive ?? CONTROL_KEEPALIVE),
    );
    this.client = client;
    const call = (client as unknown as { Stream(): grpc.ClientDuplexStream<AgentReport, ControllerCommand> }).Stream();
    this.call = call;
    const openedAt = Date.now();
    let announced = false;
    call.on('metadata', () => {
      if (!announced) {
        announced = true;
        this.emit('connected');
      }
    });
    call.on('data', (command: ControllerCommand) => {
      const reply = (ok: boolean, message = '') => this.send({ result: { commandId: command.commandId, ok, message } });
      this.emit('command', command, reply);
    });
    let ended = false;
    const onEnd = (status: { code: number; details: string }) => {
      if (ended) return;
      ended = true;
      if (this.open === call) this.open = undefined;
      if (status.code === grpc.status.PERMISSION_DENIED || status.code === grpc.status.UNAUTHENTICATED) this.emit('rejected', status);
      this.emit('disconnected', status);
      if (Date.now() - openedAt > STABLE_MS) this.failures = 0;
      this.failures++;
      this.scheduleReconnect();
    };
    call.on('error', (err: grpc.ServiceError) => onEnd({ code: err.code, details: err.details }));
    call.on('status', (status: grpc.StatusObject) => onEnd({ code: status.code, details: status.details }));
    this.open = call;
    call.write({ hello: { softwareVersion: this.options.softwareVersion, revocationVersion: this.options.revocationVersion(), releases: this.options.releases?.() ?? [] } });
  }

  /** Sends a release's progress; false when no stream is open. */
  report(progress: ReleaseProgressMessage): boolean {
    return this.send({ progress });
  }

  private send(report: AgentReport): boolean {
    if (!this.open) return false;
    this.open.write(report);
    return true;
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    const min = this.options.minBackoffMs ?? 1000;
    const max = this.options.maxBackoffMs ?? 60_000;
    const base = Math.min(max, min * 2 ** Math.min(this.failures - 1, 16));
    // Jitter spreads a fleet's reconnections after a controller restart.
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => this.connect(), delay);
    this.timer.unref();
  }
}
