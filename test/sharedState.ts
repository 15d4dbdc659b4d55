/**
 * The shared state (services/config/dataDir.ts) as tests read it: a data dir is a local state
 * location, so a test that ran `lk` with `--data-dir D` reads what the layers published in D.
 */
import { join } from 'node:path';
import { LocalObjectStore } from '../services/storage/localObjectStore.ts';
import type { ObjectStore } from '../services/storage/objectStore.ts';
import { readCurrentBatchRun, type CurrentBatchRun } from '../services/views/batchSnapshots.ts';

/** The shared state kept in the data dir `dataDir` (no --state-uri). */
export function localState(dataDir: string): ObjectStore {
  return new LocalObjectStore(dataDir);
}

/** The version's current batch run published in the data dir `dataDir`. */
export function currentBatchRun(dataDir: string, version: string): Promise<CurrentBatchRun | undefined> {
  return readCurrentBatchRun(localState(dataDir), version);
}

/** What a batch cycle or recompute needs of the state and the host's folders, all in the data dir `dataDir`. */
export function localStateOptions(dataDir: string): { state: ObjectStore; scratchDir: string; cacheDir: string } {
  return { state: localState(dataDir), scratchDir: join(dataDir, 'scratch'), cacheDir: join(dataDir, 'cache') };
}
