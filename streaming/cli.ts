/**
 * `lk speed` and its subcommands. Every flag has an environment variable (LK_SPEED_...).
 *
 *   lk speed                      run a speed instance (SIGTERM/SIGINT: final checkpoint, exit 0;
 *                                 bounded by --stop-timeout, streaming/job/runUntilSignal.ts)
 *   lk speed savepoint --name N   materialise the committed state of every partition as savepoint N
 *   lk speed savepoints list      list savepoints
 *   lk speed savepoints delete N  delete savepoint N
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { ConfigError } from '../services/errors.ts';
import {
  addCommonOptions,
  addOptions,
  context,
  duration,
  port,
  positiveDuration,
  topicName,
  versionName,
  type CommonOptions,
  type Context,
  type OptionSpec,
} from '../services/config/cliOptions.ts';
import { DEFAULT_EVENTS_TOPIC } from '../services/log/topics.ts';
import { LAKE_URI_OPTION } from '../services/lake/lakeLocation.ts';
import { checkpointsPrefix, dataDirLayout } from '../services/config/dataDir.ts';
import { LocalObjectStore } from '../services/storage/localObjectStore.ts';
import { CheckpointStore } from './checkpoints/checkpointStore.ts';
import { SAVEPOINT_NAME, deleteSavepoint, listSavepoints, savepointLocation, takeSavepoint } from './checkpoints/savepoints.ts';
import type { SpeedJobConfig } from './job/speedJob.ts';
import { DEFAULT_STOP_TIMEOUT_MS, runUntilSignal } from './job/runUntilSignal.ts';

export interface JobOptions extends CommonOptions {
  topic: string;
  version: string;
  group?: string;
}

export interface RunOptions extends JobOptions {
  checkpointInterval: number;
  stopTimeout: number;
  outOfOrderness: number;
  idleTimeout: number;
  dedupHorizon?: number;
  statusPort: number;
  statusHost?: string;
  instanceId: string;
  fromSavepoint?: string;
  threads?: number;
  /** The lake a version replayed --from lake reads (default <data-dir>/lake). */
  lakeUri?: string;
}

function threadCount(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 64) throw new InvalidArgumentError('must be a whole number from 0 to 64.');
  return Number(value);
}

function savepointName(value: string): string {
  if (!SAVEPOINT_NAME.test(value)) throw new InvalidArgumentError(`must match ${SAVEPOINT_NAME.source}.`);
  return value;
}

const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
const DEFAULT_OUT_OF_ORDERNESS_MS = 5000;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

/** What names a job version: its topic, version and group (every `lk speed` command takes them). */
export const JOB_OPTIONS: OptionSpec[] = [
  { flags: '--topic <name>', description: 'events topic', env: 'LK_SPEED_TOPIC', default: DEFAULT_EVENTS_TOPIC, parse: topicName },
  {
    flags: '--version <name>',
    description: 'job version: names the view topic views.speed.<version> and its checkpoints in the shared state',
    env: 'LK_SPEED_VERSION',
    default: 'v1',
    parse: versionName,
  },
  { flags: '--group <id>', description: 'consumer group (default lk-speed-<version>)', env: 'LK_SPEED_GROUP' },
];

