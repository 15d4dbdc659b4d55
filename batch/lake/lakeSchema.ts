/**
 * The lake's table layout: one Parquet row per record read from the events topic, duplicates
 * included (the raw history is immutable; deduplication is a view concern).
 *
 * Typed columns exist only where the type is known for every event: `id`, `type` and the event
 * time (validated at ingest). The other fields of an event are free-form (the platform has no
 * schema registry), so they live in `raw`, the event JSON exactly as logged; the metric SQL reads
 * them from there (services/metrics/compile.ts, LAKE_COLUMNS). Times are epoch milliseconds in
 * BIGINT columns, which every Parquet reader understands without timezone questions.
 *
 * Files sit under Hive-style directories by event time, `dt=YYYY-MM-DD/hr=HH/`, so that readers
 * (and incremental recomputes) can prune by date; `dt`/`hr` are derived from `ts_ms` and not
 * repeated inside the files.
 */
import { LAKE_COLUMNS } from '../../services/metrics/compile.ts';

/** Lake columns in file order, with their DuckDB types. */
export const LAKE_TABLE_COLUMNS = {
  [LAKE_COLUMNS.id]: 'VARCHAR',
  type: 'VARCHAR',
  [LAKE_COLUMNS.tsMs]: 'BIGINT',
  [LAKE_COLUMNS.raw]: 'VARCHAR',
  kafka_partition: 'INTEGER',
  kafka_offset: 'BIGINT',
  /** The record's log-append time (epoch ms): the processing-time stamp of the view contract. */
  kafka_timestamp: 'BIGINT',
  /** When the lake writer read the record (epoch ms). */
  ingest_time: 'BIGINT',
} as const;

export function lakeTableDdl(table: string): string {
  const cols = Object.entries(LAKE_TABLE_COLUMNS).map(([name, type]) => `"${name}" ${type}`);
  return `CREATE TABLE ${table} (${cols.join(', ')})`;
}

/** Hive partition values of an event time. */
export function hivePartition(tsMs: number): { dt: string; hr: string } {
  const iso = new Date(tsMs).toISOString();
  return { dt: iso.slice(0, 10), hr: iso.slice(11, 13) };
}

/** SQL for the same partition values, from the `ts_ms` column. */
export const HIVE_DT_SQL = `strftime(make_timestamp(CAST(${LAKE_COLUMNS.tsMs} AS BIGINT) * 1000), '%Y-%m-%d')`;
export const HIVE_HR_SQL = `strftime(make_timestamp(CAST(${LAKE_COLUMNS.tsMs} AS BIGINT) * 1000), '%H')`;

/**
 * Part file name: the source partition and the inclusive offset range it was cut from, so that
 * anyone listing the lake can tell where a file came from without opening it; the suffix keeps
 * names unique across retries and compactions.
 */
export function partFileName(partition: number, fromOffset: number, toOffset: number, unique: string): string {
  const pad = (n: number) => String(n).padStart(12, '0');
  return `part-p${String(partition).padStart(3, '0')}-o${pad(fromOffset)}-o${pad(toOffset)}-${unique}.parquet`;
}

const PART_FILE = /^part-p(\d+)-o(\d+)-o(\d+)-([a-z0-9]+)\.parquet$/;

export function parsePartFileName(name: string): { partition: number; fromOffset: number; toOffset: number; unique: string } | undefined {
  const m = PART_FILE.exec(name);
  if (!m) return undefined;
  return { partition: Number(m[1]), fromOffset: Number(m[2]), toOffset: Number(m[3]), unique: m[4]! };
}

/** DuckDB string literal. */
export function sqlQuote(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
