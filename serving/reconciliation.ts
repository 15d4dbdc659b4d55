/**
 * Reconciliation: Twitter's validation of a streaming pipeline against batch, built in.
 *
 * For every *closed* window in the range and every key: the batch view's count against the
 * speed view's count (each merged over partitions from its own rows only: no cross-view merge).
 *
 * Closed (docs/serving-layer.md): the speed layer's watermark on every input partition is past
 * windowEnd + allowedLateness, by the speed layer's own rule (services/metrics/windowClosing.ts). After that the speed layer never updates the window again (it drops
 * later events as late), so its row is final. A window is compared only if the batch run
 * covers everything the speed rows reflect (for each partition, the speed row's throughOffset
 * <= the batch cut): otherwise the batch has not seen events the speed layer counted, the
 * difference would be noise, and the window is reported as `pending` until the next run.
 *
 * Duplicate rates: before dedup = (raw_count - count) / raw_count over the batch rows in the
 * range (the lake keeps the raw rows, duplicates included) and over the whole run (manifest
 * rawEvents vs uniqueEvents). After dedup = the share of events the speed layer counted beyond
 * the exactly-deduplicated batch count in compared windows (a speed count above batch can only
 * be a duplicate that got through); batch after dedup is 0 by construction.
 */
import { granularityMs, type Granularity, type MetricDefinition } from '../services/metrics/definitions.ts';
import { isWindowClosed, windowClosesAt } from '../services/metrics/windowClosing.ts';
import { KEYS_PER_STEP, runSteps, type Deadline, type Steps } from './queries.ts';
import type { PartialRows } from './views/partialRows.ts';
import type { ViewSnapshot } from './views/versionView.ts';

export interface KeyReconciliation {
  key: string;
  batchCount: number;
  speedCount: number;
  difference: number;
  windows: number;
  disagreeingWindows: number;
}

export interface ReconciliationResult {
  metric: string;
  granularity: Granularity;
  from: number;
  to: number;
  batchRunId: string | null;
  /** min over partitions of the speed watermark; windows must end (plus lateness) before it. */
  speedWatermark: number | null;
  /** speedWatermark - allowed lateness: windows that end before it are closed. */
  closedBefore: number | null;
  windowsCompared: number;
  windowsPending: number;
  keysCompared: number;
  disagreeingKeys: number;
  batchCount: number;
  speedCount: number;
  keys: KeyReconciliation[];
  duplicates: {
    runRawEvents: number | null;
    runUniqueEvents: number | null;
    runBeforeDedup: number | null;
    rangeRawCount: number;
    rangeCount: number;
    rangeBeforeDedup: number | null;
    speedAfterDedup: number | null;
    batchAfterDedup: number;
    speedDuplicatesDropped: number | null;
  };
  misplaced: {
    batchRows: number;
    speedRows: number;
    runMisplacedEvents: number | null;
    speedRecords: number | null;
    provisionalWindows: number;
  };
}

export interface ReconciliationInputs {
  view: ViewSnapshot;
  def: MetricDefinition;
  granularity: Granularity;
  from: number;
  to: number;
  /** Watermark per input partition (undefined when the speed layer reported none). */
  speedWatermarks: (number | null)[] | undefined;
  speedDuplicatesDropped: number | null;
  /** Misplaced records the speed instances report (status files), null when none reports. */
  speedMisplacedRecords: number | null;
  deadline: Deadline;
  /** Only keys that disagree are listed when true (they are always counted). */
  onlyDisagreeing: boolean;
}

function sumRows(rows: PartialRows | undefined, lo: number, start: number, into: { count: number; raw: number }): number {
  let i = lo;
  if (!rows) return i;
  while (i < rows.length && rows.starts[i] === start) {
    into.count += rows.counts[i]!;
    const raw = rows.rawCounts[i]!;
    into.raw += Number.isNaN(raw) ? rows.counts[i]! : raw;
    i++;
  }
  return i;
}

export function reconcile(inputs: ReconciliationInputs): ReconciliationResult {
  return runSteps(reconcileSteps(inputs));
}

