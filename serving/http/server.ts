/**
 * The serving process's one port: GraphQL over HTTP at /graphql (Apollo Server 5 through its
 * integration API, on Node's own http or https server), GraphQL subscriptions over WebSocket
 * (graphql-ws) on the same path, the dashboard at / and the GraphQL explorer at /graphql for
 * browsers (assets.ts), and /healthz, /readyz, /metrics.
 *
 * `startServe` puts the parts together, in order: the job versions (registry) and metrics, the
 * schema and its executor, the limits, Apollo, the routes, the subscriptions, the default version
 * opened, then the port. Every request to /graphql and /metrics is authenticated first
 * (serving/auth/authenticator.ts: 401 with the reason when a token is required and wrong), then
 * refused at the door with 429 when its client is in debt with its rate limit (rateLimiter.ts),
 * before its body is even read. Errors never carry stack traces.
 *
 * With several workers (serving/http/cluster.ts), each worker runs all of this on the shared
 * port; `StartServeOptions.cluster` then provides the primary's readiness of all workers, the
 * propagation of version changes, the shared rate limits and the metrics of all workers.
 */
import { dataDirLayout, openSharedState } from '../../services/config/dataDir.ts';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ApolloServer } from '@apollo/server';
import type { Registry } from 'prom-client';
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
import { createAuthenticator, type Authenticator } from '../auth/authenticator.ts';
import { may } from '../auth/roles.ts';
import { ExecutionBudget } from '../graphql/executionBudget.ts';
import type { LimitsOptions } from '../graphql/limits.ts';
import type { Caller } from '../graphql/resolvers.ts';
import { resolvedFieldsOf } from '../graphql/schema.ts';
import { followHere, versionsAdmin, type Propagator } from '../versionsAdmin.ts';
import { registerLogHealthMetrics } from '../../services/log/outages.ts';
import { startApollo } from './apollo.ts';
import { dashboardAssets, wantsHtml, type DashboardAssets } from './assets.ts';
import { graphqlHttpHandler, type GraphQLHttpHandler } from './graphqlHttp.ts';
import { clientKey, NO_RATE_LIMIT, retryAfterSeconds, TokenBuckets, type RateLimiter } from './rateLimiter.ts';
import { rateLimitedMessage } from './refusals.ts';
import { MAX_BODY_BYTES, errorBody, sendJson } from './responses.ts';
import { createServeMetrics, type ServeMetrics } from './serveMetrics.ts';
import { attachSubscriptions } from './subscriptions.ts';
import { createServeServer } from './tls.ts';

export interface ServeHandle {
  url: string;
  port: number;
  registry: VersionRegistry;
  /** Requests per executor (graphql-jit or graphql-js) and queries compiled. */
  executionStats(): Readonly<Record<ExecutedBy, number> & { compiled: number }>;
  ready(): boolean;
  /** Which version answers queries that name none (the promoted one, else --version). */
  defaults: DefaultVersionFollower;
  /** Rejects when serving cannot go on: the default version's view hit what retrying cannot fix (its topic deleted). */
  failure(): Promise<never>;
  close(): Promise<void>;
}

/** What a worker of several gets from the primary (serving/http/cluster.ts). */
export interface ClusterSide {
  /** This worker's number (1..n) and the number of workers. */
  worker: number;
  workers: number;
  /** Tells the primary whether this worker is ready (on every change). */
  reportReady(ready: boolean): void;
  /** Whether every worker has said it is ready, and what each said. */
  allReady(): { ready: boolean; workers: { worker: number; pid: number; ready: boolean }[] };
  propagate: Propagator;
  limiter: RateLimiter;
  /** The metrics of every worker, summed (prom-client's AggregatorRegistry in the primary). */
  metricsText(): Promise<string>;
  /** Gives the primary this worker's metrics and its way to follow the version pointer. */
  attach(parts: { registry: Registry; follow: Propagator }): void;
}

export interface StartServeOptions {
  config: ServeConfig;
  log: EventLog;
  logger: Logger;
  cluster?: ClusterSide;
}

interface Routes {
  config: ServeConfig;
  registry: VersionRegistry;
  defaults: DefaultVersionFollower;
  auth: Authenticator;
  limiter: RateLimiter;
  metrics: ServeMetrics;
  graphql: GraphQLHttpHandler;
  assets: DashboardAssets;
  logger: Logger;
  cluster: ClusterSide | undefined;
}

/**
 * /readyz: the default version's speed view caught up and its batch view loaded (if published);
 * with several workers, every worker so (each reports its own to the primary).
 */
function readiness(registry: VersionRegistry, defaults: DefaultVersionFollower, cluster: ClusterSide | undefined) {
  const { version, generation } = defaults.current;
  const here = registry.isReady(version);
  const all = cluster?.allReady();
  const ready = here && (all?.ready ?? true);
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
      ...(all ? { worker: cluster!.worker, workers: all.workers } : {}),
      kafkaReachable: registry.logReachable,
    },
  };
}

