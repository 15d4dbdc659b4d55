/**
 * Embedded adapter of the event log: a file-backed log under `<data-dir>/log`, for running the
 * whole platform in one Node process with no Java and no Docker. Processes given the same data
 * dir share it (appends take a per-partition lock; readers poll the high watermark).
 *
 * Layout:
 *   <root>/<topic>/topic.json                     partitions and configs
 *   <root>/<topic>/<partition>/<base>.seg, hw     see partitionStore.ts
 *   <root>/__groups/<group>.json                  committed offsets per topic and partition (a
 *                                                 number, or {o, m} with the commit's metadata)
 *   <root>/__groups/<group>.member                pid of the group's single member
 *   <root>/__txn/<id>.epoch, *.redo               transactions (see transactions below)
 *
 * Differences from Kafka, by design: one member per consumer group (no rebalancing: use Kafka to
 * share partitions between instances); no retention or compaction (topics only grow).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, IllegalStateError, InfrastructureError } from '../../errors.ts';
import type {
  CommittedOffset,
  ConsumerOptions,
  EventLog,
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
import { logHealth, type LogHealth } from '../outages.ts';
import { crashPoint } from '../../faults/crashPoints.ts';
import { isStaleTempName, writeFileAtomicSync } from '../../storage/atomicFile.ts';
import { acquireLock, processAlive, releaseLock, tryLock } from '../../storage/fileLock.ts';
import { PartitionStore } from './partitionStore.ts';

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,200}$/;
const POLL_INTERVAL_MS = 25;
const TXN_HEADER = '__lk_txn';

export interface EmbeddedLogOptions {
  /** Directory of the log (normally `<data-dir>/log`). */
  root: string;
  /** fsync every append (survives power loss, slower). Default off: a killed process loses nothing either way. */
  fsync?: boolean;
}

function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomicSync(path, JSON.stringify(value));
}

function readJson<T>(path: string, fallback: T): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw err;
  }
}

/** A group's committed offsets by topic and partition; the metadata, when a commit had some, beside the offset. */
type GroupOffsets = Record<string, Record<string, number | { o: number; m: string }>>;

interface RedoLog {
  id: string;
  parts: {
    topic: string;
    partition: number;
    records: { key: string | null; value: string | null; timestamp: number; headers: Record<string, string> }[];
  }[];
  offsets?: { groupId: string; offsets: PartitionOffset[] };
}

export class EmbeddedLog implements EventLog {
  readonly kind = 'embedded' as const;
  readonly capabilities = { transactions: true, groupRebalancing: false };
  readonly location: string;
  /** Files on the local disk: never unreachable (no probe is ever set for it). */
  readonly health: LogHealth;
  private readonly stores = new Map<string, PartitionStore>();
  private readonly closeables = new Set<{ close(): Promise<void> }>();
  private readonly fsync: boolean;

  constructor(private readonly options: EmbeddedLogOptions) {
    this.location = options.root;
    this.health = logHealth(`embedded:${options.root}`);
    this.fsync = options.fsync ?? false;
    try {
      mkdirSync(join(options.root, '__groups'), { recursive: true });
      mkdirSync(join(options.root, '__txn'), { recursive: true });
    } catch (err) {
      throw new InfrastructureError(`cannot create embedded log at ${options.root}: ${(err as Error).message}`);
    }
  }

  private topicDir(topic: string): string {
    return join(this.options.root, topic);
  }

  private topicMeta(topic: string): { partitions: number; config: Record<string, string> } {
    const meta = readJson<{ partitions: number; config: Record<string, string> } | null>(join(this.topicDir(topic), 'topic.json'), null);
    if (!meta)
      throw new InfrastructureError(
        `topic "${topic}" does not exist in the embedded log at ${this.location}; create it with \`lk topics create\``,
      );
    return meta;
  }

  store(topic: string, partition: number): PartitionStore {
    const key = `${topic}/${partition}`;
    let store = this.stores.get(key);
    if (!store) {
      const count = this.topicMeta(topic).partitions;
      if (partition < 0 || partition >= count)
        throw new InfrastructureError(`topic "${topic}" has no partition ${partition} (it has ${count})`);
      const meta = this.topicMeta(topic);
      store = new PartitionStore(
        topic,
        partition,
        join(this.topicDir(topic), String(partition)),
        this.fsync,
        meta.config['message.timestamp.type'] === 'LogAppendTime',
      );
      this.stores.set(key, store);
    }
    return store;
  }

