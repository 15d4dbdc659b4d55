/**
 * The event log contract. Every layer reads and writes the log only through this interface; two
 * adapters implement it:
 * - `kafka/kafkaLog.ts`: Apache Kafka through kafkajs (idempotent producer, read_committed
 *   consumers, transactions);
 * - `embedded/embeddedLog.ts`: append-only segment files under the data dir, for the all-in-one
 *   demo with no Java and no Docker.
 * `__tests__/eventLog.contract.spec.ts` runs the same suite against both.
 *
 * Offsets are JavaScript numbers: exact up to 2^53 records per partition, far beyond any log
 * this platform will hold, and much cheaper than bigint on the hot path.
 */

import type { LogHealth } from './outages.ts';

export type Headers = Record<string, string>;

export interface TopicSpec {
  name: string;
  partitions: number;
  /** Kafka topic configs, e.g. `{ 'cleanup.policy': 'compact', 'retention.ms': '-1' }`. */
  config?: Record<string, string>;
}

export interface OutgoingRecord {
  /** Records with the same key land in the same partition (see `partitioner.ts`). */
  key: string | null;
  value: Buffer | string | null;
  /** Explicit partition; when absent it is derived from the key (round-robin without key). */
  partition?: number;
  /** Record timestamp (epoch ms); defaults to the time of sending. */
  timestamp?: number;
  headers?: Headers;
}

export interface LogRecord {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  timestamp: number;
  headers: Headers;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface PartitionOffset extends TopicPartition {
  /** The offset of the next record to read (Kafka's committed-offset convention). */
  offset: number;
  /**
   * Committed with the offset, atomically (Kafka's offset commit metadata, at most 4096 bytes by
   * default): what the committer wants a later reader of the offset to know, such as the name of
   * the checkpoint that holds the state at this offset.
   */
  metadata?: string;
}

/** A committed offset with the metadata committed with it ('' when none was). */
export interface CommittedOffset {
  offset: number;
  metadata: string;
}

export interface RecordBatch {
  topic: string;
  partition: number;
  records: LogRecord[];
  /** End offset of the partition when the batch was fetched (for lag). */
  highWatermark: number;
  /**
   * Position after this batch: the offset of the next record to read. It can be past the last
   * record's offset + 1 when the log holds transaction markers or aborted records.
   */
  nextOffset: number;
  /**
   * Keeps the consumer's group membership alive while the application holds the batch longer
   * than usual (a throttled replay waits inside it); absent where there is no group session.
   */
  heartbeat?: () => Promise<void>;
}

export interface PartitionProgress extends TopicPartition {
  nextOffset: number;
  highWatermark: number;
}

export interface ConsumerOptions {
  groupId: string;
  /** Where to start when the group has no committed offset and `startOffsets` does not say. */
  fromBeginning?: boolean;
  /** Maximum bytes per fetch (per partition for Kafka). */
  maxBytesPerPartition?: number;
}

export interface AssignmentContext {
  /**
   * True once a newer assignment is waiting behind this one (the consumer rejoined its group, or
   * lost its membership): work for this one can stop, the next call decides.
   */
  superseded(): boolean;
}

export interface RunOptions {
  /**
   * Called with every new assignment (after each rebalance, and once at start), before any batch
   * of a newly assigned partition is delivered; calls never overlap. It returns where each
   * partition must start: applications that keep their own offsets (speed checkpoints, the lake
   * manifest) return them here; partitions left out start at the group's committed offset, else
   * per `fromBeginning`. Partitions that disappear from the assignment were revoked. A consumer
   * that lost its group membership (it crashed in a broker outage, or the group expelled it)
   * owns nothing: it is handed an empty assignment first, and what it gets when it rejoins is a
   * new assignment, whatever it held before.
   */
  onAssignment?: (assigned: TopicPartition[], context?: AssignmentContext) => Promise<PartitionOffset[] | void>;
  /**
   * Called for each batch of one partition, in offset order. Within a partition, the next batch
   * is not delivered before the promise resolves. A thrown error stops the consumer (`done`
   * rejects): the application decides how to recover; nothing is committed implicitly. A `seek`
   * of the partition while the batch is handled wins over the batch's end.
   */
  eachBatch: (batch: RecordBatch) => Promise<void>;
  /**
   * Called after every fetch that moved a partition's position, including fetches that only
   * held transaction markers or aborted records (which never reach `eachBatch`). Readers use it
   * to know when they have caught up with the end of a partition.
   */
  onProgress?: (progress: PartitionProgress) => void;
}

export interface LogConsumer {
  subscribe(topics: string[]): Promise<void>;
  /** Starts consuming; resolves once the consumer runs, rejects on startup failure. */
  run(options: RunOptions): Promise<void>;
  /**
   * Resolves when the consumer stops (after `stop()` or on a fatal error, which it rethrows).
   * Broker outages are not fatal: the consumer rejoins its group when the broker is back
   * (services/log/outages.ts says what is).
   */
  done(): Promise<void>;
  /** Stores committed offsets for the group (next offset to read). */
  commit(offsets: PartitionOffset[]): Promise<void>;
  seek(offset: PartitionOffset): void;
  pause(partitions: TopicPartition[]): void;
  resume(partitions: TopicPartition[]): void;
  assignment(): TopicPartition[];
  /** True from the moment the consumer knows its assignment is changing (a rebalance, a lost membership) until the next one is handed over. */
  isRebalancing(): boolean;
  stop(): Promise<void>;
}

export interface LogTransaction {
  send(topic: string, records: OutgoingRecord[]): Promise<void>;
  /** Commits these consumer offsets as part of the transaction (Kafka's sendOffsetsToTransaction). */
  sendOffsets(groupId: string, offsets: PartitionOffset[]): Promise<void>;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface LogProducer {
  /** Sends records; resolves when all are acknowledged by the log (durable). */
  send(topic: string, records: OutgoingRecord[]): Promise<void>;
  /**
   * Begins a transaction: output records and consumer offsets become visible to
   * read_committed readers together, or not at all. Only producers opened with a
   * `transactionalId` may call it; the adapter's `capabilities.transactions` says if it can.
   */
  transaction(): Promise<LogTransaction>;
  close(): Promise<void>;
}

export interface ProducerOptions {
  /**
   * Stable id for a transactional producer. A new producer with the same id fences the old
   * one (zombie fencing), so give one per unit of ownership (for example per input partition).
   */
  transactionalId?: string;
}

export interface EventLogCapabilities {
  transactions: boolean;
  /** More than one member per consumer group, with partitions shared between them. */
  groupRebalancing: boolean;
}

export interface EventLog {
  readonly kind: 'kafka' | 'embedded';
  readonly capabilities: EventLogCapabilities;
  /** Human-readable location: broker list or directory. */
  readonly location: string;
  /** Whether the log answers now (services/log/outages.ts): the embedded log always does. */
  readonly health: LogHealth;

