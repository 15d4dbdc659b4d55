/**
 * The lake's table layout: one Parquet row per record read from the events topic that is a
 * readable JSON object (services/events/event.ts `readableObject`), duplicates included (the raw
 * history is immutable; deduplication is a view concern), valid or not under the lake writer's
 * event mapping: a version with another mapping recomputes from the same lake.
 *
 * What a recompute needs under ANY mapping is kept as logged: `raw` (the value's JSON text),
 * `kafka_key` (the record key's bytes) and `kafka_timestamp`. The typed columns `id`, `type`,
 * `ts_ms` and `id_hash` are the event under the lake writer's mapping, NULL where the record is
 * no event under it, and `event_mapping` names that mapping (`lakeMappingName`): the recompute
 * reads the typed columns where it is the version's own, and derives the event from raw, key and
 * timestamp elsewhere (batch/views/batchViews.ts). Times are epoch milliseconds in BIGINT
 * columns, which every Parquet reader understands without timezone questions.
 *
 * Files sit under Hive-style directories by event time, `dt=YYYY-MM-DD/hr=HH/`, so that readers
 * (and incremental recomputes) can prune by date; `dt`/`hr` are derived from `ts_ms` (the
 * log-append time for a record that is no event under the writer's mapping) and not repeated
 * inside the files.
 */
import { join } from 'node:path';
import type { DataDirLayout } from '../config/dataDir.ts';
import type { EventMapping } from '../metrics/fieldSemantics.ts';
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
  /**
   * The record key's bytes (NULL: no key); what a mapping with `event.id: $key` reads. Files
   * written before this column existed read it as NULL.
   */
  kafka_key: 'BLOB',
  /**
   * The lake writer's event mapping (`lakeMappingName`): under it, the typed columns are the
   * event. NULL in files written before this column existed: the flat model, the only one then.
   */
  event_mapping: 'VARCHAR',
} as const;

/** The event time a row is filed under: its event time, else (no event under the writer's mapping) its log-append time. */
export const FILING_TIME_SQL = 'coalesce(ts_ms, kafka_timestamp)';

/** SQL for the Hive partition values of a row's filing time. */
export const HIVE_DT_SQL = `strftime(make_timestamp(CAST(${FILING_TIME_SQL} AS BIGINT) * 1000), '%Y-%m-%d')`;
export const HIVE_HR_SQL = `strftime(make_timestamp(CAST(${FILING_TIME_SQL} AS BIGINT) * 1000), '%H')`;

/** The flat model's name in `event_mapping` (and what NULL there means). */
export const FLAT_MAPPING_NAME = 'flat';

/**
 * A mapping's name in the `event_mapping` column: `flat`, or the `event:` section as JSON with its
 * keys in a fixed order (`{"id":"meta.eventId","time":"meta.occurredAt","timeFormat":"epoch-s","type":"meta.kind"}`).
 * Two mappings with the same name read every record alike.
 */
export function lakeMappingName(mapping: EventMapping): string {
  if (mapping.flat) return FLAT_MAPPING_NAME;
  return JSON.stringify({
    id: mapping.id,
    time: mapping.time,
    timeFormat: mapping.timeFormat,
    ...(mapping.type !== undefined ? { type: mapping.type } : {}),
  });
}

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

/** The connection a lake reader asks which columns its files have (a DuckDB connection's shape). */
interface SqlReader {
  runAndReadAll(sql: string): Promise<{ getRows(): unknown[][] }>;
}

/**
 * A subquery over lake files with every column of LAKE_TABLE_COLUMNS, NULL where none of the
 * files has it (a lake written before the column existed; `union_by_name` fills a column only
 * when some file has it).
 */
export async function readLakeColumnsSql(conn: SqlReader, files: readonly string[]): Promise<string> {
  const present = new Set((await conn.runAndReadAll(`DESCRIBE SELECT * FROM ${readLakeSql(files)}`)).getRows().map((r) => String(r[0])));
  const columns = Object.entries(LAKE_TABLE_COLUMNS).map(([c, type]) => (present.has(c) ? c : `CAST(NULL AS ${type}) AS ${c}`));
  return `(SELECT ${columns.join(', ')} FROM ${readLakeSql(files)})`;
}

/**
 * The topic's lake directory, `<data-dir>/lake/<topic>`: written by the batch layer's lake writer,
 * read by its recompute and by a speed replay `--from lake`.
 */
export function lakeRootOf(layout: DataDirLayout, topic: string): string {
  return join(layout.lake, topic);
}
