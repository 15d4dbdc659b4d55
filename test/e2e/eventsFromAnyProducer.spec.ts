/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers and status files are untyped JSON here. */
/**
 * Events from producers that are not ours, end to end on the real broker: Kafka's own console
 * producer writes the events unkeyed and round-robin (so copies of one event land in different
 * partitions, as an at-least-once relay or a producer keying by something else does), with
 * duplicates, and the events topic's partition count is raised mid-stream while `lk speed` runs.
 * Some events come keyed by id through `lk produce`, before the raise.
 *
 * - Before a batch run, every window the speed view answers is either exact or marked
 *   provisional (docs/guarantees.md, "Events from any producer"); the keyed events' windows are
 *   exact and not provisional.
 * - The misplaced count in the pipeline status equals the oracle's: records not in the partition
 *   Kafka's partitioner gives their id among the version's home partitions.
 * - After `lk batch run`, every window equals the oracle, none is provisional, and the run's
 *   misplaced count is the oracle's too.
 * The oracle is computed from the events and the records' placement read back from the topic.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { idHash } from '../../services/log/partitioner.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { currentBatchRun } from '../sharedState.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { eventually, tempDir, uniqueName } from '../helpers.ts';
import { consoleProduce, raisePartitions } from '../kafkaTools.ts';
import { Pipeline, killAll, startServing, testVersion, type LkProcess, type Serving } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 31337);
const HOME_PARTITIONS = 4;
const RAISED_PARTITIONS = 6;

const METRICS = `version: 1
metrics:
  - name: by_campaign
    key: campaign_id
    value: cost
    distinct: user_id
    granularities: [minute, hour]
    allowedLateness: 1d
  - name: clicks_by_ad
    filter: { type: click }
    key: ad_id
    granularities: [minute]
    allowedLateness: 1d
`;

interface Ev {
  id: string;
  ts: number;
  type: string;
  campaign_id: string;
  ad_id: string;
  user_id: string;
  cost?: number;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

/** The oracle's windows of a metric: per key and window start, count, sum and the set of users, each event once. */
function oracle(
  events: Iterable<Ev>,
  metric: 'by_campaign' | 'clicks_by_ad',
  size: number,
): Map<string, Map<number, { count: number; sum: number | null; users: Set<string> }>> {
  const out = new Map<string, Map<number, { count: number; sum: number | null; users: Set<string> }>>();
  const seen = new Set<string>();
  for (const e of events) {
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    if (metric === 'clicks_by_ad' && e.type !== 'click') continue;
    const key = metric === 'by_campaign' ? e.campaign_id : e.ad_id;
    const start = Math.floor(e.ts / size) * size;
    let byWindow = out.get(key);
    if (!byWindow) out.set(key, (byWindow = new Map()));
    let w = byWindow.get(start);
    if (!w) byWindow.set(start, (w = { count: 0, sum: null, users: new Set() }));
    w.count++;
    if (metric === 'by_campaign' && e.cost !== undefined) w.sum = (w.sum ?? 0) + e.cost;
    w.users.add(e.user_id);
  }
  return out;
}

