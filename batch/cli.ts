/**
 * `lk batch` commands:
 *   lk batch              service: lake writer + scheduled recompute + compaction + status
 *   lk batch run          one cycle: lake up to the log's end offsets, recompute, exit
 *   lk batch compact      merge small lake files, then vacuum (also while the service runs)
 *   lk batch status       print the lake position and the current batch run
 *   lk batch migrate-lake convert a lake of the former format (_lake_log/) into a Delta table
 *   lk batch plan         with --engine spark: write a Spark job's plan for spark-submit under
 *                         another scheduler (the recompute's first half; docs/spark.md)
 *   lk batch publish      check and publish what that job wrote (the second half)
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ConfigError, InfrastructureError } from '../services/errors.ts';
import { formatDuration } from '../services/config/durations.ts';
import { granularityMs, type MetricDefinitions } from '../services/metrics/definitions.ts';
import { retentionMsOf } from '../services/metrics/retention.ts';
import { sessionRetentionMs } from '../services/metrics/sessionRule.ts';
import { aborted, context, onShutdownSignal, type Context } from '../services/config/cliOptions.ts';
import { logger } from '../services/observability/logger.ts';
import { readCurrentBatchRun } from '../services/views/batchSnapshots.ts';
import { readVersionRecord } from '../services/versions/versionRecord.ts';
import type { RecomputeResult } from './views/batchViews.ts';
import { addBatchOptions, batchEngineOf, lakeWriterGroup, validateBatchOptions, type BatchOptions } from './batchConfig.ts';
import { resolveLake, type LakeHandle } from '../services/lake/lakeLocation.ts';
import { lakeFiles, lakePositions, openLakeForReading, openLakeForWriting } from '../services/lake/lakeTable.ts';
// The service, the cycle and compaction load DuckDB: imported when a command runs, so that
// `lk --help` and the other layers' commands start without it.

function lakeOf(opts: BatchOptions, ctx: Context): Promise<LakeHandle> {
  return resolveLake(opts.lakeUri, ctx.layout, opts.topic);
}

/** What the service and a single cycle are both given: the log, the lake, the views, the metrics. */
async function cycleOptions(opts: BatchOptions, clientId: string) {
  validateBatchOptions(opts);
  const ctx = context(opts);
  // The metric file first: a bad one is refused before anything is opened.
  const metrics = await ctx.loadMetrics(opts.version);
  const lake = await lakeOf(opts, ctx);
  return {
    ctx,
    common: {
      log: ctx.openLog(clientId),
      topic: opts.topic,
      groupId: opts.group ?? lakeWriterGroup(opts.topic),
      state: await ctx.state(),
      scratchDir: ctx.layout.scratch,
      cacheDir: ctx.layout.cache,
      lake,
      version: opts.version,
      metrics,
      rollBytes: opts.rollSize,
      rollIntervalMs: opts.rollInterval,
      logger,
      engine: batchEngineOf(opts),
    },
  };
}

async function serve(opts: BatchOptions): Promise<void> {
  const { common } = await cycleOptions(opts, 'lk-batch');
  const log = common.log;
  const signal = onShutdownSignal((sig) => logger.info({ signal: sig }, 'stopping: committing what is pending'));
  const { BatchService } = await import('./batchService.ts');
  const service = new BatchService({
    ...common,
    intervalMs: opts.interval,
    targetFileSize: opts.targetFileSize,
    statusPort: opts.statusPort,
    ...(opts.vacuumRetention !== undefined ? { vacuumRetentionMs: opts.vacuumRetention } : {}),
    ...(opts.lakeRetention !== undefined ? { lakeRetentionMs: checkLakeRetention(opts.lakeRetention, common.metrics) } : {}),
  });
  try {
    const { port } = await service.start();
    logger.info({ topic: opts.topic, version: opts.version, port, lake: common.lake.uri }, 'batch service running');
    await Promise.race([aborted(signal), service.done()]);
  } finally {
    await service.stop();
    await log.close();
  }
}

