/**
 * Kafka adapter of the event log, on kafkajs.
 *
 * - Producers are idempotent (acks=all, one request in flight, as kafkajs requires for
 *   idempotence) and send large batches, chunked so that no partition's record batch exceeds
 *   the broker's default `max.message.bytes` (1 MiB).
 * - Consumers read with isolation level read_committed: records of open or aborted transactions
 *   are never delivered.
 * - Positions owned by the application (speed checkpoints, the lake manifest) are applied with
 *   `onAssignment`; records before the requested position are filtered here, and a batch fetched
 *   from a wrong position is dropped and re-fetched, so that a rebalance can never hand the
 *   application a record twice or skip one.
 */
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import type * as Kafkajs from 'kafkajs';
import type { Admin, Consumer, EachBatchPayload, Kafka as KafkaClient, Producer, Message, LogEntry } from 'kafkajs';
// The patches replace some of kafkajs's modules, so they must be installed before kafkajs loads:
// kafkajs is required here, after them, and never imported statically (an ESM loader may load
// a statically imported CommonJS package while linking, before any module body runs).
import './kafkajsPatches.ts';
import { InfrastructureError, IllegalStateError, errorMessage } from '../../errors.ts';
import { logger } from '../../observability/logger.ts';
import type {
  ConsumerOptions,
  EventLog,
  Headers,
  LogConsumer,
  LogProducer,
  LogRecord,
  LogTransaction,
  OutgoingRecord,
  PartitionOffset,
  ProducerOptions,
  RunOptions,
  TopicPartition,
  TopicSpec,
} from '../eventLog.ts';
import { partitionForKey } from '../partitioner.ts';
import { explainConnectFailure, saslErrorFromKafkajs } from './connectionDiagnosis.ts';
import { PLAINTEXT_SECURITY, tlsConnectionOptions, type KafkaSecurity } from './kafkaClientConfig.ts';

const { Kafka, logLevel } = createRequire(import.meta.url)('kafkajs') as typeof Kafkajs;

/** Broker default `max.message.bytes` is 1 MiB; stay below it with room for batch overhead. */
const MAX_PARTITION_CHUNK_BYTES = 900 * 1024;
const RECORD_OVERHEAD_BYTES = 70;
/** About 2 minutes of retries with kafkajs's backoff (300 ms doubling, capped at 30 s). */
const PRODUCER_RETRIES = 8;
/**
 * How long a topic's partition count is trusted, and how often consumers refresh metadata:
 * partitions can be added to a topic while everything runs (its new partitions are then read,
 * and produced to, within this time).
 */
const METADATA_MAX_AGE_MS = 5_000;
/** How long beginning a transaction waits for the transaction coordinator (Java: max.block.ms). */
const TRANSACTION_BEGIN_TIMEOUT_MS = 60_000;
const TRANSACTION_BEGIN_MAX_BACKOFF_MS = 5_000;
/** kafkajs warns about bounded retries on every idempotent producer; the bound is deliberate. */
const EXPECTED_WARNINGS = [/Limiting retries for the idempotent producer/];

export interface KafkaLogOptions {
  brokers: string[];
  clientId?: string;
  /** How long to try to reach the brokers before failing (ms). */
  connectTimeoutMs?: number;
  /** TLS and SASL (from --kafka-config, services/log/kafka/kafkaClientConfig.ts); default plaintext. */
  security?: KafkaSecurity;
}

/**
 * The coordinator could not be found or is not ready yet: worth asking again. kafkajs reports a
 * failed FindCoordinator as KafkaJSGroupCoordinatorNotFound (non-retriable in its own retrier),
 * and a coordinator still loading its log with the protocol codes below.
 */
