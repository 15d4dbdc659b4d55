/**
 * How the batch layer hands its views to serving: immutable per-run snapshots in the shared state
 * (`--state-uri`: a local folder or an S3 bucket), and a pointer that only moves forward. DuckDB
 * allows one writer process per database file, and serving is another process, often on another
 * host, so serving never opens the batch layer's database: it reads finished snapshots.
 *
 *   views/<version>/runs/<runId>/rows.parquet   the view rows (columns: SNAPSHOT_COLUMNS)
 *   views/<version>/runs/<runId>/run.json       the run manifest (BatchRunManifest): the run is complete
 *   views/<version>/CURRENT                     {"runId": ...}: the newest complete run
 *
 * A run is built in the host's scratch folder, then its objects are created (create-only: a run
 * id is new), rows first and run.json last, then CURRENT is swapped by a compare-and-swap on the
 * version read (If-Match), and only forward: a run replaces CURRENT only if its cut covers the
 * current run's cut in every partition. Two batch processes on two hosts finishing out of order
 * therefore never move the views back to an older lake snapshot, and readers see the old run or
 * the new one, never a partial one. Old runs are kept for a grace period so that a reader that
 * has just resolved CURRENT can still read the files it points to.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { STATE_KEYS } from '../config/dataDir.ts';
import { InfrastructureError } from '../errors.ts';
import { crashPoint } from '../faults/crashPoints.ts';
import { readStoredJson } from '../storage/jsonFile.ts';
import { listAll, type ObjectStore } from '../storage/objectStore.ts';

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
  /** Percentile sketch text (services/metrics/ddsketch.ts `sketchText`); NULL without `percentiles`. */
  value_sketch: 'VARCHAR',
  /** Events in the row before deduplication by id (for duplicate rates). */
  raw_count: 'BIGINT',
  /** Events counted in the row that are not in their home partition (serving marks mixed windows provisional). */
  misplaced: 'BIGINT',
  through_offset: 'BIGINT',
  processing_time: 'BIGINT',
  /**
   * Session rows (granularity `session`, services/views/viewRow.ts SessionRow): the last event
   * time, `window_start` being the first. NULL in window rows; absent in runs written before sessions.
   */
  window_end: 'BIGINT',
} as const;