async function runOnce(opts: BatchOptions): Promise<void> {
  const { common } = await cycleOptions(opts, 'lk-batch-run');
  const log = common.log;
  const signal = onShutdownSignal((sig) => logger.info({ signal: sig }, 'stopping: committing what is pending'));
  try {
    const { runBatchCycle } = await import('./batchCycle.ts');
    const result = await runBatchCycle({ ...common, signal });
    if (!result) {
      console.log('stopped before the recompute; the lake holds everything read so far');
      return;
    }
    printRun(result);
  } finally {
    await log.close();
  }
}

function printRun(result: RecomputeResult): void {
  const m = result.manifest;
  if (!result.published)
    console.log(
      `batch run ${m.runId} (${m.engine ?? 'duckdb'}) not published: another batch process published a run of a newer lake snapshot first`,
    );
  else
    console.log(
      `batch run ${m.runId} (${m.engine ?? 'duckdb'}): ${m.rows} view rows from ${m.rawEvents} lake events (${m.uniqueEvents} unique) in ${(m.durationMs / 1000).toFixed(2)}s; cut ${JSON.stringify(m.cut)}`,
    );
}

/**
 * `lk batch plan --engine spark`: the first half of a Spark recompute (sparkViews.ts
 * prepareSparkRun) for a job that another scheduler runs: the cut (the lake as it is now; the
 * lake writer is not run), the plan and the run record in a folder of its own, and the command
 * that runs the job. `lk batch publish --run <dir>` is the second half.
 */
async function plan(opts: BatchOptions & { out?: string }): Promise<void> {
  validateBatchOptions(opts);
  if (opts.engine !== 'spark')
    throw new ConfigError('lk batch plan writes the plan of a Spark job: give --engine spark (DuckDB recomputes in lk batch run)');
  const ctx = context(opts);
  const metrics = await ctx.loadMetrics(opts.version);
  const lake = await lakeOf(opts, ctx);
  const state = await ctx.state();
  const { newRunId } = await import('./views/batchViews.ts');
  const { prepareSparkRun, sparkJobScript } = await import('./engines/spark/sparkViews.ts');
  const startedAt = Date.now();
  const runId = newRunId(new Date(startedAt));
  const dir = resolve(opts.out ?? join(ctx.layout.scratch, 'spark-runs', opts.version, runId));
  if (existsSync(dir) && readdirSync(dir).length > 0)
    throw new ConfigError(`--out ${dir} is not empty: give a new folder for the run (a planned run is published from it)`);
  let homePartitions = (await readVersionRecord(state, opts.version))?.homePartitions;
  if (homePartitions === undefined) {
    // A version without a record yet: its home partition count is the topic's.
    const log = ctx.openLog('lk-batch-plan');
    try {
      const { homePartitionsOf } = await import('./batchCycle.ts');
      homePartitions = await homePartitionsOf(log, state, opts.version, opts.topic, metrics);
    } finally {
      await log.close();
    }
  }
  const prepared = await prepareSparkRun(
    {
      lake,
      state,
      scratchDir: ctx.layout.scratch,
      cacheDir: ctx.layout.cache,
      version: opts.version,
      metrics,
      homePartitions,
      logger,
      spark: { master: opts.sparkMaster },
    },
    dir,
    { runId, startedAt },
  );
  const r = prepared.record;
  console.log(
    `planned Spark run ${runId} of version ${r.version}: lake ${r.lake}${r.lakeVersion === null ? ' (empty)' : ` at Delta version ${r.lakeVersion}`}, cut ${JSON.stringify(r.cut)}, in ${dir}`,
  );
  if (prepared.planPath !== undefined) {
    console.log(`run the job:  spark-submit --jars ${prepared.jars.join(',')} ${sparkJobScript()} ${prepared.planPath}`);
    if (lake.store.kind === 's3')
      console.log('              (the job reads the lake through S3A, with AWS_* credentials from its environment)');
  } else {
    console.log('the lake holds no events: there is no job to run');
  }
  console.log(`then publish: lk batch publish --run ${dir}`);
}

