/**
 * The serving merge rule (docs/serving-layer.md, argument in docs/merge-rule.md).
 *
 * For each (metric, granularity, key, window, input partition) serving holds at most one batch
 * row and one speed row. The row with the greater `throughOffset` wins (it reflects a longer
 * prefix of that partition, hence the later processing time); on a tie the batch row wins
 * (same prefix, and the batch row is the one that counted late events). A batch run with cut C
 * for the partition has seen every event of it below C, so when it has *no* row for the window,
 * that is an empty row stamped C: a speed row with `throughOffset <= C` loses to it (it counted
 * events the batch run knows are not in the window: copies of events counted elsewhere). The
 * chosen rows of a window's partitions are then combined: counts and sums add, min/max take the
 * extremes, and distinct sketches merge register by register (never adding estimates).
 *
 * A window whose partitions were chosen from different views reports:
 * - `source` = SPEED if at least one chosen row is a speed row, else BATCH: the answer holds
 *   data the batch view does not have, so it is "fresh, possibly incomplete" and may still change;
 *   BATCH means the answer is exactly the batch view's and stays put until the next batch run.
 * - `provisional` = a speed row is chosen and some chosen row counted misplaced events (events
 *   outside their home partition, services/log/partitioner.ts): a copy of one of them may sit in
 *   another partition, counted there too, which no per-partition dedup can see. The answer may
 *   then be off until a batch run covers the window; every other answer is exact for the prefix
 *   of the log it reflects (docs/guarantees.md, "Events from any producer").
 * - `processingTime` = the latest processing time among the chosen rows.
 * The per-partition detail is available as WindowValue.partitions.
 */
import { mergeSketch, parseSketch, type ValueSketch } from '../../services/metrics/ddsketch.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import type { PartialRows } from './partialRows.ts';

export const SOURCE_BATCH = 1;
/** NaN encodes "no value" in the typed columns. */
export function nullable(v: number): number | null {
  return Number.isNaN(v) ? null : v;
}

export const SOURCE_SPEED = 2;

/** The batch run's cut per input partition (0 beyond it: a partition the run has not seen). */
export type BatchCut = readonly number[] | undefined;

/**
 * Visits the winning row of every (window, partition) with window start in [from, to).
 * `superseded` is told of each speed row that lost to the batch run's empty row (no batch row
 * for the window, `throughOffset <= cut`): nothing of it is counted.
 */
export function forEachChosenRow(
  batch: PartialRows | undefined,
  speed: PartialRows | undefined,
  cut: BatchCut,
  from: number,
  to: number,
  visit: (side: PartialRows, index: number, isSpeed: boolean) => void,
  superseded?: (speedIndex: number, cutOffset: number) => void,
): void {
  let i = batch ? batch.lowerBound(from) : 0;
  let j = speed ? speed.lowerBound(from) : 0;
  const bn = batch ? batch.length : 0;
  const sn = speed ? speed.length : 0;
  while (true) {
    const bs = i < bn ? batch!.starts[i]! : Infinity;
    const ss = j < sn ? speed!.starts[j]! : Infinity;
    const start = bs < ss ? bs : ss;
    if (start >= to) return;
    const bp = bs === start ? batch!.partitions[i]! : Infinity;
    const sp = ss === start ? speed!.partitions[j]! : Infinity;
    if (bp < sp) visit(batch!, i++, false);
    else if (sp < bp) {
      // No batch row for this (window, partition): the run's empty row at its cut, if it saw the prefix.
      const c = cut !== undefined && sp < cut.length ? cut[sp]! : 0;
      if (speed!.throughs[j]! > c) visit(speed!, j, true);
      else superseded?.(j, c);
      j++;
    } else {
      // Same (window, partition) in both views: the longer prefix of the partition wins; batch on ties.
      if (speed!.throughs[j]! > batch!.throughs[i]!) visit(speed!, j, true);
      else visit(batch!, i, false);
      i++;
      j++;
    }
  }
}

