/**
 * The job-version part of the API: `versions` (states and replay progress, read from the files
 * the layers publish: services/versions/versionStates.ts), `versionDiff` (two versions window by
 * window: serving/versionDiff.ts) and the `promote` mutation (services/versions/promotion.ts),
 * which returns once this server answers with the promoted version.
 */
import { ConfigError, errorMessage } from '../../services/errors.ts';
import type { Granularity } from '../../services/metrics/definitions.ts';
import { PromotionConflictError, readDefaultVersion } from '../../services/versions/defaultVersion.ts';
import { PromotionRefusedError, promoteVersion } from '../../services/versions/promotion.ts';
import { isVersionName, VERSION_NAME_RULE } from '../../services/versions/versionName.ts';
import { versionsReport, type VersionSummary } from '../../services/versions/versionStates.ts';
import { diffVersionsSteps } from '../versionDiff.ts';
import { audit, type AuditAction } from '../auth/audit.ts';
import { may, permissionsOf, type Operation } from '../auth/roles.ts';
import { ErrorCode, requestError, userError } from './errors.ts';
import {
  checkGranularity,
  checkRange,
  checkRetention,
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
    state: ctx.state,
    fallbackDefault: ctx.config.defaultVersion,
    thresholds: thresholdsOf(ctx),
  };
}

