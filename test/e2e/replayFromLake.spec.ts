/**
 * Replay from the Parquet lake (Kappa+), end to end on the real broker: the lake is written by
 * `lk batch run` from the first part of the log, more events follow in the log only, and
 * `lk replay --from lake` reads the lake through its manifest up to its end, then the log from
 * exactly that offset. Checked against the independent speed oracle
 * (streaming/__tests__/support/oracle.ts), never against the code under test:
 *
 * - lake then log equals a replay from the log alone, on the same events; the same lake copied
 *   to a real S3 server (`--lake-uri s3://...`) replays as exactly;
 * - retention deletes the log's start (Kafka's own kafka-delete-records tool, the admin
 *   deleteRecords call): `--from earliest` is refused with where the log now starts and a
 *   suggestion of `--from lake`; the lake replay is still exact;
 * - the replay is SIGKILLed at seeded random moments and at the named crash points of the lake
 *   half (a lake checkpoint, the hand-over), restarted each time: the result is exact.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crashVisit } from '../../services/faults/crashPoints.ts';
import { generateEventLines, seededRandom } from '../../services/ingest/generator.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { readVersionRecord } from '../../services/versions/versionRecord.ts';
import { computeOracle, rowId, type OracleResult } from '../../streaming/__tests__/support/oracle.ts';
import {
  compareWithOracle,
  createEventsTopic,
  produceLines,
  readView,
  writeTestMetrics,
} from '../../streaming/__tests__/support/harness.ts';
import { LocalObjectStore } from '../../services/storage/localObjectStore.ts';
import { listAll } from '../../services/storage/objectStore.ts';
import { openObjectStore } from '../../services/storage/storageLocation.ts';
import { kafkaTool } from '../kafkaTools.ts';
import { startTestS3 } from '../s3.ts';
import { tempDir, testBrokers, uniqueName } from '../helpers.ts';
import { LAKE_REPLAY_POINTS } from './crashPointScenarios.ts';
import { localState } from '../sharedState.ts';
import { Pipeline, killAll, type LkProcess } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 8086);
const PARTITIONS = 3;
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/replayFromLake.spec.ts`;

describe(`replay from the lake, then the log (seed ${SEED})`, () => {
  const dir = tempDir('lk-e2e-lake-replay-');
  const topic = uniqueName('lake-replay');
  const suffix = Date.now().toString(36).slice(-5);
  const lines = [
    ...generateEventLines({
      seed: SEED,
      count: 9000,
      startTime: Date.UTC(2026, 0, 7, 22, 0),
      eventsPerSecond: 10,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 4000,
      lateRate: 0.02,
      lateMinMs: 60_000,
      lateMaxMs: 30 * 60_000,
      campaigns: 8,
      adsPerCampaign: 3,
      users: 500,
    }),
  ];
  const inLake = 6000;
  const speedArgs = ['--checkpoint-interval', '200ms', '--out-of-orderness', '2s'];
  let oracle: OracleResult;
  let metricsFile: string;
  let p: Pipeline;
  let lakeEnds: number[];

  const version = (name: string) => `${name}-${suffix}`;
  const common = () => ['--topic', topic, '--data-dir', dir.path, '--metrics', metricsFile];
  const replay = (v: string, args: string[], env: Record<string, string> = {}): LkProcess =>
    p.spawn(['replay', '--version', v, '--instance-id', 'r', ...speedArgs, ...args, ...common()], env);

  async function untilCaughtUp(v: string, proc: LkProcess): Promise<void> {
    const q = new Pipeline(dir.path, metricsFile, topic, v);
    try {
      await q.speedCaughtUp(`${v} caught up (${proc.output().slice(-800)})`);
    } finally {
      await q.close();
    }
  }

  async function expectExact(v: string, what: string): Promise<Map<string, string>> {
    const view = await readView(p.log, speedViewTopic(v));
    const problems = compareWithOracle(view, oracle);
    expect(problems.slice(0, 10), `${what}: ${problems.length} differences\n${rerun}`).toEqual([]);
    return new Map([...view.values()].map((r) => [rowId(r), `${r.count} ${r.sum} ${r.min} ${r.max} ${r.distinctSketch}`]));
  }

  /**
   * No record was read twice: a record read again (an overlap at the hand-over, a restart that
   * re-read committed offsets) is a copy of an id already seen, which dedup hides from the
   * counts but not from the duplicate count. Read from the stopped job's final status.
   */
  function expectNoOverlap(v: string, what: string): void {
    const status = JSON.parse(readFileSync(join(dir.path, 'speed', 'status', `${v}-r.json`), 'utf8')) as {
      duplicates: number;
      ready: boolean;
    };
    expect(status.ready, `${what}: the final status`).toBe(false);
    expect(status.duplicates, `${what}: duplicates seen (the oracle's: ${oracle.duplicates})\n${rerun}`).toBe(oracle.duplicates);
  }

  beforeAll(async () => {
    metricsFile = writeTestMetrics(dir.path);
    oracle = computeOracle(lines, PARTITIONS, 2000);
    p = new Pipeline(dir.path, metricsFile, topic, version('unused'));
    await createEventsTopic(p.log, topic, PARTITIONS);
    await produceLines(p.log, topic, lines.slice(0, inLake));
    await p.run(['batch', 'run', '--topic', topic, '--version', version('batch'), ...common().slice(2)]);
    lakeEnds = await p.log.endOffsets(topic);
    await produceLines(p.log, topic, lines.slice(inLake));
  });

  afterAll(async () => {
    killAll();
    await p?.close();
    dir.remove();
  });

  it('lake then log equals the replay from the log alone, on the same events', async () => {
    const fromLog = version('log');
    const proc1 = replay(fromLog, ['--from', 'earliest']);
    await untilCaughtUp(fromLog, proc1);
    const fromLake = version('lake');
    const dry = await p.run(['replay', '--version', fromLake, '--from', 'lake', '--dry-run', ...common()]);
    lakeEnds.forEach((end, k) => expect(dry).toContain(`partition ${k}: start offset 0  (lake 0..${end}, then log ${end}..`));
    const proc2 = replay(fromLake, ['--from', 'lake', '--lake-chunk', '500']);
    await untilCaughtUp(fromLake, proc2);
    expect((await readVersionRecord(localState(dir.path), fromLake))?.origin).toMatchObject({ from: 'lake', lakeEnds });
    const a = await expectExact(fromLog, 'replay from the log');
    const b = await expectExact(fromLake, 'replay from the lake, then the log');
    expect([...b].sort()).toEqual([...a].sort());
    await p.stop(proc1);
    await p.stop(proc2);
    expectNoOverlap(fromLog, 'replay from the log');
    expectNoOverlap(fromLake, 'replay from the lake, then the log');
  });

  it('the same lake on an S3 server: the replay reads its Delta table there and hands over exactly', async () => {
    const s3 = await startTestS3(['lk-replay']);
    try {
      // The lake written above, copied as it is (its Delta log and its files) to the S3 server.
      const local = new LocalObjectStore(join(dir.path, 'lake', topic));
      const remote = (await openObjectStore('s3://lk-replay/lakes', 'test', { ...process.env, ...s3.env })).child(topic);
      for (const info of await listAll(local, '')) await remote.putFile(info.key, local.localPath(info.key));
      const v = version('s3');
      const proc = replay(v, ['--from', 'lake', '--lake-chunk', '700', '--lake-uri', 's3://lk-replay/lakes'], s3.env);
      await untilCaughtUp(v, proc);
      expect((await readVersionRecord(localState(dir.path), v))?.origin).toMatchObject({ from: 'lake', lakeEnds });
      await expectExact(v, 'replay from the lake on S3, then the log');
      await p.stop(proc);
      expectNoOverlap(v, 'replay from the lake on S3, then the log');
    } finally {
      await s3.stop();
    }
  });

  it("with the log's start deleted, --from earliest is refused and the lake replay is still exact", async () => {
    // Kafka's own admin tool deletes each partition's records below an offset inside the lake's part.
    const deleteBelow = lakeEnds.map((end) => Math.floor(end / 2));
    const spec = join(dir.path, 'delete-records.json');
    writeFileSync(spec, JSON.stringify({ version: 1, partitions: deleteBelow.map((offset, partition) => ({ topic, partition, offset })) }));
    await kafkaTool('org.apache.kafka.tools.DeleteRecordsCommand', ['--bootstrap-server', testBrokers(), '--offset-json-file', spec]);
    expect(await p.log.beginningOffsets(topic)).toEqual(deleteBelow);

    const refused = p.spawn(['replay', '--version', version('gone'), '--from', 'earliest', ...common()]);
    expect((await refused.exited).code, refused.output()).toBe(2);
    expect(refused.output()).toMatch(
      /no longer starts at offset 0 \(retention deleted its start\): it now starts at partition 0 at offset \d+/,
    );
    expect(refused.output()).toMatch(/--from lake/);

    const v = version('after');
    const proc = replay(v, ['--from', 'lake', '--lake-chunk', '700']);
    await untilCaughtUp(v, proc);
    await expectExact(v, 'lake replay after the log start was deleted');
    await p.stop(proc);
    expectNoOverlap(v, 'lake replay after the log start was deleted');
  });

  it(
    'SIGKILLed at seeded random moments and at the hand-over, restarted each time: the result is exact',
    { timeout: 300_000 },
    async () => {
      const rand = seededRandom(SEED);
      const v = version('kill');
      // Slow enough (throttled, small lake reads, frequent checkpoints) to be killed mid-lake.
      const args = ['--from', 'lake', '--lake-chunk', '150', '--max-rate', '2000'];
      const kills: string[] = [];
      // A random moment early on (the lake takes seconds at this rate), a lake checkpoint, the
      // hand-over, then random moments again (the log half, or a restart still starting up).
      const crashes: { point?: string; visit?: number }[] = [
        {},
        // The visit from the seed and the point's name alone (crashVisit), like every crash test's.
        { point: LAKE_REPLAY_POINTS[0], visit: crashVisit(SEED, LAKE_REPLAY_POINTS[0]!, 3) },
        { point: LAKE_REPLAY_POINTS[1] },
        {},
        {},
      ];
      for (const { point, visit } of crashes) {
        if (point) {
          const proc = replay(v, args, { LK_CRASH_AT: visit ? `${point}@${visit}` : point });
          const exit = await Promise.race([proc.exited, new Promise<null>((r) => setTimeout(() => r(null), 90_000).unref())]);
          if (exit === null) proc.child.kill('SIGKILL');
          expect(exit?.signal, `${point}${visit ? `@${visit}` : ''} never reached: ${proc.output().slice(-1000)}\n${rerun}`).toBe(
            'SIGKILL',
          );
          expect(proc.output()).toContain(`crash point ${point} reached`);
          kills.push(`${point}${visit ? `@${visit}` : ''}`);
        } else {
          const delay = 400 + Math.floor(rand() * 1600);
          const proc = replay(v, args);
          const exited = await Promise.race([proc.exited, new Promise<null>((r) => setTimeout(() => r(null), delay))]);
          expect(exited, `the replay ended by itself before the kill: ${proc.output().slice(-1000)}`).toBeNull();
          proc.child.kill('SIGKILL');
          await proc.exited;
          kills.push(`after ${delay} ms`);
        }
      }
      const last = replay(v, args);
      await untilCaughtUp(v, last);
      await expectExact(v, `after kills ${kills.join(', ')}`);
      await p.stop(last);
      expectNoOverlap(v, `after kills ${kills.join(', ')}`);
    },
  );
});
