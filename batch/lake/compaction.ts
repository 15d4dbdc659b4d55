/**
 * Compaction: the small-files problem's cure. Frequent rolls and late events (which land in old
 * `dt=/hr=` folders) leave many small files; compaction merges the small files of one (dt, hr,
 * source partition) into files of about the target size.
 *
 * Atomic for readers: the merged file is written locally, uploaded (unlisted), then one Delta
 * commit removes the inputs and adds the output, both with `dataChange: false` (the same rows,
 * rearranged: deltaLog.ts COMMIT_KINDS.compact). A reader sees the old set or the new set, never
 * both and never neither; the inputs stay stored until vacuum deletes them after the table's
 * retention, so a reader of an earlier version (or a time travel to it) can still read them.
 * The commit aborts when a concurrent one removed an input first (ConcurrentDeleteRead): the
 * output is deleted, nothing is lost. Concurrent appends do not conflict with it.
 *
 * Files of the former layout (a converted lake) come out in the current one: the same rows, with
 * `event_time` and `record_timestamp` from their epoch-millisecond columns. Files whose statistics
 * do not say their source partition and offsets (appended by another engine) are left alone.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { InfrastructureError } from '../../services/errors.ts';
import type { Logger } from '../../services/observability/logger.ts';
import { DeltaConflictError, encodePath, type DeltaLog } from '../../services/lake/delta/deltaLog.ts';
import { LakeFileAccess } from '../../services/lake/lakeFileCache.ts';
import { LAKE_COLUMNS, lakeRowsSql, partFileName, partitionFolder } from '../../services/lake/lakeLayout.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { lakeFiles, lakeIncompatibility, type LakeFile } from '../../services/lake/lakeTable.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';

export interface CompactionOptions {
  table: DeltaLog;
  lake: LakeHandle;
  targetFileSize: number;
  logger: Logger;
  /** Files at or above this fraction of the target are left alone. */
  smallFileRatio?: number;
}

export interface CompactionResult {
  merges: number;
  filesRemoved: number;
  filesAdded: number;
  bytesWritten: number;
  /** Merges given up because a concurrent commit removed an input first. */
  conflicts: number;
}

/** A file compaction can place: its partition and offset range are known. */
type Placed = LakeFile & { partition: number; fromOffset: number; toOffset: number; rows: number };

function placed(f: LakeFile): f is Placed {
  return f.partition !== undefined && f.fromOffset !== undefined && f.toOffset !== undefined && f.rows !== undefined;
}

/** Groups of small files to merge: consecutive (by offset) small files of one group, bin-packed. */
export function planCompaction(files: readonly LakeFile[], targetFileSize: number, smallFileRatio = 0.75): Placed[][] {
  const groups = new Map<string, Placed[]>();
  for (const f of files.filter(placed)) {
    const key = `${f.dt}/${f.hr}/${f.partition}`;
    const list = groups.get(key) ?? [];
    list.push(f);
    groups.set(key, list);
  }
  const small = targetFileSize * smallFileRatio;
  const bins: Placed[][] = [];
  for (const list of groups.values()) {
    list.sort((a, b) => a.fromOffset - b.fromOffset);
    let bin: Placed[] = [];
    let binBytes = 0;
    const close = () => {
      if (bin.length >= 2) bins.push(bin);
      bin = [];
      binBytes = 0;
    };
    for (const f of list) {
      if (f.size >= small) {
        close();
        continue;
      }
      if (binBytes + f.size > targetFileSize) close();
      bin.push(f);
      binBytes += f.size;
    }
    close();
  }
  return bins;
}

