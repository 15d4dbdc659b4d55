/**
 * Lake retention (`lk batch --lake-retention <duration>`, off by default): removes the lake's
 * files whose rows are all older than the retention, through the lake's own commit protocol
 * (services/lake/delta/deltaLog.ts COMMIT_KINDS.expire), never behind a reader's back: the
 * removed files stay stored until vacuum deletes them after the table's
 * `delta.deletedFileRetentionDuration`, so a reader at an older version still finds them.
 *
 * "Old" is event time, like the metrics' retention (services/metrics/retention.ts): the horizon
 * is the lake's newest event time minus the retention, and a file goes when its newest event is
 * before it (from the file's statistics; a file without them is kept). Files are removed whole: a
 * compacted file that spans the horizon stays until all of it is past.
 *
 * The same commit records, per source partition, where the lake now starts (lakeTable.ts
 * `lakeStartAppId`): one past the largest offset ever removed. A replay `--from lake` that needs
 * an earlier record is refused with those offsets (streaming/replay/replayStart.ts), never
 * silently shortened. The first expiry sets `delta.appendOnly` false first (a properties commit):
 * the protocol forbids removing data from an append-only table.
 */
import { formatDuration } from '../../services/config/durations.ts';
import type { Logger } from '../../services/observability/logger.ts';
import { DeltaConflictError, type DeltaLog } from '../../services/lake/delta/deltaLog.ts';
import {
  lakeFiles,
  lakeHorizonAppId,
  lakeIncompatibility,
  lakeRemovedLogTimeAppId,
  lakeStartAppId,
  lakeStarts,
} from '../../services/lake/lakeTable.ts';
import { parseStats } from '../../services/lake/delta/actions.ts';

export interface LakeExpiry {
  filesRemoved: number;
  bytesRemoved: number;
  /** Event time below which files were removed (undefined: nothing to remove). */
  horizon: number | undefined;
  /** Where each partition now starts, for the partitions this expiry moved. */
  starts: Map<number, number>;
}

export async function expireLake(options: { table: DeltaLog; topic: string; retentionMs: number; logger: Logger }): Promise<LakeExpiry> {
  const { table, topic, retentionMs, logger } = options;
  const none: LakeExpiry = { filesRemoved: 0, bytesRemoved: 0, horizon: undefined, starts: new Map() };
  for (let attempt = 0; attempt < 5; attempt++) {
    const snap = await table.refresh();
    const files = lakeFiles(snap);
    let newest = -Infinity;
    for (const f of files) if (f.maxTsMs !== undefined && f.maxTsMs > newest) newest = f.maxTsMs;
    if (newest === -Infinity) return none;
    const horizon = newest - retentionMs;
    const expired = files.filter(
      (f) => f.partition !== undefined && f.toOffset !== undefined && f.maxTsMs !== undefined && f.maxTsMs < horizon,
    );
    if (expired.length === 0) return none;
    const starts = lakeStarts(snap, topic);
    const moved = new Map<number, number>();
    for (const f of expired) {
      const next = Math.max(moved.get(f.partition!) ?? starts.get(f.partition!) ?? 0, f.toOffset! + 1);
      moved.set(f.partition!, next);
    }
    // The latest log time removed: a replay --from-time at or before it would miss records.
    let removedLogTime = snap!.txnVersion(lakeRemovedLogTimeAppId(topic)) ?? 0;
    for (const f of expired) {
      const t = Date.parse(String(parseStats(snap!.files.get(f.path)!)?.maxValues?.record_timestamp ?? ''));
      // Files without the statistic: as late as their events can have been logged, the newest event's time.
      removedLogTime = Math.max(removedLogTime, Number.isNaN(t) ? newest : t);
    }
    if (snap!.configuration['delta.appendOnly'] === 'true')
      await table.commit({ kind: 'properties', set: { 'delta.appendOnly': 'false' } });
    try {
      await table.commit({
        kind: 'expire',
        remove: expired.map((f) => f.path),
        txns: [
          ...[...moved].map(([p, version]) => ({ appId: lakeStartAppId(topic, p), version })),
          { appId: lakeHorizonAppId(topic), version: horizon },
          { appId: lakeRemovedLogTimeAppId(topic), version: removedLogTime },
        ],
        horizon,
        compatible: lakeIncompatibility,
      });
    } catch (err) {
      // A compaction merged a file meanwhile: plan again from the new table.
      if (err instanceof DeltaConflictError && err.conflict === 'ConcurrentDeleteRead') continue;
      throw err;
    }
    const result = { filesRemoved: expired.length, bytesRemoved: expired.reduce((n, f) => n + f.size, 0), horizon, starts: moved };
    logger.info(
      {
        files: result.filesRemoved,
        bytes: result.bytesRemoved,
        horizon: new Date(horizon).toISOString(),
        retention: formatDuration(retentionMs),
        starts: Object.fromEntries(moved),
      },
      'lake retention removed old files',
    );
    return result;
  }
  logger.warn('lake retention gave up for this cycle: concurrent commits kept removing its files');
  return none;
}
