/**
 * Session windows: the one rule the speed layer (streaming/state/sessionTable.ts), the batch layer
 * (batch/views/batchViews.ts, through the SQL below) and serving (`combineSessionRows`) apply.
 * docs/merge-rule.md, "Hard case: sessions across partitions", argues the merge with a table of
 * events; docs/metrics.md, "Sessions", shows a metric file.
 *
 * 1. Membership. Two events of one key are in one session iff their times differ by less than
 *    `gap` along a chain: sorted by time, a new session starts where the difference to the
 *    previous event is `>= gap` (`startsSession`). Strictly less, as Flink's session windows,
 *    whose per-event intervals [t, t + gap) must overlap to merge: an event exactly `gap` after
 *    the last one starts a new session, one at `gap - 1ms` joins it. Equal times are one session
 *    (gap > 0 is required by the metric file's schema).
 *
 * 2. Shape. A session's `start` is its first event time, its `end` its last event time (not end +
 *    gap: the row says what was seen). A session of one event has start = end.
 *
 * 3. Closing. A session closes like a window [end, end + gap) with the metric's allowed lateness L:
 *    `watermark > end + gap + L` (windowClosing.ts, the one closing rule). Until then an event may
 *    still extend it (an event at end + gap - 1ms is at most that late) or, late, bridge it with
 *    another session. After it, its final row is published and never changed again; an event
 *    that would touch it (lie within `gap` of its span) is dropped as late by the speed layer
 *    (the batch layer counts it). It expires, its row deleted, like such a window kept for the
 *    retention of its gap's size (`sessionExpiresAt`, retention.ts).
 *
 * 4. Partials combine by chaining. Both layers publish *partial* sessions, one set per (metric,
 *    key, input partition): the sessions of that partition's events alone. The true sessions are
 *    found by sorting the partials of every partition by start and merging the next one into the
 *    current group while `next.start - group.end < gap` (the group's end is the largest end in it:
 *    a partial may lie inside another's span). `chainSessions` below.
 *
 *    Why this is exact. (a) A partial is a chain in its partition's events; adding the other
 *    partitions' events between two of its events only shortens the differences, so it stays a
 *    chain in the union: every partial lies inside one true session. (b) Chaining merges only
 *    partials of one true session: it merges when an event of the group (its latest) and the
 *    next partial's first event differ by less than gap, so both are in one true session. (c) It
 *    merges all of them: suppose a true session T is split between the group G and the next
 *    partial Q, with Q.start - G.end >= gap. Every event of T strictly between G.end and Q.start
 *    belongs to a partial that starts before Q.start, so was sorted before Q, so is in G (the
 *    partials of T before Q were all merged into G, by induction), so is <= G.end: there is none.
 *    Then G.end and Q.start are consecutive events of T that differ by >= gap: T is no chain, a
 *    contradiction. So the groups are exactly the true sessions, and their measures are the
 *    merges of their partials' measures (disjoint events: counts and sums add, min/max take the
 *    extremes, distinct sketches merge register by register).
 *
 * 5. Serving picks, per (metric, key, partition), the batch rows or the speed rows of each
 *    *cluster* (partials of either source that chain together in that partition), then chains
 *    the chosen rows of every partition (4.): `combineSessionRows`, argued in docs/merge-rule.md.
 */
import { HyperLogLog } from './hll.ts';
import { granularityNameOf, type MetricDefinition } from './definitions.ts';
import { isWindowClosed, windowClosesAt } from './windowClosing.ts';
import { isWindowExpired, retentionMsOf, windowExpiresAt } from './retention.ts';

// ---------------------------------------------------------------- membership (JavaScript and SQL)

/** Whether an event at `time` starts a new session after one whose latest event is at `previous` (rule 1). */
export function startsSession(previous: number | undefined, time: number, gapMs: number): boolean {
  return previous === undefined || time - previous >= gapMs;
}

/** Whether an event at `time` belongs with session `span` of its key: within gap of it (rule 1). */
export function touchesSession(span: SessionSpan, time: number, gapMs: number): boolean {
  return span.start - time < gapMs && time - span.end < gapMs;
}

/** Whether spans `a` and `b` (of one key) are one session: some event of one lies within `gap` of the other (rule 1). */
export function sessionsTouch(a: SessionSpan, b: SessionSpan, gapMs: number): boolean {
  return a.start - b.end < gapMs && b.start - a.end < gapMs;
}

