/**
 * The serving process's one port: GraphQL over HTTP at /graphql (Apollo Server 5 through its
 * integration API, on Node's own http server), GraphQL subscriptions over WebSocket (graphql-ws)
 * on the same path, the dashboard at / and the GraphQL explorer at /graphql for browsers
 * (assets.ts), and /healthz, /readyz, /metrics.
 *
 * `startServe` puts the parts together, in order: the job versions (registry) and metrics, the
 * schema and its executor, Apollo, the routes, the subscriptions, the default version opened,
 * then the port. Auth (auth.ts): with a token configured, every request except /healthz and
 * /readyz needs it; otherwise 401 with a coded error. Errors never carry stack traces.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApolloServer } from '@apollo/server';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { deadLetterTopic } from '../../services/log/topics.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { ErrorCode } from '../graphql/errors.ts';
import { JitQueryCache, type ExecutedBy } from '../graphql/jitExecutor.ts';
import { deadlineFor, type ServeContext } from '../graphql/resolvers.ts';
import { buildServeSchema } from '../graphql/schema.ts';
import { WindowSubscriptions } from '../subscriptions.ts';
import { VersionRegistry } from '../views/versionRegistry.ts';
import { DefaultVersionFollower } from '../views/defaultVersionFollower.ts';
import { DeadLetterCounts } from '../views/deadLetterCounts.ts';
import { startApollo } from './apollo.ts';
import { dashboardAssets, wantsHtml, type DashboardAssets } from './assets.ts';
import { bearerAuth, type BearerAuth } from './auth.ts';
import { graphqlHttpHandler, type GraphQLHttpHandler } from './graphqlHttp.ts';
import { errorBody, sendJson } from './responses.ts';
import { createServeMetrics, type ServeMetrics } from './serveMetrics.ts';
import { attachSubscriptions } from './subscriptions.ts';

export interface ServeHandle {
  url: string;
  port: number;
  registry: VersionRegistry;
  /** Requests per executor (graphql-jit or graphql-js) and queries compiled. */
  executionStats(): Readonly<Record<ExecutedBy, number> & { compiled: number }>;
  ready(): boolean;
  /** Which version answers queries that name none (the promoted one, else --version). */
  defaults: DefaultVersionFollower;
  close(): Promise<void>;
}

export interface StartServeOptions {
  config: ServeConfig;
  log: EventLog;
  logger: Logger;
}

interface Routes {
  config: ServeConfig;
  registry: VersionRegistry;
  defaults: DefaultVersionFollower;
  auth: BearerAuth;
  metrics: ServeMetrics;
  graphql: GraphQLHttpHandler;
  assets: DashboardAssets;
  logger: Logger;
}

/** /readyz: the default version's speed view caught up and its batch view loaded (if published). */
function readiness(registry: VersionRegistry, defaults: DefaultVersionFollower): { ready: boolean; body: unknown } {
  const { version, generation } = defaults.current;
  const ready = registry.isReady(version);
  const r = registry.get(version);
  return {
    ready,
    body: {
      status: ready ? 'ready' : 'not ready',
      version,
      promotion: generation,
      defaultVersionError: defaults.lastError,
      speedViewCaughtUp: r?.materializer.caughtUp ?? false,
      batchView: r?.view.batch?.manifest.runId ?? null,
      batchPublished: r?.follower.published ?? false,
    },
  };
}

async function route(routes: Routes, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { registry, defaults, auth, metrics } = routes;
  const url = new URL(req.url ?? '/', 'http://serve');
  if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (url.pathname === '/readyz') {
    const r = readiness(registry, defaults);
    return sendJson(res, r.ready ? 200 : 503, r.body);
  }
  // The pages load without the token (they hold no data, and ask for it); their requests need it.
  if (url.pathname === '/graphql' && wantsHtml(req)) return routes.assets.explorer(req, res);
  if (routes.assets.handle(req, res, url.pathname)) return;
  if (url.pathname !== '/graphql' && url.pathname !== '/metrics')
    return sendJson(
      res,
      404,
      errorBody('NOT_FOUND', `no route ${url.pathname}; try / (the dashboard), /graphql, /healthz, /readyz or /metrics`),
    );
  if (!auth.authorized(req)) {
    metrics.requests.inc({ operation: url.pathname === '/metrics' ? 'metrics' : 'unknown', outcome: 'unauthenticated' });
    return sendJson(res, 401, errorBody(ErrorCode.UNAUTHENTICATED, 'missing or wrong bearer token: send Authorization: Bearer <token>'), {
      'www-authenticate': 'Bearer realm="lk"',
    });
  }
  if (url.pathname === '/metrics') {
    const text = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    return void res.end(text);
  }
  if (req.method !== 'GET' && req.method !== 'POST')
    return sendJson(res, 405, errorBody('BAD_REQUEST', 'use GET or POST'), { allow: 'GET, POST' });
  return routes.graphql(req, res, url);
}

