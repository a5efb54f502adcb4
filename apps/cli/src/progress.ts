import { formatBytes } from './format';

/**
 * A one-line progress bar on a terminal's stderr; silent when stderr is not a TTY, so scripts and
 * CI logs get only the final result.
 */
export class ProgressBar {
  private lastDraw = 0;
  private readonly started = Date.now();
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  update(done: number, total: number, detail = ''): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 100 && done < total) return;
    this.lastDraw = now;
    const width = 30;
    const ratio = total > 0 ? Math.min(1, done / total) : 1;
    const filled = Math.round(ratio * width);
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const rate = `${formatBytes(done / seconds)}/s`;
    const columns = this.stream.columns ?? 100;
    const line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${rate} ${detail}`;
    this.stream.write(`\r${line.slice(0, columns - 1).padEnd(columns - 1)}`);
    this.drawn = true;
  }

  finish(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