async function jobVersion(v: VersionSummary, ctx: ServeContext) {
  let metrics: string[] = [];
  try {
    metrics = v.state === 'RETIRED' ? [] : (await definitionsFor(ctx, v.version)).metrics.map((m) => m.name);
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

/** Refuses an operation the caller's role may not run (the plugin refuses it before execution too; this is the second lock). */
export function requireRole(ctx: ServeContext, operation: Operation): void {
  const { principal } = ctx.caller;
  if (may(principal, operation)) return;
  throw requestError(ErrorCode.FORBIDDEN, forbiddenMessage(principal.name, principal.role, operation), 403);
}

export function forbiddenMessage(name: string, role: string, operation: Operation): string {
  return `${operation} needs the admin role; ${name} has the ${role} role (its token's role: --tokens-file, or the JWT's --jwt-role-claim)`;
}

export const versionQueryResolvers = {
  /** The caller as serving sees it (the dashboard hides what the role may not do). */
  viewer(_: unknown, __: unknown, ctx: ServeContext) {
    const { principal } = ctx.caller;
    return {
      name: principal.name,
      role: principal.role.toUpperCase(),
      authenticated: principal.via !== 'anonymous',
      via: principal.via,
      permissions: permissionsOf(principal),
    };
  },

  async versions(_: unknown, __: unknown, ctx: ServeContext) {
    const report = await versionsReport(versionInput(ctx));
    return {
      // What this server answers with (it adopts a new pointer once that version can answer).
      default: ctx.defaultVersion,
      previous: report.pointer?.previous ?? null,
      promotion: ctx.defaultGeneration,
      promotedAt: report.pointer?.promotedAt ?? null,
      versions: await Promise.all(report.versions.map((v) => jobVersion(v, ctx))),
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
    const defs = await Promise.all([definitionsFor(ctx, args.a), definitionsFor(ctx, args.b)]);
    const def = defs.flatMap((d) => d.metrics).find((m) => m.name === args.metric);
    if (!def) {
      const known = [...new Set(defs.flatMap((d) => d.metrics.map((m) => m.name)))].join(', ');
      throw userError(ErrorCode.UNKNOWN_METRIC, `metric "${args.metric}" is in neither ${args.a} nor ${args.b}; known metrics: ${known}`);
    }
    const g: Granularity = granularityOf(args.granularity);
    if (!defs.some((d) => d.metrics.some((m) => m.name === def.name && m.granularities.includes(g)))) checkGranularity(def, g);
    checkRange(ctx.config, g, args.from, args.to);
    const [a, b] = await Promise.all([snapshotFor(ctx, args.a), snapshotFor(ctx, args.b)]);
    for (const snapshot of [a, b]) checkRetention(snapshot, def.name, g, args.from, args.to);
    const d = await ctx.work.steps(
      diffVersionsSteps(a!, b!, {
        metric: def.name,
        granularity: g,
        from: args.from,
        to: args.to,
        limit: args.limit,
        deadline: ctx.deadline,
      }),
    );
    return { ...d, a: d.versionA, b: d.versionB, granularity: args.granularity };
  },
};

/**
 * Promotes a version (the rollback when it is the pointer's previous one), writes the audit line,
 * and returns once every serving process answers with it (VersionsAdmin.propagate).
 */
async function promoteAudited(ctx: ServeContext, version: string, force: boolean, action: AuditAction) {
  checkVersionName(version);
  const pointer = await readDefaultVersion(ctx.state);
  const from = pointer?.version ?? ctx.config.defaultVersion;
  const who = ctx.caller.principal;
  let result;
  try {
    result = await ctx.work.waiting(promoteVersion({ ...versionInput(ctx), version, force }));
  } catch (err) {
    audit(ctx.logger, { action, who, from, to: version, outcome: 'refused', reason: errorMessage(err) });
    if (err instanceof PromotionRefusedError || err instanceof PromotionConflictError)
      throw userError(ErrorCode.PROMOTION_REFUSED, err.message);
    throw err;
  }
  audit(ctx.logger, {
    action,
    who,
    from,
    to: version,
    outcome: 'done',
    promotion: result.pointer.generation,
    ...(result.skipped.length > 0 ? { forced: result.skipped } : {}),
  });
  // Return once every serving process answers with it (the pointer is adopted when the version can answer).
  const reports = await ctx.work.waiting(ctx.versionsAdmin.propagate());
  const behind = reports.filter((r) => r.version !== version);
  if (behind.length > 0) {
    throw userError(
      ErrorCode.PROMOTION_REFUSED,
      `"${version}" is now the default version, but ${behind.length} serving process(es) cannot answer with it: ${behind.map((r) => `pid ${r.pid}: ${r.error ?? `still on ${r.version}`}`).join('; ')}; promote "${result.pointer.previous ?? ctx.config.defaultVersion}" back or fix the version`,
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
}

export const mutationResolvers = {
  async promote(_: unknown, args: { version: string; force: boolean }, ctx: ServeContext) {
    requireRole(ctx, 'promote');
    return promoteAudited(ctx, args.version, args.force, 'promote');
  },

  async rollback(_: unknown, args: { force: boolean }, ctx: ServeContext) {
    requireRole(ctx, 'rollback');
    const previous = (await readDefaultVersion(ctx.state))?.previous ?? null;
    if (previous === null) {
      const reason = 'no version was promoted before the current default: there is nothing to roll back to';
      audit(ctx.logger, { action: 'rollback', who: ctx.caller.principal, from: ctx.defaultVersion, to: null, outcome: 'refused', reason });
      throw userError(ErrorCode.PROMOTION_REFUSED, reason);
    }
    return promoteAudited(ctx, previous, args.force, 'rollback');
  },

  async retire(_: unknown, args: { version: string; group?: string | null }, ctx: ServeContext) {
    requireRole(ctx, 'retire');
    checkVersionName(args.version);
    const who = ctx.caller.principal;
    let report;
    try {
      report = await ctx.work.waiting(ctx.versionsAdmin.retire(args.version, args.group ?? undefined));
    } catch (err) {
      audit(ctx.logger, { action: 'retire', who, from: args.version, to: null, outcome: 'refused', reason: errorMessage(err) });
      if (err instanceof ConfigError) throw userError(ErrorCode.RETIREMENT_REFUSED, err.message);
      throw err;
    }
    audit(ctx.logger, { action: 'retire', who, from: args.version, to: null, outcome: 'done', deleted: report.deleted });
    // Every serving process closes the retired version before this returns.
    await ctx.work.waiting(ctx.versionsAdmin.propagate());
    return { version: report.version, retiredAt: Date.parse(report.retiredAt), deleted: report.deleted };
  },
};
