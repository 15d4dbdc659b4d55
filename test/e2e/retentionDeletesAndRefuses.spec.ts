/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * Retention end to end on the real broker, against an oracle computed here: `lk speed` deletes
 * the rows of expired windows from its view topic with tombstones at the exact boundary
 * (`watermark > start + size + retention`: kept at equality, deleted one millisecond later),
 * held windows survive a restart from the checkpoint (their tombstones come after it), a size
 * without an entry keeps the default, and serving refuses a range past retention with
 * OUTSIDE_RETENTION and a message that names the retention, while answering the rest exactly.
 *
 * Minute windows are kept 5m with 1m of lateness, so window s closes at s + 2m and expires at
 * s + 6m. Both partitions see minutes 0..9 and stop at watermark T0 + 10m (window 4 is exactly
 * at its expiry: kept); after the restart partition A stops at T0 + 12m (window 6 exactly at
 * its expiry: kept) and partition B at T0 + 12m + 1 ms (window 6 expired: deleted).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { partitionForKey } from '../../services/log/partitioner.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { speedViewTopic, viewRowKey } from '../../services/views/viewRow.ts';
import { gql } from '../../serving/__tests__/fixtures/testServer.ts';
import { tempDir, uniqueName } from '../helpers.ts';
import { Pipeline, killAll, startServing, testVersion, type LkProcess } from './pipeline.ts';

const MIN = 60_000;
const T0 = Date.UTC(2026, 2, 1, 0, 0);
const PARTITIONS = 2;
const RETENTION_MS = 5 * MIN;
const LATENESS_MS = MIN;

const METRICS = `version: 1
retention: { minute: 5m }
metrics:
  - name: views
    key: page
    granularities: [minute, hour]
    allowedLateness: 1m
`;

interface Ev {
  id: string;
  ts: number;
  page: string;
}

/** Ids whose home partition is `p` (the record key is the id). */
function idsOf(p: number): () => string {
  let i = 0;
  return () => {
    for (;;) {
      const id = `e-${i++}`;
      if (partitionForKey(id, PARTITIONS) === p) return id;
    }
  };
}
const nextId = [idsOf(0), idsOf(1)];

function minuteEvents(p: number, minutes: number[], last: number): Ev[] {
  const out: Ev[] = [];
  for (const k of minutes) for (const page of ['p1', 'p2']) out.push({ id: nextId[p]!(), ts: T0 + k * MIN + 10_000, page });
  out.push({ id: nextId[p]!(), ts: last, page: 'p1' });
  return out;
}

/**
 * The oracle: the speed layer's rules restated (no out-of-orderness: the watermark is the
 * largest event time before the record), then which rows survive in the view topic.
 */
function oracle(byPartition: Ev[][]): { kept: Map<string, number>; deleted: Set<string> } {
  const kept = new Map<string, number>();
  const deleted = new Set<string>();
  byPartition.forEach((events, partition) => {
    let maxTs = -Infinity;
    const counts = new Map<string, { g: 'minute' | 'hour'; start: number; key: string; count: number }>();
    for (const e of events) {
      for (const [g, size] of [
        ['minute', MIN],
        ['hour', 60 * MIN],
      ] as const) {
        const start = Math.floor(e.ts / size) * size;
        if (maxTs > start + size + LATENESS_MS) continue; // late
        const id = `${g}|${start}|${e.page}`;
        const row = counts.get(id) ?? { g, start, key: e.page, count: 0 };
        row.count++;
        counts.set(id, row);
      }
      maxTs = Math.max(maxTs, e.ts);
    }
    for (const row of counts.values()) {
      const key = viewRowKey({ metric: 'views', granularity: row.g, windowStart: row.start, partition, key: row.key });
      const retention = row.g === 'minute' ? RETENTION_MS : 90 * 86_400_000;
      const size = row.g === 'minute' ? MIN : 60 * MIN;
      if (maxTs > row.start + size + retention) deleted.add(key);
      else kept.set(key, row.count);
    }
  });
  return { kept, deleted };
}

