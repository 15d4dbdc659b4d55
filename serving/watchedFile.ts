/**
 * A configuration file that serving follows without a restart (the tokens file, a JWKS file, the
 * TLS certificate and key): read and validated at start (a bad file there stops the start), then
 * read again whenever it changes. A changed file that fails validation keeps the previous value
 * and logs why; the next change is tried again.
 *
 * Changes are seen two ways: a file-system watch on the file's directory (immediate; editors and
 * `mv` replace a file by rename, which a watch on the file itself would miss), and a stat every
 * `pollMs` (identity, size and modification time), for the file systems where watches say nothing
 * (network mounts, some container volumes, Kubernetes secrets swapped by symlink).
 */
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { errorMessage } from '../services/errors.ts';
import type { Logger } from '../services/observability/logger.ts';

export interface WatchedFileOptions<T> {
  path: string;
  /** What the file is, for log lines ("tokens file"). */
  what: string;
  /** Validates the file's text: returns the value, or throws with the reason. */
  parse: (text: string, path: string) => T;
  /** Called with each new value after a successful reload (not for the first read). */
  onChange?: (value: T) => void;
  pollMs: number;
  logger: Logger;
}

function fingerprint(path: string): string | undefined {
  try {
    const s = statSync(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return undefined;
  }
}

export class WatchedFile<T> {
  private current: T;
  private seen: string | undefined;
  private readonly timer: NodeJS.Timeout;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  /** Reloads that succeeded and failed (the metrics and the tests read them). */
  reloads = 0;
  failures = 0;
  lastError: string | null = null;

  /** Reads and validates the file now; throws (with the reason) when it cannot. */
  constructor(private readonly options: WatchedFileOptions<T>) {
    this.seen = fingerprint(options.path);
    this.current = options.parse(readFileSync(options.path, 'utf8'), options.path);
    this.timer = setInterval(() => this.maybeReload(), options.pollMs);
    this.timer.unref();
    try {
      this.watcher = watch(dirname(options.path), { persistent: false }, (_event, name) => {
        if (name !== null && name !== basename(options.path)) return;
        // Writers often truncate then write: wait for the burst of events to end.
        clearTimeout(this.debounce);
        this.debounce = setTimeout(() => this.maybeReload(), 50);
        this.debounce.unref();
      });
      this.watcher.on('error', () => undefined);
    } catch {
      // No watch on this file system: the stat poll alone sees the changes.
    }
  }

  get value(): T {
    return this.current;
  }

  private maybeReload(): void {
    const now = fingerprint(this.options.path);
    if (now === this.seen) return;
    this.seen = now;
    const { path, what, logger } = this.options;
    let next: T;
    try {
      next = this.options.parse(readFileSync(path, 'utf8'), path);
    } catch (err) {
      this.failures++;
      this.lastError = errorMessage(err);
      logger.error({ file: path, err: this.lastError }, `${what} changed but cannot be used; keeping the previous one`);
      return;
    }
    this.current = next;
    this.reloads++;
    this.lastError = null;
    logger.info({ file: path }, `${what} reloaded`);
    this.options.onChange?.(next);
  }

  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    this.watcher?.close();
  }
}
