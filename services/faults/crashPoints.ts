/**
 * Named crash points on every commit path, in the style of FoundationDB's and TigerBeetle's
 * simulation tests: a test names the protocol step where the process must die, instead of
 * killing it after a random sleep and hoping to land there.
 *
 *   LK_CRASH_AT=<point>       SIGKILL this process the first time it reaches <point>
 *   LK_CRASH_AT=<point>@<n>   ... the n-th time (1-based)
 *
 * The process kills itself with SIGKILL, exactly what `kill -9` or the OOM killer does: no
 * handler runs, nothing is flushed. Unset (always, in production), `crashPoint` is one property
 * read. `test/crashPoints.exactness.spec.ts` visits every point below, restarts, and compares
 * the result with an independent oracle; the visit at which each point crashes is drawn from the
 * test's seed and the point's name alone (`crashVisit`), so a printed rerun command replays
 * exactly the same crash.
 *
 * Pause points, beside them, stop one step of a protocol instead of the process, so that a test
 * can make something else happen exactly then (kill the broker while a checkpoint commits):
 *
 *   LK_PAUSE_AT=<point>[@<n>] LK_PAUSE_DIR=<dir>   at the n-th visit, write <dir>/<point> and
 *                                                    wait (that step only) until it is deleted
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Every crash point, with the step it stops before or after. */
export const CRASH_POINTS = {
  // Speed layer checkpoint: two-phase commit with the Kafka transaction as commit point (partitionTask.ts), the snapshot on the shared store.
  'speed.checkpoint.before-snapshot-put': 'the capture is taken (its rows left the state); its snapshot is not created in the store',
  'speed.checkpoint.snapshot-written': 'the snapshot is created in the store (create-only); the transaction is not begun',
  'speed.checkpoint.rows-sent': 'the view rows are sent in the open transaction; the offsets are not',
  'speed.checkpoint.offsets-sent': 'rows and offsets are in the transaction; it is not committed',
  'speed.checkpoint.committed': 'the transaction is committed; old snapshots are not pruned',
  // Lake writer: files uploaded unlisted, then one Delta commit (services/lake/delta/deltaLog.ts, lakeWriter.ts).
  'lake.roll.files-written': "the roll's Parquet files are written in the local scratch folder, nothing is uploaded",
  'lake.roll.files-uploaded': "the roll's files are in the table's folders; no log version lists them",
  'lake.roll.dead-letters-sent': "the roll's dead letters are sent; the log does not move past them yet",
  'lake.commit.written': 'the next _delta_log version is created; its checkpoint (when due) and the group offsets are not written',
  'lake.checkpoint.written': 'the checkpoint Parquet file is in _delta_log/; _last_checkpoint still names the previous one',
  // Compaction: the merged file uploaded, then one commit that removes its inputs and adds it (dataChange false).
  'lake.compaction.file-uploaded': 'the merged file is uploaded, the log still lists the inputs',
  'lake.compaction.committed': 'the swap is committed; the inputs are still stored (until vacuum, after the retention)',
  // Vacuum: files past the retention deleted, then a VACUUM END commit.
  'lake.vacuum.deleted': 'expired and orphaned files are deleted; the VACUUM END commit is not written',
  // Migration of a _lake_log lake: the Delta log's version 0 written, then its checkpoint and a marker in the old log.
  'lake.migration.converted': "the Delta log's version 0 lists the old files; its checkpoint and the old log's marker are not written",
  // Batch views: a run's objects created in the shared state, then CURRENT moved forward by compare-and-swap (batchSnapshots.ts).
  'batch.run.rows-written': 'rows.parquet is written in the local staging folder; nothing is in the shared state',
  'batch.run.placed': "the run's rows.parquet and run.json are in runs/; CURRENT still names the previous run",
  'batch.run.before-current-swap': 'CURRENT was read and the new run covers it; the compare-and-swap is not sent',
  'batch.run.current-swapped': 'CURRENT names the new run; old runs are not pruned',
  // Embedded log transactions: a redo log renamed into place is the commit point (embeddedLog.ts).
  'embedded.txn.before-redo-rename': 'the redo log is durable under a temporary name: not committed',
  'embedded.txn.redo-committed': 'the redo log is in place (committed), nothing applied',
  'embedded.txn.partly-applied': 'the first partition of the transaction is appended, the rest are not',
  'embedded.txn.records-applied': 'every record is appended; the group offsets are not committed',
  // Promotion: the default-version pointer replaced by compare-and-swap (services/versions/defaultVersion.ts).
  'versions.promote.before-swap': 'the pointer was read and the checks passed; the compare-and-swap is not sent',
  'versions.promote.swapped': 'the new DEFAULT pointer is in place; nothing else has seen it yet',
  // Replay from the lake (streaming/replay/lakeReplay.ts): lake events checkpointed, then Kafka from the same offset.
  'replay.lake.checkpointed': 'a checkpoint of lake events is committed; the lake is not finished',
  'replay.lake.handed-over': 'every partition is checkpointed at the end of the lake; Kafka is not read yet',
} as const;

