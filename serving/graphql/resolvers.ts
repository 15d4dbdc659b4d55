/**
 * Resolvers: validate arguments (each failure a coded GraphQLError with a message that says what
 * to change), take the request's view snapshot, and answer with serving/queries.ts.
 */
import { bucketBoundaries, sketchQuantile, type ValueSketch } from '../../services/metrics/ddsketch.ts';
import {
  granularityMs,
  granularityNameOf,
  keyFieldsOf,
  type Granularity,
  type MetricDefinition,
  type MetricDefinitions,
} from '../../services/metrics/definitions.ts';
import { compositeKeyText, splitCompositeKey } from '../../services/metrics/fieldSemantics.ts';
import { retentionMsOf } from '../../services/metrics/retention.ts';
import type { DefaultVersionFollower } from '../views/defaultVersionFollower.ts';
import type { ServeConfig } from '../config.ts';
import { formatDuration } from '../../services/config/durations.ts';
import type { DeadLetterStatus } from '../views/deadLetterCounts.ts';
import {
  hoppingWindows,
  seriesColumns,
  seriesWindows,
  topKeysSteps,
  totalSteps,
  totalGranularity,
  type Deadline,
  granularityName,
  type GranularityName,
  type WindowValue,
} from '../queries.ts';
import { maxRangeMsOf, parseGranularityArgument } from './granularityScalar.ts';
import { reconcileSteps } from '../reconciliation.ts';
import { readSpeedStatuses, speedPartitions } from '../../services/status/speedStatus.ts';
import { readBatchStatus } from '../../services/status/batchStatus.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { SOURCE_SPEED, windowPartitionSources } from '../views/mergeRule.ts';
import type { VersionRegistry } from '../views/versionRegistry.ts';
import type { ViewSnapshot } from '../views/versionView.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { Principal } from '../auth/roles.ts';
import type { VersionsAdmin } from '../versionsAdmin.ts';
import { ErrorCode, userError } from './errors.ts';
import type { ExecutionBudget } from './executionBudget.ts';

export type { GranularityName } from '../queries.ts';
export { granularityName } from '../queries.ts';

/** Who sent a request, and the key of the rate-limit bucket it is charged to. */
export interface Caller {
  principal: Principal;
  client: string;
}

export interface ServeContext {
  config: ServeConfig;
  caller: Caller;
  /** The request's event-loop time: slices, yields, cut-off (serving/graphql/executionBudget.ts). */
  work: ExecutionBudget;
  /** Retirement and cross-worker propagation of version changes (serving/versionsAdmin.ts). */
  versionsAdmin: VersionsAdmin;
  logger: Logger;
  /** Cost units charged to the caller's rate limit for this request (0: not admitted yet). */
  charged: number;
  /** The operation's first root field, once known (metrics labels). */
  rootField: string;
  /** Subscriptions: called before each event is delivered (its rate-limit charge, a new execution budget). */
  beforeEvent?: () => Promise<void>;
  /** The shared state (services/config/dataDir.ts): versions, status, batch views. */
  state: ObjectStore;
  registry: VersionRegistry;
  /** The default version, read once when the request started: one answer, one version. */
  defaultVersion: string;
  /** The promotion pointer's generation at that moment (0: none yet). */
  defaultGeneration: number;
  /** Follows the promotion pointer (promote waits for the new default to be adopted). */
  defaults: DefaultVersionFollower;
  deadline: Deadline;
  /** When the request's time budget ends (epoch ms). */
  deadlineAt: number;
  /** One snapshot per version per request: every field of a query reads the same views. */
  snapshots: Map<string, ViewSnapshot>;
  subscriptionCount: () => number;
  /** The dead-letter topic's counts by reason (serving/views/deadLetterCounts.ts). */
  deadLetters: () => DeadLetterStatus;
}

/** The canonical granularity of an API name (MINUTE, 5m; arguments come canonical from the Granularity scalar already). */
export function granularityOf(name: GranularityName): Granularity {
  return parseGranularityArgument(name) ?? name;
}

/** The metric definitions of the version a query names (else of the request's default version). */
export async function definitionsFor(ctx: ServeContext, version: string | null | undefined): Promise<MetricDefinitions> {
  return (await ctx.registry.open(version ?? ctx.defaultVersion)).definitions;
}

