/**
 * Materializes a speed view topic (`views.speed.<version>`, compacted) into a VersionView.
 *
 * The consumer reads with read_committed (the log adapter's only mode), so rows of a speed
 * transaction that was aborted, or is still open, are never served: serving shows exactly the
 * states the speed layer committed together with its input offsets. It reads every partition
 * from the beginning in a consumer group of its own and never commits: the view lives in memory
 * and is rebuilt from the compacted topic at each start.
 *
 * "Caught up" = every partition's position reached the end offset (last stable offset) that the
 * topic had when the materializer started; /readyz waits for it.
 *
 * A broker outage: the consumer rejoins when the broker is back and resumes where it stopped; the
 * view keeps answering from memory meanwhile. A topic deleted while the broker answers is fatal
 * for the view (`onFatal`): the registry decides what that means (a retired version, or not).
 */
import { randomBytes } from 'node:crypto';
import { errorMessage } from '../../services/errors.ts';
import { classifyLogError } from '../../services/log/outages.ts';
import { isGranularity, type Granularity } from '../../services/metrics/definitions.ts';
import type { EventLog, LogConsumer, LogRecord } from '../../services/log/eventLog.ts';
import type { Logger } from '../../services/observability/logger.ts';
import { SESSION_GRANULARITY, anyViewRowSchema, isSessionRow } from '../../services/views/viewRow.ts';
import type { VersionView } from './versionView.ts';

const KEY_SEP = '\u001f';

export interface PartitionPosition {
  partition: number;
  nextOffset: number;
  highWatermark: number;
  /** End offset when serving started: the catch-up target. */
  target: number;
}

export interface SpeedMaterializerOptions {
  log: EventLog;
  view: VersionView;
  topic: string;
  logger: Logger;
  /** How often to look again for a topic that does not exist yet. */
  retryMs: number;
  /** What retrying cannot fix happened to the view (its topic was deleted, the credentials refused). */
  onFatal?: (err: unknown) => void;
}

export class SpeedMaterializer {
  private consumer: LogConsumer | undefined;
  private readonly positions = new Map<number, PartitionPosition>();
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  topicExists = false;
  rejectedRows = 0;
  lastError: string | null = null;
  private caughtUpResolvers: (() => void)[] = [];

  constructor(private readonly options: SpeedMaterializerOptions) {}

  /**
   * Starts consuming, or keeps looking for the topic if it does not exist yet (then nothing to
   * catch up). Rejects when the log cannot be reached at all; after that first look, a failure
   * (a topic just created whose leaders are not elected yet, a broker restart) is retried every
   * `retryMs`, resuming from the positions read so far: serving never gives a view up.
   */
  async start(): Promise<void> {
    if (this.stopped) return;
    const { log, topic } = this.options;
    const topics = await log.listTopics();
    if (!topics.includes(topic)) return this.retryLater();
    await this.consume();
  }

