/**
 * The default job version: the one serving answers with when a query names none. Promotion
 * (`lk promote`, GraphQL `promote`) swaps it; promoting the previous version back is the rollback.
 *
 *   <data-dir>/versions/DEFAULT   {"version":"v2","previous":"v1","promotedAt":...,"generation":7}
 *
 * The pointer is one small JSON file replaced by rename (services/storage/atomicFile.ts): a
 * reader sees the old file or the new one, never a mix, and a crash at any step leaves one of
 * the two in place. Serving re-reads it on every poll and fixes the default version at the start
 * of each request, so one answer comes from one version. `generation` grows by one per promotion
 * and tells readers (and tests) which promotion they saw.
 *
 * With no pointer yet, the default is whatever the caller says (serving's `--version`, v1).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, errorMessage } from '../errors.ts';
import { crashPoint } from '../faults/crashPoints.ts';
import { writeFileAtomicSync } from '../storage/atomicFile.ts';
import { versionNameSchema } from './versionName.ts';
import { versionsRoot } from './versionRecord.ts';

export const defaultVersionSchema = z
  .object({
    version: versionNameSchema,
    /** The version that was the default before (where a rollback goes), null on the first promotion. */
    previous: versionNameSchema.nullable(),
    /** Epoch ms. */
    promotedAt: z.number().int().nonnegative(),
    generation: z.number().int().positive(),
    /** Whether the promotion skipped its checks (--force), with the checks it skipped. */
    forced: z.array(z.string()).default([]),
  })
  .strict();
export type DefaultVersion = z.infer<typeof defaultVersionSchema>;

export function defaultVersionPath(dataDir: string): string {
  return join(versionsRoot(dataDir), 'DEFAULT');
}

/** The pointer, or undefined when no version was ever promoted. A damaged pointer is an error, never ignored. */
export function readDefaultVersion(dataDir: string): DefaultVersion | undefined {
  const path = defaultVersionPath(dataDir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read the default version ${path}: ${errorMessage(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`the default version ${path} is not JSON (${errorMessage(err)}); promote a version again to rewrite it`);
  }
  const parsed = defaultVersionSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`the default version ${path} is invalid: ${issue.path.join('.') || '(root)'} ${issue.message}`);
  }
  return parsed.data;
}

/** The default version's name: the pointer's, else `fallback`. */
export function currentDefaultVersion(dataDir: string, fallback: string): string {
  return readDefaultVersion(dataDir)?.version ?? fallback;
}

/**
 * Makes `version` the default, atomically. `fallback` is the default assumed when there is no
 * pointer yet (it becomes `previous`). Promoting the current default again changes nothing.
 */
export function writeDefaultVersion(dataDir: string, version: string, fallback: string, forced: readonly string[] = []): DefaultVersion {
  const before = readDefaultVersion(dataDir);
  const current = before?.version ?? fallback;
  if (before && before.version === version) return before;
  const next: DefaultVersion = {
    version,
    previous: current === version ? (before?.previous ?? null) : current,
    promotedAt: Date.now(),
    generation: (before?.generation ?? 0) + 1,
    forced: [...forced],
  };
  writeFileAtomicSync(defaultVersionPath(dataDir), `${JSON.stringify(next)}\n`, 'versions.promote.before-rename');
  crashPoint('versions.promote.renamed');
  return next;
}