export function metricDef(definitions: MetricDefinitions, name: string, version?: string): MetricDefinition {
  const def = definitions.metrics.find((m) => m.name === name);
  if (!def) {
    const known = definitions.metrics.map((m) => m.name).join(', ');
    throw userError(ErrorCode.UNKNOWN_METRIC, `unknown metric "${name}"; known metrics: ${known}${version ? ` (version ${version})` : ''}`);
  }
  return def;
}

export function checkGranularity(def: MetricDefinition, g: Granularity): void {
  if (!def.granularities.includes(g)) {
    throw userError(
      ErrorCode.UNSUPPORTED_GRANULARITY,
      `metric "${def.name}" has no ${granularityName(g)} windows; it has ${def.granularities.map(granularityName).join(', ')}`,
    );
  }
}

export function checkRange(config: ServeConfig, g: Granularity, from: number, to: number): void {
  if (from > to) {
    throw userError(
      ErrorCode.INVALID_RANGE,
      `\`from\` (${new Date(from).toISOString()}) is after \`to\` (${new Date(to).toISOString()}); the range is [from, to)`,
    );
  }
  const cap = maxRangeMsOf(config.maxRangeMs, g);
  if (to - from > cap) {
    throw userError(
      ErrorCode.RANGE_TOO_LARGE,
      `range of ${formatDuration(to - from)} exceeds the ${formatDuration(cap)} limit for ${granularityName(g)} windows; narrow it or use a coarser granularity`,
    );
  }
}

/**
 * The key a query names: `key` (the key's text), or `keyParts` for a composite key, which become
 * its text (services/metrics/fieldSemantics.ts compositeKeyText). One of the two; `required`
 * says whether a query must name a key at all.
 */
export function keyArgument(
  def: MetricDefinition,
  args: { key?: string | null; keyParts?: readonly string[] | null },
  required: boolean,
): string | null {
  const parts = keyFieldsOf(def);
  if (args.key != null && args.keyParts != null) throw userError(ErrorCode.INVALID_KEY, 'give key or keyParts, not both');
  if (args.keyParts != null) {
    if (args.keyParts.length !== parts.length)
      throw userError(
        ErrorCode.INVALID_KEY,
        `metric "${def.name}" has a key of ${parts.length} part${parts.length === 1 ? '' : 's'} (${parts.join(', ')}); keyParts has ${args.keyParts.length}`,
      );
    return parts.length === 1 ? args.keyParts[0]! : compositeKeyText(args.keyParts);
  }
  if (args.key != null) return args.key;
  if (required) throw userError(ErrorCode.INVALID_KEY, `give key or keyParts${parts.length > 1 ? ` (${parts.join(', ')})` : ''}`);
  return null;
}

/** A key's parts as the API reports them: the key itself for a one-field key. */
export function keyPartsOf(ctx: ServeContext, version: string, metric: string, key: string): string[] {
  // The version's runtime is open: the answer this key belongs to came from it.
  const def = ctx.registry.get(version)?.definitions.metrics.find((m) => m.name === metric);
  return def?.keyParts !== undefined ? splitCompositeKey(key) : [key];
}

/**
 * Refuses a range that holds windows past the metric's retention in this snapshot's version (the
 * view's event-time watermark, serving/views/viewRetention.ts): their rows are deleted or evicted,
 * and an answer without them would be wrong, not empty.
 */
export function checkRetention(snapshot: ViewSnapshot, metric: string, g: Granularity, from: number, to: number): void {
  const refusal = snapshot.retentionRefusal(metric, g, from, to);
  if (refusal !== undefined) throw userError(ErrorCode.OUTSIDE_RETENTION, refusal);
}

