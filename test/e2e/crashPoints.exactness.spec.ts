/**
 * Deterministic fault injection: every named crash point (services/faults/crashPoints.ts) is
 * visited. The real `lk` process is SIGKILLed at the protocol step itself (LK_CRASH_AT=<point>@<n>,
 * n drawn from the seed), restarted without it, and the result is compared with an independent
 * oracle computed from the input alone:
 * - speed checkpoint points (Kafka) and embedded-log transaction points (the embedded log):
 *   `lk speed` dies, restarts, and its view equals the speed oracle (streaming/__tests__/support);
 * - lake roll, manifest and batch-run points: `lk batch run` dies; the lake and the views are
 *   consistent right after the crash (every listed file exists, CURRENT names a complete run);
 *   a second run publishes views equal to the batch oracle (batch/__tests__/batchTestKit.ts), and
 *   every dead letter reached the dead-letter topic;
 * - compaction points: `lk batch compact` dies; the lake still holds every record exactly once,
 *   and after a second compaction too.
 * A failing point prints the one-line command that replays it exactly: each point's visit is
 * drawn from the seed and the point's name alone (crashPointScenarios.ts crashPlan), so the rerun
 * of one point crashes at the same visit as the full run did.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchRunManifestSchema, readCurrentBatchRun } from '../../services/views/batchSnapshots.ts';
import { CRASH_POINTS, type CrashPoint } from '../../services/faults/crashPoints.ts';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { EmbeddedLog } from '../../services/log/embedded/embeddedLog.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { deadLetterTopic } from '../../services/log/topics.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { LakeManifest } from '../../services/lake/commitProtocol.ts';
import {
  closeTo,
  oracleViews,
  readLakeWithDuckDb,
  readSnapshotRows,
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
import { LAKE_REPLAY_POINTS, PROMOTION_POINTS, crashPlan } from './crashPointScenarios.ts';

const PLAN = crashPlan(process.env);
const SEED = PLAN.seed;
/** Only this point (from a rerun command). */
const ONLY = PLAN.only;
const PARTITIONS = 3;
const OUT_OF_ORDERNESS = '2s';

