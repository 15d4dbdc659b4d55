/**
 * `lk serve`: the GraphQL serving layer over the merged batch and speed views.
 * Every flag has an environment variable; SIGTERM/SIGINT shut down gracefully (requests in
 * flight finish, subscriptions are closed, consumers leave their groups).
 */
import { availableParallelism } from 'node:os';
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
  nonNegativeInt,
  positiveDuration,
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
import { parseServeConfig, type ServeConfig, type ServeConfigInput } from './config.ts';

interface ServeOptions extends CommonOptions, PromotionOptions {
  workers: number;
  port: number;
  host: string;
  version: string;
  topic?: string;
  authToken?: string;
  tokensFile?: string;
  jwksFile?: string;
  jwksUrl?: string;
  jwtAudience?: string;
  jwtIssuer?: string;
  jwtRoleClaim: string;
  jwtNameClaim: string;
  reloadPoll: number;
  tlsCert?: string;
  tlsKey?: string;
  introspection: boolean;
  maxRangeMinute: number;
  maxRangeHour: number;
  maxRangeDay: number;
  maxTopKeys: number;
  requestTimeout: number;
  maxDepth: number;
  maxCost: number;
  maxAliases: number;
  maxRootFields: number;
  resolverCost: number;
  executionBudget: number;
  executionSlice: number;
  rateLimit: number;
  rateBurst: number;
  maxSubscriptions: number;
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
  {
    flags: '--workers <n>',
    description: 'processes serving on the port, each holding its own copy of the views (1 = this process alone)',
    env: 'LK_SERVE_WORKERS',
    default: availableParallelism(),
    defaultText: 'the available parallelism (os.availableParallelism())',
    parse: positiveInt,
  },
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
    description:
      'one shared bearer token with the admin role (name "auth-token"), at least 16 characters; any token source makes every request but /healthz, /readyz and the pages need a token',
    env: 'LK_SERVE_AUTH_TOKEN',
  },
  {
    flags: '--tokens-file <file>',
    description: 'bearer tokens stored hashed (sha256: or scrypt:), each with a role (reader, admin) and a name; reloaded on change',
    env: 'LK_SERVE_TOKENS_FILE',
  },
  {
    flags: '--jwks-file <file>',
    description: 'accept JWT bearer tokens (RS256, ES256) signed by the keys of this JWKS file (reloaded on change)',
    env: 'LK_SERVE_JWKS_FILE',
    conflicts: 'jwksUrl',
  },
  {
    flags: '--jwks-url <url>',
    description: "accept JWT bearer tokens (RS256, ES256) signed by the keys at this URL (the identity provider's JWKS, cached)",
    env: 'LK_SERVE_JWKS_URL',
    parse: httpUrl,
  },
  {
    flags: '--jwt-audience <aud>',
    description: 'the aud a JWT must carry (required with --jwks-file/--jwks-url)',
    env: 'LK_SERVE_JWT_AUDIENCE',
  },
  { flags: '--jwt-issuer <iss>', description: 'the iss a JWT must carry (not checked when absent)', env: 'LK_SERVE_JWT_ISSUER' },
  {
    flags: '--jwt-role-claim <path>',
    description: 'JWT claim (dotted path) holding the role: admin or reader, a string or an array',
    env: 'LK_SERVE_JWT_ROLE_CLAIM',
    default: 'role',
  },
  {
    flags: '--jwt-name-claim <path>',
    description: 'JWT claim naming the caller (audit lines, rate limits)',
    env: 'LK_SERVE_JWT_NAME_CLAIM',
    default: 'sub',
  },
  {
    flags: '--reload-poll <duration>',
    description: 'how often the tokens file, the JWKS file and the TLS files are checked for changes (besides file-system events)',
    env: 'LK_SERVE_RELOAD_POLL',
    default: 2000,
    defaultText: '2s',
    parse: positiveDuration,
  },
  {
    flags: '--tls-cert <file>',
    description: 'PEM certificate (chain): serve HTTPS and WSS only (with --tls-key)',
    env: 'LK_SERVE_TLS_CERT',
  },
  { flags: '--tls-key <file>', description: 'PEM private key of --tls-cert', env: 'LK_SERVE_TLS_KEY' },
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
    flags: '--max-aliases <n>',
    description: 'aliased fields a query may have (checked before validation)',
    env: 'LK_SERVE_MAX_ALIASES',
    default: 50,
    parse: nonNegativeInt,
  },
  {
    flags: '--max-root-fields <n>',
    description: 'root fields an operation may have (fragments expanded)',
    env: 'LK_SERVE_MAX_ROOT_FIELDS',
    default: 25,
    parse: positiveInt,
  },
  {
    flags: '--resolver-cost <n>',
    description: "cost of each call of one of serving's resolvers (root fields, WindowValue.partitions, mutations, subscriptions)",
    env: 'LK_SERVE_RESOLVER_COST',
    default: 100,
    parse: positiveInt,
  },
  {
    flags: '--execution-budget <duration>',
    description: 'event-loop time one request (or subscription event) may use before it is cut off',
    env: 'LK_SERVE_EXECUTION_BUDGET',
    default: 1000,
    defaultText: '1s',
    parse: positiveDuration,
  },
  {
    flags: '--execution-slice <duration>',
    description: 'event-loop time a request runs before it lets other requests run',
    env: 'LK_SERVE_EXECUTION_SLICE',
    default: 5,
    defaultText: '5ms',
    parse: positiveDuration,
  },
  {
    flags: '--rate-limit <cost>',
    description: 'cost units per second each client (token, else address) may spend; 0 = no rate limit',
    env: 'LK_SERVE_RATE_LIMIT',
    default: 1_000_000,
    parse: nonNegativeInt,
  },
  {
    flags: '--rate-burst <cost>',
    description: 'cost units a client may spend at once (the size of its bucket)',
    env: 'LK_SERVE_RATE_BURST',
    default: 2_000_000,
    parse: positiveInt,
  },
  {
    flags: '--max-subscriptions <n>',
    description: 'subscriptions one client may have open',
    env: 'LK_SERVE_MAX_SUBSCRIPTIONS',
    default: 32,
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
async function eventsTopicOf(opts: ServeOptions, ctx: Context): Promise<string> {
  if (opts.topic !== undefined) return opts.topic;
  try {
    return (await readVersionRecord(await ctx.state(), opts.version))?.topic ?? DEFAULT_EVENTS_TOPIC;
  } catch {
    // An unreadable version record is reported where versions are listed; the default topic will do here.
    return DEFAULT_EVENTS_TOPIC;
  }
}

/** The JWT settings: none without a JWKS; the audience is then required (a token for another service must not pass). */
function jwtConfigOf(opts: ServeOptions): ServeConfigInput['jwt'] {
  if (opts.jwksFile === undefined && opts.jwksUrl === undefined) {
    if (opts.jwtAudience !== undefined || opts.jwtIssuer !== undefined)
      throw new ConfigError('--jwt-audience and --jwt-issuer need --jwks-file or --jwks-url');
    return null;
  }
  if (opts.jwtAudience === undefined)
    throw new ConfigError('--jwks-file/--jwks-url need --jwt-audience (the aud your identity provider puts in tokens for lk serve)');
  return {
    jwksFile: opts.jwksFile ?? null,
    jwksUrl: opts.jwksUrl ?? null,
    audience: opts.jwtAudience,
    issuer: opts.jwtIssuer ?? null,
    roleClaim: opts.jwtRoleClaim,
    nameClaim: opts.jwtNameClaim,
  };
}

function httpUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('must be an http(s) URL.');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new InvalidArgumentError('must be an http(s) URL.');
  return value;
}

