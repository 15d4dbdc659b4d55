/** JSON files the platform keeps (records, metadata, manifests): read and checked against their schema. */
import { readFileSync } from 'node:fs';
import type { z } from 'zod';
import { InfrastructureError } from '../errors.ts';

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
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InfrastructureError(`${path} is not JSON (it should hold ${what})`);
  }
  const result = schema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new InfrastructureError(`${path} is not ${what}: ${issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid'}`);
  }
  return result.data;
}