  private retryLater(): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.start().catch((e: unknown) => {
        this.fail(e);
        if (classifyLogError(e) === 'fatal') return this.options.onFatal?.(e);
        this.retryLater();
      });
    }, this.options.retryMs);
    this.retryTimer.unref();
  }

  private async consume(): Promise<void> {
    const { log, topic } = this.options;
    if (!this.topicExists) {
      // The catch-up target: the topic's end when serving first saw it.
      const ends = await log.endOffsets(topic);
      ends.forEach((end, partition) => this.positions.set(partition, { partition, nextOffset: 0, highWatermark: end, target: end }));
      this.topicExists = true;
    }
    const consumer = log.consumer({
      groupId: `lk-serve-${this.options.view.version}-${process.pid}-${randomBytes(4).toString('hex')}`,
      fromBeginning: true,
    });
    this.consumer = consumer;
    await consumer.subscribe([topic]);
    await consumer.run({
      onAssignment: async (assigned) => assigned.map((tp) => ({ ...tp, offset: this.positions.get(tp.partition)?.nextOffset ?? 0 })),
      eachBatch: async (batch) => {
        for (const record of batch.records) this.apply(record);
        // Tombstones and status move the retention watermark: forget what it expired.
        this.options.view.evictExpired();
        this.advance(batch.partition, batch.nextOffset, batch.highWatermark);
      },
      onProgress: (p) => this.advance(p.partition, p.nextOffset, p.highWatermark),
    });
    consumer.done().catch((e: unknown) => {
      this.fail(e);
      if (this.consumer === consumer) this.consumer = undefined;
      if (classifyLogError(e) === 'fatal') return this.options.onFatal?.(e);
      // A new consumer resumes where this one stopped (rows are idempotent upserts anyway).
      this.retryLater();
    });
    this.lastError = null;
    this.settleCaughtUp();
  }

  private fail(err: unknown): void {
    if (this.stopped) return;
    this.lastError = errorMessage(err);
    // An outage is said once by the log's health; the view keeps retrying quietly.
    const level = classifyLogError(err) === 'retry' ? 'debug' : 'error';
    this.options.logger[level]({ topic: this.options.topic, err: this.lastError }, 'speed view consumer failed; retrying');
  }

  private apply(record: LogRecord): void {
    const why = applySpeedViewRecord(this.options.view, record.key, record.value);
    if (why !== undefined) this.reject(record, why);
  }

  private reject(record: LogRecord, why: string): void {
    // A row serving cannot read is skipped, not fatal: the rest of the view stays available.
    this.rejectedRows++;
    if (this.rejectedRows <= 10)
      this.options.logger.warn(
        { topic: record.topic, partition: record.partition, offset: record.offset, why },
        'skipped an unreadable speed view row',
      );
  }

  private advance(partition: number, nextOffset: number, highWatermark: number): void {
    const p = this.positions.get(partition) ?? { partition, nextOffset: 0, highWatermark: 0, target: 0 };
    p.nextOffset = Math.max(p.nextOffset, nextOffset);
    p.highWatermark = Math.max(p.highWatermark, highWatermark);
    this.positions.set(partition, p);
    this.settleCaughtUp();
  }

  get caughtUp(): boolean {
    if (!this.topicExists) return true;
    if (!this.consumer) return false;
    for (const p of this.positions.values()) if (p.nextOffset < p.target) return false;
    return true;
  }

  /** Resolves once the view has caught up with the topic as it was at start. */
  whenCaughtUp(): Promise<void> {
    if (this.caughtUp) return Promise.resolve();
    return new Promise((resolve) => this.caughtUpResolvers.push(resolve));
  }

  private settleCaughtUp(): void {
    if (this.caughtUpResolvers.length === 0 || !this.caughtUp) return;
    const resolvers = this.caughtUpResolvers;
    this.caughtUpResolvers = [];
    for (const r of resolvers) r();
  }

  partitionPositions(): PartitionPosition[] {
    return [...this.positions.values()].sort((a, b) => a.partition - b.partition);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.consumer?.stop();
  }
}

/**
 * Applies one record of a speed view topic to the view: a row (upsert) or a tombstone (the
 * speed layer deleted an expired window's row, or a partial session that moved its start or was
 * merged into another, services/views/viewRow.ts viewRowKey). Window rows and session rows share
 * the topic; a session row's granularity is `session`. Returns why the record cannot be read, or
 * undefined.
 */
export function applySpeedViewRecord(view: VersionView, key: Buffer | null, value: Buffer | null): string | undefined {
  if (value === null) {
    const parts = key?.toString('utf8').split(KEY_SEP);
    if (parts && parts.length >= 5 && parts[1] === SESSION_GRANULARITY) {
      const start = Number(parts[2]);
      const partition = Number(parts[3]);
      if (!Number.isInteger(start) || !Number.isInteger(partition)) return 'session tombstone with an unreadable key';
      view.removeSpeedSession(parts[0]!, parts.slice(4).join(KEY_SEP), start, partition);
      return undefined;
    }
    if (!parts || parts.length < 5 || !isGranularity(parts[1]!)) return 'tombstone with an unreadable key';
    view.removeSpeedRow(parts[0]!, parts[1] as Granularity, parts.slice(4).join(KEY_SEP), Number(parts[2]), Number(parts[3]));
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    return 'value is not JSON';
  }
  const row = anyViewRowSchema.safeParse(parsed);
  if (!row.success) return row.error.issues[0]?.message ?? 'invalid row';
  if (isSessionRow(row.data)) view.applySpeedSession(row.data);
  else view.applySpeedRow(row.data);
  return undefined;
}