/** `lk batch publish --run <dir>`: the second half (sparkViews.ts publishSparkRun). */
async function publish(opts: BatchOptions & { run: string }): Promise<void> {
  const dir = resolve(opts.run);
  const { publishSparkRun, readSparkRun } = await import('./engines/spark/sparkViews.ts');
  const record = readSparkRun(dir);
  const ctx = context(opts);
  const metrics = await ctx.loadMetrics(record.version);
  const result = await publishSparkRun(
    { state: await ctx.state(), scratchDir: ctx.layout.scratch, cacheDir: ctx.layout.cache, version: record.version, metrics, logger },
    dir,
    record,
  );
  printRun(result);
}

/**
 * Compaction and vacuum. No lock: the Delta commit protocol makes it safe beside a running
 * `lk batch` (its appends do not conflict; a compaction that loses an input to a concurrent one
 * is given up, services/lake/delta/deltaLog.ts).
 */
/**
 * `--lake-retention`, refused when shorter than a metric window's size plus its retention: the
 * batch view of a window still answered must be computed from all of its events.
 */
function checkLakeRetention(lakeRetentionMs: number, metrics: MetricDefinitions): number {
  for (const m of metrics.metrics)
    for (const g of m.granularities) {
      const needed = granularityMs(g) + retentionMsOf(m.retention, g, granularityMs(g));
      if (lakeRetentionMs < needed)
        throw new ConfigError(
          `--lake-retention ${formatDuration(lakeRetentionMs)} is shorter than ${g} windows of metric "${m.name}" need (${formatDuration(needed)}: the window and its retention); the batch view of a window still answered needs all its events`,
        );
    }
  for (const m of metrics.metrics) {
    if (m.session === undefined) continue;
    // A session has no bound on its length: this is the least it needs (docs/metrics.md, "Sessions").
    const needed = m.session.gapMs + sessionRetentionMs(m);
    if (lakeRetentionMs < needed)
      throw new ConfigError(
        `--lake-retention ${formatDuration(lakeRetentionMs)} is shorter than the sessions of metric "${m.name}" need (${formatDuration(needed)}: the gap and the sessions' retention); the batch view of a session still answered needs all its events`,
      );
  }
  return lakeRetentionMs;
}

async function compact(opts: BatchOptions): Promise<void> {
  validateBatchOptions(opts);
  const lake = await lakeOf(opts, context(opts));
  if (!(await openLakeForReading(lake, { missingOk: true, migrate: true, logger })))
    throw new InfrastructureError(`no lake at ${lake.uri}; run \`lk batch run\` first`);
  const table = await openLakeForWriting(lake, logger);
  const { compactLake } = await import('./lake/compaction.ts');
  if (opts.lakeRetention !== undefined) {
    checkLakeRetention(opts.lakeRetention, await context(opts).loadMetrics(opts.version));
    const { expireLake } = await import('./lake/lakeRetention.ts');
    const e = await expireLake({ table, topic: lake.topic, retentionMs: opts.lakeRetention, logger });
    console.log(
      e.horizon === undefined
        ? 'lake retention: nothing to remove'
        : `lake retention removed ${e.filesRemoved} file(s) with events before ${new Date(e.horizon).toISOString()}`,
    );
  }
  const r = await compactLake({ table, lake, targetFileSize: opts.targetFileSize, logger });
  const vacuumed = await table.vacuum(opts.vacuumRetention !== undefined ? { retentionMs: opts.vacuumRetention } : {});
  console.log(
    `compacted ${r.filesRemoved} file(s) into ${r.filesAdded} (${r.merges} merge(s)${r.conflicts > 0 ? `, ${r.conflicts} given up to a concurrent commit` : ''}); ` +
      `vacuum deleted ${vacuumed.deleted.length} file(s) past the retention`,
  );
}