/**
 * The SQL twin of `startsSession` over window functions: a flag per event, TRUE where a new
 * session starts among the rows of one (key, partition) ordered by time (then offset, so that
 * equal times keep one order). `ts` is a BIGINT epoch-ms column, `over` the window clause's
 * PARTITION BY and ORDER BY. The same text in DuckDB (batch/views/batchViews.ts
 * `computeSessions`) and Spark SQL (batch/engines/spark/sparkPlan.ts `sparkSessionRowsSql`):
 * both read `lag`, a BIGINT difference and `coalesce` alike, so no Spark twin is needed.
 */
export function startsSessionSql(ts: string, over: string, gapMs: number): string {
  return `coalesce(${ts} - lag(${ts}) OVER (${over}) >= ${gapMs}, TRUE)`;
}

/**
 * The session number of each row among the rows of one (key, partition): the running count of
 * `startsSessionSql` flags (column `flag`) in the same order. Rows with one number are one
 * partial session. The same text in DuckDB and Spark SQL (an explicit ROWS frame: no engine's
 * default RANGE frame, which would give rows of equal time one number, is relied on).
 */
export function sessionNumberSql(flag: string, over: string): string {
  return `sum(CASE WHEN ${flag} THEN 1 ELSE 0 END) OVER (${over} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)`;
}

// ---------------------------------------------------------------- closing and expiry

/** The watermark past which a session whose last event is at `end` is closed (rule 3). */
export function sessionClosesAt(end: number, gapMs: number, latenessMs: number): number {
  return windowClosesAt(end, gapMs, latenessMs);
}

/** Whether a session that closes at `closesAt` (sessionClosesAt) is closed under `watermark`. */
export function isSessionClosed(closesAt: number, watermark: number): boolean {
  return isWindowClosed(closesAt, watermark);
}

/** How long a metric's closed sessions are kept: as the windows of its gap's size (retention.ts). */
export function sessionRetentionMs(def: Pick<MetricDefinition, 'retention' | 'session'>): number {
  const gapMs = def.session!.gapMs;
  return retentionMsOf(def.retention, granularityNameOf(gapMs), gapMs);
}

/** The watermark past which a session whose last event is at `end` has expired. */
export function sessionExpiresAt(end: number, gapMs: number, retentionMs: number): number {
  return windowExpiresAt(end, gapMs, retentionMs);
}

/** Whether a session that expires at `expiresAt` (sessionExpiresAt) has expired under `watermark`. */
export function isSessionExpired(expiresAt: number, watermark: number): boolean {
  return isWindowExpired(expiresAt, watermark);
}

// ---------------------------------------------------------------- chaining partials (rule 4)

export interface SessionSpan {
  /** First event time, epoch ms. */
  start: number;
  /** Last event time, epoch ms (>= start). */
  end: number;
}

/** What a session measures, as view rows carry it (services/views/viewRow.ts). */
export interface SessionMeasures {
  count: number;
  /** null when no event of the session had a numeric value. */
  sum: number | null;
  min: number | null;
  max: number | null;
  /** HyperLogLog sketch, base64 (hll.ts); null when the metric has no `distinct`. */
  distinctSketch: string | null;
  /** Events counted that are not in their home partition (services/log/partitioner.ts). */
  misplaced: number;
}

/** The measures of two disjoint sets of events together (as window rows of two partitions merge). */
export function mergeSessionMeasures(a: SessionMeasures, b: SessionMeasures): SessionMeasures {
  const pick = (x: number | null, y: number | null, f: (p: number, q: number) => number) => (x === null ? y : y === null ? x : f(x, y));
  return {
    count: a.count + b.count,
    sum: pick(a.sum, b.sum, (p, q) => p + q),
    min: pick(a.min, b.min, Math.min),
    max: pick(a.max, b.max, Math.max),
    distinctSketch:
      a.distinctSketch === null
        ? b.distinctSketch
        : b.distinctSketch === null
          ? a.distinctSketch
          : HyperLogLog.fromBase64(a.distinctSketch).merge(HyperLogLog.fromBase64(b.distinctSketch)).toBase64(),
    misplaced: a.misplaced + b.misplaced,
  };
}

/**
 * Groups of `partials` that are one session each (rule 4), in order of start: sorted by start,
 * the next partial joins the current group while `next.start - group.end < gap`, the group's end
 * being the largest end in it. Exact for partials that are each a chain of one key's events
 * (the argument is in this file's comment).
 */
