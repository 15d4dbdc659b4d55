/**
 * The open windows of one partition state, column by column: one row index per
 * (slot, window, key), its aggregates in typed arrays, its key and sketch in plain arrays.
 *
 * Why columns: a per-user metric keeps a million window-keys. As one object each (with boxed
 * doubles for count/sum/min/max) they cost ~160 bytes apiece plus a Map entry, and the garbage
 * collector walks every one; here a window costs ~60 bytes of arrays plus its Map entry.
 *
 * Indexes of released windows are reused only after `recycle()` (called at each checkpoint
 * capture): until then a stale index in the dirty list cannot point at another window.
 */
import type { ValueSketch } from '../../services/metrics/ddsketch.ts';
import type { HyperLogLog } from '../../services/metrics/hll.ts';

export const HAS_VALUE = 1;
export const DIRTY = 2;
export const LIVE = 4;

const INITIAL_CAPACITY = 1024;

export class WindowTable {
  capacity = INITIAL_CAPACITY;
  slots = new Int32Array(INITIAL_CAPACITY);
  starts = new Float64Array(INITIAL_CAPACITY);
  counts = new Float64Array(INITIAL_CAPACITY);
  sums = new Float64Array(INITIAL_CAPACITY);
  mins = new Float64Array(INITIAL_CAPACITY);
  maxs = new Float64Array(INITIAL_CAPACITY);
  /** Events counted in the window that are not in their home partition (partitioner.ts). */
  misplaced = new Float64Array(INITIAL_CAPACITY);
  flags = new Uint8Array(INITIAL_CAPACITY);
  readonly keys: (string | undefined)[] = [];
  readonly sketches: (HyperLogLog | null)[] = [];
  /** Percentile sketches (services/metrics/ddsketch.ts), null for metrics without `percentiles`. */
  readonly valueSketches: (ValueSketch | null)[] = [];
  /** Indexes never used so far start here. */
  private high = 0;
  private readonly free: number[] = [];
  private readonly released: number[] = [];
  live = 0;

  /** A new live window; its aggregates start empty (count 0, no value, not dirty). */
  alloc(slot: number, start: number, key: string, sketch: HyperLogLog | null, valueSketch: ValueSketch | null = null): number {
    let i = this.free.pop();
    if (i === undefined) {
      if (this.high === this.capacity) this.grow();
      i = this.high++;
    }
    this.slots[i] = slot;
    this.starts[i] = start;
    this.counts[i] = 0;
    this.sums[i] = 0;
    this.mins[i] = Infinity;
    this.maxs[i] = -Infinity;
    this.misplaced[i] = 0;
    this.flags[i] = LIVE;
    this.keys[i] = key;
    this.sketches[i] = sketch;
    this.valueSketches[i] = valueSketch;
    this.live++;
    return i;
  }

  /** Frees window `i` (its index is reused after the next `recycle`). */
  release(i: number): void {
    this.flags[i] = 0;
    this.keys[i] = undefined;
    this.sketches[i] = null;
    this.valueSketches[i] = null;
    this.released.push(i);
    this.live--;
  }

  /** Makes the indexes released since the last call reusable (no stale reference can remain). */
  recycle(): void {
    for (const i of this.released) this.free.push(i);
    this.released.length = 0;
  }

  private grow(): void {
    // 1.5x: the columns of a million windows are tens of megabytes; doubling would waste half.
    const cap = Math.ceil(this.capacity * 1.5);
    const grown = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: new (n: number) => T): T => {
      const b = new make(cap);
      b.set(a);
      return b;
    };
    this.slots = grown(this.slots, Int32Array);
    this.starts = grown(this.starts, Float64Array);
    this.counts = grown(this.counts, Float64Array);
    this.sums = grown(this.sums, Float64Array);
    this.mins = grown(this.mins, Float64Array);
    this.maxs = grown(this.maxs, Float64Array);
    this.misplaced = grown(this.misplaced, Float64Array);
    this.flags = grown(this.flags, Uint8Array);
    this.capacity = cap;
  }

  /** Bytes of the columns (typed arrays exactly, plain arrays at 8 bytes a slot). */
  columnBytes(): number {
    return this.capacity * (4 + 8 * 6 + 1) + (this.keys.length + this.sketches.length + this.valueSketches.length) * 8;
  }
}
