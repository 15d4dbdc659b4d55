/**
 * Job versions (Kappa reprocessing: a changed metric file is replayed into a new version, checked,
 * then promoted). The record of a version, `versions/<version>/version.json` in the shared state
 * (`--state-uri`: a local folder or an S3 bucket), holds what every layer working for the version
 * must agree on; it is created once, create-only, by whichever layer starts the version first
 * (`lk replay`, `lk speed`, `lk batch`), on whichever host, and read by the others:
 *
 * - `metrics`: the SHA-256 of the version's metric file, whose exact text is kept beside the record
 *   under a name that holds its hash (`metrics-<sha256>.yaml`; `metrics.yaml` in versions created
 *   before the state could be shared). Every later command for the version (a speed restart, a
 *   batch run, serving) uses these definitions; a command given a different file is refused with
 *   the reason: a version's definitions never change (replay a changed file into a new version);
 * - `homePartitions`: the events topic's partition count when the version was created. An event's
 *   home partition is its id's partition among them (services/log/partitioner.ts); the speed and
 *   batch layers both mark events found elsewhere as misplaced, with the same count even after the
 *   topic's partitions were raised;
 * - `origin`: where the version's speed job started reading (a replay's `--from`), for progress;
 * - `retiredAt`: set by `lk versions retire` (its topic, checkpoints, group and views are gone).
 *
 * Two hosts creating one version at once: each writes its metric file under its own hash (the
 * same name holds the same text, so a second write changes nothing), then creates the record
 * create-only (If-None-Match). Exactly one record wins; the loser reads it and is refused if its
 * file is not the winner's. A record is never replaced except by a compare-and-swap (retirement),
 * so a version's record, once read, names a metric file that exists.
 */
import { z } from 'zod';
import { ConfigError, InfrastructureError } from '../errors.ts';
import { parseMetricDefinitions, type MetricDefinitions } from '../metrics/definitions.ts';
import { readStoredJson, type StoredJson } from '../storage/jsonFile.ts';
import { getText, listAll, type ObjectStore } from '../storage/objectStore.ts';
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

/** Where the versions are in the shared state. */
export const VERSIONS_PREFIX = 'versions';

export function versionRecordKey(version: string): string {
  return `${VERSIONS_PREFIX}/${version}/version.json`;
}

/** The version's own copy of its metric file, named by its hash (undefined hash: the name of older versions). */
export function versionMetricsKey(version: string, sha256?: string): string {
  return `${VERSIONS_PREFIX}/${version}/${sha256 === undefined ? 'metrics.yaml' : `metrics-${sha256}.yaml`}`;
}

/** Where `lk` says the versions are, in messages. */
export function versionsLocation(state: ObjectStore): string {
  return `${state.location}/${VERSIONS_PREFIX}`;
}

async function readRecordObject(state: ObjectStore, version: string): Promise<StoredJson<VersionRecord> | undefined> {
  return readStoredJson(state, versionRecordKey(version), versionRecordSchema, 'a version record');
}

export async function readVersionRecord(state: ObjectStore, version: string): Promise<VersionRecord | undefined> {
  return (await readRecordObject(state, version))?.value;
}

/** Every version with a record, oldest first. */
export async function listVersionRecords(state: ObjectStore): Promise<VersionRecord[]> {
  const names = (await listAll(state, `${VERSIONS_PREFIX}/`))
    .map((o) => /^versions\/([^/]+)\/version\.json$/.exec(o.key)?.[1])
    .filter((n): n is string => n !== undefined && isVersionName(n));
  const records = await Promise.all(names.map((n) => readVersionRecord(state, n)));
  return records
    .filter((r): r is VersionRecord => r !== undefined)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.version.localeCompare(b.version));
}

