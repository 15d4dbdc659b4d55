/**
 * The in-memory views of one job version: the batch side (an immutable snapshot, replaced
 * atomically when the batch layer publishes a newer run) and the speed side (updated row by row
 * from the speed view topic), with merged windows cached per series.
 *
 * Consistency: a query takes one `ViewSnapshot` at its start and answers every field from it.
 * A batch swap installs a new `{batch, merged}` state object in one assignment, so a query that
 * started before the swap keeps reading the old batch rows and the old merged cache, and a query
 * that starts after sees only the new ones: never a mix of two batch runs. Speed rows are applied
 * between event-loop turns; a field resolver computes its answer synchronously, so one field
 * never sees half of a speed update.
 */
import type { Granularity } from '../../services/metrics/definitions.ts';
import type { BatchRunManifest } from '../../services/views/batchSnapshots.ts';
import type { SessionRow, ViewRow } from '../../services/views/viewRow.ts';
import { mergeSeries, mergeWindow, type MergedWindows } from './mergeRule.ts';
import { PartialRows, partialFromViewRow } from './partialRows.ts';
import { SessionRowStore, sessionsOf, type SessionValue } from './sessionRows.ts';
import { ViewRetention } from './viewRetention.ts';

const SEP = '\u001f';

export function seriesKey(metric: string, granularity: Granularity, key: string): string {
  return metric + SEP + granularity + SEP + key;
}

function metricGranKey(metric: string, granularity: Granularity): string {
  return metric + SEP + granularity;
}

/** A loaded batch snapshot: immutable once built. */
export interface BatchView {
  manifest: BatchRunManifest;
  series: Map<string, PartialRows>;
  /** Keys per (metric, granularity). */
  keys: Map<string, string[]>;
  /** The run's partial sessions (serving/views/sessionRows.ts). */
  sessions: SessionRowStore;
  rows: number;
  loadedAt: number;
}

export class BatchViewBuilder {
  private readonly series = new Map<string, PartialRows>();
  private readonly keys = new Map<string, Set<string>>();
  private readonly sessions = new SessionRowStore('batch');
  private rows = 0;

  /** A partial session of the run (a session row of its snapshot). */
  addSession(row: SessionRow): void {
    this.sessions.upsert(row);
  }

  /** The rows of a series, created with room for `capacity` rows when new. */
  seriesRows(metric: string, granularity: Granularity, key: string, capacity?: number): PartialRows {
    const sk = seriesKey(metric, granularity, key);
    let side = this.series.get(sk);
    if (!side) {
      side = new PartialRows(capacity);
      this.series.set(sk, side);
      const mg = metricGranKey(metric, granularity);
      let set = this.keys.get(mg);
      if (!set) this.keys.set(mg, (set = new Set()));
      set.add(key);
    }
    return side;
  }

  add(metric: string, granularity: Granularity, key: string, row: Parameters<PartialRows['upsert']>[0]): void {
    this.seriesRows(metric, granularity, key).upsert(row);
  }

  build(manifest: BatchRunManifest): BatchView {
    let rows = 0;
    for (const side of this.series.values()) {
      side.compact();
      rows += side.length;
    }
    this.rows = rows + this.sessions.size;
    return {
      manifest,
      series: this.series,
      keys: new Map([...this.keys].map(([k, v]) => [k, [...v]])),
      sessions: this.sessions,
      rows: this.rows,
      loadedAt: Date.now(),
    };
  }
}

interface ViewState {
  batch: BatchView | undefined;
  /** Merged windows per series, valid for this batch view and the live speed side. */
  merged: Map<string, MergedWindows>;
}

export interface WindowUpdate {
  metric: string;
  granularity: Granularity;
  key: string;
  windowStart: number;
}

export interface SpeedSideStats {
  rows: number;
  tombstones: number;
  /** Rows dropped because their window had expired (retention), on arrival or by eviction. */
  expired: number;
  lastRowAt: number | null;
  maxProcessingTime: number | null;
}

export class VersionView {
  private state: ViewState = { batch: undefined, merged: new Map() };
  private readonly speed = new Map<string, PartialRows>();
  private readonly speedKeys = new Map<string, Set<string>>();
  private readonly speedSessions = new SessionRowStore('speed');
  private readonly updateListeners = new Set<(u: WindowUpdate) => void>();
  readonly speedStats: SpeedSideStats = { rows: 0, tombstones: 0, expired: 0, lastRowAt: null, maxProcessingTime: null };
  /** Per (metric, granularity): the oldest window start kept by the last eviction. */
  private readonly evictedBelow = new Map<string, number>();
  /** The watermark of the batch side's last trim. */
  private batchTrimmedAt = -Infinity;

  constructor(
    readonly version: string,
    /** What is kept (services/metrics/retention.ts); without definitions, everything. */
    readonly retention: ViewRetention = new ViewRetention([]),
  ) {}

  /** The view a query answers from, fixed for the whole query. */
  snapshot(): ViewSnapshot {
    return new ViewSnapshot(
      this.version,
      this.state,
      this.speed,
      this.speedKeys,
      this.retention,
      this.retention.watermark,
      this.speedSessions,
    );
  }

