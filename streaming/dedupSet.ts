/**
 * The per-partition dedup set: event ids seen within the dedup horizon, bounded in memory by
 * expiry on event time.
 *
 * An entry (id, ts) is live while ts >= watermark - horizon. Expiry is part of the semantics,
 * not only of memory management: `has` ignores an expired entry even when its bucket has not
 * been dropped yet, so the answer depends only on the partition's record sequence (a replay
 * after a crash, a restore from a snapshot and the test oracle all agree).
 *
 * Why expiry can never double count: the horizon is at least the largest window plus its
 * allowed lateness, so when an id expires (watermark > ts + horizon), every window that its
 * event belongs to is closed (watermark > windowEnd + allowedLateness); a copy arriving later is
 * dropped as late instead of counted (see docs/speed-layer.md).
 */

/** Entries are grouped in event-time buckets so that expiry drops whole buckets at once. */
const BUCKET_MS = 60_000;

export class DedupSet {
  private readonly ids = new Map<string, number>();
  private readonly buckets = new Map<number, string[]>();
  /** Entries added since the last `takeAdded()`: the dedup part of a delta checkpoint. */
  private addedIds: string[] = [];
  private addedTs: number[] = [];

  constructor(readonly horizonMs: number) {}

  get size(): number {
    return this.ids.size;
  }

  /** True when `id` was seen and its entry is still live under `watermark`. */
  has(id: string, watermark: number): boolean {
    const ts = this.ids.get(id);
    return ts !== undefined && ts >= watermark - this.horizonMs;
  }

  /** Records `id` (first sighting wins until the entry expires; a re-add after expiry refreshes it). */
  add(id: string, ts: number, track = true): void {
    this.ids.set(id, ts);
    const bucket = Math.floor(ts / BUCKET_MS);
    let list = this.buckets.get(bucket);
    if (list === undefined) this.buckets.set(bucket, (list = []));
    list.push(id);
    if (track) {
      this.addedIds.push(id);
      this.addedTs.push(ts);
    }
  }

  /** Frees the buckets that lie entirely before watermark - horizon. */
  expire(watermark: number): void {
    const limit = watermark - this.horizonMs;
    for (const [bucket, list] of this.buckets) {
      if ((bucket + 1) * BUCKET_MS > limit) continue;
      for (const id of list) {
        const ts = this.ids.get(id);
        // A refreshed entry lives in a newer bucket: only drop the entry this bucket holds.
        if (ts !== undefined && Math.floor(ts / BUCKET_MS) === bucket) this.ids.delete(id);
      }
      this.buckets.delete(bucket);
    }
  }

  takeAdded(): { ids: string[]; ts: number[] } {
    const out = { ids: this.addedIds, ts: this.addedTs };
    this.addedIds = [];
    this.addedTs = [];
    return out;
  }

  /** Forgets the tracked additions (after a full snapshot, which holds every entry). */
  clearAdded(): void {
    this.addedIds = [];
    this.addedTs = [];
  }

  entries(): { ids: string[]; ts: number[] } {
    const ids: string[] = [];
    const ts: number[] = [];
    for (const [id, t] of this.ids) {
      ids.push(id);
      ts.push(t);
    }
    return { ids, ts };
  }

  /** Approximate heap bytes (Map entry, string, bucket slot): for state-size reporting. */
  approxBytes(avgIdLength = 24): number {
    return this.ids.size * (80 + avgIdLength + 8);
  }
}