  /** Creates missing topics; existing ones are left as they are (reported in `existing`). */
  createTopics(specs: TopicSpec[]): Promise<{ created: string[]; existing: string[] }>;
  deleteTopics(names: string[]): Promise<void>;
  listTopics(): Promise<string[]>;
  /** Throws `InfrastructureError` when the topic does not exist. */
  partitionCount(topic: string): Promise<number>;
  /** Next offset to be written, per partition (read_committed: the last stable offset). */
  endOffsets(topic: string): Promise<number[]>;
  /** First offset still held, per partition. */
  beginningOffsets(topic: string): Promise<number[]>;
  /** Earliest offset whose record timestamp is >= `timestamp`, per partition (end offset if none). */
  offsetsForTimestamp(topic: string, timestamp: number): Promise<number[]>;
  /** Committed offsets of a consumer group (null when the group never committed one). */
  committedOffsets(groupId: string, topic: string): Promise<(number | null)[]>;
  /** The same with the metadata each offset was committed with, read in the same request. */
  committedOffsetsWithMetadata(groupId: string, topic: string): Promise<(CommittedOffset | null)[]>;
  /**
   * Deletes consumer groups and their committed offsets (groups that do not exist are skipped).
   * A group with active members cannot be deleted: stop its consumers first.
   */
  deleteGroups(groupIds: string[]): Promise<void>;

  producer(options?: ProducerOptions): Promise<LogProducer>;
  consumer(options: ConsumerOptions): LogConsumer;
  close(): Promise<void>;
}
