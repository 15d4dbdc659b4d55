/**
 * The recompute with the engine the options chose (engineChoice.ts): DuckDB's
 * (batch/views/batchViews.ts) or Spark's (batch/engines/spark/sparkViews.ts, loaded only when
 * asked for).
 */
import { recomputeBatchViews, type RecomputeOptions, type RecomputeResult } from '../views/batchViews.ts';
import { DUCKDB_ENGINE, type BatchEngine } from './engineChoice.ts';

/** One full recompute with the chosen engine (DuckDB when none is given). */
export async function recomputeViews(options: RecomputeOptions & { engine?: BatchEngine }): Promise<RecomputeResult> {
  const engine = options.engine ?? DUCKDB_ENGINE;
  if (engine.name === 'duckdb') return recomputeBatchViews(options);
  const { recomputeWithSpark } = await import('./spark/sparkViews.ts');
  return recomputeWithSpark({ ...options, spark: engine.spark });
}
