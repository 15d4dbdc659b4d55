/**
 * The speed layer's status file, a contract between the speed layer (which writes it about once a
 * second, atomically) and serving (whose `pipeline` query and reconciliation read it):
 * `<data-dir>/speed/status/<version>-<instanceId>.json`, one per speed instance.
 *
 * Every instant is epoch milliseconds: wall-clock stamps (`updatedAt`, `lastCheckpoint.at`) and
 * event-time watermarks alike. Readers validate with `speedStatusSchema` and report a file they
 * cannot read with its path and reason, never ignore it.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../errors.ts';

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

export function speedStatusDir(dataDir: string): string {
  return join(dataDir, 'speed', 'status');
}

export function speedStatusPath(dataDir: string, version: string, instanceId: string): string {
  return join(speedStatusDir(dataDir), `${version}-${instanceId}.json`);
}

export interface StatusRead<T> {
  path: string;
  status?: T;
  error?: string;
}

/** Reads one status file against its schema: the status, or why it could not be read. */
export function readStatusFile<T>(path: string, schema: z.ZodType<T>): StatusRead<T> {
  try {
    const parsed = schema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return { path, error: `${issue.path.join('.') || '(root)'}: ${issue.message}` };
    }
    return { path, status: parsed.data };
  } catch (err) {
    return { path, error: errorMessage(err) };
  }
}

/** The status of every speed instance of `version` (files named `<version>-<instanceId>.json`). */
export function readSpeedStatuses(dataDir: string, version: string): StatusRead<SpeedStatus>[] {
  const dir = speedStatusDir(dataDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(`${version}-`) && n.endsWith('.json'))
    .map((n) => readStatusFile(join(dir, n), speedStatusSchema))
    .filter((r) => r.status === undefined || r.status.version === version);
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
