/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * GraphQL `sessions` over real HTTP, from partial sessions in both views: the batch run's rows
 * (rows.parquet with window_end, below a cut in every partition) and the speed view's rows on the
 * real broker (partitions 0 and 1 to their end), as services/views/viewRow.ts SessionRow states
 * them: per (metric, key, input partition) the sessions of that partition's events alone.
 *
 * Generated riders' trips lie in every partition (an event's partition is its id's), so true
 * sessions chain partials of several partitions, of either view; resent copies of an event are
 * counted once. A late trip bridges two sessions of one partition after the speed view first
 * published them apart: the speed layer then deletes the later partial (a tombstone) and
 * publishes the merged one. The oracle chains each rider's answered events (partitions 0 and 1
 * whole, partition 2 below the cut) by the gap, straight from the events. Each session must equal
 * it: start, end, count, sum, min, max, avg, distinct, and source (SPEED, BATCH, or MIXED when
 * it holds events of partition 2 and of the others). Refusals: an unknown metric, a metric with
 * tumbling windows, from after to, a range too large, a query too costly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../services/ingest/generator.ts';
import { partitionForKey } from '../../services/log/partitioner.ts';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import { fieldValuesOf } from '../../services/metrics/fieldSemantics.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { SESSION_GRANULARITY, speedViewTopic, viewRowKey, type ViewRow } from '../../services/views/viewRow.ts';
import { viewTopicSpec } from '../../services/log/topics.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { hllOf, publishBatchRun, type BatchRow, type LoggedEvent, type PartitionedLog } from './fixtures/viewFixtures.ts';
import { gql, gqlData, startTestServer, type TestServer } from './fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run serving/__tests__/sessionsOverHttp.spec.ts`;
const PARTITIONS = 3;
const GAP = 10 * 60_000;
const START = Date.UTC(2026, 0, 8, 8, 0);
const DEFS = parseMetricDefinitions(`
metrics:
  - name: rides
    filter: { type: trip }
    key: rider
    value: fare
    distinct: driver
    session: { gap: 10m }
    allowedLateness: 1h
  - name: trips_per_hour
    filter: { type: trip }
    key: rider
    granularities: [hour]
    allowedLateness: 1h
`);

interface Trip {
  id: string;
  type: 'trip';
  ts: number;
  rider: string;
  driver: string;
  fare: number;
}

/** An id of `prefix` whose home partition is `partition`. */
function idIn(prefix: string, partition: number, from = 0): string {
  for (let i = from; ; i++) if (partitionForKey(`${prefix}${i}`, PARTITIONS) === partition) return `${prefix}${i}`;
}

interface Span {
  start: number;
  end: number;
  events: Trip[];
}

/** Sessions of one key's events (deduplicated by id): sorted by time, a new one where the step is >= the gap. */
function sessionsOf(events: Trip[]): Span[] {
  const unique = [...new Map(events.map((e) => [e.id, e])).values()].sort((a, b) => a.ts - b.ts);
  const out: Span[] = [];
  for (const e of unique) {
    const last = out.at(-1);
    if (last && e.ts - last.end < GAP) {
      last.end = e.ts;
      last.events.push(e);
    } else out.push({ start: e.ts, end: e.ts, events: [e] });
  }
  return out;
}

/** A partition's partial sessions as a layer publishes them (one row per session of its events alone). */
function partialRows(events: Trip[], partition: number, throughOffset: number, processingTime: number): BatchRow[] {
  const byRider = new Map<string, Trip[]>();
  for (const e of events) byRider.set(e.rider, [...(byRider.get(e.rider) ?? []), e]);
  return [...byRider].flatMap(([rider, es]) =>
    sessionsOf(es).map((s) => {
      const fares = s.events.map((e) => e.fare);
      const h = new HyperLogLog();
      for (const e of s.events) h.add(e.driver);
      return {
        metric: 'rides',
        granularity: SESSION_GRANULARITY as ViewRow['granularity'],
        key: rider,
        windowStart: s.start,
        windowEnd: s.end,
        partition,
        count: s.events.length,
        sum: fares.reduce((a, b) => a + b, 0),
        min: Math.min(...fares),
        max: Math.max(...fares),
        distinctSketch: h.toBase64(),
        misplaced: 0,
        throughOffset,
        processingTime,
        rawCount: s.events.length,
      };
    }),
  );
}

