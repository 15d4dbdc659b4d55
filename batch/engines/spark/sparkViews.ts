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
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { z } from 'zod';
import { ConfigError, InfrastructureError } from '../../../services/errors.ts';
import { eventMappingOf } from '../../../services/metrics/definitions.ts';
import { FLAT_MAPPING_NAME, lakeRowsSql } from '../../../services/lake/lakeLayout.ts';
import { crashPoint } from '../../../services/faults/crashPoints.ts';
import { HyperLogLog } from '../../../services/metrics/hll.ts';
import { lakeFiles as filesOf, lakePositions, openLakeForReading } from '../../../services/lake/lakeTable.ts';
import type { LakeHandle } from '../../../services/lake/lakeLocation.ts';
import { sqlQuote } from '../../../services/storage/sql.ts';
import { SNAPSHOT_COLUMNS, stageBatchRun, type BatchRunManifest } from '../../../services/views/batchSnapshots.ts';
import { cutOf, newRunId, publishStagedRun, runManifest, type RecomputeOptions, type RecomputeResult } from '../../views/batchViews.ts';
import { ensureSpark } from './sparkInstall.ts';
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

/** The Delta table as Spark addresses it: a local folder, or s3a:// with the S3 settings. */
function tableLocation(lake: LakeHandle): string {
  // The table's root: the folder of its log (a store's root itself is no object key).
  const log = lake.store.localPath('_delta_log');
  if (log !== undefined) return dirname(resolve(log));
  throw new InfrastructureError(
    `the Spark engine reads a lake on a local disk or a shared file system; ${lake.uri} is on object storage, which needs Hadoop's S3A jars (not bundled yet: docs/spark.md)`,
  );
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
    const lines = stderr.split('\n').filter((l) => /(Exception|Error)\b/.test(l) && !/^\s+at /.test(l));
    const why = (lines.at(-1) ?? stderr.trim().split('\n').at(-1) ?? `exit code ${code}`).trim().slice(0, 500);
    throw new InfrastructureError(`the Spark job failed (exit code ${code}): ${why}`);
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
         OR count IS NULL OR count <= 0 OR raw_count < count OR misplaced < 0 OR misplaced > count`,
    )
  ).getRows()[0]![0] as bigint;
  if (bad > 0n)
    throw new InfrastructureError(
      `the Spark job wrote ${bad} view row(s) outside the view contract (metric, granularity, key, window, counts)`,
    );
}

/**
 * One full recompute with Spark, published atomically as the version's CURRENT run (see the
 * module comment). Same options as the DuckDB recompute, and the Spark settings.
 */
export async function recomputeWithSpark(options: RecomputeOptions & { spark: SparkSettings }): Promise<RecomputeResult> {
  const startedAt = Date.now();
  const runId = newRunId(new Date(startedAt));
  const table = await openLakeForReading(options.lake, { missingOk: true, migrate: true, logger: options.logger });
  const snapshot = table?.current;
  const { cut, processingTimes } = cutOf(lakePositions(snapshot, options.lake.topic));
  const files = filesOf(snapshot);
  const defs = options.metrics.metrics;
  const sessions = defs.find((d) => d.session !== undefined);
  if (sessions)
    throw new ConfigError(
      `${options.metrics.source}: metric ${sessions.name} uses session windows, which the Spark engine does not compute yet; use --engine duckdb for this version (docs/spark.md)`,
    );
  if (eventMappingOf(defs).flat && files.length > 0) await refuseForeignRecords(options.lake, files, options.metrics.source);
  const phase = options.onPhase ?? (() => undefined);
  const totalPhases = 5;
  const staged = stageBatchRun(options.scratchDir, options.version, runId);
  const work = join(staged, '.spark');
  const db = await DuckDBInstance.create(':memory:', { threads: '2' });
  const conn = await db.connect();
  let manifest: BatchRunManifest;
  try {
    let counts = { raw: 0, unique: 0, misplaced: 0, foreign: 0 };
    let rowsGlob: string | undefined;
    if (snapshot !== undefined && files.length > 0) {
      phase('install spark', 0, totalPhases);
      const install = ensureSpark();
      const output = join(work, 'out');
      mkdirSync(output, { recursive: true });
      const local = options.spark.master.startsWith('local');
      const plan = {
        appName: `lk-batch-views-${options.version}`,
        master: options.spark.master,
        table: tableLocation(options.lake),
        version: snapshot.version,
        output,
        ...sparkViewsPlan(defs, options.homePartitions),
        conf: {
          'spark.jars': install.jars.join(','),
          'spark.sql.extensions': 'io.delta.sql.DeltaSparkSessionExtension',
          'spark.sql.catalog.spark_catalog': 'org.apache.spark.sql.delta.catalog.DeltaCatalog',
          'spark.sql.ansi.enabled': 'false',
          'spark.sql.caseSensitive': 'true',
          'spark.sql.session.timeZone': 'UTC',
          'spark.ui.enabled': 'false',
          'spark.ui.showConsoleProgress': 'false',
          'spark.local.dir': join(work, 'local'),
          'spark.sql.warehouse.dir': join(work, 'warehouse'),
          'spark.driver.memory': options.spark.driverMemory ?? process.env.LK_SPARK_DRIVER_MEMORY ?? '2g',
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
      const planPath = join(work, 'plan.json');
      writeFileSync(planPath, JSON.stringify(plan, null, 2));
      phase('spark job', 1, totalPhases);
      await runJob(install.python, install.javaHome, planPath, (p) => phase(`spark: ${p}`, 2, totalPhases));
      counts = countsSchema.parse(JSON.parse(readFileSync(join(output, 'counts.json'), 'utf8')));
      if (counts.foreign > 0) throw new ConfigError(FOREIGN_RECORDS(options.metrics.source, counts.foreign));
      const parts = existsSync(join(output, 'rows')) ? readdirSync(join(output, 'rows')).filter((f) => f.endsWith('.parquet')) : [];
      if (parts.length > 0) rowsGlob = join(output, 'rows', '*.parquet');
    }
    phase('write snapshot', 3, totalPhases);
    const rowColumns = Object.entries(SNAPSHOT_COLUMNS)
      .map(([name, type]) => `"${name}" ${type}`)
      .join(', ');
    await conn.run(`CREATE TEMP TABLE view_rows (${rowColumns})`);
    if (rowsGlob !== undefined) {
      await checkJobRows(
        conn,
        rowsGlob,
        defs.length,
        defs.map((d) => [...d.granularities]),
      );
      await conn.run(`CREATE TEMP TABLE cuts (p INTEGER, through_offset BIGINT, processing_time BIGINT)`);
      if (cut.length > 0) await conn.run(`INSERT INTO cuts VALUES ${cut.map((c, p) => `(${p}, ${c}, ${processingTimes[p]})`).join(', ')}`);
      await conn.run(`CREATE TEMP TABLE metric_names (mi INTEGER, metric VARCHAR)`);
      await conn.run(`INSERT INTO metric_names VALUES ${defs.map((d, i) => `(${i}, ${sqlQuote(d.name)})`).join(', ')}`);
      // Sketches must decode (serving merges them): checked by their layout, as HyperLogLog.deserialize does.
      const empty = sqlQuote(new HyperLogLog().toBase64());
      await conn.run(
        `INSERT INTO view_rows SELECT n.metric, r.granularity, r.key, r.window_start, r.partition, r.count, r.sum, r.min, r.max,
           r.distinct_sketch, r.value_sketch, r.raw_count, r.misplaced, c.through_offset, c.processing_time, CAST(NULL AS BIGINT)
         FROM read_parquet(${sqlQuote(rowsGlob)}) r JOIN cuts c ON c.p = r.partition JOIN metric_names n ON n.mi = r.mi`,
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
    manifest = runManifest(options, { engine: 'spark', runId, cut, processingTimes, startedAt, rows, counts, files });
  } catch (err) {
    // A failed run publishes nothing: CURRENT still names the previous complete run.
    rmSync(staged, { recursive: true, force: true });
    throw err;
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  rmSync(work, { recursive: true, force: true });
  const result = await publishStagedRun(options, staged, manifest);
  phase('done', totalPhases, totalPhases);
  return result;
}
