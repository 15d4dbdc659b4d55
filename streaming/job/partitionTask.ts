/**
 * One input partition owned by this instance: its state, its transactional producer and its
 * checkpoint protocol (Flink-style two-phase commit with the Kafka transaction as commit point):
 *
 *   capture   (by the thread holding the state, between two batches: stateHost.ts) the changed
 *             rows stamped with position N, and a full or delta snapshot of the state at N;
 *   pre-commit  create the snapshot in the shared checkpoint store under a name that fixes its
 *             chain (checkpointStore.ts: p<k>/<N>-f or <N>-d<hash of its base's name>),
 *             create-only, whole or not at all;
 *   commit    one transaction: the rows to the view topic, then the tombstones of the rows of
 *             windows that expired (services/metrics/retention.ts), + the group's offset N for the
 *             partition, with the snapshot's name as the offset's metadata; read_committed
 *             readers see both or neither;
 *   clean-up  in the background: delete the snapshots the previous chain held and the new one
 *             does not; now and then sweep orphans (checkpointStore.ts says when that is safe).
 *
 * A crash before the commit leaves the previous committed offset, whose snapshot still exists;
 * a crash after it leaves N and its snapshot. Restore always takes the snapshot the group's
 * committed offset names: the state and the published rows cannot diverge, on any host.
 * The producer's transactional id is per partition (`lk-speed-<version>-p<k>`): a new owner
 * fences the old one before reading the committed offset, so a zombie cannot commit after it.
 *
 * A broker outage during the commit (docs/speed-layer.md, "Broker outages"): the transaction's
 * outcome is unknown. The task waits for the broker with backoff, takes the partition's producer
 * anew (which ends the old transaction, committed or aborted, and fences the old producer), and
 * reads the group's offset: at N the transaction committed; at the last committed position it
 * did not, and the same capture (rows, offset N, the snapshot already written) is committed
 * again. Anything else means another owner committed while this instance owned the partition: a
 * fatal ProducerFencedError, as is a fence by a newer producer while the partition stays ours.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { crashPoint, pausePoint } from '../../services/faults/crashPoints.ts';
import type { EventLog, LogProducer } from '../../services/log/eventLog.ts';
import {
  Backoff,
  ProducerFencedError,
  TRANSACTION_TIMEOUT_MS,
  checkTopics,
  classifyLogError,
  isProducerFenced,
  retryWhileUnavailable,
} from '../../services/log/outages.ts';
import { logger } from '../../services/observability/logger.ts';
import { checkpointMetadata, committedCheckpoint, snapshotName, type CheckpointStore } from '../checkpoints/checkpointStore.ts';
import type { StateHost } from '../threads/stateHost.ts';
import type { Capture } from '../threads/stateRegistry.ts';

/** View rows per produce call inside a checkpoint's transaction. */
const SEND_SLICE_ROWS = 5000;
/**
 * After a fence, how long a rebalance that moved the partition away gets to show (a few
 * heartbeats of the consumer): only then is a fence with the partition still ours fatal.
 */
const FENCE_SETTLE_MS = 3_000;
/** How often an owner sweeps its partition's orphaned snapshots (one listing each time). */
const SWEEP_INTERVAL_MS = 30_000;

export interface TaskContext {
  log: EventLog;
  topic: string;
  viewTopic: string;
  groupId: string;
  version: string;
  store: CheckpointStore;
  /** False once the job stops or fails: a checkpoint then stops retrying (the next owner resumes from the last committed one). */
  active(): boolean;
  /**
   * Resolves once the consumer group's assignment has settled, or `revoked()` says this task lost
   * its partition meanwhile (at once outside a group: the lake half of a replay). The revocation
   * must end the wait: the next assignment waits for this task to close.
   */
  settled(revoked: () => boolean): Promise<void>;
}

export interface CheckpointInfo {
  at: number;
  position: number;
  bytes: number;
  durationMs: number;
  rows: number;
  kind: 'full' | 'delta';
}

const ANOTHER_OWNER_HINT = (version: string) =>
  `Is another lk speed of version ${version} running with another --group, or was a savepoint restored while it ran? Stop it; this instance stops too`;

export function transactionalIdFor(version: string, partition: number): string {
  return `lk-speed-${version}-p${partition}`;
}

/** Opens the partition's transactional producer and fences any previous owner at once. */
export async function openFencingProducer(log: EventLog, version: string, partition: number): Promise<LogProducer> {
  const producer = await log.producer({ transactionalId: transactionalIdFor(version, partition) });
  try {
    // kafkajs registers the transactional id (InitProducerId, which bumps the epoch and so fences
    // the old owner, waiting for or aborting its open transaction) on the first transaction.
    const tx = await producer.transaction();
    await tx.abort();
    return producer;
  } catch (err) {
    await producer.close();
    throw err;
  }
}

