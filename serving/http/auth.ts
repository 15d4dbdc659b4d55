/**
 * Optional bearer-token auth: with a token configured, every request except /healthz and /readyz
 * needs `Authorization: Bearer <token>` (WebSocket: the same header, or connectionParams
 * {authorization}). Tokens are compared as SHA-256 digests: constant time, whatever the length.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export interface BearerAuth {
  /** Whether the request carries the token (always true without a configured token). */
  authorized(req: IncomingMessage): boolean;
  /** Whether a header value (or connection parameter) is `Bearer <token>`. */
  matches(header: unknown): boolean;
  readonly required: boolean;
}

export function bearerAuth(token: string | null): BearerAuth {
  const expected = token === null ? undefined : digest(token);
  const matches = (header: unknown): boolean => {
    if (expected === undefined) return true;
    if (typeof header !== 'string') return false;
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    return m !== null && timingSafeEqual(digest(m[1]!), expected);
  };
  return { authorized: (req) => matches(req.headers.authorization), matches, required: expected !== undefined };
}
