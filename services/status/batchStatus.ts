/**
 * The batch service's status file, a contract between the batch layer (which writes it about once
 * a second, atomically) and serving: `<data-dir>/batch/status.json`. Every instant is epoch
 * milliseconds.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { batchRunManifestSchema } from '../views/batchSnapshots.ts';
import { readStatusFile, type StatusRead } from './speedStatus.ts';

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

export function batchStatusPath(dataDir: string): string {
  return join(dataDir, 'batch', 'status.json');
}

/** The batch service's status, undefined when no service has written one. */
export function readBatchStatus(dataDir: string): StatusRead<BatchStatus> | undefined {
  const read = readStatusFile(batchStatusPath(dataDir), batchStatusSchema);
  if (read.error?.includes('ENOENT')) return undefined;
  return read;
}
