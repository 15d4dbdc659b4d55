/**
 * Who is calling: the bearer token of a request (the `Authorization` header, or a WebSocket's
 * `connectionParams.authorization`) becomes a Principal (name, role, source), from the first
 * source that knows it:
 *
 * 1. `--auth-token`: one shared token, role admin, name "auth-token" (compared as SHA-256
 *    digests: constant time, whatever the length);
 * 2. `--tokens-file`: hashed tokens with roles and names, reloaded on change (tokensFile.ts);
 * 3. a JWT from the identity provider, when `--jwks-file` or `--jwks-url` is set (jwtVerifier.ts):
 *    a token shaped like a JWT (three base64url parts) is then checked as a JWT only.
 *
 * With none of them configured, nothing is required and every caller is ANONYMOUS (an admin).
 * A refusal says why (missing, unknown, expired, signature, audience...), never echoes the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { WatchedFile } from '../watchedFile.ts';
import { JwtVerifier, looksLikeJwt } from './jwtVerifier.ts';
import { ANONYMOUS, type Principal } from './roles.ts';
import { TokenSet, parseTokensFile } from './tokensFile.ts';

export type AuthResult = { ok: true; principal: Principal } | { ok: false; reason: string; unavailable?: boolean };

export interface Authenticator {
  /** Whether requests need a token (some source is configured). */
  readonly required: boolean;
  /** The caller of a request from its Authorization header value (or a connection parameter). */
  authenticate(header: unknown): Promise<AuthResult>;
  /** The tokens file as loaded (reloads, failures), for /metrics and the tests. */
  readonly tokensFile: WatchedFile<TokenSet> | undefined;
  close(): void;
}

const AUTH_TOKEN_PRINCIPAL: Principal = { name: 'auth-token', role: 'admin', via: 'auth-token' };

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function createAuthenticator(
  config: Pick<ServeConfig, 'authToken' | 'tokensFile' | 'jwt' | 'reloadPollMs'>,
  logger: Logger,
): Authenticator {
  const shared = config.authToken === null ? undefined : digest(config.authToken);
  const tokensFile =
    config.tokensFile === null
      ? undefined
      : new WatchedFile<TokenSet>({
          path: config.tokensFile,
          what: 'tokens file',
          parse: (text, path) => new TokenSet(parseTokensFile(text, path)),
          onChange: (set) => logger.info({ tokens: set.size }, 'tokens file in use'),
          pollMs: config.reloadPollMs,
          logger,
        });
  const jwt = config.jwt === null ? undefined : new JwtVerifier(config.jwt, { pollMs: config.reloadPollMs, logger });
  const required = shared !== undefined || tokensFile !== undefined || jwt !== undefined;

  return {
    required,
    tokensFile,
    async authenticate(header) {
      if (!required) return { ok: true, principal: ANONYMOUS };
      if (typeof header !== 'string' || header.trim() === '') {
        return { ok: false, reason: 'missing bearer token: send Authorization: Bearer <token>' };
      }
      const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
      if (!m) return { ok: false, reason: 'the Authorization header is not "Bearer <token>"' };
      const token = m[1]!;
      if (shared && timingSafeEqual(digest(token), shared)) return { ok: true, principal: AUTH_TOKEN_PRINCIPAL };
      // A JWT goes to the JWT verifier only: every session's token is new, and trying it against
      // the file's scrypt entries first would cost tens of milliseconds each time.
      if (jwt && looksLikeJwt(token)) return jwt.verify(token);
      const fromFile = await tokensFile?.value.lookup(token);
      if (fromFile) return { ok: true, principal: fromFile };
      return { ok: false, reason: 'unknown bearer token' };
    },
    close() {
      tokensFile?.close();
      jwt?.close();
    },
  };
}
