/**
 * The batch views recomputed by Apache Spark (`--engine spark`): the same run as the DuckDB
 * recompute (batch/views/batchViews.ts), with the computation handed to a Spark job.
 *
 * 1. The cut is the lake table's position at the start, as for DuckDB; the job reads the Delta
 *    table at exactly that version (`versionAsOf`), so the rows cover the cut and nothing else.
 * 2. The job (viewsJob.py, a plan compiled by sparkPlan.ts from the metric file) writes the view
 *    rows as Parquet in the staging directory of the run.
 * 3. This side reads them back, checks their columns, types and values (a boundary: files another
 *    program wrote), stamps the cut, and writes rows.parquet in the snapshot's layout and order;
 *    then the run is published exactly as a DuckDB run, by the same function (publishStagedRun in
 *    batch/views/batchViews.ts: built in the host's scratch folder, created in the shared state,
 *    the same crash points, CURRENT moved forward only), with `engine: "spark"` in the run record.
 *
 * A failed or killed job publishes nothing: CURRENT still names the previous run. The job ends
 * itself when this process dies (it watches its standard input).
 *
 * The run has two halves around the job: prepareSparkRun (1, and the plan) and finishSparkRun
 * (3). `lk batch run --engine spark` runs both with the job between them; `lk batch plan` and
 * `lk batch publish --run <dir>` run them apart, for a job that the user's own scheduler starts
 * with spark-submit (docs/spark.md). The lake may be on a local disk or on S3 (read as s3a://
 * through Hadoop's S3A, configured from the platform's AWS settings: s3aConf).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import { ConfigError, InfrastructureError, errorMessage } from '../../../services/errors.ts';
import { eventMappingOf } from '../../../services/metrics/definitions.ts';
import { FLAT_MAPPING_NAME, lakeRowsSql } from '../../../services/lake/lakeLayout.ts';
import { crashPoint } from '../../../services/faults/crashPoints.ts';
import { HyperLogLog } from '../../../services/metrics/hll.ts';
import { lakeFiles as filesOf, lakePositions, openLakeForReading } from '../../../services/lake/lakeTable.ts';
import type { LakeHandle } from '../../../services/lake/lakeLocation.ts';
import { sqlQuote } from '../../../services/storage/sql.ts';
import { s3SettingsFromEnv, type S3Settings } from '../../../services/storage/storageLocation.ts';
import { SESSION_GRANULARITY } from '../../../services/views/viewRow.ts';
import { SNAPSHOT_COLUMNS, stageBatchRun, stagedRunDir, type BatchRunManifest } from '../../../services/views/batchSnapshots.ts';
import { versionNameSchema } from '../../../services/versions/versionName.ts';
import { cutOf, newRunId, publishStagedRun, runManifest, type RecomputeOptions, type RecomputeResult } from '../../views/batchViews.ts';
import { ensureSpark, ensureSparkS3 } from './sparkInstall.ts';
import { SPARK_ROW_COLUMNS, sparkViewsPlan } from './sparkPlan.ts';
import type { SparkSettings } from '../engineChoice.ts';

/** viewsJob.py: beside this module in the sources; the build (dist/) keeps the sources' path. */
export function sparkJobScript(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, 'viewsJob.py'), resolve(here, '../../../../batch/engines/spark/viewsJob.py')];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new InfrastructureError(`the Spark job viewsJob.py is missing (looked in ${candidates.join(', ')})`);
  return found;
}

/**
 * The Delta table as Spark addresses it: a local folder, or the table on S3 as `s3a://` (Hadoop's
 * S3A file system; `s3://` is another, older file system in Hadoop, so the scheme is mapped).
 */
