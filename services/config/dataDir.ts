/**
 * Where a process keeps its files, in two places:
 *
 * - the shared state (`--state-uri`, env LK_STATE_URI): everything the platform's instances
 *   share, on any host: checkpoints and savepoints, version records and the DEFAULT pointer,
 *   batch view snapshots and their CURRENT, status files. A local folder (by default the data
 *   dir itself, with the layout it always had, so an existing data dir keeps working) or
 *   `s3://bucket/prefix`. Hosts that share nothing but Kafka and a bucket give every process the
 *   same S3 location; nothing in it assumes one host (no pid or hostname locks, no renames):
 *   objects are created create-only or replaced by compare-and-swap (docs/speed-layer.md);
 * - the data dir (`--data-dir`, default `./data`): this host's own files, which nothing else
 *   reads: the embedded log, scratch files being built (a batch run before it is uploaded), and
 *   caches that can be thrown away (batch view files downloaded from S3). The lake has a flag of
 *   its own (`--lake-uri`, default `<data-dir>/lake`).
 */
import { join, resolve } from 'node:path';
import { describeLocation, openObjectStore, parseStorageLocation, type StorageLocation } from '../storage/storageLocation.ts';
import type { ObjectStore } from '../storage/objectStore.ts';

export interface DataDirLayout {
  root: string;
  /** The embedded event log (unused with Kafka). */
  log: string;
  /** The Parquet lake when `--lake-uri` is not given. */
  lake: string;
  /** Files being built before they are published to the shared state (batch runs). */
  scratch: string;
  /** Copies of shared objects that can be thrown away (batch view files read from S3). */
  cache: string;
  /** The shared state when `--state-uri` is not given: the data dir itself. */
  checkpoints: string;
  savepoints: string;
  views: string;
}

export function dataDirLayout(dataDir: string): DataDirLayout {
  const root = resolve(dataDir);
  return {
    root,
    log: join(root, 'log'),
    lake: join(root, 'lake'),
    scratch: join(root, 'scratch'),
    cache: join(root, 'cache'),
    checkpoints: join(root, STATE_KEYS.checkpoints),
    savepoints: join(root, STATE_KEYS.savepoints),
    views: join(root, STATE_KEYS.views),
  };
}

/**
 * Where each kind of shared state lives under the state location: the names a data dir always
 * had, so that a data dir is a state location as it is.
 */
export const STATE_KEYS = {
  /** `<checkpoints>/<version>/p<k>/<snapshot>.arrow` and `<version>/job.json` (streaming/checkpoints/). */
  checkpoints: 'speed/checkpoints',
  /** `<savepoints>/<name>/savepoint.json` and its partitions (streaming/checkpoints/savepoints.ts). */
  savepoints: 'speed/savepoints',
  /** `<status>/<version>-<instance>.json` (services/status/speedStatus.ts). */
  speedStatus: 'speed/status',
  /** services/status/batchStatus.ts. */
  batchStatus: 'batch/status.json',
  /** `<versions>/<version>/version.json`, `<versions>/DEFAULT` (services/versions/). */
  versions: 'versions',
  /** `<views>/<version>/runs/<runId>/...`, `<views>/<version>/CURRENT` (services/views/batchSnapshots.ts). */
  views: 'views',
} as const;

/** The checkpoints of one job version, relative to the state location. */
export function checkpointsPrefix(version: string): string {
  return `${STATE_KEYS.checkpoints}/${version}`;
}

/** The state location: `--state-uri` when given, else the data dir. */
export function stateLocation(stateUri: string | undefined, layout: DataDirLayout): StorageLocation {
  return stateUri === undefined || stateUri === '' ? { kind: 'local', path: layout.root } : parseStorageLocation(stateUri, '--state-uri');
}

/** Opens the shared state (`--state-uri`, default the data dir). */
export async function openSharedState(stateUri: string | undefined, layout: DataDirLayout): Promise<ObjectStore> {
  return openObjectStore(stateLocation(stateUri, layout), '--state-uri');
}

/** The state location as users wrote it, for messages and status. */
export function describeState(stateUri: string | undefined, layout: DataDirLayout): string {
  return describeLocation(stateLocation(stateUri, layout));
}
