/**
 * The serving process's one port: GraphQL over HTTP at /graphql (Apollo Server 5 through its
 * integration API, on Node's own http server), GraphQL subscriptions over WebSocket (graphql-ws)
 * on the same path, and /healthz, /readyz, /metrics.
 *
 * Auth (optional): with a token configured, every request except /healthz and /readyz needs
 * `Authorization: Bearer <token>` (WebSocket: the same header, or connectionParams
 * {authorization}); otherwise 401 with a coded error. Errors never carry stack traces.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ApolloServer, HeaderMap, type ApolloServerPlugin, type HTTPGraphQLRequest } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, getOperationAST, parse, validate, type DocumentNode, type GraphQLFormattedError } from 'graphql/index.js';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { ErrorCode } from '../graphql/errors.ts';
import { JitQueryCache, jitGateway, type ExecutedBy } from '../graphql/jitExecutor.ts';
import { enforceLimits } from '../graphql/limits.ts';
import { deadlineFor, type ServeContext } from '../graphql/resolvers.ts';
import { buildServeSchema } from '../graphql/schema.ts';
import { WindowSubscriptions } from '../subscriptions.ts';
import { VersionRegistry } from '../views/versionRegistry.ts';
import { createServeMetrics } from './serveMetrics.ts';

const MAX_BODY_BYTES = 1024 * 1024;

/** Codes whose messages are written for clients; anything else is masked. */
const CLIENT_CODES = new Set<string>([
  ...Object.values(ErrorCode),
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_USER_INPUT',
  'BAD_REQUEST',
  'OPERATION_RESOLUTION_FAILURE',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'SERVICE_UNAVAILABLE',
]);

export interface ServeHandle {
  url: string;
  port: number;
  registry: VersionRegistry;
  /** Requests per executor (graphql-jit or graphql-js) and queries compiled. */
  executionStats(): Readonly<Record<ExecutedBy, number> & { compiled: number }>;
  ready(): boolean;
  close(): Promise<void>;
}

export interface StartServeOptions {
  config: ServeConfig;
  log: EventLog;
  logger: Logger;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

function tokenMatches(header: unknown, expected: Buffer): boolean {
  if (typeof header !== 'string') return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  // Compare digests: constant time, and independent of the token's length.
  return m !== null && timingSafeEqual(digest(m[1]!), expected);
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function errorBody(code: string, message: string): unknown {
  return { errors: [{ message, extensions: { code } }] };
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function rootFieldOf(document: DocumentNode | undefined, operationName: string | null | undefined): string {
  const op = document ? getOperationAST(document, operationName ?? undefined) : null;
  const first = op?.selectionSet.selections[0];
  return first && first.kind === 'Field' ? first.name.value : 'unknown';
}

export async function startServe({ config, log, logger }: StartServeOptions): Promise<ServeHandle> {
  const subscriptions = new WindowSubscriptions();
  // eslint-disable-next-line prefer-const
  let metrics: ReturnType<typeof createServeMetrics>;
  const registry = new VersionRegistry({
    log,
    viewsRoot: config.viewsRoot,
    batchPollMs: config.batchPollMs,
    maxVersions: config.maxVersions,
    logger,
    onBatchInstalled: (version) => metrics?.batchSwaps.inc({ version }),
  });
  metrics = createServeMetrics(registry, subscriptions);
  const schema = buildServeSchema(subscriptions);
  const jitQueries = new JitQueryCache(schema, { onExecuted: (by) => metrics.executions.inc({ executor: by }) });
  const expectedToken = config.authToken === null ? undefined : digest(config.authToken);

  const makeContext = (): ServeContext => {
    const deadlineAt = Date.now() + config.requestTimeoutMs;
    return {
      config,
      registry,
      deadlineAt,
      deadline: deadlineFor(deadlineAt, config.requestTimeoutMs),
      snapshots: new Map(),
      subscriptionCount: () => subscriptions.active,
    };
  };

  const limitsPlugin: ApolloServerPlugin<ServeContext> = {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          if (rc.operation) enforceLimits(rc.document, rc.operation, rc.request.variables, config);
        },
        async willSendResponse(rc) {
          const operation = rootFieldOf(rc.document, rc.request.operationName);
          const errors = rc.errors ?? (rc.response.body.kind === 'single' ? rc.response.body.singleResult.errors : undefined);
          let outcome = 'ok';
          if (errors && errors.length > 0) {
            const code = String((errors[0] as GraphQLError | GraphQLFormattedError).extensions?.code ?? '');
            outcome = CLIENT_CODES.has(code) ? 'user_error' : 'error';
          }
          metrics.requests.inc({ operation, outcome });
        },
      };
    },
  };

