/**
 * The Spark engine over a lake on S3 (versitygw on 127.0.0.1, started by the test), and the
 * spark-submit flow for users' own schedulers:
 * - the platform writes the lake on the S3 server (`lk batch run --engine duckdb --lake-uri
 *   s3://...`, DuckDB's run published in one shared state on S3); `lk batch run --engine spark
 *   --lake-uri s3://... --state-uri s3://...` reads the same lake through Hadoop's S3A and its
 *   rows equal DuckDB's, row for row, every column; serving, reading the Spark run from the S3
 *   state, answers exactly as the oracle computed from the input alone;
 * - `lk batch plan --engine spark`, the pinned pyspark's own `spark-submit` running viewsJob.py on
 *   that plan, then `lk batch publish --run <dir>` publish the same rows; a run folder whose job
 *   output is missing or malformed, or whose record is, is refused and publishes nothing;
 * - a wrong secret key fails with one line naming the cause, from `lk` and from the job under
 *   spark-submit; no secret (the right one or the wrong one) is in any output, plan, run record
 *   or object the runs wrote.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { fieldValuesOf } from '../../services/metrics/fieldSemantics.ts';
import { openObjectStore } from '../../services/storage/storageLocation.ts';
import { localRowsFile, readCurrentBatchRun, type BatchRunManifest } from '../../services/views/batchSnapshots.ts';
import { ensureSpark } from '../../batch/engines/spark/sparkInstall.ts';
import { firstDifference, readRunRows } from '../../batch/engines/spark/__tests__/sparkTestKit.ts';
import { S3_SECRET_KEY } from '../../scripts/s3server.mjs';
import type { LoggedEvent } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { METRICS, gqlData, startTestServer, testLog } from '../../serving/__tests__/fixtures/testServer.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../helpers.ts';
import { startTestS3, type TestS3 } from '../s3.ts';
import { checkServingAgainstOracle } from './servingOracle.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 9121);
const REPO = new URL('../../', import.meta.url).pathname;
const COUNT = 1500;
const WRONG_SECRET = 'wrong-secret-0123456789abcdef';
const BUCKET = 'lk-spark';

interface Run {
  code: number | null;
  out: string;
}

/** Runs a command to its end, stdout and stderr together (what a user sees). */
function exec(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  const child = spawn(cmd, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, out })));
}

