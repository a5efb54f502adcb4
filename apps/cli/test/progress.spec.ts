import { PassThrough } from 'node:stream';
import { ProgressBar } from '../src/progress';

/** A terminal-like stream: a real stream that says it is a TTY and records what it got. */
function terminal(isTTY: boolean): { stream: NodeJS.WriteStream; written: () => string } {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough;
  let text = '';
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString();
  });
  Object.assign(stream, { isTTY, columns: 120 });
  return { stream, written: () => text };
}

test('draws a bar on a TTY and ends the line when finished', async () => {
  const { stream, written } = terminal(true);
  const bar = new ProgressBar('pack', stream);
  bar.update(512 * 1024, 1024 * 1024, 'file.bin');
  bar.update(1024 * 1024, 1024 * 1024, 'file.bin');
  bar.finish();
  await new Promise((resolve) => setImmediate(resolve));
  expect(written()).toMatch(/\rpack \[#{15}\.{15}\] {2}50% 512 KiB\/1\.0 MiB/);
  expect(written()).toMatch(/100% 1\.0 MiB\/1\.0 MiB .* file\.bin/);
  expect(written().endsWith('\n')).toBe(true);
});

test('writes nothing when the stream is not a TTY', async () => {
  const { stream, written } = terminal(false);
  const bar = new ProgressBar('pack', stream);
  bar.update(1, 2);
  bar.finish();
  await new Promise((resolve) => setImmediate(resolve));
  expect(written()).toBe('');
});
