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
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { crashPoint } from '../faults/crashPoints.ts';
import { fsyncDir, fsyncFile, writeFileAtomicSync } from '../storage/atomicFile.ts';

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
  /** Events counted in the row that are not in their home partition (serving marks mixed windows provisional). */
  misplaced: 'BIGINT',
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
  /** Records in the lake up to the cut that are not in their home partition (duplicates included). */
  misplacedEvents: z.number().int().nonnegative().default(0),
  /** The version's home partition count the misplaced counts refer to. */
  homePartitions: z.number().int().positive().optional(),
  lakeFiles: z.number().int().nonnegative(),
  lakeBytes: z.number().int().nonnegative(),
  full: z.boolean(),
  /** Metric definitions file the run was compiled from. */
  metricsSource: z.string(),
  /** SHA-256 of that file's text: promotion asks for a batch view of the version's own file. */
  metricsSha256: z.string().optional(),
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

/**
 * Publishes a staged run: rename into runs/, then swap CURRENT. Both renames are atomic, and
 * durable (run.json and CURRENT through services/storage/atomicFile.ts, the directories fsynced):
 * after a crash CURRENT names a complete run, the previous one or the new one.
 */
export function commitBatchRun(viewsRoot: string, manifest: BatchRunManifest): void {
  const base = versionDir(viewsRoot, manifest.version);
  const staged = join(base, 'staging', manifest.runId);
  if (!existsSync(join(staged, 'rows.parquet'))) throw new Error(`staged run ${manifest.runId} has no rows.parquet`);
  fsyncFile(join(staged, 'rows.parquet'));
  writeFileAtomicSync(join(staged, 'run.json'), JSON.stringify(manifest, null, 2));
  mkdirSync(join(base, 'runs'), { recursive: true });
  renameSync(staged, join(base, 'runs', manifest.runId));
  fsyncDir(join(base, 'runs'));
  crashPoint('batch.run.renamed');
  writeFileAtomicSync(join(base, 'CURRENT'), JSON.stringify({ runId: manifest.runId }), 'batch.run.before-current-rename');
  crashPoint('batch.run.current-swapped');
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
  // Runs a crash interrupted before they were published: nobody reads a staging directory.
  const stagingDir = join(base, 'staging');
  for (const name of existsSync(stagingDir) ? readdirSync(stagingDir) : []) {
    if (Date.now() - statSync(join(stagingDir, name)).mtimeMs > graceMs) rmSync(join(stagingDir, name), { recursive: true, force: true });
  }
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
