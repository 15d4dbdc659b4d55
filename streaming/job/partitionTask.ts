/**
 * One input partition owned by this instance: its state, its transactional producer and its
 * checkpoint protocol (Flink-style two-phase commit with the Kafka transaction as commit point):
 *
 *   capture   (by the thread holding the state, between two batches: stateHost.ts) the changed
 *             rows stamped with position N, and a full or delta snapshot of the state at N;
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
import { InfrastructureError } from '../../services/errors.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';
import type { EventLog, LogProducer } from '../../services/log/eventLog.ts';
import { logger } from '../../services/observability/logger.ts';
import type { CheckpointStore } from '../checkpoints/checkpointStore.ts';
import type { StateHost } from '../threads/stateHost.ts';
import type { Capture } from '../threads/stateRegistry.ts';

/** View rows per produce call inside a checkpoint's transaction. */
const SEND_SLICE_ROWS = 5000;

export interface TaskContext {
  log: EventLog;
  topic: string;
  viewTopic: string;
  groupId: string;
  version: string;
  store: CheckpointStore;
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
    private readonly host: StateHost,
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
    // Whether anything changed is for the state's thread to say (the statistics here may not yet
    // reflect batches handed to it): it answers a capture with null then.
    if (this.revoked) return;
    const run = this.captureAndCommit().catch((err: unknown) => {
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

  private async captureAndCommit(): Promise<void> {
    const started = Date.now();
    const capture = await this.host.capture(this.partition, {
      length: this.chain.length,
      rows: this.chainRows,
      last: this.chain.at(-1) ?? null,
    });
    if (capture) await this.commit(capture, started);
  }

  private async commit(capture: Capture, started: number): Promise<void> {
    const { store, topic, viewTopic, groupId } = this.ctx;
    const { position, header, snapshot, rowKeys, rowValues, rowValueEnds } = capture;
    const values = Buffer.from(rowValues.buffer, rowValues.byteOffset, rowValues.byteLength);
    await store.write(this.partition, position, snapshot);
    crashPoint('speed.checkpoint.snapshot-written');
    const tx = await this.producer.transaction();
    try {
      // In slices: a checkpoint of a high-cardinality backlog can hold hundreds of thousands of
      // rows, and their produce buffers need not all exist at once.
      for (let i = 0; i < rowKeys.length; i += SEND_SLICE_ROWS) {
        const end = Math.min(i + SEND_SLICE_ROWS, rowKeys.length);
        const records = new Array<{ key: string; value: Buffer }>(end - i);
        for (let k = i; k < end; k++)
          records[k - i] = { key: rowKeys[k]!, value: values.subarray(k === 0 ? 0 : rowValueEnds[k - 1]!, rowValueEnds[k]!) };
        await tx.send(viewTopic, records);
      }
      crashPoint('speed.checkpoint.rows-sent');
      await tx.sendOffsets(groupId, [{ topic, partition: this.partition, offset: position }]);
      crashPoint('speed.checkpoint.offsets-sent');
      await tx.commit();
      crashPoint('speed.checkpoint.committed');
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
      bytes: snapshot.length,
      durationMs: Date.now() - started,
      rows: rowKeys.length,
      kind: header.kind,
    };
    try {
      store.prune(this.partition, new Set([...this.chain, ...this.previousChain]), position);
    } catch (err) {
      logger.warn({ partition: this.partition, err }, 'could not prune old checkpoints');
    }
  }

  /** Waits for the checkpoint in flight, releases the state and closes the producer. */
  async close(): Promise<void> {
    await this.settle();
    await this.host.drop(this.partition).catch(() => undefined);
    await this.producer.close();
  }
}
