/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers and status files are untyped JSON here. */
/**
 * A topic in a shape that is not ours, end to end on the real broker: nested JSON written by
 * Kafka's own console producer (unkeyed, round-robin, with duplicates in other partitions), the
 * event id at `meta.eventId`, the time at `meta.occurredAt` in epoch seconds (fractions, and
 * strings holding numbers), metric fields along dotted paths, a few records that are no events
 * under the mapping and some that are not JSON at all. Through `lk speed`, `lk batch run` and
 * serving over HTTP:
 * - after the batch run, every window GraphQL answers equals an oracle computed here from the
 *   records read back from the topic (their partitions and offsets: the first copy counts), none
 *   provisional, and the run's unique and misplaced counts are the oracle's;
 * - dead letters name the path that failed, in the dead-letter topic and in `lk produce`'s output;
 * - a version with a changed mapping (the id at `payload.orderId`, which some events share, the
 *   time at `meta.sentAtMs` in epoch milliseconds) replayed from the log with `lk replay`, then
 *   recomputed from the lake the first mapping wrote, gives exactly the oracle's answers for its
 *   mapping: the lake kept what that mapping needs (records that were no events under the first);
 * - so does a version reading the record key and timestamp (`id: $key, time: $timestamp`; some
 *   records were written with keys by the console producer) replayed from the lake.
 * The oracle reads the JSON with JSON.parse and plain arithmetic, not with the platform's code.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../services/ingest/generator.ts';
import type { LogRecord } from '../../services/log/eventLog.ts';
import { idHash } from '../../services/log/partitioner.ts';
import { deadLetterTopic, eventTopicSpecs } from '../../services/log/topics.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { eventually, tempDir, uniqueName } from '../helpers.ts';
import { consoleProduce } from '../kafkaTools.ts';
import { readTopic } from '../logReader.ts';
import { currentBatchRun } from '../sharedState.ts';
import { Pipeline, killAll, startServing, testVersion, type LkProcess, type Serving } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 1717);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/foreignShapedTopicMatchesTheOracle.spec.ts`;
const PARTITIONS = 3;
const MINUTE = 60_000;
const HOUR = 3_600_000;

const METRICS = (event: string) => `# A foreign-shaped topic: nested JSON, ids and times where the producer put them.
event: ${event}
metrics:
  - name: fares
    filter: { meta.kind: trip_completed }
    key: payload.city
    value: payload.fare
    distinct: payload.rider.id
    granularities: [minute, hour]
    allowedLateness: 1d
  - name: trips_by_driver
    key: payload.driver
    granularities: [hour]
    allowedLateness: 1d
`;
const V1_EVENT = '{ id: meta.eventId, time: meta.occurredAt, timeFormat: epoch-s, type: meta.kind }';
const V2_EVENT = '{ id: payload.orderId, time: meta.sentAtMs, timeFormat: epoch-ms, type: meta.kind }';
const V3_EVENT = '{ id: $key, time: $timestamp, type: meta.kind }';

/** An event as a mapping reads it (the oracle's own reading). */
interface OracleEvent {
  id: string;
  ts: number;
  kind: string;
  city: unknown;
  fare: unknown;
  rider: unknown;
  driver: unknown;
  partition: number;
}

type Mapping = 'v1' | 'v2' | 'v3';

