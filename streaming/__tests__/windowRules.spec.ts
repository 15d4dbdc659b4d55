/**
 * Edge cases of the windowing rules, on PartitionState directly (pure, no broker): window
 * boundaries, the lateness limit, closing and final rows, the dedup horizon, idle partitions.
 * Expected values are worked out by hand from the documented rules (docs/speed-layer.md).
 */
import { describe, expect, it } from 'vitest';
import type { LogRecord } from '../../services/log/eventLog.ts';
import { parseMetricDefinitions, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { partitionForKey } from '../../services/log/partitioner.ts';
import { HLL_STANDARD_ERROR, HyperLogLog } from '../../services/metrics/hll.ts';
import { PartitionState } from '../state/partitionState.ts';
import { combinedWatermark, isIdle } from '../state/watermarks.ts';

const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0); // a minute (and hour) boundary

function defs(yaml: string): MetricDefinition[] {
  return [...parseMetricDefinitions(yaml, 'test.yaml').metrics];
}

const COUNT_PER_MINUTE = defs(`
metrics:
  - name: views
    filter: { type: view }
    key: page
    value: ms
    granularities: [minute]
    allowedLateness: 30s
`);

class Feed {
  offset = 0;
  constructor(readonly state: PartitionState) {}
  push(id: string, ts: number, extra: Record<string, unknown> = {}): LogRecord {
    const record: LogRecord = {
      topic: 'events',
      partition: 0,
      offset: this.offset++,
      key: Buffer.from(id),
      value: Buffer.from(JSON.stringify({ id, type: 'view', ts, page: 'home', ms: 10, ...extra })),
      timestamp: 1_000_000 + this.offset,
      headers: {},
    };
    this.state.apply(record);
    return record;
  }
}

function newState(ooo = 0, horizon = 2 * MIN, d = COUNT_PER_MINUTE): Feed {
  return new Feed(new PartitionState(0, d, { outOfOrdernessMs: ooo, dedupHorizonMs: horizon }, { homePartitions: 1 }));
}

function counts(state: PartitionState): Record<number, number> {
  // Count 0: a closed window held (by key only) until it expires, not an open one.
  return Object.fromEntries(
    state
      .allWindows()
      .filter((w) => w.count > 0)
      .map((w) => [(w.windowStart - T0) / MIN, w.count]),
  );
}

describe('window boundaries', () => {
  it('an event exactly at a window start belongs to that window, one ms earlier to the previous', () => {
    const f = newState();
    f.push('a', T0 + MIN);
    f.push('b', T0 + MIN - 1);
    expect(counts(f.state)).toEqual({ 0: 1, 1: 1 });
  });
});

describe('lateness limit (closed when watermark > windowEnd + allowedLateness)', () => {
  it('accepts an event when the watermark is exactly windowEnd + allowedLateness', () => {
    const f = newState(5000);
    // watermark = maxTs - 5 s = (T0 + 1 min + 30 s): exactly the limit of window [T0, T0+1m).
    f.push('a', T0 + MIN + 30_000 + 5000);
    f.push('late-but-in', T0 + 59_999);
    expect(counts(f.state)[0]).toBe(1);
    expect(f.state.counters.droppedLate['views/minute']).toBe(0);
  });

  it('drops (and counts) an event when the watermark is 1 ms past the limit', () => {
    const f = newState(5000);
    f.push('a', T0 + MIN + 30_000 + 5000 + 1);
    f.push('too-late', T0 + 59_999);
    expect(counts(f.state)[0]).toBeUndefined();
    expect(f.state.counters.droppedLate['views/minute']).toBe(1);
    expect(f.state.counters.events).toBe(2);
  });

  it('uses the watermark before the record: a record cannot close its own window', () => {
    const f = newState(0);
    f.push('a', T0 + 10);
    // This record moves the watermark far ahead but is itself judged by the old watermark.
    f.push('b', T0 + 20);
    f.push('jump', T0 + 10 * MIN);
    f.push('c', T0 + 30);
    expect(f.state.counters.droppedLate['views/minute']).toBe(1);
  });
});

describe('closing a window', () => {
  it('stamps the final row at the closing record and never emits the window again', () => {
    const f = newState(0);
    f.push('a', T0 + 1000);
    f.push('b', T0 + 2000);
    const closing = f.push('c', T0 + MIN + 30_001); // watermark passes T0 + 1m + 30s
    f.push('d', T0 + MIN + 40_000);
    const { rows } = f.state.captureChanges();
    const first = rows.find((r) => r.windowStart === T0)!;
    expect(first).toMatchObject({
      count: 2,
      sum: 20,
      min: 10,
      max: 10,
      throughOffset: closing.offset + 1,
      processingTime: closing.timestamp,
    });
    const second = rows.find((r) => r.windowStart === T0 + MIN)!;
    expect(second).toMatchObject({ count: 2, throughOffset: 4, processingTime: 1_000_004 });
    f.push('e', T0 + 3000); // for the closed window: dropped, no row
    const later = f.state.captureChanges().rows;
    expect(later).toEqual([]);
    expect(f.state.counters.droppedLate['views/minute']).toBe(1);
  });

  it('does not re-emit a closed window whose last update was already published', () => {
    const f = newState(0);
    f.push('a', T0 + 1000);
    expect(f.state.captureChanges().rows).toHaveLength(1);
    f.push('b', T0 + 5 * MIN);
    expect(f.state.captureChanges().rows.map((r) => r.windowStart)).toEqual([T0 + 5 * MIN]);
  });
});

