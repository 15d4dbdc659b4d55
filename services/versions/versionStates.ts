/**
 * What `lk versions`, GraphQL `versions` and promotion know about each job version, read from
 * the files the layers publish (never from a running process): the version records, the default
 * pointer, the speed instances' status files and the batch layer's CURRENT run.
 *
 * A version's state:
 *   LIVE       the default version (serving answers with it when a query names none);
 *   REPLAYING  a speed instance runs it and some partition lags by more than the threshold;
 *   CAUGHT_UP  a speed instance runs it and every partition is within the threshold;
 *   STOPPED    no speed instance has reported for a while (its state and views stay);
 *   RETIRED    `lk versions retire` deleted its topic, checkpoints, group and views.
 *
 * Progress of a replay is by offsets: done = position - start offset, summed over partitions,
 * against end offset - start offset; the ETA divides what is left by the instances' event rate.
 */
import type { ObjectStore } from '../storage/objectStore.ts';
import { readCurrentBatchRun, type BatchRunManifest } from '../views/batchSnapshots.ts';
import { readSpeedStatuses, speedPartitions, type SpeedPartitionStatus, type SpeedStatus, type StatusRead } from '../status/speedStatus.ts';
import { readDefaultVersion, type DefaultVersion } from './defaultVersion.ts';
import { listVersionRecords, readVersionRecord, type VersionRecord } from './versionRecord.ts';

export const VERSION_STATES = ['LIVE', 'REPLAYING', 'CAUGHT_UP', 'STOPPED', 'RETIRED'] as const;
export type VersionState = (typeof VERSION_STATES)[number];

/** A status file older than this speaks for an instance that is gone (they are written every second). */
export const STATUS_STALE_MS = 15_000;

export interface PromotionThresholds {
  /** Largest lag (records) on any partition of a version that counts as caught up. */
  maxLag: number;
  /** How far (event time, ms) a partition's watermark may trail the live version's. */
  maxWatermarkLagMs: number;
}

export const DEFAULT_PROMOTION_THRESHOLDS: PromotionThresholds = { maxLag: 1000, maxWatermarkLagMs: 60_000 };

export interface VersionPartition {
  partition: number;
  position: number | null;
  endOffset: number | null;
  lag: number | null;
  watermark: number | null;
}

export interface VersionSummary {
  version: string;
  state: VersionState;
  topic: string;
  createdAt: string;
  metricsSha256: string | null;
  origin: VersionRecord['origin'];
  retiredAt: string | null;
  isDefault: boolean;
  /** Speed instances that reported within STATUS_STALE_MS. */
  runningInstances: number;
  partitions: VersionPartition[];
  /** Largest lag over the partitions reported (null when none reports). */
  maxLag: number | null;
  /** Events processed per second by the running instances. */
  eventsPerSecond: number;
  /** Offsets read since the version's start offsets / to read in all (null without start offsets). */
  done: number | null;
  total: number | null;
  percent: number | null;
  /** Seconds until caught up at the current rate (null when unknown or not moving). */
  etaSeconds: number | null;
  lastBatchRun: BatchRunManifest | null;
}

export interface VersionsReport {
  /** The default version (the pointer's, else the fallback) and the pointer itself when it exists. */
  defaultVersion: string;
  pointer: DefaultVersion | undefined;
  versions: VersionSummary[];
}

export interface VersionsInput {
  /** The shared state (`--state-uri`): records, pointer, status files, batch views. */
  state: ObjectStore;
  /** The default when no version was ever promoted (serving's --version, v1). */
  fallbackDefault: string;
  thresholds?: PromotionThresholds;
  now?: number;
}

async function summarize(record: VersionRecord, input: VersionsInput, defaultVersion: string, now: number): Promise<VersionSummary> {
  const thresholds = input.thresholds ?? DEFAULT_PROMOTION_THRESHOLDS;
  const [statuses, batchRun] = await Promise.all([
    readSpeedStatuses(input.state, record.version),
    readCurrentBatchRun(input.state, record.version),
  ]);
  const fresh = statuses.filter((s) => s.status !== undefined && s.status.ready && now - s.status.updatedAt <= STATUS_STALE_MS);
  const partitions = speedPartitions(fresh).map((p) => toPartition(p, fresh));
  const eventsPerSecond = fresh.reduce((n, s) => n + (s.status?.eventsPerSecond ?? 0), 0);
  const lags = partitions.flatMap((p) => (p.lag === null ? [] : [p.lag]));
  const maxLag = lags.length > 0 ? Math.max(...lags) : null;
  let done: number | null = null;
  let total: number | null = null;
  const starts = record.origin.startOffsets;
  if (starts !== null && partitions.length > 0) {
    done = 0;
    total = 0;
    for (const p of partitions) {
      const start = starts[p.partition] ?? 0;
      if (p.position !== null) done += Math.max(0, p.position - start);
      if (p.endOffset !== null) total += Math.max(0, p.endOffset - start);
    }
  }
  const left = lags.reduce((n, l) => n + l, 0);
  const percent = total === null || done === null ? null : total === 0 ? 100 : Math.min(100, (100 * done) / total);
  const etaSeconds = partitions.length === 0 ? null : left === 0 ? 0 : eventsPerSecond > 0 ? left / eventsPerSecond : null;
  const isDefault = record.version === defaultVersion;
  let state: VersionState;
  if (record.retiredAt !== null) state = 'RETIRED';
  else if (isDefault) state = 'LIVE';
  else if (fresh.length === 0) state = 'STOPPED';
  else state = maxLag !== null && maxLag <= thresholds.maxLag ? 'CAUGHT_UP' : 'REPLAYING';
  return {
    version: record.version,
    state,
    topic: record.topic,
    createdAt: record.createdAt,
    metricsSha256: record.metricsSha256 ?? null,
    origin: record.origin,
    retiredAt: record.retiredAt,
    isDefault,
    runningInstances: fresh.length,
    partitions,
    maxLag,
    eventsPerSecond,
    done,
    total,
    percent,
    etaSeconds,
    lastBatchRun: batchRun?.manifest ?? null,
  };
}

