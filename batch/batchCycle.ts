/**
 * One batch cycle (`lk batch run`): bring the lake up to the log's end offsets as read at the
 * start, then recompute the views from the lake. The run's cut is the manifest's position after
 * the catch-up, which covers at least those end offsets.
 */
import type { EventLog } from '../services/log/eventLog.ts';
import type { MetricDefinitions } from '../services/metrics/definitions.ts';
import type { EventMapping } from '../services/metrics/fieldSemantics.ts';
import type { LakeHandle } from '../services/lake/lakeLocation.ts';
import type { Logger } from '../services/observability/logger.ts';
import type { ObjectStore } from '../services/storage/objectStore.ts';
import { progress } from '../services/observability/progress.ts';
import { ensureVersionRecord } from '../services/versions/versionRecord.ts';
import { LakeWriter, type LakeWriterStats } from './lake/lakeWriter.ts';
import type { RecomputeResult } from './views/batchViews.ts';
import { recomputeViews } from './engines/batchEngine.ts';
import type { BatchEngine } from './engines/engineChoice.ts';

/** What the batch service and a single cycle are both given: the log, the lake, the views, the metrics. */
export interface BatchJobOptions {
  log: EventLog;
  topic: string;
  groupId: string;
  /** The shared state (`--state-uri`): version records, batch views, status. */
  state: ObjectStore;
  /** This host's scratch and cache folders (services/config/dataDir.ts): runs are built in the first. */
  scratchDir: string;
  cacheDir: string;
  /** The topic's lake table (`--lake-uri`). */
  lake: LakeHandle;
  version: string;
  metrics: MetricDefinitions;
  rollBytes: number;
  rollIntervalMs: number;
  logger: Logger;
  /** The engine that recomputes the views (`--engine`; DuckDB when absent). */
  engine?: BatchEngine;
}

export interface BatchCycleOptions extends BatchJobOptions {
  /** Stop early (SIGTERM): commit what was read and skip the recompute. */
  signal?: AbortSignal;
}

export async function catchUpLake(
  options: Omit<BatchCycleOptions, 'state' | 'scratchDir' | 'cacheDir' | 'version' | 'metrics'> & { mapping?: EventMapping },
): Promise<{ records: number; stats: LakeWriterStats }> {
  const ends = await options.log.endOffsets(options.topic);
  const writer = await LakeWriter.open({
    log: options.log,
    topic: options.topic,
    lake: options.lake,
    groupId: options.groupId,
    rollBytes: options.rollBytes,
    rollIntervalMs: options.rollIntervalMs,
    logger: options.logger,
    ...(options.mapping !== undefined ? { mapping: options.mapping } : {}),
  });
  const start = writer.committedPositions();
  const total = ends.reduce((n, end, p) => n + Math.max(0, end - (start.get(p)?.nextOffset ?? 0)), 0);
  const bar = progress('lake', total, 'records');
  try {
    await writer.start();
    const aborted = new Promise<void>((resolve) => options.signal?.addEventListener('abort', () => resolve(), { once: true }));
    await Promise.race([
      writer.catchUp(ends, (read) => {
        let done = 0;
        for (const [p, next] of read) done += Math.max(0, Math.min(next, ends[p] ?? next) - (start.get(p)?.nextOffset ?? 0));
        bar.update(done);
      }),
      aborted,
    ]);
  } finally {
    bar.finish();
    await writer.close({ commitPending: true });
  }
  return { records: writer.stats.records, stats: writer.stats };
}

/** The version's home partition count, creating its record from the topic when it has none. */
export async function homePartitionsOf(
  log: EventLog,
  state: ObjectStore,
  version: string,
  topic: string,
  metrics: MetricDefinitions,
): Promise<number> {
  return (await ensureVersionRecord(state, { version, topic, homePartitions: await log.partitionCount(topic), metrics })).homePartitions;
}

export async function runBatchCycle(options: BatchCycleOptions): Promise<RecomputeResult | undefined> {
  const homePartitions = await homePartitionsOf(options.log, options.state, options.version, options.topic, options.metrics);
  await catchUpLake({ ...options, mapping: options.metrics.event });
  if (options.signal?.aborted) return undefined;
  const bar = progress('recompute', undefined, 'phases');
  try {
    return await recomputeViews({
      lake: options.lake,
      state: options.state,
      scratchDir: options.scratchDir,
      cacheDir: options.cacheDir,
      version: options.version,
      metrics: options.metrics,
      homePartitions,
      logger: options.logger,
      ...(options.engine ? { engine: options.engine } : {}),
      onPhase: (phase, done) => bar.update(done, phase),
    });
  } finally {
    bar.finish();
  }
}