  async createTopics(specs: TopicSpec[]): Promise<{ created: string[]; existing: string[] }> {
    const created: string[] = [];
    const existing: string[] = [];
    for (const spec of specs) {
      if (!TOPIC_NAME.test(spec.name) || spec.name.startsWith('__')) throw new ConfigError(`invalid topic name "${spec.name}"`);
      if (!Number.isInteger(spec.partitions) || spec.partitions < 1)
        throw new ConfigError(`topic "${spec.name}": partitions must be a positive integer`);
      const metaPath = join(this.topicDir(spec.name), 'topic.json');
      if (existsSync(metaPath)) {
        existing.push(spec.name);
        continue;
      }
      mkdirSync(this.topicDir(spec.name), { recursive: true });
      writeJsonAtomic(metaPath, { partitions: spec.partitions, config: spec.config ?? {} });
      created.push(spec.name);
    }
    return { created, existing };
  }

  async deleteTopics(names: string[]): Promise<void> {
    for (const n of names) {
      rmSync(this.topicDir(n), { recursive: true, force: true });
      for (const key of [...this.stores.keys()]) if (key.startsWith(`${n}/`)) this.stores.delete(key);
    }
  }

  async listTopics(): Promise<string[]> {
    return readdirSync(this.options.root)
      .filter((n) => !n.startsWith('__') && existsSync(join(this.topicDir(n), 'topic.json')))
      .sort();
  }

  async partitionCount(topic: string): Promise<number> {
    return this.topicMeta(topic).partitions;
  }

  private async perPartition<T>(topic: string, fn: (store: PartitionStore) => T): Promise<T[]> {
    await this.recoverTransactions();
    const count = await this.partitionCount(topic);
    return Array.from({ length: count }, (_, p) => fn(this.store(topic, p)));
  }

  endOffsets(topic: string): Promise<number[]> {
    return this.perPartition(topic, (s) => s.endOffset());
  }

  beginningOffsets(topic: string): Promise<number[]> {
    return this.perPartition(topic, (s) => s.beginningOffset());
  }

  async offsetsForTimestamp(topic: string, timestamp: number): Promise<number[]> {
    // Linear scan: the embedded log keeps no time index. Fine for the demo-sized logs it serves.
    return this.perPartition(topic, (s) => {
      const end = s.endOffset();
      let offset = s.beginningOffset();
      while (offset < end) {
        const batch = s.read(offset, 4 * 1024 * 1024, end);
        for (const r of batch) if (r.timestamp >= timestamp) return r.offset;
        offset = batch.at(-1)!.offset + 1;
      }
      return end;
    });
  }

  private groupPath(groupId: string): string {
    return join(this.options.root, '__groups', `${encodeURIComponent(groupId)}.json`);
  }

  async committedOffsets(groupId: string, topic: string): Promise<(number | null)[]> {
    return (await this.committedOffsetsWithMetadata(groupId, topic)).map((c) => c?.offset ?? null);
  }

  async committedOffsetsWithMetadata(groupId: string, topic: string): Promise<(CommittedOffset | null)[]> {
    await this.recoverTransactions();
    const count = await this.partitionCount(topic);
    const all = readJson<GroupOffsets>(this.groupPath(groupId), {});
    return Array.from({ length: count }, (_, p) => {
      const v = all[topic]?.[p];
      if (v === undefined) return null;
      return typeof v === 'number' ? { offset: v, metadata: '' } : { offset: v.o, metadata: v.m };
    });
  }

  async deleteGroups(groupIds: string[]): Promise<void> {
    for (const g of groupIds) rmSync(this.groupPath(g), { force: true });
  }

  commitOffsets(groupId: string, offsets: PartitionOffset[]): void {
    const path = this.groupPath(groupId);
    const all = readJson<GroupOffsets>(path, {});
    for (const o of offsets) (all[o.topic] ??= {})[o.partition] = o.metadata ? { o: o.offset, m: o.metadata } : o.offset;
    writeJsonAtomic(path, all);
  }