function tableLocation(lake: LakeHandle): string {
  if (lake.store.kind === 's3') return lake.uri.replace(/^s3:\/\//, 's3a://');
  // The table's root: the folder of its log (a store's root itself is no object key).
  const log = lake.store.localPath('_delta_log');
  if (log !== undefined) return dirname(resolve(log));
  throw new InfrastructureError(`the Spark engine cannot address the lake at ${lake.uri}: neither a local folder nor s3://`);
}

/**
 * S3A's settings from the project's AWS settings (storageLocation.ts s3SettingsFromEnv: the same
 * endpoint, region and addressing style as the platform's own S3 client). Credentials are never
 * part of the plan (a file, and Spark's configuration, which Spark may print): with
 * AWS_ACCESS_KEY_ID set, S3A reads them from the job's environment, which `lk` passes on;
 * without, S3A's default chain (profiles, instance roles) applies, as for the platform.
 */
export function s3aConf(settings: S3Settings): Record<string, string> {
  const conf: Record<string, string> = {
    'spark.hadoop.fs.s3a.endpoint.region': settings.region,
    'spark.hadoop.fs.s3a.path.style.access': String(settings.pathStyle),
    'spark.hadoop.fs.s3a.attempts.maximum': String(settings.maxAttempts),
  };
  if (settings.endpoint !== undefined) {
    const url = new URL(settings.endpoint);
    // The endpoint without anything a URL may carry besides the server (a user:password@ part).
    conf['spark.hadoop.fs.s3a.endpoint'] = `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
    conf['spark.hadoop.fs.s3a.connection.ssl.enabled'] = String(url.protocol === 'https:');
  }
  if (settings.accessKeyId !== undefined)
    conf['spark.hadoop.fs.s3a.aws.credentials.provider'] = 'software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider';
  return conf;
}

const countsSchema = z.object({
  raw: z.number().int().nonnegative(),
  unique: z.number().int().nonnegative(),
  misplaced: z.number().int().nonnegative(),
  /** Lake records written under another event mapping (a version with an event: section). */
  foreign: z.number().int().nonnegative(),
});

const FOREIGN_RECORDS = (source: string, n: number | bigint) =>
  `${source}: the lake holds ${n} record(s) written under an event: section's mapping, from which the Spark engine does not derive flat events yet (a metric file without an event: section); use --engine duckdb for this version (docs/spark.md)`;

/**
 * A flat version over a lake holding records the lake writer wrote under an `event:` section's
 * mapping is refused before Spark starts, when the lake's files are on this host (one column of
 * Parquet, read by DuckDB); the job counts them again (`foreign`) wherever the lake is.
 */
async function refuseForeignRecords(lake: LakeHandle, files: readonly { key: string }[], source: string): Promise<void> {
  const paths = files.map((f) => lake.store.localPath(f.key));
  if (paths.some((p) => p === undefined)) return;
  const db = await DuckDBInstance.create(':memory:', { threads: '2' });
  const conn = await db.connect();
  let foreign: bigint;
  try {
    foreign = (
      await conn.runAndReadAll(
        `SELECT count(*)::BIGINT FROM ${lakeRowsSql(paths as string[])} WHERE coalesce(event_mapping, ${sqlQuote(FLAT_MAPPING_NAME)}) <> ${sqlQuote(FLAT_MAPPING_NAME)}`,
      )
    ).getRows()[0]![0] as bigint;
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  if (foreign > 0n) throw new ConfigError(FOREIGN_RECORDS(source, foreign));
}

/** Runs the job; resolves when it exited 0, rejects with the job's own error otherwise. */
async function runJob(python: string, javaHome: string, planPath: string, onPhase: (phase: string) => void): Promise<void> {
  const script = sparkJobScript();
  const child = spawn(python, [script, planPath], {
    env: {
      ...process.env,
      JAVA_HOME: javaHome,
      PYSPARK_PYTHON: python,
      // Test traffic stays on the loopback interface, and so do Spark's driver and block manager.
      SPARK_LOCAL_IP: process.env.SPARK_LOCAL_IP ?? '127.0.0.1',
      LK_SPARK_WATCH_STDIN: '1',
      PYTHONUNBUFFERED: '1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-64 * 1024);
  });
  let pending = '';
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString('utf8');
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      try {
        const msg = JSON.parse(line) as { phase?: unknown; seconds?: unknown };
        if (typeof msg.phase === 'string') onPhase(msg.phase);
        if (process.env.LK_BATCH_PROFILE) process.stderr.write(`spark job: ${line}\n`);
      } catch {
        // Not the job's progress line (a library's print): ignored.
      }
    }
  });
  const code = await new Promise<number | null>((res, rej) => {
    child.on('error', (e) => rej(new InfrastructureError(`cannot start the Spark job (${python}): ${e.message}`)));
    child.on('close', (c, signal) => res(c ?? (signal ? -1 : null)));
  });
  if (code !== 0) {
    // The job's own diagnosis (viewsJob.py: `lk-spark-error: ...`, one line) when it made one.
    const own = stderr
      .split('\n')
      .filter((l) => l.startsWith('lk-spark-error: '))
      .at(-1);
    if (own !== undefined) throw new InfrastructureError(`the Spark job failed: ${own.slice('lk-spark-error: '.length).trim()}`);
    const lines = stderr.split('\n').filter((l) => /(Exception|Error)\b/.test(l) && !/^\s+at /.test(l));
    const why = (lines.at(-1) ?? stderr.trim().split('\n').at(-1) ?? `exit code ${code}`).trim().slice(0, 500);
    throw new InfrastructureError(`the Spark job failed (exit code ${code}): ${why}`);
  }
}

/** Runs `read` over the job's row files; a file DuckDB cannot read as Parquet is the job's output at fault, said so. */
async function readableRows<T>(rowsGlob: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof InfrastructureError) throw e;
    throw new InfrastructureError(`the Spark job's rows ${rowsGlob} cannot be read as Parquet: ${errorMessage(e).split('\n')[0]}`);
  }
}

