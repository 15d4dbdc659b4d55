/**
 * Retention in the speed layer's state, on PartitionState directly (pure, no broker): the default
 * policy holds a closed minute window exactly 7 days past its end and then yields one tombstone
 * per row key, in the capture that follows; a state restored from a snapshot (full, or a delta
 * chain) yields the same tombstones at the same records as one that never stopped.
 */
import { describe, expect, it } from 'vitest';
import { parseMetricDefinitions, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { viewRowKey } from '../../services/views/viewRow.ts';
import { restoreState } from '../checkpoints/checkpointStore.ts';
import { decodeSnapshot, encodeFullSnapshot, encodeSnapshot, SNAPSHOT_FORMAT } from '../checkpoints/snapshotCodec.ts';
import { PartitionState } from '../state/partitionState.ts';

const MIN = 60_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1, 12, 0);
const SEMANTICS = { outOfOrdernessMs: 0, dedupHorizonMs: 2 * MIN };

const DEFS: MetricDefinition[] = [
  ...parseMetricDefinitions(`
metrics:
  - name: views
    key: page
    distinct: user
    granularities: [minute]
    allowedLateness: 30s
`).metrics,
];

let offset = 0;
function push(state: PartitionState, ts: number, page = 'home'): void {
  const id = `e${offset}`;
  state.apply({
    offset: offset++,
    timestamp: 1_000 + offset,
    key: Buffer.from(id),
    value: Buffer.from(JSON.stringify({ id, type: 'v', ts, page, user: 'u' })),
  });
}

const rowKey = (start: number, page = 'home') =>
  viewRowKey({ metric: 'views', granularity: 'minute', windowStart: start, partition: 0, key: page });

describe('retention in the speed state', () => {
  it('the default keeps a minute window until the watermark passes its end + 7d, then tombstones it once', () => {
    offset = 0;
    const s = new PartitionState(0, DEFS, SEMANTICS, { homePartitions: 1 });
    push(s, T0, 'a');
    push(s, T0 + 10_000, 'b');
    push(s, T0 + 5 * MIN); // closes window T0: held
    expect(s.captureChanges().tombstones).toEqual([]);
    expect(s.heldWindowCount).toBe(2);
    const expiresAt = T0 + MIN + 7 * DAY;
    push(s, expiresAt); // watermark exactly at the expiry: kept
    expect(s.captureChanges().tombstones).toEqual([]);
    expect(s.heldWindowCount).toBeGreaterThanOrEqual(2);
    push(s, expiresAt + 1); // one ms past it: both rows of the window go
    const { tombstones } = s.captureChanges();
    expect(tombstones).toEqual([rowKey(T0, 'a'), rowKey(T0, 'b')]);
    push(s, expiresAt + 2 * MIN);
    expect(s.captureChanges().tombstones).not.toContain(rowKey(T0, 'a'));
  });

  it('a window that closes and expires within one checkpoint gets its final row, then its tombstone', () => {
    offset = 0;
    const s = new PartitionState(0, DEFS, SEMANTICS, { homePartitions: 1 });
    s.captureChanges();
    push(s, T0);
    push(s, T0 + MIN + 7 * DAY + 1);
    const { rows, tombstones } = s.captureChanges();
    expect(rows.filter((r) => r.windowStart === T0)).toHaveLength(1);
    expect(tombstones).toEqual([rowKey(T0)]);
  });

  it('a restored state (full snapshot or delta chain) tombstones exactly what an uninterrupted one does', () => {
    const times = Array.from({ length: 240 }, (_, i) => T0 + i * 61 * MIN + (i % 7) * 1000);
    const run = (restoreEvery: number | null): string[][] => {
      offset = 0;
      let s = new PartitionState(0, DEFS, SEMANTICS, { homePartitions: 1 });
      const out: string[][] = [];
      let chain: Uint8Array[] = [];
      times.forEach((ts, i) => {
        push(s, ts, `k${i % 3}`);
        const position = s.position;
        const meta = s.meta();
        const full = chain.length === 0 || i % 50 === 0;
        const captured = s.captureChanges();
        out.push(captured.tombstones);
        const header = {
          ...meta,
          format: SNAPSHOT_FORMAT as 3,
          kind: full ? ('full' as const) : ('delta' as const),
          base: null,
          chainLength: 1,
          chainRows: 0,
          metricsFingerprint: 'x',
          semantics: SEMANTICS,
        };
        const bytes = full
          ? encodeFullSnapshot(s, 'x', SEMANTICS)
          : encodeSnapshot({ header, windows: captured.changedWindows, dedup: s.dedup.takeAdded() });
        if (full) s.dedup.takeAdded();
        chain = full ? [bytes] : [...chain, bytes];
        if (restoreEvery !== null && i % restoreEvery === restoreEvery - 1) {
          s = restoreState(
            0,
            DEFS,
            SEMANTICS,
            { homePartitions: 1 },
            chain.map((b) => decodeSnapshot(Buffer.from(b), 'test')),
          );
          expect(s.position).toBe(position);
        }
      });
      return out;
    };
    const live = run(null);
    expect(live.flat().length).toBeGreaterThan(50);
    expect(run(7)).toEqual(live);
    expect(run(23)).toEqual(live);
  });
});
