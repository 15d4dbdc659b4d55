/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * series / topKeys / total over real HTTP equal an oracle computed from the events alone, in the
 * merge rule's hard cases: before any batch run, after it, with the speed job paused behind the
 * batch cut, and with the speed job ahead of the cut after dropping late events (windows whose
 * late events only the batch counted, windows present in only one view).
 *
 * The oracle states what the merged answer must be, independently of how serving merges:
 *   the events of each partition's longer prefix (max(batch cut, speed position)), deduplicated,
 *   minus the events the speed job dropped as late that the batch run has not reached yet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { granularityMs, parseMetricDefinitions, type Granularity, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { splitCompositeKey } from '../../services/metrics/fieldSemantics.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import {
  batchRows,
  expectedEvents,
  hllOf,
  oracleWindowStart,
  oracleWindows,
  partitionedLog,
  publishBatchRun,
  publishSpeedRows,
  speedRows,
  type PartitionedLog,
} from './fixtures/viewFixtures.ts';
import { gql, gqlData, startTestServer, type TestServer } from './fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261122);
const START = Date.UTC(2026, 0, 1);
const NAMED = ['minute', 'hour', 'day'];
/** The API's name of a granularity: MINUTE, HOUR, DAY, or the duration of any other size. */
const G_NAME = (g: Granularity) => (NAMED.includes(g) ? g.toUpperCase() : g);
/** As a literal in a query: the bare enum-like name (queries of before), or a string. */
const G_LITERAL = (g: Granularity) => (NAMED.includes(g) ? g.toUpperCase() : JSON.stringify(g));
/** The range asked: a day either side of START, from the start of the window holding START - 1 day (a 7d one starts on a Monday). */
const rangeOf = (g: Granularity) => ({
  FROM: new Date(oracleWindowStart(START - 86_400_000, granularityMs(g))).toISOString(),
  TO: new Date(START + 86_400_000).toISOString(),
});

/**
 * The repo's metrics, plus a metric of the sizes beside minute, hour and day: 5m, 15m, 6h, 2d
 * and a Monday week (the same clicks as clicks_by_ad).
 */
const DEFS = parseMetricDefinitions(
  `${readFileSync(new URL('../../metrics.yaml', import.meta.url), 'utf8')}
  - name: clicks_by_ad_sized
    filter: { type: click }
    key: ad_id
    value: cost
    distinct: user_id
    granularities: [5m, 15m, 6h, 2d, 7d]
    allowedLateness: 10m
  - name: spend_by_campaign_and_ad
    filter: { type: { in: [click, conversion] }, cost: { gte: 0.5 }, user_id: { exists: true } }
    key: [campaign_id, ad_id]
    value: cost
    granularities: [hour]
    allowedLateness: 10m
`,
);

function keysOf(log: PartitionedLog, def: MetricDefinition): string[] {
  const c = compileMetric(def);
  return [...new Set(log.events.filter((e) => c.matches(e.values)).map((e) => c.keyOf(e.values)!))].sort();
}

const WINDOW_FIELDS =
  'key keyParts windowStart windowEnd count sum avg min max distinct source processingTime partitions { partition source processingTime }';

/** How a query names a key: by its parts for a composite key (as a client does), else by its text. */
const keyArg = (def: MetricDefinition, k: string) =>
  def.keyParts ? `keyParts: ${JSON.stringify(splitCompositeKey(k))}` : `key: ${JSON.stringify(k)}`;

interface Scenario {
  name: string;
  version: string;
  cut: number[] | null;
  speedThrough: number[];
  expectSource?: 'BATCH' | 'SPEED';
}

