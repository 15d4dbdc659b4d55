/**
 * GraphQL over HTTP (GET and POST on /graphql): the request handed to Apollo's integration API
 * with a fresh per-request context, bounded by the request timeout, timed into the metrics.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeaderMap, type ApolloServer, type HTTPGraphQLRequest } from '@apollo/server';
import { GraphQLError, parse } from 'graphql/index.js';
import type { ServeConfig } from '../config.ts';
import { ErrorCode } from '../graphql/errors.ts';
import { enforceShape, textCost } from '../graphql/limits.ts';
import type { Caller, ServeContext } from '../graphql/resolvers.ts';
import type { RateLimiter } from './rateLimiter.ts';
import { MAX_BODY_BYTES, errorBody, readBody, sendJson } from './responses.ts';
import type { ServeMetrics } from './serveMetrics.ts';

export type GraphQLHttpHandler = (req: IncomingMessage, res: ServerResponse, url: URL, caller: Caller) => Promise<void>;

/** The body Apollo expects: JSON for `application/json`, the text otherwise; a Response when refused. */
async function requestBody(req: IncomingMessage, headers: HeaderMap, res: ServerResponse): Promise<{ body: unknown } | undefined> {
  if (req.method !== 'POST') return { body: undefined };
  const text = await readBody(req);
  if (text === undefined) {
    sendJson(res, 413, errorBody('BAD_REQUEST', `request body larger than ${MAX_BODY_BYTES} bytes`));
    return undefined;
  }
  if (!(headers.get('content-type') ?? '').includes('application/json')) return { body: text };
  try {
    return { body: JSON.parse(text) };
  } catch {
    sendJson(res, 400, errorBody('BAD_REQUEST', 'request body is not valid JSON'));
    return undefined;
  }
}

/** Query texts whose shape was checked lately, and the refusal if any (clients repeat their queries). */
const SHAPE_MEMO_LIMIT = 1000;

/**
 * The shape limits (aliases, root fields: serving/graphql/limits.ts enforceShape), checked on the
 * text before Apollo parses and validates it: validation of a document of thousands of fields of
 * one name is quadratic, and Apollo's hooks cannot refuse a request before validation (an error
 * thrown there becomes a 500). The text is parsed once more here, once per distinct text.
 */
function shapeChecker(config: ServeConfig): (query: unknown) => GraphQLError | undefined {
  const memo = new Map<string, GraphQLError | null>();
  return (query) => {
    if (typeof query !== 'string') return undefined;
    let refusal = memo.get(query);
    if (refusal === undefined) {
      refusal = null;
      try {
        enforceShape(parse(query, { noLocation: true }), config);
      } catch (err) {
        // A syntax error is Apollo's to report (GRAPHQL_PARSE_FAILED); a refusal is ours.
        if (err instanceof GraphQLError && err.extensions.code && err.extensions.http) refusal = err;
      }
      if (memo.size >= SHAPE_MEMO_LIMIT) memo.delete(memo.keys().next().value!);
      memo.set(query, refusal);
    }
    return refusal ?? undefined;
  };
}

export function graphqlHttpHandler(
  apollo: ApolloServer<ServeContext>,
  config: ServeConfig,
  makeContext: (caller: Caller) => ServeContext,
  metrics: ServeMetrics,
  limiter: RateLimiter,
): GraphQLHttpHandler {
  const refusedShape = shapeChecker(config);
  return async (req, res, url, caller) => {
    const started = process.hrtime.bigint();
    const headers = new HeaderMap();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    const read = await requestBody(req, headers, res);
    if (!read) return;
    const { body } = read;
    const query =
      typeof body === 'object' && body !== null && 'query' in body ? (body as { query: unknown }).query : url.searchParams.get('query');
    const shape = refusedShape(query);
    if (shape) {
      limiter.charge(caller.client, config.resolverCost + textCost(query as string));
      metrics.requests.inc({ operation: 'unknown', outcome: 'user_error' });
      metrics.refusals.inc({ code: String(shape.extensions.code) });
      return sendJson(res, 400, { errors: [{ message: shape.message, extensions: { code: shape.extensions.code } }] });
    }
    const httpGraphQLRequest: HTTPGraphQLRequest = { method: (req.method ?? 'GET').toUpperCase(), headers, search: url.search, body };
    // The request's execution budget starts here: parsing and validation are work too.
    const context = makeContext(caller);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), config.requestTimeoutMs + 50);
    });
    const result = await Promise.race([
      apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context: async () => context }),
      timedOut,
      context.work.cutOff,
    ]).finally(() => clearTimeout(timer));
    // Named by the plugin once Apollo had the document (no second parse of the text here).
    const operation = context.rootField;
    metrics.duration.observe({ operation }, Number(process.hrtime.bigint() - started) / 1e9);
    // A request refused before admission still cost its parsing: its text is charged.
    if (context.charged === 0) limiter.charge(caller.client, config.resolverCost + textCost(typeof query === 'string' ? query : undefined));
    if (result instanceof GraphQLError) {
      // Cut off (--execution-budget): the rest of its execution is refused resolver by resolver.
      metrics.requests.inc({ operation, outcome: 'cut_off' });
      metrics.refusals.inc({ code: ErrorCode.EXECUTION_BUDGET_EXCEEDED });
      return sendJson(res, 503, { errors: [{ message: result.message, extensions: { code: ErrorCode.EXECUTION_BUDGET_EXCEEDED } }] });
    }
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
  };
}