/** How the job runs. */
export const RUN_OPTIONS: OptionSpec[] = [
  {
    flags: '--checkpoint-interval <duration>',
    description: 'how often state is checkpointed and rows published',
    env: 'LK_SPEED_CHECKPOINT_INTERVAL',
    default: DEFAULT_CHECKPOINT_INTERVAL_MS,
    defaultText: '1s',
    parse: positiveDuration,
  },
  {
    flags: '--stop-timeout <duration>',
    description:
      'on SIGTERM/SIGINT, how long the final checkpoint may take; past it the process exits without it (exit code 1) and each partition resumes from its last committed checkpoint',
    env: 'LK_SPEED_STOP_TIMEOUT',
    default: DEFAULT_STOP_TIMEOUT_MS,
    defaultText: '1m',
    parse: positiveDuration,
  },
  {
    flags: '--out-of-orderness <duration>',
    description: 'watermark = largest event time seen minus this',
    env: 'LK_SPEED_OUT_OF_ORDERNESS',
    default: DEFAULT_OUT_OF_ORDERNESS_MS,
    defaultText: '5s',
    parse: duration,
  },
  {
    flags: '--idle-timeout <duration>',
    description: 'a caught-up partition without records for this long is idle: excluded from the instance watermark',
    env: 'LK_SPEED_IDLE_TIMEOUT',
    default: DEFAULT_IDLE_TIMEOUT_MS,
    defaultText: '30s',
    parse: positiveDuration,
  },
  {
    flags: '--dedup-horizon <duration>',
    description: 'how long (event time) an id is remembered; at least the largest window plus allowed lateness (the default)',
    env: 'LK_SPEED_DEDUP_HORIZON',
    parse: positiveDuration,
  },
  {
    flags: '--status-port <port>',
    description: 'HTTP port for /healthz /readyz /metrics /status (0 = off)',
    env: 'LK_SPEED_STATUS_PORT',
    default: 0,
    parse: port,
  },
  {
    flags: '--status-host <address>',
    description: 'the address the status port listens on (default: every address)',
    env: 'LK_SPEED_STATUS_HOST',
  },
  {
    flags: '--instance-id <id>',
    description: 'names this instance in status files',
    env: 'LK_SPEED_INSTANCE_ID',
    default: `${hostname()}-${process.pid}`,
  },
  {
    flags: '--threads <n>',
    description:
      'state threads that parse, dedup and aggregate while the main thread consumes (0 = all in the main thread; default: one per spare core, at most one per partition)',
    env: 'LK_SPEED_THREADS',
    parse: threadCount,
  },
  {
    flags: '--from-savepoint <name>',
    description: 'start from a savepoint (stop all instances first); applied once per job version',
    env: 'LK_SPEED_FROM_SAVEPOINT',
    parse: savepointName,
  },
  LAKE_URI_OPTION,
];

export const groupOf = (o: JobOptions): string => o.group ?? `lk-speed-${o.version}`;

/** The job's configuration from the command's options. */
export async function speedJobConfig(opts: RunOptions, ctx: Context): Promise<SpeedJobConfig> {
  return {
    topic: opts.topic,
    version: opts.version,
    groupId: groupOf(opts),
    checkpointIntervalMs: opts.checkpointInterval,
    outOfOrdernessMs: opts.outOfOrderness,
    idleTimeoutMs: opts.idleTimeout,
    ...(opts.dedupHorizon !== undefined ? { dedupHorizonMs: opts.dedupHorizon } : {}),
    statusPort: opts.statusPort,
    ...(opts.statusHost !== undefined ? { statusHost: opts.statusHost } : {}),
    instanceId: opts.instanceId,
    ...(opts.fromSavepoint !== undefined ? { fromSavepoint: opts.fromSavepoint } : {}),
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    dataDir: ctx.layout.root,
    state: await ctx.state(),
    definitions: await ctx.loadMetrics(opts.version),
    // A version replayed --from lake reads it until it has handed over to the log, also when
    // restarted by lk speed.
    ...(opts.lakeUri !== undefined ? { lakeUri: opts.lakeUri } : {}),
  };
}

/**
 * A job as `lk speed` runs it with its defaults, for the code that runs jobs in its own process
 * (the demo, its tour, the benchmarks): one place for the defaults and the data dir's layout
 * (the shared state is the data dir unless `state` says otherwise).
 */
