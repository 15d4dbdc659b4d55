/** JSON files and objects the platform keeps (records, metadata, manifests): read and checked against their schema. */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { InfrastructureError } from '../errors.ts';
import type { ObjectStore } from './objectStore.ts';

/**
 * The file at `path` parsed with `schema`, or undefined when it does not exist. A file that
 * cannot be read, is not JSON or does not match says so with its path (`what` names the kind:
 * "a version record").
 */
export function readJsonFile<T>(path: string, schema: z.ZodType<T>, what: string): T | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InfrastructureError(`cannot read ${path}: ${(err as Error).message}`);
  }
  return parseJsonText(text, schema, what, path);
}

/** A JSON object read from a store, with the version tag it had (for a compare-and-swap). */
export interface StoredJson<T> {
  value: T;
  etag: string;
}

/**
 * The object `key` of `store` parsed with `schema`, with its ETag, or undefined when it does not
 * exist; errors as readJsonFile's, naming the object (`s3://bucket/prefix/key` or a path).
 */
export async function readStoredJson<T>(
  store: ObjectStore,
  key: string,
  schema: z.ZodType<T>,
  what: string,
): Promise<StoredJson<T> | undefined> {
  const object = await store.get(key);
  if (!object) return undefined;
  return { value: parseJsonText(object.bytes.toString('utf8'), schema, what, `${store.location}/${key}`), etag: object.etag };
}

/** Parses `text` (read from `where`) with `schema`; the error names `where` and `what` it should hold. */
export function parseJsonText<T>(text: string, schema: z.ZodType<T>, what: string, where: string): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InfrastructureError(`${where} is not JSON (it should hold ${what})`);
  }
  const result = schema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new InfrastructureError(
      `${where} is not ${what}: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}`,
    );
  }
  return result.data;
}
