/**
 * The view contract between the layers (see docs/merge-rule.md for the argument).
 *
 * Both the speed layer and the batch layer publish *partial* aggregates, one row per
 * (metric, granularity, key, window, input partition). Events are keyed by event id, so all
 * copies of one event share a partition and deduplication within a partition is exact; a window
 * total is the merge of its partitions' rows.
 *
 * Each row says how much of its partition it reflects: `throughOffset` = the row reflects exactly
 * the events of `partition` with offset < throughOffset that belong to the window (minus, for
 * the speed layer, events it dropped as too late — and it drops events only for windows it has
 * closed, after which it never updates the row again). `processingTime` is the log-append time
 * of record `throughOffset - 1`: non-decreasing in the offset within a partition, so "the latest
 * processing time wins" and "the larger throughOffset wins" are the same rule, with the offset
 * as the exact tie-breaker.
 *
 * Serving merges per (metric, granularity, key, window, partition): the row with the greater
 * throughOffset wins (batch on ties), then partitions are combined (count/sum add, min/max,
 * distinct sketches merge).
 */
import { z } from 'zod';
import { isGranularity, type Granularity } from '../metrics/definitions.ts';

export type ViewSource = 'batch' | 'speed';

/**
 * The `granularity` of a session row: a partial session (services/metrics/sessionRule.ts) of one
 * (metric, key, input partition), with `windowStart` its first event time and `windowEnd` its last.
 * No window size has this name (a size is `minute`, `hour`, `day` or a duration), so the record
 * key `viewRowKey` (metric, "session", start, partition, key) names one partial session: two
 * partial sessions of one key in one partition never share a start (they hold disjoint events,
 * and an event time lies in one of them at most).
 */
export const SESSION_GRANULARITY = 'session';

export interface ViewRow {
  metric: string;
  granularity: Granularity;
  key: string;
  /** Window start, epoch ms (UTC-aligned tumbling window). */
  windowStart: number;
  /** Input partition of the events topic that this partial covers. */
  partition: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  /** HyperLogLog sketch (services/metrics/hll.ts), base64; null when the metric has no `distinct`. */
  distinctSketch: string | null;
  /**
   * Percentile sketch of the value (services/metrics/ddsketch.ts `sketchText`: "bucket:count,...");
   * null when the metric has no `percentiles`. Optional: rows of older writers have none.
   */
  valueSketch?: string | null;
  /**
   * Events counted in the row that are not in their home partition (services/log/partitioner.ts):
   * another partition may hold a copy, which this row's dedup cannot see. Serving marks a window
   * provisional when a row with misplaced events meets a speed row (docs/merge-rule.md).
   */
  misplaced: number;
  /** The row reflects the partition's events with offset < throughOffset. */
  throughOffset: number;
  /** Log-append time (epoch ms) of record throughOffset - 1: the row's processing-time stamp. */
  processingTime: number;
  /** Session rows only (`granularity` SESSION_GRANULARITY): the session's last event time, epoch ms. */
  windowEnd?: number;
}

/**
 * A partial session (services/metrics/sessionRule.ts): the sessions of one partition's events of
 * one key, each one row. `windowStart` = first event time, `windowEnd` = last event time (equal
 * for a session of one event); the measures and stamps mean what they mean for a window row. The
 * speed layer publishes them to the same view topic as window rows, and deletes (tombstones) a
 * row whose session moved its start or was merged into another, in the transaction that
 * publishes the session's new row; the batch layer writes them to the same rows.parquet
 * (`window_end` set). Serving merges them with sessionRule.ts `combineSessionRows`.
 */
export interface SessionRow extends ViewRow {
  granularity: typeof SESSION_GRANULARITY;
  windowEnd: number;
}

export function isSessionRow(row: Pick<ViewRow, 'granularity'>): row is SessionRow {
  return row.granularity === SESSION_GRANULARITY;
}

/** The fields a window row and a session row share. */
const rowFields = {
  metric: z.string().min(1),
  key: z.string(),
  windowStart: z.number().int(),
  partition: z.number().int().nonnegative(),
  count: z.number().int().nonnegative(),
  sum: z.number().nullable(),
  min: z.number().nullable(),
  max: z.number().nullable(),
  distinctSketch: z.string().nullable(),
  valueSketch: z
    .string()
    .regex(/^(-?\d+:\d+(,-?\d+:\d+)*)?$/, 'must be a percentile sketch: bucket:count pairs joined by commas')
    .nullable()
    .optional(),
  // Rows written before misplaced events were counted have none.
  misplaced: z.number().int().nonnegative().default(0),
  throughOffset: z.number().int().nonnegative(),
  processingTime: z.number(),
};

/** A window row (a tumbling window of a size). Refuses session rows: read a speed view topic with `anyViewRowSchema`. */
export const viewRowSchema = z
  .object({
    ...rowFields,
    granularity: z.string().refine(isGranularity, 'must be a granularity in its canonical name (minute, hour, day, 5m ...)'),
  })
  .strict();

/** A session row (SessionRow). */
export const sessionRowSchema = z
  .object({
    ...rowFields,
    granularity: z.literal(SESSION_GRANULARITY),
    windowEnd: z.number().int(),
  })
  .strict()
  .refine((r) => r.windowEnd >= r.windowStart, { message: 'windowEnd must not be before windowStart', path: ['windowEnd'] });

/**
 * Any row of a speed view topic: a session row when its granularity is `session`, else a window
 * row, each with its own schema's messages.
 */
export const anyViewRowSchema = z.unknown().transform((v, ctx): ViewRow => {
  const isSession = typeof v === 'object' && v !== null && (v as { granularity?: unknown }).granularity === SESSION_GRANULARITY;
  const r = isSession ? sessionRowSchema.safeParse(v) : viewRowSchema.safeParse(v);
  if (r.success) return r.data;
  for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
  return z.NEVER;
});

const SEP = '\u001f';

/** Record key of a row in a speed view topic (compacted: the latest value per key survives). */
export function viewRowKey(row: Pick<ViewRow, 'metric' | 'granularity' | 'key' | 'windowStart' | 'partition'>): string {
  return [row.metric, row.granularity, row.windowStart, row.partition, row.key].join(SEP);
}

/** Speed view topic of a job version, e.g. `views.speed.v1`. */
export function speedViewTopic(version: string): string {
  return `views.speed.${version}`;
}