async function checkScenario(server: TestServer, log: PartitionedLog, s: Scenario): Promise<void> {
  for (const def of DEFS.metrics) {
    for (const g of def.granularities) {
      const { FROM, TO } = rangeOf(g);
      const events = expectedEvents(log, def, g, s.cut, s.speedThrough);
      const keys = keysOf(log, def);
      // series: every key in one request (aliases), compared window by window.
      const query = `query { ${keys.map((k, i) => `k${i}: series(metric: "${def.name}", ${keyArg(def, k)}, granularity: ${G_LITERAL(g)}, from: "${FROM}", to: "${TO}", version: "${s.version}") { ${WINDOW_FIELDS} }`).join('\n')} }`;
      const data = await gqlData<Record<string, any[]>>(server.url, query);
      keys.forEach((key, i) => {
        const oracle = oracleWindows(events, def, g, key);
        const got = data[`k${i}`]!;
        const where = `${s.name} ${def.name}/${g}/${key} (seed ${SEED})`;
        expect(
          got.map((w) => Date.parse(w.windowStart)),
          where,
        ).toEqual([...oracle.keys()].sort((a, b) => a - b));
        for (const w of got) {
          const o = oracle.get(Date.parse(w.windowStart))!;
          expect(w.count, `${where} ${w.windowStart} count`).toBe(o.count);
          expect(w.min, where).toBe(o.min);
          expect(w.max, where).toBe(o.max);
          if (o.sum === null) expect([w.sum, w.avg], where).toEqual([null, null]);
          else {
            expect(w.sum, where).toBeCloseTo(o.sum, 6);
            expect(w.avg, where).toBeCloseTo(o.sum / o.count, 9);
          }
          expect(w.keyParts, where).toEqual(def.keyParts ? splitCompositeKey(key) : [key]);
          expect(w.distinct, where).toBe(o.distinct);
          expect(Date.parse(w.windowEnd) - Date.parse(w.windowStart)).toBe(granularityMs(g));
          // The reported source and stamp follow from the chosen partition rows.
          const anySpeed = w.partitions.some((p: any) => p.source === 'SPEED');
          expect(w.source, where).toBe(anySpeed ? 'SPEED' : 'BATCH');
          expect(Date.parse(w.processingTime)).toBe(Math.max(...w.partitions.map((p: any) => Date.parse(p.processingTime))));
          if (s.expectSource) expect(w.source, where).toBe(s.expectSource);
        }
      });

      // topKeys: ranked by count, ties by key; the whole ranking and a short one.
      const ranking = keys
        .map((key) => ({ key, count: [...oracleWindows(events, def, g, key).values()].reduce((a, w) => a + w.count, 0) }))
        .filter((k) => k.count > 0)
        .sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
      const top = await gqlData<{ all: any[]; five: any[] }>(
        server.url,
        `query($m: String!, $g: Granularity!, $v: String) { all: topKeys(metric: $m, granularity: $g, from: "${FROM}", to: "${TO}", limit: 1000, version: $v) { key count }
           five: topKeys(metric: $m, granularity: $g, from: "${FROM}", to: "${TO}", limit: 5, version: $v) { key count } }`,
        { m: def.name, g: G_NAME(g), v: s.version },
      );
      expect(top.all, `${s.name} topKeys ${def.name}/${g}`).toEqual(ranking);
      expect(top.five).toEqual(ranking.slice(0, 5));

      // total over all keys and over one key, at this granularity: distinct is the sketch of the union.
      const all = oracleWindows(events, def, g, null);
      const users = new Set<string>();
      for (const w of all.values()) for (const u of w.users) users.add(u);
      const oneKey = ranking[0]!.key;
      const t = await gqlData<{ all: any; one: any }>(
        server.url,
        `query($m: String!, $g: Granularity!, $v: String, $k: String) {
           all: total(metric: $m, from: "${FROM}", to: "${TO}", granularity: $g, version: $v) { count sum avg min max distinct windows granularity }
           one: total(metric: $m, key: $k, from: "${FROM}", to: "${TO}", granularity: $g, version: $v) { count distinct } }`,
        { m: def.name, g: G_NAME(g), v: s.version, k: oneKey },
      );
      const sumAll = [...all.values()].reduce((a, w) => a + w.count, 0);
      expect(t.all.count, `${s.name} total ${def.name}/${g}`).toBe(sumAll);
      expect(t.all.windows).toBe([...keys].reduce((a, k) => a + oracleWindows(events, def, g, k).size, 0));
      expect(t.all.granularity).toBe(G_NAME(g));
      if (def.distinct) expect(t.all.distinct).toBe(hllOf(users));
      else expect(t.all.distinct).toBeNull();
      if (def.value) {
        const values = [...all.values()].filter((w) => w.sum !== null);
        expect(t.all.sum).toBeCloseTo(
          values.reduce((a, w) => a + w.sum!, 0),
          6,
        );
        expect(t.all.avg).toBeCloseTo(t.all.sum / t.all.count, 9);
        expect(t.all.min).toBe(Math.min(...values.map((w) => w.min!)));
        expect(t.all.max).toBe(Math.max(...values.map((w) => w.max!)));
      }
      expect(t.one.count).toBe(ranking[0]!.count);
      if (def.distinct) {
        const keyUsers = new Set<string>();
        for (const w of oracleWindows(events, def, g, oneKey).values()) for (const u of w.users) keyUsers.add(u);
        expect(t.one.distinct).toBe(hllOf(keyUsers));
      }
    }
  }
}

