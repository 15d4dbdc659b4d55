/**
 * Apollo Server 5 as serving runs it: queries executed by graphql-jit through Apollo's gateway
 * interface (serving/graphql/jitExecutor.ts), the query limits enforced once the operation is
 * resolved, per-request metrics, and errors formatted so that clients see coded messages written
 * for them, never a stack trace.
 */
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, getOperationAST, type DocumentNode, type GraphQLFormattedError, type GraphQLSchema } from 'graphql/index.js';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { ErrorCode } from '../graphql/errors.ts';
import { jitGateway, type JitQueryCache } from '../graphql/jitExecutor.ts';
import { enforceLimits } from '../graphql/limits.ts';
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

/** The name of the operation's first root field (the `operation` label of the metrics). */
export function rootFieldOf(document: DocumentNode | undefined, operationName: string | null | undefined): string {
  const op = document ? getOperationAST(document, operationName ?? undefined) : null;
  const first = op?.selectionSet.selections[0];
  return first && first.kind === 'Field' ? first.name.value : 'unknown';
}

function limitsAndMetricsPlugin(config: ServeConfig, metrics: ServeMetrics): ApolloServerPlugin<ServeContext> {
  return {
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
  config: ServeConfig,
  schema: GraphQLSchema,
  jitQueries: JitQueryCache,
  metrics: ServeMetrics,
  logger: Logger,
): Promise<ApolloServer<ServeContext>> {
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
    plugins: [limitsAndMetricsPlugin(config, metrics), ApolloServerPluginCacheControlDisabled(), ApolloServerPluginLandingPageDisabled()],
    formatError: formatErrorFor(logger),
  });
  await apollo.start();
  return apollo;
}