/** The text of the version's metric file copy, with where it was read. */
async function readStoredMetrics(state: ObjectStore, record: VersionRecord): Promise<{ text: string; where: string }> {
  // The hash-named copy; versions created before it have metrics.yaml.
  for (const key of [versionMetricsKey(record.version, record.metricsSha256), versionMetricsKey(record.version)]) {
    const text = await getText(state, key);
    if (text !== undefined) return { text, where: `${state.location}/${key}` };
  }
  throw new InfrastructureError(
    `the metric file of version "${record.version}" is missing from ${versionsLocation(state)}/${record.version} (its record names sha256 ${record.metricsSha256})`,
  );
}

/** The definitions a version was created with (undefined for a version of before the copies were kept). */
export async function readVersionDefinitions(state: ObjectStore, version: string): Promise<MetricDefinitions | undefined> {
  const record = await readVersionRecord(state, version);
  if (!record?.metricsSha256) return undefined;
  const { text, where } = await readStoredMetrics(state, record);
  return parseMetricDefinitions(text, where);
}

export interface NewVersion {
  version: string;
  topic: string;
  homePartitions: number;
  metrics: MetricDefinitions;
  origin?: VersionOrigin;
}

/**
 * The version's record, created now when it has none (its metric file copied first, then the
 * record created create-only: a record always has its copy). An existing record must be for the
 * same topic and the same metric file, else the command is refused with the reason.
 */
export async function ensureVersionRecord(state: ObjectStore, init: NewVersion): Promise<VersionRecord> {
  let record = await readVersionRecord(state, init.version);
  if (!record) {
    await state.put(versionMetricsKey(init.version, init.metrics.sha256), init.metrics.text, { ifAbsent: true });
    const fresh: VersionRecord = {
      version: init.version,
      topic: init.topic,
      createdAt: new Date().toISOString(),
      homePartitions: init.homePartitions,
      metricsSha256: init.metrics.sha256,
      origin: init.origin ?? LIVE_ORIGIN,
      retiredAt: null,
    };
    const created = await state.put(versionRecordKey(init.version), `${JSON.stringify(fresh, null, 2)}\n`, { ifAbsent: true });
    // Lost the race to another layer or host: its record is the version's.
    record = created.ok ? fresh : await readVersionRecord(state, init.version);
    if (!record) throw new InfrastructureError(`the record of version "${init.version}" vanished right after it was created`);
  }
  await checkVersionMatches(state, record, init);
  return record;
}

/** Refuses a record of another topic, a retired version, or a metric file that is not the version's. */
export async function checkVersionMatches(state: ObjectStore, record: VersionRecord, init: NewVersion): Promise<void> {
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
  const { text, where } = await readStoredMetrics(state, record);
  const theirs = parseMetricDefinitions(text, where);
  // Comments, layout and descriptions may differ: what is computed may not.
  if (metricsFingerprint(theirs.metrics) === metricsFingerprint(init.metrics.metrics)) return;
  const why = metricDifferences(theirs.metrics, init.metrics.metrics);
  throw new ConfigError(
    `${init.metrics.source} is not the metric file of version "${record.version}" (${where}, sha256 ${record.metricsSha256.slice(0, 12)})` +
      `${why.length > 0 ? `: ${why.join('; ')}` : ''}. A version's metric definitions never change: replay the new file into a new version (lk replay --version <new> --metrics ${init.metrics.source} --from earliest), or leave out --metrics to use the version's own copy`,
  );
}

/**
 * Marks a version retired (its record stays, so that `lk versions` lists it): a compare-and-swap
 * on the record, so that a retirement never undoes anything written meanwhile.
 */
export async function markRetired(state: ObjectStore, version: string): Promise<VersionRecord> {
  for (;;) {
    const current = await readRecordObject(state, version);
    if (!current) throw new ConfigError(`no job version "${version}" in ${versionsLocation(state)}`);
    if (current.value.retiredAt !== null) return current.value;
    const retired = { ...current.value, retiredAt: new Date().toISOString() };
    const put = await state.put(versionRecordKey(version), `${JSON.stringify(retired, null, 2)}\n`, { ifMatch: current.etag });
    if (put.ok) return retired;
  }
}
