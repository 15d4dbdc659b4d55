/**
 * Apollo Server 5 as serving runs it: queries executed by graphql-jit through Apollo's gateway
 * interface (serving/graphql/jitExecutor.ts), the query limits enforced once the operation is
 * resolved, per-request metrics, and errors formatted so that clients see coded messages written
 * for them, never a stack trace.
 */
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import {
  GraphQLError,
  Kind,
  getOperationAST,
  type DocumentNode,
  type FieldNode,
  type GraphQLFormattedError,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from 'graphql/index.js';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { audit } from '../auth/audit.ts';
import { MUTATION_OPERATIONS, may, type Operation } from '../auth/roles.ts';
import { forbiddenMessage } from '../graphql/versionResolvers.ts';
import { enforceLimits, type LimitsOptions } from '../graphql/limits.ts';
import { rateLimited } from './refusals.ts';
import type { RateLimiter } from './rateLimiter.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { ErrorCode, requestError } from '../graphql/errors.ts';
import { jitGateway, type JitQueryCache } from '../graphql/jitExecutor.ts';
import type { ServeContext } from '../graphql/resolvers.ts';
import type { ServeMetrics } from './serveMetrics.ts';

/** Codes whose messages are written for clients; anything else is masked. */
export const CLIENT_CODES = new Set<string>([
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

/** Refusals counted apart in lk_serve_graphql_requests_total's outcome. */
const OUTCOME_OF_CODE: Record<string, string> = {
  [ErrorCode.RATE_LIMITED]: 'rate_limited',
  [ErrorCode.FORBIDDEN]: 'forbidden',
  [ErrorCode.EXECUTION_BUDGET_EXCEEDED]: 'cut_off',
};

/** The name of the operation's first root field (the `operation` label of the metrics). */
export function rootFieldOf(document: DocumentNode | undefined, operationName: string | null | undefined): string {
  const op = document ? getOperationAST(document, operationName ?? undefined) : null;
  const first = op?.selectionSet.selections[0];
  return first && first.kind === 'Field' ? first.name.value : 'unknown';
}

/** The operation a request runs, for the role check: each mutation field is its own operation. */
function operationsOf(operation: OperationDefinitionNode): { operation: Operation; field: FieldNode | undefined }[] {
  if (operation.operation === 'query') return [{ operation: 'query', field: undefined }];
  if (operation.operation === 'subscription') return [{ operation: 'subscribe', field: undefined }];
  return operation.selectionSet.selections.flatMap((s) =>
    s.kind === Kind.FIELD && s.name.value !== '__typename'
      ? [{ operation: MUTATION_OPERATIONS[s.name.value] ?? ('promote' as Operation), field: s }]
      : [],
  );
}

function stringArg(field: FieldNode | undefined, name: string, variables: Record<string, unknown> | undefined): string | null {
  const value = field?.arguments?.find((a) => a.name.value === name)?.value;
  if (!value) return null;
  if (value.kind === Kind.STRING) return value.value;
  if (value.kind === Kind.VARIABLE) {
    const v = variables?.[value.name.value];
    return typeof v === 'string' ? v : null;
  }
  return null;
}

/** Refuses (HTTP 403 FORBIDDEN) an operation the caller's role may not run, with an audit line for each admin action refused. */
function enforceRole(rc: {
  operation: OperationDefinitionNode;
  request: { variables?: Record<string, unknown> };
  contextValue: ServeContext;
}) {
  const ctx = rc.contextValue;
  const { principal } = ctx.caller;
  for (const { operation, field } of operationsOf(rc.operation)) {
    if (may(principal, operation)) continue;
    if (operation === 'promote' || operation === 'rollback' || operation === 'retire') {
      const version = stringArg(field, 'version', rc.request.variables);
      audit(ctx.logger, {
        action: operation,
        who: principal,
        from: operation === 'retire' ? version : ctx.defaultVersion,
        to: operation === 'retire' ? null : version,
        outcome: 'forbidden',
        reason: `the ${principal.role} role may not ${operation}`,
      });
    }
    throw requestError(ErrorCode.FORBIDDEN, forbiddenMessage(principal.name, principal.role, operation), 403);
  }
}

export interface LimitsPluginOptions {
  config: ServeConfig;
  metrics: ServeMetrics;
  limits: LimitsOptions;
  limiter: RateLimiter;
}

function limitsAndMetricsPlugin({ config, metrics, limits, limiter }: LimitsPluginOptions): ApolloServerPlugin<ServeContext> {
  const refuse = (err: unknown): never => {
    const code = err instanceof GraphQLError ? String(err.extensions.code ?? '') : '';
    if (code) metrics.refusals.inc({ code });
    throw err;
  };
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(rc) {
          if (!rc.operation) return;
          const ctx = rc.contextValue;
          try {
            enforceRole({ operation: rc.operation, request: rc.request, contextValue: ctx });
            const cost = enforceLimits(rc.document, rc.operation, rc.request.variables, limits, rc.request.query);
            const admission = await limiter.admit(ctx.caller.client, cost);
            ctx.charged = cost;
            if (!admission.admitted) throw rateLimited(ctx.caller.client, admission.retryAfterMs, config);
          } catch (err) {
            refuse(err);
          }
        },
        async willSendResponse(rc) {
          const operation = rootFieldOf(rc.document, rc.request.operationName);
          rc.contextValue.rootField = operation;
          const errors = rc.errors ?? (rc.response.body.kind === 'single' ? rc.response.body.singleResult.errors : undefined);
          let outcome = 'ok';
          if (errors && errors.length > 0) {
            const code = String((errors[0] as GraphQLError | GraphQLFormattedError).extensions?.code ?? '');
            outcome = OUTCOME_OF_CODE[code] ?? (CLIENT_CODES.has(code) ? 'user_error' : 'error');
          }
          metrics.requests.inc({ operation, outcome });
          // Every answer says which job version served it, and which default it was asked under.
          if (rc.response.body.kind === 'single') {
            const ctx = rc.contextValue;
            const result = rc.response.body.singleResult;
            result.extensions = {
              ...result.extensions,
              versions: { default: ctx.defaultVersion, promotion: ctx.defaultGeneration, served: [...ctx.snapshots.keys()] },
            };
          }
        },
      };
    },
  };
}

/** Client codes keep their message; infrastructure failures say what is unavailable; the rest is masked and logged. */
function formatErrorFor(logger: Logger) {
  return (formatted: GraphQLFormattedError, err: unknown): GraphQLFormattedError => {
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
  };
}

export async function startApollo(
  options: LimitsPluginOptions & { schema: GraphQLSchema; jitQueries: JitQueryCache; logger: Logger },
): Promise<ApolloServer<ServeContext>> {
  const { config, schema, jitQueries, logger } = options;
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
    // No HTTP cache hints: the cache-control plugin would wrap every field of every answer. No
    // landing page: Apollo's loads its explorer from a CDN, which an offline machine cannot
    // reach; browsers get the explorer bundled at build time instead (serving/http/assets.ts).
    plugins: [limitsAndMetricsPlugin(options), ApolloServerPluginCacheControlDisabled(), ApolloServerPluginLandingPageDisabled()],
    formatError: formatErrorFor(logger),
  });
  await apollo.start();
  return apollo;
}
