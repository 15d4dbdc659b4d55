/**
 * Layout of the data dir shared by every process of one platform (`--data-dir`, default
 * `./data`). Each layer owns one subfolder; processes given the same data dir cooperate.
 */
import { join, resolve } from 'node:path';

export interface DataDirLayout {
  root: string;
  /** The embedded event log (unused with Kafka). */
  log: string;
  /** Speed layer checkpoints, shared by all speed instances of a job version. */
  checkpoints: string;
  /** Speed layer savepoints (named, kept until deleted). */
  savepoints: string;
  /** The Parquet lake: the immutable master dataset. */
  lake: string;
  /** Published batch views (immutable per-run snapshots). */
  views: string;
}

export function dataDirLayout(dataDir: string): DataDirLayout {
  const root = resolve(dataDir);
  return {
    root,
    log: join(root, 'log'),
    checkpoints: join(root, 'speed', 'checkpoints'),
    savepoints: join(root, 'speed', 'savepoints'),
    lake: join(root, 'lake'),
    views: join(root, 'views'),
  };
}
