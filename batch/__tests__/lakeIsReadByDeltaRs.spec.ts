/**
 * The lake is a Delta table that delta-rs (the `deltalake` package, another engine's own code)
 * reads correctly, and a table delta-rs writes to is read correctly by the platform, on a local
 * disk and on a real S3 server:
 * - after a batch cycle (with checkpoints: more than ten commits), delta-rs sees exactly the
 *   records the lake keeps (the valid ones, and an invalid one that is a readable JSON object,
 *   with a null event time): row count, every (partition, offset) once, the oracle's distinct ids;
 * - time travel to an earlier version gives that version's rows (what the platform's own reader
 *   gives for it, the records below that version's positions);
 * - after compaction (remove + add, dataChange false) the same rows, and the version before it
 *   still reads;
 * - delta-rs appends rows, compacts (its OPTIMIZE) and checkpoints the table: the platform reads
 *   exactly those rows, from delta-rs's checkpoint, recomputes over them, and its writer goes on
 *   appending to the table delta-rs changed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { idHash } from '../../services/log/partitioner.ts';
import { loadMetricDefinitions } from '../../services/metrics/definitions.ts';
import { logger } from '../../services/observability/logger.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { openLakeForWriting } from '../../services/lake/lakeTable.ts';
import { DeltaLog } from '../../services/lake/delta/deltaLog.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../test/s3.ts';
import { localStateOptions } from '../../test/sharedState.ts';
import { deltaRsAppend, deltaRsCheckpoint, deltaRsOptimize, deltaRsRead, type AppendRow } from '../../test/deltaRs.ts';
import { runBatchCycle } from '../batchCycle.ts';
import { compactLake } from '../lake/compaction.ts';
import { REPO_ROOT, createTopic, kafkaLog, lakeState, produceLines, readLakeWithDuckDb, readTopic, testLake } from './batchTestKit.ts';
import { join } from 'node:path';

const quiet = logger.child({}, { level: 'warn' });
const INVALID = ['not json', JSON.stringify({ id: 'no-ts', type: 'click' })];
/** The invalid records that are readable JSON objects: the lake keeps them with null typed columns. */
const READABLE_INVALID = [INVALID[1]!];

let s3: TestS3;
const dir = tempDir('lk-deltars-');
let log: EventLog;

beforeAll(async () => {
  s3 = await startTestS3(['lk-lake']);
  log = kafkaLog();
});
afterAll(async () => {
  await log?.close();
  await s3?.stop();
  dir.remove();
});

