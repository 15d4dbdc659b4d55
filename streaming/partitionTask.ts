/**
 * One input partition owned by this instance: its state, its transactional producer and its
 * checkpoint protocol (Flink-style two-phase commit with the Kafka transaction as commit point):
 *
 *   capture   (synchronous, between two batches) the changed rows stamped with position N, and
 *             a full or delta snapshot of the state at N;
 *   pre-commit  write the snapshot to <checkpoints>/<version>/p<k>/<N>.arrow (atomic, durable);
 *   commit    one transaction: the rows to the view topic + the group's offset N for the
 *             partition; read_committed readers see both or neither;
 *   clean-up  prune snapshots no longer needed by the last two committed checkpoints.
 *
 * A crash before the commit leaves the previous committed offset, whose snapshot still exists;
 * a crash after it leaves N and its snapshot. Restore always takes the snapshot whose position
 * equals the group's committed offset: the state and the published rows cannot diverge.
 * The producer's transactional id is per partition (`lk-speed-<version>-p<k>`): a new owner
 * fences the old one before reading the committed offset, so a zombie cannot commit after it.
 */
import { InfrastructureError } from '../services/errors.ts';
import type { EventLog, LogProducer } from '../services/log/eventLog.ts';
import { logger } from '../services/observability/logger.ts';
import { viewRowKey, type ViewRow } from '../services/views/viewRow.ts';
import type { CheckpointStore } from './checkpointStore.ts';
import type { PartitionState } from './partitionState.ts';
import { encodeSnapshot, type SnapshotHeader } from './snapshotCodec.ts';

/** View rows per produce call inside a checkpoint's transaction. */
const SEND_SLICE_ROWS = 5000;
/** A new full snapshot is written when the delta chain gets this long... */
const MAX_CHAIN_LENGTH = 200;
/** ...or when the deltas hold more rows than this multiple of the live state. */
const MAX_DELTA_RATIO = 1;

export interface TaskContext {
  log: EventLog;
  topic: string;
  viewTopic: string;
  groupId: string;
  version: string;
  store: CheckpointStore;
  metricsFingerprint: string;
}

export interface CheckpointInfo {
  at: number;
  position: number;
  bytes: number;
  durationMs: number;
  rows: number;
  kind: 'full' | 'delta';
}

export function transactionalIdFor(version: string, partition: number): string {
  return `lk-speed-${version}-p${partition}`;
}

/** Opens the partition's transactional producer and fences any previous owner at once. */
export async function openFencingProducer(log: EventLog, version: string, partition: number): Promise<LogProducer> {
  const producer = await log.producer({ transactionalId: transactionalIdFor(version, partition) });
  // kafkajs registers the transactional id (InitProducerId, which bumps the epoch and so fences
  // the old owner, waiting for or aborting its open transaction) on the first transaction.
  const tx = await producer.transaction();
  await tx.abort();
  return producer;
}

export class PartitionTask {
  revoked = false;
  /** A checkpoint failed after its capture: the live state no longer matches any commit. */
  private failed = false;
  highWatermark = 0;
  /** Wall-clock time of the last record (or of the assignment): for idleness. */
  lastRecordAt = Date.now();
  lastCheckpoint: CheckpointInfo | undefined;
  /** The group's committed offset for the partition as this task knows it (null: none yet). */
  committedPosition: number | null;
  private inFlight: Promise<void> | undefined;
  /** Snapshot positions of the committed checkpoint's chain (base first), and of the one before. */
  private chain: number[];
  private previousChain: number[] = [];
  private chainRows: number;

  constructor(
    readonly partition: number,
    public state: PartitionState,
    private readonly producer: LogProducer,
    private readonly ctx: TaskContext,
    restoredChain: { positions: number[]; rows: number },
  ) {
    this.chain = restoredChain.positions;
    this.committedPosition = restoredChain.positions.at(-1) ?? null;
    this.chainRows = restoredChain.rows;
  }

  get checkpointInFlight(): boolean {
    return this.inFlight !== undefined;
  }

  /**
   * Takes a checkpoint if anything changed since the last one. Resolves when it is committed;
   * a second call while one is in flight waits for it first (one transaction at a time).
   */
  async checkpoint(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
    if (this.failed)
      throw new InfrastructureError(`partition ${this.partition}: an earlier checkpoint failed; restart to restore the last committed one`);
    if (this.revoked || this.state.pendingRecords === 0) return;
    const run = this.capture().catch((err: unknown) => {
      // The captured rows are gone from the state: nothing may be checkpointed after this.
      this.failed = true;
      throw err;
    });
    this.inFlight = run.finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** Waits for the checkpoint in flight, if any (errors are reported by whoever started it). */
  async settle(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
  }

  private capture(): Promise<void> {
    const started = Date.now();
    const state = this.state;
    const position = state.position;
    const { rows, changedWindows } = state.captureChanges();
    const added = state.dedup.takeAdded();
    const liveRows = state.windowCount + state.dedup.size;
    const deltaRows = changedWindows.length + added.ids.length;
    // chainRows counts the rows of the deltas since the base: once they outgrow the live state,
    // a restore would read more than a full snapshot holds, so write a full one.
    const full =
      this.chain.length === 0 || this.chain.length >= MAX_CHAIN_LENGTH || this.chainRows + deltaRows > MAX_DELTA_RATIO * liveRows + 1000;
    const base = this.chain.at(-1) ?? null;
    const header: SnapshotHeader = {
      ...state.meta(),
      format: 1,
      kind: full ? 'full' : 'delta',
      base: full ? null : base,
      chainLength: full ? 1 : this.chain.length + 1,
      chainRows: full ? 0 : this.chainRows + deltaRows,
      metricsFingerprint: this.ctx.metricsFingerprint,
      semantics: { ...state.semantics },
    };
    const bytes = full
      ? encodeSnapshot({ header, windows: state.allWindows(), dedup: state.dedup.entries() })
      : encodeSnapshot({ header, windows: changedWindows, dedup: added });
    return this.commit(position, bytes, rows, header, started);
  }

  private async commit(position: number, bytes: Buffer, rows: ViewRow[], header: SnapshotHeader, started: number): Promise<void> {
    const { store, topic, viewTopic, groupId } = this.ctx;
    await store.write(this.partition, position, bytes);
    const tx = await this.producer.transaction();
    try {
      // In slices: a checkpoint of a high-cardinality backlog can hold hundreds of thousands of
      // rows, and their JSON and produce buffers need not all exist at once.
      for (let i = 0; i < rows.length; i += SEND_SLICE_ROWS) {
        await tx.send(
          viewTopic,
          rows.slice(i, i + SEND_SLICE_ROWS).map((r) => ({ key: viewRowKey(r), value: JSON.stringify(r) })),
        );
      }
      await tx.sendOffsets(groupId, [{ topic, partition: this.partition, offset: position }]);
      await tx.commit();
    } catch (err) {
      await tx.abort().catch(() => undefined);
      throw err;
    }
    const newChain = header.kind === 'full' ? [position] : [...this.chain, position];
    this.previousChain = this.chain;
    this.chain = newChain;
    this.chainRows = header.chainRows;
    this.committedPosition = position;
    this.lastCheckpoint = {
      at: Date.now(),
      position,
      bytes: bytes.length,
      durationMs: Date.now() - started,
      rows: rows.length,
      kind: header.kind,
    };
    try {
      store.prune(this.partition, new Set([...this.chain, ...this.previousChain]), position);
    } catch (err) {
      logger.warn({ partition: this.partition, err }, 'could not prune old checkpoints');
    }
  }

  async close(): Promise<void> {
    await this.settle();
    await this.producer.close();
  }
}
