/**
 * A Kafka broker of a test's own (scripts/kafka.mjs on ports from `freePort`, its own home dir),
 * for tests that kill it: SIGKILLed as a crash or the OOM killer would, then started again on its
 * own data, as an operator's supervisor would restart it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startKafka, stopKafka } from '../scripts/kafka.mjs';
import { freePort } from './helpers.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class BrokerOfItsOwn {
  private constructor(
    readonly brokers: string,
    private readonly opts: { port: number; home: string; quiet: boolean },
    private pid: number,
  ) {}

  /** Starts a fresh broker with its state in `home`. */
  static async start(home: string): Promise<BrokerOfItsOwn> {
    const opts = { port: await freePort(2), home, quiet: true };
    const started = await startKafka({ ...opts, fresh: true });
    return new BrokerOfItsOwn(started.brokers, opts, started.pid);
  }

  get running(): boolean {
    return alive(this.pid);
  }

  /** SIGKILL, and waits until the process is gone (no handler runs, nothing is flushed). */
  async kill(): Promise<void> {
    const pid = this.pid;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    while (alive(pid) && !isZombie(pid)) await new Promise((r) => setTimeout(r, 50));
  }

  /** Starts it again on its own data (resolves once it accepts produce and fetch again). */
  async restart(): Promise<void> {
    const started = await startKafka(this.opts);
    this.pid = started.pid;
  }

  /** Stops it for good (end of the test). */
  async stop(): Promise<void> {
    await stopKafka({ ...this.opts, graceMs: 5_000 }).catch(() => undefined);
  }

  /** The broker's own log, for a failure message. */
  logTail(lines = 30): string {
    const file = join(this.opts.home, 'logs', 'server.log');
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(no broker log)';
  }
}

/** A killed process that its parent has not reaped yet (the broker is detached: its parent is gone). */
function isZombie(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}
