/**
 * `lk serve`: the GraphQL serving layer over the merged batch and speed views.
 * Every flag has an environment variable; SIGTERM/SIGINT shut down gracefully (requests in
 * flight finish, subscriptions are closed, consumers leave their groups).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { ConfigError } from '../services/errors.ts';
import { logger } from '../services/observability/logger.ts';
import {
  aborted,
  addCommonOptions,
  addOptions,
  context,
  duration,
  onShutdownSignal,
  port,
  positiveInt,
  versionName,
  topicName,
  PROMOTION_OPTIONS,
  type PromotionOptions,
  type CommonOptions,
  type Context,
  type OptionSpec,
} from '../services/config/cliOptions.ts';
import { DEFAULT_EVENTS_TOPIC } from '../services/log/topics.ts';
import { readVersionRecord } from '../services/versions/versionRecord.ts';
import { parseServeConfig, type ServeConfig } from './config.ts';

interface ServeOptions extends CommonOptions, PromotionOptions {
  port: number;
  host: string;
  version: string;
  topic?: string;
  authToken?: string;
  introspection: boolean;
  maxRangeMinute: number;
  maxRangeHour: number;
  maxRangeDay: number;
  maxTopKeys: number;
  requestTimeout: number;
  maxDepth: number;
  maxCost: number;
  batchPoll: number;
  maxVersions: number;
}

function boolEnv(value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new InvalidArgumentError('must be true or false.');
}

const DAY = 86_400_000;

const SERVE_OPTIONS: OptionSpec[] = [
  { flags: '--port <n>', description: 'HTTP port (0 = any free port)', env: 'LK_SERVE_PORT', default: 4000, parse: port },
  { flags: '--host <addr>', description: 'address to listen on', env: 'LK_SERVE_HOST', default: '127.0.0.1' },
  {
    flags: '--version <name>',
    description:
      'job version served by default until one is promoted (lk promote; then <data-dir>/versions/DEFAULT decides); names views.speed.<version> and <data-dir>/views/<version>',
    env: 'LK_SERVE_VERSION',
    default: 'v1',
    parse: versionName,
  },
  {
    flags: '--topic <name>',
    description: `events topic whose dead letters (<topic>.dlq) the pipeline reports (default: the version's topic, else ${DEFAULT_EVENTS_TOPIC})`,
    env: 'LK_SERVE_TOPIC',
    parse: topicName,
  },
  {
    flags: '--auth-token <token>',
    description: 'require Authorization: Bearer <token> on everything but /healthz and /readyz (at least 16 characters)',
    env: 'LK_SERVE_AUTH_TOKEN',
  },
  // Commander hands boolean flags no value from the environment: LK_SERVE_INTROSPECTION is read in the action.
  { flags: '--introspection', description: 'allow schema introspection (default; env LK_SERVE_INTROSPECTION=true|false)' },
  { flags: '--no-introspection', description: 'refuse schema introspection (production)' },
  {
    flags: '--max-range-minute <duration>',
    description: 'largest from..to span for MINUTE windows',
    env: 'LK_SERVE_MAX_RANGE_MINUTE',
    default: 7 * DAY,
    defaultText: '7d',
    parse: duration,
  },
  {
    flags: '--max-range-hour <duration>',
    description: 'largest from..to span for HOUR windows',
    env: 'LK_SERVE_MAX_RANGE_HOUR',
    default: 92 * DAY,
    defaultText: '92d',
    parse: duration,
  },
  {
    flags: '--max-range-day <duration>',
    description: 'largest from..to span for DAY windows',
    env: 'LK_SERVE_MAX_RANGE_DAY',
    default: 3660 * DAY,
    defaultText: '3660d',
    parse: duration,
  },
  { flags: '--max-top-keys <n>', description: 'largest topKeys limit', env: 'LK_SERVE_MAX_TOP_KEYS', default: 1000, parse: positiveInt },
  {
    flags: '--request-timeout <duration>',
    description: 'time budget of one request',
    env: 'LK_SERVE_REQUEST_TIMEOUT',
    default: 10_000,
    defaultText: '10s',
    parse: duration,
  },
  { flags: '--max-depth <n>', description: 'deepest query accepted', env: 'LK_SERVE_MAX_DEPTH', default: 8, parse: positiveInt },
  {
    flags: '--max-cost <n>',
    description: 'costliest query accepted (fields x list lengths, see docs/serving-layer.md)',
    env: 'LK_SERVE_MAX_COST',
    default: 250_000,
    parse: positiveInt,
  },
  {
    flags: '--batch-poll <duration>',
    description: 'how often to look for a newer batch run',
    env: 'LK_SERVE_BATCH_POLL',
    default: 1000,
    defaultText: '1s',
    parse: duration,
  },
  {
    flags: '--max-versions <n>',
    description: 'job versions held in memory at once',
    env: 'LK_SERVE_MAX_VERSIONS',
    default: 4,
    parse: positiveInt,
  },
];

/** --introspection unless given: LK_SERVE_INTROSPECTION, else on. */
function introspectionOf(opts: ServeOptions, cmd: Command): boolean {
  if (cmd.getOptionValueSource('introspection') === 'cli') return opts.introspection;
  const env = process.env.LK_SERVE_INTROSPECTION;
  if (env === undefined) return true;
  try {
    return boolEnv(env);
  } catch {
    throw new ConfigError(`LK_SERVE_INTROSPECTION must be true or false, got ${JSON.stringify(env)}`);
  }
}