function isCoordinatorUnavailable(err: unknown): boolean {
  const e = err as { name?: string; type?: string; retriable?: boolean } | null;
  if (!e) return false;
  if (e.name === 'KafkaJSGroupCoordinatorNotFound' || e.name === 'KafkaJSBrokerNotFound') return true;
  return [
    'COORDINATOR_NOT_AVAILABLE',
    'GROUP_COORDINATOR_NOT_AVAILABLE',
    'COORDINATOR_LOAD_IN_PROGRESS',
    'NOT_COORDINATOR',
    'NOT_COORDINATOR_FOR_GROUP',
    'CONCURRENT_TRANSACTIONS',
  ].includes(e.type ?? '');
}

const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

function kafkaLogCreator() {
  const log = logger.child({ component: 'kafkajs' });
  return () =>
    ({ level, log: entry }: LogEntry) => {
      const { message, ...rest } = entry;
      if (EXPECTED_WARNINGS.some((re) => re.test(message))) return;
      if (level === logLevel.ERROR) log.error(rest, message);
      else if (level === logLevel.WARN) log.warn(rest, message);
      else if (level === logLevel.INFO) log.debug(rest, message);
      else log.trace(rest, message);
    };
}

function toHeaders(headers: Record<string, unknown> | undefined): Headers {
  const out: Headers = {};
  if (!headers) return out;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    out[k] = Buffer.isBuffer(v) ? v.toString('utf8') : Array.isArray(v) ? String(v[0]) : String(v);
  }
  return out;
}

export class KafkaLog implements EventLog {
  readonly kind = 'kafka' as const;
  readonly capabilities = { transactions: true, groupRebalancing: true };
  readonly location: string;
  private readonly kafka: KafkaClient;
  private admin: Admin | undefined;
  private adminConnecting: Promise<Admin> | undefined;
  private readonly partitionCounts = new Map<string, { count: number; at: number }>();
  private readonly closeables = new Set<{ close(): Promise<void> }>();

  private readonly security: KafkaSecurity;

  constructor(private readonly options: KafkaLogOptions) {
    this.location = options.brokers.join(',');
    this.security = options.security ?? PLAINTEXT_SECURITY;
    const { tls, sasl } = this.security;
    const timeout = options.connectTimeoutMs ?? 10_000;
    this.kafka = new Kafka({
      clientId: options.clientId ?? 'lambda-kappa',
      brokers: options.brokers,
      ...(tls ? { ssl: tlsConnectionOptions(tls) } : {}),
      // The one place the password leaves its Secret: kafkajs needs it to authenticate.
      ...(sasl
        ? {
            sasl: {
              mechanism: sasl.mechanism.toLowerCase(),
              username: sasl.username,
              password: sasl.password.reveal(),
            } as Kafkajs.SASLOptions,
          }
        : {}),
      connectionTimeout: Math.min(timeout, 3_000),
      requestTimeout: 30_000,
      // Bounded retries: an unreachable broker is reported within about `timeout`, never a hang.
      retry: { retries: 5, initialRetryTime: 200, maxRetryTime: Math.max(1_000, timeout / 4) },
      logLevel: logLevel.INFO,
      logCreator: kafkaLogCreator,
    });
  }

  private wrap(action: string, err: unknown): InfrastructureError {
    const refused = saslErrorFromKafkajs(err, this.location, this.security);
    if (refused) return refused;
    const detail = errorMessage(err);
    if (/ECONNREFUSED|ENOTFOUND|Connection timeout|connect/i.test(detail) && !/topic/i.test(detail)) {
      return new InfrastructureError(`cannot reach Kafka at ${this.location} (${action}): ${detail}`, { cause: err });
    }
    return new InfrastructureError(`Kafka ${action} failed: ${detail}`, { cause: err });
  }

  /**
   * A failed connect: a mismatch between the client's security settings and the listener, named
   * by the connection diagnosis (a fatal KafkaSecurityError), else the usual message.
   */
  async connectError(action: string, err: unknown): Promise<InfrastructureError> {
    return (await explainConnectFailure(err, this.options.brokers, this.security)) ?? this.wrap(action, err);
  }