export async function snapshotFor(ctx: ServeContext, version: string | null | undefined): Promise<ViewSnapshot> {
  const v = version ?? ctx.defaultVersion;
  const cached = ctx.snapshots.get(v);
  if (cached) return cached;
  const runtime = await ctx.registry.open(v);
  if (!ctx.registry.isReady(v)) {
    // A version opened just now catches up first; the request's time budget bounds the wait.
    let timer: NodeJS.Timeout | undefined;
    const budget = Math.max(0, ctx.deadlineAt - Date.now());
    await ctx.work
      .waiting(
        Promise.race([
          ctx.registry.whenReady(v),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  userError(
                    ErrorCode.REQUEST_TIMEOUT,
                    `version ${v} is still catching up; retry shortly (the wait is bounded by --request-timeout)`,
                  ),
                ),
              budget,
            );
          }),
        ]),
      )
      .finally(() => clearTimeout(timer));
  }
  const snapshot = ctx.snapshots.get(v) ?? runtime.view.snapshot();
  ctx.snapshots.set(v, snapshot);
  return snapshot;
}

interface RangeArgs {
  metric: string;
  granularity: GranularityName;
  from: number;
  to: number;
  version?: string | null;
}

interface KeyArgs {
  key?: string | null;
  keyParts?: string[] | null;
}

/** What series and seriesColumns check alike: the metric, its key, its granularity, the range; then the request's snapshot. */
async function seriesRequest(ctx: ServeContext, args: RangeArgs & KeyArgs) {
  const def = metricDef(await definitionsFor(ctx, args.version), args.metric, args.version ?? ctx.defaultVersion);
  const key = keyArgument(def, args, true)!;
  const g = granularityOf(args.granularity);
  checkGranularity(def, g);
  checkRange(ctx.config, g, args.from, args.to);
  const snapshot = await snapshotFor(ctx, args.version);
  checkRetention(snapshot, def.name, g, args.from, args.to);
  ctx.deadline.check();
  return { def, g, snapshot, key };
}