describe('the Spark engine over a lake on S3, and spark-submit under another scheduler', () => {
  const dir = tempDir('lk-spark-s3-');
  const topic = uniqueName('spark-s3');
  const version = uniqueName('s')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-24);
  const lines = [
    ...generateEventLines({
      seed: SEED,
      count: COUNT,
      startTime: Date.now() - COUNT * 1000 - 60_000,
      eventsPerSecond: 1,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 5_000,
      lateRate: 0,
      campaigns: 5,
      adsPerCampaign: 3,
      users: 200,
    }),
  ];
  const events: LoggedEvent[] = lines.map((l, i) => {
    const raw = JSON.parse(l);
    return { id: raw.id, ts: Date.parse(raw.ts), fields: raw, values: fieldValuesOf(raw, {}), partition: 0, offset: i, appendTime: 0 };
  });
  const lakeUri = `s3://${BUCKET}/lakes`;
  const duckState = `s3://${BUCKET}/state-duckdb`;
  const sparkState = `s3://${BUCKET}/state`;
  const common = ['--topic', topic, '--version', version, '--data-dir', dir.path, '--metrics', join(REPO, 'metrics.yaml')];
  const outputs: string[] = [];
  let s3: TestS3;
  const saved: Record<string, string | undefined> = {};

  function lkEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...process.env, KAFKA_BROKERS: testBrokers(), LK_LOG_LEVEL: 'warn', ...s3.env, ...extra };
  }

  async function lk(args: string[], extra: Record<string, string> = {}): Promise<Run> {
    const r = await exec(process.execPath, [join(REPO, 'bin/lk.js'), ...args], lkEnv(extra));
    outputs.push(r.out);
    return r;
  }

  async function lkOk(args: string[]): Promise<string> {
    const r = await lk(args);
    if (r.code !== 0) throw new Error(`lk ${args.join(' ')} exited with ${r.code} (seed ${SEED}):\n${r.out}`);
    return r.out;
  }

  /** The current run of `stateUri` and its rows, in one order, every column (bigints as numbers). */
  async function currentRows(stateUri: string): Promise<{ manifest: BatchRunManifest; rows: Record<string, unknown>[] }> {
    const state = await openObjectStore(stateUri, '--state-uri', s3.env);
    const run = await readCurrentBatchRun(state, version);
    if (!run) throw new Error(`no batch run of ${version} in ${stateUri}`);
    const file = await localRowsFile(state, run, join(dir.path, 'test-cache', stateUri.replace(/\W/g, '_')));
    return { manifest: run.manifest, rows: await readRunRows(file) };
  }

  /** The Spark run's rows equal DuckDB's (sums up to rounding: the engines add in other orders). */
  async function expectSameRowsAsDuckDb(stage: string): Promise<BatchRunManifest> {
    const duck = await currentRows(duckState);
    const spark = await currentRows(sparkState);
    expect(spark.manifest.engine, stage).toBe('spark');
    expect(spark.manifest.cut, stage).toEqual(duck.manifest.cut);
    expect([spark.manifest.rawEvents, spark.manifest.uniqueEvents, spark.manifest.misplacedEvents], stage).toEqual([
      duck.manifest.rawEvents,
      duck.manifest.uniqueEvents,
      duck.manifest.misplacedEvents,
    ]);
    expect(spark.rows.length, stage).toBeGreaterThan(0);
    const metricNames = new Set(METRICS.metrics.map((m) => m.name));
    expect(firstDifference(spark.rows, duck.rows, metricNames), `${stage} (seed ${SEED})`).toBeUndefined();
    return spark.manifest;
  }

  /** spark-submit of the pinned pyspark, as a user's scheduler would run the planned job. */
  async function sparkSubmit(planOutput: string, extra: Record<string, string> = {}): Promise<Run> {
    const m = /run the job: {2}spark-submit --jars (\S+) (\S+) (\S+)/.exec(planOutput);
    if (!m) throw new Error(`lk batch plan printed no spark-submit line:\n${planOutput}`);
    const install = ensureSpark({ quiet: true });
    const r = await exec(
      join(dirname(install.python), 'spark-submit'),
      ['--master', 'local[2]', '--driver-memory', '1g', '--jars', m[1]!, m[2]!, m[3]!],
      {
        ...process.env,
        ...s3.env,
        JAVA_HOME: install.javaHome,
        PYSPARK_PYTHON: install.python,
        SPARK_LOCAL_IP: '127.0.0.1',
        ...extra,
      },
    );
    outputs.push(r.out);
    return r;
  }

  beforeAll(async () => {
    s3 = await startTestS3([BUCKET]);
    // Serving runs in this process and reads the shared state on the S3 server.
    for (const [k, v] of Object.entries(s3.env)) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    const log = testLog('lk-spark-s3');
    try {
      await log.createTopics(eventTopicSpecs(topic, 3));
    } finally {
      await log.close();
    }
    writeFileSync(join(dir.path, 'events.jsonl'), lines.join('\n') + '\n');
    await lkOk(['produce', '--topic', topic, '--file', join(dir.path, 'events.jsonl'), '--data-dir', dir.path]);
    // The platform writes the lake on S3, and DuckDB's run over it is the reference.
    await lkOk(['batch', 'run', '--engine', 'duckdb', '--lake-uri', lakeUri, '--state-uri', duckState, ...common]);
  });

  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await s3?.stop();
    dir.remove();
  });

  it('lk batch run --engine spark --lake-uri s3://... equals DuckDB over the same lake, row for row; serving answers as the oracle', async () => {
    const out = await lkOk([
      'batch',
      'run',
      '--engine',
      'spark',
      '--spark-master',
      'local[2]',
      '--lake-uri',
      lakeUri,
      '--state-uri',
      sparkState,
      ...common,
    ]);
    expect(out).toContain('(spark)');
    const manifest = await expectSameRowsAsDuckDb('lk batch run --engine spark on S3');
    const server = await startTestServer(dir.path, {
      defaultVersion: version,
      stateUri: sparkState,
      maxCost: 100_000_000,
      batchPollMs: 200,
    });
    try {
      await eventually(async () => {
        const d = await gqlData(server.url, '{ pipeline { serving { batchView { runId } } } }');
        return d.pipeline.serving.batchView?.runId === manifest.runId ? true : undefined;
      }, `Spark batch run ${manifest.runId} installed from ${sparkState}`);
      await checkServingAgainstOracle(server.url, events, 'BATCH', `Spark run over the S3 lake (seed ${SEED})`);
    } finally {
      await server.close();
    }
  });

  it('lk batch plan, spark-submit viewsJob.py, lk batch publish --run: the same rows; a missing or malformed run is refused, nothing published', async () => {
    const runDir = join(dir.path, 'planned');
    const plan = ['batch', 'plan', '--engine', 'spark', '--lake-uri', lakeUri, '--state-uri', sparkState, '--out', runDir, ...common];
    const planned = await lkOk(plan);
    expect(planned).toContain('then publish: lk batch publish --run');
    const job = await sparkSubmit(planned);
    expect(job.code, `spark-submit (seed ${SEED}):\n${job.out.slice(-3000)}`).toBe(0);
    const before = (await currentRows(sparkState)).manifest.runId;

    // Broken copies of the run folder: each refused with its reason, CURRENT untouched.
    const broken: [string, (d: string) => void, RegExp][] = [
      ['rows missing', (d) => rmSync(join(d, 'out', 'rows'), { recursive: true }), /incomplete \(no rows\/_SUCCESS\)/],
      ['counts missing', (d) => rmSync(join(d, 'out', 'counts.json')), /incomplete \(no counts\.json\)/],
      ['counts malformed', (d) => writeFileSync(join(d, 'out', 'counts.json'), '{"raw": -1}'), /counts\.json is malformed \(raw: /],
      [
        'record malformed',
        (d) => {
          const record = JSON.parse(readFileSync(join(d, 'spark-run.json'), 'utf8'));
          delete record.cut;
          writeFileSync(join(d, 'spark-run.json'), JSON.stringify(record));
        },
        /spark-run\.json is malformed \(cut: /,
      ],
      ['rows not Parquet', (d) => writeFileSync(join(d, 'out', 'rows', 'part-x.parquet'), 'not parquet'), /cannot be read as Parquet/],
    ];
    for (const [what, breakIt, reason] of broken) {
      const copy = join(dir.path, `broken-${what.replace(/\W/g, '-')}`);
      cpSync(runDir, copy, { recursive: true });
      breakIt(copy);
      const r = await lk(['batch', 'publish', '--run', copy, ...common, '--state-uri', sparkState]);
      expect(r.code, `${what}: ${r.out}`).not.toBe(0);
      expect(r.out, what).toMatch(reason);
      expect(r.out.trim().split('\n'), `${what}: one line`).toHaveLength(1);
      expect((await currentRows(sparkState)).manifest.runId, `${what}: nothing published`).toBe(before);
      expect(existsSync(copy), `${what}: a refused run folder stays for inspection`).toBe(true);
    }

    const published = await lkOk(['batch', 'publish', '--run', runDir, ...common, '--state-uri', sparkState]);
    expect(published).toContain('(spark)');
    const manifest = await expectSameRowsAsDuckDb('spark-submit, then lk batch publish');
    expect(manifest.runId).not.toBe(before);
    expect(published).toContain(manifest.runId);
    expect(existsSync(runDir), 'a published run folder is removed').toBe(false);
    // A second publish of the same folder finds nothing to publish.
    const again = await lk(['batch', 'publish', '--run', runDir, ...common, '--state-uri', sparkState]);
    expect(again.code).not.toBe(0);
    expect(again.out).toMatch(/is not a planned Spark run/);
  });

  it('a wrong secret key fails with one line naming the cause, from lk and from the job; no secret anywhere', async () => {
    const wrong = { AWS_SECRET_ACCESS_KEY: WRONG_SECRET };
    const r = await lk(
      ['batch', 'run', '--engine', 'spark', '--spark-master', 'local[2]', '--lake-uri', lakeUri, '--state-uri', sparkState, ...common],
      wrong,
    );
    expect(r.code).not.toBe(0);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(r.out).toMatch(/refused the credentials .*check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);

    // The job under spark-submit, planned with the right key, run with a wrong one.
    const runDir = join(dir.path, 'planned-wrong-key');
    const planned = await lkOk([
      'batch',
      'plan',
      '--engine',
      'spark',
      '--lake-uri',
      lakeUri,
      '--state-uri',
      sparkState,
      '--out',
      runDir,
      ...common,
    ]);
    const job = await sparkSubmit(planned, wrong);
    expect(job.code).not.toBe(0);
    const own = job.out.split('\n').filter((l) => l.startsWith('lk-spark-error: '));
    expect(own, job.out.slice(-3000)).toEqual([
      `lk-spark-error: cannot read the lake at s3a://${BUCKET}/lakes/${topic}: object storage refused the credentials (403 Access Denied): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
    ]);

    expect(existsSync(join(runDir, 'plan.json')), 'the plan of the failed job is among the files searched').toBe(true);
    // No secret in what any command printed, nor in any file the runs left (plans, run records,
    // the shared state's objects and the lake on the S3 server).
    for (const secret of [S3_SECRET_KEY, WRONG_SECRET]) {
      for (const out of outputs) expect(out.includes(secret), 'a secret in an output').toBe(false);
      for (const root of [dir.path, s3.server.dataDir]) {
        const files = readdirSync(root, { recursive: true, encoding: 'utf8' })
          .map((f) => join(root, f))
          .filter((f) => statSync(f).isFile());
        for (const f of files) expect(readFileSync(f).includes(secret), `a secret in ${f}`).toBe(false);
      }
    }
  });
});