function httpServer(routes: Routes): Server {
  const server = createServer((req, res) => {
    route(routes, req, res).catch((err) => {
      routes.logger.error({ err: errorMessage(err) }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, errorBody(ErrorCode.INTERNAL_SERVER_ERROR, 'internal error'));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  return server;
}

function listen(server: Server, config: ServeConfig): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new InfrastructureError(`cannot listen on ${config.host}:${config.port}: ${errorMessage(err)}`, { cause: err })),
    );
    server.listen(config.port, config.host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** Stops accepting, lets requests in flight finish (bounded by the request timeout), then cuts. */
async function closeHttp(server: Server, config: ServeConfig): Promise<void> {
  const force = setTimeout(() => server.closeAllConnections(), config.requestTimeoutMs + 100);
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
  clearTimeout(force);
}

export async function startServe({ config, log, logger }: StartServeOptions): Promise<ServeHandle> {
  const subscriptions = new WindowSubscriptions();
  let metrics: ServeMetrics | undefined;
  const registry = new VersionRegistry({
    log,
    dataDir: config.dataDir,
    fallbackMetrics: config.metrics,
    viewsRoot: config.viewsRoot,
    batchPollMs: config.batchPollMs,
    maxVersions: config.maxVersions,
    logger,
    onBatchInstalled: (version) => metrics?.batchSwaps.inc({ version }),
  });
  const m = (metrics = createServeMetrics(registry, subscriptions));
  const deadLetters = new DeadLetterCounts({ log, topic: deadLetterTopic(config.eventsTopic), logger, retryMs: 2000 });
  const schema = buildServeSchema(subscriptions);
  const jitQueries = new JitQueryCache(schema, { onExecuted: (by) => m.executions.inc({ executor: by }) });
  const defaults = new DefaultVersionFollower({
    dataDir: config.dataDir,
    fallback: config.defaultVersion,
    registry,
    pollMs: config.batchPollMs,
    logger,
  });
  const makeContext = (): ServeContext => {
    const deadlineAt = Date.now() + config.requestTimeoutMs;
    const { version, generation } = defaults.current;
    return {
      config,
      registry,
      defaultVersion: version,
      defaultGeneration: generation,
      defaults,
      deadlineAt,
      deadline: deadlineFor(deadlineAt, config.requestTimeoutMs),
      snapshots: new Map(),
      subscriptionCount: () => subscriptions.active,
      deadLetters: () => deadLetters.status(),
    };
  };
  const apollo: ApolloServer<ServeContext> = await startApollo(config, schema, jitQueries, m, logger);
  const auth = bearerAuth(config.authToken);
  const server = httpServer({
    config,
    registry,
    defaults,
    auth,
    metrics: m,
    graphql: graphqlHttpHandler(apollo, config, makeContext, m),
    assets: dashboardAssets(),
    logger,
  });
  const ws = attachSubscriptions(server, schema, config, auth, makeContext, m);

  // Open the default version before listening: /readyz reports its catch-up.
  await defaults.start();
  // Never rejects: the dead-letter counts follow their topic in the background (and wait for it).
  await deadLetters.start();
  const port = await listen(server, config);
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info({ port, host: config.host, version: defaults.current.version, promotion: defaults.current.generation }, 'serving');

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    registry,
    executionStats: () => ({ ...jitQueries.stats }),
    ready: () => registry.isReady(defaults.current.version),
    defaults,
    close() {
      closing ??= (async () => {
        defaults.stop();
        await ws.close();
        await closeHttp(server, config);
        await apollo.stop();
        await Promise.all([registry.stop(), deadLetters.stop()]);
      })();
      return closing;
    },
  };
}
