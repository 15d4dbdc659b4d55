/**
 * Where the speed job's partition states live: in worker threads (the default when the machine
 * has more than one core) or inline in the main thread (`--threads 0`).
 *
 * Why threads: the main thread already spends about one core fetching and decoding records
 * (kafkajs decodes every record in JavaScript); parsing the events, deduplicating and updating
 * windows takes as much again. With the states in worker threads the two run in parallel, like
 * Kafka Streams' stream threads or Flink's task slots: the main thread hands each fetched batch
 * to the thread that owns its partition (partition % threads) as transferred memory and goes on
 * fetching; a checkpoint asks the thread for its capture, which it answers after every batch
 * sent before it (messages to a thread are handled in order), so the capture is exactly the
 * state at a batch boundary, as it is inline.
 *
 * The main thread keeps the consumer, the producers and the commit protocol; what it knows of a
 * state between messages is the statistics each answer carries (`stats`).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { InfrastructureError } from '../../services/errors.ts';
import { eventMappingOf } from '../../services/metrics/definitions.ts';
import { RECORD_KEY } from '../../services/metrics/fieldSemantics.ts';
import type { RecordBatch } from '../../services/log/eventLog.ts';
import { MissingCheckpointError } from '../checkpoints/checkpointStore.ts';
import { packBatch, transferablesOf, type PackedBatch } from './recordPack.ts';
import {
  StateRegistry,
  type Capture,
  type ChainInfo,
  type ChainToRestore,
  type Opened,
  type PartitionStats,
  type RegistryConfig,
} from './stateRegistry.ts';

/** Batches handed to one thread and not yet applied, before `apply` makes the caller wait. */
const MAX_QUEUED_BATCHES = 4;

export type StateRequest =
  | { id: number; op: 'open'; partition: number; committed: ChainToRestore | null; beginning: number; warmUntil: number | null }
  | { id: number; op: 'apply'; batch: PackedBatch }
  | { id: number; op: 'capture'; partition: number; chain: ChainInfo }
  | { id: number; op: 'drop'; partition: number }
  | { id: number; op: 'measure'; partition: number };

export type StateReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: { name: string; message: string } };

export interface StateHost {
  /** Worker threads holding states (0: inline). */
  readonly threads: number;
  /**
   * Restores a partition from its committed chain (read from the checkpoint store by the caller),
   * else starts it at `beginning`. `warmUntil`: a new state (none committed) of a version that
   * starts there mid-log is warmed up from `beginning` (streaming/replay/warmUpSource.ts).
   */
  open(partition: number, committed: ChainToRestore | null, beginning: number, warmUntil?: number | null): Promise<Opened>;
  /** Hands a batch to its partition's state. Resolves when the thread's backlog allows more, not when applied. */
  apply(batch: RecordBatch): Promise<void>;
  /** The same for a batch already packed (the lake's records come packed: streaming/replay/lakeSource.ts). */
  applyPacked(batch: PackedBatch): Promise<void>;
  capture(partition: number, chain: ChainInfo): Promise<Capture | null>;
  drop(partition: number): Promise<void>;
  /** What the last answer said of the partition's state (undefined: never opened). */
  stats(partition: number): PartitionStats | undefined;
  /** Statistics with the state's bytes measured now. */
  measure(partition: number): Promise<PartitionStats | undefined>;
  /** Rejects when a state thread fails. */
  failure(): Promise<never>;
  close(): Promise<void>;
}

/** The default number of state threads: the cores besides the main thread's, at most one per partition. */
export function defaultStateThreads(partitions: number): number {
  return Math.max(0, Math.min(partitions, availableParallelism() - 1));
}

/** State threads for a replay from the lake: one per core (the main thread mostly waits on DuckDB), at most one per partition. */
export function lakeReplayStateThreads(partitions: number): number {
  return Math.max(1, Math.min(partitions, availableParallelism()));
}

export function createStateHost(threads: number, cfg: RegistryConfig): StateHost {
  return threads > 0 ? new WorkerStateHost(threads, cfg) : new InlineStateHost(cfg);
}

