/**
 * Job versions (Kappa reprocessing: a changed metric file is replayed into a new version, checked,
 * then promoted). The record of a version, `<data-dir>/versions/<version>/version.json`, holds what
 * every layer working for the version must agree on; it is created once, exclusively, by whichever
 * layer starts the version first (`lk replay`, `lk speed`, `lk batch`), and read by the others:
 *
 * - `metrics`: the SHA-256 of the version's metric file, whose exact text is kept beside the record
 *   (`metrics.yaml`). Every later command for the version (a speed restart, a batch run, serving)
 *   uses these definitions; a command given a different file is refused with the reason: a
 *   version's definitions never change (replay a changed file into a new version);
 * - `homePartitions`: the events topic's partition count when the version was created. An event's
 *   home partition is its id's partition among them (services/log/partitioner.ts); the speed and
 *   batch layers both mark events found elsewhere as misplaced, with the same count even after the
 *   topic's partitions were raised;
 * - `origin`: where the version's speed job started reading (a replay's `--from`), for progress;
 * - `retiredAt`: set by `lk versions retire` (its topic, checkpoints, group and views are gone).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { parseMetricDefinitions, type MetricDefinitions } from '../metrics/definitions.ts';
import { readJsonFile } from '../storage/jsonFile.ts';
import { createFileExclusiveSync, writeFileAtomicSync } from '../storage/atomicFile.ts';

import { metricDifferences, metricsFingerprint } from './metricChanges.ts';
import { isVersionName, versionNameSchema } from './versionName.ts';

export const versionOriginSchema = z.object({
  /** live: a plain `lk speed` start (the group's own position); the others: `lk replay --from`. */
  from: z.enum(['live', 'earliest', 'time', 'offsets', 'lake']),
  /** The first offset read per partition (null for `live`: wherever the group stood). */
  startOffsets: z.array(z.number().int().nonnegative()).nullable(),
  /** With `time` (and `lake --from-time`): the instant, epoch ms. */
  fromTime: z.number().nullable().default(null),
  /**
   * With `lake`: per partition, the offset where the lake ended when the version was created.
   * Offsets below it are read from the lake, the rest from the log: the hand-over is by offset
   * and fixed once, so a restart hands over at the same place (streaming/replay/lakeReplay.ts).
   */
  lakeEnds: z.array(z.number().int().nonnegative()).nullable().default(null),
});
export type VersionOrigin = z.infer<typeof versionOriginSchema>;

/** A version started by a plain `lk speed`: it reads from wherever its group stands. */
export const LIVE_ORIGIN: VersionOrigin = { from: 'live', startOffsets: null, fromTime: null, lakeEnds: null };

export const versionRecordSchema = z.object({
  version: versionNameSchema,
  topic: z.string().min(1),
  createdAt: z.string(),
  homePartitions: z.number().int().positive(),
  /** SHA-256 of the metric file (kept as metrics.yaml beside the record); absent on records of older versions. */
  metricsSha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  origin: versionOriginSchema.default({ from: 'live', startOffsets: null, fromTime: null, lakeEnds: null }),
  retiredAt: z.string().nullable().default(null),
});
export type VersionRecord = z.infer<typeof versionRecordSchema>;

export function versionsRoot(dataDir: string): string {
  return join(dataDir, 'versions');
}

export function versionDir(dataDir: string, version: string): string {
  return join(versionsRoot(dataDir), version);
}

export function versionRecordPath(dataDir: string, version: string): string {
  return join(versionDir(dataDir, version), 'version.json');
}

/** The version's own copy of its metric file. */
export function versionMetricsPath(dataDir: string, version: string): string {
  return join(versionDir(dataDir, version), 'metrics.yaml');
}

export function readVersionRecord(dataDir: string, version: string): VersionRecord | undefined {
  return readJsonFile(versionRecordPath(dataDir, version), versionRecordSchema, 'a version record');
}

