/**
 * GraphQL over HTTP (GET and POST on /graphql): the request handed to Apollo's integration API
 * with a fresh per-request context, bounded by the request timeout, timed into the metrics.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeaderMap, type ApolloServer, type HTTPGraphQLRequest } from '@apollo/server';
import { parse } from 'graphql/index.js';
import type { ServeConfig } from '../config.ts';
import { ErrorCode } from '../graphql/errors.ts';
import type { ServeContext } from '../graphql/resolvers.ts';
import { rootFieldOf } from './apollo.ts';
import { MAX_BODY_BYTES, errorBody, readBody, sendJson } from './responses.ts';
import type { ServeMetrics } from './serveMetrics.ts';

export type GraphQLHttpHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

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

/** The root field of a query text, for the duration metric (cached: clients repeat their queries). */
function rootFieldNamer(): (query: unknown) => string {
  const cache = new Map<string, string>();
  return (query) => {
    if (typeof query !== 'string') return 'unknown';
    let name = cache.get(query);
    if (name === undefined) {
      try {
        name = rootFieldOf(parse(query), undefined);
      } catch {
        name = 'unparsable';
      }
      if (cache.size < 1000) cache.set(query, name);
    }
    return name;
  };
}

export function graphqlHttpHandler(
  apollo: ApolloServer<ServeContext>,
  config: ServeConfig,
  makeContext: () => ServeContext,
  metrics: ServeMetrics,
): GraphQLHttpHandler {
  const rootFieldFromText = rootFieldNamer();
  return async (req, res, url) => {
    const started = process.hrtime.bigint();
    const headers = new HeaderMap();
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
    const read = await requestBody(req, headers, res);
    if (!read) return;
    const { body } = read;
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
  };
}