  const apollo = new ApolloServer<ServeContext>({
    // Execution by graphql-jit (compiled queries), through Apollo's gateway interface: see
    // serving/graphql/jitExecutor.ts. Parsing, validation, plugins and error formatting stay Apollo's.
    gateway: jitGateway(schema, jitQueries),
    introspection: config.introspection,
    includeStacktraceInErrorResponses: false,
    // serving/cli.ts owns SIGTERM/SIGINT (graceful close of HTTP, WebSocket, consumers); Apollo's
    // own handler would re-raise the signal and kill the process half-way through.
    stopOnTerminationSignals: false,
    csrfPrevention: true,
    // No HTTP cache hints: the cache-control plugin would wrap every field of every answer.
    plugins: [limitsPlugin, ApolloServerPluginCacheControlDisabled()],
    formatError(formatted, err) {
      const code = String(formatted.extensions?.code ?? '');
      const original = err instanceof GraphQLError ? err.originalError : err;
      if (original instanceof InfrastructureError) {
        return {
          message: original.message,
          ...(formatted.path ? { path: formatted.path } : {}),
          extensions: { code: 'SERVICE_UNAVAILABLE' },
        };
      }
      if (CLIENT_CODES.has(code)) {
        const { stacktrace: _drop, ...extensions } = (formatted.extensions ?? {}) as Record<string, unknown>;
        return { ...formatted, extensions };
      }
      logger.error(
        { err: errorMessage(original), stack: original instanceof Error ? original.stack : undefined },
        'unexpected error in a GraphQL request',
      );
      return {
        message: 'internal error',
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { code: ErrorCode.INTERNAL_SERVER_ERROR },
      };
    },
  });
  await apollo.start();

  const authorized = (req: IncomingMessage): boolean =>
    expectedToken === undefined || tokenMatches(req.headers.authorization, expectedToken);

