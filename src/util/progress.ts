/**
 * Per-blob progress bars for pulls on a terminal: one line per blob, redrawn in place at most
 * every 100 ms. Off a terminal it draws nothing (callers log one quiet line per image instead).
 */

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

interface Bar {
  label: string;
  done: number;
  total: number;
}

function mb(n: number): string {
  return (n / 1e6).toFixed(1);
}

export class BlobProgress {
  private readonly bars: Bar[] = [];
  private drawn = 0;
  private last = 0;

  constructor(
    private readonly out: ProgressStream = process.stderr,
    private readonly now: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.out.isTTY === true;
  }

  /** Wraps a blob's byte stream so that what flows through it moves its bar. */
  async *track(digest: string, total: number, chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    if (!this.enabled) {
      yield* chunks;
      return;
    }
    const bar: Bar = { label: digest.replace(/^sha256:/, '').slice(0, 12), done: 0, total };
    this.bars.push(bar);
    for await (const c of chunks) {
      bar.done += c.length;
      this.draw(false);
      yield c;
    }
    this.draw(true);
  }

  /** Redraws every bar (rate-limited unless `force`). */
  draw(force: boolean): void {
    if (!this.enabled || (!force && this.now() - this.last < 100)) return;
    this.last = this.now();
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 40));
    let s = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const b of this.bars) {
      const frac = b.total > 0 ? Math.min(1, b.done / b.total) : 1;
      const fill = Math.round(frac * width);
      s += `\r\x1b[2K${b.label} [${'='.repeat(fill)}${' '.repeat(width - fill)}] ${mb(b.done)}/${mb(b.total)} MB\n`;
    }
    this.drawn = this.bars.length;
    this.out.write(s);
  }
}