/** Rebuilds an error a state thread reported, keeping the kinds the job tells apart. */
function reviveError(e: { name: string; message: string }): Error {
  if (e.name === 'MissingCheckpointError') return new MissingCheckpointError(e.message);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

class InlineStateHost implements StateHost {
  readonly threads = 0;
  private readonly registry: StateRegistry;
  private readonly latest = new Map<number, PartitionStats>();
  private readonly never = new Promise<never>(() => undefined);

  constructor(cfg: RegistryConfig) {
    this.registry = new StateRegistry(cfg);
  }

  private keep(stats: PartitionStats | undefined): void {
    if (stats) this.latest.set(stats.partition, stats);
  }

  async open(partition: number, committed: ChainToRestore | null, beginning: number, warmUntil: number | null = null): Promise<Opened> {
    const opened = this.registry.open(partition, committed, beginning, warmUntil);
    this.keep(opened.stats);
    return opened;
  }

  async apply(batch: RecordBatch): Promise<void> {
    this.keep(this.registry.applyRecords(batch.partition, batch.records, batch.nextOffset));
  }

  async applyPacked(batch: PackedBatch): Promise<void> {
    this.keep(this.registry.applyPacked(batch));
  }

  async capture(partition: number, chain: ChainInfo): Promise<Capture | null> {
    const c = this.registry.capture(partition, chain);
    this.keep(c?.stats);
    return c;
  }

  async drop(partition: number): Promise<void> {
    // The last statistics stay: a stopped job's final status still reports the partition.
    this.registry.drop(partition);
  }

  stats(partition: number): PartitionStats | undefined {
    return this.latest.get(partition);
  }

  async measure(partition: number): Promise<PartitionStats | undefined> {
    const s = this.registry.stats(partition, true);
    this.keep(s);
    return s;
  }

  failure(): Promise<never> {
    return this.never;
  }

  async close(): Promise<void> {}
}

interface Pending {
  resolve(result: unknown): void;
  reject(err: Error): void;
}

interface StateThread {
  worker: Worker;
  pending: Map<number, Pending>;
  queued: number;
  /** Resolved when `queued` drops below the limit. */
  roomWaiters: (() => void)[];
}

class WorkerStateHost implements StateHost {
  private readonly workers: StateThread[];
  private readonly latest = new Map<number, PartitionStats>();
  private nextId = 1;
  private closing = false;
  /** Whether the version's mapping reads record keys (`event.id: $key`): only then are they packed. */
  private readonly withKeys: boolean;
  private failWith!: (err: Error) => void;
  private readonly failed: Promise<never>;

  constructor(
    readonly threads: number,
    cfg: RegistryConfig,
  ) {
    this.failed = new Promise<never>((_, reject) => (this.failWith = reject));
    this.failed.catch(() => undefined);
    this.withKeys = eventMappingOf(cfg.definitions).id === RECORD_KEY;
    // Built (dist/, JavaScript): the worker module runs as is. From the sources (tsx, development
    // and tests): loader hooks are per thread, so a small entry registers tsx, then imports it.
    const built = import.meta.url.endsWith('.js');
    const module = new URL(built ? './stateWorker.js' : './stateWorker.ts', import.meta.url);
    const entry = built ? module : new URL('../../services/runtime/tsWorker.js', import.meta.url);
    this.workers = Array.from({ length: threads }, (_, i) => {
      const worker = new Worker(entry, { workerData: { module: module.href, registry: cfg }, name: `lk-speed-state-${i}` });
      const thread: StateThread = { worker, pending: new Map(), queued: 0, roomWaiters: [] };
      worker.on('message', (reply: StateReply) => this.onReply(thread, reply));
      worker.on('error', (err) => this.fail(new InfrastructureError(`speed state thread ${i} failed: ${err.message}`, { cause: err })));
      worker.on('exit', (code) => {
        if (!this.closing) this.fail(new InfrastructureError(`speed state thread ${i} exited (code ${code})`));
      });
      return thread;
    });
  }

  private threadOf(partition: number): StateThread {
    return this.workers[partition % this.workers.length]!;
  }

  private fail(err: Error): void {
    this.failWith(err);
    for (const t of this.workers) {
      for (const p of t.pending.values()) p.reject(err);
      t.pending.clear();
      for (const w of t.roomWaiters.splice(0)) w();
    }
  }

  private onReply(thread: StateThread, reply: StateReply): void {
    const pending = thread.pending.get(reply.id);
    if (!pending) return;
    thread.pending.delete(reply.id);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(reviveError(reply.error));
  }

  private request<T>(thread: StateThread, req: StateRequest, transfer: ArrayBuffer[] = []): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      thread.pending.set(req.id, { resolve: resolve as (r: unknown) => void, reject });
      thread.worker.postMessage(req, transfer);
    });
  }

  private keep(stats: PartitionStats | undefined | null): void {
    if (stats) this.latest.set(stats.partition, stats);
  }

  async open(partition: number, committed: ChainToRestore | null, beginning: number, warmUntil: number | null = null): Promise<Opened> {
    // The snapshots cross as transferred memory when they own their buffers.
    const transfer = (committed?.buffers ?? []).flatMap((b) =>
      b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? [b.buffer as ArrayBuffer] : [],
    );
    const opened = await this.request<Opened>(
      this.threadOf(partition),
      { id: this.nextId++, op: 'open', partition, committed, beginning, warmUntil },
      [...new Set(transfer)],
    );
    this.keep(opened.stats);
    return opened;
  }

  apply(batch: RecordBatch): Promise<void> {
    return this.applyPacked(packBatch(batch, this.withKeys));
  }

  async applyPacked(packed: PackedBatch): Promise<void> {
    const thread = this.threadOf(packed.partition);
    thread.queued++;
    this.request<PartitionStats | undefined>(thread, { id: this.nextId++, op: 'apply', batch: packed }, transferablesOf(packed))
      .then((stats) => this.keep(stats))
      .catch(() => undefined) // a failing thread fails the host (failure())
      .finally(() => {
        thread.queued--;
        if (thread.queued < MAX_QUEUED_BATCHES) for (const w of thread.roomWaiters.splice(0)) w();
      });
    while (thread.queued >= MAX_QUEUED_BATCHES && !this.closing) await new Promise<void>((r) => thread.roomWaiters.push(r));
  }

  async capture(partition: number, chain: ChainInfo): Promise<Capture | null> {
    const c = await this.request<Capture | null>(this.threadOf(partition), { id: this.nextId++, op: 'capture', partition, chain });
    this.keep(c?.stats);
    return c;
  }

  async drop(partition: number): Promise<void> {
    // The last statistics stay: a stopped job's final status still reports the partition (a
    // reopened partition replaces them; a revoked one is no longer asked about).
    await this.request(this.threadOf(partition), { id: this.nextId++, op: 'drop', partition });
  }

  stats(partition: number): PartitionStats | undefined {
    return this.latest.get(partition);
  }

  async measure(partition: number): Promise<PartitionStats | undefined> {
    const s = await this.request<PartitionStats | undefined>(this.threadOf(partition), { id: this.nextId++, op: 'measure', partition });
    this.keep(s);
    return s;
  }

  failure(): Promise<never> {
    return this.failed;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const t of this.workers) for (const w of t.roomWaiters.splice(0)) w();
    await Promise.all(this.workers.map((t) => t.worker.terminate()));
  }
}