  async producer(options: ProducerOptions = {}): Promise<LogProducer> {
    await this.recoverTransactions();
    const producer = new EmbeddedProducer(this, options.transactionalId);
    this.closeables.add(producer);
    return producer;
  }

  consumer(options: ConsumerOptions): LogConsumer {
    const consumer = new EmbeddedConsumer(this, options);
    this.closeables.add({ close: () => consumer.stop() });
    return consumer;
  }

  // ------------------------------------------------------------------ transactions
  //
  // A transaction is buffered in memory. Commit writes a redo log (all records and offsets) and
  // renames it into place: that rename is the commit point. The redo log is then applied
  // partition by partition (each append is atomic for readers, see partitionStore.ts) and the
  // offsets are committed, and the redo log is deleted. If the process dies in between, the next
  // process that opens the log re-applies it; an append already done is recognised by the
  // transaction id in the header of its first record, so nothing is written twice.

  txnDir(): string {
    return join(this.options.root, '__txn');
  }

  /** Registers a transactional producer; returns its epoch. A newer epoch fences older ones. */
  fence(transactionalId: string): number {
    const path = join(this.txnDir(), `${encodeURIComponent(transactionalId)}.epoch`);
    const epoch = readJson<{ epoch: number }>(path, { epoch: 0 }).epoch + 1;
    writeJsonAtomic(path, { epoch, pid: process.pid });
    return epoch;
  }

  currentEpoch(transactionalId: string): number {
    return readJson<{ epoch: number }>(join(this.txnDir(), `${encodeURIComponent(transactionalId)}.epoch`), { epoch: 0 }).epoch;
  }

  /**
   * Applies a committed redo log. `recovering`: it may have been partly applied by a process that
   * died, so each partition is checked for the transaction's tag first; the owner applying its
   * own fresh commit skips that scan.
   */
  async applyRedo(path: string, recovering: boolean): Promise<void> {
    const redo = readJson<RedoLog | null>(path, null);
    if (!redo) return;
    for (const part of redo.parts) {
      const store = this.store(part.topic, part.partition);
      const records: OutgoingRecord[] = part.records.map((r, i) => ({
        key: r.key,
        value: r.value === null ? null : Buffer.from(r.value, 'base64'),
        timestamp: r.timestamp,
        headers: i === 0 ? { ...r.headers, [TXN_HEADER]: redo.id } : r.headers,
      }));
      if (recovering) await this.appendOnce(store, redo.id, records);
      else await store.append(records, Date.now());
      if (part !== redo.parts.at(-1)) crashPoint('embedded.txn.partly-applied');
    }
    crashPoint('embedded.txn.records-applied');
    if (redo.offsets) this.commitOffsets(redo.offsets.groupId, redo.offsets.offsets);
    unlinkSync(path);
  }

  /** Appends unless a batch tagged with this transaction id is already at the partition's tail. */
  private async appendOnce(store: PartitionStore, txnId: string, records: OutgoingRecord[]): Promise<void> {
    // Scan back over the recent tail for our tag: an earlier attempt may have written it.
    const end = store.endOffset();
    const from = Math.max(store.beginningOffset(), end - 100_000);
    let offset = from;
    while (offset < end) {
      const batch = store.read(offset, 8 * 1024 * 1024, end);
      if (batch.some((r) => r.headers[TXN_HEADER] === txnId)) return;
      offset = batch.at(-1)!.offset + 1;
    }
    await store.append(records, Date.now());
  }

  /** Re-applies committed transactions whose owner died before finishing them. */
  async recoverTransactions(): Promise<void> {
    for (const name of readdirSync(this.txnDir())) {
      // A redo log that never reached its name: the transaction was not committed.
      if (isStaleTempName(name) && !processAlive(Number(name.split('.tmp-')[1]?.split('-')[0]))) {
        rmSync(join(this.txnDir(), name), { force: true });
        continue;
      }
      if (!name.endsWith('.redo')) continue;
      const ownerPid = Number(name.split('-')[0]);
      if (ownerPid === process.pid || processAlive(ownerPid)) continue;
      const path = join(this.txnDir(), name);
      const lock = `${path}.lock`;
      if (!tryLock(lock)) continue;
      try {
        if (existsSync(path)) await this.applyRedo(path, true);
      } finally {
        releaseLock(lock);
      }
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.closeables].map((c) => c.close()));
    this.closeables.clear();
  }
}