export function chainGroups<T extends SessionSpan>(partials: readonly T[], gapMs: number): T[][] {
  const sorted = [...partials].sort((a, b) => a.start - b.start || a.end - b.end);
  const groups: T[][] = [];
  let end = -Infinity;
  for (const p of sorted) {
    const last = groups.at(-1);
    if (last !== undefined && !startsSession(end, p.start, gapMs)) {
      last.push(p);
      if (p.end > end) end = p.end;
    } else {
      groups.push([p]);
      end = p.end;
    }
  }
  return groups;
}

/** The true sessions of `partials` (rule 4): each group of `chainGroups` as one session, measures merged. */
export function chainSessions<T extends SessionSpan & SessionMeasures>(
  partials: readonly T[],
  gapMs: number,
): (SessionSpan & SessionMeasures)[] {
  return chainGroups(partials, gapMs).map((group) => {
    let m: SessionMeasures = group[0]!;
    for (const p of group.slice(1)) m = mergeSessionMeasures(m, p);
    return {
      start: group[0]!.start,
      end: Math.max(...group.map((p) => p.end)),
      count: m.count,
      sum: m.sum,
      min: m.min,
      max: m.max,
      distinctSketch: m.distinctSketch,
      misplaced: m.misplaced,
    };
  });
}

// ---------------------------------------------------------------- serving's merge (rule 5)

/** A session row of one (metric, key) as serving holds it, with the view it came from. */
export interface SourcedSessionRow extends SessionSpan, SessionMeasures {
  partition: number;
  source: 'batch' | 'speed';
  /** The row reflects the partition's events with offset < throughOffset (services/views/viewRow.ts). */
  throughOffset: number;
  processingTime: number;
}

/** A true session as serving answers it. */
export interface CombinedSession extends SessionSpan, SessionMeasures {
  /** BATCH when every chosen partial is a batch row, SPEED when every one is a speed row, else MIXED. */
  source: 'batch' | 'speed' | 'mixed';
  /** A speed row is chosen and some chosen row counted misplaced events (as for windows, docs/merge-rule.md). */
  provisional: boolean;
  /** The latest processing time among the chosen partials. */
  processingTime: number;
  /** The chosen partials, by partition then start. */
  partials: readonly SourcedSessionRow[];
}

/**
 * The true sessions of one (metric, key) from its batch and speed session rows in every
 * partition (docs/merge-rule.md, "Hard case: sessions across partitions").
 *
 * Per partition p, with the batch run's cut C_p (`cut(p)`: 0 without a batch run or beyond its
 * partitions), the partition's rows of both views are chained into clusters (chainGroups). A
 * cluster is answered by its speed rows when it has one and every speed row in it has
 * throughOffset > C_p; otherwise by its batch rows (none: the batch run saw no event there below
 * C_p, and the speed rows counted copies it attributes elsewhere). Then the chosen rows of every
 * partition are chained into the true sessions (rule 4).
 */
export function combineSessionRows(
  rows: readonly SourcedSessionRow[],
  cut: (partition: number) => number,
  gapMs: number,
): CombinedSession[] {
  const byPartition = new Map<number, SourcedSessionRow[]>();
  for (const r of rows) {
    let list = byPartition.get(r.partition);
    if (list === undefined) byPartition.set(r.partition, (list = []));
    list.push(r);
  }
  const chosen: SourcedSessionRow[] = [];
  for (const [partition, list] of byPartition) {
    const c = cut(partition);
    for (const cluster of chainGroups(list, gapMs)) {
      const speed = cluster.filter((r) => r.source === 'speed');
      const speedWins = speed.length > 0 && speed.every((r) => r.throughOffset > c);
      chosen.push(...(speedWins ? speed : cluster.filter((r) => r.source === 'batch')));
    }
  }
  return chainGroups(chosen, gapMs).map((group) => {
    const [session] = chainSessions(group, gapMs);
    const sources = new Set(group.map((r) => r.source));
    const anySpeed = sources.has('speed');
    return {
      ...session!,
      source: sources.size > 1 ? 'mixed' : anySpeed ? 'speed' : 'batch',
      provisional: anySpeed && group.some((r) => r.misplaced > 0),
      processingTime: Math.max(...group.map((r) => r.processingTime)),
      partials: [...group].sort((a, b) => a.partition - b.partition || a.start - b.start),
    };
  });
}
