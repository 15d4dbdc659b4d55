/**
 * `lk serve`: the GraphQL serving layer over the merged batch and speed views.
 * Every flag has an environment variable; SIGTERM/SIGINT shut down gracefully (requests in
 * flight finish, subscriptions are closed, consumers leave their groups).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ConfigError } from '../services/errors.ts';
import { logger } from '../services/observability/logger.ts';
import { addCommonOptions, context, duration, port, positiveInt, versionName, type CommonOptions } from '../services/config/cliOptions.ts';
import { parseServeConfig } from './config.ts';

interface ServeOptions extends CommonOptions {
  port: number;
  host: string;
  version: string;
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

export function registerServeCommands(program: Command): void {
  addCommonOptions(
    program
      .command('serve')
      .description('serve GraphQL over the merged batch and speed views (/graphql, /healthz, /readyz, /metrics)')
      .addOption(new Option('--port <n>', 'HTTP port (0 = any free port)').env('LK_SERVE_PORT').default(4000).argParser(port))
      .addOption(new Option('--host <addr>', 'address to listen on').env('LK_SERVE_HOST').default('127.0.0.1'))
      .addOption(
        new Option('--version <name>', 'job version served by default (views.speed.<version>, <data-dir>/views/<version>)')
          .env('LK_SERVE_VERSION')
          .default('v1')
          .argParser(versionName),
      )
      .addOption(
        new Option(
          '--auth-token <token>',
          'require Authorization: Bearer <token> on everything but /healthz and /readyz (at least 16 characters)',
        ).env('LK_SERVE_AUTH_TOKEN'),
      )
      // Commander hands boolean flags no value from the environment: LK_SERVE_INTROSPECTION is read in the action.
      .addOption(new Option('--introspection', 'allow schema introspection (default; env LK_SERVE_INTROSPECTION=true|false)'))
      .addOption(new Option('--no-introspection', 'refuse schema introspection (production)'))
      .addOption(
        new Option('--max-range-minute <duration>', 'largest from..to span for MINUTE windows')
          .env('LK_SERVE_MAX_RANGE_MINUTE')
          .default(7 * 86_400_000, '7d')
          .argParser(duration),
      )
      .addOption(
        new Option('--max-range-hour <duration>', 'largest from..to span for HOUR windows')
          .env('LK_SERVE_MAX_RANGE_HOUR')
          .default(92 * 86_400_000, '92d')
          .argParser(duration),
      )
      .addOption(
        new Option('--max-range-day <duration>', 'largest from..to span for DAY windows')
          .env('LK_SERVE_MAX_RANGE_DAY')
          .default(3660 * 86_400_000, '3660d')
          .argParser(duration),
      )
      .addOption(
        new Option('--max-top-keys <n>', 'largest topKeys limit').env('LK_SERVE_MAX_TOP_KEYS').default(1000).argParser(positiveInt),
      )
      .addOption(
        new Option('--request-timeout <duration>', 'time budget of one request')
          .env('LK_SERVE_REQUEST_TIMEOUT')
          .default(10_000, '10s')
          .argParser(duration),
      )
      .addOption(new Option('--max-depth <n>', 'deepest query accepted').env('LK_SERVE_MAX_DEPTH').default(8).argParser(positiveInt))
      .addOption(
        new Option('--max-cost <n>', 'costliest query accepted (fields x list lengths, see docs/serving-layer.md)')
          .env('LK_SERVE_MAX_COST')
          .default(250_000)
          .argParser(positiveInt),
      )
      .addOption(
        new Option('--batch-poll <duration>', 'how often to look for a newer batch run')
          .env('LK_SERVE_BATCH_POLL')
          .default(1000, '1s')
          .argParser(duration),
      )
      .addOption(
        new Option('--max-versions <n>', 'job versions held in memory at once')
          .env('LK_SERVE_MAX_VERSIONS')
          .default(4)
          .argParser(positiveInt),
      ),
  ).action(async (opts: ServeOptions, cmd: Command) => {
    const ctx = context(opts);
    const introspectionEnv = process.env.LK_SERVE_INTROSPECTION;
    // With both --introspection and --no-introspection defined, the value is unset unless given.
    if (cmd.getOptionValueSource('introspection') !== 'cli') opts.introspection = true;
    if (cmd.getOptionValueSource('introspection') !== 'cli' && introspectionEnv !== undefined) {
      try {
        opts.introspection = boolEnv(introspectionEnv);
      } catch {
        throw new ConfigError(`LK_SERVE_INTROSPECTION must be true or false, got ${JSON.stringify(introspectionEnv)}`);
      }
    }
    const config = parseServeConfig(
      {
        host: opts.host,
        port: opts.port,
        defaultVersion: opts.version,
        authToken: opts.authToken ?? null,
        introspection: opts.introspection,
        maxRangeMs: { minute: opts.maxRangeMinute, hour: opts.maxRangeHour, day: opts.maxRangeDay },
        maxTopKeys: opts.maxTopKeys,
        requestTimeoutMs: opts.requestTimeout,
        maxDepth: opts.maxDepth,
        maxCost: opts.maxCost,
        batchPollMs: opts.batchPoll,
        maxVersions: opts.maxVersions,
        dataDir: ctx.layout.root,
        viewsRoot: ctx.layout.views,
      },
      ctx.loadMetrics(),
    );
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
    console.log(`serving ${handle.url}/graphql (version ${config.defaultVersion}; /healthz /readyz /metrics)`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        logger.info({ signal }, 'shutting down');
        resolve();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    await handle.close();
    await log.close();
  });
}
