/**
 * Checkpoint snapshots: a full snapshot plus delta snapshots restore exactly the live state;
 * a torn or corrupted snapshot is refused, never restored; changed metric definitions are
 * carried over only when that stays exact, with precise messages otherwise.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { LogRecord } from '../../services/log/eventLog.ts';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import { tempDir } from '../../test/helpers.ts';
import { CheckpointStore, restoreState, snapshotName } from '../checkpoints/checkpointStore.ts';
import { LocalObjectStore } from '../../services/storage/localObjectStore.ts';
import { compareDefinitions } from '../../services/versions/metricChanges.ts';
import { PartitionState } from '../state/partitionState.ts';
import { decodeSnapshot, encodeSnapshot, type SnapshotHeader } from '../checkpoints/snapshotCodec.ts';
import { TEST_METRICS_YAML } from './support/oracle.ts';

const defs = parseMetricDefinitions(TEST_METRICS_YAML, 'test.yaml').metrics;
const semantics = { outOfOrdernessMs: 2000, dedupHorizonMs: 90_000_000 };

function records(count: number, seed: number): LogRecord[] {
  return [
    ...generateEventLines({
      seed,
      count,
      startTime: Date.UTC(2026, 0, 1),
      eventsPerSecond: 20,
      lateRate: 0.05,
      lateMinMs: 60_000,
      lateMaxMs: 1_800_000,
    }),
  ].map((line, offset) => ({
    topic: 'events',
    partition: 0,
    offset,
    key: null,
    value: Buffer.from(line),
    timestamp: 1_700_000_000_000 + offset,
    headers: {},
  }));
}

function header(state: PartitionState, kind: 'full' | 'delta', base: number | null): SnapshotHeader {
  return { ...state.meta(), format: 1, kind, base, chainLength: 1, chainRows: 0, metricsFingerprint: 'x', semantics };
}

const sortWindows = (s: PartitionState) =>
  s.allWindows().sort((a, b) => `${a.slot}${a.windowStart}${a.key}`.localeCompare(`${b.slot}${b.windowStart}${b.key}`));

describe('snapshot chain', () => {
  const dir = tempDir('lk-speed-ckpt-');
  afterAll(() => dir.remove());

  it('full + deltas restore the same state as the live one, and the restored state continues identically', async () => {
    const input = records(30_000, 7);
    const store = new CheckpointStore(new LocalObjectStore(dir.path));
    const live = new PartitionState(0, defs, semantics, { homePartitions: 1 });
    let previous: { position: number; name: string } | null = null;
    for (let i = 0; i < 20_000; i++) {
      live.apply(input[i]!);
      if ((i + 1) % 4000 === 0) {
        const { changedWindows } = live.captureChanges();
        const added = live.dedup.takeAdded();
        const h = previous === null ? header(live, 'full', null) : { ...header(live, 'delta', previous.position), baseName: previous.name };
        const bytes =
          previous === null
            ? encodeSnapshot({ header: h, windows: live.allWindows(), dedup: live.dedup.entries() })
            : encodeSnapshot({ header: h, windows: changedWindows, dedup: added });
        const name = snapshotName(live.position, h);
        expect(await store.write(0, name, bytes)).toBe(true);
        // A second create of the name changes nothing (the same state over the same chain).
        expect(await store.write(0, name, bytes)).toBe(false);
        previous = { position: live.position, name };
      }
    }
    const chain = await store.readDecodedChain(0, { offset: previous!.position, name: previous!.name });
    expect(chain.map((s) => s.header.kind)).toEqual(['full', 'delta', 'delta', 'delta', 'delta']);
    const restored = restoreState(0, defs, semantics, { homePartitions: 1 }, chain);
    expect(restored.meta()).toEqual(live.meta());
    expect(sortWindows(restored)).toEqual(sortWindows(live));
    expect(restored.dedup.size).toBe(live.dedup.size);
    for (let i = 20_000; i < 30_000; i++) {
      live.apply(input[i]!);
      restored.apply(input[i]!);
    }
    expect(restored.meta()).toEqual(live.meta());
    expect(sortWindows(restored)).toEqual(sortWindows(live));
  });

  it('refuses a torn or corrupted snapshot', () => {
    const state = new PartitionState(0, defs, semantics, { homePartitions: 1 });
    for (const r of records(500, 3)) state.apply(r);
    const bytes = encodeSnapshot({ header: header(state, 'full', null), windows: state.allWindows(), dedup: state.dedup.entries() });
    expect(decodeSnapshot(bytes, 'ok').windows.length).toBe(state.windowCount);
    expect(() => decodeSnapshot(bytes.subarray(0, bytes.length - 100), 'torn')).toThrow(/checksum mismatch|not a speed-layer snapshot/);
    const flipped = Buffer.from(bytes);
    flipped[200]! ^= 0xff;
    expect(() => decodeSnapshot(flipped, 'flipped')).toThrow(/checksum mismatch/);
    const path = `${dir.path}/torn.arrow`;
    writeFileSync(path, bytes.subarray(0, 10));
    expect(() => decodeSnapshot(readFileSync(path), path)).toThrow(/not a speed-layer snapshot/);
  });
});

describe('metric definition changes', () => {
  const base = TEST_METRICS_YAML;
  const parse = (text: string) => parseMetricDefinitions(text, 'm.yaml').metrics;

  it('carries over removed metrics and granularities and a shorter lateness', () => {
    const changed = base
      .replace('granularities: [minute, hour, day]', 'granularities: [minute, hour]')
      .replace('allowedLateness: 1h', 'allowedLateness: 30m');
    const withoutClicks = changed.replace(/ {2}- name: clicks_by_ad[\s\S]*?allowedLateness: 10m\n/, '');
    const c = compareDefinitions(parse(base), parse(withoutClicks), 'savepoint "s"');
    expect(c.problems).toEqual([]);
    expect(c.notes.join('\n')).toMatch(/granularity day removed/);
    expect(c.notes.join('\n')).toMatch(/"clicks_by_ad" removed/);
    expect(c.notes.join('\n')).toMatch(/allowedLateness shrank from 1h to 30m/);
  });

  it('refuses new metrics, new granularities, changed rules and a longer lateness, naming each', () => {
    const changed = base
      .replace('filter: { type: impression }', 'filter: { type: [impression, view] }')
      .replace('granularities: [minute, hour]\n    allowedLateness: 10m', 'granularities: [minute, hour, day]\n    allowedLateness: 20m')
      .concat(
        '  - name: signups\n    filter: { type: signup }\n    key: campaign_id\n    granularities: [hour]\n    allowedLateness: 1m\n',
      );
    const { problems } = compareDefinitions(parse(base), parse(changed), 'savepoint "s"');
    expect(problems).toHaveLength(4);
    expect(problems[0]).toBe(
      'metric "impressions_by_campaign": filter changed from {"type":["impression"]} to {"type":["impression","view"]}; the savepoint "s" was computed with the old filter; start a new --version',
    );
    expect(problems[1]).toMatch(/^metric "clicks_by_ad": granularity day is not in the savepoint "s"/);
    expect(problems[2]).toMatch(/^metric "clicks_by_ad": allowedLateness grew from 10m to 20m/);
    expect(problems[3]).toMatch(/^metric "signups" is not in the savepoint "s"/);
  });
});
