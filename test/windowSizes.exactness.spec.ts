/**
 * Tumbling windows of any size, composite keys and the filter tests beside equality (in, not,
 * numeric bounds, exists), in both engines, against an independent oracle: generated metric
 * files declare generated window sizes (the named minute, hour and day beside 5m, 15m, 6h, 7d,
 * 14d, 2d, 45m, 90m, 30s ...), generated events sit at window boundaries of those sizes (one ms
 * either side included, Mondays for weeks), with duplicates in other partitions. The events go
 * through the real broker; the speed layer's partition state reads each partition's records and
 * the batch layer recomputes from the lake. Every speed row must equal the oracle with dedup per
 * partition, every batch row the oracle with dedup over the whole log (first copy by partition,
 * then offset): count, sum, min, max, distinct registers and percentile sketches (the buckets
 * of services/metrics/ddsketch.ts, whose rule its differential test binds; here the sketches'
 * counts per bucket, by both engines, and their survival through a checkpoint). The oracle restates the alignment
 * by hand (BigInt floor; weeks from Monday 1970-01-05) and never calls windowStart.ts.
 * A failure prints the command that reruns its seed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EventLog, LogRecord } from '../services/log/eventLog.ts';
import { seededRandom } from '../services/ingest/generator.ts';
import { parseMetricDefinitions, type MetricDefinitions } from '../services/metrics/definitions.ts';
import { bucketBoundaries, bucketOf } from '../services/metrics/ddsketch.ts';
import { HyperLogLog } from '../services/metrics/hll.ts';
import { logger } from '../services/observability/logger.ts';
import type { ViewRow } from '../services/views/viewRow.ts';
import { decodeSnapshot, encodeFullSnapshot } from '../streaming/checkpoints/snapshotCodec.ts';
import { PartitionState } from '../streaming/state/partitionState.ts';
import { tempDir, uniqueName } from './helpers.ts';
import { currentBatchRun, localStateOptions } from './sharedState.ts';
import { runBatchCycle } from '../batch/batchCycle.ts';
import { closeTo, createTopic, kafkaLog, readSnapshotRows, readTopic, sketchRegisters, testLake } from '../batch/__tests__/batchTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/windowSizes.exactness.spec.ts`;
const quiet = logger.child({}, { level: 'warn' });
const PARTITIONS = 3;
const EVENTS = 2500;

/** Declared sizes and their length, restated by hand (the oracle's own table). */
const SIZES: Record<string, { canonical: string; ms: number }> = {
  minute: { canonical: 'minute', ms: 60_000 },
  hour: { canonical: 'hour', ms: 3_600_000 },
  day: { canonical: 'day', ms: 86_400_000 },
  '60m': { canonical: 'hour', ms: 3_600_000 },
  '5m': { canonical: '5m', ms: 300_000 },
  '15m': { canonical: '15m', ms: 900_000 },
  '45m': { canonical: '45m', ms: 2_700_000 },
  '90m': { canonical: '90m', ms: 5_400_000 },
  '6h': { canonical: '6h', ms: 21_600_000 },
  '2d': { canonical: '2d', ms: 172_800_000 },
  '7d': { canonical: '7d', ms: 604_800_000 },
  '14d': { canonical: '14d', ms: 1_209_600_000 },
  '30s': { canonical: '30s', ms: 30_000 },
};
const MONDAY = Date.UTC(1970, 0, 5);

/** The oracle's window start: weeks from the first Monday, every other size from the epoch. */
function oracleStart(ts: number, size: number): number {
  const origin = size % (7 * 86_400_000) === 0 ? MONDAY : 0;
  const t = BigInt(ts - origin);
  const s = BigInt(size);
  const floor = t >= 0n ? (t / s) * s : -((-t + s - 1n) / s) * s;
  return Number(floor) + origin;
}

interface GenMetric {
  name: string;
  types: string[];
  sizes: string[];
  value: boolean;
  distinct: boolean;
  /** `percentiles:` on the value: true (1 %), a relative accuracy, or none. */
  percentiles: true | number | null;
  /** A composite key [k, type] instead of k. */
  composite: boolean;
  /** Filter tests beside equality, restated by the oracle: bounds on v, `not` and `exists` on u. */
  vBounds: { op: 'gt' | 'gte' | 'lt' | 'lte'; bound: number }[];
  uNot: string[];
  uExists: boolean | null;
}

