/**
 * Retention: how long the windows of each size are kept, and the one rule that says when a window
 * has expired. The speed layer deletes an expired window's rows from its view topic with
 * tombstones and forgets it (streaming/state/partitionState.ts); serving evicts the window's rows
 * and refuses a query that asks for it (serving/views/versionView.ts, serving/graphql/resolvers.ts).
 * Both apply `isWindowExpired` below, and nothing else.
 *
 * "Now" is event time, never the wall clock: a window [start, start + size) kept for R has
 * expired once the watermark is past start + size + R (`watermark > start + size + R`, the shape
 * of the closing rule in windowClosing.ts). For the speed layer the watermark is its partition's;
 * for serving it is the largest watermark the view has shown (docs/guarantees.md, "Retention"),
 * so that a replay of old data keeps its windows exactly as a live run did.
 *
 * In the metric file, `retention:` maps a window size to a duration, at the top of the file (for
 * every metric) and in a metric (for its own windows), over the defaults below:
 *
 *     retention: { minute: 7d, hour: 90d, day: 1825d }
 *
 * A size is named `minute`, `hour`, `day` or written as a duration (`5m`, `6h`, `7d`: the
 * tumbling windows of any size). A size with no entry of its own is kept as long as the next
 * coarser named size that covers it (5m as hour, 6h as day; beyond a day, as day).
 */
import { z } from 'zod';
import { formatDuration, parseDuration } from '../config/durations.ts';
import { windowStartOf } from './windowStart.ts';

/** The named sizes, finest first, with their window size. */
const NAMED_SIZES = [
  ['minute', 60_000],
  ['hour', 3_600_000],
  ['day', 86_400_000],
] as const;

/** The defaults: bounded memory for a service that runs for years (docs/metrics.md, "Retention"). */
export const DEFAULT_RETENTION_MS: Readonly<Record<string, number>> = {
  minute: 7 * 86_400_000,
  hour: 90 * 86_400_000,
  day: 1825 * 86_400_000,
};

/** Window size -> how long its windows are kept (ms), by the size's canonical name. */
export type RetentionPolicy = Readonly<Record<string, number>>;

const SIZE = /^\d+(s|m|h|d)$/;

/** The canonical name of a size written as minute, hour, day or a duration (`60m` is hour), or undefined. */
export function retentionSizeName(text: string): string | undefined {
  for (const [name] of NAMED_SIZES) if (text === name) return name;
  if (!SIZE.test(text)) return undefined;
  const ms = parseDuration(text)!;
  if (ms <= 0) return undefined;
  for (const [name, size] of NAMED_SIZES) if (size === ms) return name;
  return formatDuration(ms);
}

/** The `retention:` section: size -> duration, each checked with a message that names it. */
export const retentionSchema = z.record(z.string(), z.string()).superRefine((entries, ctx) => {
  const seen = new Map<string, string>();
  for (const [size, duration] of Object.entries(entries)) {
    const name = retentionSizeName(size);
    if (name === undefined)
      ctx.addIssue({
        code: 'custom',
        path: [size],
        message: `expected a window size: minute, hour, day or a duration such as 5m or 6h, got ${JSON.stringify(size)}`,
      });
    else if (seen.has(name))
      ctx.addIssue({ code: 'custom', path: [size], message: `names the same window size as ${JSON.stringify(seen.get(name))}` });
    else seen.set(name, size);
    const ms = parseDuration(duration);
    if (ms === undefined || ms <= 0)
      ctx.addIssue({
        code: 'custom',
        path: [size],
        message: `must be a positive duration such as 7d, 90d or 1825d, got ${JSON.stringify(duration)}`,
      });
  }
});

/** The policy of a metric: the defaults, then the file's `retention:`, then the metric's own. */
export function resolveRetention(...layers: (Record<string, string> | undefined)[]): RetentionPolicy {
  const policy: Record<string, number> = { ...DEFAULT_RETENTION_MS };
  for (const layer of layers)
    for (const [size, duration] of Object.entries(layer ?? {})) {
      // Entries retentionSchema refuses are reported there; skipped here.
      const name = retentionSizeName(size);
      const ms = parseDuration(duration);
      if (name !== undefined && ms !== undefined && ms > 0) policy[name] = ms;
    }
  return policy;
}

/**
 * How long windows of `sizeMs` (canonical name `name`) are kept: their own entry, else the next
 * coarser named size that covers them (the coarsest for sizes beyond a day).
 */
export function retentionMsOf(policy: RetentionPolicy | undefined, name: string, sizeMs: number): number {
  policy ??= DEFAULT_RETENTION_MS;
  const own = policy[name] ?? policy[formatDuration(sizeMs)];
  if (own !== undefined) return own;
  for (const [named, size] of NAMED_SIZES) if (sizeMs <= size) return policy[named]!;
  return policy.day!;
}

/** The watermark past which window [start, start + sizeMs) kept for `retentionMs` has expired. */
export function windowExpiresAt(start: number, sizeMs: number, retentionMs: number): number {
  return start + sizeMs + retentionMs;
}

/** Whether a window that expires at `expiresAt` (windowExpiresAt) has expired under `watermark`. */
export function isWindowExpired(expiresAt: number, watermark: number): boolean {
  return watermark > expiresAt;
}

/** The start of the oldest window of `sizeMs` that has not expired under `watermark`. */
export function oldestKeptWindowStart(watermark: number, sizeMs: number, retentionMs: number, originMs = 0): number {
  // Expired: watermark > start + size + R, i.e. start <= watermark - size - R - 1; the next window is kept.
  return windowStartOf(watermark - sizeMs - retentionMs - 1, sizeMs, originMs) + sizeMs;
}

/**
 * Why a retention cannot work with a metric's lateness, or undefined: a window must close before
 * it expires (its final row is published, then deleted), so the retention must exceed the
 * allowed lateness.
 */
export function retentionProblem(name: string, retentionMs: number, latenessMs: number): string | undefined {
  if (retentionMs > latenessMs) return undefined;
  return `${name} windows are kept for ${formatDuration(retentionMs)}, which must be longer than allowedLateness ${formatDuration(latenessMs)} (a window would expire before it closes); set retention.${name}`;
}
