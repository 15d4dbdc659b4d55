/**
 * The window rule, once for both engines: tumbling windows of any size aligned to the UTC epoch,
 * except that windows of whole weeks start on a Monday. The window of an event time `ts` (epoch
 * ms) starts at origin + floor((ts - origin) / size) x size, where origin is 0 (1970-01-01T00:00Z,
 * a Thursday) or, for sizes that are a multiple of 7 days, 1970-01-05T00:00Z (the first Monday).
 * So `5m` windows start at :00, :05, ...; `6h` at 00:00, 06:00, 12:00, 18:00 UTC; `7d` on Mondays
 * at 00:00 UTC; `2d` on the even days since the epoch.
 *
 * Exact in both engines for every integer event time below 2^53, before 1970 included: DuckDB's
 * `//` truncates towards zero, so the SQL uses the floor modulo ((t % size) + size) % size
 * (% on BIGINT is exact); JavaScript's `Math.floor(t / size)` rounds the quotient first, so the
 * JavaScript corrects that by one window where it is off (cheaper on the hot path than two
 * floating-point remainders; t - start is exact).
 * `__tests__/fieldSemantics.differential.spec.ts` compares the two on generated and edge times.
 */
import { granularityMs, type Granularity } from './definitions.ts';

const DAY_MS = 86_400_000;
const WEEK_MS = 7 * DAY_MS;
/** 1970-01-05T00:00:00Z, the first Monday after the epoch: where weekly windows are aligned. */
export const MONDAY_ORIGIN_MS = 4 * DAY_MS;

/** Where windows of `sizeMs` are aligned: the epoch, or the first Monday for whole weeks. */
export function windowOriginMs(sizeMs: number): number {
  return sizeMs % WEEK_MS === 0 ? MONDAY_ORIGIN_MS : 0;
}

/** The tumbling window of a granularity: its size and alignment. */
export interface WindowShape {
  readonly sizeMs: number;
  readonly originMs: number;
}

export function windowShape(granularity: Granularity): WindowShape {
  const sizeMs = granularityMs(granularity);
  return { sizeMs, originMs: windowOriginMs(sizeMs) };
}

/** Start of the window of `sizeMs` aligned at `originMs` holding `tsMs`. */
export function windowStartOf(tsMs: number, sizeMs: number, originMs = 0): number {
  const t = tsMs - originMs;
  let start = Math.floor(t / sizeMs) * sizeMs;
  if (start > t) start -= sizeMs;
  else if (t - start >= sizeMs) start += sizeMs;
  return start + originMs;
}

export function windowStart(tsMs: number, granularity: Granularity): number {
  const w = windowShape(granularity);
  return windowStartOf(tsMs, w.sizeMs, w.originMs);
}

/** The first window start at or after `tsMs` (a range's first window). */
export function windowStartAtOrAfter(tsMs: number, sizeMs: number, originMs = 0): number {
  const start = windowStartOf(tsMs, sizeMs, originMs);
  return start === tsMs ? start : start + sizeMs;
}

/** SQL for the same rule over a BIGINT expression of epoch milliseconds. */
export function windowStartSql(tsExpr: string, sizeMs: number, originMs = 0): string {
  if (originMs === 0) return `(${tsExpr} - (((${tsExpr}) % ${sizeMs}) + ${sizeMs}) % ${sizeMs})`;
  const t = `((${tsExpr}) - ${originMs})`;
  return `(${tsExpr} - ((${t} % ${sizeMs}) + ${sizeMs}) % ${sizeMs})`;
}
