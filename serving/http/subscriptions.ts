/**
 * GraphQL subscriptions over WebSocket (graphql-ws) on /graphql, under the same rules as HTTP
 * queries: the same authentication (the bearer header, or connectionParams {authorization}), the
 * same roles, the same shape, depth and cost limits, and the same budgets:
 * - starting a subscription is a request: admitted by the client's rate limit, its cost taken;
 * - at most `--max-subscriptions` open per client;
 * - each event delivered costs the subscription's cost again: a client in debt receives its next
 *   events once its bucket allows (they are coalesced meanwhile, never queued: serving/subscriptions.ts);
 * - each event is executed within a fresh `--execution-budget`.
 */
import type { IncomingMessage, Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { GraphQLError, getOperationAST, parse, validate, type DocumentNode, type GraphQLSchema } from 'graphql/index.js';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';
import { errorMessage } from '../../services/errors.ts';
import type { Authenticator } from '../auth/authenticator.ts';
import { may } from '../auth/roles.ts';
import type { ServeConfig } from '../config.ts';
import { ErrorCode, requestError } from '../graphql/errors.ts';
import { enforceLimits, enforceShape, type LimitsOptions } from '../graphql/limits.ts';
import type { Caller, ServeContext } from '../graphql/resolvers.ts';
import { forbiddenMessage } from '../graphql/versionResolvers.ts';
import { clientKey, type RateLimiter } from './rateLimiter.ts';
import { rateLimited } from './refusals.ts';
import type { ServeMetrics } from './serveMetrics.ts';

export interface SubscriptionEndpoint {
  close(): Promise<void>;
}

export interface SubscriptionOptions {
  server: Server;
  schema: GraphQLSchema;
  config: ServeConfig;
  auth: Authenticator;
  limits: LimitsOptions;
  limiter: RateLimiter;
  makeContext: (caller: Caller) => ServeContext;
  metrics: ServeMetrics;
}

interface ConnectionExtra extends Record<PropertyKey, unknown> {
  request: IncomingMessage;
  caller?: Caller;
  /** Subscription ids admitted on this connection (each counted in its client's open subscriptions). */
  admitted?: Set<string>;
}

export function attachSubscriptions(options: SubscriptionOptions): SubscriptionEndpoint {
  const { server, schema, config, auth, limits, limiter, makeContext, metrics } = options;
  const openPerClient = new Map<string, number>();
  const refused = (err: GraphQLError): GraphQLError[] => {
    metrics.refusals.inc({ code: String(err.extensions.code ?? 'unknown') });
    return [err];
  };

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://serve');
    if (url.pathname !== '/graphql') return socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  const wsServer = useServer<Record<string, unknown> | undefined, ConnectionExtra>(
    {
      schema,
      async onConnect(ctx) {
        const header =
          ctx.extra.request.headers.authorization ?? ctx.connectionParams?.authorization ?? ctx.connectionParams?.Authorization;
        const addressKey = clientKey(undefined, ctx.extra.request.socket.remoteAddress);
        if (auth.required && limiter.blockedFor(addressKey) > 0) {
          metrics.refusals.inc({ code: ErrorCode.RATE_LIMITED });
          return false;
        }
        const result = await auth.authenticate(header);
        if (!result.ok) {
          metrics.requests.inc({ operation: 'subscription', outcome: 'unauthenticated' });
          metrics.refusals.inc({ code: ErrorCode.UNAUTHENTICATED });
          // As over HTTP: refused tokens cost their address (guessing tokens is rate limited).
          limiter.charge(addressKey, config.resolverCost * 10);
          return false; // closes the socket with 4403 Forbidden
        }
        const principal = result.principal;
        ctx.extra.caller = {
          principal,
          client: clientKey(principal.via === 'anonymous' ? undefined : principal.name, ctx.extra.request.socket.remoteAddress),
        };
        ctx.extra.admitted = new Set();
        return true;
      },
      async onSubscribe(ctx, id, payload) {
        const caller = ctx.extra.caller!;
        let document: DocumentNode;
        try {
          document = parse(payload.query);
          enforceShape(document, config);
        } catch (err) {
          limiter.charge(caller.client, config.resolverCost);
          if (err instanceof GraphQLError && err.extensions.code) return refused(err);
          return [err instanceof GraphQLError ? err : new GraphQLError(errorMessage(err))];
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors;
        const operation = getOperationAST(document, payload.operationName ?? undefined);
        if (!operation) return [new GraphQLError('no operation to run', { extensions: { code: 'OPERATION_RESOLUTION_FAILURE' } })];
        const op = operation.operation === 'subscription' ? 'subscribe' : 'query';
        if (operation.operation === 'mutation') {
          return [new GraphQLError('send mutations over HTTP POST', { extensions: { code: 'BAD_REQUEST' } })];
        }
        if (!may(caller.principal, op)) {
          return refused(requestError(ErrorCode.FORBIDDEN, forbiddenMessage(caller.principal.name, caller.principal.role, op), 403));
        }
        let cost: number;
        try {
          cost = enforceLimits(document, operation, payload.variables ?? undefined, limits, payload.query);
        } catch (err) {
          return refused(err as GraphQLError);
        }
        const open = openPerClient.get(caller.client) ?? 0;
        if (op === 'subscribe' && open >= config.maxSubscriptions) {
          return refused(
            requestError(
              ErrorCode.TOO_MANY_SUBSCRIPTIONS,
              `${caller.principal.name} already has ${open} subscriptions open; the limit is ${config.maxSubscriptions} per client (--max-subscriptions)`,
              429,
            ),
          );
        }
        const admission = await limiter.admit(caller.client, cost);
        if (!admission.admitted) return refused(rateLimited(caller.client, admission.retryAfterMs, config));
        if (op === 'subscribe') {
          openPerClient.set(caller.client, open + 1);
          ctx.extra.admitted!.add(id);
        }
        const contextValue = makeContext(caller);
        contextValue.charged = cost;
        // Each event: its cost taken from the client's bucket (waiting while in debt), a fresh execution budget.
        contextValue.beforeEvent = async () => {
          for (;;) {
            const a = await limiter.admit(caller.client, cost);
            if (a.admitted) break;
            metrics.refusals.inc({ code: ErrorCode.RATE_LIMITED });
            await sleep(a.retryAfterMs);
          }
          contextValue.work.renew();
        };
        // A subscription lives long: only its setup is bounded by the request timeout.
        return {
          schema,
          document,
          operationName: payload.operationName ?? null,
          variableValues: payload.variables ?? null,
          contextValue,
        };
      },
      onComplete(ctx, id) {
        const caller = ctx.extra.caller;
        if (!caller || !ctx.extra.admitted?.delete(id)) return;
        const left = (openPerClient.get(caller.client) ?? 1) - 1;
        if (left <= 0) openPerClient.delete(caller.client);
        else openPerClient.set(caller.client, left);
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
