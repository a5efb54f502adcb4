import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets the old generation grow past what survived the last full collection, in
 * percent (V8 picks 10-300 % by itself, from its measured GC speed; 300 means "4 x live").
 *
 * Why the daemon sets it: an agent's heap is small (about 18 MiB live) while its data path
 * allocates buffers at the rate bytes move (blocks read for peers, frames decoded, pieces
 * written). V8 counts that buffer memory against the small limit it derived from the heap, and
 * ran a full mark-compact about once a second in every downloading agent of the lab (the heap
 * never grew: 20 -> 18 MiB each time). With 4 x live the same agents ran 1-2 of them per
 * download; agent CPU per GiB fell by 10-20 % in the agent benchmark and the lab. The price is a
 * heap that may reach about 4 x its live size (some 60 MiB more RSS at most); a downloading
 * agent's peak RSS went from 161 to 175 MiB in the agent benchmark (its budget is 200 MB).
 */
export const HEAP_GROWING_PERCENT = 300;

const FLAG = '--heap-growing-percent';

/**
 * Applies HEAP_GROWING_PERCENT to this process, unless the operator chose a value already with a
 * node flag (`node --heap-growing-percent=N shoal agent start`; NODE_OPTIONS refuses V8 flags
 * like this one): theirs wins. V8 reads this flag at every heap-limit computation,
 * so setting it after start takes effect from the next collection on. Returns the flag applied.
 */
export function tuneHeapForStreaming(
  execArgv: readonly string[] = process.execArgv,
  setFlags: (flags: string) => void = setFlagsFromString,
): string | undefined {
  const given = execArgv.some((arg) => arg === FLAG || arg.startsWith(`${FLAG}=`) || arg.startsWith('--heap_growing_percent'));
  if (given) return undefined;
  const flag = `${FLAG}=${HEAP_GROWING_PERCENT}`;
  setFlags(flag);
  return flag;
}

/**
 * Whether this process runs on glibc (which reads GLIBC_TUNABLES; musl, say, does not). Asks the
 * diagnostic report's header: a few milliseconds, once at start.
 */
export function runsOnGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const header = (process.report.getReport() as { header?: { glibcVersionRuntime?: unknown } }).header;
  return typeof header?.glibcVersionRuntime === 'string';
}
