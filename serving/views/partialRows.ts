/**
 * One side (batch or speed) of one series (metric, granularity, key): the partial rows of the
 * view contract (services/views/viewRow.ts), one per (window, input partition), kept columnar in
 * typed arrays sorted by (windowStart, partition).
 *
 * Why columnar: serving holds millions of windows (the benchmark loads 14.4 M); one JS object
 * per row would cost ~10x the memory and make range scans chase pointers. A series is usually
 * appended to at its end (the speed layer moves forward in time), so inserts are amortized O(1);
 * an insert in the middle (a late key, a replayed window) shifts the tail once.
 */
import type { ViewRow } from '../../services/views/viewRow.ts';

const INITIAL_CAPACITY = 8;

export interface PartialRowValues {
  windowStart: number;
  partition: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  distinctSketch: string | null;
  /** Percentile sketch text (services/metrics/ddsketch.ts); null without `percentiles`. */
  valueSketch?: string | null;
  throughOffset: number;
  processingTime: number;
  /** Events before dedup by id (batch rows only; null for speed rows). */
  rawCount: number | null;
  /** Events counted in the row that are not in their home partition (services/views/viewRow.ts). */
  misplaced: number;
}

export class PartialRows {
  length = 0;
  starts: Float64Array;
  partitions: Int32Array;
  counts: Float64Array;
  /** NaN encodes SQL NULL (no numeric value in the window). */
  sums: Float64Array;
  mins: Float64Array;
  maxs: Float64Array;
  throughs: Float64Array;
  procs: Float64Array;
  /** NaN when unknown (speed rows). */
  rawCounts: Float64Array;
  misplaced: Float64Array;
  /** Base64 HLL sketches; allocated only once a row carries one. */
  sketches: (string | null)[] | null = null;
  /** Percentile sketch texts; allocated only once a row carries one. */
  valueSketches: (string | null)[] | null = null;

  constructor(capacity = INITIAL_CAPACITY) {
    this.starts = new Float64Array(capacity);
    this.partitions = new Int32Array(capacity);
    this.counts = new Float64Array(capacity);
    this.sums = new Float64Array(capacity);
    this.mins = new Float64Array(capacity);
    this.maxs = new Float64Array(capacity);
    this.throughs = new Float64Array(capacity);
    this.procs = new Float64Array(capacity);
    this.rawCounts = new Float64Array(capacity);
    this.misplaced = new Float64Array(capacity);
  }

