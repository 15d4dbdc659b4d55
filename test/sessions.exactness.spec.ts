/**
 * Session windows in both engines against an independent oracle (services/metrics/sessionRule.ts
 * states the rule; the oracle here restates it by hand: per key, sort the times, split where the
 * difference is >= gap). Generated session metric files (gaps of 1s to 30m, filters, a value, a
 * distinct field, composite keys) beside a tumbling metric, and generated events of a few keys
 * placed exactly `gap`, `gap - 1ms` and `gap + 1ms` after earlier events of their key, produced
 * in shuffled order (late events that bridge sessions), with copies in the same partition and in
 * other partitions. The events go through the real broker and lake; DuckDB computes the batch
 * view, the speed layer's partition state reads each partition's records.
 *
 * - DuckDB's per-partition partial sessions (dedup over the log) equal the oracle's;
 * - the speed layer's partials (dedup per partition) equal the oracle's with that dedup scope;
 * - fed the same records (the log's first copies), the speed layer's partials equal DuckDB's, row
 *   for row (start, end, count, sum, min, max, misplaced, HLL registers);
 * - the partials of either engine merged by sessionRule.ts equal the oracle's true sessions, and
 *   so does serving's merge (combineSessionRows) of the speed view with and without a batch run;
 * - the speed layer with a real watermark (closing, late drops, merges, tombstones) checkpointed
 *   at generated points (full and delta snapshots, through their bytes) and restored after
 *   crashes at generated points publishes exactly the view of an uninterrupted run.
 * A failure prints the command that reruns its seed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DuckDBInstance } from '@duckdb/node-api';
import type { EventLog, LogRecord } from '../services/log/eventLog.ts';
import { seededRandom } from '../services/ingest/generator.ts';
import { parseMetricDefinitions, type MetricDefinitions } from '../services/metrics/definitions.ts';
import { HyperLogLog } from '../services/metrics/hll.ts';
import { chainSessions, combineSessionRows, type SessionMeasures, type SourcedSessionRow } from '../services/metrics/sessionRule.ts';
import { logger } from '../services/observability/logger.ts';
import { idHash } from '../services/log/partitioner.ts';
import { viewRowKey, type ViewRow } from '../services/views/viewRow.ts';
import { decodeSnapshot, encodeSnapshot, type SnapshotContent, type SnapshotHeader } from '../streaming/checkpoints/snapshotCodec.ts';
import { restoreState } from '../streaming/checkpoints/checkpointStore.ts';
import { PartitionState, type SpeedSemantics } from '../streaming/state/partitionState.ts';
import { tempDir, uniqueName } from './helpers.ts';
import { currentBatchRun, localStateOptions } from './sharedState.ts';
import { runBatchCycle } from '../batch/batchCycle.ts';
import { closeTo, createTopic, kafkaLog, readTopic, sketchRegisters, testLake } from '../batch/__tests__/batchTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/sessions.exactness.spec.ts`;
const quiet = logger.child({}, { level: 'warn' });
const PARTITIONS = 3;
const EVENTS = 1500;
/** Gaps the generator draws from, as the file writes them and in ms (the oracle's own table). */
const GAPS: [string, number][] = [
  ['1s', 1000],
  ['30s', 30_000],
  ['90s', 90_000],
  ['5m', 300_000],
  ['30m', 1_800_000],
];

interface GenMetric {
  name: string;
  types: string[];
  gap: string;
  gapMs: number;
  value: boolean;
  distinct: boolean;
  composite: boolean;
}

function generateMetrics(r: () => number): GenMetric[] {
  return Array.from({ length: 3 }, (_, i) => {
    const [gap, gapMs] = GAPS[Math.floor(r() * GAPS.length)]!;
    return {
      name: `s${i}`,
      types: i === 0 ? ['click'] : ['click', 'view'],
      gap,
      gapMs,
      value: i !== 1 || r() < 0.5,
      distinct: i !== 2,
      composite: i === 2,
    };
  });
}