function generateMetrics(r: () => number): GenMetric[] {
  const names = Object.keys(SIZES);
  return Array.from({ length: 4 }, (_, i) => {
    const chosen = new Map<string, string>();
    // Always one of the issue's sizes, then a few more (one declaration per canonical size).
    for (const d of [
      ['5m', '15m', '6h', '7d'][i]!,
      ...Array.from({ length: 1 + Math.floor(r() * 3) }, () => names[Math.floor(r() * names.length)]!),
    ])
      if (!chosen.has(SIZES[d]!.canonical)) chosen.set(SIZES[d]!.canonical, d);
    const bounds = (['gt', 'gte', 'lt', 'lte'] as const).filter(() => r() < 0.4);
    const hasValue = r() < 0.7 || i === 0;
    return {
      name: `w${i}`,
      types: i % 2 === 0 ? ['click'] : ['click', 'view'],
      sizes: [...chosen.values()],
      value: hasValue,
      distinct: i !== 1,
      percentiles: !hasValue ? null : i === 0 ? true : i === 3 ? 0.02 : null,
      composite: i >= 2,
      // Bounds at values events carry (multiples of 1/8), so that equality at the bound occurs.
      vBounds: bounds.map((op) => ({ op, bound: (op.startsWith('g') ? -20 : 40) + Math.floor(r() * 20) / 8 })),
      uNot: i % 2 === 1 ? ['u1', 'u2', 'u3'] : [],
      uExists: i === 0 ? null : i === 1 ? true : i === 2 ? false : null,
    };
  });
}

function metricFile(metrics: GenMetric[]): string {
  return [
    // The lateness below keeps every window open; a retention must outlast it (retention.ts), and
    // sizes without an entry take the next coarser named size's.
    'retention: { minute: 3650d, hour: 3650d, day: 3650d }',
    'metrics:',
    ...metrics.flatMap((m) => [
      `  - name: ${m.name}`,
      '    filter:',
      `      type: { in: [${m.types.join(', ')}] }`,
      ...(m.vBounds.length > 0 ? [`      v: { ${m.vBounds.map((b) => `${b.op}: ${b.bound}`).join(', ')} }`] : []),
      ...(m.uNot.length > 0 || m.uExists !== null
        ? [
            `      u: { ${[...(m.uNot.length > 0 ? [`not: [${m.uNot.join(', ')}]`] : []), ...(m.uExists !== null ? [`exists: ${m.uExists}`] : [])].join(', ')} }`,
          ]
        : []),
      `    key: ${m.composite ? '[k, type]' : 'k'}`,
      ...(m.value ? ['    value: v'] : []),
      ...(m.percentiles === true
        ? ['    percentiles: true']
        : m.percentiles !== null
          ? [`    percentiles: { relativeAccuracy: ${m.percentiles} }`]
          : []),
      ...(m.distinct ? ['    distinct: u'] : []),
      `    granularities: [${m.sizes.join(', ')}]`,
      '    allowedLateness: 400d',
    ]),
  ].join('\n');
}

interface Event {
  id: string;
  type: string;
  ts: number;
  k: string;
  v?: number;
  u?: string;
}

/** Events at the boundaries of the declared sizes (and one ms either side), Mondays included. */
function generateEvents(r: () => number, metrics: GenMetric[]): Event[] {
  const base = Date.UTC(2026, 0, 7, 13, 0);
  const sizes = [...new Set(metrics.flatMap((m) => m.sizes.map((s) => SIZES[s]!.ms)))];
  return Array.from({ length: EVENTS }, (_, i) => {
    const size = sizes[Math.floor(r() * sizes.length)]!;
    const boundary = oracleStart(base + Math.floor((r() - 0.5) * 40) * size, size);
    const ts = boundary + [-1, 0, 1, Math.floor(r() * size) - Math.floor(size / 2)][Math.floor(r() * 4)]!;
    const e: Event = { id: `e${i}`, type: r() < 0.6 ? 'click' : r() < 0.8 ? 'view' : 'other', ts, k: `k${Math.floor(r() * 4)}` };
    if (r() < 0.9) e.v = Math.round((r() - 0.3) * 1000) / 8;
    if (r() < 0.8) e.u = `u${Math.floor(r() * 8)}`;
    return e;
  });
}

interface OracleRow {
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  users: Set<string>;
  values: number[];
}