  get batch(): BatchView | undefined {
    return this.state.batch;
  }

  /** Installs a newer batch snapshot: one assignment, so readers see the old or the new one. */
  installBatch(batch: BatchView): void {
    this.state = { batch, merged: new Map() };
  }

  applySpeedRow(row: ViewRow): void {
    // A row of an expired window (another partition's, behind in event time) is not kept.
    if (row.windowStart < this.retention.oldestKept(row.metric, row.granularity)) {
      this.speedStats.expired++;
      return;
    }
    const sk = seriesKey(row.metric, row.granularity, row.key);
    let side = this.speed.get(sk);
    if (!side) {
      side = new PartialRows();
      this.speed.set(sk, side);
      const mg = metricGranKey(row.metric, row.granularity);
      let set = this.speedKeys.get(mg);
      if (!set) this.speedKeys.set(mg, (set = new Set()));
      set.add(row.key);
    }
    side.upsert(partialFromViewRow(row));
    this.speedStats.rows++;
    this.speedStats.lastRowAt = Date.now();
    if (this.speedStats.maxProcessingTime === null || row.processingTime > this.speedStats.maxProcessingTime) {
      this.speedStats.maxProcessingTime = row.processingTime;
    }
    this.refreshMerged(sk, row.windowStart);
    this.notify({ metric: row.metric, granularity: row.granularity, key: row.key, windowStart: row.windowStart });
  }

  /** A partial session from the speed view topic (upserted by its metric, key, partition and start). */
  applySpeedSession(row: SessionRow): void {
    this.speedSessions.upsert(row);
    this.speedStats.rows++;
    this.speedStats.lastRowAt = Date.now();
    if (this.speedStats.maxProcessingTime === null || row.processingTime > this.speedStats.maxProcessingTime) {
      this.speedStats.maxProcessingTime = row.processingTime;
    }
  }

  /**
   * A session row's tombstone: its session moved its start or was merged into another (or it
   * expired). Not a retention signal, unlike a window row's tombstone.
   */
  removeSpeedSession(metric: string, key: string, start: number, partition: number): void {
    if (this.speedSessions.remove(metric, key, start, partition)) this.speedStats.tombstones++;
  }

  /** Speed rows held now (the bench's and the operator's measure of serving's memory). */
  speedRowCount(): number {
    let n = 0;
    for (const side of this.speed.values()) n += side.length;
    return n;
  }

  /** A compaction tombstone: the speed layer retracted a row. */
  removeSpeedRow(metric: string, granularity: Granularity, key: string, windowStart: number, partition: number): void {
    // Retention is the only reason the speed layer deletes rows: the window has expired.
    this.retention.observeExpired(metric, granularity, windowStart);
    const sk = seriesKey(metric, granularity, key);
    const side = this.speed.get(sk);
    if (!side || !side.remove(windowStart, partition)) return;
    this.speedStats.tombstones++;
    this.refreshMerged(sk, windowStart);
    this.notify({ metric, granularity, key, windowStart });
  }

  /**
   * Evicts the rows of windows that have expired under the retention watermark: speed rows in
   * place (cheap: a prefix of each series), batch rows by installing a trimmed copy of the batch
   * view (a query that started before keeps the old one), which is done once the watermark has
   * moved by an eighth of the shortest retention since the last trim, so that the copying stays
   * a small fraction of the work and expired batch rows stay a small fraction of memory.
   * Queries never see an expired window either way: they are refused (ViewRetention.refusal).
   */
  evictExpired(): void {
    const watermark = this.retention.watermark;
    if (watermark === -Infinity) return;
    let shortest = Infinity;
    for (const { metric, granularity, oldest } of this.retention.horizons(watermark)) {
      shortest = Math.min(shortest, this.retention.retentionMs(metric, granularity)!);
      const mg = metricGranKey(metric, granularity);
      if ((this.evictedBelow.get(mg) ?? -Infinity) >= oldest) continue;
      this.evictedBelow.set(mg, oldest);
      const keys = this.speedKeys.get(mg);
      if (!keys) continue;
      for (const key of keys) {
        const sk = seriesKey(metric, granularity, key);
        const side = this.speed.get(sk)!;
        const dropped = side.dropBefore(oldest);
        if (dropped === 0) continue;
        this.speedStats.expired += dropped;
        this.state.merged.delete(sk);
        if (side.length === 0) {
          this.speed.delete(sk);
          keys.delete(key);
        }
      }
    }
    const batch = this.state.batch;
    if (batch && watermark - this.batchTrimmedAt >= shortest / 8) {
      this.batchTrimmedAt = watermark;
      const trimmed = trimBatchView(batch, (metric, granularity) => this.retention.oldestKept(metric, granularity, watermark));
      if (trimmed !== batch) this.state = { batch: trimmed, merged: new Map() };
    }
  }

  onWindowUpdated(listener: (u: WindowUpdate) => void): () => void {
    this.updateListeners.add(listener);
    return () => this.updateListeners.delete(listener);
  }

