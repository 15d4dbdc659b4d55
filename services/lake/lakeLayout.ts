/**
 * The lake's table layout: one Parquet row per record read from the events topic, duplicates
 * included (the raw history is immutable; deduplication is a view concern).
 *
 * Typed columns exist only where the type is known for every event: `id`, `type` and the event
 * time (validated at ingest). The other fields of an event are free-form (the platform has no
 * schema registry), so they live in `raw`, the event JSON exactly as logged; the metric SQL reads
 * them from there (services/metrics/compile.ts). Times are epoch milliseconds in BIGINT columns,
 * which every Parquet reader understands without timezone questions.
 *
 * Files sit under Hive-style directories by event time, `dt=YYYY-MM-DD/hr=HH/`, so that readers
 * (and incremental recomputes) can prune by date; `dt`/`hr` are derived from `ts_ms` and not
 * repeated inside the files.
 */
import { join } from 'node:path';
import type { DataDirLayout } from '../config/dataDir.ts';
import { sqlQuote } from '../storage/sql.ts';

/** Lake columns in file order, with their DuckDB types (docs/lake.md). */
export const LAKE_TABLE_COLUMNS = {
  id: 'VARCHAR',
  type: 'VARCHAR',
  ts_ms: 'BIGINT',
  raw: 'VARCHAR',
  kafka_partition: 'INTEGER',
  kafka_offset: 'BIGINT',
  /** The record's log-append time (epoch ms): the processing-time stamp of the view contract. */
  kafka_timestamp: 'BIGINT',
  /** When the lake writer read the record (epoch ms). */
  ingest_time: 'BIGINT',
  /**
   * Kafka's partitioner hash of the id (services/log/partitioner.ts `idHash`): an event is
   * misplaced when `id_hash % homePartitions` is not its partition. Files written before this
   * column existed read it as NULL (then the event counts as misplaced: the cautious answer).
   */
  id_hash: 'INTEGER',
} as const;

/** SQL for the Hive partition values of the `ts_ms` column. */
export const HIVE_DT_SQL = `strftime(make_timestamp(CAST(ts_ms AS BIGINT) * 1000), '%Y-%m-%d')`;
export const HIVE_HR_SQL = `strftime(make_timestamp(CAST(ts_ms AS BIGINT) * 1000), '%H')`;

/**
 * Part file name: the source partition and the inclusive offset range it was cut from, so that
 * anyone listing the lake can tell where a file came from without opening it; the suffix keeps
 * names unique across retries and compactions.
 */
export function partFileName(partition: number, fromOffset: number, toOffset: number, unique: string): string {
  const pad = (n: number) => String(n).padStart(12, '0');
  return `part-p${String(partition).padStart(3, '0')}-o${pad(fromOffset)}-o${pad(toOffset)}-${unique}.parquet`;
}

/** read_parquet over lake files: by column name, so that files of older layouts read alike. */
export function readLakeSql(files: readonly string[]): string {
  return `read_parquet([${files.map(sqlQuote).join(', ')}], union_by_name = true)`;
}

/**
 * The topic's lake directory, `<data-dir>/lake/<topic>`: written by the batch layer's lake writer,
 * read by its recompute and by a speed replay `--from lake`.
 */
export function lakeRootOf(layout: DataDirLayout, topic: string): string {
  return join(layout.lake, topic);
}
