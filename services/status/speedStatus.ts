/**
 * The speed layer's status file, a contract between the speed layer (which writes it about once a
 * second, whole) and serving, `lk versions` and promotion (which read it):
 * `speed/status/<version>-<instanceId>.json` in the shared state (`--state-uri`), one per speed
 * instance, so that instances on every host are seen wherever the state is read.
 *
 * Every instant is epoch milliseconds: wall-clock stamps (`updatedAt`, `lastCheckpoint.at`) and
 * event-time watermarks alike. Readers validate with `speedStatusSchema` and report a file they
 * cannot read with its path and reason, never ignore it.
 */
import { z } from 'zod';
import { STATE_KEYS } from '../config/dataDir.ts';
import { errorMessage } from '../errors.ts';
import { parseJsonText } from '../storage/jsonFile.ts';
import { listAll, type ObjectStore } from '../storage/objectStore.ts';

const count = z.number().finite().nonnegative();
const instant = z.number().finite();

export const partitionStatusSchema = z.object({
  partition: z.number().int().nonnegative(),
  /** The group's committed offset (null before the first checkpoint). */
  committedOffset: z.number().int().nonnegative().nullable(),
  /** Next offset this instance reads (may be ahead of the committed offset until the next checkpoint). */
  position: z.number().int().nonnegative(),
  endOffset: z.number().int().nonnegative(),
  lag: count,
  /** Event time, epoch ms; null before the partition's first event. */
  watermark: instant.nullable(),
  idle: z.boolean(),
  /** Valid records of the partition that are not in their home partition (services/log/partitioner.ts). */
  misplaced: count,
});

export const speedStatusSchema = z.object({
  version: z.string(),
  instanceId: z.string(),
  pid: z.number().int(),
  updatedAt: instant,
  topic: z.string(),
  viewTopic: z.string(),
  ready: z.boolean(),
  partitions: z.array(partitionStatusSchema),
  /** Min watermark over this instance's non-idle partitions (idle ones do not hold it back). */
  watermark: instant.nullable(),
  lastCheckpoint: z.object({ at: instant, bytes: count, durationMs: count }).nullable(),
  eventsPerSecond: count,
  duplicates: count,
  invalid: count,
  /** Sum of the partitions' misplaced records. */
  misplaced: count,
  /** Per metric: events not applied because their window was closed, summed over granularities. */
  droppedLate: z.record(z.string(), count),
  /** Per `metric/granularity`. */
  droppedLateByGranularity: z.record(z.string(), count),
  stateWindows: count,
  stateBytes: count,
  dedupEntries: count,
});
export type SpeedStatus = z.infer<typeof speedStatusSchema>;

export function speedStatusKey(version: string, instanceId: string): string {
  return `${STATE_KEYS.speedStatus}/${version}-${instanceId}.json`;
}

export interface StatusRead<T> {
  /** The object's key in the shared state. */
  key: string;
  /** Where it is, for messages (`s3://bucket/prefix/speed/status/v1-a.json` or a path). */
  path: string;
  status?: T;
  error?: string;
}

/** Reads one status object against its schema: the status, or why it could not be read (undefined: there is none). */
export async function readStatusObject<T>(state: ObjectStore, key: string, schema: z.ZodType<T>): Promise<StatusRead<T> | undefined> {
  const path = `${state.location}/${key}`;
  try {
    const object = await state.get(key);
    if (!object) return undefined;
    return { key, path, status: parseJsonText(object.bytes.toString('utf8'), schema, 'a status', path) };
  } catch (err) {
    return { key, path, error: errorMessage(err) };
  }
}

/**
 * Status files not written for this long are of instances long gone (an instance restarted under
 * a new id leaves its old file): they are not read, so that readers on S3 do not fetch a growing
 * pile of them on every request. `lk versions retire` deletes a version's files.
 */
export const STATUS_FORGOTTEN_MS = 24 * 3_600_000;

/**
 * The status of every speed instance of `version` (objects named `<version>-<instanceId>.json`)
 * written within STATUS_FORGOTTEN_MS (`all`: however old).
 */
export async function readSpeedStatuses(
  state: ObjectStore,
  version: string,
  options: { all?: boolean } = {},
): Promise<StatusRead<SpeedStatus>[]> {
  const listed = await listAll(state, `${STATE_KEYS.speedStatus}/${version}-`);
  const now = Date.now();
  const reads = await Promise.all(
    listed
      .filter((o) => o.key.endsWith('.json') && (options.all === true || now - o.lastModified <= STATUS_FORGOTTEN_MS))
      .map((o) => readStatusObject(state, o.key, speedStatusSchema)),
  );
  return reads.filter((r): r is StatusRead<SpeedStatus> => r !== undefined && (r.status === undefined || r.status.version === version));
}

/** What readers (serving, `lk versions`, promotion) make of one version's status files: one entry per input partition. */
export interface SpeedPartitionStatus {
  partition: number;
  instanceId: string;
  committedOffset: number | null;
  endOffset: number | null;
  lag: number | null;
  watermark: number | null;
  misplaced: number | null;
  updatedAt: number;
}

/**
 * One entry per input partition: when several instance files name a partition (a rebalance
 * moved it), the most recently updated file speaks for it.
 */
export function speedPartitions(statuses: StatusRead<SpeedStatus>[]): SpeedPartitionStatus[] {
  const byPartition = new Map<number, SpeedPartitionStatus>();
  for (const { status } of statuses) {
    if (!status) continue;
    for (const p of status.partitions) {
      const prev = byPartition.get(p.partition);
      if (prev && prev.updatedAt >= status.updatedAt) continue;
      byPartition.set(p.partition, {
        partition: p.partition,
        instanceId: status.instanceId,
        committedOffset: p.committedOffset,
        endOffset: p.endOffset,
        lag: p.lag,
        watermark: p.watermark,
        misplaced: p.misplaced,
        updatedAt: status.updatedAt,
      });
    }
  }
  return [...byPartition.values()].sort((a, b) => a.partition - b.partition);
}
