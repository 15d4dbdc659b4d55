/**
 * One closing rule (services/metrics/windowClosing.ts): the speed layer stops counting a window
 * exactly when serving's reconciliation starts treating it as closed, at the watermark
 * `windowEnd + allowedLateness + 1 ms`, not one millisecond sooner (at exactly the limit the
 * speed layer still applies an event of the window, so its row is not final and must not be
 * compared). Both sides are the real code: PartitionState, and reconcile() over a VersionView.
 */
import { describe, expect, it } from 'vitest';
import { parseMetricDefinitions } from '../services/metrics/definitions.ts';
import { isWindowClosed, windowClosesAt } from '../services/metrics/windowClosing.ts';
import type { ViewRow } from '../services/views/viewRow.ts';
import type { BatchRunManifest } from '../services/views/batchSnapshots.ts';
import { PartitionState } from '../streaming/state/partitionState.ts';
import { reconcile } from '../serving/reconciliation.ts';
import { NO_DEADLINE } from '../serving/queries.ts';
import { BatchViewBuilder, VersionView } from '../serving/views/versionView.ts';

const MIN = 60_000;
const LATENESS = 30_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0);
const CLOSES_AT = windowClosesAt(T0, MIN, LATENESS);
const DEFS = parseMetricDefinitions(
  `metrics:\n  - name: views\n    filter: { type: view }\n    key: page\n    granularities: [minute]\n    allowedLateness: 30s\n`,
  'boundary.yaml',
).metrics;

/** The speed layer: under watermark `w`, does it still count an event of window [T0, T0 + 1 min)? */
function speedStillCounts(w: number): boolean {
  const state = new PartitionState(0, DEFS, { outOfOrdernessMs: 0, dedupHorizonMs: 10 * MIN }, { homePartitions: 1 });
  let offset = 0;
  const push = (id: string, ts: number) =>
    state.apply({
      topic: 'events',
      partition: 0,
      offset: offset++,
      key: Buffer.from(id),
      value: Buffer.from(JSON.stringify({ id, type: 'view', ts, page: 'home' })),
      timestamp: 1_000 + offset,
      headers: {},
    });
  push('raises-the-watermark', w); // out-of-orderness 0: the watermark is now w
  push('late', T0 + 59_999);
  return state.counters.droppedLate['views/minute'] === 0;
}

/** Serving's reconciliation: under watermark `w`, does it compare window [T0, T0 + 1 min)? */
function reconciliationCompares(w: number): boolean {
  const view = new VersionView('v1');
  const common = { windowStart: T0, partition: 0, count: 3, sum: null, min: null, max: null, distinctSketch: null, misplaced: 0 };
  const batch = new BatchViewBuilder();
  batch.add('views', 'minute', 'home', { ...common, throughOffset: 10, processingTime: 10, rawCount: 3 });
  view.installBatch(batch.build({ runId: 'r1', cut: [10] } as BatchRunManifest));
  const speedRow: ViewRow = { metric: 'views', granularity: 'minute', key: 'home', ...common, throughOffset: 5, processingTime: 5 };
  view.applySpeedRow(speedRow);
  const r = reconcile({
    view: view.snapshot(),
    def: DEFS[0]!,
    granularity: 'minute',
    from: T0 - MIN,
    to: T0 + 10 * MIN,
    speedWatermarks: [w],
    speedDuplicatesDropped: 0,
    speedMisplacedRecords: 0,
    deadline: NO_DEADLINE,
    onlyDisagreeing: false,
  });
  return r.windowsCompared === 1;
}

describe('one closing rule for the speed layer and reconciliation', () => {
  it('closes a window once the watermark is past windowEnd + allowedLateness, in both layers alike', () => {
    expect(isWindowClosed(CLOSES_AT, CLOSES_AT)).toBe(false);
    expect(isWindowClosed(CLOSES_AT, CLOSES_AT + 1)).toBe(true);
    for (const w of [CLOSES_AT - 1, CLOSES_AT, CLOSES_AT + 1, CLOSES_AT + MIN]) {
      const closed = isWindowClosed(CLOSES_AT, w);
      expect(speedStillCounts(w), `speed layer at watermark limit ${w - CLOSES_AT} ms`).toBe(!closed);
      expect(reconciliationCompares(w), `reconciliation at watermark limit ${w - CLOSES_AT} ms`).toBe(closed);
    }
  });
});
