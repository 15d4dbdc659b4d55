/**
 * `lk batch` commands:
 *   lk batch              service: lake writer + scheduled recompute + compaction + status
 *   lk batch run          one cycle: lake up to the log's end offsets, recompute, exit
 *   lk batch compact      merge small lake files (when the service is not running)
 *   lk batch status       print the lake position and the current batch run
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { InfrastructureError, errorMessage } from '../services/errors.ts';
import { acquireLock, releaseLock } from '../services/storage/fileLock.ts';
import { aborted, context, onShutdownSignal } from '../services/config/cliOptions.ts';
import { logger } from '../services/observability/logger.ts';
import { readCurrentBatchRun } from '../services/views/batchSnapshots.ts';
import { addBatchOptions, lakeWriterGroup, validateBatchOptions, type BatchOptions } from './batchConfig.ts';
import { lakeRootOf } from '../services/lake/lakeLayout.ts';
import { batchStatusPath } from '../services/status/batchStatus.ts';
import { LakeManifest, WRITER_LOCK, lakeExists } from '../services/lake/commitProtocol.ts';
// The service, the cycle and compaction load DuckDB: imported when a command runs, so that
// `lk --help` and the other layers' commands start without it.

/** What the service and a single cycle are both given: the log, the lake, the views, the metrics. */
function cycleOptions(opts: BatchOptions, clientId: string) {
  validateBatchOptions(opts);
  const ctx = context(opts);
  // The metric file first: a bad one is refused before anything is opened.
  const metrics = ctx.loadMetrics(opts.version);
  return {
    ctx,
    common: {
      log: ctx.openLog(clientId),
      topic: opts.topic,
      groupId: opts.group ?? lakeWriterGroup(opts.topic),
      dataDir: ctx.layout.root,
      lakeRoot: lakeRootOf(ctx.layout, opts.topic),
      viewsRoot: ctx.layout.views,
      version: opts.version,
      metrics,
      rollBytes: opts.rollSize,
      rollIntervalMs: opts.rollInterval,
      logger,
    },
  };
}

async function serve(opts: BatchOptions): Promise<void> {
  const { ctx, common } = cycleOptions(opts, 'lk-batch');
  const log = common.log;
  const signal = onShutdownSignal((sig) => logger.info({ signal: sig }, 'stopping: committing what is pending'));
  const { BatchService } = await import('./batchService.ts');
  const service = new BatchService({
    ...common,
    intervalMs: opts.interval,
    targetFileSize: opts.targetFileSize,
    statusPath: batchStatusPath(ctx.layout.root),
    statusPort: opts.statusPort,
  });
  try {
    const { port } = await service.start();
    logger.info({ topic: opts.topic, version: opts.version, port, lake: lakeRootOf(ctx.layout, opts.topic) }, 'batch service running');
    await Promise.race([aborted(signal), service.done()]);
  } finally {
    await service.stop();
    await log.close();
  }
}

async function runOnce(opts: BatchOptions): Promise<void> {
  const { common } = cycleOptions(opts, 'lk-batch-run');
  const log = common.log;
  const signal = onShutdownSignal((sig) => logger.info({ signal: sig }, 'stopping: committing what is pending'));
  try {
    const { runBatchCycle } = await import('./batchCycle.ts');
    const result = await runBatchCycle({ ...common, signal });
    if (!result) {
      console.log('stopped before the recompute; the lake holds everything read so far');
      return;
    }
    const m = result.manifest;
    console.log(
      `batch run ${m.runId}: ${m.rows} view rows from ${m.rawEvents} lake events (${m.uniqueEvents} unique) in ${(m.durationMs / 1000).toFixed(2)}s; cut ${JSON.stringify(m.cut)}`,
    );
  } finally {
    await log.close();
  }
}

async function compact(opts: BatchOptions): Promise<void> {
  validateBatchOptions(opts);
  const ctx = context(opts);
  const root = lakeRootOf(ctx.layout, opts.topic);
  if (!lakeExists(root)) throw new InfrastructureError(`no lake at ${root}; run \`lk batch run\` first`);
  const manifest = LakeManifest.open(root);
  const lock = join(manifest.logDir, WRITER_LOCK);
  // The writer sweeps unlisted files at startup; holding its lock keeps it from sweeping ours.
  await acquireLock(lock, 5_000).catch((err) => {
    throw new InfrastructureError(`the lake is in use by a running \`lk batch\` (which compacts by itself): ${errorMessage(err)}`);
  });
  try {
    const { compactLake } = await import('./lake/compaction.ts');
    const r = await compactLake({ manifest, targetFileSize: opts.targetFileSize, logger });
    const purged = manifest.vacuum();
    console.log(
      `compacted ${r.filesRemoved} file(s) into ${r.filesAdded} (${r.merges} merge(s)); deleted ${purged.length} file(s) past their grace period`,
    );
  } finally {
    releaseLock(lock);
  }
}

function status(opts: BatchOptions): void {
  const ctx = context(opts);
  const root = lakeRootOf(ctx.layout, opts.topic);
  if (!lakeExists(root)) {
    console.log(`no lake at ${root}`);
    return;
  }
  const lake = LakeManifest.open(root).snapshot();
  const run = readCurrentBatchRun(ctx.layout.views, opts.version);
  console.log(`lake ${root}: version ${lake.version}, ${lake.files.length} file(s), ${lake.files.reduce((n, f) => n + f.bytes, 0)} bytes`);
  for (const [p, pos] of [...lake.positions].sort((a, b) => a[0] - b[0]))
    console.log(`  partition ${p}: committed through offset ${pos.nextOffset}`);
  if (run) {
    const m = run.manifest;
    console.log(
      `current batch run ${m.runId} (${opts.version}): ${m.rows} rows, cut ${JSON.stringify(m.cut)}, finished ${new Date(m.finishedAt).toISOString()}`,
    );
  } else {
    console.log(`no batch run published for ${opts.version}`);
  }
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
  addBatchOptions(batch.command('compact').description('merge small lake files into files of --target-file-size')).action(compact);
  addBatchOptions(batch.command('status').description('print the lake position and the current batch run')).action(status);
}
