import { HEAP_GROWING_PERCENT, tuneHeapForStreaming } from '../src/daemon/heap';

describe('tuneHeapForStreaming', () => {
  const run = (execArgv: string[]): { applied?: string; set: string[] } => {
    const set: string[] = [];
    const applied = tuneHeapForStreaming(execArgv, (flags) => set.push(flags));
    return { ...(applied ? { applied } : {}), set };
  };

  it('sets the heap growing factor when the operator did not', () => {
    expect(run(['--enable-source-maps', '--max-old-space-size=512'])).toEqual({
      applied: `--heap-growing-percent=${HEAP_GROWING_PERCENT}`,
      set: [`--heap-growing-percent=${HEAP_GROWING_PERCENT}`],
    });
  });

  it.each([[['--heap-growing-percent=50']], [['--trace-gc', '--heap_growing_percent=150']]])('leaves an operator choice alone (%j)', (execArgv) => {
    expect(run(execArgv)).toEqual({ set: [] });
  });
});
