/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * Reconciliation (Twitter's validation, built in): zero disagreeing keys on clean data, and
 * exactly the injected differences when the speed job drops late events that the batch counts.
 * Duplicate rates before dedup come from the lake's raw rows; the oracle counts them from the
 * events. Also: the pipeline status reports what the status files and views say.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { granularityMs, type Granularity, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import {
  batchRows,
  lateFor,
  partitionedLog,
  publishBatchRun,
  publishSpeedRows,
  speedRows,
  writeSpeedStatus,
  type PartitionedLog,
} from './fixtures/viewFixtures.ts';
import { METRICS, gqlData, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 777);
const START = Date.UTC(2026, 0, 1);
const FROM = new Date(START - 86_400_000).toISOString();
const TO = new Date(START + 86_400_000).toISOString();

const genOptions = {
  count: 3000,
  startTime: START,
  eventsPerSecond: 2,
  duplicateRate: 0.08,
  outOfOrderRate: 0.1,
  outOfOrderMs: 5_000,
  lateMinMs: 15 * 60_000,
  lateMaxMs: 25 * 60_000,
  campaigns: 6,
  adsPerCampaign: 3,
  users: 200,
};

/** Oracle: per key, how many distinct events of closed windows in range the speed job dropped (first copy late). */
function injectedDifferences(log: PartitionedLog, def: MetricDefinition, g: Granularity): Map<string, number> {
  const late = lateFor(log, def, g, log.ends);
  const c = compileMetric(def);
  const closedBefore = Math.min(...log.byPartition.map((events) => Math.max(...events.map((e) => e.ts)))) - def.allowedLatenessMs;
  const firstCopy = new Set<string>();
  const diff = new Map<string, number>();
  for (const e of log.events.slice().sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    if (firstCopy.has(e.id)) continue;
    firstCopy.add(e.id);
    const start = Math.floor(e.ts / granularityMs(g)) * granularityMs(g);
    // Closed: the watermark is past windowEnd + lateness, so the window ends before closedBefore.
    if (!late.has(e) || start + granularityMs(g) >= closedBefore) continue;
    const key = c.keyOf(e.values)!;
    diff.set(key, (diff.get(key) ?? 0) - 1);
  }
  return diff;
}

/** Oracle: (copies - distinct) / copies over the matched events of the range. */
function duplicateRate(log: PartitionedLog, def: MetricDefinition): number {
  const c = compileMetric(def);
  const matched = log.events.filter((e) => c.matches(e.values));
  const unique = new Set(matched.map((e) => e.id)).size;
  return (matched.length - unique) / matched.length;
}

const RECONCILE = `query($m: String!, $g: Granularity!, $v: String) {
  reconciliation(metric: $m, granularity: $g, from: "${FROM}", to: "${TO}", version: $v) {
    batchRunId speedWatermark closedBefore windowsCompared windowsPending keysCompared disagreeingKeys batchCount speedCount
    keys { key batchCount speedCount difference windows disagreeingWindows }
    duplicates { runRawEvents runUniqueEvents runBeforeDedup rangeRawCount rangeCount rangeBeforeDedup speedAfterDedup batchAfterDedup speedDuplicatesDropped }
  } }`;

describe('reconciliation', () => {
  const dir = tempDir('lk-serve-recon-');
  const prefix = uniqueName('rc').toLowerCase().slice(-18);
  const clean = { version: `${prefix}a`, log: partitionedLog({ seed: SEED, ...genOptions, lateRate: 0 }, 3) };
  const dirty = { version: `${prefix}b`, log: partitionedLog({ seed: SEED + 1, ...genOptions, lateRate: 0.04 }, 3) };
  let server: TestServer;
  const dropped = new Map<string, number>();

  beforeAll(async () => {
    const publisher = testLog('lk-serve-test-publisher');
    try {
      for (const [i, s] of [clean, dirty].entries()) {
        const run = speedRows(s.log, METRICS.metrics, s.log.ends);
        dropped.set(s.version, run.dropped.length);
        await publishSpeedRows(publisher, s.version, run.rows, `${prefix}-tx-${i}`);
        await publishBatchRun(dir.path, s.version, 'run-1', s.log, batchRows(s.log, METRICS.metrics, s.log.ends), s.log.ends);
        writeSpeedStatus(dir.path, s.version, run, s.log.ends, { impressions_by_campaign: 3 });
      }
    } finally {
      await publisher.close();
    }
    expect(dropped.get(clean.version)).toBe(0);
    expect(dropped.get(dirty.version)).toBeGreaterThan(20);
    server = await startTestServer(dir.path, { defaultVersion: clean.version, maxCost: 10_000_000 });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  it('reports zero disagreeing keys on clean data, with duplicate rates from the raw rows', async () => {
    for (const def of METRICS.metrics) {
      for (const g of def.granularities) {
        const r = (await gqlData<any>(server.url, RECONCILE, { m: def.name, g: g.toUpperCase(), v: clean.version })).reconciliation;
        const where = `${def.name}/${g} seed ${SEED}`;
        expect(r.batchRunId).toBe('run-1');
        // 25 minutes of events: only minute windows can be closed.
        if (g === 'minute') expect(r.windowsCompared, where).toBeGreaterThan(0);
        else expect(r.windowsCompared, where).toBe(0);
        expect(r.windowsPending).toBe(0);
        expect(r.disagreeingKeys, where).toBe(0);
        expect(r.batchCount).toBe(r.speedCount);
        expect(r.keys.every((k: any) => k.difference === 0 && k.disagreeingWindows === 0)).toBe(true);
        expect(r.duplicates.rangeBeforeDedup, where).toBeCloseTo(duplicateRate(clean.log, def), 12);
        expect(r.duplicates.rangeBeforeDedup).toBeGreaterThan(0.03);
        expect(r.duplicates.speedAfterDedup).toBe(g === 'minute' ? 0 : null);
        expect(r.duplicates.batchAfterDedup).toBe(0);
        const unique = new Set(clean.log.events.map((e) => e.id)).size;
        expect(r.duplicates.runRawEvents).toBe(clean.log.events.length);
        expect(r.duplicates.runUniqueEvents).toBe(unique);
        expect(r.duplicates.runBeforeDedup).toBeCloseTo((clean.log.events.length - unique) / clean.log.events.length, 12);
        expect(r.duplicates.speedDuplicatesDropped).toBe(clean.log.events.length - unique);
        // Closed = end + lateness <= min over partitions of the watermark.
        const minWatermark = Math.min(...clean.log.byPartition.map((events) => Math.max(...events.map((e) => e.ts))));
        expect(Date.parse(r.speedWatermark)).toBe(minWatermark);
        expect(Date.parse(r.closedBefore)).toBe(minWatermark - def.allowedLatenessMs);
      }
    }
  });

  it('reports exactly the injected differences when the speed job drops late events', async () => {
    let total = 0;
    for (const def of METRICS.metrics) {
      for (const g of def.granularities) {
        const r = (await gqlData<any>(server.url, RECONCILE, { m: def.name, g: g.toUpperCase(), v: dirty.version })).reconciliation;
        const expected = injectedDifferences(dirty.log, def, g);
        const got = new Map<string, number>(r.keys.filter((k: any) => k.difference !== 0).map((k: any) => [k.key, k.difference]));
        expect(got, `${def.name}/${g} seed ${SEED + 1}`).toEqual(expected);
        expect(r.disagreeingKeys).toBe(expected.size);
        expect(r.speedCount - r.batchCount).toBe([...expected.values()].reduce((a, b) => a + b, 0));
        total += expected.size;
      }
    }
    expect(total, 'the data injected differences at all').toBeGreaterThan(5);
  });

  it('onlyDisagreeing lists just the disagreeing keys', async () => {
    const q = `{ reconciliation(metric: "impressions_by_campaign", granularity: MINUTE, from: "${FROM}", to: "${TO}", version: "${dirty.version}", onlyDisagreeing: true) { disagreeingKeys keys { key disagreeingWindows } } }`;
    const r = (await gqlData<any>(server.url, q)).reconciliation;
    expect(r.keys.length).toBe(r.disagreeingKeys);
    expect(r.keys.every((k: any) => k.disagreeingWindows > 0)).toBe(true);
  });

  it('pipeline status reports the speed status file, the batch run and the views', async () => {
    const q = `{ pipeline { version
      speed { instances { instanceId ageMs } partitions { partition committedOffset lag watermark } eventsPerSecond duplicates droppedLate { metric count } lastCheckpoint { at bytes durationMs } unreadable }
      batch { lastRun { runId cut rawEvents uniqueEvents } lakeFiles }
      serving { ready subscriptions speedView { topic topicExists caughtUp rows partitions { partition nextOffset lag } } batchView { runId rows cut } } } }`;
    const p = (await gqlData<any>(server.url, q)).pipeline;
    expect(p.version).toBe(clean.version);
    expect(p.speed.instances.map((i: any) => i.instanceId)).toEqual(['test']);
    expect(p.speed.partitions.map((x: any) => x.committedOffset)).toEqual(clean.log.ends);
    expect(p.speed.droppedLate).toEqual([{ metric: 'impressions_by_campaign', count: 3 }]);
    expect(p.speed.lastCheckpoint.bytes).toBe(1234);
    expect(p.speed.unreadable).toEqual([]);
    expect(p.batch.lastRun).toMatchObject({ runId: 'run-1', cut: clean.log.ends, rawEvents: clean.log.events.length });
    expect(p.serving.ready).toBe(true);
    expect(p.serving.speedView).toMatchObject({ topicExists: true, caughtUp: true, topic: `views.speed.${clean.version}` });
    expect(p.serving.speedView.rows).toBe(speedRows(clean.log, METRICS.metrics, clean.log.ends).rows.length);
    expect(p.serving.speedView.partitions.every((x: any) => x.lag === 0)).toBe(true);
    expect(p.serving.batchView).toMatchObject({ runId: 'run-1', cut: clean.log.ends });
  });
});