class EmbeddedProducer implements LogProducer {
  private roundRobin = 0;
  private epoch = 0;
  private inTransaction = false;
  private txnSeq = 0;

  constructor(
    private readonly log: EmbeddedLog,
    private readonly transactionalId: string | undefined,
  ) {
    if (transactionalId) this.epoch = log.fence(transactionalId);
  }

  async send(topic: string, records: OutgoingRecord[]): Promise<void> {
    if (this.inTransaction) throw new IllegalStateError('send outside the open transaction; use the transaction object');
    const byPartition = new Map<number, OutgoingRecord[]>();
    const count = await this.log.partitionCount(topic);
    for (const r of records) {
      const p = r.partition ?? (r.key !== null ? partitionForKey(r.key, count) : this.roundRobin++ % count);
      let list = byPartition.get(p);
      if (!list) byPartition.set(p, (list = []));
      list.push(r);
    }
    const now = Date.now();
    for (const [p, list] of byPartition) await this.log.store(topic, p).append(list, now);
  }

  async transaction(): Promise<LogTransaction> {
    const id = this.transactionalId;
    if (!id) throw new IllegalStateError('transaction() needs a producer opened with a transactionalId');
    if (this.inTransaction) throw new IllegalStateError('a transaction is already open on this producer');
    this.inTransaction = true;
    const parts = new Map<string, RedoLog['parts'][number]>();
    let offsets: RedoLog['offsets'];
    let roundRobin = 0;
    const log = this.log;
    const checkFenced = () => {
      if (log.currentEpoch(id) !== this.epoch) {
        throw new IllegalStateError(`producer with transactional id "${id}" was fenced by a newer instance`);
      }
    };
    const txnId = `${process.pid}-${encodeURIComponent(id)}-${this.epoch}-${++this.txnSeq}`;
    return {
      send: async (topic, records) => {
        checkFenced();
        const now = Date.now();
        const count = await log.partitionCount(topic);
        for (const r of records) {
          const p = r.partition ?? (r.key !== null ? partitionForKey(r.key, count) : roundRobin++ % count);
          const key = `${topic}/${p}`;
          let part = parts.get(key);
          if (!part) parts.set(key, (part = { topic, partition: p, records: [] }));
          const value = r.value === null ? null : typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
          part.records.push({
            key: r.key,
            value: value === null ? null : value.toString('base64'),
            timestamp: r.timestamp ?? now,
            headers: r.headers ?? {},
          });
        }
      },
      sendOffsets: async (groupId, list) => {
        checkFenced();
        offsets = { groupId, offsets: [...(offsets?.offsets ?? []), ...list] };
      },
      commit: async () => {
        try {
          checkFenced();
          const redo: RedoLog = { id: txnId, parts: [...parts.values()], ...(offsets ? { offsets } : {}) };
          const path = join(log.txnDir(), `${txnId}.redo`);
          const lock = `${path}.lock`;
          await acquireLock(lock);
          try {
            // The rename is the commit point.
            writeFileAtomicSync(path, JSON.stringify(redo), 'embedded.txn.before-redo-rename');
            crashPoint('embedded.txn.redo-committed');
            await log.applyRedo(path, false);
          } finally {
            releaseLock(lock);
          }
        } finally {
          this.inTransaction = false;
        }
      },
      abort: async () => {
        parts.clear();
        offsets = undefined;
        this.inTransaction = false;
      },
    };
  }

  async close(): Promise<void> {}
}

class EmbeddedConsumer implements LogConsumer {
  private topics: string[] = [];
  private readonly positions = new Map<string, { tp: TopicPartition; offset: number }>();
  private readonly paused = new Set<string>();
  private running = false;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly memberPath: string;
  private holdsMembership = false;

  constructor(
    private readonly log: EmbeddedLog,
    private readonly options: ConsumerOptions,
  ) {
    this.memberPath = join(log.location, '__groups', `${encodeURIComponent(options.groupId)}.member`);
  }

  async subscribe(topics: string[]): Promise<void> {
    for (const t of topics) await this.log.partitionCount(t);
    this.topics = topics;
  }

