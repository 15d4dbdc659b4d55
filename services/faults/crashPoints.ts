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
 * the result with an independent oracle.
 */

/** Every crash point, with the step it stops before or after. */
export const CRASH_POINTS = {
  // Speed layer checkpoint: two-phase commit with the Kafka transaction as commit point (partitionTask.ts).
  'speed.checkpoint.before-snapshot-rename': 'the snapshot is durable under a temporary name, not yet renamed into place',
  'speed.checkpoint.snapshot-written': 'the snapshot is in place; the transaction is not begun',
  'speed.checkpoint.rows-sent': 'the view rows are sent in the open transaction; the offsets are not',
  'speed.checkpoint.offsets-sent': 'rows and offsets are in the transaction; it is not committed',
  'speed.checkpoint.committed': 'the transaction is committed; old snapshots are not pruned',
  // Lake writer: files placed unlisted, then one manifest commit (commitProtocol.ts, lakeWriter.ts).
  'lake.roll.files-written': 'the roll is written as Parquet under _tmp/, not placed',
  'lake.roll.files-placed': 'the files are in their dt=/hr= directories, listed nowhere',
  'lake.roll.dead-letters-sent': "the roll's dead letters are sent; the manifest does not move past them yet",
  'lake.manifest.entry-written': 'the next manifest entry is durable under a temporary name, not linked',
  'lake.roll.committed': 'the manifest entry is committed; the informational group offsets are not',
  // Compaction: the merged file placed, then one manifest commit that swaps it for its inputs.
  'lake.compaction.file-placed': 'the merged file is placed, the manifest still lists the inputs',
  'lake.compaction.committed': 'the swap is committed; the inputs are still on disk (grace period)',
  // Batch views: a run directory renamed into runs/, then the CURRENT pointer swapped (batchSnapshots.ts).
  'batch.run.rows-written': 'rows.parquet is written in the staging directory; run.json is not',
  'batch.run.renamed': 'the run is in runs/; CURRENT still names the previous run',
  'batch.run.before-current-rename': 'the new CURRENT is durable under a temporary name',
  'batch.run.current-swapped': 'CURRENT names the new run; old runs are not pruned',
  // Embedded log transactions: a redo log renamed into place is the commit point (embeddedLog.ts).
  'embedded.txn.before-redo-rename': 'the redo log is durable under a temporary name: not committed',
  'embedded.txn.redo-committed': 'the redo log is in place (committed), nothing applied',
  'embedded.txn.partly-applied': 'the first partition of the transaction is appended, the rest are not',
  'embedded.txn.records-applied': 'every record is appended; the group offsets are not committed',
  // Promotion: the default-version pointer replaced by rename (services/versions/defaultVersion.ts).
  'versions.promote.before-rename': 'the new DEFAULT pointer is durable under a temporary name; the old one is in place',
  'versions.promote.renamed': 'the new DEFAULT pointer is in place; nothing else has seen it yet',
  // Replay from the lake (streaming/replay/lakeReplay.ts): lake events checkpointed, then Kafka from the same offset.
  'replay.lake.checkpointed': 'a checkpoint of lake events is committed; the lake is not finished',
  'replay.lake.handed-over': 'every partition is checkpointed at the end of the lake; Kafka is not read yet',
} as const;

export type CrashPoint = keyof typeof CRASH_POINTS;

interface Target {
  point: string;
  /** Visits left before the crash. */
  remaining: number;
}

function parseTarget(spec: string | undefined): Target | undefined {
  if (!spec) return undefined;
  const m = /^([a-z.-]+)(?:@(\d+))?$/.exec(spec.trim());
  if (!m || !(m[1]! in CRASH_POINTS)) {
    const known = Object.keys(CRASH_POINTS).join(', ');
    throw new Error(`LK_CRASH_AT=${JSON.stringify(spec)} names no crash point (expected <point>[@<n>], points: ${known})`);
  }
  return { point: m[1]!, remaining: Math.max(1, Number(m[2] ?? '1')) };
}

const target = parseTarget(process.env.LK_CRASH_AT);

/** Kills the process with SIGKILL when LK_CRASH_AT names this point (and its visit count is reached). */
export function crashPoint(point: CrashPoint): void {
  if (target === undefined || target.point !== point) return;
  if (--target.remaining > 0) return;
  process.stderr.write(`lk: crash point ${point} reached (LK_CRASH_AT): killing the process\n`);
  process.kill(process.pid, 'SIGKILL');
}
