/**
 * The per-partition dedup set: fingerprints of the event ids seen within the dedup horizon,
 * bounded in memory by expiry on event time.
 *
 * An entry (id, ts) is live while ts >= watermark - horizon. Expiry is part of the semantics,
 * not only of memory management: a lookup ignores an expired entry even when its slot has not
 * been reclaimed yet, so the answer depends only on the partition's record sequence (a replay
 * after a crash, a restore from a snapshot and the test oracle all agree).
 *
 * Why expiry can never double count: the horizon is at least the largest window plus its
 * allowed lateness, so when an id expires (watermark > ts + horizon), every window that its
 * event belongs to is closed (watermark > windowEnd + allowedLateness); a copy arriving later is
 * dropped as late instead of counted (see docs/speed-layer.md).
 *
 * Layout: an open-addressing hash table (linear probing, any capacity) in typed arrays: four 32-bit lanes of
 * the id's 128-bit fingerprint (idFingerprint.ts) and the event time, 24 bytes a slot, no object
 * per entry for the garbage collector to walk. Expired entries are reclaimed by rebuilding the
 * table when it fills up (only live entries are copied, and the table grows only if they still
 * fill it), so memory follows the live set. The live count is kept per event-time minute, so
 * `size` is exact at minute granularity without a scan.
 */
import { fingerprintId } from './idFingerprint.ts';

/** Event-time buckets of the live count: entries expire a whole bucket at a time in `size`. */
const BUCKET_MS = 60_000;
const MIN_CAPACITY = 1 << 12;
/** Rebuild when this share of the slots is taken (linear probing on a well-mixed hash stays short below it)... */
const MAX_LOAD = 0.85;
/** ...into a table where the live entries take this share (any size, not a power of two: 24 bytes a slot add up). */
const REBUILT_LOAD = 0.6;
/** ...or this share when few entries expired: the table is growing (geometric, amortised O(1)). */
const GROWN_LOAD = 0.42;

/** Entries as flat columns: fingerprint lanes (4 per entry) and event times. */
export interface DedupEntries {
  readonly length: number;
  readonly fingerprints: Int32Array;
  readonly ts: Float64Array;
}

/** Home slot of a fingerprint: its first lane scaled to [0, capacity) (no modulo, any capacity). */
function homeSlot(lane: number, capacity: number): number {
  return Math.floor(((lane >>> 0) * capacity) / 4294967296);
}

export class DedupSet {
  private capacity = MIN_CAPACITY;
  private lanes = new Int32Array(MIN_CAPACITY * 4);
  /** Event time per slot; NaN marks a free slot. */
  private times = new Float64Array(MIN_CAPACITY).fill(NaN);
  private occupied = 0;
  /** Live entries per event-time bucket (entries with ts in [b * BUCKET_MS, (b + 1) * BUCKET_MS)). */
  private readonly buckets = new Map<number, number>();
  private liveCount = 0;
  /** Entries older than this are expired (watermark - horizon at the last expiry). */
  private limit = -Infinity;
  /** Entries added since the last `takeAdded()`: the dedup part of a delta checkpoint. */
  private added = { fingerprints: new Int32Array(4 * 1024), ts: new Float64Array(1024), length: 0 };
  private readonly scratch = new Int32Array(4);

  constructor(readonly horizonMs: number) {}

  /** Live entries (expiry counted per event-time minute). */
  get size(): number {
    return this.liveCount;
  }

  /** Slot of `fp`, or the free slot where it would go. */
  private slotOf(fp: Int32Array): number {
    const lanes = this.lanes;
    const times = this.times;
    const a = fp[0]!;
    const b = fp[1]!;
    const c = fp[2]!;
    const d = fp[3]!;
    const capacity = this.capacity;
    let i = homeSlot(a, capacity);
    for (;;) {
      const t = times[i]!;
      if (t !== t) return i; // free
      const at = i * 4;
      if (lanes[at] === a && lanes[at + 1] === b && lanes[at + 2] === c && lanes[at + 3] === d) return i;
      if (++i === capacity) i = 0;
    }
  }

  /** True when `fp` was seen and its entry is still live under `watermark`. */
  has(fp: Int32Array, watermark: number): boolean {
    const ts = this.times[this.slotOf(fp)]!;
    return ts === ts && ts >= watermark - this.horizonMs;
  }

  /**
   * The speed layer's rule in one probe: true when `fp` is a live duplicate under `watermark`;
   * otherwise records it at `ts` if that is inside the horizon (an older entry would be expired
   * at once: all its windows are closed) and returns false.
   */
  seen(fp: Int32Array, ts: number, watermark: number): boolean {
    const slot = this.slotOf(fp);
    const old = this.times[slot]!;
    const limit = watermark - this.horizonMs;
    if (old === old && old >= limit) return true;
    if (ts >= limit) this.put(slot, old, fp, ts, true);
    return false;
  }

  /**
   * Records `fp` at event time `ts` (first sighting wins until the entry expires; a re-add after
   * expiry refreshes it). `track`: part of the next delta checkpoint.
   */
  add(fp: Int32Array, ts: number, track = true): void {
    const slot = this.slotOf(fp);
    this.put(slot, this.times[slot]!, fp, ts, track);
  }

