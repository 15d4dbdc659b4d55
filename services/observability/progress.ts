/**
 * A progress line for long CLI work, on stderr and only on a TTY (logs and pipes stay clean):
 * done / total, rate and ETA when the total is known, else count and rate.
 */
export interface Progress {
  update(done: number, extra?: string): void;
  finish(): void;
}

function human(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

function eta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m > 0 ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}

export function progress(label: string, total: number | undefined, unit: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const enabled = stream.isTTY === true && process.env.LK_NO_PROGRESS === undefined;
  const started = Date.now();
  let last = 0;
  let lastDone = 0;
  const render = (done: number, extra: string | undefined, force: boolean) => {
    if (!enabled) return;
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    const elapsed = Math.max((now - started) / 1000, 0.001);
    const rate = done / elapsed;
    let line: string;
    if (total !== undefined && total > 0) {
      const ratio = Math.min(done / total, 1);
      const width = 24;
      const filled = Math.round(ratio * width);
      line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(ratio * 100).toFixed(1)}% ${human(done)}/${human(total)} ${unit} ${human(rate)} ${unit}/s ETA ${eta((total - done) / rate)}`;
    } else {
      line = `${label} ${human(done)} ${unit} ${human(rate)} ${unit}/s`;
    }
    if (extra) line += ` ${extra}`;
    stream.write(`\r\x1b[2K${line}`);
  };
  return {
    update(done, extra) {
      lastDone = done;
      render(done, extra, false);
    },
    finish() {
      render(lastDone, undefined, true);
      if (enabled) stream.write('\n');
    },
  };
}
