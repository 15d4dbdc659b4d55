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
    /** Version served when a query names none (`views.speed.<v>` and `<dataDir>/views/<v>`). */
    defaultVersion: versionNameSchema.default('v1'),
    /**
     * The events topic: serving reads its dead-letter topic (`<topic>.dlq`) for the pipeline's
     * dead-letter counts. Serving never reads the events themselves.
     */
    eventsTopic: z.string().min(1).default('events'),
    /** Bearer token required on every request except /healthz and /readyz; null = no auth. */
    authToken: z.string().min(16, 'must be at least 16 characters').nullable().default(null),
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
    /** How often to look for a newer batch run (CURRENT). */
    batchPollMs: z.number().int().positive().default(1000),
    /** Promotion: the largest lag (records) on any partition of a version that counts as caught up. */
    promoteMaxLag: z.number().int().nonnegative().default(1000),
    /** Promotion: how far (event time) a partition's watermark may trail the live version's. */
    promoteMaxWatermarkLagMs: z.number().int().nonnegative().default(60_000),
    /** Versions that may be open at once (each holds its views in memory). */
    maxVersions: z.number().int().positive().default(4),
    dataDir: z.string().min(1),
    viewsRoot: z.string().min(1),
  })
  .strict();

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