export const batchRunManifestSchema = z.object({
  runId: z.string(),
  version: z.string(),
  /** The engine that computed the rows (`lk batch run --engine`); runs from before it was recorded are DuckDB's. */
  engine: z.enum(['duckdb', 'spark']).optional(),
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

const currentSchema = z.object({ runId: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be a run id') });

/** A version's batch views, relative to the state location. */
export function batchViewsPrefix(version: string): string {
  return `${STATE_KEYS.views}/${version}`;
}

export function runKey(version: string, runId: string, file: 'rows.parquet' | 'run.json'): string {
  return `${batchViewsPrefix(version)}/runs/${runId}/${file}`;
}

function currentKey(version: string): string {
  return `${batchViewsPrefix(version)}/CURRENT`;
}

/** A fresh local folder (under the host's scratch folder) to build a run in; `commitBatchRun` publishes it. */
/** The folder on this host a run is built in (stageBatchRun makes it anew). */
export function stagedRunDir(scratchDir: string, version: string, runId: string): string {
  return join(scratchDir, 'views', version, runId);
}

export function stageBatchRun(scratchDir: string, version: string, runId: string): string {
  const dir = stagedRunDir(scratchDir, version, runId);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Whether a run with cut `a` covers at least what one with cut `b` covers, in every partition. */
export function cutCovers(a: readonly number[], b: readonly number[]): boolean {
  for (let p = 0; p < Math.max(a.length, b.length); p++) if ((a[p] ?? 0) < (b[p] ?? 0)) return false;
  return true;
}

export interface CommitResult {
  /** False when CURRENT already named a run that covers more: this run was not published (and is deleted). */
  published: boolean;
  /** The run CURRENT names after the commit. */
  current: BatchRunManifest;
}

/**
 * Publishes a run staged in `staged`: rows.parquet and run.json created in the shared state, then
 * CURRENT moved forward to it by compare-and-swap. A crash at any step leaves CURRENT naming a
 * complete run, the previous one or the new one (a run's objects without CURRENT are an
 * unpublished run, deleted after the grace period by pruneBatchRuns).
 */
export async function commitBatchRun(state: ObjectStore, staged: string, manifest: BatchRunManifest): Promise<CommitResult> {
  const { version, runId } = manifest;
  const rows = join(staged, 'rows.parquet');
  if (!existsSync(rows)) throw new InfrastructureError(`staged run ${runId} has no rows.parquet`);
  for (const [key, put] of [
    [runKey(version, runId, 'rows.parquet'), () => state.putFile(runKey(version, runId, 'rows.parquet'), rows, { ifAbsent: true })],
    [
      runKey(version, runId, 'run.json'),
      () => state.put(runKey(version, runId, 'run.json'), JSON.stringify(manifest, null, 2), { ifAbsent: true }),
    ],
  ] as const) {
    if (!(await put()).ok) throw new InfrastructureError(`batch run ${runId} already exists at ${state.location}/${key}`);
  }
  crashPoint('batch.run.placed');
  for (;;) {
    const current = await readStoredJson(state, currentKey(version), currentSchema, 'a batch CURRENT pointer');
    const currentManifest = current ? await readRunManifest(state, version, current.value.runId) : undefined;
    if (currentManifest && currentManifest.runId !== runId && !cutCovers(manifest.cut, currentManifest.cut)) {
      // Another batch process published a run of a newer lake snapshot first: never go back.
      for (const file of ['rows.parquet', 'run.json'] as const) await state.delete(runKey(version, runId, file));
      return { published: false, current: currentManifest };
    }
    crashPoint('batch.run.before-current-swap');
    const body = JSON.stringify({ runId });
    const swapped = await state.put(currentKey(version), body, current ? { ifMatch: current.etag } : { ifAbsent: true });
    if (swapped.ok) {
      crashPoint('batch.run.current-swapped');
      return { published: true, current: manifest };
    }
    // CURRENT moved meanwhile: look again at what it names now.
  }
}

async function readRunManifest(state: ObjectStore, version: string, runId: string): Promise<BatchRunManifest> {
  const read = await readStoredJson(state, runKey(version, runId, 'run.json'), batchRunManifestSchema, 'a batch run manifest');
  if (!read)
    throw new InfrastructureError(`CURRENT of version ${version} names run ${runId}, whose run.json is missing in ${state.location}`);
  return read.value;
}

export interface CurrentBatchRun {
  manifest: BatchRunManifest;
  /** The rows' key in the shared state. */
  rowsKey: string;
  /** The rows' file on this machine when the state is a local folder (else read it with `localRowsFile`). */
  rowsPath: string | undefined;
}

/** The newest complete run of a version, or undefined when none was published yet. */
export async function readCurrentBatchRun(state: ObjectStore, version: string): Promise<CurrentBatchRun | undefined> {
  const current = await readStoredJson(state, currentKey(version), currentSchema, 'a batch CURRENT pointer');
  if (!current) return undefined;
  const manifest = await readRunManifest(state, version, current.value.runId);
  const rowsKey = runKey(version, manifest.runId, 'rows.parquet');
  return { manifest, rowsKey, rowsPath: state.localPath(rowsKey) };
}

/**
 * The run's rows as a file on this machine: in place when the state is a local folder, else a
 * copy downloaded once into `cacheDir` (runs never change, so a copy stays valid; copies of other
 * runs of the version older than `graceMs` are removed).
 */
export async function localRowsFile(state: ObjectStore, run: CurrentBatchRun, cacheDir: string, graceMs = 10 * 60_000): Promise<string> {
  if (run.rowsPath !== undefined) return run.rowsPath;
  const { version, runId } = run.manifest;
  const file = join(cacheDir, 'views', version, runId, 'rows.parquet');
  if (!existsSync(file) && !(await state.download(run.rowsKey, file)))
    throw new InfrastructureError(`batch run ${runId} of version ${version} is gone from ${state.location} (pruned before it was read)`);
  removeOlderThan(dirname(dirname(file)), runId, graceMs);
  return file;
}

/** Removes the folders in `dir` other than `keep` that were last changed more than `graceMs` ago. */
function removeOlderThan(dir: string, keep: string, graceMs: number): void {
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    const path = join(dir, name);
    if (name !== keep && Date.now() - statSync(path).mtimeMs > graceMs) rmSync(path, { recursive: true, force: true });
  }
}

/**
 * Keeps a run's rows on this machine after it was published (the batch layer's own tests and
 * tools read them): moves the staged file into `cacheDir` when the state is on S3.
 */
export function keepStagedRows(staged: string, cacheDir: string, manifest: BatchRunManifest): string {
  const file = join(cacheDir, 'views', manifest.version, manifest.runId, 'rows.parquet');
  mkdirSync(dirname(file), { recursive: true });
  renameSync(join(staged, 'rows.parquet'), file);
  return file;
}

/**
 * Deletes runs other than the current one that are older than `graceMs`, keeping the newest
 * `keep`, and this host's staged runs that a crash left behind. Returns the runs deleted.
 */
export async function pruneBatchRuns(
  state: ObjectStore,
  version: string,
  scratchDir: string,
  keep = 3,
  graceMs = 10 * 60_000,
): Promise<string[]> {
  // Runs a crash interrupted before they were published: nobody reads a staging folder.
  removeOlderThan(join(scratchDir, 'views', version), '', graceMs);
  const current = (await readStoredJson(state, currentKey(version), currentSchema, 'a batch CURRENT pointer'))?.value.runId;
  const runs = new Map<string, { keys: string[]; lastModified: number }>();
  const prefix = `${batchViewsPrefix(version)}/runs/`;
  for (const o of await listAll(state, prefix)) {
    const runId = o.key.slice(prefix.length).split('/')[0]!;
    const run = runs.get(runId) ?? { keys: [], lastModified: 0 };
    run.keys.push(o.key);
    run.lastModified = Math.max(run.lastModified, o.lastModified);
    runs.set(runId, run);
  }
  const removed: string[] = [];
  const now = Date.now();
  // Newest first; S3 stamps whole seconds, so ties go by run id (newRunId: time first).
  const newestFirst = [...runs].sort((a, b) => b[1].lastModified - a[1].lastModified || b[0].localeCompare(a[0]));
  for (const [runId, run] of newestFirst.slice(keep)) {
    if (runId === current || now - run.lastModified <= graceMs) continue;
    for (const key of run.keys) await state.delete(key);
    // A local folder keeps the run's empty directory otherwise (run ids are never written again).
    const folder = state.localPath(`${prefix}${runId}`);
    if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
    removed.push(runId);
  }
  return removed;
}