describe('merged answers over HTTP equal the oracle', () => {
  const dir = tempDir('lk-serve-merge-');
  const log = partitionedLog(
    {
      seed: SEED,
      count: 4000,
      startTime: START,
      eventsPerSecond: 2,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 5_000,
      lateRate: 0.03,
      lateMinMs: 15 * 60_000,
      lateMaxMs: 25 * 60_000,
      campaigns: 8,
      adsPerCampaign: 4,
      users: 300,
    },
    3,
  );
  const ends = log.ends;
  const half = ends.map((e) => Math.floor(e / 2));
  const sixty = ends.map((e) => Math.floor(e * 0.6));
  const prefix = uniqueName('mq')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-20);
  const versions = { fresh: `${prefix}a`, paused: `${prefix}b`, ahead: `${prefix}c` };
  let server: TestServer;

  beforeAll(async () => {
    const publisher = (await import('./fixtures/testServer.ts')).testLog('lk-serve-test-publisher');
    try {
      const full = speedRows(log, DEFS.metrics, ends);
      // The data must exercise the hard cases, or the test proves nothing.
      expect(full.dropped.length, 'late events dropped by the speed job').toBeGreaterThan(10);
      expect(full.duplicates, 'duplicates').toBeGreaterThan(10);
      await publishSpeedRows(publisher, versions.fresh, full.rows, `${prefix}-tx-a`);
      await publishSpeedRows(publisher, versions.paused, speedRows(log, DEFS.metrics, half).rows, `${prefix}-tx-b`);
      await publishSpeedRows(publisher, versions.ahead, full.rows, `${prefix}-tx-c`);
      await publishBatchRun(dir.path, versions.paused, 'run-1', log, batchRows(log, DEFS.metrics, ends), ends);
      await publishBatchRun(dir.path, versions.ahead, 'run-1', log, batchRows(log, DEFS.metrics, sixty), sixty);
    } finally {
      await publisher.close();
    }
    // Every key's answers in one request: many root fields, compared with the oracle.
    server = await startTestServer(
      dir.path,
      {
        defaultVersion: versions.fresh,
        maxCost: 100_000_000,
        maxRootFields: 1000,
        maxAliases: 1000,
      },
      { metrics: DEFS },
    );
    await eventually(() => (server.handle.ready() ? true : undefined), 'serving ready');
  });

  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  it('before any batch run: the speed view alone (late events dropped)', async () => {
    await checkScenario(server, log, { name: 'speed only', version: versions.fresh, cut: null, speedThrough: ends, expectSource: 'SPEED' });
  });

  it('after the batch run: batch rows win ties and hold the late events the speed job dropped', async () => {
    await publishBatchRun(dir.path, versions.fresh, 'run-1', log, batchRows(log, DEFS.metrics, ends), ends);
    await eventually(async () => {
      const d = await gqlData(server.url, '{ pipeline { serving { batchView { runId } } } }');
      return d.pipeline.serving.batchView?.runId === 'run-1' ? true : undefined;
    }, 'batch run installed');
    await checkScenario(server, log, {
      name: 'after batch',
      version: versions.fresh,
      cut: ends,
      speedThrough: ends,
      expectSource: 'BATCH',
    });
  });

  it('speed job paused behind the batch cut: the batch view answers everything, windows only in batch included', async () => {
    await checkScenario(server, log, {
      name: 'speed paused',
      version: versions.paused,
      cut: ends,
      speedThrough: half,
      expectSource: 'BATCH',
    });
  });

  it('speed job ahead of the batch cut: fresh windows from speed, closed windows with late events from batch', async () => {
    await checkScenario(server, log, { name: 'speed ahead', version: versions.ahead, cut: sixty, speedThrough: ends });
    // Both sources occur, so the mixed case was really exercised.
    const { FROM, TO } = rangeOf('minute');
    const d = await gqlData(
      server.url,
      `{ series(metric: "impressions_by_campaign", key: "c1", granularity: MINUTE, from: "${FROM}", to: "${TO}", version: "${versions.ahead}") { source } }`,
    );
    const sources = new Set(d.series.map((w: any) => w.source));
    expect(sources).toEqual(new Set(['BATCH', 'SPEED']));
  });

  it('a size is asked by its duration ("60m" is HOUR, "5M" is no size); sizes the metric does not declare and unknown words are refused', async () => {
    const { FROM, TO } = rangeOf('hour');
    const ask = (g: string) =>
      gql(
        server.url,
        `query($g: Granularity!) { series(metric: "clicks_by_ad", key: "c1-a1", granularity: $g, from: "${FROM}", to: "${TO}") { granularity windowStart } }`,
        { g },
      );
    const hour = await ask('60m');
    expect(hour.errors).toBeUndefined();
    expect(new Set(hour.data!.series.map((w: any) => w.granularity))).toEqual(new Set(['HOUR']));
    const undeclared = await ask('5m');
    expect(undeclared.errors?.[0]?.extensions?.code).toBe('UNSUPPORTED_GRANULARITY');
    expect(undeclared.errors?.[0]?.message).toContain('has no 5m windows; it has MINUTE, HOUR');
    for (const bad of ['week', '5M', '0m', '400d']) {
      const r = await ask(bad);
      expect(r.errors?.[0]?.message, bad).toMatch(/Granularity/);
    }
    const literal = await gql(
      server.url,
      `{ series(metric: "clicks_by_ad", key: "c1-a1", granularity: WEEK, from: "${FROM}", to: "${TO}") { count } }`,
    );
    expect(literal.errors?.[0]?.message).toMatch(/Granularity/);
  });

  it('a composite key is named by its parts (topKeys answers them); a wrong number of parts or key and keyParts together are refused', async () => {
    const { FROM, TO } = rangeOf('hour');
    const top = await gqlData<{ topKeys: any[] }>(
      server.url,
      `{ topKeys(metric: "spend_by_campaign_and_ad", granularity: HOUR, from: "${FROM}", to: "${TO}", limit: 3) { key keyParts count sum avg } }`,
    );
    expect(top.topKeys.length).toBe(3);
    for (const t of top.topKeys) {
      expect(t.keyParts).toEqual(splitCompositeKey(t.key));
      expect(t.key).toBe(t.keyParts.join('|'));
      expect(t.avg).toBeCloseTo(t.sum / t.count, 9);
    }
    const ask = (args: string) =>
      gql(server.url, `{ series(metric: "spend_by_campaign_and_ad", ${args}, granularity: HOUR, from: "${FROM}", to: "${TO}") { count } }`);
    const byParts = await ask(`keyParts: ${JSON.stringify(top.topKeys[0].keyParts)}`);
    const byText = await ask(`key: ${JSON.stringify(top.topKeys[0].key)}`);
    expect(byParts.data).toEqual(byText.data);
    expect(byParts.data!.series.reduce((n: number, w: any) => n + w.count, 0)).toBe(top.topKeys[0].count);
    for (const [args, message] of [
      ['keyParts: ["c1"]', 'has a key of 2 parts (campaign_id, ad_id); keyParts has 1'],
      ['key: "c1|c1-a1", keyParts: ["c1", "c1-a1"]', 'give key or keyParts, not both'],
    ] as const) {
      const r = await ask(args);
      expect(r.errors?.[0]?.extensions?.code, args).toBe('INVALID_KEY');
      expect(r.errors?.[0]?.message).toContain(message);
    }
    const none = await gql(
      server.url,
      `{ series(metric: "spend_by_campaign_and_ad", granularity: HOUR, from: "${FROM}", to: "${TO}") { count } }`,
    );
    expect(none.errors?.[0]?.message).toBe('give key or keyParts (campaign_id, ad_id)');
  });

  it('hopping windows (1 h every 5 minutes, 30 minutes every 15) equal the oracle over the events of each hopping window, in every view', async () => {
    // After the second test: versions.fresh has its batch run (cut = ends) by now.
    const def = DEFS.metrics.find((m) => m.name === 'clicks_by_ad_sized')!;
    const keys = keysOf(log, def);
    for (const [version, cut, through] of [
      [versions.fresh, ends, ends],
      [versions.ahead, sixty, ends],
    ] as const) {
      for (const [size, advance, sizeMs] of [
        ['1h', '5m', 3_600_000],
        ['30m', '15m', 1_800_000],
      ] as const) {
        const { FROM, TO } = rangeOf(advance);
        const events = expectedEvents(log, def, advance, cut, through);
        const data = await gqlData<Record<string, any[]>>(
          server.url,
          `query { ${keys.map((k, i) => `k${i}: hopping(metric: "${def.name}", key: ${JSON.stringify(k)}, size: "${size}", advance: "${advance}", from: "${FROM}", to: "${TO}", version: "${version}") { windowStart windowEnd count sum avg min max distinct windows }`).join('\n')} }`,
        );
        let compared = 0;
        keys.forEach((key, i) => {
          // The oracle: every advance boundary in range whose hopping window holds events, from the events themselves.
          const tumbling = oracleWindows(events, def, advance, key);
          const starts = new Set<number>();
          for (const t of tumbling.keys())
            for (let s = t - sizeMs + granularityMs(advance); s <= t; s += granularityMs(advance)) starts.add(s);
          const from = Date.parse(FROM);
          const to = Date.parse(TO);
          const expected = [...starts].filter((s) => s >= from && s < to).sort((a, b) => a - b);
          const got = data[`k${i}`]!;
          const where = `${version} ${size}/${advance} ${key}`;
          expect(
            got.map((w) => Date.parse(w.windowStart)),
            where,
          ).toEqual(expected);
          for (const w of got) {
            const s = Date.parse(w.windowStart);
            expect(Date.parse(w.windowEnd) - s).toBe(sizeMs);
            const inside = events.filter((e) => e.ts >= s && e.ts < s + sizeMs);
            const o = oracleWindows(inside, def, advance, key);
            const all = [...o.values()];
            const users = new Set<string>();
            for (const x of all) for (const u of x.users) users.add(u);
            const count = all.reduce((n, x) => n + x.count, 0);
            const sums = all.filter((x) => x.sum !== null);
            expect(w.count, where).toBe(count);
            expect(w.windows, where).toBe(all.length);
            if (sums.length === 0) expect([w.sum, w.avg, w.min, w.max]).toEqual([null, null, null, null]);
            else {
              const sum = sums.reduce((n, x) => n + x.sum!, 0);
              expect(w.sum, where).toBeCloseTo(sum, 6);
              expect(w.avg, where).toBeCloseTo(sum / count, 9);
              expect(w.min, where).toBe(Math.min(...sums.map((x) => x.min!)));
              expect(w.max, where).toBe(Math.max(...sums.map((x) => x.max!)));
            }
            expect(w.distinct, where).toBe(hllOf(users));
            compared++;
          }
        });
        expect(compared).toBeGreaterThan(100);
      }
    }
    const bad = await gql(
      server.url,
      `{ hopping(metric: "clicks_by_ad_sized", key: "c1-a1", size: "7m", advance: "5m", from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { count } }`,
    );
    expect(bad.errors?.[0]?.message).toBe(
      "a hopping window's size must be a multiple of its advance, at most 1000 times it: size 7m, advance 5m",
    );
  });
});
