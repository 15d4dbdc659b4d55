/**
 * The lake half of a replay `--from lake` (Kappa+): the speed layer's own partition tasks and
 * state threads fed with the lake's records instead of the log's, checkpointed by the same
 * two-phase commit, up to the hand-over offset fixed in the version's record (`origin.lakeEnds`).
 *
 * The hand-over is by offset. Each partition's last lake checkpoint commits exactly its lake end
 * E as the group's offset (the state's position moves to E even when the last records were not
 * events); the log consumer then starts where the group stands, at E. Offsets below E come from
 * the lake, offsets from E on from the log, so no record is read twice or missed, whatever the
 * record times. A replay killed anywhere resumes from the group's committed offset: below E it
 * reads the lake again from there (the checkpoint at that offset holds the state), at E it goes
 * straight to the log. docs/replay.md walks through it with a table of offsets.
 */
import { assert } from '../../services/errors.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';
import type { PartitionTask } from '../job/partitionTask.ts';
import type { PackedBatch } from '../threads/recordPack.ts';
import type { EventMapping } from '../../services/metrics/fieldSemantics.ts';
import type { LakeSource } from './lakeSource.ts';
import { readWarmUp, warmUpFloor } from './warmUpSource.ts';

export interface LakeReplayPartition {
  partition: number;
  /** Where the lake's part begins when the group has committed nothing yet. */
  start: number;
  /**
   * A version that starts mid-log: the lake's records below this offset are its warm-up
   * (warmUpSource.ts: the records that can only fall in windows closed at the start are read
   * narrow); `start` otherwise.
   */
  warmEnd: number;
  /** The hand-over offset: the lake's end when the version was created. */
  end: number;
}

export interface LakeReplayDeps {
  source: LakeSource;
  partitions: LakeReplayPartition[];
  /** The version's event mapping and semantics: what the warm-up's narrow records are read under. */
  mapping: EventMapping;
  semantics: { outOfOrdernessMs: number; dedupHorizonMs: number };
  /** Offsets per lake read: a range's records are in memory at once. */
  chunkOffsets: number;
  /** The records' keys are read (a mapping with `event.id: $key`). */
  withKeys: boolean;
  /** Partitions read side by side: the state threads' count. */
  lanes: number;
  /** Opens the partition's task at the group's committed checkpoint, else at `start`. */
  openTask(partition: number, start: number): Promise<PartitionTask>;
  /** Hands one range's records to the partition's state (throttled by --max-rate). */
  apply(batch: PackedBatch): Promise<void>;
  /** Rows changed since the partition's last checkpoint (a transaction must stay small). */
  pendingRows(partition: number): number;
  maxRowsPerCheckpoint: number;
  checkpointIntervalMs: number;
  /** Starts a checkpoint of the task; a failure fails the job (the promise only says when it ended). */
  checkpoint(task: PartitionTask): Promise<void>;
  /** Releases the partition's state and producer once it has handed over. */
  closeTask(task: PartitionTask): Promise<void>;
  /** The job is stopping or failed: leave the rest to the next start. */
  stopped(): boolean;
}

/**
 * Replays each partition's lake part; true when every partition has handed over. Partitions run
 * in `lanes` side by side (one per state thread: lane i takes the partitions p with p % lanes = i,
 * those of thread i), each lane one partition after another.
 */
export async function replayFromLake(d: LakeReplayDeps): Promise<boolean> {
  const lanes = Array.from({ length: Math.max(1, d.lanes) }, (_, i) =>
    d.partitions.filter((p) => p.partition % Math.max(1, d.lanes) === i),
  );
  const done = await Promise.all(lanes.map((lane) => replayLane(d, lane)));
  if (!done.every(Boolean)) return false;
  crashPoint('replay.lake.handed-over');
  return true;
}

async function replayLane(d: LakeReplayDeps, partitions: LakeReplayPartition[]): Promise<boolean> {
  for (const { partition, start, warmEnd, end } of partitions) {
    const task = await d.openTask(partition, start);
    const from = task.committedPosition ?? start;
    // The warm-up's part (a version that starts mid-log), then the replay's own.
    // (Read as the replay's own part when no record is below the floor.)
    const floor = from < warmEnd ? await warmUpFloor(d.source, partition, warmEnd, d.mapping, d.semantics) : -Infinity;
    const narrowUntil = floor === -Infinity ? from : warmEnd;
    const read = (at: number) =>
      at < narrowUntil
        ? readWarmUp(d.source, partition, at, narrowUntil, floor, d.mapping, d.chunkOffsets, d.withKeys)
        : d.source.read(partition, at, end, d.chunkOffsets);
    let pending = from < end ? read(from) : undefined;
    let lastCheckpointAt = Date.now();
    while (pending !== undefined) {
      const chunk = await pending;
      if (d.stopped()) return false;
      // Read the next range while the state thread applies this one.
      pending = chunk.nextOffset < end ? read(chunk.nextOffset) : undefined;
      pending?.catch(() => undefined); // awaited on the next turn; a stop must not leave it unhandled
      await d.apply(chunk.packed);
      const full = d.pendingRows(partition) >= d.maxRowsPerCheckpoint;
      // As on the log: checkpoints run beside the reading, and only a transaction grown too
      // large makes the reading wait for the one in flight.
      if (full) await task.settle();
      if (full || (!task.checkpointInFlight && Date.now() - lastCheckpointAt >= d.checkpointIntervalMs)) {
        lastCheckpointAt = Date.now();
        void d.checkpoint(task).then(
          () => crashPoint('replay.lake.checkpointed'),
          () => undefined, // the job fails through d.checkpoint
        );
      }
    }
    if (d.stopped()) return false;
    // The hand-over: the group's offset becomes exactly the lake's end, with the state at it.
    await task.settle();
    await task.checkpoint();
    assert(task.committedPosition === end, `partition ${partition} handed over at ${task.committedPosition}, not at the lake's end ${end}`);
    await d.closeTask(task);
  }
  return true;
}