  /** Index of the first row with (start, partition) >= the given pair. */
  lowerBound(start: number, partition = -1): number {
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.starts[mid]!;
      if (s < start || (s === start && this.partitions[mid]! < partition)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Inserts or replaces the row of (windowStart, partition). Returns its index. */
  upsert(row: PartialRowValues): number {
    let i: number;
    const n = this.length;
    // Fast path: appending past the last row (the common case for the speed layer).
    if (
      n === 0 ||
      this.starts[n - 1]! < row.windowStart ||
      (this.starts[n - 1] === row.windowStart && this.partitions[n - 1]! < row.partition)
    ) {
      i = n;
    } else {
      i = this.lowerBound(row.windowStart, row.partition);
    }
    const exists = i < n && this.starts[i] === row.windowStart && this.partitions[i] === row.partition;
    if (!exists) {
      if (n === this.starts.length) this.grow(Math.max(INITIAL_CAPACITY, n * 2));
      if (i < n) this.shift(i);
      this.length = n + 1;
    }
    this.write(i, row);
    return i;
  }

  /**
   * Appends a row known to sort after every row held (bulk loading of a sorted snapshot): no
   * search, no temporary object. Out-of-order input falls back to upsert.
   */
  appendSorted(
    windowStart: number,
    partition: number,
    count: number,
    sum: number,
    min: number,
    max: number,
    throughOffset: number,
    processingTime: number,
    rawCount: number,
    misplaced: number,
    sketch: string | null,
    valueSketch: string | null = null,
  ): void {
    const n = this.length;
    if (n > 0 && (this.starts[n - 1]! > windowStart || (this.starts[n - 1] === windowStart && this.partitions[n - 1]! >= partition))) {
      this.upsert({
        windowStart,
        partition,
        count,
        sum: Number.isNaN(sum) ? null : sum,
        min: Number.isNaN(min) ? null : min,
        max: Number.isNaN(max) ? null : max,
        throughOffset,
        processingTime,
        rawCount: Number.isNaN(rawCount) ? null : rawCount,
        misplaced,
        distinctSketch: sketch,
        valueSketch,
      });
      return;
    }
    if (n === this.starts.length) this.grow(Math.max(INITIAL_CAPACITY, n * 2));
    this.starts[n] = windowStart;
    this.partitions[n] = partition;
    this.counts[n] = count;
    this.sums[n] = sum;
    this.mins[n] = min;
    this.maxs[n] = max;
    this.throughs[n] = throughOffset;
    this.procs[n] = processingTime;
    this.rawCounts[n] = rawCount;
    this.misplaced[n] = misplaced;
    if (sketch !== null || this.sketches) {
      if (!this.sketches) this.sketches = new Array<string | null>(this.starts.length).fill(null);
      this.sketches[n] = sketch;
    }
    if (valueSketch !== null || this.valueSketches) {
      if (!this.valueSketches) this.valueSketches = new Array<string | null>(this.starts.length).fill(null);
      this.valueSketches[n] = valueSketch;
    }
    this.length = n + 1;
  }

  /** Removes the row of (windowStart, partition) if present (compaction tombstones). */
  remove(windowStart: number, partition: number): boolean {
    const i = this.lowerBound(windowStart, partition);
    if (i >= this.length || this.starts[i] !== windowStart || this.partitions[i] !== partition) return false;
    for (const a of this.columns()) a.copyWithin(i, i + 1, this.length);
    if (this.sketches) this.sketches.splice(i, 1);
    if (this.valueSketches) this.valueSketches.splice(i, 1);
    this.length--;
    return true;
  }

  /** Removes the rows of windows before `start` (retention); returns how many. */
  dropBefore(start: number): number {
    const n = this.lowerBound(start);
    if (n === 0) return 0;
    for (const a of this.columns()) a.copyWithin(0, n, this.length);
    if (this.sketches) this.sketches.splice(0, n);
    this.length -= n;
    return n;
  }

  /** A compact copy of the rows of windows from `start` on (the original stays as it is). */
  copyFrom(start: number): PartialRows {
    const lo = this.lowerBound(start);
    const n = this.length - lo;
    const copy = new PartialRows(Math.max(n, 1));
    const pairs: [Float64Array | Int32Array, Float64Array | Int32Array][] = [];
    const mine = this.columns();
    const theirs = copy.columns();
    for (let c = 0; c < mine.length; c++) pairs.push([mine[c]!, theirs[c]!]);
    for (const [from, to] of pairs) to.set(from.subarray(lo, this.length));
    if (this.sketches) copy.sketches = this.sketches.slice(lo, this.length);
    copy.length = n;
    return copy;
  }

  sketchAt(i: number): string | null {
    return this.sketches ? (this.sketches[i] ?? null) : null;
  }

  valueSketchAt(i: number): string | null {
    return this.valueSketches ? (this.valueSketches[i] ?? null) : null;
  }

  private write(i: number, row: PartialRowValues): void {
    this.starts[i] = row.windowStart;
    this.partitions[i] = row.partition;
    this.counts[i] = row.count;
    this.sums[i] = row.sum ?? NaN;
    this.mins[i] = row.min ?? NaN;
    this.maxs[i] = row.max ?? NaN;
    this.throughs[i] = row.throughOffset;
    this.procs[i] = row.processingTime;
    this.rawCounts[i] = row.rawCount ?? NaN;
    this.misplaced[i] = row.misplaced;
    if (row.distinctSketch !== null || this.sketches) {
      if (!this.sketches) this.sketches = new Array<string | null>(this.starts.length).fill(null);
      this.sketches[i] = row.distinctSketch;
    }
    const vs = row.valueSketch ?? null;
    if (vs !== null || this.valueSketches) {
      if (!this.valueSketches) this.valueSketches = new Array<string | null>(this.starts.length).fill(null);
      this.valueSketches[i] = vs;
    }
  }

  private columns(): (Float64Array | Int32Array)[] {
    return [
      this.starts,
      this.partitions,
      this.counts,
      this.sums,
      this.mins,
      this.maxs,
      this.throughs,
      this.procs,
      this.rawCounts,
      this.misplaced,
    ];
  }

  private shift(i: number): void {
    for (const a of this.columns()) a.copyWithin(i + 1, i, this.length);
    if (this.sketches) this.sketches.splice(i, 0, null);
    if (this.valueSketches) this.valueSketches.splice(i, 0, null);
  }

  private grow(capacity: number): void {
    const grow = <T extends Float64Array | Int32Array>(a: T, make: (n: number) => T): T => {
      const b = make(capacity);
      b.set(a);
      return b;
    };
    const f64 = (n: number) => new Float64Array(n);
    this.starts = grow(this.starts, f64);
    this.partitions = grow(this.partitions, (n) => new Int32Array(n));
    this.counts = grow(this.counts, f64);
    this.sums = grow(this.sums, f64);
    this.mins = grow(this.mins, f64);
    this.maxs = grow(this.maxs, f64);
    this.throughs = grow(this.throughs, f64);
    this.procs = grow(this.procs, f64);
    this.rawCounts = grow(this.rawCounts, f64);
    this.misplaced = grow(this.misplaced, f64);
    if (this.sketches) this.sketches.length = capacity;
    if (this.valueSketches) this.valueSketches.length = capacity;
  }

  /** Trims spare capacity (batch snapshots never grow after loading). */
  compact(): void {
    if (this.starts.length === this.length) return;
    const n = this.length;
    this.starts = this.starts.slice(0, n);
    this.partitions = this.partitions.slice(0, n);
    this.counts = this.counts.slice(0, n);
    this.sums = this.sums.slice(0, n);
    this.mins = this.mins.slice(0, n);
    this.maxs = this.maxs.slice(0, n);
    this.throughs = this.throughs.slice(0, n);
    this.procs = this.procs.slice(0, n);
    this.rawCounts = this.rawCounts.slice(0, n);
    this.misplaced = this.misplaced.slice(0, n);
    if (this.sketches) this.sketches.length = n;
    if (this.valueSketches) this.valueSketches.length = n;
  }
}

export function partialFromViewRow(row: ViewRow): PartialRowValues {
  return {
    windowStart: row.windowStart,
    partition: row.partition,
    count: row.count,
    sum: row.sum,
    min: row.min,
    max: row.max,
    distinctSketch: row.distinctSketch,
    valueSketch: row.valueSketch ?? null,
    throughOffset: row.throughOffset,
    processingTime: row.processingTime,
    rawCount: null,
    misplaced: row.misplaced,
  };
}