export const queryResolvers = {
  metrics: async (_: unknown, args: { version?: string | null }, ctx: ServeContext) =>
    (await definitionsFor(ctx, args.version)).metrics.map((m) => ({
      name: m.name,
      description: m.description ?? null,
      key: m.key,
      keyParts: m.keyParts ?? null,
      value: m.value ?? null,
      distinct: m.distinct ?? null,
      percentileAccuracy: m.percentiles?.relativeAccuracy ?? null,
      granularities: m.granularities.map(granularityName),
      sessionGapMs: m.session?.gapMs ?? null,
      allowedLatenessMs: m.allowedLatenessMs,
      retention: m.granularities.map((g) => {
        const retention = ctx.registry.get(args.version ?? ctx.defaultVersion)?.view.retention;
        const oldest = retention?.oldestKept(m.name, g) ?? -Infinity;
        return {
          granularity: granularityName(g),
          retentionMs: retentionMsOf(m.retention, g, granularityMs(g)),
          oldestWindowStart: oldest === -Infinity ? null : oldest,
        };
      }),
    })),

  async series(_: unknown, args: RangeArgs & KeyArgs, ctx: ServeContext): Promise<WindowValue[]> {
    const { def, g, snapshot, key } = await seriesRequest(ctx, args);
    return seriesWindows(snapshot, def.name, g, key, args.from, args.to);
  },

  /** series as columns: the same validation and the same windows (serving/queries.ts seriesColumns). */
  async seriesColumns(_: unknown, args: RangeArgs & KeyArgs, ctx: ServeContext) {
    const { def, g, snapshot, key } = await seriesRequest(ctx, args);
    return seriesColumns(snapshot, def.name, g, key, args.from, args.to);
  },

  async hopping(
    _: unknown,
    args: Omit<RangeArgs, 'granularity'> & KeyArgs & { size: GranularityName; advance: GranularityName },
    ctx: ServeContext,
  ) {
    const { def, g, snapshot, key } = await seriesRequest(ctx, { ...args, granularity: args.advance });
    const size = granularityMs(granularityOf(args.size));
    const step = granularityMs(g);
    if (size % step !== 0 || size / step > MAX_HOPS)
      throw userError(
        ErrorCode.UNSUPPORTED_GRANULARITY,
        `a hopping window's size must be a multiple of its advance, at most ${MAX_HOPS} times it: size ${args.size}, advance ${granularityName(g)}`,
      );
    return hoppingWindows(snapshot, def.name, g, size, key, args.from, args.to);
  },

  /**
   * The sessions of one key starting in [from, to) (serving/views/sessionRows.ts). Refused: an
   * unknown metric, a metric with tumbling windows, from after to, a range of more gaps than
   * --max-range-minute, -hour or -day allows windows of the gap's size.
   */
  async sessions(_: unknown, args: { metric: string; key: string; from: number; to: number; version?: string | null }, ctx: ServeContext) {
    const def = metricDef(await definitionsFor(ctx, args.version), args.metric, args.version ?? ctx.defaultVersion);
    if (def.session === undefined)
      throw userError(
        ErrorCode.NOT_A_SESSION_METRIC,
        `metric "${def.name}" has tumbling windows (${def.granularities.map(granularityName).join(', ')}), not sessions; ask series, total or hopping, or sessions of a metric declaring session: { gap: ... }`,
      );
    const gapMs = def.session.gapMs;
    if (args.from <= args.to) {
      const cap = maxRangeMsOf(ctx.config.maxRangeMs, granularityNameOf(gapMs));
      if (args.to - args.from > cap)
        throw userError(
          ErrorCode.RANGE_TOO_LARGE,
          `range of ${formatDuration(args.to - args.from)} exceeds the ${formatDuration(cap)} limit for sessions with a ${formatDuration(gapMs)} gap (as many gaps as --max-range-minute, -hour or -day allows windows of that size); narrow it`,
        );
    }
    checkRange(ctx.config, granularityNameOf(gapMs), args.from, args.to);
    const snapshot = await snapshotFor(ctx, args.version);
    ctx.deadline.check();
    return snapshot.sessions(def.name, args.key, gapMs, args.from, args.to);
  },

  async topKeys(_: unknown, args: RangeArgs & { limit: number }, ctx: ServeContext) {
    const def = metricDef(await definitionsFor(ctx, args.version), args.metric, args.version ?? ctx.defaultVersion);
    const g = granularityOf(args.granularity);
    checkGranularity(def, g);
    checkRange(ctx.config, g, args.from, args.to);
    if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > ctx.config.maxTopKeys) {
      throw userError(ErrorCode.LIMIT_OUT_OF_BOUNDS, `limit must be between 1 and ${ctx.config.maxTopKeys}, got ${args.limit}`);
    }
    const snapshot = await snapshotFor(ctx, args.version);
    checkRetention(snapshot, def.name, g, args.from, args.to);
    const top = await ctx.work.steps(topKeysSteps(snapshot, def.name, g, args.from, args.to, args.limit, ctx.deadline));
    return top.map((t) => ({ ...t, version: snapshot.version, metric: def.name }));
  },

  async total(_: unknown, args: Omit<RangeArgs, 'granularity'> & KeyArgs & { granularity?: GranularityName | null }, ctx: ServeContext) {
    const def = metricDef(await definitionsFor(ctx, args.version), args.metric, args.version ?? ctx.defaultVersion);
    const key = keyArgument(def, args, false);
    let g: Granularity;
    if (args.granularity) {
      g = granularityOf(args.granularity);
      checkGranularity(def, g);
    } else {
      g = totalGranularity(def, args.from, args.to);
    }
    checkRange(ctx.config, g, args.from, args.to);
    const snapshot = await snapshotFor(ctx, args.version);
    checkRetention(snapshot, def.name, g, args.from, args.to);
    const t = await ctx.work.steps(totalSteps(snapshot, def, key, args.from, args.to, g, ctx.deadline));
    return { ...t, version: snapshot.version, granularity: granularityName(t.granularity) };
  },

  async reconciliation(_: unknown, args: RangeArgs & { onlyDisagreeing: boolean }, ctx: ServeContext) {
    const def = metricDef(await definitionsFor(ctx, args.version), args.metric, args.version ?? ctx.defaultVersion);
    const g = granularityOf(args.granularity);
    checkGranularity(def, g);
    checkRange(ctx.config, g, args.from, args.to);
    const version = args.version ?? ctx.defaultVersion;
    const snapshot = await snapshotFor(ctx, version);
    checkRetention(snapshot, def.name, g, args.from, args.to);
    const statuses = await readSpeedStatuses(ctx.state, version);
    const partitions = speedPartitions(statuses);
    const batchPartitions = snapshot.batch?.manifest.cut.length ?? 0;
    const partitionCount = Math.max(batchPartitions, partitions.length > 0 ? partitions[partitions.length - 1]!.partition + 1 : 0);
    // Every input partition must report a watermark, or no window counts as closed.
    const watermarks =
      partitions.length === 0
        ? undefined
        : Array.from({ length: partitionCount }, (_, p) => partitions.find((x) => x.partition === p)?.watermark ?? null);
    const dupes = statuses.reduce<number | null>((acc, s) => (s.status ? (acc ?? 0) + s.status.duplicates : acc), null);
    const misplaced = statuses.reduce<number | null>((acc, s) => (s.status ? (acc ?? 0) + s.status.misplaced : acc), null);
    const r = await ctx.work.steps(
      reconcileSteps({
        view: snapshot,
        def,
        granularity: g,
        from: args.from,
        to: args.to,
        speedWatermarks: watermarks,
        speedDuplicatesDropped: dupes,
        speedMisplacedRecords: misplaced,
        deadline: ctx.deadline,
        onlyDisagreeing: args.onlyDisagreeing,
      }),
    );
    return { ...r, version, granularity: granularityName(r.granularity) };
  },

  async pipeline(_: unknown, args: { version?: string | null }, ctx: ServeContext) {
    const version = args.version ?? ctx.defaultVersion;
    // The request's snapshot: the status reads below may let a newer run be installed meanwhile.
    const snapshot = await snapshotFor(ctx, version);
    const runtime = ctx.registry.get(version)!;
    const now = Date.now();
    const [statuses, batchStatus] = await Promise.all([readSpeedStatuses(ctx.state, version), readBatchStatus(ctx.state)]);
    const droppedLate = new Map<string, number>();
    let eps: number | null = null;
    let duplicates: number | null = null;
    let misplaced: number | null = null;
    let lastCheckpoint: { at: number; bytes: number | null; durationMs: number | null } | null = null;
    for (const { status } of statuses) {
      if (!status) continue;
      eps = (eps ?? 0) + status.eventsPerSecond;
      duplicates = (duplicates ?? 0) + status.duplicates;
      misplaced = (misplaced ?? 0) + status.misplaced;
      for (const [m, c] of Object.entries(status.droppedLate)) droppedLate.set(m, (droppedLate.get(m) ?? 0) + c);
      const cp = status.lastCheckpoint;
      if (cp && (!lastCheckpoint || cp.at > lastCheckpoint.at)) lastCheckpoint = { at: cp.at, bytes: cp.bytes, durationMs: cp.durationMs };
    }
    // The request's snapshot, not the view's batch now: a request may yield between its fields
    // (serving/graphql/executionBudget.ts) while a newer batch run is installed.
    const installed = snapshot.batch;
    const lastRun = installed?.manifest ?? null;
    const speedStats = runtime.view.speedStats;
    return {
      version,
      speed: {
        instances: statuses.flatMap(({ status }) =>
          status ? [{ instanceId: status.instanceId, pid: status.pid, updatedAt: status.updatedAt, ageMs: now - status.updatedAt }] : [],
        ),
        partitions: speedPartitions(statuses),
        eventsPerSecond: eps,
        duplicates,
        misplaced,
        droppedLate: [...droppedLate].map(([metric, count]) => ({ metric, count })),
        lastCheckpoint,
        unreadable: statuses.flatMap((s) => (s.error ? [`${s.path}: ${s.error}`] : [])),
      },
      batch: {
        lastRun,
        nextRunAt: batchStatus?.status?.nextRunAt ?? null,
        lakeFiles: batchStatus?.status?.lakeFiles ?? lastRun?.lakeFiles ?? null,
        lakeBytes: batchStatus?.status?.lakeBytes ?? lastRun?.lakeBytes ?? null,
        updatedAt: batchStatus?.status?.updatedAt ?? null,
        unreadable: batchStatus?.error ?? null,
      },
      serving: {
        ready: ctx.registry.isReady(version),
        speedView: {
          topic: runtime.topic,
          topicExists: runtime.materializer.topicExists,
          caughtUp: runtime.materializer.caughtUp,
          rows: speedStats.rows,
          rejectedRows: runtime.materializer.rejectedRows,
          partitions: runtime.materializer.partitionPositions().map((p) => ({ ...p, lag: Math.max(0, p.highWatermark - p.nextOffset) })),
          ageMs: speedStats.lastRowAt === null ? null : now - speedStats.lastRowAt,
          freshnessMs: speedStats.maxProcessingTime === null ? null : now - speedStats.maxProcessingTime,
          lastError: runtime.materializer.lastError,
        },
        batchView: installed
          ? {
              runId: installed.manifest.runId,
              rows: installed.rows,
              loadedAt: installed.loadedAt,
              ageMs: now - installed.manifest.finishedAt,
              cut: installed.manifest.cut,
              lastError: runtime.follower.lastError,
            }
          : null,
        subscriptions: ctx.subscriptionCount(),
      },
      deadLetters: ctx.deadLetters(),
    };
  },
};

