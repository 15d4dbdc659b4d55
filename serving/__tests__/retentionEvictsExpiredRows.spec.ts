/**
 * Serving's side of retention on one VersionView (no broker: the real-broker test is
 * test/e2e/retentionDeletesAndRefuses.spec.ts): a tombstone moves the retention watermark to
 * just past its window's expiry; the rows of every window expired under it are evicted, speed
 * rows in place and batch rows in a trimmed copy (a query holding the old snapshot keeps its
 * rows); a late speed row of an expired window is not kept; a snapshot refuses exactly the
 * ranges that hold an expired window, with the retention in words.
 */
import { describe, expect, it } from 'vitest';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import type { BatchRunManifest } from '../../services/views/batchSnapshots.ts';
import type { ViewRow } from '../../services/views/viewRow.ts';
import { BatchViewBuilder, VersionView } from '../views/versionView.ts';
import { ViewRetention } from '../views/viewRetention.ts';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 1);
const DEFS = parseMetricDefinitions(`
retention: { minute: 10m }
metrics:
  - name: views
    key: page
    granularities: [minute, hour]
    allowedLateness: 1m
`).metrics;

function row(k: number, partition: number, key = 'a'): ViewRow {
  return {
    metric: 'views',
    granularity: 'minute',
    key,
    windowStart: T0 + k * MIN,
    partition,
    count: 1,
    sum: null,
    min: null,
    max: null,
    distinctSketch: null,
    misplaced: 0,
    throughOffset: k + 1,
    processingTime: k,
  };
}

function batchOf(minutes: number[]) {
  const b = new BatchViewBuilder();
  for (const k of minutes) b.add('views', 'minute', 'a', { ...row(k, 0), rawCount: 1 });
  return b.build({ runId: 'r1', cut: [100, 100] } as unknown as BatchRunManifest);
}

describe('serving evicts and refuses past retention', () => {
  it('a tombstone sets the watermark; expired speed and batch rows are evicted; ranges before the oldest window are refused', () => {
    const view = new VersionView('v1', new ViewRetention(DEFS));
    for (let k = 0; k < 30; k++) for (const p of [0, 1]) view.applySpeedRow(row(k, p));
    view.installBatch(batchOf([...Array(30).keys()]));
    const before = view.snapshot();
    expect(before.retentionRefusal('views', 'minute', T0, T0 + 30 * MIN)).toBeUndefined();

    // Partition 1 deletes window 5: its watermark passed T0 + 5m + 1m + 10m.
    view.removeSpeedRow('views', 'minute', 'a', T0 + 5 * MIN, 1);
    expect(view.retention.watermark).toBe(T0 + 16 * MIN + 1);
    view.evictExpired();
    const after = view.snapshot();
    // Windows 0..5 are gone from both sides, window 6 (expiring exactly at the watermark - 1) stays.
    expect(after.speedRows('views', 'minute', 'a')!.starts[0]).toBe(T0 + 6 * MIN);
    expect(after.batchRows('views', 'minute', 'a')!.starts[0]).toBe(T0 + 6 * MIN);
    expect(after.batchRows('views', 'minute', 'a')!.length).toBe(24);
    // The snapshot taken before keeps its batch rows (a query in flight is not cut short).
    expect(before.batchRows('views', 'minute', 'a')!.length).toBe(30);
    expect(view.speedStats.expired).toBe(6 * 2 - 1);

    // A late row of an expired window (partition 0 is behind) is not kept.
    view.applySpeedRow(row(3, 0, 'b'));
    expect(view.snapshot().speedRows('views', 'minute', 'b')).toBeUndefined();

    expect(after.retentionRefusal('views', 'minute', T0 + 6 * MIN, T0 + 20 * MIN)).toBeUndefined();
    expect(after.retentionRefusal('views', 'minute', T0 + 5 * MIN + 1, T0 + 20 * MIN)).toBeUndefined();
    expect(after.retentionRefusal('views', 'minute', T0 + 5 * MIN, T0 + 20 * MIN)).toBe(
      `minute windows of metric "views" are kept for 10m; the oldest answerable window starts at ${new Date(T0 + 6 * MIN).toISOString()} ` +
        `(retention counts from the view's event-time watermark, ${new Date(T0 + 16 * MIN + 1).toISOString()}); ask from then on`,
    );
    // Hour windows keep the default (90d): nothing refused.
    expect(after.retentionRefusal('views', 'hour', T0, T0 + 60 * MIN)).toBeUndefined();
  });

  it('a status watermark evicts without any tombstone', () => {
    const view = new VersionView('v1', new ViewRetention(DEFS));
    for (let k = 0; k < 10; k++) view.applySpeedRow(row(k, 0));
    view.retention.observeWatermark(T0 + 20 * MIN);
    view.evictExpired();
    // oldest kept: the first start s with s + 11m >= T0 + 20m, i.e. T0 + 9m.
    expect(view.snapshot().speedRows('views', 'minute', 'a')!.starts.subarray(0, 1)[0]).toBe(T0 + 9 * MIN);
    expect(view.retention.oldestKept('views', 'minute')).toBe(T0 + 9 * MIN);
  });
});