/** Reads the job's rows back: every column present with its type, every value in range. */
async function checkJobRows(conn: DuckDBConnection, rowsGlob: string, metricCount: number, granularities: string[][]): Promise<void> {
  const described = (await conn.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlQuote(rowsGlob)})`)).getRowObjects();
  const types = new Map(described.map((r) => [String(r.column_name), String(r.column_type)]));
  for (const [name, type] of Object.entries(SPARK_ROW_COLUMNS)) {
    if (types.get(name) !== type)
      throw new InfrastructureError(
        `the Spark job's rows have ${types.has(name) ? `column ${name} of type ${types.get(name)}` : `no column ${name}`}, expected ${type}`,
      );
  }
  const allowed = granularities.flatMap((gs, mi) => gs.map((g) => `(${mi}, ${sqlQuote(g)})`));
  const bad = (
    await conn.runAndReadAll(
      `SELECT count(*)::BIGINT FROM read_parquet(${sqlQuote(rowsGlob)})
       WHERE mi IS NULL OR mi < 0 OR mi >= ${metricCount} OR (mi, granularity) NOT IN (${allowed.join(', ')})
         OR key IS NULL OR window_start IS NULL OR partition IS NULL OR partition < 0
         OR count IS NULL OR count <= 0 OR raw_count < count OR misplaced < 0 OR misplaced > count
         OR CASE WHEN granularity = ${sqlQuote(SESSION_GRANULARITY)} THEN window_end IS NULL OR window_end < window_start ELSE window_end IS NOT NULL END`,
    )
  ).getRows()[0]![0] as bigint;
  if (bad > 0n)
    throw new InfrastructureError(
      `the Spark job wrote ${bad} view row(s) outside the view contract (metric, granularity, key, window, counts, session end)`,
    );
}

/**
 * What finishing a Spark run needs besides the job's output, written beside its plan
 * (`spark-run.json`) so that `lk batch publish --run <dir>` can finish a run that another
 * scheduler ran: which lake snapshot the plan reads (the cut), for which version and metric file.
 * Read back through zod: a file on disk that anyone may have edited.
 */