describe.each([
  ['a local disk', false],
  ['the S3 server', true],
])('delta-rs reads the lake on %s, and the platform reads what delta-rs writes', (_name, onS3) => {
  const topic = uniqueName(onS3 ? 'deltars-s3' : 'deltars-local');
  const dataDir = join(dir.path, topic);
  let lake: LakeHandle;
  let uri: string;
  let env: Record<string, string>;
  let valid: { partition: number; offset: number; line: string }[];
  /** The records the lake keeps: the valid ones and the readable invalid ones. */
  let kept: { partition: number; offset: number }[];
  const metrics = loadMetricDefinitions(join(REPO_ROOT, 'metrics.yaml'));
  const cycle = () =>
    runBatchCycle({
      log,
      topic,
      groupId: `${topic}-g`,
      ...localStateOptions(dataDir),
      lake,
      version: 'v1',
      metrics,
      rollBytes: 32 * 1024,
      rollIntervalMs: 60_000,
      logger: quiet,
    });

  beforeAll(async () => {
    env = onS3 ? s3.env : {};
    Object.assign(process.env, env);
    lake = await testLake(dataDir, topic, onS3 ? 's3://lk-lake/lakes' : undefined);
    uri = onS3 ? `s3://lk-lake/lakes/${topic}` : join(dataDir, 'lake', topic);
    await createTopic(log, topic, 3);
    await produceLines(log, topic, [...generateEventLines({ seed: 18, count: 3000, duplicateRate: 0.1 })]);
    const producer = await log.producer();
    await producer.send(
      topic,
      INVALID.map((value, i) => ({ key: `bad-${i}`, value })),
    );
    await producer.close();
    await cycle();
    const records = (await readTopic(log, topic)).flat();
    valid = records
      .filter((r) => !INVALID.includes(r.value!.toString()))
      .map((r) => ({ partition: r.partition, offset: r.offset, line: r.value!.toString() }));
    kept = records
      .filter((r) => !INVALID.includes(r.value!.toString()) || READABLE_INVALID.includes(r.value!.toString()))
      .map((r) => ({ partition: r.partition, offset: r.offset }));
  });
  afterAll(async () => {
    await log.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    for (const k of Object.keys(env)) delete process.env[k];
  });

  const keysOf = (rows: { partition: number; offset: number }[]) => rows.map((r) => `${r.partition}:${r.offset}`).sort();
  const idsOf = (lines: string[]) => [...new Set(lines.map((l) => (JSON.parse(l) as { id: string }).id))].sort();

  it('after a batch cycle: every kept record once, the oracle ids; time travel gives an earlier version', async () => {
    const state = await lakeState(lake);
    expect(state.version).toBeGreaterThan(10); // checkpoints were written
    const read = await deltaRsRead(uri, env);
    expect(read.version).toBe(state.version);
    expect(read.rows).toBe(kept.length);
    expect(read.keys).toEqual(keysOf(kept));
    expect(read.ids).toEqual(idsOf(valid.map((v) => v.line)));
    expect(read.nullEventTimes).toBe(READABLE_INVALID.length);
    // An earlier version: what the platform reads for it, and exactly the records below its positions.
    const earlier = Math.floor(state.version / 2);
    const then = await deltaRsRead(uri, env, earlier);
    const ours = await readLakeWithDuckDb(lake, earlier);
    const positions = (await lakeState(lake, earlier)).positions;
    expect(then.version).toBe(earlier);
    expect(then.keys).toEqual(ours.map((r) => `${r.kafka_partition}:${r.kafka_offset}`).sort());
    expect(then.keys).toEqual(keysOf(kept.filter((v) => v.offset < (positions.get(v.partition)?.nextOffset ?? 0))));
    expect(then.rows).toBeLessThan(read.rows);
  });

  it('after compaction: the same rows, and the version before it still reads', async () => {
    const before = await lakeState(lake);
    const table = await openLakeForWriting(lake, quiet);
    const r = await compactLake({ table, lake, targetFileSize: 1 << 20, logger: quiet });
    expect(r.merges).toBeGreaterThan(0);
    const after = await lakeState(lake);
    expect(after.files.length).toBeLessThan(before.files.length);
    const read = await deltaRsRead(uri, env);
    expect(read.version).toBe(after.version);
    expect(read.keys).toEqual(keysOf(kept));
    expect((await deltaRsRead(uri, env, before.version)).keys).toEqual(keysOf(kept));
  });

  it('rows delta-rs appends, compacts and checkpoints are read by the platform, which goes on writing', async () => {
    // Backfilled events of partition 0, at offsets the topic will never reach.
    const extra: AppendRow[] = [...generateEventLines({ seed: 1800, count: 40, startTime: Date.UTC(2025, 5, 1) })].map((raw, i) => {
      const e = JSON.parse(raw) as { id: string; type: string; ts: string };
      return { id: e.id, type: e.type, ts: Date.parse(e.ts), partition: 0, offset: 1e9 + i, raw, idHash: idHash(Buffer.from(e.id)) };
    });
    await deltaRsAppend(uri, extra, dataDir, env);
    await deltaRsOptimize(uri, env);
    await deltaRsCheckpoint(uri, env);
    const expected = [...keysOf(kept), ...extra.map((e) => `0:${e.offset}`)].sort();
    // A fresh reader starts from delta-rs's checkpoint.
    const fresh = await DeltaLog.open({ store: lake.store, scratch: lake.scratch });
    expect(fresh.current!.version).toBe((await deltaRsRead(uri, env)).version);
    const ours = await readLakeWithDuckDb(lake);
    expect(ours.map((r) => `${r.kafka_partition}:${r.kafka_offset}`).sort()).toEqual(expected);
    const extraRow = ours.find((r) => r.kafka_offset === extra[0]!.offset)!;
    expect([extraRow.id, extraRow.ts_ms, extraRow.raw]).toEqual([extra[0]!.id, extra[0]!.ts, extra[0]!.raw]);

    // The platform goes on: more events, another cycle (its writer appends to the changed table).
    const more = [...generateEventLines({ seed: 19, count: 500 })];
    await produceLines(log, topic, more);
    const run = await cycle();
    expect(run!.manifest.rawEvents).toBe(valid.length + more.length + extra.length);
    const read = await deltaRsRead(uri, env);
    expect(read.rows).toBe(kept.length + more.length + extra.length);
    expect(read.ids).toEqual(idsOf([...valid.map((v) => v.line), ...more, ...extra.map((e) => e.raw)]));
  });
});
