/**
 * Which job version serving answers with when a query names none: the promoted one
 * (`versions/DEFAULT` in the shared state, services/versions/defaultVersion.ts), else `--version`.
 *
 * The pointer is polled. A new one is adopted only once its version can answer (views open and
 * caught up), and then in one assignment: a request reads the default once, at its start, so
 * every field of one answer comes from one version, all-old or all-new. The previous default
 * stays open (warm), so that the rollback is as quick as the promotion.
 */
import { errorMessage } from '../../services/errors.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { readDefaultVersion, type DefaultVersion } from '../../services/versions/defaultVersion.ts';
import type { VersionRegistry } from './versionRegistry.ts';

export interface CurrentDefault {
  version: string;
  /** The pointer's generation (0: no version was ever promoted, `--version` applies). */
  generation: number;
}

export class DefaultVersionFollower {
  private currentDefault: CurrentDefault;
  private timer: NodeJS.Timeout | undefined;
  /** Polls in order: the last one queued, and how many are queued or running. */
  private queue: Promise<void> = Promise.resolve();
  private polls = 0;
  /** Why the pointer could not be followed last time (null when it could). */
  lastError: string | null = null;

  constructor(
    private readonly options: { state: ObjectStore; fallback: string; registry: VersionRegistry; pollMs: number; logger: Logger },
  ) {
    this.currentDefault = { version: options.fallback, generation: 0 };
  }

  get current(): CurrentDefault {
    return this.currentDefault;
  }

  /** Reads the pointer and opens its version (serving's start waits for this). */
  async start(): Promise<void> {
    const pointer = await this.read();
    if (pointer) this.currentDefault = { version: pointer.version, generation: pointer.generation };
    await (
      await this.options.registry.open(this.currentDefault.version)
    ).started;
    // A poll still adopting (opening a promoted version) is not queued behind again.
    this.timer = setInterval(() => {
      if (this.polls === 0) void this.poll();
    }, this.options.pollMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Follows the pointer now (after this process promoted, or on the timer); resolves once the
   * pointer as it is when this poll's turn comes has been adopted. Polls run one after another,
   * so that a promotion's own poll never returns with an older pointer adopted by the timer.
   */
  poll(): Promise<void> {
    this.polls++;
    const run = this.queue.then(() => this.pollOnce()).finally(() => this.polls--);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async pollOnce(): Promise<void> {
    await this.closeRetired();
    const pointer = await this.read();
    if (!pointer || pointer.generation === this.currentDefault.generation) return;
    // A promoted version cannot be opened during a broker outage: it is adopted once it is back.
    if (!this.options.registry.logReachable) return;
    await this.adopt(pointer);
  }

  /** Versions retired while open are closed (never the default: it cannot be retired). */
  private async closeRetired(): Promise<void> {
    const { registry, logger } = this.options;
    try {
      for (const version of await registry.closeRetired()) logger.info({ version }, 'closed a retired version');
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'cannot check for retired versions');
    }
  }

  private async read(): Promise<DefaultVersion | undefined> {
    try {
      const pointer = await readDefaultVersion(this.options.state);
      this.lastError = null;
      return pointer;
    } catch (err) {
      // A damaged pointer keeps the current default: answering with a known version beats none.
      this.lastError = errorMessage(err);
      this.options.logger.error({ err: this.lastError }, 'cannot read the default version; keeping the current one');
      return undefined;
    }
  }

  private async adopt(pointer: DefaultVersion): Promise<void> {
    const { registry, logger } = this.options;
    try {
      await registry.whenReady(pointer.version);
    } catch (err) {
      this.lastError = `version ${pointer.version} (promoted) cannot answer: ${errorMessage(err)}`;
      logger.error({ version: pointer.version, err: errorMessage(err) }, 'promoted version cannot be opened; keeping the current one');
      return;
    }
    const before = this.currentDefault.version;
    this.currentDefault = { version: pointer.version, generation: pointer.generation };
    logger.info({ version: pointer.version, previous: before, generation: pointer.generation }, 'default version changed');
  }
}