/** The merged value of one window: what a WindowValue reports. */
export interface MergedWindow {
  windowStart: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  sketch: HyperLogLog | null;
  distinct: number | null;
  /** The window's percentile sketch (its partitions' bucket counts added); null without `percentiles`. */
  valueSketch: ValueSketch | null;
  source: typeof SOURCE_BATCH | typeof SOURCE_SPEED;
  /** A speed row meets a row that counted misplaced events: the answer may change at the next batch run. */
  provisional: boolean;
  processingTime: number;
}

/** Merged windows of one series, columnar, sorted by window start. */
export class MergedWindows {
  length = 0;
  starts: Float64Array;
  counts: Float64Array;
  sums: Float64Array;
  mins: Float64Array;
  maxs: Float64Array;
  distincts: Float64Array;
  procs: Float64Array;
  sources: Uint8Array;
  /** 1 where the window is provisional (MergedWindow.provisional). */
  provisional: Uint8Array;
  sketches: (HyperLogLog | null)[] | null = null;
  valueSketches: (ValueSketch | null)[] | null = null;

  constructor(capacity: number) {
    this.starts = new Float64Array(capacity);
    this.counts = new Float64Array(capacity);
    this.sums = new Float64Array(capacity);
    this.mins = new Float64Array(capacity);
    this.maxs = new Float64Array(capacity);
    this.distincts = new Float64Array(capacity);
    this.procs = new Float64Array(capacity);
    this.sources = new Uint8Array(capacity);
    this.provisional = new Uint8Array(capacity);
  }

  lowerBound(start: number): number {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! < start) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  indexOf(start: number): number {
    const i = this.lowerBound(start);
    return i < this.length && this.starts[i] === start ? i : -1;
  }

  set(i: number, w: MergedWindow): void {
    this.starts[i] = w.windowStart;
    this.counts[i] = w.count;
    this.sums[i] = w.sum ?? NaN;
    this.mins[i] = w.min ?? NaN;
    this.maxs[i] = w.max ?? NaN;
    this.distincts[i] = w.distinct ?? NaN;
    this.procs[i] = w.processingTime;
    this.sources[i] = w.source;
    this.provisional[i] = w.provisional ? 1 : 0;
    if (w.sketch) {
      if (!this.sketches) this.sketches = new Array<HyperLogLog | null>(this.starts.length).fill(null);
      this.sketches[i] = w.sketch;
    } else if (this.sketches) this.sketches[i] = null;
    if (w.valueSketch) {
      if (!this.valueSketches) this.valueSketches = new Array<ValueSketch | null>(this.starts.length).fill(null);
      this.valueSketches[i] = w.valueSketch;
    } else if (this.valueSketches) this.valueSketches[i] = null;
  }

  window(i: number): MergedWindow {
    return {
      windowStart: this.starts[i]!,
      count: this.counts[i]!,
      sum: nullable(this.sums[i]!),
      min: nullable(this.mins[i]!),
      max: nullable(this.maxs[i]!),
      distinct: nullable(this.distincts[i]!),
      sketch: this.sketches ? (this.sketches[i] ?? null) : null,
      valueSketch: this.valueSketches ? (this.valueSketches[i] ?? null) : null,
      source: this.sources[i] === SOURCE_SPEED ? SOURCE_SPEED : SOURCE_BATCH,
      provisional: this.provisional[i] === 1,
      processingTime: this.procs[i]!,
    };
  }
}

/** Accumulates the chosen rows of one window. */
class WindowAccumulator {
  start = NaN;
  count = 0;
  sum = NaN;
  min = NaN;
  max = NaN;
  proc = -Infinity;
  anySpeed = false;
  anyMisplaced = false;
  sketch: HyperLogLog | null = null;
  valueSketch: ValueSketch | null = null;

  reset(start: number): void {
    this.start = start;
    this.count = 0;
    this.sum = NaN;
    this.min = NaN;
    this.max = NaN;
    this.proc = -Infinity;
    this.anySpeed = false;
    this.anyMisplaced = false;
    this.sketch = null;
    this.valueSketch = null;
  }

