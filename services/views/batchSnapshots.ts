/**
 * How the batch layer hands its views to serving: immutable per-run snapshots, swapped
 * atomically. DuckDB allows one writer process per database file, and serving is another
 * process, so serving never opens the batch layer's database: it reads finished snapshots.
 *
 *   <views>/<version>/runs/<runId>/rows.parquet   the view rows (columns: SNAPSHOT_COLUMNS)
 *   <views>/<version>/runs/<runId>/run.json       the run manifest (BatchRunManifest)
 *   <views>/<version>/CURRENT                     {"runId": ...}: the latest complete run
 *
 * A run writes its directory under a temporary name, renames it into `runs/` once complete,
 * then replaces CURRENT by rename: readers see the old run or the new one, never a partial one.
 * Old runs are kept for a grace period so that a reader that has just resolved CURRENT can still
 * open the files it points to.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/** Columns of rows.parquet, in order (snake_case, DuckDB types). */
export const SNAPSHOT_COLUMNS = {
  metric: 'VARCHAR',
  granularity: 'VARCHAR',
  key: 'VARCHAR',
  window_start: 'BIGINT',
  partition: 'INTEGER',
  count: 'BIGINT',
  sum: 'DOUBLE',
  min: 'DOUBLE',
  max: 'DOUBLE',
  distinct_sketch: 'VARCHAR',
  /** Events in the row before deduplication by id (for duplicate rates). */
  raw_count: 'BIGINT',
  through_offset: 'BIGINT',
  processing_time: 'BIGINT',
} as const;

export const batchRunManifestSchema = z.object({
  runId: z.string(),
  version: z.string(),
  /** Next offset per input partition covered by the run (the cut). */
  cut: z.array(z.number().int().nonnegative()),
  /** Log-append time of record cut[p] - 1 per partition (0 when the partition is empty). */
  processingTimes: z.array(z.number()),
  startedAt: z.number(),
  finishedAt: z.number(),
  durationMs: z.number(),
  rows: z.number().int().nonnegative(),
  /** Events in the lake up to the cut, duplicates included, and after dedup by id. */
  rawEvents: z.number().int().nonnegative(),
  uniqueEvents: z.number().int().nonnegative(),
  lakeFiles: z.number().int().nonnegative(),
  lakeBytes: z.number().int().nonnegative(),
  full: z.boolean(),
  /** Metric definitions file the run was compiled from. */
  metricsSource: z.string(),
});
export type BatchRunManifest = z.infer<typeof batchRunManifestSchema>;

export function versionDir(viewsRoot: string, version: string): string {
  return join(viewsRoot, version);
}

/** A fresh directory to build a run in; `commitBatchRun` publishes it. */
export function stageBatchRun(viewsRoot: string, version: string, runId: string): string {
  const dir = join(versionDir(viewsRoot, version), 'staging', runId);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Publishes a staged run: rename into runs/, then swap CURRENT. Both renames are atomic. */
export function commitBatchRun(viewsRoot: string, manifest: BatchRunManifest): void {
  const base = versionDir(viewsRoot, manifest.version);
  const staged = join(base, 'staging', manifest.runId);
  if (!existsSync(join(staged, 'rows.parquet'))) throw new Error(`staged run ${manifest.runId} has no rows.parquet`);
  writeFileSync(join(staged, 'run.json'), JSON.stringify(manifest, null, 2));
  mkdirSync(join(base, 'runs'), { recursive: true });
  renameSync(staged, join(base, 'runs', manifest.runId));
  const tmp = join(base, `CURRENT.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify({ runId: manifest.runId }));
  renameSync(tmp, join(base, 'CURRENT'));
}

export interface CurrentBatchRun {
  manifest: BatchRunManifest;
  rowsPath: string;
}

/** The latest complete run of a version, or undefined when none was published yet. */
export function readCurrentBatchRun(viewsRoot: string, version: string): CurrentBatchRun | undefined {
  const base = versionDir(viewsRoot, version);
  let runId: string;
  try {
    runId = (JSON.parse(readFileSync(join(base, 'CURRENT'), 'utf8')) as { runId: string }).runId;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const dir = join(base, 'runs', runId);
  const manifest = batchRunManifestSchema.parse(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')));
  return { manifest, rowsPath: join(dir, 'rows.parquet') };
}

/** Deletes runs other than the current one that are older than `graceMs`, keeping the newest `keep`. */
export function pruneBatchRuns(viewsRoot: string, version: string, keep = 3, graceMs = 10 * 60_000): string[] {
  const base = versionDir(viewsRoot, version);
  const current = readCurrentBatchRun(viewsRoot, version)?.manifest.runId;
  const runsDir = join(base, 'runs');
  if (!existsSync(runsDir)) return [];
  const runs = readdirSync(runsDir)
    .map((name) => ({ name, mtime: statSync(join(runsDir, name)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  const removed: string[] = [];
  runs.slice(keep).forEach((r) => {
    if (r.name !== current && Date.now() - r.mtime > graceMs) {
      rmSync(join(runsDir, r.name), { recursive: true, force: true });
      removed.push(r.name);
    }
  });
  return removed;
}
