/**
 * GraphQL subscriptions over WebSocket (graphql-ws) on /graphql: the same auth (the bearer header,
 * or connectionParams {authorization}), validation and query limits as HTTP queries.
 */
import type { IncomingMessage, Server } from 'node:http';
import { GraphQLError, getOperationAST, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql/index.js';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { errorMessage } from '../../services/errors.ts';
import type { ServeConfig } from '../config.ts';
import { enforceLimits } from '../graphql/limits.ts';
import type { ServeContext } from '../graphql/resolvers.ts';
import type { BearerAuth } from './auth.ts';
import type { ServeMetrics } from './serveMetrics.ts';

export interface SubscriptionEndpoint {
  close(): Promise<void>;
}

export function attachSubscriptions(
  server: Server,
  schema: GraphQLSchema,
  config: ServeConfig,
  auth: BearerAuth,
  makeContext: () => ServeContext,
  metrics: ServeMetrics,
): SubscriptionEndpoint {
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
        if (!auth.required) return true;
        const fromParams = ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        const ok = auth.authorized(ctx.extra.request) || auth.matches(fromParams);
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
        // A subscription lives long: only its setup is bounded by the request timeout.
        return {
          schema,
          document,
          operationName: payload.operationName ?? null,
          variableValues: payload.variables ?? null,
          contextValue: makeContext(),
        };
      },
    },
    wss,
  );
  return {
    async close() {
      await wsServer.dispose();
      wss.close();
    },
  };
}
