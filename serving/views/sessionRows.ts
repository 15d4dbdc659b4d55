/**
 * Session rows as serving holds them, and the sessions a query answers.
 *
 * Both layers publish *partial* sessions (services/views/viewRow.ts SessionRow): per (metric, key,
 * input partition), the sessions of that partition's events alone, one row each, named by their
 * first event time. The speed layer upserts them in its view topic and deletes (tombstones) a row
 * whose session moved its start or was merged into another; the batch layer writes them to its
 * snapshot's rows.parquet. Serving keeps both sides apart, as it does for window rows, and answers
 * with services/metrics/sessionRule.ts `combineSessionRows`: per partition the batch or the speed
 * rows of each cluster (the set rule of docs/merge-rule.md, "Hard case: sessions across
 * partitions"), then the chosen partials of every partition chained into the true sessions.
 */
import { combineSessionRows, type CombinedSession, type SourcedSessionRow } from '../../services/metrics/sessionRule.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import type { SessionRow } from '../../services/views/viewRow.ts';

const SEP = '\u001f';

/** The partial sessions of one side (batch or speed) of a version, per (metric, key). */
export class SessionRowStore {
  /** metric SEP key -> (partition SEP start) -> row. */
  private readonly byKey = new Map<string, Map<string, SourcedSessionRow>>();
  private count = 0;

  constructor(private readonly source: 'batch' | 'speed') {}

  /** Adds or replaces the partial session of (metric, key, partition) that starts at row.windowStart. */
  upsert(row: SessionRow): void {
    const mk = row.metric + SEP + row.key;
    let rows = this.byKey.get(mk);
    if (!rows) this.byKey.set(mk, (rows = new Map()));
    const id = row.partition + SEP + row.windowStart;
    if (!rows.has(id)) this.count++;
    rows.set(id, {
      start: row.windowStart,
      end: row.windowEnd,
      count: row.count,
      sum: row.sum,
      min: row.min,
      max: row.max,
      distinctSketch: row.distinctSketch,
      misplaced: row.misplaced,
      partition: row.partition,
      source: this.source,
      throughOffset: row.throughOffset,
      processingTime: row.processingTime,
    });
  }

  /** Deletes a partial session (a tombstone); false when there was none. */
  remove(metric: string, key: string, start: number, partition: number): boolean {
    const mk = metric + SEP + key;
    const rows = this.byKey.get(mk);
    if (!rows?.delete(partition + SEP + start)) return false;
    this.count--;
    if (rows.size === 0) this.byKey.delete(mk);
    return true;
  }

  /** The partial sessions of (metric, key), in no particular order. */
  rows(metric: string, key: string): SourcedSessionRow[] {
    const rows = this.byKey.get(metric + SEP + key);
    return rows ? [...rows.values()] : [];
  }

  get size(): number {
    return this.count;
  }
}

/** A true session as the API answers it (GraphQL `Session`). */
export interface SessionValue {
  metric: string;
  version: string;
  key: string;
  start: number;
  end: number;
  count: number;
  sum: number | null;
  avg: number | null;
  min: number | null;
  max: number | null;
  /** Approximate distinct count (the merge of the partials' HyperLogLog sketches); null without `distinct`. */
  distinct: number | null;
  source: 'BATCH' | 'SPEED' | 'MIXED';
  provisional: boolean;
  processingTime: number;
  /** Partial sessions merged into it (chosen rows, every partition). */
  partials: number;
}

/**
 * The sessions of (metric, key) whose start is in [from, to), oldest first: every partial of the
 * key in both views combined (a session starting in the range may hold partials that start after
 * `to`, and a partial starting in the range may belong to a session that starts before `from`,
 * so the range is applied to the true sessions, never to the rows). `cut(p)` is the batch run's
 * cut in partition p (0 without a batch run or beyond its partitions).
 */
export function sessionsOf(
  batch: SessionRowStore | undefined,
  speed: SessionRowStore,
  cut: (partition: number) => number,
  meta: { metric: string; version: string; key: string; gapMs: number },
  from: number,
  to: number,
): SessionValue[] {
  const rows = [...(batch?.rows(meta.metric, meta.key) ?? []), ...speed.rows(meta.metric, meta.key)];
  if (rows.length === 0) return [];
  const out: SessionValue[] = [];
  for (const s of combineSessionRows(rows, cut, meta.gapMs)) {
    if (s.start < from || s.start >= to) continue;
    out.push(sessionValue(s, meta));
  }
  return out;
}

function sessionValue(s: CombinedSession, meta: { metric: string; version: string; key: string }): SessionValue {
  return {
    metric: meta.metric,
    version: meta.version,
    key: meta.key,
    start: s.start,
    end: s.end,
    count: s.count,
    sum: s.sum,
    avg: s.sum === null || s.count === 0 ? null : s.sum / s.count,
    min: s.min,
    max: s.max,
    distinct: s.distinctSketch === null ? null : HyperLogLog.fromBase64(s.distinctSketch).estimate(),
    source: s.source === 'mixed' ? 'MIXED' : s.source === 'speed' ? 'SPEED' : 'BATCH',
    provisional: s.provisional,
    processingTime: s.processingTime,
    partials: s.partials.length,
  };
}
