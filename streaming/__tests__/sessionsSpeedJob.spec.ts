/**
 * The speed job (`lk speed`, its worker threads, Kafka transactions) with a session metric beside
 * a tumbling one: SIGKILLed mid-run and restarted from its checkpoints, its view topic read with
 * read_committed (rows and tombstones applied in order) holds session rows that serving's merge
 * (sessionRule.ts combineSessionRows) turns into exactly the oracle's sessions, computed here by
 * hand; no row of a session that moved its start or was merged is left behind.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { combineSessionRows, type SourcedSessionRow } from '../../services/metrics/sessionRule.ts';
import { anyViewRowSchema, isSessionRow, speedViewTopic, viewRowKey, type SessionRow, type ViewRow } from '../../services/views/viewRow.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { caughtUp, createEventsTopic, kafkaLog, killAllSpeed, produceLines, spawnSpeed, sleep } from './support/harness.ts';
import type { EventLog } from '../../services/log/eventLog.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 4242);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run streaming/__tests__/sessionsSpeedJob.spec.ts`;
const GAP_MS = 20_000;

const METRICS = `metrics:
  - { name: clicks, filter: { type: click }, key: campaign_id, granularities: [minute], allowedLateness: 1h }
  - name: visits
    key: user_id
    value: cost
    distinct: ad_id
    session: { gap: 20s }
    allowedLateness: 1h
`;

/** The view topic to its end (read_committed): the latest row per record key, tombstones applied. */
async function readSessionView(log: EventLog, topic: string): Promise<SessionRow[]> {
  const ends = await log.endOffsets(topic);
  const rows = new Map<string, ViewRow>();
  const positions = ends.map(() => 0);
  const done = () => positions.every((pos, p) => pos >= ends[p]!);
  if (!done()) {
    const consumer = log.consumer({ groupId: `session-view-${Date.now()}-${Math.random()}`, fromBeginning: true });
    let resolveDone!: () => void;
    const finished = new Promise<void>((r) => (resolveDone = r));
    await consumer.subscribe([topic]);
    await consumer.run({
      eachBatch: async (batch) => {
        for (const r of batch.records) {
          if (r.value === null) rows.delete(r.key!.toString('utf8'));
          else {
            const row = anyViewRowSchema.parse(JSON.parse(r.value.toString('utf8')));
            expect(r.key!.toString('utf8')).toBe(viewRowKey(row));
            rows.set(viewRowKey(row), row);
          }
        }
        positions[batch.partition] = Math.max(positions[batch.partition]!, batch.nextOffset);
        if (done()) resolveDone();
      },
      onProgress: (p) => {
        positions[p.partition] = Math.max(positions[p.partition]!, p.nextOffset);
        if (done()) resolveDone();
      },
    });
    await finished;
    await consumer.stop();
  }
  return [...rows.values()].filter((r): r is SessionRow => isSessionRow(r));
}

describe(`the speed job publishes session rows (seed ${SEED})`, () => {
  const brokers = testBrokers();
  const log = kafkaLog(brokers);
  const dir = tempDir('lk-speed-sessions-');
  afterAll(async () => {
    killAllSpeed();
    await log.close();
    dir.remove();
  });

  it('killed and restarted, its view merges into the oracle sessions', { timeout: 150_000 }, async () => {
    const metricsFile = join(dir.path, 'metrics.yaml');
    writeFileSync(metricsFile, METRICS);
    const lines = [
      ...generateEventLines({
        seed: SEED,
        count: 12_000,
        startTime: Date.UTC(2026, 0, 2),
        eventsPerSecond: 3,
        lateRate: 0.05,
        lateMinMs: 10_000,
        lateMaxMs: 600_000,
      }),
    ];
    const topic = uniqueName('speed-sessions');
    const version = `s${Date.now().toString(36)}`;
    const group = `lk-speed-${version}`;
    await createEventsTopic(log, topic, 3);
    const args = ['--topic', topic, '--version', version, '--metrics', metricsFile, '--data-dir', dir.path];
    const more = ['--out-of-orderness', '2s', '--checkpoint-interval', '200ms'];
    const env = { KAFKA_BROKERS: brokers };
    await produceLines(log, topic, lines.slice(0, 6000));
    const first = spawnSpeed([...args, ...more, '--instance-id', 'a'], env);
    await eventually(
      async () => ((await log.committedOffsets(group, topic)).some((o) => (o ?? 0) > 500) ? true : undefined),
      'a checkpoint',
    );
    first.child.kill('SIGKILL');
    await first.exited;
    await produceLines(log, topic, lines.slice(6000));
    const second = spawnSpeed([...args, ...more, '--instance-id', 'b'], env);
    await eventually(async () => ((await caughtUp(log, group, topic)) ? true : undefined), 'caught up', 120_000);
    // One more checkpoint interval: the last transaction is committed with the offsets.
    await sleep(500);
    second.child.kill('SIGTERM');
    await second.exited;

    // The oracle: first copies (the generator's duplicates share an id, hence a partition), per
    // user the times sorted, a new session where the next is >= gap later.
    const seen = new Set<string>();
    const byUser = new Map<string, { ts: number; cost?: number }[]>();
    for (const line of lines) {
      const e = JSON.parse(line) as { id: string; ts: string; user_id: string; cost?: number };
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      byUser.set(e.user_id, [
        ...(byUser.get(e.user_id) ?? []),
        { ts: Date.parse(e.ts), ...(e.cost !== undefined ? { cost: e.cost } : {}) },
      ]);
    }
    const want = new Map<string, string[]>();
    for (const [user, events] of byUser) {
      events.sort((a, b) => a.ts - b.ts);
      const sessions: { start: number; end: number; count: number; sum: number }[] = [];
      for (const e of events) {
        const last = sessions.at(-1);
        if (!last || e.ts - last.end >= GAP_MS) sessions.push({ start: e.ts, end: e.ts, count: 0, sum: 0 });
        const s = sessions.at(-1)!;
        s.end = e.ts;
        s.count++;
        s.sum += e.cost ?? 0;
      }
      want.set(
        user,
        sessions.map((s) => `${s.start}-${s.end}:${s.count}:${s.sum.toFixed(6)}`),
      );
    }

    const rows = await readSessionView(log, speedViewTopic(version));
    const byKey = new Map<string, SourcedSessionRow[]>();
    for (const r of rows)
      byKey.set(r.key, [...(byKey.get(r.key) ?? []), { ...r, start: r.windowStart, end: r.windowEnd, source: 'speed' }]);
    const got = new Map<string, string[]>();
    for (const [user, list] of byKey)
      got.set(
        user,
        combineSessionRows(list, () => 0, GAP_MS).map((s) => `${s.start}-${s.end}:${s.count}:${(s.sum ?? 0).toFixed(6)}`),
      );
    const problems = [...new Set([...want.keys(), ...got.keys()])]
      .filter((u) => JSON.stringify(want.get(u)) !== JSON.stringify(got.get(u)))
      .slice(0, 5)
      .map((u) => `${u}: view ${JSON.stringify(got.get(u))}, oracle ${JSON.stringify(want.get(u))}`);
    expect(problems, rerun).toEqual([]);
    expect(rows.length, rerun).toBeGreaterThan(1000);
  });
});