export const sparkRunSchema = z.object({
  kind: z.literal('lk-spark-run'),
  runId: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be a run id'),
  version: versionNameSchema,
  /** The lake as the user wrote it (for messages; never a credential). */
  lake: z.string().min(1),
  /** The Delta version the plan reads; null when the lake was empty (nothing for a job to do). */
  lakeVersion: z.number().int().nonnegative().nullable(),
  startedAt: z.number().int().nonnegative(),
  cut: z.array(z.number().int().nonnegative()),
  processingTimes: z.array(z.number()),
  lakeFileSizes: z.array(z.number().int().nonnegative()),
  homePartitions: z.number().int().positive(),
  metricsSource: z.string(),
  metricsSha256: z.string().optional(),
});
export type SparkRunRecord = z.infer<typeof sparkRunSchema>;

/** A run's folder: the plan, the record, and the job's output (`out/`: rows/*.parquet, counts.json). */
export const SPARK_RUN_FILES = { plan: 'plan.json', record: 'spark-run.json', output: 'out' } as const;

export interface PreparedSparkRun {
  record: SparkRunRecord;
  /** The plan for viewsJob.py; undefined when the lake holds nothing (no job to run). */
  planPath: string | undefined;
  /** The jars the job needs (`spark.jars`, or spark-submit's --jars), and the venv's Python. */
  jars: string[];
  python: string | undefined;
  javaHome: string | undefined;
}

/**
 * The first half of a Spark run: the cut (the lake table's position now), the refusals, and in
 * `runDir` the job's plan and the run's record. Nothing is published; `finishSparkRun` is the
 * second half, after the job ran (started by `lk`, or by `spark-submit` under another scheduler).
 */
export async function prepareSparkRun(
  options: RecomputeOptions & { spark: SparkSettings },
  runDir: string,
  run: { runId: string; startedAt: number },
): Promise<PreparedSparkRun> {
  const table = await openLakeForReading(options.lake, { missingOk: true, migrate: true, logger: options.logger });
  const snapshot = table?.current;
  const { cut, processingTimes } = cutOf(lakePositions(snapshot, options.lake.topic));
  const files = filesOf(snapshot);
  if (eventMappingOf(options.metrics.metrics).flat && files.length > 0)
    await refuseForeignRecords(options.lake, files, options.metrics.source);
  const phase = options.onPhase ?? (() => undefined);
  mkdirSync(runDir, { recursive: true });
  const record: SparkRunRecord = {
    kind: 'lk-spark-run',
    runId: run.runId,
    version: options.version,
    lake: options.lake.uri,
    lakeVersion: snapshot !== undefined && files.length > 0 ? snapshot.version : null,
    startedAt: run.startedAt,
    cut,
    processingTimes,
    lakeFileSizes: files.map((f) => f.size),
    homePartitions: options.homePartitions,
    metricsSource: options.metrics.source,
    ...(options.metrics.sha256 !== undefined ? { metricsSha256: options.metrics.sha256 } : {}),
  };
  let prepared: PreparedSparkRun = { record, planPath: undefined, jars: [], python: undefined, javaHome: undefined };
  if (record.lakeVersion !== null) {
    phase('install spark', 0, SPARK_PHASES);
    const install = ensureSpark();
    const onS3 = options.lake.store.kind === 's3';
    // Settings first (a bad AWS_* variable is refused before any download), then the S3A jars.
    const s3 = onS3 ? s3aConf(s3SettingsFromEnv()) : {};
    const jars = [...install.jars, ...(onS3 ? ensureSparkS3(install) : [])];
    const output = join(runDir, SPARK_RUN_FILES.output);
    mkdirSync(output, { recursive: true });
    const local = options.spark.master.startsWith('local');
    const plan = {
      appName: `lk-batch-views-${options.version}`,
      master: options.spark.master,
      table: tableLocation(options.lake),
      version: record.lakeVersion,
      output,
      ...sparkViewsPlan(options.metrics.metrics, options.homePartitions),
      conf: {
        'spark.jars': jars.join(','),
        'spark.sql.extensions': 'io.delta.sql.DeltaSparkSessionExtension',
        'spark.sql.catalog.spark_catalog': 'org.apache.spark.sql.delta.catalog.DeltaCatalog',
        'spark.sql.ansi.enabled': 'false',
        'spark.sql.caseSensitive': 'true',
        'spark.sql.session.timeZone': 'UTC',
        'spark.ui.enabled': 'false',
        'spark.ui.showConsoleProgress': 'false',
        'spark.local.dir': join(runDir, 'local'),
        'spark.sql.warehouse.dir': join(runDir, 'warehouse'),
        'spark.driver.memory': options.spark.driverMemory ?? process.env.LK_SPARK_DRIVER_MEMORY ?? '2g',
        ...s3,
        // A local master has few cores: few shuffle partitions, and Delta's snapshot state (the
        // table's file list, built by a Spark job of 50 tasks by default) in two.
        ...(local
          ? {
              'spark.driver.host': '127.0.0.1',
              'spark.driver.bindAddress': '127.0.0.1',
              'spark.sql.shuffle.partitions': '8',
              'spark.databricks.delta.snapshotPartitions': '2',
            }
          : {}),
      },
    };
    const planPath = join(runDir, SPARK_RUN_FILES.plan);
    writeFileSync(planPath, JSON.stringify(plan, null, 2));
    prepared = { record, planPath, jars, python: install.python, javaHome: install.javaHome };
  }
  writeFileSync(join(runDir, SPARK_RUN_FILES.record), `${JSON.stringify(record, null, 2)}\n`);
  return prepared;
}

