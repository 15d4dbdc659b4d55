/**
 * `lk replay --version v2 [--metrics FILE] --from earliest|<time>|<duration ago>|<p:o,...>|lake`
 *
 * Reprocessing (Kappa): the speed layer's own job (streaming/job/speedJob.ts: the same windows,
 * dedup, watermarks and lateness) runs as a new job version with its own consumer group
 * `lk-speed-<version>`, checkpoints, transactional ids and view topic `views.speed.<version>`,
 * starting from the resolved start (replayStart.ts) instead of the group's position. It shows
 * its progress, says when it has caught up with the log, and keeps running as the version's
 * live job until stopped. Started again (after SIGTERM or SIGKILL, by `lk replay` or
 * `lk speed --version v2`), it resumes from the version's checkpoints.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../services/errors.ts';
import { addCommonOptions, addOptions, context, positiveInt, type OptionSpec } from '../../services/config/cliOptions.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { resolveLake } from '../../services/lake/lakeLocation.ts';
import { logger } from '../../services/observability/logger.ts';
import { readVersionRecord, type VersionOrigin, type VersionRecord } from '../../services/versions/versionRecord.ts';
import { JOB_OPTIONS, RUN_OPTIONS, speedJobConfig, type RunOptions } from '../cli.ts';
import type { SpeedJobConfig } from '../job/speedJob.ts';
import { runUntilSignal } from '../job/runUntilSignal.ts';
import { ReplayProgress, describe } from './replayProgress.ts';
import {
  REPLAY_FROM_FORMS,
  describeStart,
  parseReplayFrom,
  resolveReplayStart,
  type ReplayFrom,
  type ResolvedStart,
} from './replayStart.ts';
import { planWarmUp, type WarmUpPart } from './warmUpSource.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';

interface ReplayOptions extends RunOptions {
  from?: string;
  fromTime?: string;
  maxRate?: number;
  lakeChunk: number;
  dryRun?: boolean;
}

const REPLAY_OPTIONS: OptionSpec[] = [
  { flags: '--from <start>', description: `where the new version starts reading: ${REPLAY_FROM_FORMS}`, env: 'LK_REPLAY_FROM' },
  {
    flags: '--from-time <time>',
    description: 'with --from lake: start at the first lake record at or after this time (ISO-8601 or a duration ago)',
    env: 'LK_REPLAY_FROM_TIME',
  },
  {
    flags: '--max-rate <events/s>',
    description: 'process at most this many events per second, so that the replay does not starve the live version',
    env: 'LK_REPLAY_MAX_RATE',
    parse: positiveInt,
  },
  {
    flags: '--lake-chunk <offsets>',
    description: 'with --from lake: offsets of one partition read per lake query (their records are in memory at once)',
    env: 'LK_REPLAY_LAKE_CHUNK',
    default: 50_000,
    parse: positiveInt,
  },
  { flags: '--dry-run', description: 'print the resolved start offset of every partition and exit' },
];

/** The speed job's options, but the version has no default (a replay names its new version) and no savepoint. */
const JOB_OPTIONS_FOR_REPLAY: OptionSpec[] = JOB_OPTIONS.map((o) =>
  o.flags.startsWith('--version')
    ? { ...o, default: undefined, mandatory: true, description: 'the new job version to replay into (e.g. v2)' }
    : o,
);
const RUN_OPTIONS_FOR_REPLAY = RUN_OPTIONS.filter((o) => !o.flags.startsWith('--from-savepoint'));

function describeOrigin(origin: VersionOrigin): string {
  const time = origin.fromTime === null ? '' : ` ${new Date(origin.fromTime).toISOString()}`;
  return `${origin.from}${time}`;
}

/** Whether a requested start is the one the existing version was created with. */
function sameStart(origin: VersionOrigin, from: ReplayFrom): boolean {
  switch (from.kind) {
    case 'earliest':
      return origin.from === 'earliest';
    case 'lake':
      return origin.from === 'lake' && origin.fromTime === from.fromTime;
    case 'time':
      return origin.from === 'time' && origin.fromTime === from.at;
    case 'offsets':
      return origin.from === 'offsets' && (origin.startOffsets ?? []).every((o, p) => from.offsets.get(p) === o);
  }
}

/**
 * An existing version resumes from its checkpoints; its start was fixed when it was created
 * (its state builds on it). A different --from is refused rather than ignored.
 */
function checkResume(record: VersionRecord, opts: ReplayOptions): void {
  if (opts.from === undefined) return;
  const from = parseReplayFrom(opts.from, opts.fromTime, Date.now());
  if (sameStart(record.origin, from)) return;
  throw new ConfigError(
    `version "${record.version}" already exists (created ${record.createdAt}, from ${describeOrigin(record.origin)}): ` +
      `a version's start is fixed when it is created. Leave out --from to resume it where it stands, or replay into a new version`,
  );
}

async function printExisting(log: EventLog, record: VersionRecord, groupId: string): Promise<void> {
  const [committed, ends] = await Promise.all([log.committedOffsets(groupId, record.topic), log.endOffsets(record.topic)]);
  console.log(
    `version "${record.version}" exists (created ${record.createdAt}, from ${describeOrigin(record.origin)}); it resumes where it stands:`,
  );
  ends.forEach((end, p) => {
    const at = committed[p] ?? record.origin.startOffsets?.[p] ?? null;
    const handOver = record.origin.lakeEnds?.[p];
    const source = handOver !== undefined && (at ?? 0) < handOver ? `lake up to ${handOver}, then log` : 'log';
    console.log(`  partition ${p}: offset ${at ?? '(the log start)'} (${source}; log end ${end})`);
  });
}

