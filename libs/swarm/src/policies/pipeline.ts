import { BLOCK_SIZE } from '@shoal/torrent';

/** How many block requests to keep outstanding at one peer. */
export interface PipelineContext {
  /** Bytes per second this peer sends us (0 until measured). */
  readonly downloadRate: number;
  /** The peer's advertised request queue limit (`reqq`). */
  readonly peerReqq: number;
  /** The peer stopped sending: one request at a time until it proves alive. */
  readonly snubbed: boolean;
}

export interface PipelinePolicy {
  readonly name: string;
  queueDepth(ctx: PipelineContext): number;
}

/**
 * Bandwidth-delay sizing: enough requests to cover `targetLatencyMs` of the peer's measured rate
 * (libtorrent's request_queue_time), never fewer than `minDepth` (the rate is unknown at first)
 * nor more than `maxDepth` or the peer's reqq.
 */
export class BandwidthDelayPipeline implements PipelinePolicy {
  readonly name = 'bandwidth-delay';
  constructor(
    private readonly targetLatencyMs: number,
    private readonly minDepth: number,
    private readonly maxDepth: number,
  ) {}

  queueDepth(ctx: PipelineContext): number {
    if (ctx.snubbed) return 1;
    const wanted = Math.ceil((ctx.downloadRate * this.targetLatencyMs) / 1000 / BLOCK_SIZE);
    return Math.max(1, Math.min(ctx.peerReqq, this.maxDepth, Math.max(this.minDepth, wanted)));
  }
}

/** A fixed depth, capped by the peer's reqq (tests, and links whose latency is known). */
export class FixedPipeline implements PipelinePolicy {
  readonly name = 'fixed';
  constructor(private readonly depth: number) {}

  queueDepth(ctx: PipelineContext): number {
    return ctx.snubbed ? 1 : Math.max(1, Math.min(ctx.peerReqq, this.depth));
  }
}