/** --topic, else the topic the default version was created for (its version record), else `events`. */
function eventsTopicOf(opts: ServeOptions, ctx: Context): string {
  if (opts.topic !== undefined) return opts.topic;
  try {
    return readVersionRecord(ctx.layout.root, opts.version)?.topic ?? DEFAULT_EVENTS_TOPIC;
  } catch {
    // An unreadable version record is reported where versions are listed; the default topic will do here.
    return DEFAULT_EVENTS_TOPIC;
  }
}

function serveConfigOf(opts: ServeOptions, cmd: Command, ctx: Context): ServeConfig {
  return parseServeConfig(
    {
      host: opts.host,
      port: opts.port,
      defaultVersion: opts.version,
      eventsTopic: eventsTopicOf(opts, ctx),
      authToken: opts.authToken ?? null,
      introspection: introspectionOf(opts, cmd),
      maxRangeMs: { minute: opts.maxRangeMinute, hour: opts.maxRangeHour, day: opts.maxRangeDay },
      maxTopKeys: opts.maxTopKeys,
      requestTimeoutMs: opts.requestTimeout,
      maxDepth: opts.maxDepth,
      maxCost: opts.maxCost,
      batchPollMs: opts.batchPoll,
      maxVersions: opts.maxVersions,
      promoteMaxLag: opts.promoteMaxLag,
      promoteMaxWatermarkLagMs: opts.promoteMaxWatermarkLag,
      dataDir: ctx.layout.root,
      viewsRoot: ctx.layout.views,
    },
    ctx.loadMetrics(opts.version),
  );
}

async function serve(opts: ServeOptions, cmd: Command): Promise<void> {
  const ctx = context(opts);
  const config = serveConfigOf(opts, cmd, ctx);
  // graphql-js checks every `instanceof` the slow way unless NODE_ENV is production (about a
  // tenth of a large answer's execution time); it reads NODE_ENV once, when first loaded, so
  // the server code is loaded only now.
  process.env.NODE_ENV ??= 'production';
  const { startServe } = await import('./http/server.ts');
  const log = ctx.openLog(`lk-serve-${config.defaultVersion}`);
  let handle: Awaited<ReturnType<typeof startServe>>;
  try {
    handle = await startServe({ config, log, logger });
  } catch (err) {
    await log.close();
    throw err;
  }
  console.log(`serving ${handle.url}/graphql (version ${handle.defaults.current.version}; /healthz /readyz /metrics)`);
  const stop = onShutdownSignal((signal) => logger.info({ signal }, 'shutting down'));
  await aborted(stop);
  await handle.close();
  await log.close();
}

export function registerServeCommands(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve GraphQL over the merged batch and speed views (/graphql, /healthz, /readyz, /metrics)');
  addCommonOptions(addOptions(addOptions(cmd, SERVE_OPTIONS), PROMOTION_OPTIONS)).action(serve);
}
