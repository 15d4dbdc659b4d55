/**
 * Which engine recomputes the batch views (`--engine`, env LK_BATCH_ENGINE): DuckDB on this
 * machine (the default: batch/views/batchViews.ts) or Apache Spark, locally or on a cluster
 * (batch/engines/spark/, `--spark-master`). Both compile the same metric definitions and publish
 * the same snapshot and CURRENT contract; the run record names the engine. A light module (no
 * DuckDB, no Spark): the command-line options read it.
 */
export const BATCH_ENGINES = ['duckdb', 'spark'] as const;
export type BatchEngineName = (typeof BATCH_ENGINES)[number];

export interface SparkSettings {
  /** `local[*]` (default), `local[N]` or a cluster URL (spark://, yarn, k8s://). */
  master: string;
  /** The driver's heap (a local master runs everything in the driver); default LK_SPARK_DRIVER_MEMORY or 2g. */
  driverMemory?: string;
}

export type BatchEngine = { name: 'duckdb' } | { name: 'spark'; spark: SparkSettings };

export const DUCKDB_ENGINE: BatchEngine = { name: 'duckdb' };
export const DEFAULT_SPARK_MASTER = 'local[*]';

/** `--spark-master`: local, local[*], local[N], local[N,F], yarn or a URL with a scheme. */
export function sparkMaster(value: string): string {
  const v = value.trim();
  if (/^local(\[(\*|\d+)(,\d+)?\])?$/.test(v) || /^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(v) || v === 'yarn') return v;
  throw new Error(`must be local[*], local[N] or a cluster URL like spark://host:7077, got ${JSON.stringify(value)}`);
}