/** Every version with a record, oldest first. */
export function listVersionRecords(dataDir: string): VersionRecord[] {
  let names: string[];
  try {
    names = readdirSync(versionsRoot(dataDir));
  } catch {
    return [];
  }
  return names
    .filter(isVersionName)
    .flatMap((n) => {
      const r = readVersionRecord(dataDir, n);
      return r ? [r] : [];
    })
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.version.localeCompare(b.version));
}

/** The definitions a version was created with (undefined for a version of before the copies were kept). */
export function readVersionDefinitions(dataDir: string, version: string): MetricDefinitions | undefined {
  const record = readVersionRecord(dataDir, version);
  if (!record?.metricsSha256) return undefined;
  const path = versionMetricsPath(dataDir, version);
  return parseMetricDefinitions(readFileSync(path, 'utf8'), path);
}

export interface NewVersion {
  version: string;
  topic: string;
  homePartitions: number;
  metrics: MetricDefinitions;
  origin?: VersionOrigin;
}

function writeRecord(dataDir: string, record: VersionRecord, exclusive: boolean): boolean {
  const text = `${JSON.stringify(record, null, 2)}\n`;
  if (exclusive) return createFileExclusiveSync(versionRecordPath(dataDir, record.version), text);
  writeFileAtomicSync(versionRecordPath(dataDir, record.version), text);
  return true;
}

/**
 * The version's record, created now when it has none (its metric file copied first, then the
 * record created exclusively: a record always has its copy). An existing record must be for the
 * same topic and the same metric file, else the command is refused with the reason.
 */
export function ensureVersionRecord(dataDir: string, init: NewVersion): VersionRecord {
  let record = readVersionRecord(dataDir, init.version);
  if (!record) {
    writeFileAtomicSync(versionMetricsPath(dataDir, init.version), init.metrics.text);
    const fresh: VersionRecord = {
      version: init.version,
      topic: init.topic,
      createdAt: new Date().toISOString(),
      homePartitions: init.homePartitions,
      metricsSha256: init.metrics.sha256,
      origin: init.origin ?? LIVE_ORIGIN,
      retiredAt: null,
    };
    writeRecord(dataDir, fresh, true);
    // Lost the race to another layer: its record is the version's.
    record = readVersionRecord(dataDir, init.version)!;
  }
  checkVersionMatches(dataDir, record, init);
  return record;
}

/** Refuses a record of another topic, a retired version, or a metric file that is not the version's. */
export function checkVersionMatches(dataDir: string, record: VersionRecord, init: NewVersion): void {
  if (record.topic !== init.topic) {
    throw new ConfigError(
      `job version "${init.version}" was created for topic "${record.topic}", not "${init.topic}"; use another --version for another topic`,
    );
  }
  if (record.retiredAt !== null) {
    throw new ConfigError(
      `job version "${init.version}" was retired at ${record.retiredAt}: its state and views are deleted; use another --version`,
    );
  }
  if (record.metricsSha256 === undefined || record.metricsSha256 === init.metrics.sha256) return;
  const stored = versionMetricsPath(dataDir, record.version);
  const theirs = parseMetricDefinitions(readFileSync(stored, 'utf8'), stored);
  // Comments, layout and descriptions may differ: what is computed may not.
  if (metricsFingerprint(theirs.metrics) === metricsFingerprint(init.metrics.metrics)) return;
  const why = metricDifferences(theirs.metrics, init.metrics.metrics);
  throw new ConfigError(
    `${init.metrics.source} is not the metric file of version "${record.version}" (${stored}, sha256 ${record.metricsSha256.slice(0, 12)})` +
      `${why.length > 0 ? `: ${why.join('; ')}` : ''}. A version's metric definitions never change: replay the new file into a new version (lk replay --version <new> --metrics ${init.metrics.source} --from earliest), or leave out --metrics to use the version's own copy`,
  );
}

/** Marks a version retired (its record stays, so that `lk versions` lists it). */
export function markRetired(dataDir: string, version: string): VersionRecord {
  const record = readVersionRecord(dataDir, version);
  if (!record) throw new ConfigError(`no job version "${version}" in ${versionsRoot(dataDir)}`);
  const retired = { ...record, retiredAt: new Date().toISOString() };
  writeRecord(dataDir, retired, false);
  return retired;
}