/** The oracle's reading of one record under a mapping, or undefined when it is no event under it. */
function read(record: LogRecord, mapping: Mapping): OracleEvent | undefined {
  let o: any;
  try {
    o = JSON.parse(record.value!.toString('utf8'));
  } catch {
    return undefined;
  }
  const meta = o?.meta;
  const payload = o?.payload;
  if (typeof meta !== 'object' || meta === null || typeof payload !== 'object' || payload === null) return undefined;
  const id = mapping === 'v1' ? meta.eventId : mapping === 'v2' ? payload.orderId : record.key?.toString('utf8');
  if (typeof id !== 'string' || id.trim() === '') return undefined;
  const time = mapping === 'v1' ? meta.occurredAt : mapping === 'v2' ? meta.sentAtMs : record.timestamp;
  const n = typeof time === 'number' ? time : typeof time === 'string' && /^-?\d+(\.\d+)?$/.test(time) ? Number(time) : NaN;
  // The generated seconds have fractions of a quarter: exact in binary, so * 1000 is exact.
  const ts = mapping === 'v1' ? Math.floor(n * 1000) : Math.floor(n);
  if (!Number.isFinite(ts) || typeof meta.kind !== 'string') return undefined;
  return {
    id,
    ts,
    kind: meta.kind,
    city: payload.city,
    fare: payload.fare,
    rider: payload.rider?.id,
    driver: payload.driver,
    partition: record.partition,
  };
}

interface Window {
  count: number;
  sum: number | null;
  riders: Set<string>;
}