export class PartitionTask {
  /** Aborted when the partition is revoked: ends any wait of a checkpoint in flight. */
  private readonly revocation = new AbortController();
  /** A checkpoint failed after its capture: the live state no longer matches any commit. */
  private failed = false;
  highWatermark = 0;
  /** Wall-clock time of the last record (or of the assignment): for idleness. */
  lastRecordAt = Date.now();
  lastCheckpoint: CheckpointInfo | undefined;
  /** The group's committed offset for the partition as this task knows it (null: none yet). */
  committedPosition: number | null;
  private inFlight: Promise<void> | undefined;
  /** Snapshot names of the committed checkpoint's chain (base first), and of the one before. */
  private chain: string[];
  private previousChain: string[] = [];
  private chainRows: number;
  private chainLast: number | null;
  /** Clean-up after the last commit, running in the background (one at a time). */
  private cleanup: Promise<void> | undefined;
  private lastSweepAt = Date.now();

  constructor(
    readonly partition: number,
    private readonly host: StateHost,
    /** Replaced after a transaction whose outcome a broker outage left unknown. */
    private producer: LogProducer,
    private readonly ctx: TaskContext,
    restoredChain: { names: string[]; positions: number[]; rows: number },
  ) {
    this.chain = restoredChain.names;
    this.committedPosition = restoredChain.positions.at(-1) ?? null;
    this.chainLast = this.committedPosition;
    this.chainRows = restoredChain.rows;
  }

  get revoked(): boolean {
    return this.revocation.signal.aborted;
  }

