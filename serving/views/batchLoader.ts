/**
 * Loads the batch layer's published snapshots (services/views/batchSnapshots.ts) into memory and
 * follows CURRENT: when the batch layer publishes a newer run, the new snapshot is loaded aside
 * and installed in one step (VersionView.installBatch), so queries never see a half-loaded run.
 *
 * Serving reads the immutable rows.parquet with its own in-memory DuckDB: it never opens the
 * batch layer's database (one writer process per DuckDB file).
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { isGranularity, type Granularity } from '../../services/metrics/definitions.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { localRowsFile, readCurrentBatchRun, type CurrentBatchRun } from '../../services/views/batchSnapshots.ts';
import { SESSION_GRANULARITY, sessionRowSchema } from '../../services/views/viewRow.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import type { PartialRows } from './partialRows.ts';
import { BatchViewBuilder, type BatchView, type VersionView } from './versionView.ts';

let duck: Promise<DuckDBInstance> | undefined;

/**
 * One in-memory DuckDB per serving process, only to read Parquet, and a connection per load:
 * a connection streams one result at a time, and two versions' runs may load at once (a
 * promotion while a run lands); on one shared connection the second query ended the first
 * one's stream, whose view then held its series with no rows.
 */
async function connect(): Promise<DuckDBConnection> {
  duck ??= DuckDBInstance.create(':memory:');
  return (await duck).connect();
}

/**
 * Reads a snapshot into columnar series. Two passes over the (immutable) Parquet file: the
 * series and their row counts first, so every series' arrays are allocated once at their final
 * size; then the rows, sorted, written straight into the arrays from DuckDB's vectors (no
 * per-row objects, no per-row strings except sketches).
 */
export async function loadBatchView(
  run: CurrentBatchRun,
  rowsFile: string,
  /** Retention (serving/views/viewRetention.ts): rows of windows before it are not loaded. */
  oldestKept: (metric: string, granularity: Granularity) => number = () => -Infinity,
): Promise<BatchView> {
  const conn = await connect();
  const builder = new BatchViewBuilder();
  let expectedRows = 0;
  let loadedRows = 0;
  const file = sqlQuote(rowsFile);
  // Session rows (partial sessions, granularity 'session') are read apart, after the windows.
  const windowsOnly = `granularity <> ${sqlQuote(SESSION_GRANULARITY)}`;
  try {
    const series = await conn.runAndReadAll(
      `SELECT metric, granularity, key, count(*)::DOUBLE AS n FROM read_parquet(${file}) WHERE ${windowsOnly} GROUP BY ALL ORDER BY metric, granularity, key`,
    );
    const sides: PartialRows[] = [];
    const keepFrom: number[] = [];
    for (const [metric, granularity, key, n] of series.getRows() as [string, string, string, number][]) {
      if (!isGranularity(granularity))
        throw new InfrastructureError(`batch snapshot ${run.manifest.runId}: unknown granularity "${granularity}"`);
      sides.push(builder.seriesRows(metric, granularity as Granularity, key, n));
      keepFrom.push(oldestKept(metric, granularity as Granularity));
      expectedRows += n;
    }
    // Snapshots written before misplaced events were counted have no such column: none counted.
    const columns = await conn.runAndReadAll(`SELECT name FROM parquet_schema(${file})`);
    const hasMisplaced = columns.getRows().some(([name]) => name === 'misplaced');
    // Nor have snapshots written before percentile sketches a value_sketch column.
    const hasValueSketch = columns.getRows().some(([name]) => name === 'value_sketch');
    // Numbers come back as doubles: exact for offsets, counts and epoch-ms below 2^53.
    const result =
      await conn.stream(`SELECT s.sid, r.window_start::DOUBLE, r.partition::INTEGER, r.count::DOUBLE, r.sum::DOUBLE, r.min::DOUBLE, r.max::DOUBLE,
        r.distinct_sketch, r.raw_count::DOUBLE, r.through_offset::DOUBLE, r.processing_time::DOUBLE, ${hasMisplaced ? 'r.misplaced::DOUBLE' : '0::DOUBLE'},
        ${hasValueSketch ? 'r.value_sketch' : 'CAST(NULL AS VARCHAR)'}
      FROM read_parquet(${file}) r
      JOIN (SELECT metric, granularity, key, (row_number() OVER (ORDER BY metric, granularity, key) - 1)::INTEGER AS sid
            FROM (SELECT DISTINCT metric, granularity, key FROM read_parquet(${file}) WHERE ${windowsOnly})) s USING (metric, granularity, key)
      ORDER BY s.sid, r.window_start, r.partition`);
    for (;;) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const v = Array.from({ length: 13 }, (_, i) => chunk.getColumnVector(i));
      const num = (c: number, r: number) => (v[c]!.getItem(r) as number | null) ?? NaN;
      loadedRows += chunk.rowCount;
      for (let r = 0; r < chunk.rowCount; r++) {
        const sid = v[0]!.getItem(r) as number;
        if (num(1, r) < keepFrom[sid]!) continue;
        const side = sides[sid]!;
        side.appendSorted(
          num(1, r),
          num(2, r),
          num(3, r),
          num(4, r),
          num(5, r),
          num(6, r),
          num(9, r),
          num(10, r),
          num(8, r),
          num(11, r),
          v[7]!.getItem(r) as string | null,
          v[12]!.getItem(r) as string | null,
        );
      }
    }
    // A snapshot is installed whole or not at all: a stream that ended early is a failed load.
    if (loadedRows !== expectedRows)
      throw new InfrastructureError(`batch snapshot ${run.manifest.runId}: read ${loadedRows} of its ${expectedRows} rows`);
    // Partial sessions: snapshots written before sessions have no window_end column (and none).
    if (columns.getRows().some(([name]) => name === 'window_end')) {
      const sessions = await conn.runAndReadAll(
        `SELECT metric, key, window_start::DOUBLE, window_end::DOUBLE, partition::INTEGER, count::DOUBLE, sum::DOUBLE, min::DOUBLE, max::DOUBLE,
           distinct_sketch, ${hasMisplaced ? 'misplaced::DOUBLE' : '0::DOUBLE'}, through_offset::DOUBLE, processing_time::DOUBLE
         FROM read_parquet(${file}) WHERE granularity = ${sqlQuote(SESSION_GRANULARITY)}`,
      );
      for (const r of sessions.getRows()) {
        const [metric, key, start, end, partition, count, sum, min, max, distinctSketch, misplaced, throughOffset, processingTime] = r;
        // Read back from storage: checked as the speed view's session rows are.
        const row = sessionRowSchema.safeParse({
          metric,
          granularity: SESSION_GRANULARITY,
          key,
          windowStart: start,
          windowEnd: end,
          partition,
          count,
          sum,
          min,
          max,
          distinctSketch,
          misplaced,
          throughOffset,
          processingTime,
        });
        if (!row.success)
          throw new InfrastructureError(
            `batch snapshot ${run.manifest.runId}: an unreadable session row of ${String(metric)}: ${row.error.issues[0]?.message ?? 'invalid'}`,
          );
        builder.addSession(row.data);
      }
    }
  } catch (err) {
    if (err instanceof InfrastructureError) throw err;
    throw new InfrastructureError(`cannot read batch snapshot ${rowsFile}: ${errorMessage(err)}`, { cause: err });
  } finally {
    conn.closeSync();
  }
  return builder.build(run.manifest);
}

