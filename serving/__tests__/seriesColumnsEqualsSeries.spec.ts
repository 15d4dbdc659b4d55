/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; they are compared field by field. */
/**
 * `seriesColumns` is `series` in columns: over real HTTP, for every key of every metric and
 * granularity, element i of each column equals field f of series[i] (windowStart and
 * processingTime as epoch ms instead of ISO text), on real merged data: generated events, the
 * speed view on a real Kafka topic ahead of a real Parquet batch run (so both sources occur, and
 * provisional windows where speed rows counted misplaced events). Its argument validation and its
 * cost are series's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { granularityMs, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { batchRows, partitionedLog, publishBatchRun, publishSpeedRows, speedRows } from './fixtures/viewFixtures.ts';
import { METRICS, gql, gqlData, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 4242);
const START = Date.UTC(2026, 0, 1);
const FROM = new Date(START - 86_400_000).toISOString();
const TO = new Date(START + 86_400_000).toISOString();
const FIELDS = ['windowStart', 'count', 'sum', 'min', 'max', 'distinct', 'source', 'provisional', 'processingTime'] as const;

describe('seriesColumns equals series, element by element', () => {
  const dir = tempDir('lk-serve-columns-');
  const log = partitionedLog(
    {
      seed: SEED,
      count: 3000,
      startTime: START,
      eventsPerSecond: 2,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 5_000,
      lateRate: 0.02,
      lateMinMs: 15 * 60_000,
      lateMaxMs: 25 * 60_000,
      campaigns: 6,
      adsPerCampaign: 3,
      users: 200,
    },
    3,
  );
  const version = uniqueName('cols')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-24);
  let server: TestServer;

  beforeAll(async () => {
    const publisher = testLog('lk-serve-columns-publisher');
    try {
      // The speed job read everything; the batch run stopped at 60 %: windows from both views.
      const speed = speedRows(log, METRICS.metrics, log.ends).rows;
      // Some speed rows counted misplaced events: their windows are provisional.
      speed.forEach((r, i) => {
        if (i % 7 === 0) r.misplaced = 1;
      });
      await publishSpeedRows(publisher, version, speed, `${version}-tx`);
      const cut = log.ends.map((e) => Math.floor(e * 0.6));
      await publishBatchRun(dir.path, version, 'run-1', log, batchRows(log, METRICS.metrics, cut), cut);
    } finally {
      await publisher.close();
    }
    // Every key's answers in one request: many root fields, compared with the oracle.
    server = await startTestServer(dir.path, { defaultVersion: version, maxCost: 100_000_000, maxRootFields: 1000, maxAliases: 1000 });
    await eventually(() => (server.handle.ready() && server.handle.registry.get(version)?.view.batch ? true : undefined), 'serving ready');
  });

  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  function keysOf(def: MetricDefinition): string[] {
    const c = compileMetric(def);
    return [...new Set(log.events.filter((e) => c.matches(e.values)).map((e) => c.keyOf(e.values)!))].sort();
  }

  it('for every key of every metric and granularity', async () => {
    const seen = { BATCH: 0, SPEED: 0, provisional: 0, windows: 0 };
    for (const def of METRICS.metrics) {
      for (const g of def.granularities) {
        const keys = keysOf(def);
        const args = (k: string) =>
          `metric: "${def.name}", key: ${JSON.stringify(k)}, granularity: ${g.toUpperCase()}, from: "${FROM}", to: "${TO}"`;
        const query = `{ ${keys
          .map(
            (k, i) =>
              `s${i}: series(${args(k)}) { key version windowStart count sum min max distinct source provisional processingTime batchRunId }
               c${i}: seriesColumns(${args(k)}) { key version metric granularity from to batchRunId windows windowMs windowBase windowIndex latestProcessingTime ${FIELDS.join(' ')} }`,
          )
          .join('\n')} }`;
        const d = await gqlData<Record<string, any>>(server.url, query);
        keys.forEach((key, i) => {
          const series: any[] = d[`s${i}`];
          const columns = d[`c${i}`];
          const where = `${def.name}/${g}/${key} (seed ${SEED})`;
          expect(series.length, where).toBeGreaterThan(0);
          expect(columns.key).toBe(key);
          expect(columns.version).toBe(version);
          expect(columns.metric).toBe(def.name);
          expect(columns.granularity).toBe(g.toUpperCase());
          expect([columns.from, columns.to]).toEqual([FROM, TO]);
          expect(columns.batchRunId).toBe('run-1');
          for (const f of [...FIELDS, 'windowIndex']) expect(columns[f], `${where} ${f}`).toHaveLength(series.length);
          expect(columns.windows).toBe(series.length);
          expect(columns.windowMs).toBe(granularityMs(g));
          // The first window boundary at or after `from`.
          expect(columns.windowBase).toBe(Math.ceil(Date.parse(FROM) / granularityMs(g)) * granularityMs(g));
          const latest = Math.max(...series.map((w) => Date.parse(w.processingTime)));
          expect(Date.parse(columns.latestProcessingTime)).toBe(latest);
          series.forEach((w, j) => {
            const at = `${where} window ${j}`;
            expect(columns.windowStart[j], at).toBe(Date.parse(w.windowStart));
            expect(columns.windowBase + columns.windowIndex[j] * columns.windowMs, at).toBe(Date.parse(w.windowStart));
            expect(Number.isInteger(columns.windowIndex[j]), at).toBe(true);
            expect(columns.processingTime[j], at).toBe(Date.parse(w.processingTime));
            for (const f of ['count', 'sum', 'min', 'max', 'distinct', 'source', 'provisional'] as const)
              expect(columns[f][j], `${at} ${f}`).toStrictEqual(w[f]);
            seen[w.source as 'BATCH' | 'SPEED']++;
            if (w.provisional) seen.provisional++;
            seen.windows++;
          });
        });
      }
    }
    // The comparison is only worth something if the data has every kind of window.
    expect(seen.BATCH, 'batch windows').toBeGreaterThan(50);
    expect(seen.SPEED, 'speed windows').toBeGreaterThan(50);
    expect(seen.provisional, 'provisional windows').toBeGreaterThan(5);
  });

  it('an empty range and a key without windows answer empty columns', async () => {
    const d = await gqlData<any>(
      server.url,
      `{ a: seriesColumns(metric: "clicks_by_ad", key: "nope", granularity: MINUTE, from: "${FROM}", to: "${TO}") { windowStart count sum source provisional batchRunId windows latestProcessingTime }
         b: seriesColumns(metric: "clicks_by_ad", key: "${keysOf(METRICS.metrics[1]!)[0]}", granularity: MINUTE, from: "${FROM}", to: "${FROM}") { windowStart count } }`,
    );
    expect(d.a).toEqual({
      windowStart: [],
      count: [],
      sum: [],
      source: [],
      provisional: [],
      batchRunId: 'run-1',
      windows: 0,
      latestProcessingTime: null,
    });
    expect(d.b).toEqual({ windowStart: [], count: [] });
  });

  it('windowIndex counts from the first window boundary at or after an unaligned `from`', async () => {
    const key = keysOf(METRICS.metrics[0]!)[0]!;
    const from = new Date(START + 90_000 + 1).toISOString(); // 00:01:30.001: the first window starts at 00:02
    const d = await gqlData<any>(
      server.url,
      `{ seriesColumns(metric: "${METRICS.metrics[0]!.name}", key: "${key}", granularity: MINUTE, from: "${from}", to: "${TO}") { windowBase windowIndex windowStart } }`,
    );
    const c = d.seriesColumns;
    expect(c.windowBase).toBe(START + 120_000);
    expect(c.windowStart.length).toBeGreaterThan(0);
    c.windowStart.forEach((start: number, i: number) => expect(c.windowBase + c.windowIndex[i] * 60_000).toBe(start));
    expect(c.windowIndex[0]).toBeGreaterThanOrEqual(0);
  });

  it('refuses what series refuses, with the same codes and messages', async () => {
    const bad = [
      `metric: "nope", key: "k", granularity: MINUTE, from: "${FROM}", to: "${TO}"`,
      `metric: "clicks_by_ad", key: "k", granularity: DAY, from: "${FROM}", to: "${TO}"`,
      `metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "${TO}", to: "${FROM}"`,
      `metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-03-01T00:00:00Z"`,
      `metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "${FROM}", to: "${TO}", version: "Not A Version"`,
    ];
    const codes: string[] = [];
    for (const args of bad) {
      const s = await gql(server.url, `{ series(${args}) { count } }`);
      const c = await gql(server.url, `{ seriesColumns(${args}) { count } }`);
      expect(c.errors?.[0]?.extensions?.code, args).toBe(s.errors?.[0]?.extensions?.code);
      expect(c.errors?.[0]?.message, args).toBe(s.errors?.[0]?.message);
      codes.push(String(c.errors?.[0]?.extensions?.code));
    }
    expect(codes).toEqual(['UNKNOWN_METRIC', 'UNSUPPORTED_GRANULARITY', 'INVALID_RANGE', 'RANGE_TOO_LARGE', 'INVALID_VERSION']);
  });

  it('costs what series costs: each column counts its windows', async () => {
    const strict = await startTestServer(dir.path, { defaultVersion: version, maxCost: 10_000 });
    try {
      const day = `metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "${FROM}", to: "${new Date(START).toISOString()}"`;
      // A resolver call (100) + 1,440 x 5 = 7,300 for both; 100 + 1,440 x 7 = 10,180 is over the
      // limit for both; each also costs its text, a unit per 10 bytes.
      for (const field of ['series', 'seriesColumns']) {
        expect((await gql(strict.url, `{ ${field}(${day}) { windowStart count sum source provisional } }`)).errors).toBeUndefined();
        const text = `{ ${field}(${day}) { windowStart count sum min max source provisional } }`;
        const over = await gql(strict.url, text);
        expect(over.status).toBe(400);
        expect(over.errors?.[0]?.extensions?.code).toBe('QUERY_TOO_COSTLY');
        expect(over.errors?.[0]?.message).toMatch(`query cost ${100 + 1440 * 7 + Math.ceil(Buffer.byteLength(text) / 10)} exceeds`);
      }
    } finally {
      await strict.close();
    }
  });
});