  /** The partition is no longer this instance's: a checkpoint in flight stops retrying (its new owner restores the last committed one). */
  revoke(): void {
    this.revocation.abort();
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
      last: this.chainLast,
      lastName: this.chain.at(-1) ?? null,
      names: this.chain,
    });
    if (capture) await this.commit(capture, started);
  }

  /**
   * Phase 2 for one capture: the snapshot once, then the transaction until it is committed,
   * through outages of any length (see the file comment).
   */
  private async commit(capture: Capture, started: number): Promise<void> {
    const { store } = this.ctx;
    const { position, header, snapshot, rowKeys } = capture;
    const name = snapshotName(position, header);
    crashPoint('speed.checkpoint.before-snapshot-put');
    // A name already taken holds this very state over this very chain (checkpointStore.ts).
    await store.write(this.partition, name, snapshot);
    crashPoint('speed.checkpoint.snapshot-written');
    const backoff = new Backoff();
    for (;;) {
      const begunAt = Date.now();
      try {
        await this.commitTransaction(capture, name);
        break;
      } catch (err) {
        // Revoked or stopping: the next owner restores the last committed checkpoint.
        if (this.revoked || !this.ctx.active()) throw err;
        // Fenced from a transaction younger than the broker's timeout: a newer producer did it.
        if (isProducerFenced(err) && Date.now() - begunAt < TRANSACTION_TIMEOUT_MS) throw await this.fencedWhileOwned(err);
        if (classifyLogError(err) !== 'retry') throw err;
        this.ctx.log.health.suspect(err);
        logger.debug(
          { partition: this.partition, position, err: errorMessage(err) },
          'checkpoint transaction failed; waiting for the broker',
        );
        await this.ctx.log.health.pause(backoff.next(), this.revocation.signal);
        if ((await this.outcomeAfterFailure(position)) === 'committed') break;
      }
    }
    const newChain = header.kind === 'full' ? [name] : [...this.chain, name];
    this.previousChain = this.chain;
    this.chain = newChain;
    this.chainRows = header.chainRows;
    this.chainLast = position;
    this.committedPosition = position;
    this.lastCheckpoint = {
      at: Date.now(),
      position,
      bytes: snapshot.length,
      durationMs: Date.now() - started,
      rows: rowKeys.length,
      kind: header.kind,
    };
    this.cleanUp(position, name);
  }

  /**
   * Deletes what the chain before this commit held and the new one does not, and now and then
   * sweeps orphans, in the background: the next checkpoint does not wait for it. Skipped while
   * the previous clean-up runs (the next one catches up).
   */
  private cleanUp(position: number, name: string): void {
    if (this.cleanup) return;
    const chain = new Set(this.chain);
    const dead = this.previousChain.filter((n) => !chain.has(n));
    const sweep = Date.now() - this.lastSweepAt >= SWEEP_INTERVAL_MS;
    if (sweep) this.lastSweepAt = Date.now();
    const { store, log, groupId, topic } = this.ctx;
    this.cleanup = (async () => {
      await store.deleteSnapshots(this.partition, dead);
      if (!sweep) return;
      // Only while the group's offset, read afresh, is still this commit (checkpointStore.ts).
      const committed = committedCheckpoint((await log.committedOffsetsWithMetadata(groupId, topic))[this.partition] ?? null);
      if (committed?.offset !== position || committed.name !== name) return;
      const deleted = await store.sweep(this.partition, committed, new Set([...this.chain, ...this.previousChain]));
      if (deleted.length > 0) logger.debug({ partition: this.partition, deleted }, 'swept orphaned checkpoints');
    })()
      .catch((err: unknown) => logger.warn({ partition: this.partition, err: errorMessage(err) }, 'could not prune old checkpoints'))
      .finally(() => (this.cleanup = undefined));
  }

  /** One transaction: the capture's rows to the view topic and its position as the group's offset, naming its snapshot. */
  private async commitTransaction(capture: Capture, name: string): Promise<void> {
    const { topic, viewTopic, groupId } = this.ctx;
    const { position, rowKeys, rowValues, rowValueEnds, tombstoneKeys } = capture;
    const values = Buffer.from(rowValues.buffer, rowValues.byteOffset, rowValues.byteLength);
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
      // After the rows: a window that closed and expired within this checkpoint has its final
      // row and then its tombstone, and compaction keeps the tombstone.
      for (let i = 0; i < tombstoneKeys.length; i += SEND_SLICE_ROWS)
        await tx.send(
          viewTopic,
          tombstoneKeys.slice(i, i + SEND_SLICE_ROWS).map((key) => ({ key, value: null })),
        );
      crashPoint('speed.checkpoint.rows-sent');
      await tx.sendOffsets(groupId, [{ topic, partition: this.partition, offset: position, metadata: checkpointMetadata(name) }]);
      crashPoint('speed.checkpoint.offsets-sent');
      await pausePoint('speed.checkpoint.commit');
      await tx.commit();
      crashPoint('speed.checkpoint.committed');
    } catch (err) {
      await tx.abort().catch(() => undefined);
      throw err;
    }
  }

  /**
   * After a failed transaction at `position`: the partition's producer anew, once the group's
   * assignment has settled (re-registering the transactional id ends the old transaction, either
   * way, and fences the old producer), then the group's committed offset tells what happened.
   */
  private async outcomeAfterFailure(position: number): Promise<'committed' | 'again'> {
    const { log, topic, viewTopic, groupId, version } = this.ctx;
    const retry = <T>(what: string, attempt: () => Promise<T>) =>
      retryWhileUnavailable(attempt, {
        what,
        health: log.health,
        stopped: () => this.revoked || !this.ctx.active(),
        signal: this.revocation.signal,
        check: checkTopics(log, [topic, viewTopic]),
      });
    await this.ctx.settled(() => this.revoked);
    if (this.revoked || !this.ctx.active()) throw new InfrastructureError(`partition ${this.partition} was revoked during its checkpoint`);
    await this.producer.close();
    this.producer = await retry(`producer of partition ${this.partition}`, () => openFencingProducer(log, version, this.partition));
    const committed = (await retry('committed offsets', () => log.committedOffsets(groupId, topic)))[this.partition] ?? null;
    if (committed === position) {
      logger.info({ partition: this.partition, position }, 'checkpoint committed before the broker went away');
      return 'committed';
    }
    if (committed === this.committedPosition) {
      logger.info({ partition: this.partition, position }, 'checkpoint did not commit before the broker went away: committing it again');
      return 'again';
    }
    throw new ProducerFencedError(
      `partition ${this.partition} of topic "${topic}": group "${groupId}" committed offset ${committed} while this instance of version "${version}", ` +
        `which last committed ${this.committedPosition}, still owned the partition. ${ANOTHER_OWNER_HINT(version)}`,
    );
  }

  /** A fence while the partition looks ours: fatal unless a rebalance moved it away meanwhile. */
  private async fencedWhileOwned(err: unknown): Promise<unknown> {
    await sleep(FENCE_SETTLE_MS, undefined, { signal: this.revocation.signal }).catch(() => undefined);
    await this.ctx.settled(() => this.revoked);
    if (this.revoked || !this.ctx.active()) return err;
    return new ProducerFencedError(
      `partition ${this.partition} of version "${this.ctx.version}": a newer producer took transactional id ${transactionalIdFor(this.ctx.version, this.partition)} ` +
        `while this instance (group "${this.ctx.groupId}") still owned the partition. ${ANOTHER_OWNER_HINT(this.ctx.version)}`,
      { cause: err },
    );
  }

  /** Waits for the checkpoint in flight, releases the state and closes the producer. */
  async close(): Promise<void> {
    await this.settle();
    await this.cleanup;
    await this.host.drop(this.partition).catch(() => undefined);
    await this.producer.close();
  }
}