  private put(slot: number, old: number, fp: Int32Array, ts: number, track: boolean): void {
    if (old !== old) {
      if (this.occupied + 1 > this.capacity * MAX_LOAD) {
        this.rebuild();
        slot = this.slotOf(fp);
      }
      const at = slot * 4;
      this.lanes[at] = fp[0]!;
      this.lanes[at + 1] = fp[1]!;
      this.lanes[at + 2] = fp[2]!;
      this.lanes[at + 3] = fp[3]!;
      this.occupied++;
    } else {
      this.uncount(old);
    }
    this.times[slot] = ts;
    this.count(ts);
    if (track) this.track(fp, ts);
  }

  /** `has` for an id given as text (tests, tools). */
  hasId(id: string, watermark: number): boolean {
    fingerprintId(id, this.scratch);
    return this.has(this.scratch, watermark);
  }

  addId(id: string, ts: number, track = true): void {
    fingerprintId(id, this.scratch);
    this.add(this.scratch, ts, track);
  }

  private count(ts: number): void {
    const b = Math.floor(ts / BUCKET_MS);
    this.buckets.set(b, (this.buckets.get(b) ?? 0) + 1);
    this.liveCount++;
  }

  private uncount(ts: number): void {
    const b = Math.floor(ts / BUCKET_MS);
    const n = this.buckets.get(b);
    if (n === undefined) return; // its bucket has expired: not counted any more
    if (n <= 1) this.buckets.delete(b);
    else this.buckets.set(b, n - 1);
    this.liveCount--;
  }

  private track(fp: Int32Array, ts: number): void {
    let a = this.added;
    if (a.length === a.ts.length) {
      const grown = { fingerprints: new Int32Array(a.fingerprints.length * 2), ts: new Float64Array(a.ts.length * 2), length: a.length };
      grown.fingerprints.set(a.fingerprints);
      grown.ts.set(a.ts);
      this.added = a = grown;
    }
    a.fingerprints.set(fp, a.length * 4);
    a.ts[a.length++] = ts;
  }

  /** Expires the buckets that lie entirely before watermark - horizon. */
  expire(watermark: number): void {
    const limit = watermark - this.horizonMs;
    if (limit <= this.limit) return;
    this.limit = limit;
    for (const [bucket, n] of this.buckets) {
      if ((bucket + 1) * BUCKET_MS > limit) continue;
      this.liveCount -= n;
      this.buckets.delete(bucket);
    }
  }

  /**
   * Whether a slot's entry is kept by a rebuild or a full snapshot: its bucket has not expired.
   * (An entry older than the limit in a bucket that has not expired yet is dead for `has`, but
   * still counted in `size`; keeping it keeps the count and a restored count exact.)
   */
  private kept(ts: number): boolean {
    return ts === ts && (Math.floor(ts / BUCKET_MS) + 1) * BUCKET_MS > this.limit;
  }

  /** Copies the entries that are still live into a table sized for them (grown if they fill it). */
  private rebuild(): void {
    const { lanes, times, capacity } = this;
    let live = 0;
    for (let i = 0; i < capacity; i++) if (this.kept(times[i]!)) live++;
    // Mostly live (the set is growing, not expiring): double, or growing would rebuild too often.
    const load = live > capacity * MAX_LOAD * 0.75 ? GROWN_LOAD : REBUILT_LOAD;
    const newCapacity = Math.max(MIN_CAPACITY, Math.ceil((live + 1) / load));
    this.capacity = newCapacity;
    this.lanes = new Int32Array(newCapacity * 4);
    this.times = new Float64Array(newCapacity).fill(NaN);
    this.occupied = 0;
    const fp = new Int32Array(4);
    for (let i = 0; i < capacity; i++) {
      const ts = times[i]!;
      if (!this.kept(ts)) continue; // free or expired
      fp.set(lanes.subarray(i * 4, i * 4 + 4));
      const slot = this.slotOf(fp);
      this.lanes.set(fp, slot * 4);
      this.times[slot] = ts;
      this.occupied++;
    }
  }

  takeAdded(): DedupEntries {
    const out = this.added;
    this.added = { fingerprints: new Int32Array(4 * 1024), ts: new Float64Array(1024), length: 0 };
    return { length: out.length, fingerprints: out.fingerprints.subarray(0, out.length * 4), ts: out.ts.subarray(0, out.length) };
  }

  /** Forgets the tracked additions (after a full snapshot, which holds every entry). */
  clearAdded(): void {
    this.added.length = 0;
  }

  /** Every entry that is not expired (a full snapshot's dedup part). */
  entries(): DedupEntries {
    const { times, lanes, capacity } = this;
    let n = 0;
    for (let i = 0; i < capacity; i++) if (this.kept(times[i]!)) n++;
    const fingerprints = new Int32Array(n * 4);
    const ts = new Float64Array(n);
    let k = 0;
    for (let i = 0; i < capacity; i++) {
      const t = times[i]!;
      if (!this.kept(t)) continue;
      fingerprints.set(lanes.subarray(i * 4, i * 4 + 4), k * 4);
      ts[k++] = t;
    }
    return { length: n, fingerprints, ts };
  }

  /** Adds snapshot entries (a restore), untracked. */
  restore(entries: DedupEntries): void {
    const fp = new Int32Array(4);
    for (let i = 0; i < entries.length; i++) {
      fp.set(entries.fingerprints.subarray(i * 4, i * 4 + 4));
      this.add(fp, entries.ts[i]!, false);
    }
  }

  /** Bytes held by the table (typed arrays: exact, not an estimate). */
  approxBytes(): number {
    return this.lanes.byteLength + this.times.byteLength + this.added.fingerprints.byteLength + this.added.ts.byteLength;
  }
}
