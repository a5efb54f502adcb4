import fc from 'fast-check';
import type { PipelineContext, PipelinePolicy } from '../../src';

export const arbPipelineContext: fc.Arbitrary<PipelineContext> = fc.record({
  downloadRate: fc.oneof(fc.constant(0), fc.nat({ max: 2_000_000_000 }), fc.double({ min: 0, max: 1e9, noNaN: true })),
  peerReqq: fc.integer({ min: 1, max: 5000 }),
  snubbed: fc.boolean(),
});

/** The contract every PipelinePolicy keeps: a usable depth the peer accepts. */
export function describePipelineCompliance(label: string, make: () => PipelinePolicy): void {
  describe(`PipelinePolicy compliance: ${label}`, () => {
    test('depth is a whole number of requests in 1..reqq', () => {
      fc.assert(
        fc.property(arbPipelineContext, (ctx) => {
          const depth = make().queueDepth(ctx);
          expect(Number.isSafeInteger(depth)).toBe(true);
          expect(depth).toBeGreaterThanOrEqual(1);
          expect(depth).toBeLessThanOrEqual(ctx.peerReqq);
        }),
      );
    });

    test('a snubbed peer gets one request at a time', () => {
      fc.assert(
        fc.property(arbPipelineContext, (ctx) => {
          expect(make().queueDepth({ ...ctx, snubbed: true })).toBe(1);
        }),
      );
    });

    test('a faster peer never gets a shallower queue', () => {
      fc.assert(
        fc.property(arbPipelineContext, fc.nat({ max: 1_000_000_000 }), (ctx, extra) => {
          expect(make().queueDepth({ ...ctx, downloadRate: ctx.downloadRate + extra })).toBeGreaterThanOrEqual(make().queueDepth(ctx));
        }),
      );
    });
  });
}
