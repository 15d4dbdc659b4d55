/**
 * The job-version part of the API: `versions` (states and replay progress, read from the files
 * the layers publish: services/versions/versionStates.ts), `versionDiff` (two versions window by
 * window: serving/versionDiff.ts) and the `promote` mutation (services/versions/promotion.ts),
 * which returns once this server answers with the promoted version.
 */
import type { Granularity } from '../../services/metrics/definitions.ts';
import { PromotionRefusedError, promoteVersion } from '../../services/versions/promotion.ts';
import { isVersionName, VERSION_NAME_RULE } from '../../services/versions/versionName.ts';
import { versionsReport, type VersionSummary } from '../../services/versions/versionStates.ts';
import { diffVersions } from '../versionDiff.ts';
import { ErrorCode, userError } from './errors.ts';
import {
  checkGranularity,
  checkRange,
  definitionsFor,
  granularityOf,
  snapshotFor,
  type GranularityName,
  type ServeContext,
} from './resolvers.ts';

function thresholdsOf(ctx: ServeContext) {
  return { maxLag: ctx.config.promoteMaxLag, maxWatermarkLagMs: ctx.config.promoteMaxWatermarkLagMs };
}

function versionInput(ctx: ServeContext) {
  return {
    dataDir: ctx.config.dataDir,
    viewsRoot: ctx.config.viewsRoot,
    fallbackDefault: ctx.config.defaultVersion,
    thresholds: thresholdsOf(ctx),
  };
}

function jobVersion(v: VersionSummary, ctx: ServeContext) {
  let metrics: string[] = [];
  try {
    metrics = v.state === 'RETIRED' ? [] : definitionsFor(ctx, v.version).metrics.map((m) => m.name);
  } catch {
    // Too many versions open (--max-versions): the names are optional detail.
  }
  return {
    name: v.version,
    state: v.state,
    topic: v.topic,
    createdAt: Date.parse(v.createdAt),
    metricsSha256: v.metricsSha256,
    origin: v.origin.from,
    startOffsets: v.origin.startOffsets,
    retiredAt: v.retiredAt === null ? null : Date.parse(v.retiredAt),
    isDefault: v.isDefault,
    runningInstances: v.runningInstances,
    partitions: v.partitions,
    maxLag: v.maxLag,
    eventsPerSecond: v.eventsPerSecond,
    done: v.done,
    total: v.total,
    percentDone: v.percent,
    etaSeconds: v.etaSeconds,
    lastBatchRun: v.lastBatchRun,
    metrics,
  };
}

function checkVersionName(name: string): void {
  if (!isVersionName(name)) throw userError(ErrorCode.INVALID_VERSION, `version "${name}" is not ${VERSION_NAME_RULE}`);
}

export const versionQueryResolvers = {
  versions(_: unknown, __: unknown, ctx: ServeContext) {
    const report = versionsReport(versionInput(ctx));
    return {
      // What this server answers with (it adopts a new pointer once that version can answer).
      default: ctx.defaultVersion,
      previous: report.pointer?.previous ?? null,
      promotion: ctx.defaultGeneration,
      promotedAt: report.pointer?.promotedAt ?? null,
      versions: report.versions.map((v) => jobVersion(v, ctx)),
    };
  },

  async versionDiff(
    _: unknown,
    args: { a: string; b: string; metric: string; granularity: GranularityName; from: number; to: number; limit: number },
    ctx: ServeContext,
  ) {
    checkVersionName(args.a);
    checkVersionName(args.b);
    if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > ctx.config.maxTopKeys)
      throw userError(ErrorCode.LIMIT_OUT_OF_BOUNDS, `limit must be between 1 and ${ctx.config.maxTopKeys}, got ${args.limit}`);
    // The metric may be new in one version (or dropped): it must exist in at least one.
    const defs = [definitionsFor(ctx, args.a), definitionsFor(ctx, args.b)];
    const def = defs.flatMap((d) => d.metrics).find((m) => m.name === args.metric);
    if (!def) {
      const known = [...new Set(defs.flatMap((d) => d.metrics.map((m) => m.name)))].join(', ');
      throw userError(ErrorCode.UNKNOWN_METRIC, `metric "${args.metric}" is in neither ${args.a} nor ${args.b}; known metrics: ${known}`);
    }
    const g: Granularity = granularityOf(args.granularity);
    if (!defs.some((d) => d.metrics.some((m) => m.name === def.name && m.granularities.includes(g)))) checkGranularity(def, g);
    checkRange(ctx.config, g, args.from, args.to);
    const [a, b] = await Promise.all([snapshotFor(ctx, args.a), snapshotFor(ctx, args.b)]);
    const d = diffVersions(a!, b!, {
      metric: def.name,
      granularity: g,
      from: args.from,
      to: args.to,
      limit: args.limit,
      deadline: ctx.deadline,
    });
    return { ...d, a: d.versionA, b: d.versionB, granularity: args.granularity };
  },
};

export const mutationResolvers = {
  async promote(_: unknown, args: { version: string; force: boolean }, ctx: ServeContext) {
    checkVersionName(args.version);
    let result;
    try {
      result = await promoteVersion({ ...versionInput(ctx), version: args.version, force: args.force });
    } catch (err) {
      if (err instanceof PromotionRefusedError) throw userError(ErrorCode.PROMOTION_REFUSED, err.message);
      throw err;
    }
    // Return once this server answers with it (the pointer is adopted when the version can answer).
    await ctx.defaults.poll();
    if (ctx.defaults.current.version !== args.version) {
      throw userError(
        ErrorCode.PROMOTION_REFUSED,
        `"${args.version}" is now the default version, but this server cannot answer with it: ${ctx.defaults.lastError ?? 'unknown reason'}; promote "${result.pointer.previous ?? ctx.config.defaultVersion}" back or fix the version`,
      );
    }
    return {
      version: result.pointer.version,
      previous: result.pointer.previous,
      promotion: result.pointer.generation,
      promotedAt: result.pointer.promotedAt,
      changed: result.changed,
      skippedChecks: result.skipped,
    };
  },
};