/** reconcile, pausing every KEYS_PER_STEP keys (serving/queries.ts Steps). */
export function* reconcileSteps(inputs: ReconciliationInputs): Steps<ReconciliationResult> {
  const { view, def, granularity, from, to, deadline } = inputs;
  const batch = view.batch;
  const cut = batch?.manifest.cut;
  const watermarks = inputs.speedWatermarks;
  const known = watermarks && watermarks.length > 0 && watermarks.every((w) => w !== null) ? (watermarks as number[]) : undefined;
  const speedWatermark = known ? Math.min(...known) : null;
  const size = granularityMs(granularity);
  // A window [s, s + size) is closed when the watermark is past s + size + lateness.
  const closedBefore = speedWatermark === null ? null : speedWatermark - def.allowedLatenessMs;
  const result: ReconciliationResult = {
    metric: def.name,
    granularity,
    from,
    to,
    batchRunId: batch?.manifest.runId ?? null,
    speedWatermark,
    closedBefore,
    windowsCompared: 0,
    windowsPending: 0,
    keysCompared: 0,
    disagreeingKeys: 0,
    batchCount: 0,
    speedCount: 0,
    keys: [],
    duplicates: {
      runRawEvents: batch?.manifest.rawEvents ?? null,
      runUniqueEvents: batch?.manifest.uniqueEvents ?? null,
      runBeforeDedup:
        batch && batch.manifest.rawEvents > 0 ? (batch.manifest.rawEvents - batch.manifest.uniqueEvents) / batch.manifest.rawEvents : null,
      rangeRawCount: 0,
      rangeCount: 0,
      rangeBeforeDedup: null,
      speedAfterDedup: null,
      batchAfterDedup: 0,
      speedDuplicatesDropped: inputs.speedDuplicatesDropped,
    },
    misplaced: {
      batchRows: 0,
      speedRows: 0,
      runMisplacedEvents: batch?.manifest.misplacedEvents ?? null,
      speedRecords: inputs.speedMisplacedRecords,
      provisionalWindows: 0,
    },
  };
  let speedExcess = 0;
  let n = 0;
  for (const key of view.keys(def.name, granularity)) {
    if (++n % KEYS_PER_STEP === 0) {
      deadline.check();
      yield;
    }
    const b = view.batchRows(def.name, granularity, key);
    const s = view.speedRows(def.name, granularity, key);
    if (b) {
      // Duplicate rate before dedup covers every batch row in the range, closed or not.
      for (let i = b.lowerBound(from); i < b.length && b.starts[i]! < to; i++) {
        const raw = b.rawCounts[i]!;
        result.duplicates.rangeRawCount += Number.isNaN(raw) ? b.counts[i]! : raw;
        result.duplicates.rangeCount += b.counts[i]!;
        result.misplaced.batchRows += b.misplaced[i]!;
      }
    }
    if (s) for (let i = s.lowerBound(from); i < s.length && s.starts[i]! < to; i++) result.misplaced.speedRows += s.misplaced[i]!;
    const merged = view.merged(def.name, granularity, key);
    if (merged)
      for (let i = merged.lowerBound(from); i < merged.length && merged.starts[i]! < to; i++)
        result.misplaced.provisionalWindows += merged.provisional[i]!;
    if (speedWatermark === null || !batch) continue;
    const perKey: KeyReconciliation = { key, batchCount: 0, speedCount: 0, difference: 0, windows: 0, disagreeingWindows: 0 };
    let i = b ? b.lowerBound(from) : 0;
    let j = s ? s.lowerBound(from) : 0;
    for (;;) {
      const bs = b && i < b.length ? b.starts[i]! : Infinity;
      const ss = s && j < s.length ? s.starts[j]! : Infinity;
      const start = Math.min(bs, ss);
      if (start >= to || !isWindowClosed(windowClosesAt(start, size, def.allowedLatenessMs), speedWatermark)) break;
      // Pending: the speed rows reflect offsets beyond the batch cut in some partition.
      let pending = false;
      for (let k = j; s && k < s.length && s.starts[k] === start; k++) {
        const p = s.partitions[k]!;
        if (cut === undefined || p >= cut.length || s.throughs[k]! > cut[p]!) pending = true;
      }
      const bt = { count: 0, raw: 0 };
      const st = { count: 0, raw: 0 };
      i = sumRows(b, i, start, bt);
      j = sumRows(s, j, start, st);
      if (pending) {
        result.windowsPending++;
        continue;
      }
      perKey.windows++;
      perKey.batchCount += bt.count;
      perKey.speedCount += st.count;
      if (bt.count !== st.count) perKey.disagreeingWindows++;
      if (st.count > bt.count) speedExcess += st.count - bt.count;
    }
    if (perKey.windows === 0) continue;
    perKey.difference = perKey.speedCount - perKey.batchCount;
    result.windowsCompared += perKey.windows;
    result.keysCompared++;
    result.batchCount += perKey.batchCount;
    result.speedCount += perKey.speedCount;
    const disagrees = perKey.disagreeingWindows > 0;
    if (disagrees) result.disagreeingKeys++;
    if (disagrees || !inputs.onlyDisagreeing) result.keys.push(perKey);
  }
  const d = result.duplicates;
  d.rangeBeforeDedup = d.rangeRawCount > 0 ? (d.rangeRawCount - d.rangeCount) / d.rangeRawCount : null;
  d.speedAfterDedup = result.batchCount > 0 ? speedExcess / result.batchCount : null;
  result.keys.sort(
    (a, b) => Math.abs(b.difference) - Math.abs(a.difference) || b.disagreeingWindows - a.disagreeingWindows || (a.key < b.key ? -1 : 1),
  );
  return result;
}