async function serveConfigOf(opts: ServeOptions, cmd: Command, ctx: Context): Promise<ServeConfig> {
  return parseServeConfig(
    {
      host: opts.host,
      port: opts.port,
      defaultVersion: opts.version,
      eventsTopic: await eventsTopicOf(opts, ctx),
      authToken: opts.authToken ?? null,
      tokensFile: opts.tokensFile ?? null,
      jwt: jwtConfigOf(opts),
      reloadPollMs: opts.reloadPoll,
      tlsCert: opts.tlsCert ?? null,
      tlsKey: opts.tlsKey ?? null,
      introspection: introspectionOf(opts, cmd),
      maxRangeMs: { minute: opts.maxRangeMinute, hour: opts.maxRangeHour, day: opts.maxRangeDay },
      maxTopKeys: opts.maxTopKeys,
      requestTimeoutMs: opts.requestTimeout,
      maxDepth: opts.maxDepth,
      maxCost: opts.maxCost,
      maxAliases: opts.maxAliases,
      maxRootFields: opts.maxRootFields,
      resolverCost: opts.resolverCost,
      executionBudgetMs: opts.executionBudget,
      executionSliceMs: opts.executionSlice,
      rateLimit: opts.rateLimit,
      rateBurst: opts.rateBurst,
      maxSubscriptions: opts.maxSubscriptions,
      batchPollMs: opts.batchPoll,
      maxVersions: opts.maxVersions,
      promoteMaxLag: opts.promoteMaxLag,
      promoteMaxWatermarkLagMs: opts.promoteMaxWatermarkLag,
      dataDir: ctx.layout.root,
      ...(opts.stateUri !== undefined ? { stateUri: opts.stateUri } : {}),
    },
    await ctx.loadMetrics(opts.version),
  );
}

