import * as grpc from '@grpc/grpc-js';
import { type AgentReport, type ControllerCommand, type FetchReleaseMessage, type ReleasePhase, type ReleaseProgressMessage, shoalV1 } from '@shoal/proto';

/** What a simulated agent answers to a fetch: the final phase, after `delayMs`. */
export interface SimulatedOutcome {
  phase: Extract<ReleasePhase, 'RELEASE_PHASE_COMPLETE' | 'RELEASE_PHASE_INSTALLED' | 'RELEASE_PHASE_FAILED'>;
  delayMs?: number;
  message?: string;
  exitCode?: number;
  bytesFromPeers?: number;
  bytesFromOrigin?: number;
}

/**
 * An agent reduced to its control stream, for tests and benchmarks of the controller that need
 * many agents: it holds a real certificate, opens the real mTLS stream, says hello (with the
 * releases it remembers), records every command, and answers fetches with progress reports and a
 * result as `outcome` says. A thousand of them fit in one process; no swarm, no disk.
 */
export class SimulatedControlAgent {
  readonly commands: ControllerCommand[] = [];
  /** Releases this agent holds, reported in its hello like a real agent's persisted states. */
  readonly releases = new Map<string, ReleaseProgressMessage>();
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<AgentReport, ControllerCommand> | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    readonly agentId: string,
    private readonly options: {
      grpcAddress: string;
      caPem: string;
      keyPem: string;
      certPem: string;
      outcome?: (fetch: FetchReleaseMessage, agentId: string) => SimulatedOutcome;
      /** Called with each command as it arrives (after it is recorded). */
      onCommand?: (command: ControllerCommand) => void;
    },
  ) {}

  get fetches(): FetchReleaseMessage[] {
    return this.commands.flatMap((c) => (c.fetch ? [c.fetch] : []));
  }

  /**
   * Opens the control stream; resolves once the controller accepted it. A stream that drops (a
   * controller restart) is reopened every 200 ms, with a new hello, as a real agent would.
   */
  connect(grpcAddress = this.options.grpcAddress): Promise<void> {
    this.options.grpcAddress = grpcAddress;
    this.closed = false;
    this.client?.close();
    const { caPem, keyPem, certPem } = this.options;
    this.client = new (shoalV1().Control)(grpcAddress, grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(keyPem), Buffer.from(certPem)));
    const call = (this.client as unknown as { Stream(): grpc.ClientDuplexStream<AgentReport, ControllerCommand> }).Stream();
    this.call = call;
    call.on('data', (command: ControllerCommand) => {
      this.commands.push(command);
      this.options.onCommand?.(command);
      if (command.fetch) this.answer(command.commandId, command.fetch);
    });
    call.on('error', () => undefined);
    call.on('status', () => {
      if (this.call !== call || this.closed) return;
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.call === call && !this.closed) this.connect().catch(() => undefined);
      }, 200);
      this.timers.add(timer);
    });
    const accepted = new Promise<void>((resolve, reject) => {
      call.once('metadata', () => resolve());
      call.once('error', reject);
    });
    call.write({ hello: { softwareVersion: 'simulated', revocationVersion: 0, releases: [...this.releases.values()] } });
    return accepted;
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.call?.cancel();
    this.client?.close();
    this.call = undefined;
  }

  private answer(commandId: string, fetch: FetchReleaseMessage): void {
    const outcome = this.options.outcome?.(fetch, this.agentId) ?? { phase: fetch.install ? 'RELEASE_PHASE_INSTALLED' : 'RELEASE_PHASE_COMPLETE' };
    const base: ReleaseProgressMessage = {
      name: fetch.name,
      version: fetch.version,
      phase: 'RELEASE_PHASE_FETCHING',
      verifiedPieces: 0,
      totalPieces: 8,
      bytesFromPeers: 0,
      bytesFromOrigin: 0,
      message: '',
      rolloutId: fetch.rolloutId,
      exitCode: -1,
    };
    this.report(base);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      const final: ReleaseProgressMessage = {
        ...base,
        phase: outcome.phase,
        verifiedPieces: 8,
        bytesFromPeers: outcome.bytesFromPeers ?? 0,
        bytesFromOrigin: outcome.bytesFromOrigin ?? 0,
        message: outcome.message ?? '',
        exitCode: outcome.exitCode ?? (outcome.phase === 'RELEASE_PHASE_INSTALLED' ? 0 : -1),
      };
      this.report(final);
      this.call?.write({ result: { commandId, ok: outcome.phase !== 'RELEASE_PHASE_FAILED', message: final.message } });
    }, outcome.delayMs ?? 0);
    this.timers.add(timer);
  }

  private report(progress: ReleaseProgressMessage): void {
    this.releases.set(`${progress.name}@${progress.version}`, progress);
    this.call?.write({ progress });
  }
}