/** At most this many tumbling windows merged into one hopping window (bounds a query's work). */
export const MAX_HOPS = 1000;

/** A KeyTotal's parts (topKeys keeps the metric on each answer for this). */
export const keyTotalResolvers = {
  keyParts: (parent: { version: string; metric: string; key: string }, _: unknown, ctx: ServeContext) =>
    keyPartsOf(ctx, parent.version, parent.metric, parent.key),
};

/** What the percentile fields read: the answer's metric and version, and its merged sketch. */
interface WithValueSketch {
  version: string;
  metric: string;
  valueSketch: ValueSketch | null;
}

/** The p-quantile of an answer's sketch, by its metric's bucket table; null without percentiles. */
async function percentileOf(parent: WithValueSketch, p: number, ctx: ServeContext): Promise<number | null> {
  if (!(p >= 0 && p <= 1))
    throw userError(ErrorCode.INVALID_PERCENTILE, `percentile p must be in [0, 1] (0.5 is the median, 0.99 the 99th), got ${p}`);
  if (parent.valueSketch === null) return null;
  const def = metricDef(await definitionsFor(ctx, parent.version), parent.metric, parent.version);
  if (def.percentiles === undefined) return null;
  return sketchQuantile(parent.valueSketch, p, bucketBoundaries(def.percentiles.relativeAccuracy));
}