  private async adminClient(): Promise<Admin> {
    if (this.admin) return this.admin;
    this.adminConnecting ??= (async () => {
      const admin = this.kafka.admin();
      try {
        await admin.connect();
        // connect() only opens the seed connection; a listener that wants SASL (or another
        // protocol) closes it at the first real request: make that happen here, where a
        // failure is diagnosed, rather than in the command's first request.
        await admin.describeCluster();
      } catch (err) {
        this.adminConnecting = undefined;
        throw await this.connectError('connect', err);
      }
      this.admin = admin;
      return admin;
    })();
    return this.adminConnecting;
  }

  async createTopics(specs: TopicSpec[]): Promise<{ created: string[]; existing: string[] }> {
    const admin = await this.adminClient();
    const existingNow = new Set(await admin.listTopics().catch((e) => Promise.reject(this.wrap('list topics', e))));
    const missing = specs.filter((s) => !existingNow.has(s.name));
    if (missing.length > 0) {
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: missing.map((s) => ({
            topic: s.name,
            numPartitions: s.partitions,
            replicationFactor: -1,
            configEntries: Object.entries(s.config ?? {}).map(([name, value]) => ({ name, value })),
          })),
        });
      } catch (err) {
        // kafkajs gives up waiting for the new partitions' leaders after a few metadata retries
        // ("does not host this topic-partition", retriable) on a busy broker, although the
        // topics were created: wait for the leaders here, longer, before calling it a failure.
        const retriable = (err as { retriable?: boolean }).retriable === true;
        if (!retriable || !(await this.waitForLeaders(missing, 60_000))) throw this.wrap('create topics', err);
      }
    }
    return { created: missing.map((s) => s.name), existing: specs.filter((s) => existingNow.has(s.name)).map((s) => s.name) };
  }

  /** True once every partition of `specs` has a leader (false after `timeoutMs`). */
  private async waitForLeaders(specs: TopicSpec[], timeoutMs: number): Promise<boolean> {
    const admin = await this.adminClient();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const meta = await admin.fetchTopicMetadata({ topics: specs.map((s) => s.name) }).catch(() => undefined);
      const ready =
        meta !== undefined &&
        specs.every((s) => {
          const t = meta.topics.find((m) => m.name === s.name);
          return t !== undefined && t.partitions.length === s.partitions && t.partitions.every((p) => p.leader >= 0);
        });
      if (ready) return true;
      await new Promise((r) => setTimeout(r, 250));
    }
    return false;
  }

  async deleteTopics(names: string[]): Promise<void> {
    const admin = await this.adminClient();
    const existing = new Set(await admin.listTopics());
    const toDelete = names.filter((n) => existing.has(n));
    if (toDelete.length > 0) await admin.deleteTopics({ topics: toDelete }).catch((e) => Promise.reject(this.wrap('delete topics', e)));
    for (const n of names) this.partitionCounts.delete(n);
  }

  async listTopics(): Promise<string[]> {
    const admin = await this.adminClient();
    try {
      return (await admin.listTopics()).filter((t) => !t.startsWith('__'));
    } catch (err) {
      throw this.wrap('list topics', err);
    }
  }

  async partitionCount(topic: string): Promise<number> {
    const cached = this.partitionCounts.get(topic);
    if (cached !== undefined && Date.now() - cached.at < METADATA_MAX_AGE_MS) return cached.count;
    const admin = await this.adminClient();
    const topics = await admin.listTopics().catch((e) => Promise.reject(this.wrap('list topics', e)));
    if (!topics.includes(topic)) {
      throw new InfrastructureError(`topic "${topic}" does not exist on ${this.location}; create it with \`lk topics create\``);
    }
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch((e) => Promise.reject(this.wrap('metadata', e)));
    const count = meta.topics[0]?.partitions.length ?? 0;
    this.partitionCounts.set(topic, { count, at: Date.now() });
    return count;
  }

  private async offsets(topic: string): Promise<{ partition: number; offset: string; low: string; high: string }[]> {
    await this.partitionCount(topic);
    const admin = await this.adminClient();
    try {
      return (await admin.fetchTopicOffsets(topic)).sort((a, b) => a.partition - b.partition);
    } catch (err) {
      throw this.wrap('fetch offsets', err);
    }
  }

  async endOffsets(topic: string): Promise<number[]> {
    return (await this.offsets(topic)).map((o) => Number(o.high));
  }

  async beginningOffsets(topic: string): Promise<number[]> {
    return (await this.offsets(topic)).map((o) => Number(o.low));
  }

  async offsetsForTimestamp(topic: string, timestamp: number): Promise<number[]> {
    await this.partitionCount(topic);
    const admin = await this.adminClient();
    const res = await admin
      .fetchTopicOffsetsByTimestamp(topic, timestamp)
      .catch((e) => Promise.reject(this.wrap('offsets by timestamp', e)));
    const ends = await this.endOffsets(topic);
    return res.sort((a, b) => a.partition - b.partition).map((o) => (Number(o.offset) < 0 ? ends[o.partition]! : Number(o.offset)));
  }

  async committedOffsets(groupId: string, topic: string): Promise<(number | null)[]> {
    const count = await this.partitionCount(topic);
    const admin = await this.adminClient();
    const res = await admin.fetchOffsets({ groupId, topics: [topic] }).catch((e) => Promise.reject(this.wrap('fetch group offsets', e)));
    const out: (number | null)[] = new Array(count).fill(null);
    for (const p of res[0]?.partitions ?? []) {
      const n = Number(p.offset);
      out[p.partition] = n >= 0 ? n : null;
    }
    return out;
  }

  async deleteGroups(groupIds: string[]): Promise<void> {
    const admin = await this.adminClient();
    const listed = await admin.listGroups().catch((e) => Promise.reject(this.wrap('list groups', e)));
    const existing = new Set(listed.groups.map((g) => g.groupId));
    const toDelete = groupIds.filter((g) => existing.has(g));
    if (toDelete.length === 0) return;
    try {
      await admin.deleteGroups(toDelete);
    } catch (err) {
      throw this.wrap(`delete groups ${toDelete.join(', ')} (are their consumers stopped?)`, err);
    }
  }

  /** Groups records into kafkajs messages per partition, chunked below the broker's batch limit. */
  async toChunks(topic: string, records: OutgoingRecord[]): Promise<Message[][]> {
    const partitions = await this.partitionCount(topic);
    const chunks: Message[][] = [];
    const chunkBytes = new Map<number, number>();
    let current: Message[] = [];
    let roundRobin = 0;
    for (const r of records) {
      const partition = r.partition ?? (r.key !== null ? partitionForKey(r.key, partitions) : roundRobin++ % partitions);
      const size =
        RECORD_OVERHEAD_BYTES +
        (r.key?.length ?? 0) +
        (r.value === null ? 0 : typeof r.value === 'string' ? Buffer.byteLength(r.value) : r.value.length);
      const used = chunkBytes.get(partition) ?? 0;
      if (used + size > MAX_PARTITION_CHUNK_BYTES && current.length > 0) {
        chunks.push(current);
        current = [];
        chunkBytes.clear();
      }
      chunkBytes.set(partition, (chunkBytes.get(partition) ?? 0) + size);
      current.push({
        key: r.key,
        value: r.value,
        partition,
        // Without an explicit timestamp kafkajs stamps the batch once, instead of sorting every
        // record's timestamp as strings; topics with LogAppendTime ignore it anyway.
        ...(r.timestamp !== undefined ? { timestamp: String(r.timestamp) } : {}),
        ...(r.headers ? { headers: r.headers } : {}),
      });
    }
    if (current.length > 0) chunks.push(current);
    return chunks;
  }

  async producer(options: ProducerOptions = {}): Promise<LogProducer> {
    const producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      // kafkajs retries an idempotent producer forever by default: a broker that goes away
      // mid-run would hang `lk produce`. Bound it like the Java client's delivery.timeout.ms
      // (2 minutes): a restarting broker is ridden out, a dead one becomes a clear error.
      retry: { retries: PRODUCER_RETRIES, initialRetryTime: 300, maxRetryTime: 30_000 },
      allowAutoTopicCreation: false,
      ...(options.transactionalId ? { transactionalId: options.transactionalId, transactionTimeout: 60_000 } : {}),
    });
    try {
      await producer.connect();
    } catch (err) {
      throw await this.connectError('producer connect', err);
    }
    const adapter = new KafkaProducerAdapter(this, producer, options.transactionalId);
    this.closeables.add(adapter);
    return adapter;
  }

  consumer(options: ConsumerOptions): LogConsumer {
    const consumer = this.kafka.consumer({
      groupId: options.groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxBytesPerPartition: options.maxBytesPerPartition ?? 4 * 1024 * 1024,
      maxBytes: 32 * 1024 * 1024,
      maxWaitTimeInMs: 200,
      sessionTimeout: 10_000,
      rebalanceTimeout: 20_000,
      heartbeatInterval: 1_000,
      // New partitions of a subscribed topic are noticed on a metadata refresh, and rebalanced in.
      metadataMaxAge: METADATA_MAX_AGE_MS,
    });
    const adapter = new KafkaConsumerAdapter(this, consumer, options);
    this.closeables.add({ close: () => adapter.stop() });
    return adapter;
  }

  wrapError(action: string, err: unknown): InfrastructureError {
    return this.wrap(action, err);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.closeables].map((c) => c.close()));
    this.closeables.clear();
    if (this.admin) await this.admin.disconnect().catch(() => undefined);
    this.admin = undefined;
    this.adminConnecting = undefined;
  }
}

