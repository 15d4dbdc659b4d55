/**
 * Job versions from the command line (Kappa reprocessing: replay, compare, promote, roll back):
 *
 *   lk versions                         every version: state, lag and watermark per partition,
 *                                       replay progress and ETA, metric file, last batch run
 *   lk versions diff v1 v2 [--metric M] windows equal and differing, the keys that differ most
 *   lk versions retire v1               delete its view topic, checkpoints, group and batch views
 *   lk promote v2 [--force]             make v2 the default version (atomically); lk promote v1
 *                                       afterwards is the rollback
 *
 * They read and write the files the layers publish (services/versions/); the diff opens both
 * versions' views with serving's own code (the merge rule), in this process.
 */
import type { Command } from 'commander';
import { ConfigError, InfrastructureError, errorMessage } from '../../services/errors.ts';
import {
  PROMOTION_OPTIONS,
  addCommonOptions,
  addOptions,
  context,
  positiveInt,
  timestamp,
  versionName,
  type CommonOptions,
  type OptionSpec,
  type PromotionOptions,
} from '../../services/config/cliOptions.ts';
import { parseGranularity, type Granularity, type MetricDefinitions } from '../../services/metrics/definitions.ts';
import { logger } from '../../services/observability/logger.ts';
import { PromotionConflictError } from '../../services/versions/defaultVersion.ts';
import { PromotionRefusedError, promoteVersion } from '../../services/versions/promotion.ts';
import { retireVersion } from '../../services/versions/retirement.ts';
import { readVersionDefinitions } from '../../services/versions/versionRecord.ts';
import { versionsReport, type VersionSummary, type VersionsInput } from '../../services/versions/versionStates.ts';
import type { VersionDiff } from '../../serving/versionDiff.ts';

interface VersionsOptions extends CommonOptions, PromotionOptions {
  defaultVersion: string;
  json?: boolean;
}

const DEFAULT_VERSION_OPTION: OptionSpec = {
  flags: '--default-version <name>',
  description: 'the default version while none was ever promoted (what lk serve --version says)',
  env: 'LK_SERVE_VERSION',
  default: 'v1',
  parse: versionName,
};
const JSON_OPTION: OptionSpec = { flags: '--json', description: 'print JSON instead of a table' };

async function versionsInput(opts: VersionsOptions): Promise<VersionsInput> {
  return {
    state: await context(opts).state(),
    fallbackDefault: opts.defaultVersion,
    thresholds: { maxLag: opts.promoteMaxLag, maxWatermarkLagMs: opts.promoteMaxWatermarkLag },
  };
}

const time = (ms: number | null | undefined) => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace('.000Z', 'Z'));
const num = (n: number | null) => (n === null ? '-' : Math.round(n).toLocaleString('en-US'));
const eta = (s: number | null) =>
  s === null
    ? '-'
    : s === 0
      ? 'now'
      : s < 60
        ? `${Math.ceil(s)}s`
        : `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;

async function printVersions(opts: VersionsOptions): Promise<void> {
  const report = await versionsReport(await versionsInput(opts));
  if (opts.json) return void console.log(JSON.stringify(report, null, 2));
  const p = report.pointer;
  console.log(
    p
      ? `default: ${report.defaultVersion} (promotion ${p.generation} at ${time(p.promotedAt)}; previous ${p.previous ?? '-'}${p.forced.length ? '; forced' : ''})`
      : `default: ${report.defaultVersion} (no version promoted yet)`,
  );
  if (report.versions.length === 0) return void console.log('no job versions yet: lk speed or lk replay creates one');
  const rows = report.versions.map((v) => [
    v.version,
    v.state,
    v.createdAt.replace(/\.\d+Z$/, 'Z'),
    v.origin.from,
    v.metricsSha256?.slice(0, 12) ?? '-',
    String(v.runningInstances),
    num(v.maxLag),
    v.percent === null ? '-' : `${v.percent.toFixed(1)}%`,
    eta(v.etaSeconds),
    batchRunText(v),
  ]);
  const header = ['VERSION', 'STATE', 'CREATED', 'FROM', 'METRICS', 'INSTANCES', 'MAX LAG', 'DONE', 'ETA', 'LAST BATCH RUN'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  console.log(line(header));
  report.versions.forEach((v, i) => {
    console.log(line(rows[i]!));
    if (v.partitions.length > 0)
      console.log(`  ${v.partitions.map((q) => `p${q.partition} lag ${num(q.lag)} watermark ${time(q.watermark)}`).join(' | ')}`);
  });
}

function batchRunText(v: VersionSummary): string {
  const run = v.lastBatchRun;
  if (!run) return 'none';
  const own = v.metricsSha256 === null || run.metricsSha256 === v.metricsSha256 ? '' : ' (other metric file)';
  return `${run.runId} ${time(run.finishedAt)}${own}`;
}

async function promote(version: string, opts: VersionsOptions & { force?: boolean }): Promise<void> {
  let result;
  try {
    result = await promoteVersion({ ...(await versionsInput(opts)), version, force: opts.force === true });
  } catch (err) {
    if (err instanceof PromotionRefusedError || err instanceof PromotionConflictError) throw new ConfigError(err.message);
    throw err;
  }
  const { pointer } = result;
  if (!result.changed) return void console.log(`${version} already is the default version (promotion ${pointer.generation})`);
  console.log(`${version} is the default version now (promotion ${pointer.generation}; previous ${pointer.previous ?? '-'}).`);
  if (result.skipped.length > 0)
    console.log(`forced: skipped ${result.skipped.length} check(s):\n${result.skipped.map((s) => `  - ${s}`).join('\n')}`);
  console.log(`Serving switches as soon as ${version}'s views are open; roll back with: lk promote ${pointer.previous ?? '<previous>'}`);
}