function toPartition(p: SpeedPartitionStatus, fresh: StatusRead<SpeedStatus>[]): VersionPartition {
  const owner = fresh.find((s) => s.status?.instanceId === p.instanceId)?.status;
  const detail = owner?.partitions.find((x) => x.partition === p.partition);
  return {
    partition: p.partition,
    position: detail?.position ?? null,
    endOffset: p.endOffset,
    lag: p.lag,
    watermark: p.watermark,
  };
}

/** Every version with a record, oldest first, with its state and progress (`pointer`: as already read). */
export async function versionsReport(input: VersionsInput, pointer?: DefaultVersion): Promise<VersionsReport> {
  const [records, read] = await Promise.all([
    listVersionRecords(input.state),
    pointer === undefined ? readDefaultVersion(input.state) : Promise.resolve(pointer),
  ]);
  const defaultVersion = read?.version ?? input.fallbackDefault;
  const now = input.now ?? Date.now();
  return {
    defaultVersion,
    pointer: read,
    versions: await Promise.all(records.map((r) => summarize(r, input, defaultVersion, now))),
  };
}

/**
 * Why `version` may not become the default now (empty: it may). The checks: it exists and is not
 * retired; a speed instance runs it and reports every partition of the topic within the lag
 * threshold; no partition's watermark trails the live version's by more than the threshold; its
 * batch layer has published a view computed from its own metric file.
 */
export async function promotionRefusals(input: VersionsInput, version: string, pointer?: DefaultVersion): Promise<string[]> {
  const thresholds = input.thresholds ?? DEFAULT_PROMOTION_THRESHOLDS;
  const report = await versionsReport(input, pointer);
  const target = report.versions.find((v) => v.version === version);
  if (!target) {
    const known = report.versions.map((v) => v.version).join(', ') || 'none';
    return [`no job version "${version}" (known: ${known}); start it with lk replay --version ${version} --from earliest`];
  }
  if (target.state === 'RETIRED') return [`version "${version}" was retired at ${target.retiredAt}; its views are gone`];
  if (target.isDefault) return [];
  const why: string[] = [];
  const homePartitions = (await readVersionRecord(input.state, version))?.homePartitions ?? 0;
  if (target.runningInstances === 0)
    why.push(`no speed instance of "${version}" has reported in the last ${STATUS_STALE_MS / 1000} s (is lk speed / lk replay running?)`);
  else {
    const reported = new Set(target.partitions.map((p) => p.partition));
    const missing = Array.from({ length: homePartitions }, (_, p) => p).filter((p) => !reported.has(p));
    if (missing.length > 0) why.push(`partitions ${missing.join(', ')} of "${version}" report no lag yet`);
    const lagging = target.partitions.filter((p) => p.lag === null || p.lag > thresholds.maxLag);
    if (lagging.length > 0)
      why.push(
        `"${version}" is not caught up: ${lagging.map((p) => `partition ${p.partition} lags ${p.lag ?? '?'}`).join(', ')} (threshold ${thresholds.maxLag})`,
      );
  }
  const live = report.versions.find((v) => v.version === report.defaultVersion);
  if (live && live.runningInstances > 0 && target.runningInstances > 0) {
    for (const lp of live.partitions) {
      if (lp.watermark === null) continue;
      const tp = target.partitions.find((p) => p.partition === lp.partition);
      if (tp?.watermark === null || tp?.watermark === undefined || tp.watermark < lp.watermark - thresholds.maxWatermarkLagMs) {
        const behind = tp?.watermark == null ? 'has no watermark' : `is ${Math.round((lp.watermark - tp.watermark) / 1000)} s behind`;
        why.push(`partition ${lp.partition}: the watermark of "${version}" ${behind} the live version "${live.version}"`);
      }
    }
  }
  const run = target.lastBatchRun;
  if (!run) why.push(`"${version}" has no batch view yet (lk batch run --version ${version})`);
  else if (target.metricsSha256 !== null && run.metricsSha256 !== target.metricsSha256)
    why.push(
      `the batch view of "${version}" (run ${run.runId}) was not computed from its metric file; run lk batch run --version ${version}`,
    );
  return why;
}
