import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The controller's Prometheus metrics, on one registry served at /metrics. */
export class Metrics {
  readonly registry = new Registry();

  readonly grpcCalls = new Counter({
    name: 'shoal_controller_grpc_calls_total',
    help: 'gRPC calls by method and status code',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly grpcSeconds = new Histogram({
    name: 'shoal_controller_grpc_call_seconds',
    help: 'gRPC call latency by method',
    labelNames: ['method'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  readonly releasesPublished = new Counter({
    name: 'shoal_controller_releases_published_total',
    help: 'releases signed into the TUF repository',
    registers: [this.registry],
  });

  readonly revocations = new Counter({
    name: 'shoal_controller_certificates_revoked_total',
    help: 'agent certificates revoked',
    registers: [this.registry],
  });

  /** File bytes the development origin (`originDir`, /origin/) streamed to clients: webseed traffic. */
  readonly originBytesSent = new Counter({
    name: 'shoal_origin_bytes_sent_total',
    help: 'file bytes sent by the development webseed origin at /origin/',
    registers: [this.registry],
  });

  readonly rolloutCommands = new Counter({
    name: 'shoal_controller_rollout_commands_total',
    help: 'fetch commands sent to agents by rollouts',
    registers: [this.registry],
  });

  readonly rolloutsFinished = new Counter({
    name: 'shoal_controller_rollouts_finished_total',
    help: 'rollouts that ended, by final state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'shoal_controller_' });
  }
}
