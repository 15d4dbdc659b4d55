/**
 * `speed/checkpoints/<version>/job.json` in the shared state: what the checkpointed state of a
 * job version was built with (metric definitions, watermark and dedup settings) and which
 * savepoints were applied to it. Checked at every start, so that a changed metric file can never
 * meet old state silently.
 *
 * Instances of one version start on several hosts at once, so the object is only ever replaced
 * by a compare-and-swap on the version read (created create-only): an update computed from a
 * stale read is refused and made again from the new one, and no applied savepoint is forgotten.
 */
import { z } from 'zod';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import { readStoredJson, type StoredJson } from '../../services/storage/jsonFile.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';

export interface JobMetadata {
  version: string;
  topic: string;
  partitions: number;
  /** The version's home partition count (services/versions/versionRecord.ts); the state's misplaced counts depend on it. */
  homePartitions: number;
  metrics: MetricDefinition[];
  semantics: { outOfOrdernessMs: number; dedupHorizonMs: number };
  appliedSavepoints: string[];
  updatedAt: string;
}

const jobMetadataSchema = z.object({
  version: z.string(),
  topic: z.string(),
  partitions: z.number().int().positive(),
  // Written since the platform counts misplaced events; older job metadata had partitions only.
  homePartitions: z.number().int().positive().optional(),
  metrics: z.array(z.any()),
  semantics: z.object({ outOfOrdernessMs: z.number(), dedupHorizonMs: z.number() }),
  appliedSavepoints: z.array(z.string()),
  updatedAt: z.string(),
});

export const JOB_METADATA_KEY = 'job.json';

/** The job metadata in `store` (a version's checkpoints) with its ETag, undefined before the first start. */
export async function readJobMetadataObject(store: ObjectStore): Promise<StoredJson<JobMetadata> | undefined> {
  const read = await readStoredJson(store, JOB_METADATA_KEY, jobMetadataSchema, 'job metadata');
  return (
    read && { etag: read.etag, value: { ...read.value, homePartitions: read.value.homePartitions ?? read.value.partitions } as JobMetadata }
  );
}

export async function readJobMetadata(store: ObjectStore): Promise<JobMetadata | undefined> {
  return (await readJobMetadataObject(store))?.value;
}

/**
 * Replaces the job metadata with `next(current)` by compare-and-swap, reading again and
 * recomputing when another instance changed it meanwhile. Returns what was written.
 */
export async function updateJobMetadata(store: ObjectStore, next: (current: JobMetadata | undefined) => JobMetadata): Promise<JobMetadata> {
  for (;;) {
    const current = await readJobMetadataObject(store);
    const value = next(current?.value);
    const body = `${JSON.stringify(value, null, 2)}\n`;
    const put = await store.put(JOB_METADATA_KEY, body, current ? { ifMatch: current.etag } : { ifAbsent: true });
    if (put.ok) return value;
  }
}