const SPEED_POINTS: CrashPoint[] = [
  'speed.checkpoint.before-snapshot-rename',
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
  'lake.roll.files-placed',
  'lake.roll.dead-letters-sent',
  'lake.manifest.entry-written',
  'lake.roll.committed',
  'batch.run.rows-written',
  'batch.run.renamed',
  'batch.run.before-current-rename',
  'batch.run.current-swapped',
];
const COMPACTION_POINTS: CrashPoint[] = ['lake.compaction.file-placed', 'lake.compaction.committed'];

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
const READABLE_INVALID = 2;

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

  beforeAll(async () => {
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
      await Promise.all(
        selected(SPEED_POINTS).map((point, i) => {
          const p = new Pipeline(join(dir.path, `speed-${i}`), metricsFile, speedTopic, `crash-${i}-${Date.now().toString(36)}`);
          return speedScenario(point, kafka.log, { KAFKA_BROKERS: testBrokers() }, p).finally(() => p.close());
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
        () => {
          const { partitions } = p.speedStatus();
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
    const run = readCurrentBatchRun(join(p.dataDir, 'views'), p.version)!;
    const got = await readSnapshotRows(run.rowsPath);
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

  /** Right after a crash: readers see a consistent lake and a complete current run (or none). */
  function expectConsistentAfterCrash(p: Pipeline, point: CrashPoint): void {
    const lakeRoot = join(p.dataDir, 'lake', batchTopic);
    if (existsSync(lakeRoot)) {
      for (const f of LakeManifest.open(lakeRoot).snapshot().files)
        expect(existsSync(join(lakeRoot, f.path)), `${point}: listed ${f.path}\n${rerun(point)}`).toBe(true);
    }
    const current = join(p.dataDir, 'views', p.version, 'CURRENT');
    if (existsSync(current)) {
      const { runId } = JSON.parse(readFileSync(current, 'utf8')) as { runId: string };
      const runDir = join(p.dataDir, 'views', p.version, 'runs', runId);
      expect(existsSync(join(runDir, 'rows.parquet')), `${point}: CURRENT names a run without rows\n${rerun(point)}`).toBe(true);
      batchRunManifestSchema.parse(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')));
    }
  }

  it(
    'lake rolls, manifest commits and batch runs: crash at each step, rerun, the views equal the oracle',
    { timeout: 400_000 },
    async () => {
      const batchArgs = ['--roll-size', '16k', '--roll-interval', '10s'];
      for (const [i, point] of selected(BATCH_POINTS).entries()) {
        const p = new Pipeline(join(dir.path, `batch-${i}`), metricsFile, batchTopic, 'v1');
        const visit = visitOf(point);
        // A lake of its own, so a consumer group of its own: the killed writer's membership
        // (until its session times out) must not hold back the next scenario's writer.
        const args = [...batchArgs, '--group', `lk-batch-crash-${i}`];
        const proc = p.spawn(['batch', 'run', '--topic', batchTopic, ...args, ...p.common()], { LK_CRASH_AT: `${point}@${visit}` });
        await crashed(proc, point);
        expectConsistentAfterCrash(p, point);
        await p.run(['batch', 'run', '--topic', batchTopic, ...args, ...p.common()]);
        await expectBatchViewsExact(p, `${point}@${visit}`, point);
        const lake = await readLakeWithDuckDb(join(p.dataDir, 'lake', batchTopic));
        expect(lake.length, `${point}: lake rows\n${rerun(point)}`).toBe(lines.length + READABLE_INVALID);
        expect(new Set(lake.map((r) => `${r.kafka_partition}/${r.kafka_offset}`)).size).toBe(lines.length + READABLE_INVALID);
        await p.close();
      }
      // Every invalid record reached the dead-letter topic (a crash may repeat one, never lose one).
      const dead = (await readTopic(kafka.log, deadLetterTopic(batchTopic))).flat().map((r) => r.value!.toString('utf8'));
      for (const bad of INVALID) expect(dead, bad).toContain(bad);
    },
  );

  it('compaction: crash before and after its swap, the lake still holds every record once', { timeout: 400_000 }, async () => {
    const p = new Pipeline(join(dir.path, 'compact'), metricsFile, batchTopic, 'v1');
    const group = ['--group', 'lk-batch-crash-compact'];
    await p.run(['batch', 'run', '--topic', batchTopic, '--roll-size', '4k', '--roll-interval', '10s', ...group, ...p.common()]);
    const lakeRoot = join(p.dataDir, 'lake', batchTopic);
    const filesBefore = LakeManifest.open(lakeRoot).snapshot().files.length;
    expect(filesBefore).toBeGreaterThan(10);
    for (const point of selected(COMPACTION_POINTS)) {
      const proc = p.spawn(['batch', 'compact', '--topic', batchTopic, '--target-file-size', '64k', ...p.common()], {
        LK_CRASH_AT: `${point}@${visitOf(point)}`,
      });
      await crashed(proc, point);
      expectConsistentAfterCrash(p, point);
      const lake = await readLakeWithDuckDb(lakeRoot);
      expect(lake.length, `${point}: lake rows after the crash\n${rerun(point)}`).toBe(lines.length + READABLE_INVALID);
      expect(new Set(lake.map((r) => `${r.kafka_partition}/${r.kafka_offset}`)).size).toBe(lines.length + READABLE_INVALID);
    }
    await p.run(['batch', 'compact', '--topic', batchTopic, '--target-file-size', '64k', ...p.common()]);
    expect(LakeManifest.open(lakeRoot).snapshot().files.length).toBeLessThan(filesBefore);
    expect((await readLakeWithDuckDb(lakeRoot)).length).toBe(lines.length + READABLE_INVALID);
    await p.run(['batch', 'run', '--topic', batchTopic, ...group, ...p.common()]);
    await expectBatchViewsExact(p, 'after compaction');
    await p.close();
  });
});

function writeFileSyncLines(path: string, lines: readonly string[]): void {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, lines.join('\n') + '\n');
}
