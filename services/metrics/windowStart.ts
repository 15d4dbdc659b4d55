/**
 * The window rule, once for both engines: tumbling windows aligned to UTC, the window of an event
 * time `ts` (epoch ms) starts at floor(ts / size) x size.
 *
 * Written with the floor-modulo (((ts % size) + size) % size) in both engines: exact for every
 * integer below 2^53 (JavaScript's % on doubles and DuckDB's % on BIGINT are both exact), where
 * `Math.floor(ts / size)` rounds the quotient first and DuckDB's `//` truncates towards zero,
 * which put events before 1970 into the wrong window in one engine or the other.
 * `__tests__/fieldSemantics.differential.spec.ts` compares the two on generated and edge times.
 */
import { GRANULARITY_MS, type Granularity } from './definitions.ts';

export function windowStartOf(tsMs: number, sizeMs: number): number {
  return tsMs - (((tsMs % sizeMs) + sizeMs) % sizeMs);
}

export function windowStart(tsMs: number, granularity: Granularity): number {
  return windowStartOf(tsMs, GRANULARITY_MS[granularity]);
}

/** SQL for the same rule over a BIGINT expression of epoch milliseconds. */
export function windowStartSql(tsExpr: string, sizeMs: number): string {
  return `(${tsExpr} - (((${tsExpr}) % ${sizeMs}) + ${sizeMs}) % ${sizeMs})`;
}