async function retire(version: string, opts: VersionsOptions & { group?: string }): Promise<void> {
  const ctx = context(opts);
  const log = ctx.openLog('lk-versions');
  try {
    const report = await retireVersion({
      log,
      state: await ctx.state(),
      version,
      groupId: opts.group ?? `lk-speed-${version}`,
      fallbackDefault: opts.defaultVersion,
    });
    console.log(`retired ${report.version} at ${report.retiredAt}; deleted:\n${report.deleted.map((d) => `  ${d}`).join('\n')}`);
  } finally {
    await log.close();
  }
}

interface DiffOptions extends VersionsOptions {
  metric?: string;
  granularity?: string;
  from?: number;
  to?: number;
  limit: number;
}

/** Opens both versions' views (speed topic caught up, current batch run loaded) and compares them. */
async function diff(a: string, b: string, opts: DiffOptions): Promise<void> {
  const ctx = context(opts);
  const state = await ctx.state();
  const definitions = (v: string): Promise<MetricDefinitions | undefined> => readVersionDefinitions(state, v);
  const defsA = (await definitions(a)) ?? (await ctx.loadMetrics());
  const defsB = (await definitions(b)) ?? (await ctx.loadMetrics());
  let granularity: Granularity | undefined;
  if (opts.granularity !== undefined) {
    const parsed = parseGranularity(opts.granularity.toLowerCase());
    if (!parsed.ok) throw new ConfigError(`--granularity: ${parsed.error}`);
    granularity = parsed.granularity;
  }
  const names = [...new Set([...defsA.metrics, ...defsB.metrics].map((m) => m.name))];
  if (opts.metric !== undefined && !names.includes(opts.metric))
    throw new ConfigError(`metric "${opts.metric}" is in neither ${a} nor ${b}; known metrics: ${names.join(', ')}`);
  // Serving's views (and DuckDB) load only for a diff: the other version commands start without them.
  const [{ VersionRegistry }, { diffVersions }] = await Promise.all([
    import('../../serving/views/versionRegistry.ts'),
    import('../../serving/versionDiff.ts'),
  ]);
  const log = ctx.openLog('lk-versions-diff');
  const registry = new VersionRegistry({
    log,
    state,
    cacheDir: ctx.layout.cache,
    fallbackMetrics: defsA,
    batchPollMs: 1000,
    maxVersions: 2,
    logger,
  });
  const results: (VersionDiff | { metric: string; onlyIn: string })[] = [];
  try {
    const [ra, rb] = await Promise.all([registry.whenReady(a), registry.whenReady(b)]).catch((err: unknown) => {
      throw new InfrastructureError(`cannot open the versions' views: ${errorMessage(err)}`);
    });
    const [sa, sb] = [ra.view.snapshot(), rb.view.snapshot()];
    for (const name of opts.metric !== undefined ? [opts.metric] : names) {
      const da = defsA.metrics.find((m) => m.name === name);
      const db = defsB.metrics.find((m) => m.name === name);
      if (!da || !db) {
        results.push({ metric: name, onlyIn: da ? a : b });
        continue;
      }
      const shared = (granularity ? [granularity] : da.granularities).filter(
        (g) => da.granularities.includes(g) && db.granularities.includes(g),
      );
      for (const g of shared)
        results.push(
          diffVersions(sa, sb, { metric: name, granularity: g, from: opts.from ?? 0, to: opts.to ?? 8.64e15, limit: opts.limit }),
        );
    }
  } finally {
    await Promise.allSettled([registry.close(a), registry.close(b)]);
    await log.close();
  }
  if (opts.json) return void console.log(JSON.stringify(results, null, 2));
  printDiff(a, b, results, opts);
}