async function serve(opts: ServeOptions, cmd: Command): Promise<void> {
  const ctx = context(opts);
  const config = await serveConfigOf(opts, cmd, ctx);
  // graphql-js checks every `instanceof` the slow way unless NODE_ENV is production (about a
  // tenth of a large answer's execution time); it reads NODE_ENV once, when first loaded, so
  // the server code is loaded only now.
  process.env.NODE_ENV ??= 'production';
  const { default: cluster } = await import('node:cluster');
  const { isServeWorker, runPrimary, workerSide } = await import('./http/cluster.ts');
  if (opts.workers > 1 && cluster.isPrimary) {
    // The primary: forks the workers (each runs this command again, as a worker) and waits.
    const stop = onShutdownSignal((signal) => logger.info({ signal }, 'shutting down'));
    process.exitCode = await runPrimary({
      workers: opts.workers,
      rateLimit: config.rateLimit,
      rateBurst: config.rateBurst,
      logger,
      stopTimeoutMs: config.requestTimeoutMs + 30_000,
      stop: aborted(stop),
      onListening: (url, version) =>
        console.log(`serving ${url}/graphql (version ${version}; ${opts.workers} workers; /healthz /readyz /metrics)`),
    });
    return;
  }
  const side = isServeWorker() ? workerSide() : undefined;
  const { startServe } = await import('./http/server.ts');
  const log = ctx.openLog(`lk-serve-${config.defaultVersion}`);
  let handle: Awaited<ReturnType<typeof startServe>>;
  try {
    handle = await startServe({ config, log, logger, ...(side ? { cluster: side } : {}) });
  } catch (err) {
    await log.close();
    throw err;
  }
  if (side) side.listening(handle.url, handle.defaults.current.version);
  else console.log(`serving ${handle.url}/graphql (version ${handle.defaults.current.version}; /healthz /readyz /metrics)`);
  const stop = onShutdownSignal((signal) => logger.info({ signal }, 'shutting down'));
  try {
    // A broker outage is waited through; only what retrying cannot fix ends serving early.
    await Promise.race([aborted(stop), handle.failure(), ...(side ? [side.shutdown] : [])]);
  } finally {
    await handle.close();
    await log.close();
  }
  // A worker leaves the cluster once closed (its IPC channel would keep it alive).
  if (side) cluster.worker?.disconnect();
}

export function registerServeCommands(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve GraphQL over the merged batch and speed views (/graphql, /healthz, /readyz, /metrics)');
  addCommonOptions(addOptions(addOptions(cmd, SERVE_OPTIONS), PROMOTION_OPTIONS)).action(serve);
}
