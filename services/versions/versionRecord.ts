/**
 * The record of a job version, `<data-dir>/versions/<version>/version.json`: what every layer
 * that works for the version must agree on, written once by whichever layer starts the version
 * first (an exclusive create: two layers starting at once agree on the winner's record) and read
 * by the others.
 *
 * - `homePartitions`: the events topic's partition count when the version was created. An event's
 *   home partition is its id's partition among them (services/log/partitioner.ts); the speed and
 *   batch layers both mark events found elsewhere as misplaced, so they must use the same count
 *   even after the topic's partitions were raised.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { readJsonFile } from '../storage/jsonFile.ts';
import { createFileExclusiveSync } from '../storage/atomicFile.ts';
import { versionNameSchema } from './versionName.ts';

export const versionRecordSchema = z
  .object({
    version: versionNameSchema,
    topic: z.string().min(1),
    createdAt: z.string(),
    homePartitions: z.number().int().positive(),
  })
  .strict();
export type VersionRecord = z.infer<typeof versionRecordSchema>;

export function versionsRoot(dataDir: string): string {
  return join(dataDir, 'versions');
}

export function versionRecordPath(dataDir: string, version: string): string {
  return join(versionsRoot(dataDir), version, 'version.json');
}

export function readVersionRecord(dataDir: string, version: string): VersionRecord | undefined {
  return readJsonFile(versionRecordPath(dataDir, version), versionRecordSchema, 'a version record');
}

/**
 * The version's record, created now from `init` when it has none. Refuses a version that was
 * created for another topic: its state and views describe that topic.
 */
export function ensureVersionRecord(dataDir: string, init: Omit<VersionRecord, 'createdAt'>): VersionRecord {
  let record = readVersionRecord(dataDir, init.version);
  if (!record) {
    const fresh: VersionRecord = { ...init, createdAt: new Date().toISOString() };
    createFileExclusiveSync(versionRecordPath(dataDir, init.version), `${JSON.stringify(fresh, null, 2)}\n`);
    // Lost the race to another layer: its record is the version's.
    record = readVersionRecord(dataDir, init.version)!;
  }
  if (record.topic !== init.topic) {
    throw new ConfigError(
      `job version "${init.version}" was created for topic "${record.topic}", not "${init.topic}"; use another --version for another topic`,
    );
  }
  return record;
}