/** Expected rows `metric|granularity|key|windowStart|partition`; `scope` says where a copy is a duplicate. */
function oracle(records: LogRecord[][], metrics: GenMetric[], scope: 'partition' | 'log'): Map<string, OracleRow> {
  const rows = new Map<string, OracleRow>();
  const seenInLog = new Set<string>();
  for (const rs of records) {
    const seen = scope === 'log' ? seenInLog : new Set<string>();
    for (const rec of rs) {
      const e = JSON.parse(rec.value!.toString()) as Event;
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      for (const m of metrics) {
        if (!m.types.includes(e.type)) continue;
        const cmp = {
          gt: (a: number, b: number) => a > b,
          gte: (a: number, b: number) => a >= b,
          lt: (a: number, b: number) => a < b,
          lte: (a: number, b: number) => a <= b,
        };
        if (m.vBounds.some((b) => e.v === undefined || !cmp[b.op](e.v, b.bound))) continue;
        if (e.u !== undefined && m.uNot.includes(e.u)) continue;
        if (m.uExists !== null && (e.u !== undefined) !== m.uExists) continue;
        const k = m.composite ? `${e.k}|${e.type}` : e.k;
        for (const declared of m.sizes) {
          const { canonical, ms } = SIZES[declared]!;
          const key = `${m.name}|${canonical}|${k}|${oracleStart(e.ts, ms)}|${rec.partition}`;
          let row = rows.get(key);
          if (!row) rows.set(key, (row = { count: 0, sum: null, min: null, max: null, users: new Set(), values: [] }));
          row.count++;
          if (m.value && e.v !== undefined) {
            row.sum = (row.sum ?? 0) + e.v;
            row.min = row.min === null ? e.v : Math.min(row.min, e.v);
            row.max = row.max === null ? e.v : Math.max(row.max, e.v);
            row.values.push(e.v);
          }
          if (m.distinct && e.u !== undefined) row.users.add(e.u);
        }
      }
    }
  }
  return rows;
}

interface Got {
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  sketch: string | null;
  valueSketch: string | null;
}

/** The oracle's sketch text: each value's bucket counted, "bucket:count" in ascending bucket order. */
function oracleSketch(values: number[], percentiles: true | number | null): string | null {
  if (percentiles === null) return null;
  const table = bucketBoundaries(percentiles === true ? 0.01 : percentiles);
  const counts = new Map<number, number>();
  for (const v of values) counts.set(bucketOf(v, table), (counts.get(bucketOf(v, table)) ?? 0) + 1);
  return [...counts.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([b, n]) => `${b}:${n}`)
    .join(',');
}

function compare(side: string, got: Map<string, Got>, want: Map<string, OracleRow>, metrics: GenMetric[]): string[] {
  const problems: string[] = [];
  const keys = new Set([...got.keys(), ...want.keys()]);
  for (const key of keys) {
    const g = got.get(key);
    const w = want.get(key);
    if (!g || !w) {
      problems.push(`${side}: row ${key} ${g ? 'not in the oracle' : 'missing'}`);
      continue;
    }
    const metric = metrics.find((m) => m.name === key.split('|')[0])!;
    const distinct = metric.distinct;
    const wantSketch = oracleSketch(w.values, metric.percentiles);
    const expectedSketch = new HyperLogLog();
    for (const u of w.users) expectedSketch.add(u);
    const sameSketch = !distinct || Buffer.from(sketchRegisters(g.sketch!)).equals(Buffer.from(sketchRegisters(expectedSketch.toBase64())));
    if (g.count !== w.count || !closeTo(g.sum, w.sum) || g.min !== w.min || g.max !== w.max || !sameSketch || g.valueSketch !== wantSketch)
      problems.push(
        `${side}: row ${key} is ${JSON.stringify({ ...g, sketch: undefined })}, the oracle ${JSON.stringify({ ...w, users: w.users.size, values: undefined, valueSketch: wantSketch })}`,
      );
    if (problems.length > 5) break;
  }
  return problems;
}