class KafkaProducerAdapter implements LogProducer {
  private inTransaction = false;
  constructor(
    private readonly log: KafkaLog,
    private readonly producer: Producer,
    private readonly transactionalId: string | undefined,
  ) {}

  async send(topic: string, records: OutgoingRecord[]): Promise<void> {
    if (this.inTransaction) throw new IllegalStateError('send outside the open transaction; use the transaction object');
    for (const messages of await this.log.toChunks(topic, records)) {
      try {
        await this.producer.send({ topic, messages, acks: -1 });
      } catch (err) {
        throw this.log.wrapError(`produce to ${topic}`, err);
      }
    }
  }

  async transaction(): Promise<LogTransaction> {
    if (!this.transactionalId) throw new IllegalStateError('transaction() needs a producer opened with a transactionalId');
    if (this.inTransaction) throw new IllegalStateError('a transaction is already open on this producer');
    const tx = await this.beginTransaction();
    this.inTransaction = true;
    const end = () => {
      this.inTransaction = false;
    };
    const log = this.log;
    return {
      async send(topic, records) {
        for (const messages of await log.toChunks(topic, records)) {
          await tx.send({ topic, messages, acks: -1 }).catch((e) => Promise.reject(log.wrapError(`transactional produce to ${topic}`, e)));
        }
      },
      async sendOffsets(groupId, offsets) {
        const byTopic = new Map<string, { partition: number; offset: string }[]>();
        for (const o of offsets) {
          const list = byTopic.get(o.topic) ?? [];
          list.push({ partition: o.partition, offset: String(o.offset) });
          byTopic.set(o.topic, list);
        }
        await tx
          .sendOffsets({ consumerGroupId: groupId, topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) })
          .catch((e) => Promise.reject(log.wrapError('send offsets to transaction', e)));
      },
      async commit() {
        try {
          await tx.commit();
        } catch (e) {
          throw log.wrapError('commit transaction', e);
        } finally {
          end();
        }
      },
      async abort() {
        try {
          await tx.abort();
        } catch (e) {
          throw log.wrapError('abort transaction', e);
        } finally {
          end();
        }
      },
    };
  }

  /**
   * Begins a transaction, registering the transactional id first when the producer has none yet
   * (InitProducerId at the transaction coordinator). A coordinator that is loading, moving or
   * busy is waited for up to TRANSACTION_BEGIN_TIMEOUT_MS, as the Java client's
   * initTransactions() blocks for max.block.ms: kafkajs gives up on the first answer of a
   * FindCoordinator call other than COORDINATOR_NOT_AVAILABLE (KafkaJSGroupCoordinatorNotFound,
   * non-retriable for it), which a broker under load gives for seconds. Nothing is registered
   * by a failed attempt, so trying again is safe.
   */
  private async beginTransaction(): Promise<Kafkajs.Transaction> {
    const deadline = Date.now() + TRANSACTION_BEGIN_TIMEOUT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.producer.transaction();
      } catch (err) {
        if (!isCoordinatorUnavailable(err) || Date.now() >= deadline) throw this.log.wrapError('begin transaction', err);
        logger.warn(
          { transactionalId: this.transactionalId, attempt, err: errorMessage(err) },
          'transaction coordinator unavailable; retrying',
        );
        await sleep(Math.min(TRANSACTION_BEGIN_MAX_BACKOFF_MS, 250 * 2 ** attempt));
      }
    }
  }

  async close(): Promise<void> {
    await this.producer.disconnect().catch(() => undefined);
  }
}

