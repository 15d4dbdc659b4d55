/**
 * The refusals that depend on who calls rather than on what is asked: too many requests (429,
 * with Retry-After) and unauthenticated (401). Each names the flag that sets the limit.
 */
import type { ServeConfig } from '../config.ts';
import { ErrorCode, requestError } from '../graphql/errors.ts';
import { retryAfterSeconds } from './rateLimiter.ts';

function clientText(client: string): string {
  const [kind, ...rest] = client.split(':');
  return kind === 'token' ? `the token "${rest.join(':')}"` : `the address ${rest.join(':')}`;
}

export function rateLimitedMessage(client: string, retryAfterMs: number, config: Pick<ServeConfig, 'rateLimit' | 'rateBurst'>): string {
  return `${clientText(client)} has spent its budget of ${config.rateLimit} cost units per second (--rate-limit; at most ${config.rateBurst} at once, --rate-burst): retry after ${retryAfterSeconds(retryAfterMs)} s`;
}

/** HTTP 429 RATE_LIMITED with Retry-After. */
export function rateLimited(client: string, retryAfterMs: number, config: Pick<ServeConfig, 'rateLimit' | 'rateBurst'>) {
  return requestError(ErrorCode.RATE_LIMITED, rateLimitedMessage(client, retryAfterMs, config), 429, {
    'retry-after': retryAfterSeconds(retryAfterMs),
  });
}