describe('events from any producer: unkeyed, duplicated across partitions, partitions raised mid-stream', () => {
  const dir = tempDir('lk-e2e-anyproducer-');
  const topic = uniqueName('foreign');
  const p = new Pipeline(dir.path, join(dir.path, 'metrics.yaml'), topic, testVersion('any'));
  let serving: Serving;
  let speed: LkProcess | undefined;
  const start = Date.now() - 40 * MINUTE;
  const gen = (seed: number, count: number, at: number, campaignPrefix: string) =>
    [
      ...generateEventLines({
        seed,
        count,
        startTime: at,
        eventsPerSecond: 1,
        duplicateRate: 0.15,
        lateRate: 0,
        outOfOrderRate: 0.05,
        campaigns: 5,
        adsPerCampaign: 3,
        users: 400,
      }),
    ].map((l) =>
      l.replaceAll('"campaign_id":"c', `"campaign_id":"${campaignPrefix}`).replaceAll('"ad_id":"c', `"ad_id":"${campaignPrefix}`),
    );
  // Keyed by id through lk produce (before the raise); unkeyed through Kafka's console producer
  // before and after the raise, the last part also re-publishing copies of earlier unkeyed events.
  const keyed = gen(SEED, 300, start, 'k');
  const unkeyedBefore = gen(SEED + 1, 600, start + 5 * MINUTE, 'u');
  const unkeyedAfter = [...gen(SEED + 2, 400, start + 15 * MINUTE, 'u'), ...unkeyedBefore.filter((_, i) => i % 10 === 0)];
  const all: Ev[] = [...keyed, ...unkeyedBefore, ...unkeyedAfter].map((l) => {
    const o = JSON.parse(l);
    return { ...o, ts: Date.parse(o.ts) };
  });
  const from = new Date(Math.floor(start / HOUR) * HOUR - HOUR).toISOString();
  const to = new Date(Math.floor(start / HOUR) * HOUR + 3 * HOUR).toISOString();

  async function windowsOf(metric: 'by_campaign' | 'clicks_by_ad', g: 'MINUTE' | 'HOUR', keys: string[]): Promise<Map<string, any[]>> {
    const q = `{ ${keys.map((k, i) => `k${i}: series(metric: "${metric}", key: "${k}", granularity: ${g}, from: "${from}", to: "${to}") { windowStart count sum distinct source provisional }`).join(' ')} }`;
    const d = await gqlData<any>(serving.url, q);
    return new Map(keys.map((k, i) => [k, d[`k${i}`] as any[]]));
  }

  /** Compares every window with the oracle; returns how many were exact and how many provisional. */
  async function check(stage: string, allowProvisional: boolean): Promise<{ exact: number; provisional: number; keyedExact: number }> {
    let exact = 0;
    let provisional = 0;
    let keyedExact = 0;
    const problems: string[] = [];
    for (const [metric, g, size] of [
      ['by_campaign', 'MINUTE', MINUTE],
      ['by_campaign', 'HOUR', HOUR],
      ['clicks_by_ad', 'MINUTE', MINUTE],
    ] as const) {
      const want = oracle(all, metric, size);
      const got = await windowsOf(metric, g, [...want.keys()]);
      for (const [key, windows] of want) {
        const answered = new Map(got.get(key)!.map((w) => [Date.parse(w.windowStart), w]));
        for (const [s, w] of windows) {
          const a = answered.get(s);
          const matches =
            a !== undefined &&
            a.count === w.count &&
            (w.sum === null ? a.sum === null : Math.abs(a.sum - w.sum) < 1e-6) &&
            (metric !== 'by_campaign' || a.distinct === hll(w.users));
          if (matches && !a.provisional) exact++;
          if (matches && !a.provisional && key.startsWith('k')) keyedExact++;
          if (a?.provisional) provisional++;
          if (!matches && !(allowProvisional && a?.provisional)) {
            problems.push(
              `${stage} ${metric}/${g}/${key} ${new Date(s).toISOString()}: got ${JSON.stringify(a)}, want count ${w.count} sum ${w.sum}`,
            );
          }
          if (!allowProvisional && a?.provisional) problems.push(`${stage} ${metric}/${g}/${key}: provisional after the batch run`);
        }
        for (const [s, a] of answered)
          if (!windows.has(s)) problems.push(`${stage} ${metric}/${g}/${key}: unexpected window ${JSON.stringify(a)}`);
      }
    }
    expect(problems.slice(0, 10), `seed ${SEED}`).toEqual([]);
    return { exact, provisional, keyedExact };
  }

  /** Reads every record back with its partition: the oracle's misplaced count. */
  async function misplacedInTopic(): Promise<{ misplaced: number; records: number; idsInSeveralPartitions: number }> {
    const ends = await p.log.endOffsets(topic);
    const positions = ends.map(() => 0);
    const partitionsOf = new Map<string, Set<number>>();
    let misplaced = 0;
    let records = 0;
    const consumer = p.log.consumer({ groupId: `oracle-${Date.now()}`, fromBeginning: true });
    let resolveDone!: () => void;
    const done = new Promise<void>((r) => (resolveDone = r));
    const caughtUp = () => positions.every((pos, i) => pos >= ends[i]!);
    await consumer.subscribe([topic]);
    await consumer.run({
      eachBatch: async (batch) => {
        for (const r of batch.records) {
          const id = JSON.parse(r.value!.toString('utf8')).id as string;
          records++;
          if (idHash(Buffer.from(id)) % HOME_PARTITIONS !== batch.partition) misplaced++;
          (partitionsOf.get(id) ?? partitionsOf.set(id, new Set()).get(id)!).add(batch.partition);
        }
        positions[batch.partition] = Math.max(positions[batch.partition]!, batch.nextOffset);
        if (caughtUp()) resolveDone();
      },
      onProgress: (pr) => {
        positions[pr.partition] = Math.max(positions[pr.partition]!, pr.nextOffset);
        if (caughtUp()) resolveDone();
      },
    });
    if (!caughtUp()) await done;
    await consumer.stop();
    return { misplaced, records, idsInSeveralPartitions: [...partitionsOf.values()].filter((s) => s.size > 1).length };
  }

  beforeAll(async () => {
    writeFileSync(p.metricsFile, METRICS);
    writeFileSync(join(dir.path, 'keyed.jsonl'), keyed.join('\n') + '\n');
    await p.log.createTopics(eventTopicSpecs(topic, HOME_PARTITIONS));
    serving = await startServing(p);
  });

  afterAll(async () => {
    killAll();
    await serving?.close();
    await p.close();
    dir.remove();
  });

  it('before a batch run: every window exact or provisional; the misplaced count is right', async () => {
    speed = p.startSpeed();
    await p.run(['produce', '--topic', topic, '--file', join(dir.path, 'keyed.jsonl'), ...p.common()]);
    await consoleProduce(topic, unkeyedBefore);
    await p.speedCaughtUp('speed caught up before the raise');
    await raisePartitions(topic, RAISED_PARTITIONS);
    await eventually(async () => ((await p.log.endOffsets(topic)).length === RAISED_PARTITIONS ? true : undefined), 'the raise seen');
    await consoleProduce(topic, unkeyedAfter);
    // The running job takes the new partitions on its own (a rebalance after a metadata refresh).
    await eventually(
      async () => ((await p.speedStatus()).partitions.size === RAISED_PARTITIONS ? true : undefined),
      `speed job owns the new partitions (output: ${speed.output().slice(-500)})`,
    );
    await p.speedCaughtUp('speed caught up after the raise');
    await p.servingCaughtUp(serving.url);

    const placement = await misplacedInTopic();
    expect(placement.idsInSeveralPartitions).toBeGreaterThan(20); // the test does exercise cross-partition copies
    const d = await gqlData<any>(serving.url, '{ pipeline { speed { misplaced partitions { partition misplaced } } } }');
    expect(d.pipeline.speed.misplaced).toBe(placement.misplaced);
    expect(d.pipeline.speed.partitions.map((x: any) => x.partition)).toEqual([0, 1, 2, 3, 4, 5]);

    const { exact, provisional, keyedExact } = await check('before the batch run', true);
    expect(provisional).toBeGreaterThan(0);
    expect(keyedExact).toBeGreaterThan(0);
    expect(exact).toBeGreaterThan(0);
  });

  it('after lk batch run: every window equals the oracle, none provisional', async () => {
    await p.batchRun();
    const run = (await currentBatchRun(dir.path, p.version))!;
    await p.batchInstalled(serving.url, run.manifest.runId);
    const placement = await misplacedInTopic();
    expect(run.manifest.misplacedEvents).toBe(placement.misplaced);
    expect(run.manifest.rawEvents).toBe(placement.records);
    expect(run.manifest.uniqueEvents).toBe(new Set(all.map((e) => e.id)).size);
    const { provisional } = await check('after the batch run', false);
    expect(provisional).toBe(0);

    // Reconciliation reports the misplaced events of the range and no provisional window.
    const r = await gqlData<any>(
      serving.url,
      `{ reconciliation(metric: "by_campaign", granularity: MINUTE, from: "${from}", to: "${to}") { misplaced { batchRows runMisplacedEvents speedRecords provisionalWindows } } }`,
    );
    expect(r.reconciliation.misplaced.runMisplacedEvents).toBe(placement.misplaced);
    expect(r.reconciliation.misplaced.speedRecords).toBe(placement.misplaced);
    expect(r.reconciliation.misplaced.batchRows).toBeGreaterThan(0);
    expect(r.reconciliation.misplaced.provisionalWindows).toBe(0);
    await p.stop(speed);
  });
});

function hll(values: Iterable<string>): number {
  const h = new HyperLogLog();
  for (const v of values) h.add(v);
  return h.estimate();
}