describe('sessions over HTTP: partial sessions of both views merged and chained, equal to the oracle', () => {
  const dir = tempDir('lk-sessions-');
  const version = uniqueName('sv')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-20);
  const r = seededRandom(SEED);
  const byPartition: Trip[][] = Array.from({ length: PARTITIONS }, () => []);
  let cut: number[];
  let server: TestServer;
  const bridge = { before: [] as Trip[], late: undefined as unknown as Trip };

  async function publishSpeed(rows: ViewRow[], tombstones: ViewRow[], tx: string): Promise<void> {
    const topic = speedViewTopic(version);
    await server.log.createTopics([viewTopicSpec(topic, 3)]);
    const producer = await server.log.producer({ transactionalId: tx });
    try {
      const t = await producer.transaction();
      await t.send(topic, [
        ...tombstones.map((row) => ({ key: viewRowKey(row), value: null })),
        ...rows.map((row) => ({ key: viewRowKey(row), value: JSON.stringify(row) })),
      ]);
      await t.commit();
    } finally {
      await producer.close();
    }
  }

  /** The speed layer's rows of partitions 0 and 1 read to `through` (view rows: no raw count). */
  const speedRowsAt = (through: number[]): ViewRow[] =>
    [0, 1].flatMap((p) =>
      partialRows(byPartition[p]!.slice(0, through[p]), p, through[p]!, START + 5 * 3_600_000 + through[p]!).map(
        ({ rawCount: _, ...row }) => row,
      ),
    );

  beforeAll(async () => {
    // Riders' trips over three hours in bursts (sessions of a few trips, some a gap apart only
    // across partitions), each trip in its id's partition; one in twenty resent.
    let n = 0;
    const trip = (rider: string, ts: number, id = `t${n++}`): Trip => ({
      id,
      type: 'trip',
      ts,
      rider,
      driver: `d${Math.floor(r() * 40)}`,
      fare: Math.round(r() * 4000) / 100,
    });
    const all: Trip[] = [];
    for (let k = 0; k < 6; k++) {
      let t = START + Math.floor(r() * 600_000);
      while (t < START + 3 * 3_600_000) {
        const burst = 1 + Math.floor(r() * 6);
        for (let i = 0; i < burst; i++) {
          all.push(trip(`r${k}`, t));
          t += Math.floor(r() * 9 * 60_000);
        }
        t += Math.floor(r() * 25 * 60_000);
      }
    }
    for (const e of all) {
      const p = partitionForKey(e.id, PARTITIONS);
      byPartition[p]!.push(e);
      if (r() < 0.05) byPartition[p]!.push({ ...e }); // a resent copy, same id
    }
    // Two sessions of rider "b" in partition 0, a gap apart, then (appended last) the late trip between them.
    const t0 = START + 3_600_000 + 30_000;
    bridge.before = [
      trip('b', t0, idIn('b', 0, 0)),
      trip('b', t0 + 60_000, idIn('b', 0, 100)),
      trip('b', t0 + 15 * 60_000, idIn('b', 0, 200)),
    ];
    bridge.late = trip('b', t0 + 8 * 60_000, idIn('b', 0, 300));
    byPartition[0]!.unshift(...bridge.before);

    // The batch run: every partition below 60 % of its records.
    cut = byPartition.map((es) => Math.floor(es.length * 0.6));
    const logged: LoggedEvent[] = byPartition.flatMap((es, p) =>
      es.map((e, offset) => ({
        id: e.id,
        ts: e.ts,
        fields: { ...e },
        values: fieldValuesOf({ ...e }, {}),
        partition: p,
        offset,
        appendTime: START + 4 * 3_600_000 + offset,
      })),
    );
    const plog: PartitionedLog = {
      partitions: PARTITIONS,
      events: logged,
      byPartition: byPartition.map((_, p) => logged.filter((e) => e.partition === p)),
      ends: byPartition.map((es) => es.length),
    };
    const batchRows = byPartition.flatMap((es, p) => partialRows(es.slice(0, cut[p]), p, cut[p]!, START + 4 * 3_600_000 + cut[p]!));
    server = await startTestServer(dir.path, { defaultVersion: version, maxCost: 25_000 }, { metrics: DEFS });
    await publishBatchRun(dir.path, version, 'run-1', plog, batchRows, cut);
    await eventually(async () => {
      const d = await gqlData(server.url, '{ pipeline { serving { batchView { runId } } } }');
      return d.pipeline.serving.batchView?.runId === 'run-1' ? true : undefined;
    }, 'batch run installed');
  }, 120_000);

  afterAll(async () => {
    await server?.log.deleteTopics([speedViewTopic(version)]).catch(() => undefined);
    await server?.close();
    dir.remove();
  });

  const FROM = new Date(START - 3_600_000).toISOString();
  const TO = new Date(START + 5 * 3_600_000).toISOString();
  const QUERY = `query($k: String!) { sessions(metric: "rides", key: $k, from: "${FROM}", to: "${TO}") {
    key keyParts start end count sum avg min max distinct source provisional partials } }`;

  /** Every rider's answer equals the oracle over the events the merge rule says it holds. */
  async function expectOracle(
    answered: Trip[][],
    speedPartitions: number[],
  ): Promise<{ sessions: number; sources: Record<string, number> }> {
    const sources: Record<string, number> = {};
    let total = 0;
    const riders = [...new Set(answered.flat().map((e) => e.rider))].sort();
    for (const rider of riders) {
      const mine = answered.map((es) => es.filter((e) => e.rider === rider));
      const want = sessionsOf(mine.flat());
      const partitionOf = new Map(mine.flatMap((es, p) => es.map((e) => [e.id, p] as const)));
      const got = (await gqlData<any>(server.url, QUERY, { k: rider })).sessions;
      expect(
        got.map((s: any) => [Date.parse(s.start), Date.parse(s.end), s.count]),
        `${rider}: sessions (start, end, count) ${rerun}`,
      ).toEqual(want.map((s) => [s.start, s.end, s.events.length]));
      want.forEach((w, i) => {
        const s = got[i];
        const fares = w.events.map((e) => e.fare);
        const where = `${rider} session ${new Date(w.start).toISOString()} ${rerun}`;
        expect(s.sum, where).toBeCloseTo(
          fares.reduce((a, b) => a + b, 0),
          9,
        );
        expect(s.avg, where).toBeCloseTo(fares.reduce((a, b) => a + b, 0) / fares.length, 9);
        expect([s.min, s.max], where).toEqual([Math.min(...fares), Math.max(...fares)]);
        expect(s.distinct, where).toBe(hllOf(w.events.map((e) => e.driver)));
        expect(s.keyParts).toEqual([rider]);
        const parts = new Set(w.events.map((e) => partitionOf.get(e.id)!));
        const fromSpeed = [...parts].some((p) => speedPartitions.includes(p));
        const fromBatch = [...parts].some((p) => !speedPartitions.includes(p));
        expect(s.source, where).toBe(fromBatch && fromSpeed ? 'MIXED' : fromBatch ? 'BATCH' : 'SPEED');
        expect(s.provisional).toBe(false);
        sources[s.source] = (sources[s.source] ?? 0) + 1;
      });
      total += want.length;
    }
    return { sessions: total, sources };
  }

  it('answers the true sessions from batch rows alone, then from speed and batch rows, and after a late trip merges two sessions', async () => {
    // The batch run alone: every partition below the cut.
    const batchOnly = await expectOracle(
      byPartition.map((es, p) => es.slice(0, cut[p])),
      [],
    );
    expect(batchOnly.sources).toEqual({ BATCH: batchOnly.sessions });

    // The speed view, first without the late trip: rider b has two sessions in partition 0.
    const first = [byPartition[0]!.length, byPartition[1]!.length];
    await publishSpeed(speedRowsAt(first), [], `${version}-1`);
    const answered1 = [byPartition[0]!, byPartition[1]!, byPartition[2]!.slice(0, cut[2])];
    await eventually(async () => {
      const d = await gqlData<any>(server.url, QUERY, { k: 'b' });
      return d.sessions.length === 2 && d.sessions.every((s: any) => s.source === 'SPEED') ? true : undefined;
    }, 'speed rows loaded');
    const mixed = await expectOracle(answered1, [0, 1]);

    // The late trip arrives: the speed layer publishes b's merged partial and deletes the one it absorbed.
    byPartition[0]!.push(bridge.late);
    const before = speedRowsAt(first).filter((row) => row.partition === 0);
    const after = speedRowsAt([byPartition[0]!.length, first[1]!]);
    const gone = before.filter((row) => !after.some((a) => a.partition === 0 && a.key === row.key && a.windowStart === row.windowStart));
    expect(gone.map((row) => [row.key, row.windowStart])).toEqual([['b', bridge.before[2]!.ts]]);
    await publishSpeed(after, gone, `${version}-2`);
    await eventually(async () => {
      const d = await gqlData<any>(server.url, QUERY, { k: 'b' });
      return d.sessions.length === 1 ? d : undefined;
    }, 'the merged session of b');
    const merged = await expectOracle([byPartition[0]!, byPartition[1]!, byPartition[2]!.slice(0, cut[2])], [0, 1]);
    expect(mixed.sources.MIXED ?? 0, 'some session chains partials of both views').toBeGreaterThan(0);
    expect(mixed.sources.SPEED ?? 0).toBeGreaterThan(0);
    console.log(
      `[sessions] batch only: ${batchOnly.sessions} sessions; with speed rows: ${JSON.stringify(mixed.sources)}; after the late trip: ${merged.sessions} sessions`,
    );
  });

  it('refuses an unknown metric, a metric with tumbling windows, from after to, a range too large and a query too costly, each with its code', async () => {
    const ask = (metric: string, from: string, to: string, fields = 'start count') =>
      gql(server.url, `{ sessions(metric: "${metric}", key: "r0", from: "${from}", to: "${to}") { ${fields} } }`);
    const cases: [string, Promise<Awaited<ReturnType<typeof gql>>>, RegExp][] = [
      ['UNKNOWN_METRIC', ask('nope', FROM, TO), /unknown metric "nope"/],
      ['NOT_A_SESSION_METRIC', ask('trips_per_hour', FROM, TO), /has tumbling windows \(HOUR\), not sessions/],
      ['INVALID_RANGE', ask('rides', TO, FROM), /is after/],
      ['RANGE_TOO_LARGE', ask('rides', '2026-01-01T00:00:00Z', '2026-06-01T00:00:00Z'), /limit for sessions with a 10m gap/],
      // 60 days: up to 8,640 sessions of a 10-minute gap, each of twelve fields: over the server's --max-cost of 25,000.
      [
        'QUERY_TOO_COSTLY',
        ask(
          'rides',
          '2026-01-01T00:00:00Z',
          '2026-03-02T00:00:00Z',
          'start end count sum avg min max distinct source provisional processingTime partials',
        ),
        /query cost \d+ exceeds the limit of 25000/,
      ],
    ];
    for (const [code, pending, message] of cases) {
      const res = await pending;
      expect(res.errors?.[0]?.extensions?.code, `${code}: ${res.raw}`).toBe(code);
      expect(res.errors?.[0]?.message).toMatch(message);
    }
  });
});
