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

  it('the table: a late event dropped by the speed layer is counted once a batch run passes it; the cluster rule, not the set rule', () => {
    const states = [0, 1].map((p) => new PartitionState(p, defs, { outOfOrdernessMs: 0, dedupHorizonMs: 1e12 }, { homePartitions: 2 }));
    const view = new Map<string, ViewRow>();
    const checkpoint = (p: number) => {
      const { rows, tombstones } = states[p]!.captureChanges();
      for (const r of rows) view.set(viewRowKey(r), r);
      for (const k of tombstones) view.delete(k);
    };
    const input: [number, number, string, number][] = [
      [0, 100, 'a', 0], // 12:00 session A starts
      [0, 101, 'b', 20], // 12:20 A is 12:00-12:20
      [1, 40, 'f', 65], // 13:05 in p1
      [0, 102, 'c', 90], // 13:30 session B; the watermark passes 12:55: A closes, final row stamped 103
      [0, 103, 'd', 45], // 12:45 late: within 30m of the closed A: dropped
      [0, 104, 'e', 95], // 13:35 B is 13:30-13:35
    ];
    for (const [p, offset, id, minutes] of input) {
      states[p]!.apply({ offset, timestamp: T0 + offset, value: ev(id, minutes), key: null });
      if (offset === 102 || offset === 104 || offset === 40) checkpoint(p);
    }
    expect(states[0]!.counters.droppedLate['rides/session']).toBe(1);
    const speed: SourcedSessionRow[] = [...view.values()].map((r) => ({
      ...r,
      start: r.windowStart,
      end: r.windowEnd!,
      source: 'speed' as const,
    }));
    expect(speed.map((r) => [r.partition, (r.start - T0) / MIN, (r.end - T0) / MIN, r.count, r.throughOffset]).sort()).toEqual([
      [0, 0, 20, 2, 103],
      [0, 90, 95, 2, 105],
      [1, 65, 65, 1, 41],
    ]);
    const batchRow = (partition: number, start: number, end: number, count: number, cut: number): SourcedSessionRow => ({
      ...measures(count, T0 + start * MIN, T0 + end * MIN),
      partition,
      source: 'batch',
      throughOffset: cut,
      processingTime: 0,
    });
    const answer = (rows: SourcedSessionRow[], cut: number[]) =>
      combineSessionRows(rows, (p) => cut[p] ?? 0, 30 * MIN).map((s) => [(s.start - T0) / MIN, (s.end - T0) / MIN, s.count, s.source]);
    // No batch run: the speed rows, without the dropped event.
    expect(answer(speed, [])).toEqual([
      [0, 20, 2, 'speed'],
      [65, 95, 3, 'speed'],
    ]);
    // A batch run with cut p0 = 104, p1 = 41: X = 12:00-12:45 (the late event), Y = 13:30, p1's 13:05.
    const batch = [batchRow(0, 0, 45, 3, 104), batchRow(0, 90, 90, 1, 104), batchRow(1, 65, 65, 1, 41)];
    expect(answer([...speed, ...batch], [104, 41])).toEqual([[0, 95, 6, 'mixed']]);
    // The set rule (p0's speed set whole, by its largest stamp 105 > 104) would lose the late event.
    const setRule = [...speed.filter((r) => r.partition === 0), ...batch.filter((r) => r.partition === 1)];
    expect(chainSessions(setRule, 30 * MIN).map((s) => s.count)).toEqual([2, 3]);
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

describe('a version with session metrics replays from the beginning', () => {
  it('a mid-log start is refused with a message naming --from earliest; a start at offset 0 is not', async () => {
    const { refuseMidLogSessions } = await import('../replay/replayCommand.ts');
    const defs = parseMetricDefinitions(
      `metrics:\n  - { name: rides, key: rider, session: { gap: 30m }, allowedLateness: 5m }\n`,
      's.yaml',
    ).metrics;
    const start = (startOffsets: number[], from: 'time' | 'earliest') => ({
      origin: { from, startOffsets, fromTime: null, lakeEnds: null },
      beginnings: startOffsets.map(() => 0),
      ends: startOffsets.map(() => 100),
    });
    expect(() => refuseMidLogSessions(defs, start([40, 0], 'time'))).toThrow(
      /metric "rides" has session windows, which a version starting mid-log cannot warm up yet; replay it with --from earliest/,
    );
    expect(() => refuseMidLogSessions(defs, start([0, 0], 'time'))).not.toThrow();
    expect(() => refuseMidLogSessions(defs, start([0, 0], 'earliest'))).not.toThrow();
  });
});