export type CrashPoint = keyof typeof CRASH_POINTS;

/** Every pause point, with the step it holds. */
export const PAUSE_POINTS = {
  // Speed layer checkpoint (partitionTask.ts): the transaction's commit is about to be sent.
  'speed.checkpoint.commit': 'rows and offsets are in the open transaction; the commit request is not sent yet',
} as const;

export type PausePoint = keyof typeof PAUSE_POINTS;

interface Target {
  point: string;
  /** Visits left before the crash (or the pause). */
  remaining: number;
}

function parseTarget(variable: string, spec: string | undefined, points: object): Target | undefined {
  if (!spec) return undefined;
  const m = /^([a-z.-]+)(?:@(\d+))?$/.exec(spec.trim());
  if (!m || !(m[1]! in points)) {
    const known = Object.keys(points).join(', ');
    throw new Error(`${variable}=${JSON.stringify(spec)} names no such point (expected <point>[@<n>], points: ${known})`);
  }
  return { point: m[1]!, remaining: Math.max(1, Number(m[2] ?? '1')) };
}

const target = parseTarget('LK_CRASH_AT', process.env.LK_CRASH_AT, CRASH_POINTS);
const pauseTarget = parseTarget('LK_PAUSE_AT', process.env.LK_PAUSE_AT, PAUSE_POINTS);

/** Kills the process with SIGKILL when LK_CRASH_AT names this point (and its visit count is reached). */
export function crashPoint(point: CrashPoint): void {
  if (target === undefined || target.point !== point) return;
  if (--target.remaining > 0) return;
  process.stderr.write(`lk: crash point ${point} reached (LK_CRASH_AT): killing the process\n`);
  process.kill(process.pid, 'SIGKILL');
}

/**
 * Holds this step when LK_PAUSE_AT names the point (at its n-th visit): writes the marker file
 * `<LK_PAUSE_DIR>/<point>` and resolves once a test has deleted it. Resolves at once otherwise.
 */
export async function pausePoint(point: PausePoint): Promise<void> {
  if (pauseTarget === undefined || pauseTarget.point !== point) return;
  if (--pauseTarget.remaining !== 0) return;
  const dir = process.env.LK_PAUSE_DIR;
  if (!dir) throw new Error('LK_PAUSE_AT needs LK_PAUSE_DIR: the directory where the marker file is written');
  mkdirSync(dir, { recursive: true });
  const marker = join(dir, point);
  writeFileSync(marker, `${process.pid}\n`);
  process.stderr.write(`lk: pause point ${point} reached (LK_PAUSE_AT): waiting until ${marker} is deleted\n`);
  while (existsSync(marker)) await sleep(50);
}

/**
 * The visit (1..choices) at which a test crashes `point`, drawn from the test's seed and the
 * point's name only: the same seed gives the same visit for a point whatever other points ran
 * before it, so the rerun command a failure prints (one point, the same seed) crashes exactly
 * where the failing run did. FNV-1a over "<seed>:<point>", then murmur3's finalizer.
 */
export function crashVisit(seed: number, point: string, choices: number): number {
  const text = `${seed}:${point}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return 1 + ((h >>> 0) % Math.max(1, choices));
}