class KafkaConsumerAdapter implements LogConsumer {
  private topics: string[] = [];
  private assigned: TopicPartition[] = [];
  /** Next offset the application expects per partition; records before it are filtered out. */
  private readonly expected = new Map<string, number>();
  /** Partitions whose position the application just set: their next batch is checked once. */
  private readonly seekPending = new Set<string>();
  /** Resolves when the application has handled the latest assignment. */
  private assignmentReady: Promise<void> = Promise.resolve();
  private stopped = false;
  private failure: unknown;
  private resolveDone!: () => void;
  private rejectDone!: (err: unknown) => void;
  private readonly donePromise: Promise<void>;

  constructor(
    private readonly log: KafkaLog,
    private readonly consumer: Consumer,
    private readonly options: ConsumerOptions,
  ) {
    this.donePromise = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // An unhandled rejection of `done()` must not crash callers that never await it.
    this.donePromise.catch(() => undefined);
  }

  async subscribe(topics: string[]): Promise<void> {
    for (const t of topics) await this.log.partitionCount(t);
    this.topics = topics;
  }

  async run(options: RunOptions): Promise<void> {
    const { consumer } = this;
    const { GROUP_JOIN, CRASH, END_BATCH_PROCESS } = consumer.events;
    consumer.on(GROUP_JOIN, (event) => {
      const assignment = event.payload.memberAssignment as Record<string, number[]>;
      const next: TopicPartition[] = [];
      for (const [topic, partitions] of Object.entries(assignment)) for (const partition of partitions) next.push({ topic, partition });
      this.assigned = next;
      this.assignmentReady = this.applyAssignment(next, options);
    });
    consumer.on(CRASH, (event) => {
      if (!event.payload.restart) this.fail(event.payload.error);
    });
    consumer.on(END_BATCH_PROCESS, (event) => {
      // Batches that held only transaction markers or aborted records never reach eachBatch,
      // yet they move the position: report them here. Batches with records are reported by
      // handleBatch once the application has processed them.
      const p = event.payload;
      if (p.batchSize !== 0) return;
      const key = tpKey(p.topic, p.partition);
      const nextOffset = Number(p.lastOffset) + 1;
      const expected = this.expected.get(key);
      if (expected !== undefined && nextOffset <= expected) return;
      this.expected.set(key, nextOffset);
      options.onProgress?.({ topic: p.topic, partition: p.partition, nextOffset, highWatermark: Number(p.highWatermark) });
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: this.topics, fromBeginning: this.options.fromBeginning ?? false });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: 1,
        eachBatch: (payload) => this.handleBatch(payload, options),
      });
    } catch (err) {
      throw await this.log.connectError('consumer start', err);
    }
  }

  private async applyAssignment(next: TopicPartition[], options: RunOptions): Promise<void> {
    try {
      const keep = new Set(next.map((tp) => tpKey(tp.topic, tp.partition)));
      for (const k of [...this.expected.keys()]) if (!keep.has(k)) this.expected.delete(k);
      const positions = (await options.onAssignment?.(next)) ?? [];
      for (const p of positions) {
        this.expected.set(tpKey(p.topic, p.partition), p.offset);
        this.seekPending.add(tpKey(p.topic, p.partition));
        this.consumer.seek({ topic: p.topic, partition: p.partition, offset: String(p.offset) });
      }
    } catch (err) {
      this.fail(err);
    }
  }

  private async handleBatch(payload: EachBatchPayload, options: RunOptions): Promise<void> {
    await this.assignmentReady;
    const { batch } = payload;
    if (this.stopped || this.failure !== undefined || payload.isStale() || !payload.isRunning()) return;
    const key = tpKey(batch.topic, batch.partition);
    const expected = this.expected.get(key);
    const firstOffset = Number(batch.firstOffset());
    if (this.seekPending.has(key)) {
      this.seekPending.delete(key);
      if (expected !== undefined && firstOffset > expected) {
        // Fetched from beyond the application's position (for example the group's committed
        // offset is ahead of a checkpoint): go back once rather than skip records. If the
        // re-fetch still starts later, the records in between are gone (compaction, retention).
        this.consumer.seek({ topic: batch.topic, partition: batch.partition, offset: String(expected) });
        return;
      }
    }
    const records: LogRecord[] = [];
    for (const m of batch.messages) {
      const offset = Number(m.offset);
      // Never hand the application a record before its position: no record twice.
      if (expected !== undefined && offset < expected) continue;
      records.push({
        topic: batch.topic,
        partition: batch.partition,
        offset,
        key: m.key ?? null,
        value: m.value ?? null,
        timestamp: Number(m.timestamp),
        headers: toHeaders(m.headers as Record<string, unknown> | undefined),
      });
    }
    const nextOffset = Number(batch.lastOffset()) + 1;
    if (records.length > 0) {
      try {
        await options.eachBatch({
          topic: batch.topic,
          partition: batch.partition,
          records,
          highWatermark: Number(batch.highWatermark),
          nextOffset,
          heartbeat: () => payload.heartbeat(),
        });
      } catch (err) {
        this.fail(err);
        return;
      }
    }
    if (this.stopped || this.failure !== undefined) return;
    this.expected.set(key, nextOffset);
    payload.resolveOffset(batch.lastOffset());
    options.onProgress?.({ topic: batch.topic, partition: batch.partition, nextOffset, highWatermark: Number(batch.highWatermark) });
    await payload.heartbeat().catch(() => undefined);
  }

  private fail(err: unknown): void {
    if (this.failure !== undefined || this.stopped) return;
    this.failure = err;
    // Stop asynchronously: stopping from inside eachBatch would wait for itself.
    setImmediate(() => {
      this.consumer
        .disconnect()
        .catch(() => undefined)
        .finally(() => this.rejectDone(err instanceof Error ? err : new Error(String(err))));
    });
  }

  done(): Promise<void> {
    return this.donePromise;
  }

  async commit(offsets: PartitionOffset[]): Promise<void> {
    try {
      await this.consumer.commitOffsets(offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: String(o.offset) })));
    } catch (err) {
      throw this.log.wrapError('commit offsets', err);
    }
  }

  seek(offset: PartitionOffset): void {
    this.expected.set(tpKey(offset.topic, offset.partition), offset.offset);
    this.seekPending.add(tpKey(offset.topic, offset.partition));
    this.consumer.seek({ topic: offset.topic, partition: offset.partition, offset: String(offset.offset) });
  }

  pause(partitions: TopicPartition[]): void {
    this.consumer.pause(partitions.map((p) => ({ topic: p.topic, partitions: [p.partition] })));
  }

  resume(partitions: TopicPartition[]): void {
    this.consumer.resume(partitions.map((p) => ({ topic: p.topic, partitions: [p.partition] })));
  }

  assignment(): TopicPartition[] {
    return [...this.assigned];
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.consumer.disconnect().catch(() => undefined);
    if (this.failure === undefined) this.resolveDone();
  }
}
