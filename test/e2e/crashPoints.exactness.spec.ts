/**
 * Deterministic fault injection: every named crash point (services/faults/crashPoints.ts) is
 * visited. The real `lk` process is SIGKILLed at the protocol step itself (LK_CRASH_AT=<point>@<n>,
 * n drawn from the seed), restarted without it, and the result is compared with an independent
 * oracle computed from the input alone:
 * - speed checkpoint points (Kafka, the checkpoints on a real S3 server: --state-uri s3://...) and
 *   embedded-log transaction points (the embedded log, the state in the data dir): `lk speed`
 *   dies, restarts, and its view equals the speed oracle (streaming/__tests__/support);
 * - lake roll, Delta commit and checkpoint, and batch-run points: `lk batch run` dies; the lake
 *   and the views are consistent right after the crash (every listed file exists, delta-rs reads
 *   exactly the valid records below the committed positions, CURRENT names a complete run); a
 *   second run publishes views equal to the batch oracle (batch/__tests__/batchTestKit.ts),
 *   delta-rs reads every valid record once with the oracle's ids, and every dead letter reached
 *   the dead-letter topic. The lake points run twice: the lake on a local disk, then on a real S3
 *   server (`--lake-uri s3://...`);
 * - compaction and vacuum points: `lk batch compact` dies; the lake still holds every record
 *   exactly once (for delta-rs too), and after a second compaction too; on both stores.
 * A failing point prints the one-line command that replays it exactly: each point's visit is
 * drawn from the seed and the point's name alone (crashPointScenarios.ts crashPlan), so the rerun
 * of one point crashes at the same visit as the full run did.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchRunManifestSchema } from '../../services/views/batchSnapshots.ts';
import { currentBatchRun } from '../sharedState.ts';
import { CRASH_POINTS, type CrashPoint } from '../../services/faults/crashPoints.ts';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { EmbeddedLog } from '../../services/log/embedded/embeddedLog.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { deadLetterTopic } from '../../services/log/topics.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { startTestS3, type TestS3 } from '../s3.ts';
import { deltaRsRead } from '../deltaRs.ts';
import {
  closeTo,
  oracleViews,
  lakeState,
  readLakeWithDuckDb,
  readSnapshotRows,
  testLake,
  readTopic,
  sketchRegisters,
  type OracleInput,
} from '../../batch/__tests__/batchTestKit.ts';
import { computeOracle, type OracleResult } from '../../streaming/__tests__/support/oracle.ts';
import {
  compareWithOracle,
  createEventsTopic,
  produceLines,
  readView,
  writeTestMetrics,
} from '../../streaming/__tests__/support/harness.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../helpers.ts';
import { Pipeline, killAll, type LkProcess } from './pipeline.ts';
import { LAKE_MIGRATION_POINTS, LAKE_REPLAY_POINTS, PROMOTION_POINTS, crashPlan } from './crashPointScenarios.ts';

const PLAN = crashPlan(process.env);
const SEED = PLAN.seed;
/** Only this point (from a rerun command). */
const ONLY = PLAN.only;
const PARTITIONS = 3;
const OUT_OF_ORDERNESS = '2s';

const SPEED_POINTS: CrashPoint[] = [
  'speed.checkpoint.before-snapshot-put',
  'speed.checkpoint.snapshot-written',
  'speed.checkpoint.rows-sent',
  'speed.checkpoint.offsets-sent',
  'speed.checkpoint.committed',
];
const EMBEDDED_POINTS: CrashPoint[] = [
  'embedded.txn.before-redo-rename',
  'embedded.txn.redo-committed',
  'embedded.txn.partly-applied',
  'embedded.txn.records-applied',
];
const BATCH_POINTS: CrashPoint[] = [
  'lake.roll.files-written',
  'lake.roll.files-uploaded',
  'lake.roll.dead-letters-sent',
  'lake.commit.written',
  'lake.checkpoint.written',
  'batch.run.rows-written',
  'batch.run.placed',
  'batch.run.before-current-swap',
  'batch.run.current-swapped',
];
const COMPACTION_POINTS: CrashPoint[] = ['lake.compaction.file-uploaded', 'lake.compaction.committed', 'lake.vacuum.deleted'];

/**
 * Visits a point may crash at: the speed checkpoint and embedded-log points at their first,
 * second or third visit, the lake's at one of four rolls; a batch run's points and the dead
 * letters' are visited once per run, compaction's once.
 */