function metricFile(metrics: GenMetric[]): string {
  return [
    'retention: { minute: 3650d, hour: 3650d, day: 3650d }',
    'metrics:',
    // A tumbling metric beside the sessions: both kinds in one file, one state, one run.
    '  - { name: clicks, filter: { type: click }, key: k, granularities: [minute], allowedLateness: 400d }',
    ...metrics.flatMap((m) => [
      `  - name: ${m.name}`,
      `    filter: { type: { in: [${m.types.join(', ')}] } }`,
      `    key: ${m.composite ? '[k, type]' : 'k'}`,
      ...(m.value ? ['    value: v'] : []),
      ...(m.distinct ? ['    distinct: u'] : []),
      `    session: { gap: ${m.gap} }`,
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

/** Events of a few keys, many placed gap, gap - 1 ms, gap + 1 ms or 0 after an earlier event of their key; shuffled. */
function generateEvents(r: () => number, metrics: GenMetric[]): Event[] {
  const base = Date.UTC(2026, 0, 7, 13, 0);
  const byKey = new Map<string, number[]>();
  const events: Event[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const k = `k${Math.floor(r() * 4)}`;
    const times = byKey.get(k) ?? [];
    const gapMs = metrics[Math.floor(r() * metrics.length)]!.gapMs;
    const ts =
      times.length > 0 && r() < 0.7
        ? times[Math.floor(r() * times.length)]! +
          [gapMs, gapMs - 1, gapMs + 1, 0, -gapMs + 1, Math.floor(r() * 2 * gapMs)][Math.floor(r() * 6)]!
        : base + Math.floor(r() * 3_600_000 * 6);
    times.push(ts);
    byKey.set(k, times);
    const e: Event = { id: `e${i}`, type: r() < 0.6 ? 'click' : r() < 0.85 ? 'view' : 'other', ts, k };
    if (r() < 0.9) e.v = Math.round((r() - 0.3) * 1000) / 8;
    if (r() < 0.8) e.u = `u${Math.floor(r() * 12)}`;
    events.push(e);
  }
  // Shuffled: the log order is not the time order, so late events bridge sessions.
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [events[i], events[j]] = [events[j]!, events[i]!];
  }
  return events;
}

interface OracleSession {
  start: number;
  end: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  users: Set<string>;
}

/** The records a scope counts: per partition (the speed layer's dedup) or the first copy over the log (lowest partition, then offset). */
function deduped(records: LogRecord[][], scope: 'partition' | 'log'): LogRecord[][] {
  const seenInLog = new Set<string>();
  return records.map((rs) => {
    const seen = scope === 'log' ? seenInLog : new Set<string>();
    return rs.filter((rec) => {
      const id = (JSON.parse(rec.value!.toString()) as Event).id;
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
  });
}

/** Oracle sessions `metric|key|partition` (partition 'all': the true sessions over every partition). */
function oracle(records: LogRecord[][], metrics: GenMetric[], partials: boolean): Map<string, OracleSession[]> {
  const times = new Map<string, Event[]>();
  for (const rs of records)
    for (const rec of rs) {
      const e = JSON.parse(rec.value!.toString()) as Event;
      for (const m of metrics) {
        if (!m.types.includes(e.type)) continue;
        const k = m.composite ? `${e.k}|${e.type}` : e.k;
        const id = `${m.name}|${k}|${partials ? rec.partition : 'all'}`;
        times.set(id, [...(times.get(id) ?? []), e]);
      }
    }
  const out = new Map<string, OracleSession[]>();
  for (const [id, events] of times) {
    const m = metrics.find((x) => x.name === id.split('|')[0])!;
    events.sort((a, b) => a.ts - b.ts);
    const sessions: OracleSession[] = [];
    let last: number | undefined;
    for (const e of events) {
      if (last === undefined || e.ts - last >= m.gapMs)
        sessions.push({ start: e.ts, end: e.ts, count: 0, sum: null, min: null, max: null, users: new Set() });
      const s = sessions.at(-1)!;
      s.end = e.ts;
      s.count++;
      if (m.value && e.v !== undefined) {
        s.sum = (s.sum ?? 0) + e.v;
        s.min = s.min === null ? e.v : Math.min(s.min, e.v);
        s.max = s.max === null ? e.v : Math.max(s.max, e.v);
      }
      if (m.distinct && e.u !== undefined) s.users.add(e.u);
      last = e.ts;
    }
    out.set(id, sessions);
  }
  return out;
}

type Got = Pick<SessionMeasures, 'count' | 'sum' | 'min' | 'max' | 'distinctSketch' | 'misplaced'> & { start: number; end: number };

function sameRegisters(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return a === b;
  return Buffer.from(sketchRegisters(a)).equals(Buffer.from(sketchRegisters(b)));
}

/** Problems between engine sessions and oracle sessions, both keyed `metric|key|partition`. */
function compare(side: string, got: Map<string, Got[]>, want: Map<string, OracleSession[]>, metrics: GenMetric[]): string[] {
  const problems: string[] = [];
  for (const id of new Set([...got.keys(), ...want.keys()])) {
    const g = [...(got.get(id) ?? [])].sort((a, b) => a.start - b.start);
    const w = want.get(id) ?? [];
    if (g.length !== w.length) problems.push(`${side}: ${id} has ${g.length} sessions, the oracle ${w.length}`);
    const distinct = metrics.find((m) => m.name === id.split('|')[0])!.distinct;
    for (let i = 0; i < Math.min(g.length, w.length); i++) {
      const [a, b] = [g[i]!, w[i]!];
      const sketch = new HyperLogLog();
      for (const u of b.users) sketch.add(u);
      if (
        a.start !== b.start ||
        a.end !== b.end ||
        a.count !== b.count ||
        !closeTo(a.sum, b.sum) ||
        a.min !== b.min ||
        a.max !== b.max ||
        (distinct && !sameRegisters(a.distinctSketch, sketch.toBase64()))
      )
        problems.push(
          `${side}: ${id} session ${i} is ${JSON.stringify({ ...a, distinctSketch: undefined })}, the oracle ${JSON.stringify({ ...b, users: b.users.size })}`,
        );
    }
    if (problems.length > 5) break;
  }
  return problems;
}

function groupRows<T extends { metric: string; key: string; partition: number }>(rows: T[], partials: boolean): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const r of rows) {
    const id = `${r.metric}|${r.key}|${partials ? r.partition : 'all'}`;
    out.set(id, [...(out.get(id) ?? []), r]);
  }
  return out;
}

const asGot = (r: ViewRow): Got & { metric: string; key: string; partition: number } => ({
  metric: r.metric,
  key: r.key,
  partition: r.partition,
  start: r.windowStart,
  end: r.windowEnd!,
  count: r.count,
  sum: r.sum,
  min: r.min,
  max: r.max,
  distinctSketch: r.distinctSketch,
  misplaced: r.misplaced,
});

/** The speed layer's session rows over `records` of each partition, no lateness (one capture at the end). */
function speedPartials(records: LogRecord[][], defs: MetricDefinitions): ViewRow[] {
  const rows: ViewRow[] = [];
  for (const [p, rs] of records.entries()) {
    const state = new PartitionState(p, defs.metrics, { outOfOrdernessMs: 1e13, dedupHorizonMs: 1e13 }, { homePartitions: PARTITIONS });
    for (const rec of rs) state.apply(rec);
    rows.push(...state.captureChanges().rows.filter((r) => r.granularity === 'session'));
  }
  return rows;
}

/** Merges engine partials with sessionRule.ts into true sessions, keyed `metric|key|all`. */
function merged(rows: ReturnType<typeof asGot>[], metrics: GenMetric[]): Map<string, Got[]> {
  const out = new Map<string, Got[]>();
  for (const [id, list] of groupRows(rows, false))
    out.set(id, chainSessions(list, metrics.find((m) => m.name === id.split('|')[0])!.gapMs));
  return out;
}

describe(`session windows: speed and batch partials, merged sessions and serving equal the oracle (seed ${SEED})`, () => {
  const dir = tempDir('lk-sessions-');
  const topic = uniqueName('sessions');
  const r = seededRandom(SEED);
  const metrics = generateMetrics(r);
  const text = metricFile(metrics);
  let defs: MetricDefinitions;
  let log: EventLog;
  let records: LogRecord[][];
  let batchRows: (ReturnType<typeof asGot> & { throughOffset: number })[] = [];

  beforeAll(async () => {
    defs = parseMetricDefinitions(text, 'generated.yaml');
    log = kafkaLog();
    const lake = await testLake(dir.path, topic);
    await createTopic(log, topic, PARTITIONS);
    const events = generateEvents(r, metrics);
    const producer = await log.producer();
    // Each event keyed by its id; 8 % sent again in its own partition, 8 % under another key (often another partition).
    const out = events.flatMap((e) => {
      const line = JSON.stringify(e);
      const x = r();
      return [
        { key: e.id, value: line },
        ...(x < 0.08 ? [{ key: e.id, value: line }] : x < 0.16 ? [{ key: `${e.id}/copy`, value: line }] : []),
      ];
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
    const run = (await currentBatchRun(dir.path, 'v1'))!;
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    try {
      const reader = await conn.runAndReadAll(
        `SELECT metric, key, partition, window_start::DOUBLE AS window_start, window_end::DOUBLE AS window_end, count::DOUBLE AS count,
           sum, min, max, distinct_sketch, misplaced::DOUBLE AS misplaced, raw_count::DOUBLE AS raw_count, through_offset::DOUBLE AS through_offset
         FROM read_parquet('${run.rowsPath!}') WHERE granularity = 'session'`,
      );
      batchRows = reader.getRowObjectsJS().map((x) => ({
        metric: x.metric as string,
        key: x.key as string,
        partition: x.partition as number,
        start: x.window_start as number,
        end: x.window_end as number,
        count: x.count as number,
        sum: x.sum as number | null,
        min: x.min as number | null,
        max: x.max as number | null,
        distinctSketch: x.distinct_sketch as string | null,
        misplaced: x.misplaced as number,
        throughOffset: x.through_offset as number,
      }));
    } finally {
      conn.closeSync();
      db.closeSync();
    }
  }, 120_000);

  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  it('the generated events put events exactly gap and gap - 1 ms after others, and copies in and across partitions', () => {
    const all = records.flat().map((rec) => JSON.parse(rec.value!.toString()) as Event);
    const copies = all.length - new Set(all.map((e) => e.id)).size;
    expect(copies, rerun).toBeGreaterThan(50);
    const across = deduped(records, 'partition').flat().length - deduped(records, 'log').flat().length;
    expect(across, rerun).toBeGreaterThan(10);
    expect(batchRows.length, rerun).toBeGreaterThan(100);
  });

  it('DuckDB partial sessions (dedup over the log) equal the oracle per partition', () => {
    const problems = compare('batch', groupRows(batchRows, true), oracle(deduped(records, 'log'), metrics, true), metrics);
    expect(problems, `${rerun}\n${text}`).toEqual([]);
  });

  it('speed partial sessions (dedup per partition) equal the oracle per partition', () => {
    const rows = speedPartials(records, defs).map(asGot);
    const problems = compare('speed', groupRows(rows, true), oracle(deduped(records, 'partition'), metrics, true), metrics);
    expect(problems, `${rerun}\n${text}`).toEqual([]);
  });

  it('fed the log first copies, the speed partials equal DuckDB partials row for row (misplaced counts included)', () => {
    const speed = speedPartials(deduped(records, 'log'), defs).map(asGot);
    const key = (x: Got & { metric: string; key: string; partition: number }) => `${x.metric}|${x.key}|${x.partition}|${x.start}`;
    const batch = new Map(batchRows.map((b) => [key(b), b]));
    const problems: string[] = [];
    expect(speed.length, rerun).toBe(batchRows.length);
    for (const s of speed) {
      const b = batch.get(key(s));
      if (
        !b ||
        b.end !== s.end ||
        b.count !== s.count ||
        !closeTo(b.sum, s.sum) ||
        b.min !== s.min ||
        b.max !== s.max ||
        b.misplaced !== s.misplaced ||
        !sameRegisters(b.distinctSketch, s.distinctSketch)
      )
        problems.push(`${key(s)}: speed ${JSON.stringify({ ...s, distinctSketch: undefined })}, batch ${JSON.stringify(b ?? null)}`);
    }
    expect(problems.slice(0, 5), `${rerun}\n${text}`).toEqual([]);
    // Misplaced events are counted from the id's home partition, as for windows.
    const misplaced = deduped(records, 'log')
      .flat()
      .filter((rec) => idHash(Buffer.from((JSON.parse(rec.value!.toString()) as Event).id)) % PARTITIONS !== rec.partition);
    expect(misplaced.length, rerun).toBeGreaterThan(0);
  });

  it('either engine`s partials chained by sessionRule.ts are the oracle`s true sessions; so is serving`s merge', () => {
    const want = oracle(deduped(records, 'log'), metrics, false);
    expect(compare('batch merged', merged(batchRows, metrics), want, metrics), rerun).toEqual([]);
    const speed = speedPartials(deduped(records, 'log'), defs);
    expect(compare('speed merged', merged(speed.map(asGot), metrics), want, metrics), rerun).toEqual([]);
    // Serving: the speed view alone (no batch run), and with the batch run (cut: the log's end).
    const cut = records.map((rs) => (rs.at(-1)?.offset ?? -1) + 1);
    const sourced = (rows: (Got & { metric: string; key: string; partition: number })[], source: 'batch' | 'speed', through: number[]) =>
      rows.map((x) => ({ ...x, source, throughOffset: through[x.partition]!, processingTime: 0 }));
    for (const [label, rows, cutOf] of [
      ['speed view alone', sourced(speed.map(asGot), 'speed', cut), () => 0],
      [
        'speed view and batch run',
        [...sourced(speed.map(asGot), 'speed', cut), ...sourced(batchRows, 'batch', cut)],
        (p: number) => cut[p]!,
      ],
    ] as [string, (SourcedSessionRow & { metric: string; key: string })[], (p: number) => number][]) {
      const got = new Map<string, Got[]>();
      for (const [id, list] of groupRows(rows, false))
        got.set(id, combineSessionRows(list, cutOf, metrics.find((m) => m.name === id.split('|')[0])!.gapMs));
      expect(compare(label, got, want, metrics), rerun).toEqual([]);
      if (label === 'speed view and batch run')
        expect([...got.values()].flat().every((s) => (s as { source?: string }).source === 'batch')).toBe(true);
    }
  });

  it('with a real watermark, checkpoints and crashes at generated points, the speed view is exactly an uninterrupted run`s', () => {
    const semantics: SpeedSemantics = { outOfOrdernessMs: 20_000, dedupHorizonMs: 1e13 };
    let restores = 0;
    let drops = 0;
    let tombstoned = 0;
    const lateDefs = parseMetricDefinitions(text.replaceAll('allowedLateness: 400d', 'allowedLateness: 2h'), 'late.yaml');
    for (const [p, rs] of records.entries()) {
      const pr = seededRandom(SEED * 31 + p);
      const captureAt = new Set(rs.filter(() => pr() < 0.05).map((rec) => rec.offset));
      const crashAt = new Set(rs.filter(() => pr() < 0.01).map((rec) => rec.offset));
      const run = (crashes: boolean) => {
        const view = new Map<string, string>();
        let state = new PartitionState(p, lateDefs.metrics, semantics, { homePartitions: PARTITIONS });
        let chain: SnapshotContent[] = [];
        const header = (kind: 'full' | 'delta'): SnapshotHeader => ({
          ...state.meta(),
          format: 4,
          kind,
          base: null,
          chainLength: 1,
          chainRows: 0,
          metricsFingerprint: 'f',
          semantics,
        });
        const checkpoint = () => {
          const { rows, changedWindows, tombstones } = state.captureChanges();
          const added = state.dedup.takeAdded();
          for (const row of rows) view.set(viewRowKey(row), JSON.stringify(row));
          for (const k of tombstones) view.delete(k);
          tombstoned += tombstones.length;
          // A full snapshot every fourth checkpoint, deltas between: through their bytes.
          const full = chain.length === 0 || chain.length >= 4;
          const snap = full
            ? { header: header('full'), windows: state.allWindows(), dedup: state.dedup.entries() }
            : { header: header('delta'), windows: changedWindows, dedup: added };
          const decoded = decodeSnapshot(encodeSnapshot(snap), 'test');
          chain = full ? [decoded] : [...chain, decoded];
        };
        let i = 0;
        while (i < rs.length) {
          const rec = rs[i]!;
          state.apply(rec);
          if (captureAt.has(rec.offset)) checkpoint();
          if (crashes && crashAt.has(rec.offset) && chain.length > 0) {
            crashAt.delete(rec.offset);
            restores++;
            // The process dies: what was not checkpointed is lost; the next one restores the chain.
            state = restoreState(p, lateDefs.metrics, semantics, { homePartitions: PARTITIONS }, chain);
            i = rs.findIndex((x) => x.offset >= state.position);
            if (i < 0) break;
            continue;
          }
          i++;
        }
        checkpoint();
        return { view, state };
      };
      const whole = run(false);
      const crashed = run(true);
      expect(crashed.view, `${rerun} (partition ${p})`).toEqual(whole.view);
      expect(crashed.state.counters, rerun).toEqual(whole.state.counters);
      // The view holds exactly the state's sessions (open and closed), no stale row of a moved or merged session.
      const spans = (s: PartitionState) =>
        s
          .allWindows()
          .filter((w) => w.slot.endsWith('/session'))
          .map((w) => `${w.slot.split('/')[0]}|${w.key}|${w.windowStart}|${w.windowEnd}`)
          .sort();
      const viewed = [...whole.view.values()]
        .map((t) => JSON.parse(t) as ViewRow)
        .filter((row) => row.granularity === 'session')
        .map((row) => `${row.metric}|${row.key}|${row.windowStart}|${row.windowEnd}`)
        .sort();
      expect(viewed, rerun).toEqual(spans(whole.state));
      // Late drops happened (the test exercises them); every matching event is counted or dropped.
      const dropped = Object.entries(whole.state.counters.droppedLate).filter(([slot]) => slot.endsWith('/session'));
      const counted = [...whole.view.values()].map((t) => JSON.parse(t) as ViewRow).filter((row) => row.granularity === 'session');
      const matching = oracle(deduped([rs], 'partition'), metrics, true);
      const total = [...matching.values()].flat().reduce((n, s) => n + s.count, 0);
      expect(counted.reduce((n, row) => n + row.count, 0) + dropped.reduce((n, [, d]) => n + d, 0), rerun).toBe(total);
      drops += dropped.reduce((n, [, d]) => n + d, 0);
    }
    // The run exercised what it claims: crashes restored, late events dropped, rows of moved or merged sessions deleted.
    expect({ crashes: restores > 2, drops: drops > 0, tombstoned: tombstoned > 0 }, rerun).toEqual({
      crashes: true,
      drops: true,
      tombstoned: true,
    });
  });
});
