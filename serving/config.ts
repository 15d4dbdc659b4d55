/**
 * Serving configuration: one object, validated with zod, every key with its default and meaning
 * (the CLI flags and environment variables map onto it one to one, see serving/cli.ts).
 */
import { z } from 'zod';
import { ConfigError } from '../services/errors.ts';
import type { MetricDefinitions } from '../services/metrics/definitions.ts';
import { versionNameSchema } from '../services/versions/versionName.ts';

const DAY = 86_400_000;

export const serveConfigSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(4000),
    /** Version served when a query names none (`views.speed.<v>` and the state's `views/<v>`). */
    defaultVersion: versionNameSchema.default('v1'),
    /**
     * The events topic: serving reads its dead-letter topic (`<topic>.dlq`) for the pipeline's
     * dead-letter counts. Serving never reads the events themselves.
     */
    eventsTopic: z.string().min(1).default('events'),
    /**
     * A bearer token with the admin role (name "auth-token"), required on every request except
     * /healthz, /readyz and the pages unless another source of tokens is configured; null = none.
     */
    authToken: z.string().min(16, 'must be at least 16 characters').nullable().default(null),
    /** A file of hashed tokens with their roles and names (serving/auth/tokensFile.ts), reloaded on change. */
    tokensFile: z.string().min(1).nullable().default(null),
    /** JWT bearer tokens from an identity provider (serving/auth/jwtVerifier.ts); null = not accepted. */
    jwt: z
      .object({
        jwksFile: z.string().min(1).nullable().default(null),
        jwksUrl: z.string().url().nullable().default(null),
        audience: z.string().min(1),
        issuer: z.string().min(1).nullable().default(null),
        /** Claim holding the role (a dotted path; a string or an array of strings: admin, reader). */
        roleClaim: z.string().min(1).default('role'),
        /** Claim naming the caller in the audit lines. */
        nameClaim: z.string().min(1).default('sub'),
      })
      .strict()
      .refine((j) => (j.jwksFile === null) !== (j.jwksUrl === null), 'needs exactly one of jwksFile (--jwks-file) and jwksUrl (--jwks-url)')
      .nullable()
      .default(null),
    /** How often the tokens file, the JWKS file and the TLS files are looked at (besides file-system events). */
    reloadPollMs: z.number().int().positive().default(2000),
    /** PEM files: with both, serving answers HTTPS and WSS only. */
    tlsCert: z.string().min(1).nullable().default(null),
    tlsKey: z.string().min(1).nullable().default(null),
    introspection: z.boolean().default(true),
    /** Largest [from, to) span per granularity (series, topKeys, total, reconciliation). */
    maxRangeMs: z
      .object({
        minute: z
          .number()
          .int()
          .positive()
          .default(7 * DAY),
        hour: z
          .number()
          .int()
          .positive()
          .default(92 * DAY),
        day: z
          .number()
          .int()
          .positive()
          .default(3660 * DAY),
      })
      .default({ minute: 7 * DAY, hour: 92 * DAY, day: 3660 * DAY }),
    maxTopKeys: z.number().int().positive().default(1000),
    requestTimeoutMs: z.number().int().positive().default(10_000),
    maxDepth: z.number().int().positive().default(8),
    maxCost: z.number().int().positive().default(250_000),
    /** Aliased fields per document (checked before validation). */
    maxAliases: z.number().int().nonnegative().default(50),
    /** Root fields per operation, fragments expanded. */
    maxRootFields: z.number().int().positive().default(25),
    /** Base cost of each call of one of serving's resolvers (serving/graphql/limits.ts). */
    resolverCost: z.number().int().positive().default(100),
    /** Event-loop time one request (or one subscription event) may use before it is cut off. */
    executionBudgetMs: z.number().int().positive().default(1000),
    /** Event-loop time a request runs before it lets other requests run (yields). */
    executionSliceMs: z.number().int().positive().default(5),
    /** Per client (token, else address): cost units per second; 0 = no rate limit. */
    rateLimit: z.number().int().nonnegative().default(1_000_000),
    /** Per client: the cost units a client may spend at once (the bucket's size). */
    rateBurst: z.number().int().positive().default(2_000_000),
    /** Per client: subscriptions open at once. */
    maxSubscriptions: z.number().int().positive().default(32),
    /** How often to look for a newer batch run (CURRENT). */
    batchPollMs: z.number().int().positive().default(1000),
    /** Promotion: the largest lag (records) on any partition of a version that counts as caught up. */
    promoteMaxLag: z.number().int().nonnegative().default(1000),
    /** Promotion: how far (event time) a partition's watermark may trail the live version's. */
    promoteMaxWatermarkLagMs: z.number().int().nonnegative().default(60_000),
    /** Versions that may be open at once (each holds its views in memory). */
    maxVersions: z.number().int().positive().default(4),
    /** This host's data dir: copies of batch views read from S3 are cached in its cache/. */
    dataDir: z.string().min(1),
    /** The shared state (services/config/dataDir.ts): versions, DEFAULT, batch views, status; default the data dir. */
    stateUri: z.string().min(1).optional(),
  })
  .strict()
  .refine((c) => (c.tlsCert === null) === (c.tlsKey === null), {
    message: 'needs both tlsCert (--tls-cert) and tlsKey (--tls-key), or neither',
    path: ['tlsCert'],
  });

export type ServeConfigInput = z.input<typeof serveConfigSchema>;
export type ServeConfig = z.output<typeof serveConfigSchema> & { metrics: MetricDefinitions };

export function parseServeConfig(input: ServeConfigInput, metrics: MetricDefinitions): ServeConfig {
  const parsed = serveConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`invalid serving configuration: ${issue.path.join('.') || '(root)'} ${issue.message}`);
  }
  return { ...parsed.data, metrics };
}
