/**
 * Where the lake is: `--lake-uri` (env `LK_LAKE_URI`), a local folder or `s3://bucket/prefix`,
 * default `<data-dir>/lake`; each topic's Delta table at `<lake-uri>/<topic>`. Every command that
 * reads or writes the lake takes the option from here and reaches the table only through the
 * ObjectStore seam (services/storage/objectStore.ts), so nothing above knows which one it has.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { DataDirLayout } from '../config/dataDir.ts';
import type { OptionSpec } from '../config/cliOptions.ts';
import type { ObjectStore } from '../storage/objectStore.ts';
import { describeLocation, openObjectStore, parseStorageLocation } from '../storage/storageLocation.ts';
import { defaultLakeUri, lakeCacheDir, lakeScratchDir } from './lakeLayout.ts';

export const LAKE_URI_OPTION: OptionSpec = {
  flags: '--lake-uri <uri>',
  description:
    "where the lake is: a local folder or s3://bucket/prefix (each topic's Delta table at <uri>/<topic>; S3 through AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)",
  env: 'LK_LAKE_URI',
  defaultText: '<data-dir>/lake',
};

/** One topic's lake table and the local folders used with it. */
export interface LakeHandle {
  topic: string;
  /** The table's root (`<lake-uri>/<topic>`). */
  store: ObjectStore;
  /** The lake as the user wrote it, for messages (never a credential). */
  uri: string;
  /** Local folder for files on their way into the lake. */
  scratch: string;
  /** Local folder keeping data files of a lake on object storage for DuckDB (lakeFileCache.ts). */
  cacheDir: string;
}

/** Opens the lake of `topic` at `lakeUri` (default `<data-dir>/lake`). */
export async function resolveLake(lakeUri: string | undefined, layout: DataDirLayout, topic: string): Promise<LakeHandle> {
  const location = parseStorageLocation(lakeUri ?? defaultLakeUri(layout), '--lake-uri');
  const root = await openObjectStore(location, '--lake-uri');
  return {
    topic,
    store: root.child(topic),
    uri: `${describeLocation(location)}/${topic}`,
    scratch: lakeScratchDir(layout),
    cacheDir: lakeCacheDir(layout),
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes what processes killed mid-roll left in the local scratch folder: every name there
 * carries its process id (`roll-<pid>-...`, `compact-<pid>-...`, `<pid>-...`), and entries of a
 * process that no longer runs are nobody's. (What such a process had uploaded already and never
 * committed is vacuum's: orphans in the table past the retention.)
 */
export function sweepScratch(scratch: string): number {
  let swept = 0;
  let names: string[];
  try {
    names = readdirSync(scratch);
  } catch {
    return 0;
  }
  for (const name of names) {
    const m = /^(?:[a-z]+-)?(\d+)-/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    rmSync(join(scratch, name), { recursive: true, force: true });
    swept++;
  }
  return swept;
}
