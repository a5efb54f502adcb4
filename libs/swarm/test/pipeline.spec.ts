import { BLOCK_SIZE } from '@shoal/torrent';
import fc from 'fast-check';
import { BandwidthDelayPipeline, FixedPipeline, type PipelinePolicy, policiesOf, type SwarmConfig, swarmConfig } from '../src';
import { arbPipelineContext, describePipelineCompliance } from './compliance/pipeline';

const PIPELINES: Record<SwarmConfig['pipeline'], () => PipelinePolicy> = {
  'bandwidth-delay': () => policiesOf(swarmConfig({ pipeline: 'bandwidth-delay' })).pipeline,
  fixed: () => policiesOf(swarmConfig({ pipeline: 'fixed' })).pipeline,
};

for (const [name, make] of Object.entries(PIPELINES)) describePipelineCompliance(name, make);
describePipelineCompliance('bandwidth-delay with a one-request floor', () => new BandwidthDelayPipeline(50, 1, 4));

const arbBounds = fc
  .record({ targetLatencyMs: fc.integer({ min: 1, max: 5000 }), a: fc.integer({ min: 1, max: 1000 }), b: fc.integer({ min: 1, max: 1000 }) })
  .map(({ targetLatencyMs, a, b }) => ({ targetLatencyMs, minDepth: Math.min(a, b), maxDepth: Math.max(a, b) }));

describe('BandwidthDelayPipeline', () => {
  test('depth stays within [minDepth, maxDepth], capped by the peer reqq', () => {
    fc.assert(
      fc.property(arbBounds, arbPipelineContext, ({ targetLatencyMs, minDepth, maxDepth }, ctx) => {
        fc.pre(!ctx.snubbed);
        const depth = new BandwidthDelayPipeline(targetLatencyMs, minDepth, maxDepth).queueDepth(ctx);
        expect(depth).toBeLessThanOrEqual(Math.min(maxDepth, ctx.peerReqq));
        expect(depth).toBeGreaterThanOrEqual(Math.min(minDepth, ctx.peerReqq));
      }),
    );
  });

  test('covers rate x target latency in blocks', () => {
    fc.assert(
      fc.property(arbBounds, fc.nat({ max: 100_000_000 }), ({ targetLatencyMs, minDepth, maxDepth }, downloadRate) => {
        const depth = new BandwidthDelayPipeline(targetLatencyMs, minDepth, maxDepth).queueDepth({ downloadRate, peerReqq: 100_000, snubbed: false });
        const inFlightBytes = (downloadRate * targetLatencyMs) / 1000;
        if (depth < maxDepth) expect(depth * BLOCK_SIZE).toBeGreaterThanOrEqual(inFlightBytes);
        if (depth > minDepth) expect((depth - 1) * BLOCK_SIZE).toBeLessThan(inFlightBytes);
      }),
    );
  });

  test('worked example: 10 MB/s over 1 s of latency is ~611 blocks, held to 512 by default', () => {
    const pipeline = policiesOf(swarmConfig()).pipeline;
    expect(pipeline.queueDepth({ downloadRate: 0, peerReqq: 250, snubbed: false })).toBe(32);
    expect(pipeline.queueDepth({ downloadRate: 1_000_000, peerReqq: 1000, snubbed: false })).toBe(Math.ceil(1_000_000 / BLOCK_SIZE));
    expect(pipeline.queueDepth({ downloadRate: 10_000_000, peerReqq: 1000, snubbed: false })).toBe(512);
    expect(pipeline.queueDepth({ downloadRate: 10_000_000, peerReqq: 250, snubbed: false })).toBe(250);
    expect(pipeline.queueDepth({ downloadRate: 10_000_000, peerReqq: 250, snubbed: true })).toBe(1);
  });
});

describe('FixedPipeline', () => {
  test('its depth whatever the rate, capped by reqq', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), arbPipelineContext, (depth, ctx) => {
        fc.pre(!ctx.snubbed);
        expect(new FixedPipeline(depth).queueDepth(ctx)).toBe(Math.min(depth, ctx.peerReqq));
      }),
    );
  });

  test('uses maxQueueDepth from the configuration', () => {
    const pipeline = policiesOf(swarmConfig({ pipeline: 'fixed', minQueueDepth: 1, maxQueueDepth: 7 })).pipeline;
    expect(pipeline.queueDepth({ downloadRate: 1e9, peerReqq: 250, snubbed: false })).toBe(7);
  });
});
