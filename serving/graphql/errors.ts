/**
 * The errors a client can get, each with a stable `extensions.code` (clients branch on the
 * code, never on the message) and a message that says what to change. Nothing else leaves the
 * server: unexpected errors are masked in formatError (serving/http/server.ts).
 */
import { HeaderMap } from '@apollo/server';
import { GraphQLError } from 'graphql/index.js';

export const ErrorCode = {
  UNKNOWN_METRIC: 'UNKNOWN_METRIC',
  UNSUPPORTED_GRANULARITY: 'UNSUPPORTED_GRANULARITY',
  /** `sessions` of a metric with tumbling windows (granularities), not session: { gap }. */
  NOT_A_SESSION_METRIC: 'NOT_A_SESSION_METRIC',
  INVALID_KEY: 'INVALID_KEY',
  INVALID_RANGE: 'INVALID_RANGE',
  INVALID_PERCENTILE: 'INVALID_PERCENTILE',
  RANGE_TOO_LARGE: 'RANGE_TOO_LARGE',
  /** The range holds windows older than the metric's retention (services/metrics/retention.ts). */
  OUTSIDE_RETENTION: 'OUTSIDE_RETENTION',
  LIMIT_OUT_OF_BOUNDS: 'LIMIT_OUT_OF_BOUNDS',
  INVALID_VERSION: 'INVALID_VERSION',
  TOO_MANY_VERSIONS: 'TOO_MANY_VERSIONS',
  PROMOTION_REFUSED: 'PROMOTION_REFUSED',
  QUERY_TOO_DEEP: 'QUERY_TOO_DEEP',
  QUERY_TOO_COSTLY: 'QUERY_TOO_COSTLY',
  TOO_MANY_ALIASES: 'TOO_MANY_ALIASES',
  TOO_MANY_ROOT_FIELDS: 'TOO_MANY_ROOT_FIELDS',
  EXECUTION_BUDGET_EXCEEDED: 'EXECUTION_BUDGET_EXCEEDED',
  RATE_LIMITED: 'RATE_LIMITED',
  TOO_MANY_SUBSCRIPTIONS: 'TOO_MANY_SUBSCRIPTIONS',
  REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  RETIREMENT_REFUSED: 'RETIREMENT_REFUSED',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An error the client caused and can fix (HTTP 200 with `errors`, per GraphQL over HTTP). */
export function userError(code: ErrorCode, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code } });
}

/** An error that rejects the whole request before execution, with its HTTP status (and headers, e.g. Retry-After). */
export function requestError(code: ErrorCode, message: string, status: number, headers?: Record<string, string>): GraphQLError {
  const http = headers ? { status, headers: new HeaderMap(Object.entries(headers)) } : { status };
  return new GraphQLError(message, { extensions: { code, http } });
}
