/**
 * Reads the other layers' status files (the contract in docs/contracts.md): the speed instances'
 * `<dataDir>/speed/status/<version>-<instanceId>.json` and the batch service's
 * `<dataDir>/batch/status.json`. Layers meet through files, never in-process.
 *
 * The files are validated leniently: serving reports what it can read and says what it could
 * not, because a health page that fails on one odd field helps nobody.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { errorMessage } from '../../services/errors.ts';

const num = z.number().finite();
/** An instant as epoch ms or ISO-8601 text (the speed layer writes text), read as epoch ms. */
const instant = z.union([
  num,
  z.string().transform((text, ctx) => {
    const ms = Date.parse(text);
    if (Number.isNaN(ms)) ctx.addIssue({ code: 'custom', message: `not a date-time: ${JSON.stringify(text)}` });
    return ms;
  }),
]);

export const speedStatusSchema = z.looseObject({
  version: z.string(),
  instanceId: z.string(),
  pid: num.optional(),
  updatedAt: instant,
  partitions: z.array(
    z.looseObject({
      partition: z.number().int().nonnegative(),
      committedOffset: num.nullable().optional(),
      endOffset: num.nullable().optional(),
      lag: num.nullable().optional(),
      watermark: num.nullable().optional(),
      misplaced: num.optional(),
    }),
  ),
  lastCheckpoint: z.looseObject({ at: instant, bytes: num.optional(), durationMs: num.optional() }).nullable().optional(),
  eventsPerSecond: num.optional(),
  duplicates: num.optional(),
  misplaced: num.optional(),
  droppedLate: z.union([z.record(z.string(), num), num]).optional(),
  stateWindows: num.optional(),
  stateBytes: num.optional(),
  dedupEntries: num.optional(),
});
export type SpeedStatusFile = z.infer<typeof speedStatusSchema>;

export const batchStatusSchema = z.looseObject({
  version: z.string().optional(),
  lastRun: z.looseObject({}).nullable().optional(),
  nextRunAt: instant.nullable().optional(),
  lakeFiles: num.optional(),
  lakeBytes: num.optional(),
  writer: z
    .looseObject({ partitions: z.array(z.looseObject({ partition: num, committedOffset: num.nullable() })) })
    .nullable()
    .optional(),
  updatedAt: instant.optional(),
});
export type BatchStatusFile = z.infer<typeof batchStatusSchema>;

export interface StatusRead<T> {
  path: string;
  status?: T;
  error?: string;
}

export function speedStatusDir(dataDir: string): string {
  return join(dataDir, 'speed', 'status');
}

export function batchStatusPath(dataDir: string): string {
  return join(dataDir, 'batch', 'status.json');
}

function readJson<T>(path: string, schema: z.ZodType<T>): StatusRead<T> {
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
export function readSpeedStatuses(dataDir: string, version: string): StatusRead<SpeedStatusFile>[] {
  const dir = speedStatusDir(dataDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith(`${version}-`) && n.endsWith('.json'))
    .map((n) => readJson(join(dir, n), speedStatusSchema))
    .filter((r) => r.status === undefined || r.status.version === version);
}

export function readBatchStatus(dataDir: string): StatusRead<BatchStatusFile> | undefined {
  const path = batchStatusPath(dataDir);
  const read = readJson(path, batchStatusSchema);
  if (read.error?.includes('ENOENT')) return undefined;
  return read;
}

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
export function speedPartitions(statuses: StatusRead<SpeedStatusFile>[]): SpeedPartitionStatus[] {
  const byPartition = new Map<number, SpeedPartitionStatus>();
  for (const { status } of statuses) {
    if (!status) continue;
    for (const p of status.partitions) {
      const prev = byPartition.get(p.partition);
      if (prev && prev.updatedAt >= status.updatedAt) continue;
      byPartition.set(p.partition, {
        partition: p.partition,
        instanceId: status.instanceId,
        committedOffset: p.committedOffset ?? null,
        endOffset: p.endOffset ?? null,
        lag: p.lag ?? null,
        watermark: p.watermark ?? null,
        misplaced: p.misplaced ?? null,
        updatedAt: status.updatedAt,
      });
    }
  }
  return [...byPartition.values()].sort((a, b) => a.partition - b.partition);
}