function choicesOf(point: CrashPoint): number {
  if (SPEED_POINTS.includes(point) || EMBEDDED_POINTS.includes(point)) return 3;
  if (point.startsWith('batch.run') || point === 'lake.roll.dead-letters-sent' || COMPACTION_POINTS.includes(point)) return 1;
  return 4;
}
const visitOf = (point: CrashPoint) => PLAN.visit(point, choicesOf(point));
const rerun = (point: CrashPoint) => PLAN.rerun(point, choicesOf(point));
const selected = (points: CrashPoint[]) => points.filter((p) => ONLY === undefined || ONLY === p);

/** Records a foreign producer could write: the lake writer sends each to the dead-letter topic. */
const INVALID = ['not json at all', '{"id":"bad-1","type":"click"}', '{"id":42,"type":"click","ts":"2026-01-01T00:00:00Z"}', '[1,2,3]'];
/** The invalid records that are readable JSON objects: the lake keeps them too (NULL typed columns; another mapping may read them). */
const READABLE_INVALID = [INVALID[1]!, INVALID[2]!];

describe(`every crash point, restart, exact result (seed ${SEED})`, () => {
  const dir = tempDir('lk-e2e-crash-');
  const lines = [
    ...generateEventLines({
      seed: SEED,
      count: 6000,
      startTime: Date.UTC(2026, 0, 1, 23, 50),
      eventsPerSecond: 20,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 4000,
      lateRate: 0.02,
      lateMinMs: 60_000,
      lateMaxMs: 20 * 60_000,
    }),
  ];
  const speedTopic = uniqueName('crash-speed');
  const batchTopic = uniqueName('crash-batch');
  let metricsFile: string;
  let speedOracle: OracleResult;
  let kafka: Pipeline;
  let s3: TestS3;

  beforeAll(async () => {
    // One S3 server: the lakes of the lake points (lk-crash), the speed points' shared state (state).
    s3 = await startTestS3(['lk-crash', 'state']);
    Object.assign(process.env, s3.env);
    metricsFile = writeTestMetrics(dir.path);
    speedOracle = computeOracle(lines, PARTITIONS, 2000);
    kafka = new Pipeline(join(dir.path, 'kafka'), metricsFile, speedTopic, 'unused');
    await createEventsTopic(kafka.log, speedTopic, PARTITIONS);
    await produceLines(kafka.log, speedTopic, lines);
    await createEventsTopic(kafka.log, batchTopic, PARTITIONS);
    await produceLines(kafka.log, batchTopic, lines);
    const producer = await kafka.log.producer();
    await producer.send(
      batchTopic,
      INVALID.map((value, i) => ({ key: `bad-${i}`, value })),
    );
    await producer.close();
  });

  afterAll(async () => {
    killAll();
    await kafka?.close();
    await s3?.stop();
    dir.remove();
  });

  it('every crash point has a scenario below', () => {
    const covered = new Set([
      ...SPEED_POINTS,
      ...EMBEDDED_POINTS,
      ...BATCH_POINTS,
      ...COMPACTION_POINTS,
      ...PROMOTION_POINTS,
      ...LAKE_REPLAY_POINTS,
      ...LAKE_MIGRATION_POINTS,
    ]);
    expect(Object.keys(CRASH_POINTS).filter((p) => !covered.has(p as CrashPoint))).toEqual([]);
  });

  /** Waits for a process started with LK_CRASH_AT to kill itself there. */
  async function crashed(proc: LkProcess, point: CrashPoint): Promise<void> {
    const exit = await Promise.race([proc.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 90_000).unref())]);
    if (exit === 'timeout') proc.child.kill('SIGKILL');
    expect(exit === 'timeout' ? 'never reached' : exit.signal, `${point}: ${proc.output().slice(-1500)}\n${rerun(point)}`).toBe('SIGKILL');
    expect(proc.output()).toContain(`crash point ${point} reached`);
  }

  /** One speed point: crash in the protocol step, restart, the view must equal the oracle. */
  async function speedScenario(point: CrashPoint, log: EventLog, env: Record<string, string>, p: Pipeline): Promise<void> {
    const visit = visitOf(point);
    const args = ['--out-of-orderness', OUT_OF_ORDERNESS];
    await crashed(p.startSpeed('crash', args, { ...env, LK_CRASH_AT: `${point}@${visit}` }), point);
    const again = p.startSpeed('again', args, env);
    try {
      await p.speedCaughtUp(`${point}: the restarted job to catch up (${again.output().slice(-500)})`);
    } finally {
      await p.stop(again);
    }
    const problems = compareWithOracle(await readView(log, speedViewTopic(p.version)), speedOracle);
    expect(problems.slice(0, 10), `${point}@${visit}: ${problems.length} differences\n${rerun(point)}`).toEqual([]);
  }

  it(
    'speed checkpoint: crash at each step of the two-phase commit, restart, the view equals the oracle',
    { timeout: 400_000 },
    async () => {
      // In parallel (one job version each): a killed member's partitions wait for its session to time out.
      // The state on S3: the snapshot's create-only put is the step the first two points surround.
      await Promise.all(
        selected(SPEED_POINTS).map((point, i) => {
          const env = { KAFKA_BROKERS: testBrokers(), LK_STATE_URI: `s3://state/crash-${i}`, ...s3.env };
          const p = new Pipeline(join(dir.path, `speed-${i}`), metricsFile, speedTopic, `crash-${i}-${Date.now().toString(36)}`, env);
          return speedScenario(point, kafka.log, env, p).finally(() => p.close());
        }),
      );
    },
  );

  it('embedded log transactions: crash at each step, restart, the view equals the oracle', { timeout: 400_000 }, async () => {
    for (const [i, point] of selected(EMBEDDED_POINTS).entries()) {
      const data = join(dir.path, `embedded-${i}`);
      const p = new Pipeline(data, metricsFile, 'events', `emb${i}`, { KAFKA_BROKERS: '' });
      writeFileSyncLines(join(data, 'in.jsonl'), lines);
      await p.run(['topics', 'create', '--partitions', String(PARTITIONS), ...p.common()]);
      await p.run(['produce', '--file', join(data, 'in.jsonl'), ...p.common()]);
      const log = new EmbeddedLog({ root: join(data, 'log') });
      try {
        await speedScenarioEmbedded(point, log, p);
      } finally {
        await log.close();
        await p.close();
      }
    }
  });

  async function speedScenarioEmbedded(point: CrashPoint, log: EventLog, p: Pipeline): Promise<void> {
    const visit = visitOf(point);
    const args = ['--out-of-orderness', OUT_OF_ORDERNESS];
    await crashed(p.startSpeed('crash', args, { LK_CRASH_AT: `${point}@${visit}` }), point);
    const again = p.startSpeed('again', args);
    try {
      const ends = await log.endOffsets('events');
      await eventually(
        async () => {
          const { partitions } = await p.speedStatus();
          return ends.every((end, k) => partitions.get(k)?.committedOffset === end) ? true : undefined;
        },
        `${point}: the restarted job to catch up (${again.output().slice(-500)})`,
        120_000,
      );
    } finally {
      await p.stop(again);
    }
    const problems = compareWithOracle(await readView(log, speedViewTopic(p.version)), speedOracle);
    expect(problems.slice(0, 10), `${point}@${visit}: ${problems.length} differences\n${rerun(point)}`).toEqual([]);
  }

  let batchOracle: Map<string, ReturnType<typeof oracleViews> extends Map<string, infer R> ? R : never>;

  async function expectBatchViewsExact(p: Pipeline, label: string, point?: CrashPoint): Promise<void> {
    batchOracle ??= oracleViews(
      (await readTopic(kafka.log, batchTopic))
        .flat()
        .filter((r) => !INVALID.includes(r.value!.toString('utf8')))
        .map<OracleInput>((r) => ({ partition: r.partition, offset: r.offset, line: r.value!.toString('utf8') })),
    );
    const run = (await currentBatchRun(p.dataDir, p.version))!;
    const got = await readSnapshotRows(run.rowsPath!);
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const r of got) {
      const k = `${r.metric}|${r.granularity}|${r.key}|${r.window_start}|${r.partition}`;
      seen.add(k);
      const want = batchOracle.get(k);
      if (!want) problems.push(`unexpected row ${k}`);
      else if (
        r.count !== want.count ||
        r.raw_count !== want.rawCount ||
        !closeTo(r.sum, want.sum) ||
        r.min !== want.min ||
        r.max !== want.max
      )
        problems.push(`row ${k}: got ${r.count}/${r.raw_count}/${r.sum}, want ${want.count}/${want.rawCount}/${want.sum}`);
      else if (r.distinct_sketch !== null) {
        const h = new HyperLogLog();
        for (const v of want.distinctValues) h.add(v);
        if (Buffer.compare(sketchRegisters(r.distinct_sketch), sketchRegisters(h.toBase64())) !== 0)
          problems.push(`row ${k}: sketch differs`);
      }
    }
    for (const k of batchOracle.keys()) if (!seen.has(k)) problems.push(`missing row ${k}`);
    expect(problems.slice(0, 10), `${label}: ${problems.length} differences\n${point ? rerun(point) : ''}`).toEqual([]);
  }

  /** Where a scenario keeps its lake: its data dir, or a prefix of its own on the S3 server. */
  interface LakePlace {
    args: string[];
    lake: LakeHandle;
    /** The table as delta-rs names it. */
    uri: string;
  }

  async function lakePlace(p: Pipeline, onS3: boolean, name: string): Promise<LakePlace> {
    const lakeUri = onS3 ? `s3://lk-crash/${name}` : undefined;
    return {
      args: lakeUri ? ['--lake-uri', lakeUri] : [],
      lake: await testLake(p.dataDir, batchTopic, lakeUri),
      uri: lakeUri ? `${lakeUri}/${batchTopic}` : join(p.dataDir, 'lake', batchTopic),
    };
  }

  /**
   * The records the lake keeps (the batch topic's valid ones and its readable invalid ones), as
   * `partition:offset` keys, with the event id (null: no event).
   */
  let keptRecords: { key: string; partition: number; offset: number; id: string | null }[];
  async function kept(): Promise<typeof keptRecords> {
    keptRecords ??= (await readTopic(kafka.log, batchTopic))
      .flat()
      .filter((r) => !INVALID.includes(r.value!.toString('utf8')) || READABLE_INVALID.includes(r.value!.toString('utf8')))
      .map((r) => {
        const text = r.value!.toString('utf8');
        return {
          key: `${r.partition}:${r.offset}`,
          partition: r.partition,
          offset: r.offset,
          id: INVALID.includes(text) ? null : (JSON.parse(text) as { id: string }).id,
        };
      });
    return keptRecords;
  }

  /**
   * Right after a crash: every file the log lists exists; delta-rs and the platform's reader see
   * exactly the kept records below the committed positions; CURRENT names a complete run (or none).
   */
  async function expectConsistentAfterCrash(p: Pipeline, place: LakePlace, point: CrashPoint, where: string): Promise<void> {
    const state = await lakeState(place.lake);
    for (const f of state.files)
      expect(await place.lake.store.head(f.key), `${point} (${where}): listed ${f.key}\n${rerun(point)}`).toBeDefined();
    if (state.version >= 0) {
      const below = (await kept()).filter((v) => v.offset < (state.positions.get(v.partition)?.nextOffset ?? 0)).map((v) => v.key);
      const ours = (await readLakeWithDuckDb(place.lake)).map((r) => `${r.kafka_partition}:${r.kafka_offset}`);
      const read = await deltaRsRead(place.uri, s3.env);
      expect(read.keys, `${point} (${where}): delta-rs after the crash\n${rerun(point)}`).toEqual(below.sort());
      expect(ours.sort(), `${point} (${where}): the platform's reader after the crash\n${rerun(point)}`).toEqual(read.keys);
    }
    const current = join(p.dataDir, 'views', p.version, 'CURRENT');
    if (existsSync(current)) {
      const { runId } = JSON.parse(readFileSync(current, 'utf8')) as { runId: string };
      const runDir = join(p.dataDir, 'views', p.version, 'runs', runId);
      expect(existsSync(join(runDir, 'rows.parquet')), `${point} (${where}): CURRENT names a run without rows\n${rerun(point)}`).toBe(true);
      batchRunManifestSchema.parse(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')));
    }
  }

  /**
   * Every record the lake keeps (the valid ones and the readable invalid ones) exactly once, for
   * the platform and for delta-rs, with the oracle's ids.
   */
  async function expectLakeComplete(place: LakePlace, label: string, point?: CrashPoint): Promise<void> {
    const all = await kept();
    const lake = await readLakeWithDuckDb(place.lake);
    expect(lake.length, `${label}: lake rows\n${point ? rerun(point) : ''}`).toBe(all.length);
    expect(new Set(lake.map((r) => `${r.kafka_partition}:${r.kafka_offset}`)).size).toBe(all.length);
    const read = await deltaRsRead(place.uri, s3.env);
    expect(read.rows, `${label}: delta-rs rows\n${point ? rerun(point) : ''}`).toBe(all.length);
    expect(read.keys).toEqual(all.map((v) => v.key).sort());
    expect(read.ids).toEqual([...new Set(all.flatMap((v) => (v.id === null ? [] : [v.id])))].sort());
  }

  describe.each([
    ['a local disk', false],
    ['the S3 server', true],
  ])('the lake on %s', (where, onS3) => {
    it(
      `lake rolls, Delta commits${onS3 ? '' : ' and batch runs'}: crash at each step, rerun, the views equal the oracle`,
      { timeout: 400_000 },
      async () => {
        // On S3 larger rolls (each commit there is a few round trips): still more than 40 commits,
        // so that the fourth checkpoint can be the one killed.
        const batchArgs = ['--roll-size', onS3 ? '24k' : '16k', '--roll-interval', '10s'];
        const points = selected(BATCH_POINTS).filter((point) => !onS3 || point.startsWith('lake.'));
        for (const [i, point] of points.entries()) {
          const name = `batch-${onS3 ? 's3' : 'local'}-${i}`;
          const p = new Pipeline(join(dir.path, name), metricsFile, batchTopic, 'v1');
          const place = await lakePlace(p, onS3, name);
          const visit = visitOf(point);
          // A lake of its own, so a consumer group of its own: the killed writer's membership
          // (until its session times out) must not hold back the next scenario's writer.
          const args = [...batchArgs, ...place.args, '--group', `lk-batch-crash-${name}`];
          const proc = p.spawn(['batch', 'run', '--topic', batchTopic, ...args, ...p.common()], { LK_CRASH_AT: `${point}@${visit}` });
          await crashed(proc, point);
          await expectConsistentAfterCrash(p, place, point, where);
          await p.run(['batch', 'run', '--topic', batchTopic, ...args, ...p.common()]);
          await expectBatchViewsExact(p, `${point}@${visit} (${where})`, point);
          await expectLakeComplete(place, `${point} (${where})`, point);
          await p.close();
        }
        // Every invalid record reached the dead-letter topic (a crash may repeat one, never lose one).
        const dead = (await readTopic(kafka.log, deadLetterTopic(batchTopic))).flat().map((r) => r.value!.toString('utf8'));
        for (const bad of INVALID) expect(dead, bad).toContain(bad);
      },
    );

    it(
      'compaction and vacuum: crash before and after the swap and in vacuum, the lake still holds every record once',
      { timeout: 400_000 },
      async () => {
        const name = `compact-${onS3 ? 's3' : 'local'}`;
        const p = new Pipeline(join(dir.path, name), metricsFile, batchTopic, 'v1');
        const place = await lakePlace(p, onS3, name);
        const group = ['--group', `lk-batch-crash-${name}`, ...place.args];
        // Many small files (fewer on S3, where each commit is a few round trips).
        await p.run([
          'batch',
          'run',
          '--topic',
          batchTopic,
          '--roll-size',
          onS3 ? '8k' : '4k',
          '--roll-interval',
          '10s',
          ...group,
          ...p.common(),
        ]);
        const filesBefore = (await lakeState(place.lake)).files.length;
        expect(filesBefore).toBeGreaterThan(10);
        // Vacuum at once (no retention), so that it has the replaced files to delete.
        const compact = [
          'batch',
          'compact',
          '--topic',
          batchTopic,
          '--target-file-size',
          '64k',
          '--vacuum-retention',
          '0s',
          ...place.args,
          ...p.common(),
        ];
        for (const point of selected(COMPACTION_POINTS)) {
          const proc = p.spawn(compact, { LK_CRASH_AT: `${point}@${visitOf(point)}` });
          await crashed(proc, point);
          await expectConsistentAfterCrash(p, place, point, where);
          await expectLakeComplete(place, `${point} (${where}), after the crash`, point);
        }
        await p.run(compact);
        expect((await lakeState(place.lake)).files.length).toBeLessThan(filesBefore);
        await expectLakeComplete(place, `after compaction (${where})`);
        await p.run(['batch', 'run', '--topic', batchTopic, ...group, ...p.common()]);
        await expectBatchViewsExact(p, `after compaction (${where})`);
        await p.close();
      },
    );
  });
});

function writeFileSyncLines(path: string, lines: readonly string[]): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, lines.join('\n') + '\n');
}