describe('retention: tombstones at the boundary, across a restart, and refusals in serving', () => {
  const dir = tempDir('lk-retention-');
  const metricsFile = join(dir.path, 'metrics.yaml');
  writeFileSync(metricsFile, METRICS);
  const topic = uniqueName('retention');
  const p = new Pipeline(dir.path, metricsFile, topic, testVersion('ret'));
  let speed: LkProcess | undefined;

  afterAll(async () => {
    killAll();
    await p.close();
    dir.remove();
  });

  async function produce(events: Ev[][]): Promise<void> {
    const producer = await p.log.producer();
    try {
      for (const evs of events)
        await producer.send(
          topic,
          evs.map((e) => ({
            key: e.id,
            value: JSON.stringify({ id: e.id, type: 'view', ts: new Date(e.ts).toISOString(), page: e.page }),
          })),
        );
    } finally {
      await producer.close();
    }
  }

  /** The view topic read to its end: the latest record per key (null: a tombstone). */
  async function readTopic(): Promise<Map<string, number | null>> {
    const viewTopic = speedViewTopic(p.version);
    const ends = await p.log.endOffsets(viewTopic);
    const latest = new Map<string, number | null>();
    const positions = ends.map(() => 0);
    const consumer = p.log.consumer({ groupId: uniqueName('ret-reader'), fromBeginning: true });
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const check = () => positions.every((pos, i) => pos >= ends[i]!) && resolve();
    await consumer.subscribe([viewTopic]);
    await consumer.run({
      eachBatch: async (batch) => {
        for (const r of batch.records)
          latest.set(r.key!.toString('utf8'), r.value === null ? null : (JSON.parse(r.value.toString('utf8')) as { count: number }).count);
        positions[batch.partition] = Math.max(positions[batch.partition]!, batch.nextOffset);
        check();
      },
      onProgress: (pr) => {
        positions[pr.partition] = Math.max(positions[pr.partition]!, pr.nextOffset);
        check();
      },
    });
    check();
    await done;
    await consumer.stop();
    return latest;
  }

  function expectTopicMatches(view: Map<string, number | null>, want: ReturnType<typeof oracle>): void {
    const live = new Map([...view].filter(([, v]) => v !== null) as [string, number][]);
    expect(Object.fromEntries(live)).toEqual(Object.fromEntries(want.kept));
    // Every deleted row was published, then tombstoned (not merely never written).
    for (const key of want.deleted) expect(view.get(key), key).toBeNull();
  }

  it('deletes exactly the expired rows, keeps the boundary, and keeps doing so after a restart', async () => {
    await p.log.createTopics(eventTopicSpecs(topic, PARTITIONS));
    const minutes = [...Array(10).keys()];
    const phase1 = [0, 1].map((part) => minuteEvents(part, minutes, T0 + 10 * MIN));
    await produce(phase1);
    speed = p.startSpeed('a', ['--out-of-orderness', '0s']);
    await p.speedCaughtUp();
    const first = oracle(phase1);
    // Windows 0..3 expired, window 4 sits exactly at its expiry (kept).
    const minuteKey = (k: number, part: number, page = 'p1') =>
      viewRowKey({ metric: 'views', granularity: 'minute', windowStart: T0 + k * MIN, partition: part, key: page });
    expect(first.deleted.has(minuteKey(3, 0))).toBe(true);
    expect(first.kept.has(minuteKey(4, 0))).toBe(true);
    expectTopicMatches(await readTopic(), first);

    // A graceful stop, then more events: windows 4..6 were closed before the stop (held in the
    // checkpoint), and expire only after the restart.
    await p.stop(speed);
    const phase2 = [[{ id: nextId[0]!(), ts: T0 + 12 * MIN, page: 'p2' }], [{ id: nextId[1]!(), ts: T0 + 12 * MIN + 1, page: 'p2' }]];
    await produce(phase2);
    speed = p.startSpeed('a', ['--out-of-orderness', '0s']);
    await p.speedCaughtUp('speed caught up after the restart');
    const second = oracle([0, 1].map((part) => [...phase1[part]!, ...phase2[part]!]));
    expect(second.deleted.has(minuteKey(5, 0))).toBe(true);
    expect(second.kept.has(minuteKey(6, 0))).toBe(true); // A: watermark exactly at window 6's expiry
    expect(second.deleted.has(minuteKey(6, 1))).toBe(true); // B: one millisecond past it
    expectTopicMatches(await readTopic(), second);

    // Serving: the retention watermark is T0 + 12m + 1 ms, so the oldest answerable minute
    // window starts at T0 + 7m; window 6 is refused although partition A still has its row.
    const serving = await startServing(p);
    try {
      await p.servingCaughtUp(serving.url);
      const iso = (t: number) => new Date(t).toISOString();
      const series = (from: number, to: number) =>
        gql<any>(
          serving.url,
          `{ series(metric: "views", key: "p1", granularity: MINUTE, from: "${iso(from)}", to: "${iso(to)}") { windowStart count } }`,
        );
      const refused = await series(T0 + 6 * MIN, T0 + 13 * MIN);
      expect(refused.errors?.[0]?.extensions?.code).toBe('OUTSIDE_RETENTION');
      expect(refused.errors?.[0]?.message).toContain(
        `minute windows of metric "views" are kept for 5m; the oldest answerable window starts at ${iso(T0 + 7 * MIN)}`,
      );
      // A range that starts inside window 6 holds no window before T0 + 7m: answered.
      const answered = await series(T0 + 6 * MIN + 1, T0 + 13 * MIN);
      expect(answered.errors).toBeUndefined();
      // p1: one event per minute in each partition, and each partition's T0 + 10m event.
      expect(answered.data.series).toEqual([7, 8, 9, 10].map((k) => ({ windowStart: iso(T0 + k * MIN), count: 2 })));
      // The API says what is kept and the oldest window answered.
      const metrics = await gql<any>(serving.url, '{ metrics { name retention { granularity retentionMs oldestWindowStart } } }');
      expect(metrics.data.metrics[0].retention).toEqual([
        { granularity: 'MINUTE', retentionMs: RETENTION_MS, oldestWindowStart: iso(T0 + 7 * MIN) },
        { granularity: 'HOUR', retentionMs: 90 * 86_400_000, oldestWindowStart: iso(T0 - 90 * 86_400_000) },
      ]);
      // Hour windows keep the default (90d): the hour is answered, with every event.
      const hour = await gql<any>(
        serving.url,
        `{ series(metric: "views", key: "p1", granularity: HOUR, from: "${iso(T0)}", to: "${iso(T0 + 60 * MIN)}") { windowStart count } }`,
      );
      expect(hour.errors).toBeUndefined();
      expect(hour.data.series).toEqual([{ windowStart: iso(T0), count: 2 * (10 + 1) }]);
    } finally {
      await serving.close();
    }
    await p.stop(speed);
  }, 240_000);
});
