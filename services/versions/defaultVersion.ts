/**
 * The default job version: the one serving answers with when a query names none. Promotion
 * (`lk promote`, GraphQL `promote`) swaps it; promoting the previous version back is the rollback.
 *
 *   versions/DEFAULT   {"version":"v2","previous":"v1","promotedAt":...,"generation":7}
 *
 * The pointer is one small object in the shared state, replaced only by a compare-and-swap on
 * the version that was read (S3 `If-Match` on its ETag; `If-None-Match: *` for the first one):
 * a promotion reads the pointer, decides, and writes its successor only if the pointer is still
 * the one it read. Of two promotions at once, on one host or two, exactly one wins; the other
 * learns who did (PromotionConflictError) and changes nothing, so `previous` always names the
 * version that really was the default and each generation is written once. A reader sees the old
 * object or the new one, never a mix.
 *
 * Serving re-reads it on every poll and fixes the default version at the start of each request,
 * so one answer comes from one version. `generation` grows by one per promotion and tells readers
 * (and tests) which promotion they saw.
 *
 * With no pointer yet, the default is whatever the caller says (serving's `--version`, v1).
 */
import { z } from 'zod';
import { ConfigError, errorMessage } from '../errors.ts';
import { crashPoint } from '../faults/crashPoints.ts';
import { readStoredJson, type StoredJson } from '../storage/jsonFile.ts';
import type { ObjectStore } from '../storage/objectStore.ts';
import { versionNameSchema } from './versionName.ts';
import { VERSIONS_PREFIX } from './versionRecord.ts';

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

export const DEFAULT_VERSION_KEY = `${VERSIONS_PREFIX}/DEFAULT`;

/** Another promotion changed the pointer between this one's read and its write: nothing was changed. */
export class PromotionConflictError extends ConfigError {
  override name = 'PromotionConflictError';
  constructor(
    readonly version: string,
    readonly winner: DefaultVersion | undefined,
  ) {
    super(
      `cannot promote "${version}": another promotion changed the default version meanwhile` +
        (winner ? ` (now "${winner.version}", promotion ${winner.generation})` : '') +
        '; nothing was changed. Look at lk versions, then promote again if it is still wanted',
    );
  }
}

/** The pointer with its ETag, or undefined when no version was ever promoted. A damaged pointer is an error, never ignored. */
export async function readDefaultVersionObject(state: ObjectStore): Promise<StoredJson<DefaultVersion> | undefined> {
  try {
    return await readStoredJson(state, DEFAULT_VERSION_KEY, defaultVersionSchema, 'the default version');
  } catch (err) {
    throw new ConfigError(`cannot read the default version: ${errorMessage(err)}; promote a version again to rewrite it`);
  }
}

/** The pointer, or undefined when no version was ever promoted. */
export async function readDefaultVersion(state: ObjectStore): Promise<DefaultVersion | undefined> {
  return (await readDefaultVersionObject(state))?.value;
}

/** The default version's name: the pointer's, else `fallback`. */
export async function currentDefaultVersion(state: ObjectStore, fallback: string): Promise<string> {
  return (await readDefaultVersion(state))?.version ?? fallback;
}

/**
 * Makes `version` the default if the pointer is still `seen` (what the caller read and decided
 * on; undefined: no pointer yet). `fallback` is the default assumed when there is no pointer yet
 * (it becomes `previous`). Promoting the current default again changes nothing. Throws
 * PromotionConflictError when another promotion moved the pointer since `seen`.
 */
export async function swapDefaultVersion(
  state: ObjectStore,
  seen: StoredJson<DefaultVersion> | undefined,
  version: string,
  fallback: string,
  forced: readonly string[] = [],
): Promise<DefaultVersion> {
  const before = seen?.value;
  const current = before?.version ?? fallback;
  if (before && before.version === version) return before;
  const next: DefaultVersion = {
    version,
    previous: current === version ? (before?.previous ?? null) : current,
    promotedAt: Date.now(),
    generation: (before?.generation ?? 0) + 1,
    forced: [...forced],
  };
  crashPoint('versions.promote.before-swap');
  const put = await state.put(DEFAULT_VERSION_KEY, `${JSON.stringify(next)}\n`, seen ? { ifMatch: seen.etag } : { ifAbsent: true });
  if (!put.ok) {
    const winner = await readDefaultVersion(state);
    // The same promotion won from another process: the outcome this one asked for.
    if (winner?.version === version) return winner;
    throw new PromotionConflictError(version, winner);
  }
  crashPoint('versions.promote.swapped');
  return next;
}
