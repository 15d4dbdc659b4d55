/**
 * JWT bearer tokens from the company's identity provider, verified with `jose` (no crypto of our
 * own): RS256 or ES256 only (never `none`, never HMAC with a public key), keys from a JWKS file
 * (reloaded on change) or a JWKS URL (fetched, cached for JWKS_CACHE_MS, fetched again at most
 * every JWKS_COOLDOWN_MS when a token names a key id the cached set lacks: key rotation), the
 * audience always checked, the issuer when given, the expiry required and checked.
 *
 * The role is read from `--jwt-role-claim` (a dotted path, e.g. `realm_access.roles`): a string
 * or an array of strings holding `admin` or `reader` (admin wins when both are there). The name
 * (audit lines, rate limits) is `--jwt-name-claim` (default `sub`).
 */
import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../../services/errors.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ServeConfig } from '../config.ts';
import { WatchedFile } from '../watchedFile.ts';
import type { Principal } from './roles.ts';

export const JWT_ALGORITHMS = ['RS256', 'ES256'];
/** How long a fetched JWKS is used before it is fetched again. */
export const JWKS_CACHE_MS = 10 * 60_000;
/** The shortest time between two fetches (an unknown key id triggers one). */
export const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 5_000;
/** Clock skew allowed between the identity provider and this machine (exp, nbf, iat). */
export const JWT_CLOCK_TOLERANCE_S = 30;

const jwksSchema = z.object({ keys: z.array(z.object({ kty: z.string() }).passthrough()).min(1) }).passthrough();

/** A JWT in compact form: three base64url parts (the third empty for alg none, which is refused). */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

export type JwtResult = { ok: true; principal: Principal } | { ok: false; reason: string; unavailable?: boolean };

function claimAt(payload: JWTPayload, path: string): unknown {
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** Why jose refused a token, in words a client can act on (never the token itself). */
function refusal(err: unknown): { reason: string; unavailable?: boolean } {
  if (err instanceof errors.JWTExpired) return { reason: 'the token has expired' };
  if (err instanceof errors.JWTClaimValidationFailed) return { reason: `the token's ${err.claim} claim is not accepted (${err.reason})` };
  if (err instanceof errors.JOSEAlgNotAllowed)
    return { reason: `the token's algorithm is not accepted (only ${JWT_ALGORITHMS.join(', ')})` };
  if (err instanceof errors.JWSSignatureVerificationFailed) return { reason: "the token's signature does not verify" };
  if (err instanceof errors.JWKSNoMatchingKey) return { reason: 'no key of the JWKS matches the token' };
  if (err instanceof errors.JWKSTimeout) return { reason: 'the JWKS URL did not answer in time', unavailable: true };
  if (err instanceof errors.JOSEError) return { reason: `the token is not valid (${err.code})` };
  return { reason: `the JWKS cannot be read (${errorMessage(err)})`, unavailable: true };
}

export class JwtVerifier {
  private readonly keys: JWTVerifyGetKey;
  private readonly file: WatchedFile<JWTVerifyGetKey> | undefined;

  constructor(
    private readonly config: NonNullable<ServeConfig['jwt']>,
    options: { pollMs: number; logger: Logger },
  ) {
    if (config.jwksUrl !== null) {
      this.keys = createRemoteJWKSet(new URL(config.jwksUrl), {
        cacheMaxAge: JWKS_CACHE_MS,
        cooldownDuration: JWKS_COOLDOWN_MS,
        timeoutDuration: JWKS_TIMEOUT_MS,
      });
    } else {
      const file = new WatchedFile<JWTVerifyGetKey>({
        path: config.jwksFile!,
        what: 'JWKS file',
        pollMs: options.pollMs,
        logger: options.logger,
        parse: (text, path) => {
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch (err) {
            throw new ConfigError(`JWKS file ${path} is not JSON: ${errorMessage(err)}`);
          }
          const parsed = jwksSchema.safeParse(json);
          if (!parsed.success)
            throw new ConfigError(`JWKS file ${path} is not a JWKS ({"keys": [...]}): ${parsed.error.issues[0]!.message}`);
          return createLocalJWKSet(parsed.data as Parameters<typeof createLocalJWKSet>[0]);
        },
      });
      this.file = file;
      this.keys = (header, token) => file.value(header, token);
    }
  }

  async verify(token: string): Promise<JwtResult> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        algorithms: JWT_ALGORITHMS,
        audience: this.config.audience,
        ...(this.config.issuer !== null ? { issuer: this.config.issuer } : {}),
        requiredClaims: ['exp'],
        clockTolerance: JWT_CLOCK_TOLERANCE_S,
      }));
    } catch (err) {
      return { ok: false, ...refusal(err) };
    }
    const claim = claimAt(payload, this.config.roleClaim);
    const values = Array.isArray(claim) ? claim : [claim];
    const role = values.includes('admin') ? 'admin' : values.includes('reader') ? 'reader' : undefined;
    if (!role) return { ok: false, reason: `the token's ${this.config.roleClaim} claim holds neither admin nor reader (--jwt-role-claim)` };
    const name = claimAt(payload, this.config.nameClaim);
    return { ok: true, principal: { name: typeof name === 'string' && name !== '' ? name : 'jwt', role, via: 'jwt' } };
  }

  close(): void {
    this.file?.close();
  }
}
