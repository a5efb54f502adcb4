import type { Readable } from 'node:stream';
import type { Gate } from './bandwidth';

export interface PacedReads {
  /** True while reads are held back by the gate. */
  readonly paused: boolean;
}

/**
 * Counts what `stream` delivers against `gate` and stops reading (pause) while the gate says
 * wait: on a socket, unread bytes fill the kernel buffers and TCP flow control slows the sender.
 */
export function pacedReads(stream: Readable, gate: Gate): PacedReads {
  const state = { paused: false };
  let timer: NodeJS.Timeout | undefined;
  const holdFor = (wait: number): void => {
    timer = setTimeout(wake, Math.ceil(wait));
    timer.unref();
  };
  const wake = (): void => {
    timer = undefined;
    if (stream.destroyed) return;
    const wait = gate.delay();
    if (wait > 0) return holdFor(wait);
    state.paused = false;
    stream.resume();
  };
  stream.on('data', (chunk: Buffer) => {
    gate.record(chunk.length);
    if (state.paused) return;
    const wait = gate.delay();
    if (wait <= 0) return;
    state.paused = true;
    stream.pause();
    holdFor(wait);
  });
  stream.once('close', () => clearTimeout(timer));
  return state;
}