async function status(opts: BatchOptions): Promise<void> {
  const ctx = context(opts);
  const lake = await lakeOf(opts, ctx);
  const table = await openLakeForReading(lake, { missingOk: true });
  const snap = table?.current;
  if (!snap) {
    console.log(`no lake at ${lake.uri}`);
  } else {
    const files = lakeFiles(snap);
    const p = snap.protocol!;
    console.log(
      `lake ${lake.uri}: Delta table version ${snap.version} (reader ${p.minReaderVersion}, writer ${p.minWriterVersion}), ${files.length} file(s), ${files.reduce((n, f) => n + f.size, 0)} bytes`,
    );
    for (const [partition, pos] of lakePositions(snap, opts.topic))
      console.log(`  partition ${partition}: committed through offset ${pos.nextOffset}`);
  }
  const run = await readCurrentBatchRun(await ctx.state(), opts.version);
  if (run) {
    const m = run.manifest;
    console.log(
      `current batch run ${m.runId} (${opts.version}): ${m.rows} rows, cut ${JSON.stringify(m.cut)}, finished ${new Date(m.finishedAt).toISOString()}`,
    );
  } else {
    console.log(`no batch run published for ${opts.version}`);
  }
}

async function migrate(opts: BatchOptions): Promise<void> {
  const lake = await lakeOf(opts, context(opts));
  const { legacyLakeExists, migrateLake } = await import('../services/lake/lakeMigration.ts');
  if (!(await legacyLakeExists(lake.store))) {
    const table = await openLakeForReading(lake, { missingOk: true });
    console.log(table ? `${lake.uri} is a Delta table already: nothing to convert` : `no lake at ${lake.uri}: nothing to convert`);
    return;
  }
  const r = await migrateLake(lake, { logger });
  console.log(
    r.already
      ? `${lake.uri} was converted to a Delta table already (from _lake_log version ${r.legacyVersion}); nothing left to do`
      : `converted ${lake.uri} to a Delta table: ${r.files} data file(s) kept where they are, ${r.partitions} partition position(s), from _lake_log version ${r.legacyVersion}`,
  );
}

export function registerBatchCommands(program: Command): void {
  const batch = program.command('batch').description('the batch layer: Parquet lake and batch views recomputed with DuckDB');
  addBatchOptions(
    batch
      .command('serve', { isDefault: true })
      .description('run the lake writer, recompute views every --interval, compact the lake (default)'),
  ).action(serve);
  addBatchOptions(batch.command('run').description('one cycle: bring the lake to the log end offsets, recompute the views, exit')).action(
    runOnce,
  );
  addBatchOptions(batch.command('compact').description('merge small lake files into files of --target-file-size, then vacuum')).action(
    compact,
  );
  addBatchOptions(batch.command('status').description('print the lake position and the current batch run')).action(status);
  addBatchOptions(
    batch
      .command('plan')
      .description(
        "with --engine spark: write the plan of the recompute's Spark job, for spark-submit under your own scheduler (then lk batch publish)",
      ),
  )
    .option(
      '--out <dir>',
      'the run folder: plan.json, the run record, and the job output (default <data-dir>/scratch/spark-runs/<version>/<run id>)',
    )
    .action(plan);
  addBatchOptions(
    batch.command('publish').description("check and publish the rows a planned Spark job wrote (the run's own version and cut)"),
  )
    .requiredOption('--run <dir>', 'the run folder lk batch plan wrote, after the job ran')
    .action(publish);
  addBatchOptions(
    batch
      .command('migrate-lake')
      .description('convert a lake of the former format (_lake_log/) into a Delta table, in place (lk batch also does it at start)'),
  ).action(migrate);
}
