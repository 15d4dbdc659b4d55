/**
 * Batch views are exact: generated events with duplicates, out-of-order and very late events
 * (plus hand-made edge cases and records no validator would accept) go through the real broker,
 * the lake writer and the DuckDB recompute; every view row must equal an oracle computed here
 * with plain code from the records read back from the topic. Also checks the lake itself (every
 * valid record once, readable by an independent Parquet reader), the dead letters, the run's cut
 * and stamps, and that serving-style reads during a second run only ever see a complete run.
 */
import { join } from 'node:path';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DuckDBInstance } from '@duckdb/node-api';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog, LogRecord } from '../../services/log/eventLog.ts';
import { deadLetterTopic } from '../../services/log/topics.ts';
import { loadMetricDefinitions } from '../../services/metrics/definitions.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { logger } from '../../services/observability/logger.ts';
import { currentBatchRun, localStateOptions } from '../../test/sharedState.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { runBatchCycle } from '../batchCycle.ts';
import {
  REPO_ROOT,
  closeTo,
  createTopic,
  kafkaLog,
  oracleViews,
  produceLines,
  readLakeWithDuckDb,
  readLakeWithHyparquet,
  testLake,
  readSnapshotRows,
  readTopic,
  sketchRegisters,
  type OracleInput,
} from './batchTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261122);
const quiet = logger.child({}, { level: 'warn' });

function edgeCases(start: number): string[] {
  const t = (ms: number) => new Date(start + ms).toISOString();
  return [
    // cost as a string: counts, but is not a number for sum/min/max
    JSON.stringify({ id: 'edge-1', type: 'click', ts: t(1000), campaign_id: 'c1', ad_id: 'c1-a1', user_id: 'u1', cost: '1.5' }),
    // a numeric key: its canonical text is the digits
    JSON.stringify({ id: 'edge-2', type: 'impression', ts: t(2000), campaign_id: 7, ad_id: 'c7-a1', user_id: 'u2' }),
    // no ad_id: not in clicks_by_ad, still in spend_by_campaign
    JSON.stringify({ id: 'edge-3', type: 'click', ts: t(3000), campaign_id: 'c2', user_id: 'u3', cost: 2.25 }),
    // the same id again with another payload and time: the first occurrence wins
    JSON.stringify({ id: 'edge-3', type: 'click', ts: t(9_000_000), campaign_id: 'c9', ad_id: 'c9-a9', user_id: 'u9', cost: 99 }),
    // epoch-millisecond event time, one day late
    JSON.stringify({
      id: 'edge-4',
      type: 'conversion',
      ts: start - 86_400_000,
      campaign_id: 'c3',
      ad_id: 'c3-a1',
      user_id: 'u4',
      cost: 10,
    }),
    // an impression without user_id, alone in its window: the row carries an empty sketch
    JSON.stringify({ id: 'edge-5', type: 'impression', ts: start + 40 * 86_400_000, campaign_id: 'c-lonely', ad_id: 'x' }),
    // one campaign with > 1024 distinct users per partition and hour: dense sketches
    ...Array.from({ length: 4500 }, (_, i) =>
      JSON.stringify({
        id: `dense-${i}`,
        type: 'impression',
        ts: t(i * 100),
        campaign_id: 'c-dense',
        ad_id: 'c-dense-a',
        user_id: `ud-${i}`,
      }),
    ),
  ];
}

const INVALID = ['this is not json', JSON.stringify({ id: 'no-type', ts: 1 })];