describe('tumbling windows of any size: speed and batch rows equal the oracle', () => {
  const dir = tempDir('lk-window-sizes-');
  const topic = uniqueName('window-sizes');
  const r = seededRandom(SEED);
  const metrics = generateMetrics(r);
  const text = metricFile(metrics);
  let defs: MetricDefinitions;
  let log: EventLog;
  let records: LogRecord[][];

  beforeAll(async () => {
    defs = parseMetricDefinitions(text, 'generated.yaml');
    log = kafkaLog();
    const lake = await testLake(dir.path, topic);
    await createTopic(log, topic, PARTITIONS);
    const events = generateEvents(r, metrics);
    const producer = await log.producer();
    // Each event keyed by its id; 15 % also sent again under another key (often another partition).
    const out = events.flatMap((e) => {
      const line = JSON.stringify(e);
      return [{ key: e.id, value: line }, ...(r() < 0.15 ? [{ key: `${e.id}/copy`, value: line }] : [])];
    });
    await producer.send(topic, out);
    await producer.close();
    await runBatchCycle({
      log,
      topic,
      groupId: `${topic}-batch`,
      ...localStateOptions(dir.path),
      lake,
      version: 'v1',
      metrics: defs,
      rollBytes: 1 << 20,
      rollIntervalMs: 60_000,
      logger: quiet,
    });
    records = await readTopic(log, topic);
  }, 120_000);

  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  it('the metric file names every size canonically (60m is hour), declares the issue sizes, filter tests and a composite key', () => {
    for (const [i, m] of defs.metrics.entries()) expect(m.granularities, text).toEqual(metrics[i]!.sizes.map((s) => SIZES[s]!.canonical));
    const all = new Set(defs.metrics.flatMap((m) => m.granularities));
    for (const g of ['5m', '15m', '6h', '7d']) expect(all.has(g), text).toBe(true);
    // The generated file exercises in, not, a bound, exists and a composite key.
    for (const form of [/type: \{ in: /, /not: \[/, /v: \{ (gt|gte|lt|lte): /, /exists: (true|false)/, /key: \[k, type\]/])
      expect(text).toMatch(form);
    expect(defs.metrics[2]!.keyParts).toEqual(['k', 'type']);
  });

  it('speed rows (dedup per partition) equal the oracle for every size', () => {
    const got = new Map<string, Got>();
    for (const [p, rs] of records.entries()) {
      const state = new PartitionState(p, defs.metrics, { outOfOrdernessMs: 1e13, dedupHorizonMs: 1e13 }, { homePartitions: PARTITIONS });
      for (const rec of rs) state.apply(rec);
      for (const row of state.captureChanges().rows as ViewRow[])
        got.set(`${row.metric}|${row.granularity}|${row.key}|${row.windowStart}|${row.partition}`, {
          count: row.count,
          sum: row.sum,
          min: row.min,
          max: row.max,
          sketch: row.distinctSketch,
          valueSketch: row.valueSketch ?? null,
        });
      // The sketches survive a checkpoint: decoded from the snapshot's bytes, as they were taken.
      const windows = state.allWindows();
      const decoded = decodeSnapshot(encodeFullSnapshot(state, 'f', { outOfOrdernessMs: 1e13, dedupHorizonMs: 1e13 }), 'test');
      expect(decoded.windows.map((x) => x.valueSketch)).toEqual(windows.map((x) => x.valueSketch));
      expect(windows.some((x) => x.valueSketch !== null && x.valueSketch.includes(','))).toBe(true);
    }
    const want = oracle(records, metrics, 'partition');
    expect(want.size).toBeGreaterThan(500);
    expect(compare('speed', got, want, metrics), `${text}\n${rerun}`).toEqual([]);
  });

  it('batch rows (dedup over the log, roll-ups between sizes that tile) equal the oracle for every size', async () => {
    const current = (await currentBatchRun(dir.path, 'v1'))!;
    const rows = await readSnapshotRows(current.rowsPath!);
    const got = new Map<string, Got>(
      rows.map((row) => [
        `${row.metric}|${row.granularity}|${row.key}|${row.window_start}|${row.partition}`,
        { count: row.count, sum: row.sum, min: row.min, max: row.max, sketch: row.distinct_sketch, valueSketch: row.value_sketch },
      ]),
    );
    const want = oracle(records, metrics, 'log');
    // Duplicates in other partitions: the log-wide dedup counts fewer than the per-partition one.
    const total = (m: Map<string, OracleRow>) => [...m.values()].reduce((n, x) => n + x.count, 0);
    expect(total(want)).toBeLessThan(total(oracle(records, metrics, 'partition')));
    expect(compare('batch', got, want, metrics), `${text}\n${rerun}`).toEqual([]);
  });
});