/** Whether the request's body is absent or declared within MAX_BODY_BYTES. */
function bodyIsBounded(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length === undefined) return req.headers['transfer-encoding'] === undefined;
  return Number(length) <= MAX_BODY_BYTES;
}

/** Refused tokens cost their address this many resolver calls (guessing tokens is rate limited). */
const FAILED_AUTH_COST_FACTOR = 10;

async function route(routes: Routes, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { registry, defaults, auth, metrics, limiter, config } = routes;
  const url = new URL(req.url ?? '/', 'http://serve');
  // Which worker answered (several workers): for operators and the tests.
  if (routes.cluster) res.setHeader('lk-worker', String(routes.cluster.worker));
  if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (url.pathname === '/readyz') {
    const r = readiness(registry, defaults, routes.cluster);
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
  const address = req.socket.remoteAddress;
  const tooMany = (client: string, waitMs: number) => {
    metrics.requests.inc({ operation: 'unknown', outcome: 'rate_limited' });
    metrics.refusals.inc({ code: ErrorCode.RATE_LIMITED });
    // The body is not parsed. A body of bounded size is read and dropped after the answer (Node
    // does so for a body nobody read), so that a client still sending reads its 429 and
    // Retry-After: closing at once makes it fail with EPIPE or ECONNRESET instead (bench:serve's
    // abuser did). A larger or undeclared (chunked) body is cut off by closing.
    return sendJson(res, 429, errorBody(ErrorCode.RATE_LIMITED, rateLimitedMessage(client, waitMs, config)), {
      'retry-after': retryAfterSeconds(waitMs),
      ...(bodyIsBounded(req) ? {} : { connection: 'close' }),
    });
  };
  // An address that keeps sending refused tokens is refused before its next token is checked.
  const addressKey = clientKey(undefined, address);
  if (auth.required && limiter.blockedFor(addressKey) > 0) return tooMany(addressKey, limiter.blockedFor(addressKey));
  const result = await auth.authenticate(req.headers.authorization);
  if (!result.ok) {
    metrics.requests.inc({ operation: url.pathname === '/metrics' ? 'metrics' : 'unknown', outcome: 'unauthenticated' });
    metrics.refusals.inc({ code: ErrorCode.UNAUTHENTICATED });
    if (result.unavailable) return sendJson(res, 503, errorBody('SERVICE_UNAVAILABLE', `cannot check the bearer token: ${result.reason}`));
    limiter.charge(addressKey, config.resolverCost * FAILED_AUTH_COST_FACTOR);
    return sendJson(res, 401, errorBody(ErrorCode.UNAUTHENTICATED, result.reason), {
      'www-authenticate': `Bearer realm="lk", error="invalid_token"`,
    });
  }
  const principal = result.principal;
  const caller: Caller = { principal, client: clientKey(principal.via === 'anonymous' ? undefined : principal.name, address) };
  const blocked = limiter.blockedFor(caller.client);
  if (blocked > 0) return tooMany(caller.client, blocked);
  if (url.pathname === '/metrics') {
    if (!may(principal, 'metrics')) return sendJson(res, 403, errorBody(ErrorCode.FORBIDDEN, `${principal.name} may not read /metrics`));
    const text = routes.cluster ? await routes.cluster.metricsText() : await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    return void res.end(text);
  }
  if (req.method !== 'GET' && req.method !== 'POST')
    return sendJson(res, 405, errorBody('BAD_REQUEST', 'use GET or POST'), { allow: 'GET, POST' });
  return routes.graphql(req, res, url, caller);
}

function requestListener(routes: Routes) {
  return (req: IncomingMessage, res: ServerResponse) => {
    route(routes, req, res).catch((err) => {
      routes.logger.error({ err: errorMessage(err) }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, errorBody(ErrorCode.INTERNAL_SERVER_ERROR, 'internal error'));
      else res.destroy();
    });
  };
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

export async function startServe({ config, log, logger, cluster }: StartServeOptions): Promise<ServeHandle> {
  const subscriptions = new WindowSubscriptions();
  let metrics: ServeMetrics | undefined;
  let failWith!: (err: unknown) => void;
  const failed = new Promise<never>((_, reject) => (failWith = reject));
  failed.catch(() => undefined);
  let currentDefault = (): string => config.defaultVersion;
  const layout = dataDirLayout(config.dataDir);
  const state = await openSharedState(config.stateUri, layout);
  const registry = new VersionRegistry({
    log,
    state,
    cacheDir: layout.cache,
    fallbackMetrics: config.metrics,
    batchPollMs: config.batchPollMs,
    maxVersions: config.maxVersions,
    logger,
    onBatchInstalled: (version) => metrics?.batchSwaps.inc({ version }),
    onFatal: (version, err) => {
      if (version === currentDefault()) failWith(err);
    },
  });
  // Reads and checks the tokens file and the JWKS file: a bad one stops the start here.
  const auth = createAuthenticator(config, logger);
  const m = (metrics = createServeMetrics(registry, subscriptions, auth));
  // Serving waits through broker outages: they are probed, logged once and shown (/readyz, metrics).
  log.health.watch();
  registerLogHealthMetrics(m.registry, log.health);
  const deadLetters = new DeadLetterCounts({ log, topic: deadLetterTopic(config.eventsTopic), logger, retryMs: 2000 });
  const schema = buildServeSchema(subscriptions);
  const jitQueries = new JitQueryCache(schema, { onExecuted: (by) => m.executions.inc({ executor: by }) });
  const defaults = new DefaultVersionFollower({
    state,
    fallback: config.defaultVersion,
    registry,
    pollMs: config.batchPollMs,
    logger,
  });
  currentDefault = () => defaults.current.version;
  // Several workers share the primary's buckets; with the rate limit off, nobody asks it.
  const limiter = config.rateLimit === 0 ? NO_RATE_LIMIT : (cluster?.limiter ?? new TokenBuckets(config.rateLimit, config.rateBurst));
  const admin = versionsAdmin({ config, state, log, propagate: cluster?.propagate ?? followHere(defaults) });
  cluster?.attach({ registry: m.registry, follow: followHere(defaults) });
  const limits: LimitsOptions = {
    schema,
    config,
    resolvedFields: resolvedFieldsOf(schema),
    // Key-walking resolvers cost the keys they walk: an upper bound from the version's view, 0 when it is not open.
    keyCount: (version, metric, g) =>
      registry
        .get(version ?? defaults.current.version)
        ?.view.snapshot()
        .keyCount(metric, g) ?? 0,
  };
  const makeContext = (caller: Caller): ServeContext => {
    const deadlineAt = Date.now() + config.requestTimeoutMs;
    const { version, generation } = defaults.current;
    const work = new ExecutionBudget({
      budgetMs: config.executionBudgetMs,
      sliceMs: config.executionSliceMs,
      onYield: () => m.yields.inc(),
      onCutOff: () => m.cutOffs.inc(),
    });
    return {
      config,
      state,
      caller,
      work,
      versionsAdmin: admin,
      logger,
      charged: 0,
      rootField: 'unknown',
      registry,
      defaultVersion: version,
      defaultGeneration: generation,
      defaults,
      deadlineAt,
      deadline: deadlineFor(deadlineAt, config.requestTimeoutMs, work),
      snapshots: new Map(),
      subscriptionCount: () => subscriptions.active,
      deadLetters: () => deadLetters.status(),
    };
  };
  const apollo: ApolloServer<ServeContext> = await startApollo({ config, schema, jitQueries, metrics: m, logger, limits, limiter });
  const routes: Routes = {
    config,
    registry,
    defaults,
    auth,
    limiter,
    metrics: m,
    graphql: graphqlHttpHandler(apollo, config, makeContext, m, limiter),
    assets: dashboardAssets(),
    logger,
    cluster,
  };
  const http = createServeServer(config, requestListener(routes), logger);
  const server = http.server;
  server.keepAliveTimeout = 65_000;
  const ws = attachSubscriptions({ server, schema, config, auth, limits, limiter, makeContext, metrics: m });

  // Open the default version before listening: /readyz reports its catch-up.
  await defaults.start();
  // Never rejects: the dead-letter counts follow their topic in the background (and wait for it).
  await deadLetters.start();
  const port = await listen(server, config);
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info(
    { port, host: config.host, protocol: http.protocol, version: defaults.current.version, promotion: defaults.current.generation },
    'serving',
  );
  if (!auth.required && config.host !== '127.0.0.1' && config.host !== '::1' && config.host !== 'localhost') {
    logger.warn(
      { host: config.host },
      'serving without tokens on a non-loopback address: every caller is an admin (set --tokens-file, --jwks-file/--jwks-url or --auth-token)',
    );
  }

  // Each worker tells the primary when its readiness changes (the primary's /readyz is all of them).
  let readyTimer: NodeJS.Timeout | undefined;
  if (cluster) {
    let last: boolean | undefined;
    const report = () => {
      const now = registry.isReady(defaults.current.version);
      if (now !== last) cluster.reportReady((last = now));
    };
    report();
    readyTimer = setInterval(report, 100);
    readyTimer.unref();
  }

  let closing: Promise<void> | undefined;
  return {
    url: `${http.protocol}://${host}:${port}`,
    port,
    registry,
    executionStats: () => ({ ...jitQueries.stats }),
    ready: () => registry.isReady(defaults.current.version),
    defaults,
    failure: () => failed,
    close() {
      closing ??= (async () => {
        clearInterval(readyTimer);
        defaults.stop();
        await ws.close();
        await closeHttp(server, config);
        http.close();
        await apollo.stop();
        await Promise.all([registry.stop(), deadLetters.stop()]);
        auth.close();
        if (limiter instanceof TokenBuckets) limiter.close();
      })();
      return closing;
    },
  };
}
