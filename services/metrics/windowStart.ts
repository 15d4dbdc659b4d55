/**
 * The window rule, once for both engines: tumbling windows aligned to UTC, the window of an event
 * time `ts` (epoch ms) starts at floor(ts / size) x size.
 *
 * Exact in both engines for every integer event time below 2^53, before 1970 included: DuckDB's
 * `//` truncates towards zero, so the SQL uses the floor modulo ((ts % size) + size) % size
 * (% on BIGINT is exact); JavaScript's `Math.floor(ts / size)` rounds the quotient first, so the
 * JavaScript corrects that by one window where it is off (cheaper on the hot path than two
 * floating-point remainders; ts - start is exact).
 * `__tests__/fieldSemantics.differential.spec.ts` compares the two on generated and edge times.
 */
import { GRANULARITY_MS, type Granularity } from './definitions.ts';

export function windowStartOf(tsMs: number, sizeMs: number): number {
  let start = Math.floor(tsMs / sizeMs) * sizeMs;
  if (start > tsMs) start -= sizeMs;
  else if (tsMs - start >= sizeMs) start += sizeMs;
  return start;
}

export function windowStart(tsMs: number, granularity: Granularity): number {
  return windowStartOf(tsMs, GRANULARITY_MS[granularity]);
}

/** SQL for the same rule over a BIGINT expression of epoch milliseconds. */
export function windowStartSql(tsExpr: string, sizeMs: number): string {
  return `(${tsExpr} - (((${tsExpr}) % ${sizeMs}) + ${sizeMs}) % ${sizeMs})`;
}