  add(side: PartialRows, i: number, isSpeed: boolean): void {
    this.count += side.counts[i]!;
    const s = side.sums[i]!;
    if (!Number.isNaN(s)) this.sum = Number.isNaN(this.sum) ? s : this.sum + s;
    const mn = side.mins[i]!;
    if (!Number.isNaN(mn) && !(mn >= this.min)) this.min = mn;
    const mx = side.maxs[i]!;
    if (!Number.isNaN(mx) && !(mx <= this.max)) this.max = mx;
    if (side.procs[i]! > this.proc) this.proc = side.procs[i]!;
    if (isSpeed) this.anySpeed = true;
    if (side.misplaced[i]! > 0) this.anyMisplaced = true;
    const sk = side.sketchAt(i);
    if (sk !== null) {
      const h = HyperLogLog.fromBase64(sk);
      this.sketch = this.sketch ? this.sketch.merge(h) : h;
    }
    // Percentile sketches add like counts: only the chosen rows (one per partition) take part.
    const vs = side.valueSketchAt(i);
    if (vs !== null) this.valueSketch = mergeSketch(this.valueSketch ?? new Map(), parseSketch(vs));
  }

  result(): MergedWindow {
    return {
      windowStart: this.start,
      count: this.count,
      sum: nullable(this.sum),
      min: nullable(this.min),
      max: nullable(this.max),
      sketch: this.sketch,
      distinct: this.sketch ? this.sketch.estimate() : null,
      valueSketch: this.valueSketch,
      source: this.anySpeed ? SOURCE_SPEED : SOURCE_BATCH,
      provisional: this.anySpeed && this.anyMisplaced,
      processingTime: this.proc,
    };
  }
}

/** Merges a whole series (both sides) into one value per window. */
export function mergeSeries(batch: PartialRows | undefined, speed: PartialRows | undefined, cut: BatchCut): MergedWindows {
  const out = new MergedWindows((batch?.length ?? 0) + (speed?.length ?? 0));
  const acc = new WindowAccumulator();
  forEachChosenRow(batch, speed, cut, -Infinity, Infinity, (side, i, isSpeed) => {
    const start = side.starts[i]!;
    if (start !== acc.start) {
      if (!Number.isNaN(acc.start)) out.set(out.length++, acc.result());
      acc.reset(start);
    }
    acc.add(side, i, isSpeed);
  });
  if (!Number.isNaN(acc.start)) out.set(out.length++, acc.result());
  return out;
}

/** Merges one window (after a speed row changed it); undefined when neither view has it. */
export function mergeWindow(
  batch: PartialRows | undefined,
  speed: PartialRows | undefined,
  cut: BatchCut,
  start: number,
): MergedWindow | undefined {
  const acc = new WindowAccumulator();
  acc.reset(start);
  let any = false;
  forEachChosenRow(batch, speed, cut, start, start + 1, (side, i, isSpeed) => {
    any = true;
    acc.add(side, i, isSpeed);
  });
  return any ? acc.result() : undefined;
}

/** Which partitions of a window were answered from which view. */
export function windowPartitionSources(
  batch: PartialRows | undefined,
  speed: PartialRows | undefined,
  cut: BatchCut,
  cutProcessingTimes: readonly number[] | undefined,
  start: number,
): {
  partition: number;
  source: typeof SOURCE_BATCH | typeof SOURCE_SPEED;
  throughOffset: number;
  processingTime: number;
  count: number;
  misplaced: number;
}[] {
  const out: ReturnType<typeof windowPartitionSources> = [];
  forEachChosenRow(
    batch,
    speed,
    cut,
    start,
    start + 1,
    (side, i, isSpeed) => {
      out.push({
        partition: side.partitions[i]!,
        source: isSpeed ? SOURCE_SPEED : SOURCE_BATCH,
        throughOffset: side.throughs[i]!,
        processingTime: side.procs[i]!,
        count: side.counts[i]!,
        misplaced: side.misplaced[i]!,
      });
    },
    (j, c) => {
      // The batch run's empty row won: shown as such, so the answer explains itself.
      const partition = speed!.partitions[j]!;
      out.push({
        partition,
        source: SOURCE_BATCH,
        throughOffset: c,
        processingTime: cutProcessingTimes?.[partition] ?? 0,
        count: 0,
        misplaced: 0,
      });
    },
  );
  return out.sort((a, b) => a.partition - b.partition);
}
