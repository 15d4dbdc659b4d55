/**
 * Percentiles over real HTTP, from both engines' sketches merged by serving: generated values
 * (six decades, negatives, zeros) go through the real broker; the batch layer recomputes the first
 * part of the log, then more events arrive and the speed layer's partition state reads partitions
 * 0 and 1 to their end (its rows win there: they saw more), while partition 2 is answered by the
 * batch rows alone. `total` and `series` must answer p50 ... p99 and percentile(p) within the
 * metric's relative accuracy of the exact value of rank floor(p (n - 1)) computed here from the
 * events that the merge rule says the answer holds; p outside [0, 1] is refused with its code.
 * `hopping` windows (their tumbling windows' sketches added at query time) answer the same fields:
 * within the accuracy of the exact values of each hopping window's events, and bucket for bucket
 * the quantile of the sketch those events build here (bucketOf per value), to the last bit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBatchCycle } from '../../batch/batchCycle.ts';
import { createTopic, kafkaLog, readTopic, testLake } from '../../batch/__tests__/batchTestKit.ts';
import type { EventLog, LogRecord } from '../../services/log/eventLog.ts';
import { seededRandom } from '../../services/ingest/generator.ts';
import { bucketBoundaries, bucketOf, sketchQuantile, type ValueSketch } from '../../services/metrics/ddsketch.ts';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import { logger } from '../../services/observability/logger.ts';
import type { ViewRow } from '../../services/views/viewRow.ts';
import { PartitionState } from '../../streaming/state/partitionState.ts';
import { eventually, tempDir, uniqueName } from '../helpers.ts';
import { localStateOptions } from '../sharedState.ts';
import { publishSpeedRows } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { gql, gqlData, startTestServer, type TestServer } from '../../serving/__tests__/fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/percentilesOverHttp.spec.ts`;
const START = Date.UTC(2026, 0, 7, 10, 0);
const PARTITIONS = 3;
const ACCURACY = 0.02;
const DEFS = parseMetricDefinitions(`
metrics:
  - name: durations
    filter: { type: trip }
    key: city
    value: v
    percentiles: { relativeAccuracy: ${ACCURACY} }
    granularities: [minute, 5m]
    allowedLateness: 1h
`);

interface Event {
  id: string;
  type: string;
  ts: number;
  city: string;
  v?: number;
}

function events(r: () => number, from: number, n: number, t0: number): Event[] {
  return Array.from({ length: n }, (_, i) => {
    const e: Event = { id: `e${from + i}`, type: 'trip', ts: t0 + Math.floor(r() * 20 * 60_000), city: `c${Math.floor(r() * 3)}` };
    const x = r();
    if (x < 0.9) e.v = ((x < 0.1 ? -1 : 1) * Math.round(10 ** (r() * 6 - 2) * 1000)) / 1000;
    else if (x < 0.95) e.v = 0;
    return e;
  });
}

/** The exact p-quantile as the sketch defines its rank: the value of rank floor(p (n - 1)), ascending. */
function exact(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(p * (sorted.length - 1))]!;
}

function within(got: number, want: number): boolean {
  return Math.abs(got - want) <= ACCURACY * Math.abs(want) * (1 + 1e-12);
}

