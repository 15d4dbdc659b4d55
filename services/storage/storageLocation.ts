/**
 * Where a store lives, as users write it (`--lake-uri`, `--state-uri`): a local path, a
 * `file://` URL, or `s3://bucket/prefix`. S3 is configured by the standard AWS settings, read
 * from the environment and validated here:
 *
 *   AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3)  an S3-compatible server; path-style addressing is
 *                                             then used (`http://host:port/bucket/key`), which
 *                                             every S3-compatible server understands
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
 *                                             credentials; without them the SDK's default chain
 *                                             (profiles, instance roles) is used
 *   AWS_REGION (or AWS_DEFAULT_REGION)        default us-east-1
 *   AWS_S3_FORCE_PATH_STYLE=true|false        overrides the addressing style
 *   AWS_MAX_ATTEMPTS                          attempts per request (default 3)
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { LocalObjectStore } from './localObjectStore.ts';
import type { ObjectStore } from './objectStore.ts';

export type StorageLocation = { kind: 'local'; path: string } | { kind: 's3'; bucket: string; prefix: string };

export interface S3Settings {
  endpoint?: string | undefined;
  region: string;
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  sessionToken?: string | undefined;
  pathStyle: boolean;
  maxAttempts: number;
}

// Bucket names as S3 allows them (3-63 characters, lower case, digits, dots and hyphens).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses a store location; `what` names the flag in errors (`--lake-uri`). */
export function parseStorageLocation(text: string, what: string): StorageLocation {
  const value = text.trim();
  if (value === '') throw new ConfigError(`${what} is empty: give a local path or s3://bucket/prefix`);
  if (/^s3a?:\/\//i.test(value)) {
    const m = /^s3a?:\/\/([^/]+)\/?(.*)$/i.exec(value)!;
    const bucket = m[1]!;
    if (!BUCKET.test(bucket)) {
      throw new ConfigError(
        `${what} ${JSON.stringify(value)}: "${bucket}" is not a valid bucket name (3-63 lower-case letters, digits, dots, hyphens)`,
      );
    }
    const prefix = m[2]!.replace(/\/+$/, '');
    if (prefix.split('/').some((s) => s === '' || s === '.' || s === '..') && prefix !== '') {
      throw new ConfigError(`${what} ${JSON.stringify(value)}: the prefix has an empty, "." or ".." segment`);
    }
    return { kind: 's3', bucket, prefix };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value) && !/^file:\/\//i.test(value)) {
    throw new ConfigError(`${what} ${JSON.stringify(value)}: only local paths, file:// and s3:// locations are supported`);
  }
  return { kind: 'local', path: /^file:\/\//i.test(value) ? fileURLToPath(value) : resolve(value) };
}

const boolText = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const envSchema = z.object({
  AWS_ENDPOINT_URL_S3: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  AWS_ENDPOINT_URL: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  AWS_REGION: z.string().min(1).optional(),
  AWS_DEFAULT_REGION: z.string().min(1).optional(),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  AWS_SESSION_TOKEN: z.string().min(1).optional(),
  AWS_S3_FORCE_PATH_STYLE: boolText.optional(),
  AWS_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(20).optional(),
});

/** The S3 settings of `env` (process.env by default), validated; secrets are never in the errors. */
export function s3SettingsFromEnv(env: NodeJS.ProcessEnv = process.env): S3Settings {
  const picked = Object.fromEntries(
    Object.keys(envSchema.shape).flatMap((k) => (env[k] !== undefined && env[k] !== '' ? [[k, env[k]]] : [])),
  );
  const parsed = envSchema.safeParse(picked);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`invalid ${String(issue.path[0])}: ${issue.message}`);
  }
  const e = parsed.data;
  if ((e.AWS_ACCESS_KEY_ID === undefined) !== (e.AWS_SECRET_ACCESS_KEY === undefined)) {
    throw new ConfigError(
      'set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (then the default AWS credential chain is used)',
    );
  }
  const endpoint = (e.AWS_ENDPOINT_URL_S3 ?? e.AWS_ENDPOINT_URL)?.replace(/\/+$/, '');
  return {
    endpoint,
    region: e.AWS_REGION ?? e.AWS_DEFAULT_REGION ?? 'us-east-1',
    accessKeyId: e.AWS_ACCESS_KEY_ID,
    secretAccessKey: e.AWS_SECRET_ACCESS_KEY,
    sessionToken: e.AWS_SESSION_TOKEN,
    pathStyle: e.AWS_S3_FORCE_PATH_STYLE ?? endpoint !== undefined,
    maxAttempts: e.AWS_MAX_ATTEMPTS ?? 3,
  };
}

/**
 * Opens the store at `location`. The S3 implementation (and the AWS SDK) is loaded only when a
 * location is on S3, so that commands that never touch S3 start as fast as before.
 */
export async function openObjectStore(
  location: StorageLocation | string,
  what = 'the store location',
  env: NodeJS.ProcessEnv = process.env,
): Promise<ObjectStore> {
  const loc = typeof location === 'string' ? parseStorageLocation(location, what) : location;
  if (loc.kind === 'local') return new LocalObjectStore(loc.path);
  const { S3ObjectStore } = await import('./s3ObjectStore.ts');
  return new S3ObjectStore(s3SettingsFromEnv(env), loc.bucket, loc.prefix);
}

/** The location as users wrote it, for messages and status (never a credential). */
export function describeLocation(loc: StorageLocation): string {
  return loc.kind === 'local' ? loc.path : `s3://${loc.bucket}${loc.prefix ? `/${loc.prefix}` : ''}`;
}
