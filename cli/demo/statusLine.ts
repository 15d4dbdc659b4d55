/**
 * The demo's one-line live status: events sent and their rate, the speed layer's lag and
 * watermark, the batch layer's last run and the next, whether serving is ready. On a TTY it is
 * redrawn in place every second (narration is printed above it); elsewhere (a log, CI) a plain
 * line every 15 s.
 */
import type { BatchService } from '../../batch/batchService.ts';
import type { ServeHandle } from '../../serving/http/server.ts';
import type { SpeedJob } from '../../streaming/job/speedJob.ts';
import type { LiveStream } from './demoEvents.ts';

const PLAIN_EVERY_MS = 15_000;

export interface StatusSources {
  speed: SpeedJob;
  batch: BatchService;
  stream: LiveStream;
  serve: ServeHandle;
  dataDir: string;
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s}s` : `${Math.round(s / 60)}m`;
}

function clock(ms: number | null): string {
  return ms === null ? '--:--:--' : new Date(ms).toISOString().slice(11, 19);
}

export class StatusLine {
  private timer: NodeJS.Timeout | undefined;
  private readonly tty = process.stdout.isTTY === true && process.env.LK_NO_PROGRESS === undefined;
  private lastPlain = 0;
  private lastLines = 0;
  private lastAt = Date.now();
  private shown = '';

  constructor(private readonly s: StatusSources) {}

  start(): void {
    this.timer = setInterval(() => this.render(), 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.tty && this.shown) process.stdout.write('\r\x1b[2K');
    this.shown = '';
  }

  /** Prints a message above the status line. */
  print(message: string): void {
    if (this.tty && this.shown) process.stdout.write('\r\x1b[2K');
    process.stdout.write(`${message}\n`);
    if (this.tty && this.shown) process.stdout.write(this.shown);
  }

  /** The status as one line (also what the tests read from a non-TTY run). */
  line(now = Date.now()): string {
    const { speed, batch, stream, serve } = this.s;
    const lines = stream.counter.lines;
    const rate = ((lines - this.lastLines) * 1000) / Math.max(1, now - this.lastAt);
    this.lastLines = lines;
    this.lastAt = now;
    const st = speed.snapshotStatus();
    const lag = st.partitions.reduce((n, p) => n + p.lag, 0);
    const b = batch.status();
    // The batch service's own view of the runs it published (it runs in this process).
    const run = b.lastRun;
    const batchText = run ? `batch run ${ago(now - run.finishedAt)} ago` : 'batch: first run pending';
    const next = b.nextRunAt === null ? (run ? ', running' : '') : `, next in ${ago(b.nextRunAt - now)}`;
    return (
      `events ${lines.toLocaleString('en-US')} (${Math.round(rate)}/s, ${stream.counter.bad} broken) · ` +
      `speed lag ${lag.toLocaleString('en-US')} watermark ${clock(st.watermark)} · ${batchText}${next} · ` +
      `serving ${serve.ready() ? 'ready' : 'catching up'} ${serve.url}/`
    );
  }

  private render(): void {
    const now = Date.now();
    if (this.tty) {
      this.shown = `\r\x1b[2K${this.line(now)}`;
      process.stdout.write(this.shown);
    } else if (now - this.lastPlain >= PLAIN_EVERY_MS) {
      this.lastPlain = now;
      process.stdout.write(`status: ${this.line(now)}\n`);
    }
  }
}