export interface BatchFollowerOptions {
  /** The shared state, where the batch layer publishes runs. */
  state: ObjectStore;
  /** Where runs read from S3 are copied on this host. */
  cacheDir: string;
  view: VersionView;
  pollMs: number;
  logger: Logger;
  onInstalled?: (batch: BatchView) => void;
}

/** Polls CURRENT and installs each newer run. */
export class BatchFollower {
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private stopped = false;
  lastError: string | null = null;
  /** True once CURRENT was looked at (present or not). */
  checkedOnce = false;
  /** Whether the batch layer has published a run for this version. */
  published = false;

  constructor(private readonly options: BatchFollowerOptions) {}

  async start(): Promise<void> {
    await this.check();
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.check().finally(() => this.schedule());
    }, this.options.pollMs);
    this.timer.unref();
  }

  /** Loads CURRENT if it names a run other than the installed one. */
  check(): Promise<void> {
    this.checking ??= this.checkOnce().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkOnce(): Promise<void> {
    const { view, state, cacheDir, logger } = this.options;
    try {
      const run = await readCurrentBatchRun(state, view.version);
      this.published = run !== undefined;
      if (run && run.manifest.runId !== view.batch?.manifest.runId) {
        const started = Date.now();
        const batch = await loadBatchView(run, await localRowsFile(state, run, cacheDir), (metric, granularity) =>
          view.retention.oldestKept(metric, granularity),
        );
        if (this.stopped) return;
        view.installBatch(batch);
        logger.info(
          { version: view.version, runId: run.manifest.runId, rows: batch.rows, ms: Date.now() - started },
          'batch view installed',
        );
        this.options.onInstalled?.(batch);
      }
      this.lastError = null;
    } catch (err) {
      // Keep serving the run already installed; a broken or vanished snapshot is reported, not fatal.
      this.lastError = errorMessage(err);
      logger.warn({ version: view.version, err: this.lastError }, 'cannot load the current batch view');
    } finally {
      this.checkedOnce = true;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.checking;
  }
}