function printDiff(a: string, b: string, results: (VersionDiff | { metric: string; onlyIn: string })[], opts: DiffOptions): void {
  const range = opts.from !== undefined || opts.to !== undefined ? ` from ${time(opts.from)} to ${time(opts.to)}` : ' (all windows)';
  console.log(`${a} vs ${b}${range}`);
  let differing = 0;
  for (const r of results) {
    if ('onlyIn' in r) {
      console.log(`  ${r.metric}: only in ${r.onlyIn}`);
      differing++;
      continue;
    }
    const same = r.windowsDiffering === 0 && r.onlyInA === 0 && r.onlyInB === 0;
    if (!same) differing++;
    console.log(
      `  ${r.metric} ${r.granularity}: ${num(r.windowsCompared)} windows, ${num(r.windowsEqual)} equal, ${num(r.windowsDiffering)} differ, ` +
        `${num(r.onlyInA)} only in ${a}, ${num(r.onlyInB)} only in ${b}; ${num(r.keysDiffering)} of ${num(r.keysCompared)} keys differ`,
    );
    for (const k of r.topKeys)
      console.log(
        `      ${k.key}: ${k.windowsDiffering} window(s), count ${num(k.countA)} -> ${num(k.countB)} (${k.countB >= k.countA ? '+' : ''}${num(k.countB - k.countA)})`,
      );
  }
  console.log(differing === 0 ? `${a} and ${b} agree on every window compared` : `${differing} metric view(s) differ`);
}

export function registerVersionCommands(program: Command): void {
  const common = (cmd: Command) => addCommonOptions(addOptions(cmd, [DEFAULT_VERSION_OPTION, ...PROMOTION_OPTIONS]));
  const versions = common(
    addOptions(
      program.command('versions').description('list job versions: state, lag and watermark per partition, replay progress, last batch run'),
      [JSON_OPTION],
    ),
  ).action((opts: VersionsOptions) => printVersions(opts));

  common(
    addOptions(versions.command('diff <a> <b>').description('compare two versions window by window (merged views, as serving answers)'), [
      { flags: '--metric <name>', description: 'only this metric (default: every metric)' },
      {
        flags: '--granularity <g>',
        description: 'only this granularity: minute, hour, day or a duration such as 5m (default: every one both versions have)',
      },
      { flags: '--from <time>', description: 'first window start (ISO-8601 or epoch ms; default: all)', parse: timestamp },
      { flags: '--to <time>', description: 'end of the range, exclusive (default: all)', parse: timestamp },
      { flags: '--limit <n>', description: 'keys listed per metric (those that differ most)', default: 10, parse: positiveInt },
      JSON_OPTION,
    ]),
  ).action((a: string, b: string, _opts: unknown, cmd: Command) =>
    diff(versionName(a), versionName(b), cmd.optsWithGlobals<DiffOptions>()),
  );

  common(
    addOptions(
      versions.command('retire <version>').description('delete a version: its view topic, checkpoints, consumer group and batch views'),
      [{ flags: '--group <id>', description: "the version's speed consumer group (default lk-speed-<version>)" }],
    ),
  ).action((version: string, _opts: unknown, cmd: Command) => retire(versionName(version), cmd.optsWithGlobals()));

  common(
    addOptions(
      program
        .command('promote <version>')
        .description(
          'make a version the default, atomically (refused unless it is caught up and has a batch view of its metric file); promoting the previous version back is the rollback',
        ),
      [{ flags: '--force', description: 'promote even if the checks fail (the skipped checks are recorded)' }],
    ),
  ).action((version: string, opts: VersionsOptions & { force?: boolean }) => promote(versionName(version), opts));
}