/** p50 ... p99 and percentile(p) on WindowValue and Total. */
export const percentileResolvers = {
  p50: (parent: WithValueSketch, _: unknown, ctx: ServeContext) => percentileOf(parent, 0.5, ctx),
  p90: (parent: WithValueSketch, _: unknown, ctx: ServeContext) => percentileOf(parent, 0.9, ctx),
  p95: (parent: WithValueSketch, _: unknown, ctx: ServeContext) => percentileOf(parent, 0.95, ctx),
  p99: (parent: WithValueSketch, _: unknown, ctx: ServeContext) => percentileOf(parent, 0.99, ctx),
  percentile: (parent: WithValueSketch, args: { p: number }, ctx: ServeContext) => percentileOf(parent, args.p, ctx),
};

export const windowValueResolvers = {
  ...percentileResolvers,
  keyParts: (parent: WindowValue, _: unknown, ctx: ServeContext) => keyPartsOf(ctx, parent.version, parent.metric, parent.key),
  /** Reads the snapshot the window came from (series) or the current one (subscriptions). */
  partitions(parent: WindowValue, _: unknown, ctx: ServeContext) {
    const g = granularityOf(parent.granularity);
    const snapshot = ctx.snapshots.get(parent.version) ?? ctx.registry.get(parent.version)?.view.snapshot();
    if (!snapshot) return [];
    return windowPartitionSources(
      snapshot.batchRows(parent.metric, g, parent.key),
      snapshot.speedRows(parent.metric, g, parent.key),
      snapshot.batch?.manifest.cut,
      snapshot.batch?.manifest.processingTimes,
      parent.windowStart,
    ).map((p) => ({
      ...p,
      source: p.source === SOURCE_SPEED ? 'SPEED' : 'BATCH',
    }));
  },
};

/** What long loops check every few hundred keys: the request's time budget, and its event-loop budget. */
export function deadlineFor(deadlineAt: number, timeoutMs: number, work?: ExecutionBudget): Deadline {
  return {
    check() {
      if (Date.now() > deadlineAt)
        throw userError(ErrorCode.REQUEST_TIMEOUT, `the request took longer than ${timeoutMs} ms (--request-timeout) and was abandoned`);
      work?.check();
    },
  };
}
