/**
 * `<checkpoints>/<version>/job.json`: what the checkpointed state of a job version was built
 * with (metric definitions, watermark and dedup settings) and which savepoints were applied to
 * it. Checked at every start, so that a changed metric file can never meet old state silently.
 */
import { join } from 'node:path';
import { z } from 'zod';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import { writeFileAtomicSync } from '../../services/storage/atomicFile.ts';
import { readJsonFile } from '../../services/storage/jsonFile.ts';

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

export function jobMetadataPath(checkpointRoot: string): string {
  return join(checkpointRoot, 'job.json');
}

export function readJobMetadata(checkpointRoot: string): JobMetadata | undefined {
  const meta = readJsonFile(jobMetadataPath(checkpointRoot), jobMetadataSchema, 'job metadata');
  return meta && ({ ...meta, homePartitions: meta.homePartitions ?? meta.partitions } as JobMetadata);
}

export function writeJobMetadata(checkpointRoot: string, meta: JobMetadata): void {
  writeFileAtomicSync(jobMetadataPath(checkpointRoot), `${JSON.stringify(meta, null, 2)}\n`);
}