export async function compactLake(options: CompactionOptions): Promise<CompactionResult> {
  const { table, lake, logger } = options;
  const snapshot = await table.refresh();
  const bins = planCompaction(lakeFiles(snapshot), options.targetFileSize, options.smallFileRatio);
  const result: CompactionResult = { merges: 0, filesRemoved: 0, filesAdded: 0, bytesWritten: 0, conflicts: 0 };
  if (bins.length === 0) return result;
  const access = new LakeFileAccess(lake.store, lake.cacheDir);
  const db = await DuckDBInstance.create(':memory:', { threads: '2' });
  const conn = await db.connect();
  await conn.run(`SET TimeZone = 'UTC'`);
  mkdirSync(lake.scratch, { recursive: true });
  try {
    for (const bin of bins) {
      const first = bin[0]!;
      const from = Math.min(...bin.map((f) => f.fromOffset));
      const to = Math.max(...bin.map((f) => f.toOffset));
      const key = `${partitionFolder(first.dt, first.hr)}/${partFileName(first.partition, from, to, `c-${randomUUID()}`)}`;
      const local = join(lake.scratch, `compact-${process.pid}-${randomUUID()}.parquet`);
      const inputs = lakeRowsSql(await access.localPaths(bin.map((f) => ({ key: f.key, size: f.size }))));
      // The current layout's columns, from whichever layout each input has.
      const columns = Object.keys(LAKE_COLUMNS)
        .map((c) =>
          c === 'event_time'
            ? 'coalesce(event_time, epoch_ms(ts_ms)::TIMESTAMPTZ) AS event_time'
            : c === 'record_timestamp'
              ? 'coalesce(record_timestamp, epoch_ms(kafka_timestamp)::TIMESTAMPTZ) AS record_timestamp'
              : c,
        )
        .join(', ');
      let uploaded = false;
      try {
        await conn.run(
          `COPY (SELECT ${columns} FROM ${inputs} ORDER BY kafka_offset) TO ${sqlQuote(local)} (FORMAT parquet, COMPRESSION snappy)`,
        );
        const [stats] = (
          await conn.runAndReadAll(
            `SELECT count(*)::BIGINT, epoch_ms(min(event_time))::BIGINT, epoch_ms(max(event_time))::BIGINT, (count(*) - count(event_time))::BIGINT,
                    epoch_ms(min(record_timestamp))::BIGINT, epoch_ms(max(record_timestamp))::BIGINT, (count(*) - count(record_timestamp))::BIGINT
             FROM read_parquet(${sqlQuote(local)})`,
          )
        ).getRows() as [bigint, bigint | null, bigint | null, bigint, bigint | null, bigint | null, bigint][];
        const [rows, minTs, maxTs, tsNulls, minRec, maxRec, recNulls] = stats!;
        const expected = bin.reduce((n, f) => n + f.rows, 0);
        if (Number(rows) !== expected) throw new InfrastructureError(`compacting ${bin.length} files gave ${rows} rows, not ${expected}`);
        const iso = (ms: bigint | null) => (ms === null ? undefined : new Date(Number(ms)).toISOString());
        const size = statSync(local).size;
        await lake.store.putFile(key, local, { ifAbsent: true });
        uploaded = true;
        crashPoint('lake.compaction.file-uploaded');
        await table.commit({
          kind: 'compact',
          remove: bin.map((f) => f.path),
          add: [
            {
              path: encodePath(key),
              partitionValues: { dt: first.dt, hr: first.hr === null ? null : String(first.hr) },
              size,
              modificationTime: Date.now(),
              dataChange: false,
              stats: JSON.stringify({
                numRecords: Number(rows),
                minValues: { kafka_partition: first.partition, kafka_offset: from, event_time: iso(minTs), record_timestamp: iso(minRec) },
                maxValues: { kafka_partition: first.partition, kafka_offset: to, event_time: iso(maxTs), record_timestamp: iso(maxRec) },
                nullCount: { kafka_partition: 0, kafka_offset: 0, event_time: Number(tsNulls), record_timestamp: Number(recNulls) },
              }),
            },
          ],
          compatible: lakeIncompatibility,
        });
        crashPoint('lake.compaction.committed');
        result.merges++;
        result.filesRemoved += bin.length;
        result.filesAdded++;
        result.bytesWritten += size;
      } catch (err) {
        if (uploaded) await lake.store.delete(key).catch(() => undefined);
        if (err instanceof DeltaConflictError && err.conflict === 'ConcurrentDeleteRead') {
          result.conflicts++;
          logger.info({ file: key, reason: err.message }, 'compaction lost a race; its output is discarded');
          continue;
        }
        throw err;
      } finally {
        rmSync(local, { force: true });
      }
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  logger.info(result, 'lake compacted');
  return result;
}