  async function handleGraphQL(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const started = process.hrtime.bigint();
    const headers = new HeaderMap();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    let body: unknown = undefined;
    if (req.method === 'POST') {
      const text = await readBody(req);
      if (text === undefined) return sendJson(res, 413, errorBody('BAD_REQUEST', `request body larger than ${MAX_BODY_BYTES} bytes`));
      const contentType = headers.get('content-type') ?? '';
      if (contentType.includes('application/json')) {
        try {
          body = JSON.parse(text);
        } catch {
          return sendJson(res, 400, errorBody('BAD_REQUEST', 'request body is not valid JSON'));
        }
      } else body = text;
    }
    const httpGraphQLRequest: HTTPGraphQLRequest = { method: (req.method ?? 'GET').toUpperCase(), headers, search: url.search, body };
    const context = makeContext();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), config.requestTimeoutMs + 50);
    });
    const result = await Promise.race([
      apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context: async () => context }),
      timedOut,
    ]).finally(() => clearTimeout(timer));
    const operation =
      typeof body === 'object' && body !== null && 'query' in body ? rootFieldFromText((body as { query: unknown }).query) : 'unknown';
    metrics.duration.observe({ operation }, Number(process.hrtime.bigint() - started) / 1e9);
    if (result === 'timeout') {
      return sendJson(
        res,
        503,
        errorBody(
          ErrorCode.REQUEST_TIMEOUT,
          `the request took longer than ${config.requestTimeoutMs} ms (--request-timeout) and was abandoned`,
        ),
      );
    }
    const outHeaders: Record<string, string> = {};
    for (const [k, v] of result.headers) outHeaders[k] = v;
    if (result.body.kind === 'complete') {
      outHeaders['content-length'] = String(Buffer.byteLength(result.body.string));
      res.writeHead(result.status ?? 200, outHeaders);
      res.end(result.body.string);
    } else {
      res.writeHead(result.status ?? 200, outHeaders);
      for await (const chunk of result.body.asyncIterator) res.write(chunk);
      res.end();
    }
  }

  const rootFieldCache = new Map<string, string>();
  function rootFieldFromText(query: unknown): string {
    if (typeof query !== 'string') return 'unknown';
    let name = rootFieldCache.get(query);
    if (name === undefined) {
      try {
        name = rootFieldOf(parse(query), undefined);
      } catch {
        name = 'unparsable';
      }
      if (rootFieldCache.size < 1000) rootFieldCache.set(query, name);
    }
    return name;
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://serve');
    const route = async () => {
      if (url.pathname === '/healthz') return sendJson(res, 200, { status: 'ok' });
      if (url.pathname === '/readyz') {
        const ready = registry.isReady(config.defaultVersion);
        const r = registry.get(config.defaultVersion);
        return sendJson(res, ready ? 200 : 503, {
          status: ready ? 'ready' : 'not ready',
          version: config.defaultVersion,
          speedViewCaughtUp: r?.materializer.caughtUp ?? false,
          batchView: r?.view.batch?.manifest.runId ?? null,
          batchPublished: r?.follower.published ?? false,
        });
      }
      if (url.pathname !== '/graphql' && url.pathname !== '/metrics')
        return sendJson(res, 404, errorBody('NOT_FOUND', `no route ${url.pathname}; try /graphql, /healthz, /readyz or /metrics`));
      if (!authorized(req)) {
        metrics.requests.inc({ operation: url.pathname === '/metrics' ? 'metrics' : 'unknown', outcome: 'unauthenticated' });
        return sendJson(
          res,
          401,
          errorBody(ErrorCode.UNAUTHENTICATED, 'missing or wrong bearer token: send Authorization: Bearer <token>'),
          { 'www-authenticate': 'Bearer realm="lk"' },
        );
      }
      if (url.pathname === '/metrics') {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        return void res.end(text);
      }
      if (req.method !== 'GET' && req.method !== 'POST')
        return sendJson(res, 405, errorBody('BAD_REQUEST', 'use GET or POST'), { allow: 'GET, POST' });
      return handleGraphQL(req, res, url);
    };
    route().catch((err) => {
      logger.error({ err: errorMessage(err) }, 'request failed');
      if (!res.headersSent) sendJson(res, 500, errorBody(ErrorCode.INTERNAL_SERVER_ERROR, 'internal error'));
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://serve');
    if (url.pathname !== '/graphql') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  const wsServer = useServer<Record<string, unknown> | undefined, { request: IncomingMessage }>(
    {
      schema,
      onConnect(ctx) {
        if (expectedToken === undefined) return true;
        const fromParams = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        const ok = tokenMatches(ctx.extra.request.headers.authorization, expectedToken) || tokenMatches(fromParams, expectedToken);
        if (!ok) metrics.requests.inc({ operation: 'subscription', outcome: 'unauthenticated' });
        return ok; // false closes the socket with 4403 Forbidden
      },
      onSubscribe(_ctx, _id, payload) {
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (err) {
          return [err instanceof GraphQLError ? err : new GraphQLError(errorMessage(err))];
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        const operation = getOperationAST(document, payload.operationName ?? undefined);
        if (!operation) return [new GraphQLError('no operation to run', { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
        try {
          enforceLimits(document, operation, payload.variables ?? undefined, config);
        } catch (err) {
          return [err as GraphQLError];
        }
        const context = makeContext();
        // A subscription lives long: only its setup is bounded by the request timeout.
        return {
          schema,
          document,
          operationName: payload.operationName ?? null,
          variableValues: payload.variables ?? null,
          contextValue: context,
        };
      },
    },
    wss,
  );

  // Open the default version before listening: /readyz reports its catch-up.
  const defaultRuntime = registry.open(config.defaultVersion);
  await defaultRuntime.started;

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(new InfrastructureError(`cannot listen on ${config.host}:${config.port}: ${errorMessage(err)}`, { cause: err })),
    );
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  logger.info({ port, host: config.host, version: config.defaultVersion }, 'serving');

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    registry,
    executionStats: () => ({ ...jitQueries.stats }),
    ready: () => registry.isReady(config.defaultVersion),
    close() {
      closing ??= (async () => {
        await wsServer.dispose();
        wss.close();
        // Stop accepting, let requests in flight finish (bounded by the request timeout), then cut.
        const force = setTimeout(() => server.closeAllConnections(), config.requestTimeoutMs + 100);
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
        });
        clearTimeout(force);
        await apollo.stop();
        await registry.stop();
      })();
      return closing;
    },
  };
}
