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
 * - Broker outages (services/log/outages.ts): a consumer rides them out, rejoining its group when
 *   the broker is back (a consumer that lost its membership is handed an empty assignment first);
 *   it stops only on what retrying cannot fix. Every failure that looks like an outage is reported
 *   to the location's `LogHealth`, whose probe asks a broker directly.
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
import {
  Backoff,
  LogUnavailableError,
  MissingTopicError,
  TRANSACTION_TIMEOUT_MS,
  classifyLogError,
  fatalLogError,
  isConnectionFailure,
  logHealth,
  mentionsMissingTopic,
  type LogHealth,
} from '../outages.ts';
import type {
  AssignmentContext,
  CommittedOffset,
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
/** How long one probe of the brokers may take (services/log/outages.ts LogHealth). */
const PROBE_TIMEOUT_MS = 5_000;

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

/** kafkajs's own words for a broker it cannot reach (it logs them before any error reaches us). */
const KAFKAJS_CONNECTION_TROUBLE =
  /Connection error|Connection timeout|ECONNREFUSED|ECONNRESET|ETIMEDOUT|Failed to connect|Closed connection|broker.*not connected|Request .* timed out|No brokers? available/i;
/** What kafkajs logs when the credentials are refused: kept at error level (the command then stops with one line). */
const KAFKAJS_ACCESS_TROUBLE = /SASL|authenticat|AUTHORIZATION_FAILED|certificate/i;

/**
 * kafkajs's log lines, through pino: at debug level, because each failure kafkajs retries is
 * logged by it many times over; the platform says once per change of state what matters
 * (LogHealth). Connection trouble is reported to the health, which probes the brokers; refused
 * credentials stay errors.
 */
function kafkaLogCreator(health: LogHealth) {
  const log = logger.child({ component: 'kafkajs' });
  return () =>
    ({ level, log: entry }: LogEntry) => {
      const { message, ...rest } = entry;
      const text = `${message} ${typeof rest.error === 'string' ? rest.error : ''}`;
      if (level <= logLevel.WARN && KAFKAJS_CONNECTION_TROUBLE.test(text)) health.suspect(new LogUnavailableError(text));
      if (level === logLevel.ERROR && KAFKAJS_ACCESS_TROUBLE.test(text)) log.error(rest, message);
      else if (level <= logLevel.INFO) log.debug(rest, message);
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
  /** Whether the brokers answer (shared by every client of this broker list in the process). */
  readonly health: LogHealth;
  /** A client that never retries, for the health's probe: one attempt, a quick answer. */
  private readonly probeKafka: KafkaClient;
  private readonly dropProbe: () => void;

  private readonly security: KafkaSecurity;

  constructor(private readonly options: KafkaLogOptions) {
    this.location = options.brokers.join(',');
    this.health = logHealth(this.location);
    this.security = options.security ?? PLAINTEXT_SECURITY;
    const { tls, sasl } = this.security;
    const timeout = options.connectTimeoutMs ?? 10_000;
    const client = {
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
    };
    this.kafka = new Kafka({
      ...client,
      // Bounded retries: an unreachable broker is reported within about `timeout`, never a hang.
      retry: { retries: 5, initialRetryTime: 200, maxRetryTime: Math.max(1_000, timeout / 4) },
      logLevel: logLevel.INFO,
      logCreator: kafkaLogCreator(this.health),
    });
    this.probeKafka = new Kafka({
      ...client,
      connectionTimeout: 1_500,
      requestTimeout: 3_000,
      retry: { retries: 0 },
      logLevel: logLevel.NOTHING,
    });
    this.dropProbe = this.health.setProbe(() => this.probeBrokers());
  }

  /** Asks a broker for the cluster's description with a client of its own: resolves when one answers. */
  private async probeBrokers(): Promise<void> {
    const admin = this.probeKafka.admin();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          await admin.connect();
          await admin.describeCluster();
        })(),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new LogUnavailableError(`no broker of ${this.location} answered within ${PROBE_TIMEOUT_MS} ms`)),
            PROBE_TIMEOUT_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      await admin.disconnect().catch(() => undefined);
    }
  }

  /**
   * A failure of the log as one of the named errors of services/log/outages.ts: refused
   * credentials are fatal, a broker out of reach is `LogUnavailableError` (reported to the health),
   * anything else keeps kafkajs's error as its cause (retryable: classifyLogError).
   */
  private wrap(action: string, err: unknown): InfrastructureError {
    const refused = saslErrorFromKafkajs(err, this.location, this.security);
    if (refused) return refused;
    const fatal = fatalLogError(err, this.location, action);
    if (fatal) return fatal;
    if (err instanceof InfrastructureError && classifyLogError(err) !== 'unrelated') return err;
    const detail = errorMessage(err);
    if (isConnectionFailure(err) || (/ECONNREFUSED|ENOTFOUND|Connection timeout|connect/i.test(detail) && !/topic/i.test(detail))) {
      this.health.suspect(err);
      return new LogUnavailableError(`cannot reach Kafka at ${this.location} (${action}): ${detail}`, { cause: err });
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
      throw new MissingTopicError(topic, `topic "${topic}" does not exist on ${this.location}; create it with \`lk topics create\``);
    }
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch((e) => Promise.reject(this.wrap('metadata', e)));
    const count = meta.topics[0]?.partitions.length ?? 0;
    this.partitionCounts.set(topic, { count, at: Date.now() });
    return count;
  }

  private async offsets(topic: string): Promise<{ partition: number; offset: string; low: string; high: string }[]> {
    await this.partitionCount(topic);
    const admin = await this.adminClient();
    // kafkajs's fetchTopicOffsets throws a TypeError ("Cannot destructure property 'partitions'
    // of 'low.pop(...)'") when a ListOffsets answer lacks the topic, which happens while a
    // leader moves under load; asking again a moment later answers. Anything else is wrapped
    // at once for the outage classification to judge.
    for (let attempt = 1; ; attempt++) {
      try {
        return (await admin.fetchTopicOffsets(topic)).sort((a, b) => a.partition - b.partition);
      } catch (err) {
        if (!(err instanceof TypeError) || attempt >= 5) throw this.wrap('fetch offsets', err);
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
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
    return (await this.committedOffsetsWithMetadata(groupId, topic)).map((c) => c?.offset ?? null);
  }

  async committedOffsetsWithMetadata(groupId: string, topic: string): Promise<(CommittedOffset | null)[]> {
    const count = await this.partitionCount(topic);
    const admin = await this.adminClient();
    const res = await admin.fetchOffsets({ groupId, topics: [topic] }).catch((e) => Promise.reject(this.wrap('fetch group offsets', e)));
    const out: (CommittedOffset | null)[] = new Array(count).fill(null);
    for (const p of res[0]?.partitions ?? []) {
      const n = Number(p.offset);
      out[p.partition] = n >= 0 ? { offset: n, metadata: p.metadata ?? '' } : null;
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
      ...(options.transactionalId ? { transactionalId: options.transactionalId, transactionTimeout: TRANSACTION_TIMEOUT_MS } : {}),
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
    const adapter = new KafkaConsumerAdapter(this, options, (restartOnFailure) =>
      this.kafka.consumer({
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
        // kafkajs restarts a crashed consumer on errors it deems retriable; this says which of
        // those retrying cannot fix (a deleted topic: it would crash again every 200 ms forever).
        retry: { retries: 5, restartOnFailure },
      }),
    );
    this.closeables.add({ close: () => adapter.stop() });
    return adapter;
  }

  wrapError(action: string, err: unknown): InfrastructureError {
    return this.wrap(action, err);
  }

  async close(): Promise<void> {
    this.dropProbe();
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
        const byTopic = new Map<string, { partition: number; offset: string; metadata?: string }[]>();
        for (const o of offsets) {
          const list = byTopic.get(o.topic) ?? [];
          list.push({ partition: o.partition, offset: String(o.offset), ...(o.metadata !== undefined ? { metadata: o.metadata } : {}) });
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
  /** Seeks per partition: a batch handled while its partition was sought does not move it. */
  private readonly seeks = new Map<string, number>();
  /** Assignments are handed to the application one after another, in this chain. */
  private assignments: Promise<void> = Promise.resolve();
  /** Resolves when the application has handled the latest assignment. */
  private assignmentReady: Promise<void> = Promise.resolve();
  /** Increments with every assignment queued: an older one still running is superseded. */
  private assignmentSeq = 0;
  /** The group member id of the current membership (null: none). */
  private memberId: string | null = null;
  private rebalancing = true;
  private running: RunOptions | undefined;
  /** A fatal cause found while deciding whether kafkajs may restart the consumer. */
  private fatalCause: InfrastructureError | undefined;
  private restarting = false;
  private stopped = false;
  private failure: unknown;
  private resolveDone!: () => void;
  private rejectDone!: (err: unknown) => void;
  private readonly donePromise: Promise<void>;
  private readonly consumer: Consumer;

  constructor(
    private readonly log: KafkaLog,
    private readonly options: ConsumerOptions,
    create: (restartOnFailure: (err: Error) => Promise<boolean>) => Consumer,
  ) {
    this.consumer = create((err) => this.mayRestart(err));
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

  /**
   * kafkajs asks this before restarting a consumer that crashed on a retriable error. Restart
   * unless retrying cannot help: an unknown topic that the broker, answering, no longer lists
   * was deleted.
   */
  private async mayRestart(err: Error): Promise<boolean> {
    if (this.stopped) return false;
    const verdict = classifyLogError(err);
    if (verdict === 'fatal') {
      this.fatalCause = this.log.wrapError('consume', err);
      return false;
    }
    if (mentionsMissingTopic(err)) {
      const listed = await this.log.listTopics().catch(() => undefined);
      const gone = listed && this.topics.find((t) => !listed.includes(t));
      if (gone) {
        this.fatalCause = new MissingTopicError(
          gone,
          `topic "${gone}" was deleted from ${this.log.location} while group "${this.options.groupId}" consumed it; nothing can go on without it`,
        );
        return false;
      }
    }
    return verdict === 'retry';
  }

  async run(options: RunOptions): Promise<void> {
    const { consumer } = this;
    this.running = options;
    const { GROUP_JOIN, CRASH, END_BATCH_PROCESS, REBALANCING } = consumer.events;
    consumer.on(GROUP_JOIN, (event) => {
      const { memberId, memberAssignment } = event.payload as { memberId: string; memberAssignment: Record<string, number[]> };
      // A new member id: the membership was lost in between (expelled, or crashed and rejoined),
      // and another member may have owned these partitions meanwhile: nothing carries over.
      if (this.memberId !== null && memberId !== this.memberId && this.assigned.length > 0) this.queueAssignment([]);
      this.memberId = memberId;
      const next: TopicPartition[] = [];
      for (const [topic, partitions] of Object.entries(memberAssignment))
        for (const partition of partitions) next.push({ topic, partition });
      this.assigned = next;
      this.queueAssignment(next);
    });
    consumer.on(REBALANCING, () => {
      this.rebalancing = true;
    });
    consumer.on(CRASH, (event) => {
      const { error, restart } = event.payload as { error: Error; restart: boolean };
      // kafkajs left the group on its way down: this consumer owns nothing until it rejoins.
      this.rebalancing = true;
      this.memberId = null;
      if (this.assigned.length > 0) {
        this.assigned = [];
        this.queueAssignment([]);
      }
      if (classifyLogError(error) === 'retry') this.log.health.suspect(error);
      if (restart || this.stopped) return;
      const fatal = this.fatalCause ?? (classifyLogError(error) === 'retry' ? undefined : this.log.wrapError('consume', error));
      if (fatal) this.fail(fatal);
      else void this.restartLater();
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
      await this.start();
    } catch (err) {
      throw await this.log.connectError('consumer start', err);
    }
  }

  private async start(): Promise<void> {
    const options = this.running!;
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: this.topics, fromBeginning: this.options.fromBeginning ?? false });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 1,
      eachBatch: (payload) => this.handleBatch(payload, options),
    });
  }

  /**
   * kafkajs gave up on a consumer that crashed on an error it does not retry (a coordinator not
   * found right after a broker restart, say), which retrying does fix: start it again, with
   * backoff, until it runs or something fatal shows.
   */
  private async restartLater(): Promise<void> {
    if (this.restarting) return;
    this.restarting = true;
    const backoff = new Backoff();
    try {
      while (!this.stopped && this.failure === undefined) {
        await this.log.health.pause(backoff.next());
        if (this.stopped) return;
        try {
          await this.consumer.disconnect().catch(() => undefined);
          await this.start();
          return;
        } catch (err) {
          if (classifyLogError(err) !== 'retry') return this.fail(this.log.wrapError('consumer restart', err));
          this.log.health.suspect(err);
        }
      }
    } finally {
      this.restarting = false;
    }
  }

  /** Hands an assignment to the application after the ones before it. */
  private queueAssignment(next: TopicPartition[]): void {
    const seq = ++this.assignmentSeq;
    this.assignments = this.assignments.then(() => this.applyAssignment(next, seq));
    this.assignmentReady = this.assignments;
  }

  private async applyAssignment(next: TopicPartition[], seq: number): Promise<void> {
    const options = this.running!;
    if (this.stopped || this.failure !== undefined) return;
    const superseded = () => this.assignmentSeq !== seq || this.stopped || this.failure !== undefined;
    const context: AssignmentContext = { superseded };
    try {
      const keep = new Set(next.map((tp) => tpKey(tp.topic, tp.partition)));
      for (const k of [...this.expected.keys()]) if (!keep.has(k)) this.expected.delete(k);
      const positions = (await options.onAssignment?.(next, context)) ?? [];
      // A newer assignment follows: its positions are the ones that count.
      if (superseded()) return;
      for (const p of positions) this.seekTo(p);
      // Settled once the application has handled what a membership brought (not an empty
      // assignment after a crash: the consumer is still on its way back into the group).
      if (this.memberId !== null) this.rebalancing = false;
    } catch (err) {
      // A superseded assignment's trouble is the next one's to meet, unless it is fatal.
      if (superseded() && classifyLogError(err) !== 'fatal') return;
      this.fail(err);
    }
  }

  private seekTo(p: PartitionOffset): void {
    const key = tpKey(p.topic, p.partition);
    this.expected.set(key, p.offset);
    this.seekPending.add(key);
    this.seeks.set(key, (this.seeks.get(key) ?? 0) + 1);
    try {
      this.consumer.seek({ topic: p.topic, partition: p.partition, offset: String(p.offset) });
    } catch (err) {
      // The consumer is between a crash and its restart: the next assignment sets the position.
      logger.debug({ topic: p.topic, partition: p.partition, err: errorMessage(err) }, 'seek while the consumer restarts');
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
    const seeksBefore = this.seeks.get(key) ?? 0;
    if (records.length > 0) {
      try {
        await options.eachBatch({
          topic: batch.topic,
          partition: batch.partition,
          records,
          highWatermark: Number(batch.highWatermark),
          nextOffset,
          heartbeat: () => this.heartbeat(payload),
        });
      } catch (err) {
        this.fail(err);
        return;
      }
    }
    if (this.stopped || this.failure !== undefined) return;
    // Sought while the batch was handled (a new assignment, the application going back): the
    // position it set wins.
    if ((this.seeks.get(key) ?? 0) !== seeksBefore) return;
    this.expected.set(key, nextOffset);
    payload.resolveOffset(batch.lastOffset());
    options.onProgress?.({ topic: batch.topic, partition: batch.partition, nextOffset, highWatermark: Number(batch.highWatermark) });
    await this.heartbeat(payload);
  }

  /** Keeps the membership alive from inside a long batch; a rebalance it reveals is noted, never thrown. */
  private async heartbeat(payload: EachBatchPayload): Promise<void> {
    try {
      await payload.heartbeat();
    } catch (err) {
      const type = (err as { type?: string }).type;
      if (type === 'REBALANCE_IN_PROGRESS' || type === 'UNKNOWN_MEMBER_ID' || type === 'ILLEGAL_GENERATION') this.rebalancing = true;
      else if (classifyLogError(err) === 'retry') this.log.health.suspect(err);
    }
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
    this.seekTo(offset);
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

  isRebalancing(): boolean {
    return this.rebalancing;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.consumer.disconnect().catch(() => undefined);
    if (this.failure === undefined) this.resolveDone();
  }
}