  private notify(update: WindowUpdate): void {
    for (const l of this.updateListeners) l(update);
  }

  /** Keeps the cached merge of a series current: recompute the one window in place, or drop the cache. */
  private refreshMerged(sk: string, windowStart: number): void {
    const { merged, batch } = this.state;
    const cached = merged.get(sk);
    if (!cached) return;
    const i = cached.indexOf(windowStart);
    const value = mergeWindow(batch?.series.get(sk), this.speed.get(sk), batch?.manifest.cut, windowStart);
    if (i >= 0 && value) cached.set(i, value);
    else merged.delete(sk); // a new or vanished window: rebuild on the next read
  }
}

/**
 * The batch view without the rows of windows before `oldestKept(metric, granularity)`: the same
 * object when nothing is expired, else a new one (the old one stays intact for queries holding it).
 */
export function trimBatchView(batch: BatchView, oldestKept: (metric: string, granularity: Granularity) => number): BatchView {
  let changed = false;
  const series = new Map<string, PartialRows>();
  let rows = 0;
  for (const [sk, side] of batch.series) {
    const [metric, granularity] = sk.split(SEP) as [string, Granularity];
    const oldest = oldestKept(metric, granularity);
    const kept = side.length > 0 && side.starts[0]! < oldest ? side.copyFrom(oldest) : side;
    if (kept !== side) changed = true;
    series.set(sk, kept);
    rows += kept.length;
  }
  return changed ? { ...batch, series, rows } : batch;
}

export class ViewSnapshot {
  constructor(
    readonly version: string,
    private readonly state: ViewState,
    private readonly speed: Map<string, PartialRows>,
    private readonly speedKeys: Map<string, Set<string>>,
    private readonly retention: ViewRetention = new ViewRetention([]),
    /** The retention watermark when the query started (ViewRetention): one answer, one horizon. */
    readonly retentionWatermark: number = retention.watermark,
    private readonly speedSessions: SessionRowStore = new SessionRowStore('speed'),
  ) {}

  /**
   * The sessions of (metric, key) starting in [from, to), from both views' partial sessions
   * (serving/views/sessionRows.ts). Computed at once from the rows held now: a resolver calls it
   * synchronously, so no speed row lands in the middle of it.
   */
  sessions(metric: string, key: string, gapMs: number, from: number, to: number): SessionValue[] {
    const batch = this.state.batch;
    const cut = batch?.manifest.cut ?? [];
    return sessionsOf(batch?.sessions, this.speedSessions, (p) => cut[p] ?? 0, { metric, version: this.version, key, gapMs }, from, to);
  }

  /** Partial sessions of (metric, key) in both views (the cost estimate of a sessions query). */
  sessionRowCount(metric: string, key: string): number {
    return (this.state.batch?.sessions.rows(metric, key).length ?? 0) + this.speedSessions.rows(metric, key).length;
  }

  /** Why [from, to) of (metric, granularity) is past retention, or undefined (ViewRetention.refusal). */
  retentionRefusal(metric: string, granularity: Granularity, from: number, to: number): string | undefined {
    return this.retention.refusal(metric, granularity, from, to, this.retentionWatermark);
  }

  get batch(): BatchView | undefined {
    return this.state.batch;
  }

  batchRows(metric: string, granularity: Granularity, key: string): PartialRows | undefined {
    return this.state.batch?.series.get(seriesKey(metric, granularity, key));
  }

  speedRows(metric: string, granularity: Granularity, key: string): PartialRows | undefined {
    return this.speed.get(seriesKey(metric, granularity, key));
  }

  merged(metric: string, granularity: Granularity, key: string): MergedWindows | undefined {
    const sk = seriesKey(metric, granularity, key);
    let m = this.state.merged.get(sk);
    if (m) return m;
    const b = this.state.batch?.series.get(sk);
    const s = this.speed.get(sk);
    if (!b && !s) return undefined;
    m = mergeSeries(b, s, this.state.batch?.manifest.cut);
    this.state.merged.set(sk, m);
    return m;
  }

  /** Keys present in either view for (metric, granularity). */
  keys(metric: string, granularity: Granularity): string[] {
    const mg = metricGranKey(metric, granularity);
    const fromBatch = this.state.batch?.keys.get(mg) ?? [];
    const fromSpeed = this.speedKeys.get(mg);
    if (!fromSpeed || fromSpeed.size === 0) return fromBatch;
    if (fromBatch.length === 0) return [...fromSpeed];
    const all = new Set(fromBatch);
    for (const k of fromSpeed) all.add(k);
    return [...all];
  }

  /** At least as many as keys() would list, without building the list (the cost estimate of key-walking queries). */
  keyCount(metric: string, granularity: Granularity): number {
    const mg = metricGranKey(metric, granularity);
    return (this.state.batch?.keys.get(mg)?.length ?? 0) + (this.speedKeys.get(mg)?.size ?? 0);
  }

  /** Index range [lo, hi) of merged windows with start in [from, to). */
  static range(m: MergedWindows, from: number, to: number): [number, number] {
    return [m.lowerBound(from), m.lowerBound(to)];
  }
}