async function replay(opts: ReplayOptions): Promise<void> {
  const ctx = context(opts);
  const log = ctx.openLog(`lk-replay-${opts.instanceId}`);
  try {
    // The metric file first: a bad one is refused before anything is resolved or created.
    const config = await speedJobConfig({ ...opts, fromSavepoint: undefined }, ctx);
    const record = await readVersionRecord(config.state, opts.version);
    let origin: VersionOrigin | undefined;
    if (record) {
      checkResume(record, opts);
      if (opts.dryRun) return await printExisting(log, record, config.groupId);
      origin = record.origin;
    } else {
      if (opts.from === undefined)
        throw new ConfigError(
          `version "${opts.version}" does not exist yet: say where its replay starts with --from (${REPLAY_FROM_FORMS})`,
        );
      const from = parseReplayFrom(opts.from, opts.fromTime, Date.now());
      const start = await resolveReplayStart(log, opts.topic, from, async () => {
        const { LakeSource } = await import('./lakeSource.ts');
        return LakeSource.open(await resolveLake(opts.lakeUri, ctx.layout, opts.topic));
      });
      // A start mid-log is warmed up from the history before it: refused now when that is gone.
      refuseMidLogSessions(config.definitions.metrics, start);
      const warmUp = await planReplayWarmUp(await resolveLake(opts.lakeUri, ctx.layout, opts.topic), opts.topic, start);
      if (opts.dryRun) {
        for (const line of describeStart(opts.topic, start, warmUp)) console.log(line);
        return;
      }
      origin = start.origin;
    }
    await runReplay(log, opts.stopTimeout, {
      ...config,
      origin,
      lakeChunkOffsets: opts.lakeChunk,
      ...(opts.maxRate !== undefined ? { maxRate: opts.maxRate } : {}),
    });
  } finally {
    await log.close();
  }
}

/**
 * Session metrics are replayed from the beginning only: a session open at the start may reach
 * back further than the warm-up's horizon (its length has no bound), and the sessions the warm-up
 * closes would decide which later events are late without a row in the view to say so
 * (docs/metrics.md, "Sessions").
 */
export function refuseMidLogSessions(metrics: readonly MetricDefinition[], start: ResolvedStart): void {
  const { origin } = start;
  if (origin.startOffsets === null || origin.from === 'earliest' || origin.startOffsets.every((s) => s === 0)) return;
  const session = metrics.find((m) => m.session !== undefined);
  if (session)
    throw new ConfigError(
      `metric "${session.name}" has session windows, which a version starting mid-log cannot warm up yet; replay it with --from earliest`,
    );
}

/** The warm-up of each partition of a new version (warmUpSource.ts); throws ConfigError when history before the start is gone. */
async function planReplayWarmUp(handle: LakeHandle, topic: string, start: ResolvedStart): Promise<(WarmUpPart | null)[]> {
  const { origin, beginnings } = start;
  if (origin.startOffsets === null || origin.from === 'earliest' || origin.startOffsets.every((s) => s === 0)) return [];
  const lake = await (await import('./lakeSource.ts')).lakeHoldings(handle);
  return planWarmUp(topic, origin.startOffsets, { beginnings, lake });
}

async function runReplay(log: EventLog, stopTimeoutMs: number, config: SpeedJobConfig & { origin: VersionOrigin }): Promise<void> {
  const { SpeedJob } = await import('../job/speedJob.ts');
  const job = new SpeedJob(log, config);
  const [committed, ends] = await Promise.all([log.committedOffsets(config.groupId, config.topic), log.endOffsets(config.topic)]);
  const initial = ends.map((end, p) => {
    const start = config.origin.startOffsets?.[p] ?? 0;
    return { start, position: Math.max(start, committed[p] ?? start), end };
  });
  const shown = new ReplayProgress(`replay ${config.version}`, initial, (f) => {
    logger.info({ version: config.version, events: f.done }, 'caught up with the log');
    process.stdout.write(
      `\nversion ${config.version} has caught up with the log (${f.done.toLocaleString('en-US')} events replayed); it keeps running as ${config.version}'s live job.\n` +
        `Compare it: lk versions diff <live> ${config.version} --metric <name>; make it the default: lk promote ${config.version}\n`,
    );
  });
  const timer = setInterval(() => shown.update(job.snapshotStatus()), 1000);
  try {
    await runUntilSignal(job, stopTimeoutMs);
  } finally {
    clearInterval(timer);
    shown.finish();
  }
  const last = shown.update(job.snapshotStatus());
  logger.info({ version: config.version, progress: describe(last) }, 'replay stopped; run it again to resume');
}

export function registerReplayCommand(program: Command): void {
  const cmd = program
    .command('replay')
    .description(
      'replay history into a new job version (the speed layer with a changed metric file, from the log or the Parquet lake); it keeps running once caught up',
    );
  addCommonOptions(addOptions(addOptions(addOptions(cmd, REPLAY_OPTIONS), RUN_OPTIONS_FOR_REPLAY), JOB_OPTIONS_FOR_REPLAY)).action(replay);
  cmd.addHelpText(
    'after',
    `
Examples:
  lk replay --version v2 --metrics metrics-v2.yaml --from earliest --max-rate 20000
  lk replay --version v2 --from lake --from-time 2026-11-01T00:00:00Z
  lk replay --version v2 --from 6h --dry-run
Then: lk versions, lk versions diff v1 v2 --metric <name>, lk promote v2 (lk promote v1 rolls back).`,
  );
}