describe('batch views are exact against an independent oracle', () => {
  const dir = tempDir('lk-batch-exact-');
  const topic = uniqueName('batch-exact');
  const start = Date.UTC(2026, 0, 1, 1, 0);
  let log: EventLog;
  let records: LogRecord[][];
  let firstRunId: string;
  let lake: LakeHandle;
  const metrics = loadMetricDefinitions(join(REPO_ROOT, 'metrics.yaml'));
  const cycle = () =>
    runBatchCycle({
      log,
      topic,
      groupId: `${topic}-batch`,
      ...localStateOptions(dir.path),
      lake,
      version: 'v1',
      metrics,
      rollBytes: 256 * 1024,
      rollIntervalMs: 60_000,
      logger: quiet,
    });

  beforeAll(async () => {
    log = kafkaLog();
    lake = await testLake(dir.path, topic);
    await createTopic(log, topic, 3);
    const lines = [
      ...generateEventLines({
        seed: SEED,
        count: 6000,
        startTime: start,
        eventsPerSecond: 20,
        duplicateRate: 0.1,
        lateRate: 0.05,
        lateMinMs: 2 * 3_600_000,
        lateMaxMs: 26 * 3_600_000,
      }),
      ...edgeCases(start),
    ];
    await produceLines(log, topic, lines);
    const producer = await log.producer();
    await producer.send(
      topic,
      INVALID.map((value, i) => ({ key: `bad-${i}`, value })),
    );
    await producer.close();
    await cycle();
    firstRunId = (await currentBatchRun(dir.path, 'v1'))!.manifest.runId;
    records = await readTopic(log, topic);
  });

  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  const validInputs = (): OracleInput[] =>
    records
      .flat()
      .flatMap((r) =>
        INVALID.includes(r.value!.toString()) ? [] : [{ partition: r.partition, offset: r.offset, line: r.value!.toString() }],
      );

  it('the lake holds every readable record exactly once (the invalid ones with NULL typed columns), readable by DuckDB and by hyparquet', async () => {
    // The readable invalid record (no type) is kept: a version with another mapping may read it.
    const readable = records.flat().filter((r) => r.value!.toString() === INVALID[1]);
    expect(readable).toHaveLength(1);
    const expected = [...validInputs(), ...readable.map((r) => ({ partition: r.partition, offset: r.offset, line: r.value!.toString() }))]
      .map((i) => `${i.partition}:${i.offset}:${i.line}`)
      .sort();
    const duck = await readLakeWithDuckDb(lake);
    const hyper = await readLakeWithHyparquet(lake);
    const asKeys = (rows: { kafka_partition: number; kafka_offset: number; raw: string }[]) =>
      rows.map((r) => `${r.kafka_partition}:${r.kafka_offset}:${r.raw}`).sort();
    expect(asKeys(duck)).toEqual(expected);
    expect(asKeys(hyper)).toEqual(expected);
    // typed columns agree with the raw JSON and the log
    const byPos = new Map(records.flat().map((r) => [`${r.partition}:${r.offset}`, r]));
    for (const row of hyper) {
      if (row.raw === INVALID[1]) {
        expect([row.id, row.type, row.ts_ms]).toEqual([null, null, null]);
        continue;
      }
      const e = JSON.parse(row.raw) as { id: string; type: string; ts: string | number };
      expect(row.id).toBe(e.id);
      expect(row.type).toBe(e.type);
      expect(row.ts_ms).toBe(typeof e.ts === 'number' ? e.ts : Date.parse(e.ts));
      expect(row.kafka_timestamp).toBe(byPos.get(`${row.kafka_partition}:${row.kafka_offset}`)!.timestamp);
    }
  });

  it('invalid records go to the dead-letter topic with their reason', async () => {
    const letters = (await readTopic(log, deadLetterTopic(topic))).flat();
    expect(letters.map((l) => l.value!.toString()).sort()).toEqual([...INVALID].sort());
    expect(letters.map((l) => l.headers['lk.reason']).sort()).toEqual(['invalid_json', 'missing_field']);
  });

  it('every view row equals the oracle (count, sum, min, max, raw count, distinct registers, cut stamps)', async () => {
    const current = (await currentBatchRun(dir.path, 'v1'))!;
    const m = current.manifest;
    const ends = records.map((rs) => (rs.length === 0 ? 0 : rs[rs.length - 1]!.offset + 1));
    expect(m.cut).toEqual(ends);
    expect(m.processingTimes).toEqual(records.map((rs) => (rs.length === 0 ? 0 : rs[rs.length - 1]!.timestamp)));
    const oracle = oracleViews(validInputs());
    const rows = await readSnapshotRows(current.rowsPath!);
    expect(rows.length).toBe(m.rows);
    const actual = new Map(rows.map((r) => [`${r.metric}|${r.granularity}|${r.key}|${r.window_start}|${r.partition}`, r]));
    expect([...actual.keys()].sort()).toEqual([...oracle.keys()].sort());
    const mismatches: string[] = [];
    let denseSketches = 0;
    for (const [key, want] of oracle) {
      const got = actual.get(key)!;
      const ok =
        got.count === want.count &&
        got.raw_count === want.rawCount &&
        closeTo(got.sum, want.sum) &&
        got.min === want.min &&
        got.max === want.max &&
        got.through_offset === m.cut[got.partition] &&
        got.processing_time === m.processingTimes[got.partition];
      if (!ok)
        mismatches.push(`${key}: got ${JSON.stringify(got)} want ${JSON.stringify({ ...want, distinctValues: want.distinctValues.size })}`);
      if (got.metric === 'impressions_by_campaign') {
        if (Buffer.from(got.distinct_sketch!, 'base64')[0] === 2) denseSketches++;
        const speedSide = new HyperLogLog();
        for (const v of want.distinctValues) speedSide.add(v);
        if (Buffer.compare(Buffer.from(sketchRegisters(got.distinct_sketch!)), Buffer.from(sketchRegisters(speedSide.toBase64()))) !== 0) {
          mismatches.push(`${key}: sketch registers differ from the speed-side HyperLogLog`);
        }
      } else if (got.distinct_sketch !== null) {
        mismatches.push(`${key}: unexpected sketch`);
      }
    }
    expect(mismatches, `seed ${SEED}`).toEqual([]);
    expect(denseSketches).toBeGreaterThan(0);
    expect(
      actual.get(
        `impressions_by_campaign|day|c-lonely|${Math.floor((start + 40 * 86_400_000) / 86_400_000) * 86_400_000}|${records.findIndex((rs) => rs.some((r) => r.value!.toString().includes('edge-5')))}`,
      )?.distinct_sketch,
    ).toBe(new HyperLogLog().toBase64());
    expect(m.rawEvents).toBe(validInputs().length);
    expect(m.uniqueEvents).toBe(new Set(validInputs().map((i) => (JSON.parse(i.line) as { id: string }).id)).size);
  });

  it('reads during the next run always see one complete run, then the new one', async () => {
    const more = [...generateEventLines({ seed: SEED + 1, count: 3000, startTime: start, eventsPerSecond: 20 })];
    await produceLines(log, topic, more);
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const seen = new Map<string, Set<number>>();
    let running = true;
    const reader = (async () => {
      let reads = 0;
      while (running || reads < 3) {
        const current = (await currentBatchRun(dir.path, 'v1'))!;
        const r = await conn.runAndReadAll(`SELECT count(*)::DOUBLE, sum(count)::DOUBLE FROM read_parquet('${current.rowsPath}')`);
        const [n, total] = r.getRows()[0] as [number, number];
        expect(n).toBe(current.manifest.rows);
        const totals = seen.get(current.manifest.runId) ?? new Set();
        totals.add(total);
        seen.set(current.manifest.runId, totals);
        reads++;
      }
    })();
    try {
      await cycle();
    } finally {
      running = false;
      await reader;
      conn.closeSync();
      db.closeSync();
    }
    const latest = (await currentBatchRun(dir.path, 'v1'))!.manifest.runId;
    expect(latest).not.toBe(firstRunId);
    // every run observed was read with one stable total: never a mix, never a partial file
    for (const totals of seen.values()) expect(totals.size).toBe(1);
    expect([...seen.keys()].every((id) => id === firstRunId || id === latest)).toBe(true);
  });
});
