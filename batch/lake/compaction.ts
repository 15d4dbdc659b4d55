/**
 * Compaction: the small-files problem's cure. Frequent rolls and late events (which land in old
 * `dt=/hr=` directories) leave many small files; compaction merges the small files of one
 * (dt, hr, source partition) into files of about the target size.
 *
 * Atomic for readers: the merged file is written and placed like any other (phase 1), then one
 * manifest commit removes the inputs and adds the output. A reader resolving the manifest sees
 * the old set or the new set, never both and never neither; the inputs stay on disk for a grace
 * period so that a reader that resolved the previous version can finish (`vacuum`).
 *
 * Keeping files per source partition keeps their names meaningful (partition and offset range)
 * and keeps every file's rows one partition's, which incremental readers rely on.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Logger } from '../../services/observability/logger.ts';
import { ConcurrentCompactionError, type LakeFile, type LakeManifest } from '../../services/lake/commitProtocol.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import { LAKE_TABLE_COLUMNS, partFileName, readLakeColumnsSql } from '../../services/lake/lakeLayout.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';

export interface CompactionOptions {
  manifest: LakeManifest;
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
}

/** Groups of small files to merge: consecutive (by offset) small files of one group, bin-packed. */
export function planCompaction(files: readonly LakeFile[], targetFileSize: number, smallFileRatio = 0.75): LakeFile[][] {
  const groups = new Map<string, LakeFile[]>();
  for (const f of files) {
    const key = `${f.dt}/${f.hr}/${f.partition}`;
    const list = groups.get(key) ?? [];
    list.push(f);
    groups.set(key, list);
  }
  const small = targetFileSize * smallFileRatio;
  const bins: LakeFile[][] = [];
  for (const list of groups.values()) {
    list.sort((a, b) => a.fromOffset - b.fromOffset);
    let bin: LakeFile[] = [];
    let binBytes = 0;
    const close = () => {
      if (bin.length >= 2) bins.push(bin);
      bin = [];
      binBytes = 0;
    };
    for (const f of list) {
      if (f.bytes >= small) {
        close();
        continue;
      }
      if (binBytes + f.bytes > targetFileSize) close();
      bin.push(f);
      binBytes += f.bytes;
    }
    close();
  }
  return bins;
}

export async function compactLake(options: CompactionOptions): Promise<CompactionResult> {
  const { manifest, logger } = options;
  const snapshot = manifest.snapshot();
  const bins = planCompaction(snapshot.files, options.targetFileSize, options.smallFileRatio);
  const result: CompactionResult = { merges: 0, filesRemoved: 0, filesAdded: 0, bytesWritten: 0 };
  if (bins.length === 0) return result;
  const db = await DuckDBInstance.create(':memory:', { threads: '2' });
  const conn = await db.connect();
  try {
    for (const bin of bins) {
      const first = bin[0]!;
      const from = Math.min(...bin.map((f) => f.fromOffset));
      const to = Math.max(...bin.map((f) => f.toOffset));
      const name = partFileName(first.partition, from, to, `c${randomBytes(4).toString('hex')}`);
      const tmp = manifest.tmpPath(name);
      // Every column of the current layout, NULL where the inputs (files of an older layout) have none.
      const inputs = await readLakeColumnsSql(
        conn,
        bin.map((f) => join(manifest.root, f.path)),
      );
      const columns = Object.keys(LAKE_TABLE_COLUMNS).join(', ');
      await conn.run(
        `COPY (SELECT ${columns} FROM ${inputs} ORDER BY kafka_offset) TO ${sqlQuote(tmp)} (FORMAT parquet, COMPRESSION snappy)`,
      );
      const rel = `dt=${first.dt}/hr=${first.hr}/${name}`;
      const placed = manifest.placeFile(tmp, rel);
      crashPoint('lake.compaction.file-placed');
      const merged: LakeFile = {
        path: rel,
        partition: first.partition,
        fromOffset: from,
        toOffset: to,
        rows: bin.reduce((n, f) => n + f.rows, 0),
        bytes: statSync(placed).size,
        dt: first.dt,
        hr: first.hr,
        minTsMs: Math.min(...bin.map((f) => f.minTsMs)),
        maxTsMs: Math.max(...bin.map((f) => f.maxTsMs)),
      };
      try {
        manifest.commit({ op: 'compact', add: [merged], remove: bin.map((f) => f.path) });
        crashPoint('lake.compaction.committed');
      } catch (err) {
        rmSync(placed, { force: true });
        if (err instanceof ConcurrentCompactionError) {
          logger.info({ file: rel }, 'compaction lost a race; output discarded');
          continue;
        }
        throw err;
      }
      result.merges++;
      result.filesRemoved += bin.length;
      result.filesAdded++;
      result.bytesWritten += merged.bytes;
    }
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  logger.info(result, 'lake compacted');
  return result;
}
