/**
 * Follows the dead-letter topic (`<events topic>.dlq`) and counts its records by reason, for the
 * `pipeline { deadLetters }` field and the dashboard's pipeline panel.
 *
 * Like the speed view materializer it reads every partition from the beginning, through the log
 * contract only (read_committed, the adapters' only mode), in a consumer group of its own that
 * never commits: the counts live in memory and are rebuilt at each start. Dead letters are written
 * by ingest (`lk produce`, `lk generate --to-log`) and by the batch layer's lake writer, as
 * services/ingest/deadLetter.ts lays them out: the reason is the `lk.reason` header.
 *
 * Anybody can write to the topic, so nothing in a record is trusted: a record without a readable
 * reason is counted as "unreadable", never fatal; the number of distinct reasons is bounded (an
 * adversarial producer cannot grow the map), the overflow counted as "other".
 */
import { randomBytes } from 'node:crypto';
import { errorMessage } from '../../services/errors.ts';
import { classifyLogError } from '../../services/log/outages.ts';
import { REJECT_CODES } from '../../services/events/event.ts';
import type { EventLog, LogConsumer, LogRecord } from '../../services/log/eventLog.ts';
import type { Logger } from '../../services/observability/logger.ts';

export const UNREADABLE_REASON = 'unreadable';
export const OTHER_REASON = 'other';
/** Distinct reasons kept; the ingest codes are ~20, so this leaves room for other writers' codes. */
const MAX_REASONS = 64;
/** A reason as a code: what every writer of this platform puts in `lk.reason`. */
const REASON_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
const MAX_MESSAGE_CHARS = 300;
const KNOWN_REASONS = new Set<string>(REJECT_CODES);

export interface ReasonCount {
  reason: string;
  count: number;
  /** Epoch ms of the latest dead letter with this reason (null when none carried a time). */
  lastAt: number | null;
  lastMessage: string | null;
}

export interface DeadLetterStatus {
  topic: string;
  topicExists: boolean;
  caughtUp: boolean;
  total: number;
  byReason: ReasonCount[];
  lastAt: number | null;
  lastError: string | null;
}

export interface DeadLetterCountsOptions {
  log: EventLog;
  /** The dead-letter topic, `<events topic>.dlq` (services/log/topics.ts deadLetterTopic). */
  topic: string;
  logger: Logger;
  /** How often to look again for a topic that does not exist yet, or after a failure. */
  retryMs: number;
}

/** When a dead letter was written: its `lk.ingested-at` header, else the log's timestamp. */
function writtenAt(record: LogRecord): number | null {
  const header = record.headers['lk.ingested-at'];
  const parsed = header === undefined ? NaN : Date.parse(header);
  if (Number.isFinite(parsed)) return parsed;
  return Number.isFinite(record.timestamp) && record.timestamp > 0 ? record.timestamp : null;
}

export class DeadLetterCounts {
  private consumer: LogConsumer | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly counts = new Map<string, ReasonCount>();
  /** Per partition: next offset counted, and the end offset when the topic was first seen (catch-up target). */
  private readonly positions = new Map<number, { next: number; target: number }>();
  private topicExists = false;
  private total = 0;
  private lastAt: number | null = null;
  private lastError: string | null = null;

  constructor(private readonly options: DeadLetterCountsOptions) {}

  /**
   * Starts following the topic, or keeps looking for it (ingest creates it with the events
   * topic). Never rejects: the dead-letter counts are a side panel, and serving must come up
   * (and stay up) whatever state the topic is in; failures are reported in `lastError`.
   */
  async start(): Promise<void> {
    try {
      await this.tryStart();
    } catch (err) {
      this.fail(err);
      this.retryLater();
    }
  }

  private async tryStart(): Promise<void> {
    if (this.stopped) return;
    const { log, topic } = this.options;
    if (!(await log.listTopics()).includes(topic)) return this.retryLater();
    if (!this.topicExists) {
      const ends = await log.endOffsets(topic);
      ends.forEach((end, partition) => this.positions.set(partition, { next: 0, target: end }));
      this.topicExists = true;
    }
    if (this.stopped) return;
    const consumer = log.consumer({ groupId: `lk-serve-dlq-${process.pid}-${randomBytes(4).toString('hex')}`, fromBeginning: true });
    this.consumer = consumer;
    await consumer.subscribe([topic]);
    await consumer.run({
      // Resume where the previous consumer stopped (after a failure): nothing is counted twice.
      onAssignment: async (assigned) => assigned.map((tp) => ({ ...tp, offset: this.positions.get(tp.partition)?.next ?? 0 })),
      eachBatch: async (batch) => {
        for (const record of batch.records) this.count(record);
        this.advance(batch.partition, batch.nextOffset);
      },
      onProgress: (p) => this.advance(p.partition, p.nextOffset),
    });
    consumer.done().catch((e: unknown) => {
      this.fail(e);
      if (this.consumer === consumer) this.consumer = undefined;
      this.retryLater();
    });
    this.lastError = null;
  }

  private retryLater(): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => void this.start(), this.options.retryMs);
    this.retryTimer.unref();
  }

  private fail(err: unknown): void {
    if (this.stopped) return;
    this.lastError = errorMessage(err);
    // A broker outage is said once by the log's health; the counts keep retrying quietly.
    const level = classifyLogError(err) === 'retry' ? 'debug' : 'warn';
    this.options.logger[level]({ topic: this.options.topic, err: this.lastError }, 'dead-letter topic consumer failed; retrying');
  }

  private advance(partition: number, nextOffset: number): void {
    const p = this.positions.get(partition) ?? { next: 0, target: 0 };
    p.next = Math.max(p.next, nextOffset);
    this.positions.set(partition, p);
  }

  private reasonOf(record: LogRecord): string {
    const reason = record.headers['lk.reason'];
    if (reason === undefined || !REASON_PATTERN.test(reason)) return UNREADABLE_REASON;
    if (KNOWN_REASONS.has(reason) || this.counts.has(reason) || this.counts.size < MAX_REASONS) return reason;
    return OTHER_REASON;
  }

  private count(record: LogRecord): void {
    const reason = this.reasonOf(record);
    const at = writtenAt(record);
    const message = reason === UNREADABLE_REASON ? 'no lk.reason header that names a reason' : record.headers['lk.message'];
    let c = this.counts.get(reason);
    if (!c) this.counts.set(reason, (c = { reason, count: 0, lastAt: null, lastMessage: null }));
    c.count++;
    this.total++;
    if (at !== null && (c.lastAt === null || at >= c.lastAt)) {
      c.lastAt = at;
      if (message !== undefined) c.lastMessage = message.slice(0, MAX_MESSAGE_CHARS);
    } else if (c.lastMessage === null && message !== undefined) c.lastMessage = message.slice(0, MAX_MESSAGE_CHARS);
    if (at !== null && (this.lastAt === null || at > this.lastAt)) this.lastAt = at;
  }

  /** Every record the topic held when serving first saw it has been counted. */
  get caughtUp(): boolean {
    if (!this.topicExists) return true;
    for (const p of this.positions.values()) if (p.next < p.target) return false;
    return this.consumer !== undefined;
  }

  status(): DeadLetterStatus {
    return {
      topic: this.options.topic,
      topicExists: this.topicExists,
      caughtUp: this.caughtUp,
      total: this.total,
      byReason: [...this.counts.values()]
        .map((c) => ({ ...c }))
        .sort((a, b) => b.count - a.count || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0)),
      lastAt: this.lastAt,
      lastError: this.lastError,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.consumer?.stop();
  }
}