describe('percentiles over HTTP: merged batch and speed sketches within the stated accuracy', () => {
  const dir = tempDir('lk-percentiles-');
  const topic = uniqueName('percentiles');
  const version = uniqueName('pv')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-20);
  const r = seededRandom(SEED);
  let log: EventLog;
  let server: TestServer;
  /** The events the merged answers hold: partitions 0 and 1 whole (speed), partition 2's first part (batch). */
  let answered: Event[];

  beforeAll(async () => {
    log = kafkaLog();
    const lake = await testLake(dir.path, topic);
    await createTopic(log, topic, PARTITIONS);
    const send = async (es: Event[]) => {
      const producer = await log.producer();
      await producer.send(
        topic,
        es.map((e) => ({ key: e.id, value: JSON.stringify(e) })),
      );
      await producer.close();
    };
    await send(events(r, 0, 1200, START));
    await runBatchCycle({
      log,
      topic,
      groupId: `${topic}-batch`,
      ...localStateOptions(dir.path),
      lake,
      version,
      metrics: DEFS,
      rollBytes: 1 << 20,
      rollIntervalMs: 60_000,
      logger: logger.child({}, { level: 'warn' }),
    });
    const cut: LogRecord[][] = await readTopic(log, topic);
    await send(events(r, 1200, 800, START + 5 * 60_000));
    const records: LogRecord[][] = await readTopic(log, topic);
    const rows: ViewRow[] = [];
    for (const p of [0, 1]) {
      const state = new PartitionState(p, DEFS.metrics, { outOfOrdernessMs: 1e13, dedupHorizonMs: 1e13 }, { homePartitions: PARTITIONS });
      for (const rec of records[p]!) state.apply(rec);
      rows.push(...state.captureChanges().rows);
    }
    expect(rows.some((row) => row.valueSketch)).toBe(true);
    await publishSpeedRows(log, version, rows, `${version}-tx`);
    const parse = (rs: LogRecord[]) => rs.map((rec) => JSON.parse(rec.value!.toString()) as Event);
    answered = [...parse(records[0]!), ...parse(records[1]!), ...parse(cut[2]!)];
    expect(records[2]!.length).toBeGreaterThan(cut[2]!.length);
    server = await startTestServer(dir.path, { defaultVersion: version }, { metrics: DEFS });
    await eventually(async () => {
      const d = await gqlData(server.url, '{ pipeline { serving { batchView { runId } } } }');
      return d.pipeline.serving.batchView?.runId ? true : undefined;
    }, 'batch run installed');
  }, 120_000);

  afterAll(async () => {
    await server?.close();
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  const FROM = new Date(START - 3_600_000).toISOString();
  const TO = new Date(START + 3_600_000).toISOString();

  it('total over all keys and series per key: p50, p90, p95, p99 and percentile(p) near the exact values', async () => {
    const values = answered.filter((e) => e.v !== undefined).map((e) => e.v!);
    // Counts first: the answer holds exactly the events the merge rule says (speed on 0 and 1, batch on 2).
    const counted = await eventually(async () => {
      const d = await gqlData(server.url, `{ total(metric: "durations", from: "${FROM}", to: "${TO}", granularity: "5m") { count } }`);
      return d.total.count === answered.length ? d : undefined;
    }, 'speed rows loaded');
    expect(counted.total.count).toBe(answered.length);
    const t = await gqlData(
      server.url,
      `{ total(metric: "durations", from: "${FROM}", to: "${TO}", granularity: MINUTE) { p50 p90 p95 p99 q0: percentile(p: 0) q1: percentile(p: 1) q10: percentile(p: 0.1) }
         metrics { name percentileAccuracy } }`,
    );
    expect(t.metrics[0].percentileAccuracy).toBe(ACCURACY);
    const asked: [string, number][] = [
      ['p50', 0.5],
      ['p90', 0.9],
      ['p95', 0.95],
      ['p99', 0.99],
      ['q0', 0],
      ['q1', 1],
      ['q10', 0.1],
    ];
    for (const [field, p] of asked)
      expect(within(t.total[field], exact(values, p)), `${field} ${t.total[field]} vs ${exact(values, p)} ${rerun}`).toBe(true);
    expect(exact(values, 0)).toBeLessThan(0);

    const s = await gqlData(
      server.url,
      `{ series(metric: "durations", key: "c1", granularity: "5m", from: "${FROM}", to: "${TO}") { windowStart count p50 p99 } }`,
    );
    expect(s.series.length).toBeGreaterThan(2);
    for (const w of s.series) {
      const start = Date.parse(w.windowStart);
      const inWindow = answered.filter((e) => e.city === 'c1' && e.ts >= start && e.ts < start + 300_000);
      expect(w.count).toBe(inWindow.length);
      const vs = inWindow.filter((e) => e.v !== undefined).map((e) => e.v!);
      for (const [field, p] of [
        ['p50', 0.5],
        ['p99', 0.99],
      ] as const)
        expect(within(w[field], exact(vs, p)), `${w.windowStart} ${field} ${w[field]} vs ${exact(vs, p)} ${rerun}`).toBe(true);
    }
  });

  it('hopping windows: p50 ... p99 and percentile(p) of each window within the accuracy, and equal to the quantiles of the sketch of its events', async () => {
    const table = bucketBoundaries(ACCURACY);
    const asked: [string, number][] = [
      ['p50', 0.5],
      ['p90', 0.9],
      ['p95', 0.95],
      ['p99', 0.99],
      ['q0', 0],
      ['q1', 1],
      ['q25', 0.25],
    ];
    let checked = 0;
    // 15 minutes every 5 (three 5m windows), 10 minutes every minute (ten minute windows).
    for (const [size, advance, stepMs] of [
      ['15m', '5m', 300_000],
      ['10m', 'MINUTE', 60_000],
    ] as const) {
      const sizeMs = Number(size.slice(0, -1)) * 60_000;
      for (const city of ['c0', 'c2']) {
        const d = await gqlData(
          server.url,
          `{ hopping(metric: "durations", key: "${city}", size: "${size}", advance: ${JSON.stringify(advance)}, from: "${FROM}", to: "${TO}") {
               windowStart windowEnd count windows p50 p90 p95 p99 q0: percentile(p: 0) q1: percentile(p: 1) q25: percentile(p: 0.25) } }`,
        );
        // The oracle's windows: every advance boundary in [FROM, TO) whose window holds events of the key.
        const mine = answered.filter((e) => e.city === city);
        const starts: number[] = [];
        for (let s = Date.parse(FROM); s < Date.parse(TO); s += stepMs)
          if (mine.some((e) => e.ts >= s && e.ts < s + sizeMs)) starts.push(s);
        expect(
          d.hopping.map((w: { windowStart: string }) => Date.parse(w.windowStart)),
          `${size}/${advance} ${city} ${rerun}`,
        ).toEqual(starts);
        for (const w of d.hopping) {
          const start = Date.parse(w.windowStart);
          expect(Date.parse(w.windowEnd)).toBe(start + sizeMs);
          const inWindow = mine.filter((e) => e.ts >= start && e.ts < start + sizeMs);
          expect(w.count).toBe(inWindow.length);
          const vs = inWindow.filter((e) => e.v !== undefined).map((e) => e.v!);
          const sketch: ValueSketch = new Map();
          for (const v of vs) sketch.set(bucketOf(v, table), (sketch.get(bucketOf(v, table)) ?? 0) + 1);
          for (const [field, p] of asked) {
            const where = `${size}/${advance} ${city} ${w.windowStart} ${field}`;
            if (vs.length === 0) {
              expect(w[field], where).toBeNull();
              continue;
            }
            expect(within(w[field], exact(vs, p)), `${where}: ${w[field]} vs exact ${exact(vs, p)} ${rerun}`).toBe(true);
            expect(w[field], `${where}: the merged sketch's bucket ${rerun}`).toBe(sketchQuantile(sketch, p, table));
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(100);
    console.log(`[percentiles] hopping: ${checked} percentiles within ${ACCURACY * 100} % and bucket-exact`);
  });

  it('a p outside [0, 1] is refused with INVALID_PERCENTILE', async () => {
    for (const p of [1.5, -0.1]) {
      const res = await gql(server.url, `{ total(metric: "durations", from: "${FROM}", to: "${TO}") { percentile(p: ${p}) } }`);
      expect(res.errors?.[0]?.extensions?.code, res.raw).toBe('INVALID_PERCENTILE');
      expect(res.errors?.[0]?.message).toMatch(/must be in \[0, 1\]/);
      const hop = await gql(
        server.url,
        `{ hopping(metric: "durations", key: "c1", size: "15m", advance: "5m", from: "${FROM}", to: "${TO}") { percentile(p: ${p}) } }`,
      );
      expect(hop.errors?.[0]?.extensions?.code, hop.raw).toBe('INVALID_PERCENTILE');
    }
  });
});