  async run(options: RunOptions): Promise<void> {
    if (this.running) throw new IllegalStateError('consumer is already running');
    if (!tryLock(this.memberPath)) {
      throw new ConfigError(
        `consumer group "${this.options.groupId}" already has a member in another process; the embedded log has one member per group (use Kafka, --brokers, to share partitions between instances)`,
      );
    }
    this.holdsMembership = true;
    this.running = true;
    await this.log.recoverTransactions();
    const assigned: TopicPartition[] = [];
    for (const topic of this.topics) {
      const count = await this.log.partitionCount(topic);
      for (let partition = 0; partition < count; partition++) assigned.push({ topic, partition });
    }
    const requested = new Map(((await options.onAssignment?.(assigned)) ?? []).map((p) => [`${p.topic}/${p.partition}`, p.offset]));
    for (const tp of assigned) {
      const key = `${tp.topic}/${tp.partition}`;
      let offset = requested.get(key);
      if (offset === undefined) {
        const committed = (await this.log.committedOffsets(this.options.groupId, tp.topic))[tp.partition] ?? null;
        const store = this.log.store(tp.topic, tp.partition);
        offset = committed ?? (this.options.fromBeginning ? store.beginningOffset() : store.endOffset());
      }
      this.positions.set(key, { tp, offset });
    }
    this.loop = this.pollLoop(options).finally(() => {
      if (this.holdsMembership) releaseLock(this.memberPath);
      this.holdsMembership = false;
    });
    this.loop.catch(() => undefined);
  }

  private async pollLoop(options: RunOptions): Promise<void> {
    const maxBytes = this.options.maxBytesPerPartition ?? 4 * 1024 * 1024;
    while (!this.stopped) {
      let delivered = 0;
      for (const [key, pos] of this.positions) {
        if (this.stopped) break;
        if (this.paused.has(key)) continue;
        const store = this.log.store(pos.tp.topic, pos.tp.partition);
        const hw = store.endOffset();
        const records: LogRecord[] = store.read(pos.offset, maxBytes, hw);
        if (records.length === 0) continue;
        for (const r of records) delete r.headers[TXN_HEADER];
        const nextOffset = records.at(-1)!.offset + 1;
        await options.eachBatch({ topic: pos.tp.topic, partition: pos.tp.partition, records, highWatermark: hw, nextOffset });
        // A seek during eachBatch wins over the batch's end.
        if (this.positions.get(key) === pos && pos.offset === records[0]!.offset) pos.offset = nextOffset;
        options.onProgress?.({ topic: pos.tp.topic, partition: pos.tp.partition, nextOffset: pos.offset, highWatermark: hw });
        delivered += records.length;
      }
      if (delivered === 0) {
        for (const pos of this.positions.values()) {
          const hw = this.log.store(pos.tp.topic, pos.tp.partition).endOffset();
          options.onProgress?.({ topic: pos.tp.topic, partition: pos.tp.partition, nextOffset: pos.offset, highWatermark: hw });
        }
        await sleep(POLL_INTERVAL_MS);
      }
    }
  }

  done(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  async commit(offsets: PartitionOffset[]): Promise<void> {
    this.log.commitOffsets(this.options.groupId, offsets);
  }

  seek(offset: PartitionOffset): void {
    const key = `${offset.topic}/${offset.partition}`;
    const pos = this.positions.get(key);
    if (!pos) throw new IllegalStateError(`cannot seek ${key}: not assigned`);
    this.positions.set(key, { tp: pos.tp, offset: offset.offset });
  }

  pause(partitions: TopicPartition[]): void {
    for (const p of partitions) this.paused.add(`${p.topic}/${p.partition}`);
  }

  resume(partitions: TopicPartition[]): void {
    for (const p of partitions) this.paused.delete(`${p.topic}/${p.partition}`);
  }

  assignment(): TopicPartition[] {
    return [...this.positions.values()].map((p) => p.tp);
  }

  /** One member per group, assigned everything once: never rebalancing. */
  isRebalancing(): boolean {
    return false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop?.catch(() => undefined);
    if (this.holdsMembership) releaseLock(this.memberPath);
    this.holdsMembership = false;
  }
}