export function defaultSpeedJobConfig(
  o: Pick<SpeedJobConfig, 'topic' | 'version' | 'instanceId' | 'definitions' | 'dataDir'> & Partial<SpeedJobConfig>,
): SpeedJobConfig {
  const layout = dataDirLayout(o.dataDir);
  return {
    groupId: `lk-speed-${o.version}`,
    checkpointIntervalMs: DEFAULT_CHECKPOINT_INTERVAL_MS,
    outOfOrdernessMs: DEFAULT_OUT_OF_ORDERNESS_MS,
    idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
    statusPort: 0,
    state: new LocalObjectStore(layout.root),
    ...o,
    dataDir: layout.root,
  };
}

/** Runs a speed job until SIGTERM/SIGINT (then a final checkpoint, within --stop-timeout) or until it fails. */
async function runSpeed(opts: RunOptions): Promise<void> {
  const ctx = context(opts);
  const config = await speedJobConfig(opts, ctx);
  const log = ctx.openLog(`lk-speed-${opts.instanceId}`);
  // Imported when the job runs: `lk --help` and the other commands start without it.
  const { SpeedJob } = await import('./job/speedJob.ts');
  const job = new SpeedJob(log, config);
  try {
    await runUntilSignal(job, opts.stopTimeout);
  } finally {
    await log.close();
  }
}

async function takeSavepointCommand(opts: { name: string }, cmd: Command): Promise<void> {
  const o = cmd.optsWithGlobals<JobOptions & { name: string }>();
  const ctx = context(o);
  const log = ctx.openLog('lk-speed-savepoint');
  try {
    const state = await ctx.state();
    const manifest = await takeSavepoint({
      log,
      name: opts.name,
      version: o.version,
      topic: o.topic,
      groupId: groupOf(o),
      state,
      checkpoints: new CheckpointStore(state.child(checkpointsPrefix(o.version))),
    });
    console.log(`savepoint ${manifest.name} of version ${manifest.version}: ${savepointLocation(state, manifest.name)}`);
    for (const p of manifest.partitions)
      console.log(`  partition ${p.partition}: offset ${p.offset ?? '(none: starts from the beginning)'} ${p.bytes} bytes`);
  } finally {
    await log.close();
  }
}

async function listSavepointsCommand(_opts: unknown, cmd: Command): Promise<void> {
  const ctx = context(cmd.optsWithGlobals<JobOptions>());
  const list = await listSavepoints(await ctx.state());
  if (list.length === 0) console.log(`no savepoints in ${ctx.stateLocation}`);
  for (const s of list) {
    const offsets = s.partitions.map((p) => p.offset ?? '-').join(',');
    console.log(`${s.name}\tversion=${s.version}\ttopic=${s.topic}\tcreated=${s.createdAt}\toffsets=${offsets}`);
  }
}

async function deleteSavepointCommand(name: string, _opts: unknown, cmd: Command): Promise<void> {
  const ctx = context(cmd.optsWithGlobals<JobOptions>());
  if (!SAVEPOINT_NAME.test(name)) throw new ConfigError(`savepoint name "${name}" must match ${SAVEPOINT_NAME.source}`);
  await deleteSavepoint(await ctx.state(), name);
  console.log(`deleted savepoint ${name}`);
}

export function registerSpeedCommands(program: Command): void {
  const speed = program
    .command('speed')
    .description('run the speed layer: event-time windows with dedup, checkpoints and exactly-once view output');
  addCommonOptions(addOptions(addOptions(speed, RUN_OPTIONS), JOB_OPTIONS)).action(runSpeed);
  addOptions(
    speed.command('savepoint').description('take a named savepoint of the committed state of every partition (works while the job runs)'),
    [{ flags: '--name <name>', description: 'savepoint name', env: 'LK_SPEED_SAVEPOINT_NAME', mandatory: true, parse: savepointName }],
  ).action(takeSavepointCommand);
  const savepoints = speed.command('savepoints').description('manage savepoints');
  savepoints.command('list').description('list savepoints').action(listSavepointsCommand);
  savepoints.command('delete <name>').description('delete a savepoint').action(deleteSavepointCommand);
}
