/**
 * The session rule (sessionRule.ts) on hand-made cases: the gap boundary (an event exactly `gap`
 * after the last starts a new session, one at gap - 1 ms joins it), chaining of partials that
 * overlap or nest, and serving's merge on the table of docs/merge-rule.md ("Hard case: sessions
 * across partitions"): a late event the speed layer dropped, counted by the batch run. Each case
 * also goes through the speed layer's partition state, whose rows the merge reads.
 */
import { describe, expect, it } from 'vitest';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import {
  chainSessions,
  combineSessionRows,
  sessionClosesAt,
  sessionsTouch,
  startsSession,
  type SourcedSessionRow,
} from '../../services/metrics/sessionRule.ts';
import { PartitionState } from '../state/partitionState.ts';
import { viewRowKey, type ViewRow } from '../../services/views/viewRow.ts';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 7, 12, 0);

const measures = (count: number, start: number, end: number) => ({
  start,
  end,
  count,
  sum: null,
  min: null,
  max: null,
  distinctSketch: null,
  misplaced: 0,
});

describe('the session rule', () => {
  it('strictly less than gap joins; exactly gap starts a new session', () => {
    expect(startsSession(undefined, 5, 10)).toBe(true);
    expect(startsSession(0, 9, 10)).toBe(false);
    expect(startsSession(0, 10, 10)).toBe(true);
    expect(startsSession(0, 0, 10)).toBe(false);
    expect(sessionsTouch({ start: 0, end: 5 }, { start: 14, end: 20 }, 10)).toBe(true);
    expect(sessionsTouch({ start: 0, end: 5 }, { start: 15, end: 20 }, 10)).toBe(false);
    expect(sessionClosesAt(100, 10, 5)).toBe(115);
  });

  it('chaining merges overlapping, nested and near partials, and keeps the largest end', () => {
    const got = chainSessions(
      [measures(3, 0, 100), measures(1, 50, 60), measures(2, 109, 120), measures(1, 130, 130), measures(4, 139, 150)],
      10,
    );
    expect(got.map((s) => [s.start, s.end, s.count])).toEqual([
      [0, 120, 6],
      [130, 150, 5],
    ]);
  });
});

describe('serving merge of session rows (the docs/merge-rule.md table)', () => {
  const defs = parseMetricDefinitions(
    `metrics:\n  - { name: rides, key: rider, session: { gap: 30m }, allowedLateness: 5m }\n`,
    'sessions.yaml',
  ).metrics;
  const ev = (id: string, minutes: number) =>
    Buffer.from(JSON.stringify({ id, type: 'ride', ts: new Date(T0 + minutes * MIN).toISOString(), rider: 'r1' }));

  it('a late event dropped by the speed layer is counted once a batch run passes it; before, the speed rows answer', () => {
    // Partition 2 of the table: offsets 100.., out-of-orderness 0.
    const state = new PartitionState(2, defs, { outOfOrdernessMs: 0, dedupHorizonMs: 1e12 }, { homePartitions: 1 });
    const view = new Map<string, ViewRow>();
    const checkpoint = () => {
      const { rows, tombstones } = state.captureChanges();
      for (const r of rows) view.set(viewRowKey(r), r);
      for (const k of tombstones) view.delete(k);
    };
    const input: [number, string, number][] = [
      [100, 'a', 0], // 12:00 a session starts
      [101, 'b', 20], // 12:20 extends it
      [102, 'c', 90], // 13:30 a new session; the watermark passes 12:55 (12:20 + 30m + 5m): the first closes, final row stamped 103
      [103, 'd', 45], // 12:45 late: within 30m of 12:20, a closed session: dropped
      [104, 'e', 95], // 13:35 extends the second
    ];
    for (const [offset, id, minutes] of input) {
      state.apply({ offset, timestamp: T0 + offset, value: ev(id, minutes), key: null });
      if (offset === 102 || offset === 104) checkpoint();
    }
    expect(state.counters.droppedLate['rides/session']).toBe(1);
    const speed: SourcedSessionRow[] = [...view.values()].map((r) => ({
      ...r,
      start: r.windowStart,
      end: r.windowEnd!,
      source: 'speed' as const,
    }));
    expect(speed.map((r) => [r.start, r.end, r.count, r.throughOffset])).toEqual([
      [T0, T0 + 20 * MIN, 2, 103],
      [T0 + 90 * MIN, T0 + 95 * MIN, 2, 105],
    ]);
    const batchRow = (start: number, end: number, count: number, cut: number): SourcedSessionRow => ({
      ...measures(count, T0 + start * MIN, T0 + end * MIN),
      partition: 2,
      source: 'batch',
      throughOffset: cut,
      processingTime: 0,
    });
    const answer = (rows: SourcedSessionRow[], cut: number) =>
      combineSessionRows(rows, () => cut, 30 * MIN).map((s) => [(s.start - T0) / MIN, (s.end - T0) / MIN, s.count, s.source]);
    // No batch run: the speed rows, without the dropped event.
    expect(answer(speed, 0)).toEqual([
      [0, 20, 2, 'speed'],
      [90, 95, 2, 'speed'],
    ]);
    // A batch run with cut 103 (before the late event): the first session is answered by batch
    // (the speed row's 103 is no more), the second by speed (105 > 103).
    expect(answer([...speed, batchRow(0, 20, 2, 103), batchRow(90, 90, 1, 103)], 103)).toEqual([
      [0, 20, 2, 'batch'],
      [90, 95, 2, 'speed'],
    ]);
    // A batch run with cut 104 (after it): the batch run counts the late event in the first session.
    expect(answer([...speed, batchRow(0, 45, 3, 104), batchRow(90, 90, 1, 104)], 104)).toEqual([
      [0, 45, 3, 'batch'],
      [90, 95, 2, 'speed'],
    ]);
    // The set rule (the whole partition's set by its largest stamp, 105) would have shown 2, not 3.
  });

  it('a late event bridging two open sessions merges them: the later row is deleted in the checkpoint that publishes the merge', () => {
    const state = new PartitionState(0, defs, { outOfOrdernessMs: 3_600_000, dedupHorizonMs: 1e12 }, { homePartitions: 1 });
    const view = new Map<string, ViewRow>();
    const checkpoint = () => {
      const { rows, tombstones } = state.captureChanges();
      for (const r of rows) view.set(viewRowKey(r), r);
      for (const k of tombstones) view.delete(k);
    };
    state.apply({ offset: 0, timestamp: T0, value: ev('a', 0), key: null });
    state.apply({ offset: 1, timestamp: T0, value: ev('b', 40), key: null });
    checkpoint();
    expect([...view.values()].map((r) => [(r.windowStart - T0) / MIN, r.count])).toEqual([
      [0, 1],
      [40, 1],
    ]);
    // 12:20 is within 30m of both 12:00 and 12:40: one session 12:00-12:40.
    state.apply({ offset: 2, timestamp: T0, value: ev('c', 20), key: null });
    // An event exactly 30m after the last (13:10) starts a new session; 29m59.999s later joins.
    state.apply({ offset: 3, timestamp: T0, value: ev('d', 70), key: null });
    checkpoint();
    expect([...view.values()].map((r) => [(r.windowStart - T0) / MIN, (r.windowEnd! - T0) / MIN, r.count])).toEqual([
      [0, 40, 3],
      [70, 70, 1],
    ]);
  });
});