describe('dedup horizon', () => {
  it('a repeated id within the horizon is counted once, and as a duplicate', () => {
    const f = newState(0);
    f.push('a', T0 + 1000);
    f.push('a', T0 + 1000);
    f.push('b', T0 + 2000);
    f.push('a', T0 + 1000);
    expect(counts(f.state)[0]).toBe(3 - 1);
    expect(f.state.counters.duplicates).toBe(2);
  });

  it('an id past the horizon is forgotten (bounded memory) and its copy is dropped as late, never counted twice', () => {
    // horizon = window + lateness = 90 s: the minimum the job accepts.
    const f = newState(0, 90_000);
    f.push('a', T0 + 1000);
    f.push('x', T0 + 1000 + 90_000); // entry of 'a' is live while ts >= watermark - horizon
    expect(f.state.dedup.hasId('a', f.state.watermark())).toBe(true);
    f.push('y', T0 + 1000 + 90_001);
    expect(f.state.dedup.hasId('a', f.state.watermark())).toBe(false);
    f.push('z', T0 + 10 * MIN); // expiry frees memory as the watermark moves
    expect(f.state.dedup.size).toBeLessThan(4);
    f.push('a', T0 + 1000);
    expect(f.state.counters.duplicates).toBe(0);
    expect(f.state.counters.droppedLate['views/minute']).toBe(1);
    const total = f.state
      .captureChanges()
      .rows.filter((r) => r.windowStart === T0)
      .reduce((a, r) => a + r.count, 0);
    expect(total).toBe(1);
  });
});

describe('idle partitions', () => {
  it('an idle partition does not hold back the reported watermark; its own windows stay open', () => {
    expect(
      combinedWatermark([
        { watermark: 100, idle: false },
        { watermark: 5, idle: false },
      ]),
    ).toBe(5);
    expect(
      combinedWatermark([
        { watermark: 100, idle: false },
        { watermark: 5, idle: true },
      ]),
    ).toBe(100);
    expect(
      combinedWatermark([
        { watermark: 100, idle: true },
        { watermark: 5, idle: true },
      ]),
    ).toBe(100);
    expect(combinedWatermark([{ watermark: null, idle: false }])).toBeNull();
    expect(isIdle(0, 1000, 1000 + 30_001, 30_000)).toBe(true);
    expect(isIdle(0, 1000, 1000 + 30_000, 30_000)).toBe(false);
    expect(isIdle(3, 0, 1e12, 30_000)).toBe(false); // lagging is not idle

    // Windows close on the partition's own records only: an idle partition keeps its window
    // open (it is still exact), whatever the wall clock or the other partitions do.
    const quiet = newState(0);
    quiet.push('a', T0 + 1000);
    const busy = newState(0);
    busy.push('b', T0 + 1000);
    busy.push('c', T0 + 10 * MIN);
    expect(quiet.state.windowCount).toBe(1);
    expect(busy.state.windowCount).toBe(1);
    expect(counts(busy.state)[0]).toBeUndefined();
  });
});

describe('values and sketches', () => {
  it('sum/min/max only from numeric values; distinct sketch per window', () => {
    const d = defs(`
metrics:
  - name: spend
    filter: { type: view }
    key: page
    value: ms
    distinct: user
    granularities: [minute, hour]
    allowedLateness: 0s
`);
    const f = newState(0, 2 * 3_600_000, d);
    f.push('a', T0 + 1, { ms: 5, user: 'u1' });
    f.push('b', T0 + 2, { ms: 'n/a', user: 'u1' });
    f.push('c', T0 + 3, { ms: -2, user: 'u2' });
    const rows = f.state.captureChanges().rows;
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(r).toMatchObject({ count: 3, sum: 3, min: -2, max: 5 });
    expect(rows[0]!.distinctSketch).not.toBeNull();
  });
});

describe('distinct sketches across partitions', () => {
  it('merged partition sketches estimate the exact distinct count within 3 standard errors (seed 31)', () => {
    const d = defs(`
metrics:
  - name: reach
    filter: { type: impression }
    key: campaign_id
    distinct: user_id
    granularities: [day]
    allowedLateness: 1h
`);
    const states = Array.from(
      { length: 6 },
      (_, p) => new PartitionState(p, d, { outOfOrdernessMs: 0, dedupHorizonMs: 90_000_000 }, { homePartitions: 6 }),
    );
    const offsets = [0, 0, 0, 0, 0, 0];
    const exact = new Map<string, Set<string>>();
    for (const line of generateEventLines({ seed: 31, count: 60_000, startTime: T0, users: 40_000, campaigns: 3, lateRate: 0 })) {
      const ev = JSON.parse(line) as { id: string; type: string; campaign_id: string; user_id: string };
      const p = partitionForKey(ev.id, 6);
      states[p]!.apply({
        topic: 'events',
        partition: p,
        offset: offsets[p]!++,
        key: null,
        value: Buffer.from(line),
        timestamp: 0,
        headers: {},
      });
      if (ev.type === 'impression') {
        if (!exact.has(ev.campaign_id)) exact.set(ev.campaign_id, new Set());
        exact.get(ev.campaign_id)!.add(ev.user_id);
      }
    }
    const merged = new Map<string, HyperLogLog>();
    for (const s of states) {
      for (const row of s.captureChanges().rows) {
        const h = merged.get(row.key) ?? new HyperLogLog();
        merged.set(row.key, h.merge(HyperLogLog.fromBase64(row.distinctSketch!)));
      }
    }
    expect(merged.size).toBe(exact.size);
    for (const [campaign, users] of exact) {
      const error = Math.abs(merged.get(campaign)!.estimate() - users.size) / users.size;
      expect(error, `${campaign}: ${users.size} users`).toBeLessThan(3 * HLL_STANDARD_ERROR);
    }
  });
});
