/**
 * The batch service's status file, a contract between the batch layer (which writes it about once
 * a second, whole) and serving: `batch/status.json` in the shared state (`--state-uri`). Every
 * instant is epoch milliseconds.
 */
import { z } from 'zod';
import { STATE_KEYS } from '../config/dataDir.ts';
import type { ObjectStore } from '../storage/objectStore.ts';
import { batchRunManifestSchema } from '../views/batchSnapshots.ts';
import { readStatusObject, type StatusRead } from './speedStatus.ts';

export const batchStatusSchema = z.object({
  version: z.string(),
  /** The current run's manifest (its metric file path left out). */
  lastRun: batchRunManifestSchema.omit({ metricsSource: true }).nullable(),
  /** When the service runs the next recompute (null while one runs). */
  nextRunAt: z.number().nullable(),
  lakeFiles: z.number().int().nonnegative(),
  lakeBytes: z.number().int().nonnegative(),
  writer: z.object({
    partitions: z.array(z.object({ partition: z.number().int().nonnegative(), committedOffset: z.number().int().nonnegative() })),
  }),
  updatedAt: z.number(),
  /** Where /healthz, /readyz and /metrics answer (useful with --status-port 0). */
  statusPort: z.number().int().nullable(),
});
export type BatchStatus = z.infer<typeof batchStatusSchema>;

export const BATCH_STATUS_KEY = STATE_KEYS.batchStatus;

/** The batch service's status, undefined when no service has written one. */
export async function readBatchStatus(state: ObjectStore): Promise<StatusRead<BatchStatus> | undefined> {
  return readStatusObject(state, BATCH_STATUS_KEY, batchStatusSchema);
}