const SPARK_PHASES = 5;

/**
 * The second half of a Spark run: the job's output in `runDir` read back and checked (a boundary:
 * files another program wrote), stamped with the cut, written as `rows.parquet` in `staged` in the
 * snapshot's layout; returns the run record to publish. Refuses a run whose job did not finish
 * (no counts.json, no rows/_SUCCESS) or whose files are malformed.
 */
export async function finishSparkRun(
  options: Pick<RecomputeOptions, 'version' | 'homePartitions' | 'metrics' | 'onPhase'>,
  runDir: string,
  staged: string,
  record: SparkRunRecord,
): Promise<BatchRunManifest> {
  const defs = options.metrics.metrics;
  const output = join(runDir, SPARK_RUN_FILES.output);
  const phase = options.onPhase ?? (() => undefined);
  let counts = { raw: 0, unique: 0, misplaced: 0, foreign: 0 };
  let rowsGlob: string | undefined;
  if (record.lakeVersion !== null) {
    const countsFile = join(output, 'counts.json');
    if (!existsSync(countsFile) || !existsSync(join(output, 'rows', '_SUCCESS')))
      throw new InfrastructureError(
        `the Spark job's output in ${output} is incomplete (${existsSync(countsFile) ? 'no rows/_SUCCESS' : 'no counts.json'}): the job did not finish; run it again (nothing was published)`,
      );
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(countsFile, 'utf8'));
    } catch (e) {
      throw new InfrastructureError(`the Spark job's ${countsFile} is not JSON (${(e as Error).message}); nothing was published`);
    }
    const checked = countsSchema.safeParse(parsed);
    if (!checked.success) {
      const issue = checked.error.issues[0]!;
      throw new InfrastructureError(
        `the Spark job's ${countsFile} is malformed (${issue.path.join('.') || 'the object'}: ${issue.message}); nothing was published`,
      );
    }
    counts = checked.data;
    if (counts.foreign > 0) throw new ConfigError(FOREIGN_RECORDS(options.metrics.source, counts.foreign));
    const parts = readdirSync(join(output, 'rows')).filter((f) => f.endsWith('.parquet'));
    if (parts.length > 0) rowsGlob = join(output, 'rows', '*.parquet');
  }
  phase('write snapshot', 3, SPARK_PHASES);
  const { cut, processingTimes } = record;
  const db = await DuckDBInstance.create(':memory:', { threads: '2' });
  const conn = await db.connect();
  try {
    const rowColumns = Object.entries(SNAPSHOT_COLUMNS)
      .map(([name, type]) => `"${name}" ${type}`)
      .join(', ');
    await conn.run(`CREATE TEMP TABLE view_rows (${rowColumns})`);
    if (rowsGlob !== undefined) {
      await readableRows(rowsGlob, () =>
        checkJobRows(
          conn,
          rowsGlob!,
          defs.length,
          defs.map((d) => (d.session !== undefined ? [SESSION_GRANULARITY] : [...d.granularities])),
        ),
      );
      await conn.run(`CREATE TEMP TABLE cuts (p INTEGER, through_offset BIGINT, processing_time BIGINT)`);
      if (cut.length > 0)
        await conn.run(`INSERT INTO cuts VALUES ${cut.map((c, p) => `(${p}, ${c}, ${processingTimes[p] ?? 0})`).join(', ')}`);
      await conn.run(`CREATE TEMP TABLE metric_names (mi INTEGER, metric VARCHAR)`);
      await conn.run(`INSERT INTO metric_names VALUES ${defs.map((d, i) => `(${i}, ${sqlQuote(d.name)})`).join(', ')}`);
      // Sketches must decode (serving merges them): checked by their layout, as HyperLogLog.deserialize does.
      const empty = sqlQuote(new HyperLogLog().toBase64());
      await readableRows(rowsGlob, () =>
        conn.run(
          `INSERT INTO view_rows SELECT n.metric, r.granularity, r.key, r.window_start, r.partition, r.count, r.sum, r.min, r.max,
           r.distinct_sketch, r.value_sketch, r.raw_count, r.misplaced, c.through_offset, c.processing_time, r.window_end
         FROM read_parquet(${sqlQuote(rowsGlob)}) r JOIN cuts c ON c.p = r.partition JOIN metric_names n ON n.mi = r.mi`,
        ),
      );
      const badSketches = (
        await conn.runAndReadAll(
          `SELECT count(*)::BIGINT FROM view_rows WHERE distinct_sketch IS NOT NULL AND distinct_sketch <> ${empty} AND NOT (
             (substr(hex(from_base64(distinct_sketch)), 1, 2) = '01' AND (octet_length(from_base64(distinct_sketch)) - 1) % 3 = 0)
             OR (substr(hex(from_base64(distinct_sketch)), 1, 2) = '02' AND octet_length(from_base64(distinct_sketch)) = 4097))`,
        )
      ).getRows()[0]![0] as bigint;
      if (badSketches > 0n)
        throw new InfrastructureError(`the Spark job wrote ${badSketches} distinct sketch(es) that are not HyperLogLog sketches`);
      // Value sketches in ddsketch.ts's text (parseSketch's pairs), on exactly the metrics with percentiles.
      const withPercentiles = defs.flatMap((d) => (d.percentiles === undefined ? [] : [sqlQuote(d.name)]));
      const badValueSketches = (
        await conn.runAndReadAll(
          `SELECT count(*)::BIGINT FROM view_rows WHERE CASE WHEN metric IN (${withPercentiles.length > 0 ? withPercentiles.join(', ') : 'NULL'})
             THEN value_sketch IS NULL OR NOT regexp_full_match(value_sketch, '(-?[0-9]+:[0-9]+(,-?[0-9]+:[0-9]+)*)?')
             ELSE value_sketch IS NOT NULL END`,
        )
      ).getRows()[0]![0] as bigint;
      if (badValueSketches > 0n)
        throw new InfrastructureError(`the Spark job wrote ${badValueSketches} value sketch(es) that are not percentile sketch texts`);
    }
    const rows = Number(((await conn.runAndReadAll(`SELECT count(*)::BIGINT FROM view_rows`)).getRows()[0] as [bigint])[0]);
    await conn.run(
      `COPY (SELECT * FROM view_rows ORDER BY metric, granularity, window_start, key, partition)
       TO ${sqlQuote(join(staged, 'rows.parquet'))} (FORMAT parquet, COMPRESSION snappy)`,
    );
    crashPoint('batch.run.rows-written');
    return runManifest(options, {
      engine: 'spark',
      runId: record.runId,
      cut,
      processingTimes,
      startedAt: record.startedAt,
      rows,
      counts,
      files: record.lakeFileSizes.map((size) => ({ size })),
    });
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/**
 * One full recompute with Spark, published atomically as the version's CURRENT run (see the
 * module comment). Same options as the DuckDB recompute, and the Spark settings.
 */
export async function recomputeWithSpark(options: RecomputeOptions & { spark: SparkSettings }): Promise<RecomputeResult> {
  const startedAt = Date.now();
  const runId = newRunId(new Date(startedAt));
  const phase = options.onPhase ?? (() => undefined);
  // The run is built in its staging folder, the job's files in .spark/ there; prepareSparkRun
  // makes them only once the metric file and the lake passed its refusals (nothing staged then).
  const staged = stagedRunDir(options.scratchDir, options.version, runId);
  const work = join(staged, '.spark');
  let manifest: BatchRunManifest;
  try {
    const prepared = await prepareSparkRun(options, work, { runId, startedAt });
    if (prepared.planPath !== undefined) {
      phase('spark job', 1, SPARK_PHASES);
      await runJob(prepared.python!, prepared.javaHome!, prepared.planPath, (p) => phase(`spark: ${p}`, 2, SPARK_PHASES));
    }
    manifest = await finishSparkRun(options, work, staged, prepared.record);
  } catch (err) {
    // A failed run publishes nothing: CURRENT still names the previous complete run.
    rmSync(staged, { recursive: true, force: true });
    throw err;
  }
  rmSync(work, { recursive: true, force: true });
  const result = await publishStagedRun(options, staged, manifest);
  phase('done', SPARK_PHASES, SPARK_PHASES);
  return result;
}

/** The run record in a planned run's folder, validated (a file anyone may have edited or lost). */
export function readSparkRun(runDir: string): SparkRunRecord {
  const file = join(runDir, SPARK_RUN_FILES.record);
  if (!existsSync(file))
    throw new InfrastructureError(`${runDir} is not a planned Spark run: it has no ${SPARK_RUN_FILES.record} (lk batch plan writes it)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InfrastructureError(`${file} is not JSON (${(e as Error).message})`);
  }
  const checked = sparkRunSchema.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    throw new InfrastructureError(`${file} is malformed (${issue.path.join('.') || 'the object'}: ${issue.message})`);
  }
  return checked.data;
}

/**
 * `lk batch publish --run <dir>`: a planned run (`lk batch plan`) whose job another scheduler ran
 * (`spark-submit viewsJob.py <dir>/plan.json`), checked and published exactly as `lk batch run
 * --engine spark` publishes (finishSparkRun, then publishStagedRun). The version's metric file
 * must be the one the plan was compiled from. The folder is removed once the run is published; a
 * refused one stays, for inspection.
 */
export async function publishSparkRun(
  options: Pick<RecomputeOptions, 'state' | 'scratchDir' | 'cacheDir' | 'version' | 'metrics' | 'logger' | 'keepRuns' | 'runGraceMs'>,
  runDir: string,
  record: SparkRunRecord,
): Promise<RecomputeResult> {
  if (record.version !== options.version) throw new ConfigError(`${runDir} is a run of version ${record.version}, not ${options.version}`);
  if (record.metricsSha256 !== undefined && options.metrics.sha256 !== undefined && record.metricsSha256 !== options.metrics.sha256)
    throw new ConfigError(
      `the metric file of version ${record.version} (${options.metrics.source}) is not the one the run was planned from (${record.metricsSource}): plan the run again`,
    );
  const staged = stageBatchRun(options.scratchDir, record.version, record.runId);
  let manifest: BatchRunManifest;
  try {
    manifest = await finishSparkRun({ ...options, homePartitions: record.homePartitions }, runDir, staged, record);
  } catch (err) {
    rmSync(staged, { recursive: true, force: true });
    throw err;
  }
  const result = await publishStagedRun(options, staged, manifest);
  rmSync(runDir, { recursive: true, force: true });
  return result;
}