/** The oracle's windows of a metric: per key and window start, each event once (its first copy by partition, then offset). */
function oracle(records: LogRecord[], mapping: Mapping, metric: 'fares' | 'trips_by_driver', size: number) {
  const out = new Map<string, Map<number, Window>>();
  const seen = new Set<string>();
  const ordered = [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  for (const r of ordered) {
    const e = read(r, mapping);
    if (!e || seen.has(e.id)) continue;
    seen.add(e.id);
    if (metric === 'fares' && e.kind !== 'trip_completed') continue;
    const keyValue = metric === 'fares' ? e.city : e.driver;
    if (typeof keyValue !== 'string' && typeof keyValue !== 'number') continue;
    const key = String(keyValue);
    const start = Math.floor(e.ts / size) * size;
    let byWindow = out.get(key);
    if (!byWindow) out.set(key, (byWindow = new Map()));
    let w = byWindow.get(start);
    if (!w) byWindow.set(start, (w = { count: 0, sum: null, riders: new Set() }));
    w.count++;
    if (metric === 'fares') {
      if (typeof e.fare === 'number') w.sum = (w.sum ?? 0) + e.fare;
      if (typeof e.rider === 'string') w.riders.add(e.rider);
    }
  }
  return out;
}

function hll(values: Iterable<string>): number {
  const h = new HyperLogLog();
  for (const v of values) h.add(v);
  return h.estimate();
}

describe(`a foreign-shaped topic from Kafka's console producer, end to end (seed ${SEED})`, () => {
  const dir = tempDir('lk-e2e-foreign-');
  const topic = uniqueName('foreign-shape');
  const v1File = join(dir.path, 'metrics.yaml');
  const v2File = join(dir.path, 'metrics-v2.yaml');
  const v3File = join(dir.path, 'metrics-v3.yaml');
  const p1 = new Pipeline(dir.path, v1File, topic, testVersion('shape1'));
  const p2 = new Pipeline(dir.path, v2File, topic, testVersion('shape2'));
  const p3 = new Pipeline(dir.path, v3File, topic, testVersion('shape3'));
  let serving: Serving;
  let speed: LkProcess | undefined;
  let records: LogRecord[] = [];

  // ---- the events: nested, unkeyed, with duplicates, a few that are no events under v1
  const r = seededRandom(SEED);
  const start = Date.now() - 50 * MINUTE;
  const cities = ['Paris', 'Lyon', 'Zürich', 'São Paulo', 'Ōsaka'];
  const lines: string[] = [];
  const orderIds: string[] = [];
  for (let i = 0; i < 900; i++) {
    const occurred = Math.floor((start + i * 2_500 + r() * 2_000) / 1000) + [0, 0.25, 0.5, 0.75][Math.floor(r() * 4)]!;
    // Some events share an order id: v1 counts them apart, v2 once.
    const orderId = orderIds.length > 0 && r() < 0.12 ? orderIds[Math.floor(r() * orderIds.length)]! : `o-${i}`;
    orderIds.push(orderId);
    const event = {
      meta: {
        eventId: `evt-${SEED}-${i}`,
        occurredAt: r() < 0.15 ? String(occurred) : occurred,
        sentAtMs: Math.round(occurred * 1000) + Math.floor(r() * 90_000),
        kind: r() < 0.75 ? 'trip_completed' : 'trip_cancelled',
      },
      payload: {
        orderId,
        city: cities[Math.floor(r() * cities.length)],
        fare: Math.round(r() * 4000) / 100,
        driver: 1 + Math.floor(r() * 12),
        rider: { id: `rider-${Math.floor(r() * 150)}`, tier: r() < 0.5 ? 'gold' : 'basic' },
        route: [
          { lat: 48.85, lon: 2.35 },
          { lat: 45.76, lon: 4.83 },
        ],
      },
    };
    lines.push(JSON.stringify(event));
    if (r() < 0.15) lines.push(JSON.stringify(event)); // a redelivered copy, round-robin into another partition
  }
  // No events under v1 (a missing id, a time that is no epoch-s), though v2 reads them; and no JSON at all.
  const missingId = JSON.stringify({
    meta: { occurredAt: start / 1000, sentAtMs: start + 5, kind: 'trip_completed' },
    payload: { orderId: 'o-x1', city: 'Paris', fare: 7, driver: 3, rider: { id: 'rider-x' } },
  });
  const badTime = JSON.stringify({
    meta: { eventId: 'evt-bad-time', occurredAt: 'yesterday', sentAtMs: start + 7, kind: 'trip_completed' },
    payload: { orderId: 'o-x2', city: 'Lyon', fare: 9, driver: 4, rider: { id: 'rider-y' } },
  });
  lines.splice(100, 0, missingId);
  lines.splice(300, 0, badTime, 'not json at all');
  // Some events again, written with their order id as the record key (what v3 reads, with the record timestamp).
  const keyed = lines
    .filter((l, i) => i % 7 === 0 && l.startsWith('{"meta":{"eventId"'))
    .map((l) => `${JSON.parse(l).payload.orderId}\t${l}`);
  const from = new Date(Math.floor(start / HOUR) * HOUR - HOUR).toISOString();
  const to = new Date(Math.floor(Date.now() / HOUR) * HOUR + 3 * HOUR).toISOString();

  async function windowsOf(version: string, metric: string, g: 'MINUTE' | 'HOUR', keys: string[]): Promise<Map<string, any[]>> {
    const q = `{ ${keys.map((k, i) => `k${i}: series(version: "${version}", metric: "${metric}", key: ${JSON.stringify(k)}, granularity: ${g}, from: "${from}", to: "${to}") { windowStart count sum distinct source provisional }`).join(' ')} }`;
    const d = await gqlData<any>(serving.url, q);
    return new Map(keys.map((k, i) => [k, d[`k${i}`] as any[]]));
  }

  /** Every window of every metric equals the oracle's for the mapping, none provisional. */
  async function expectOracle(version: string, mapping: Mapping): Promise<void> {
    const problems: string[] = [];
    for (const [metric, g, size] of [
      ['fares', 'MINUTE', MINUTE],
      ['fares', 'HOUR', HOUR],
      ['trips_by_driver', 'HOUR', HOUR],
    ] as const) {
      const want = oracle(records, mapping, metric, size);
      const got = await windowsOf(version, metric, g, [...want.keys()]);
      for (const [key, windows] of want) {
        const answered = new Map(got.get(key)!.map((w) => [Date.parse(w.windowStart), w]));
        for (const [s, w] of windows) {
          const a = answered.get(s);
          const ok =
            a !== undefined &&
            a.count === w.count &&
            !a.provisional &&
            (metric !== 'fares' || (Math.abs(a.sum - w.sum!) < 1e-6 && a.distinct === hll(w.riders)));
          if (!ok)
            problems.push(
              `${version} ${metric}/${g}/${key} ${new Date(s).toISOString()}: got ${JSON.stringify(a)}, want count ${w.count} sum ${w.sum}`,
            );
        }
        for (const [s, a] of answered)
          if (!windows.has(s)) problems.push(`${version} ${metric}/${g}/${key}: unexpected window ${JSON.stringify(a)}`);
      }
    }
    expect(problems.slice(0, 10), rerun).toEqual([]);
  }

  /** The oracle's run counts under a mapping: unique events, and records not in their id's home partition. */
  function runCounts(mapping: Mapping): { unique: number; misplaced: number; raw: number } {
    let raw = 0;
    let misplaced = 0;
    const ids = new Set<string>();
    for (const rec of records) {
      const e = read(rec, mapping);
      if (!e) continue;
      raw++;
      ids.add(e.id);
      if (idHash(Buffer.from(e.id, 'utf8')) % PARTITIONS !== rec.partition) misplaced++;
    }
    return { unique: ids.size, misplaced, raw };
  }

  beforeAll(async () => {
    writeFileSync(v1File, METRICS(V1_EVENT));
    writeFileSync(v2File, METRICS(V2_EVENT));
    writeFileSync(v3File, METRICS(V3_EVENT));
    await p1.log.createTopics(eventTopicSpecs(topic, PARTITIONS));
    serving = await startServing(p1);
  });

  afterAll(async () => {
    killAll();
    await serving?.close();
    await p1.close();
    await p2.close();
    await p3.close();
    dir.remove();
  });

  it('lk produce validates under the mapping and names the path that failed', async () => {
    const file = join(dir.path, 'produce.jsonl');
    // Two events of the shape (keyed by their ids), and two lines that are no events.
    const good = (n: number) =>
      JSON.stringify({
        meta: { eventId: `evt-produced-${n}`, occurredAt: start / 1000 + n, sentAtMs: start + n * 1000, kind: 'trip_completed' },
        payload: { orderId: `o-p${n}`, city: 'Paris', fare: 10 + n, driver: 1, rider: { id: `rider-${n}` } },
      });
    writeFileSync(file, [good(1), missingId, badTime.replace('evt-bad-time', 'evt-bad-time-2'), good(2)].join('\n') + '\n');
    const out = await p1.run(['produce', '--topic', topic, '--file', file, ...p1.common()]);
    expect(out).toMatch(/accepted 2 event\(s\)/);
    expect(out).toMatch(/missing_field\s+1 {2}first at line 2: missing meta\.eventId \(event\.id\)/);
    expect(out).toMatch(
      /invalid_ts\s+1 {2}first at line 3: meta\.occurredAt is not epoch-s: expected epoch seconds: a JSON number or a string holding one, got string "yesterday"/,
    );
  });

  it("after lk speed and lk batch run, every window equals the oracle's, none provisional; dead letters name the path", async () => {
    speed = p1.startSpeed();
    await consoleProduce(topic, lines);
    await consoleProduce(topic, keyed, {}, { 'parse.key': 'true', 'key.separator': '\t' });
    records = (await readTopic(p1.log, topic)).flat();
    expect(records.length).toBe(lines.length + keyed.length + 2);
    // Copies of one event sit in several partitions: the test does exercise unkeyed duplicates.
    const partitionsOf = new Map<string, Set<number>>();
    for (const rec of records) {
      const e = read(rec, 'v1');
      if (e) (partitionsOf.get(e.id) ?? partitionsOf.set(e.id, new Set()).get(e.id)!).add(rec.partition);
    }
    expect([...partitionsOf.values()].filter((s) => s.size > 1).length).toBeGreaterThan(20);
    await p1.speedCaughtUp(`speed caught up (${speed.output().slice(-500)})`);
    await p1.servingCaughtUp(serving.url);
    await p1.batchRun();
    const run = (await currentBatchRun(dir.path, p1.version))!;
    await p1.batchInstalled(serving.url, run.manifest.runId);
    const counts = runCounts('v1');
    expect({ unique: run.manifest.uniqueEvents, misplaced: run.manifest.misplacedEvents, raw: run.manifest.rawEvents }, rerun).toEqual(
      counts,
    );
    await expectOracle(p1.version, 'v1');

    // Dead letters name the path that failed: the lake writer's (the console producer's
    // records) and lk produce's (the lines it refused).
    const letters = (await readTopic(p1.log, deadLetterTopic(topic))).flat();
    const messagesFrom = (lakeWriter: boolean) =>
      letters
        .filter((l) => l.headers['lk.source']!.startsWith(`${topic}/`) === lakeWriter)
        .map((l) => l.headers['lk.message'])
        .sort();
    const missing = 'missing meta.eventId (event.id)';
    const notEpochS =
      'meta.occurredAt is not epoch-s: expected epoch seconds: a JSON number or a string holding one, got string "yesterday"';
    expect(messagesFrom(true)).toEqual([expect.stringMatching(/^invalid JSON/), missing, notEpochS].sort());
    expect(messagesFrom(false)).toEqual([missing, notEpochS].sort());
    await p1.stop(speed);
  });

  it("a changed mapping replayed into a new version gives exactly the oracle's answers for it", async () => {
    const replay = p2.spawn([
      'replay',
      '--topic',
      topic,
      '--version',
      p2.version,
      '--from',
      'earliest',
      '--instance-id',
      'r2',
      '--checkpoint-interval',
      '300ms',
      ...p2.common(),
    ]);
    await p2.speedCaughtUp(`v2 caught up (${replay.output().slice(-800)})`);
    // The speed layer under v2's mapping: its misplaced records are the oracle's.
    expect(
      [...(await p2.speedStatus()).partitions.values()].reduce((n, s) => n + s.misplaced, 0),
      rerun,
    ).toBe(runCounts('v2').misplaced);
    await p2.batchRun();
    const run = (await currentBatchRun(dir.path, p2.version))!;
    await eventually(async () => {
      const d = await gqlData<any>(serving.url, `{ pipeline(version: "${p2.version}") { serving { batchView { runId } } } }`);
      return d.pipeline.serving.batchView?.runId === run.manifest.runId ? true : undefined;
    }, 'v2 batch run installed');
    const counts = runCounts('v2');
    // The records v1 refused but v2 reads are counted: the lake kept them.
    expect(counts.unique).toBeLessThan(runCounts('v1').unique);
    expect({ unique: run.manifest.uniqueEvents, misplaced: run.manifest.misplacedEvents, raw: run.manifest.rawEvents }, rerun).toEqual(
      counts,
    );
    await expectOracle(p2.version, 'v2');
    await p2.stop(replay);
  });

  it("a mapping that reads the record key and timestamp, replayed from the lake, gives exactly the oracle's answers for it", async () => {
    const replay = p3.spawn([
      'replay',
      '--topic',
      topic,
      '--version',
      p3.version,
      '--from',
      'lake',
      '--instance-id',
      'r3',
      '--checkpoint-interval',
      '300ms',
      ...p3.common(),
    ]);
    await p3.speedCaughtUp('v3 caught up', 60_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${replay.output().slice(-1500)}`);
    });
    // The speed layer read the keys from the lake: its misplaced records are the oracle's.
    expect(
      [...(await p3.speedStatus()).partitions.values()].reduce((n, s) => n + s.misplaced, 0),
      rerun,
    ).toBe(runCounts('v3').misplaced);
    await p3.batchRun();
    const run = (await currentBatchRun(dir.path, p3.version))!;
    await eventually(async () => {
      const d = await gqlData<any>(serving.url, `{ pipeline(version: "${p3.version}") { serving { batchView { runId } } } }`);
      return d.pipeline.serving.batchView?.runId === run.manifest.runId ? true : undefined;
    }, 'v3 batch run installed');
    const counts = runCounts('v3');
    // The keyed records, and lk produce's (keyed by their event ids).
    expect(counts.raw).toBe(keyed.length + 2);
    expect({ unique: run.manifest.uniqueEvents, misplaced: run.manifest.misplacedEvents, raw: run.manifest.rawEvents }, rerun).toEqual(
      counts,
    );
    await expectOracle(p3.version, 'v3');
    await p3.stop(replay);
  });
});
