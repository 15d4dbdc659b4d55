/**
 * The lake's table layout: one row per record read from the events topic that is a readable JSON
 * object (services/events/event.ts `readableObject`), duplicates included (the raw history is
 * immutable; deduplication is a view concern), valid or not under the lake writer's event
 * mapping (a version with another mapping recomputes from the same lake), in a Delta table per
 * topic.
 *
 * Columns are typed where other engines can use them: the event id, its type and time, where the
 * record came from (partition, offset, key, log time) and the value's JSON exactly as logged
 * (`raw`). The other fields of an event are free-form (the platform has no schema registry), so
 * they stay in `raw`, and the metric SQL reads them from there (services/metrics/compile.ts).
 * Times are Delta `timestamp`s: UTC, microseconds, Parquet INT64 with isAdjustedToUTC=true (what
 * "Primitive Types" asks of a `timestamp`), which Spark, delta-rs, DuckDB and pyarrow read as
 * instants.
 *
 * What a recompute needs under ANY mapping is kept as logged: `raw`, `kafka_key` (the record
 * key's bytes) and `record_timestamp`. The typed columns `id`, `type`, `event_time` and `id_hash`
 * are the event under the lake writer's mapping, NULL where the record is no event under it, and
 * `event_mapping` names that mapping (`lakeMappingName`): the recompute reads the typed columns
 * where it is the version's own, and derives the event from raw, key and record timestamp
 * elsewhere (batch/views/batchViews.ts).
 *
 * Files sit under Hive-style folders by event time, `dt=YYYY-MM-DD/hr=HH/`, and the log records
 * them as the partition columns `dt` (date) and `hr` (integer) of each file ("Partition Value
 * Serialization"), so that readers prune by date. A record without an event time (no event under
 * the writer's mapping) goes to the null partition (`__HIVE_DEFAULT_PARTITION__`, as Spark and
 * delta-rs name it).
 *
 * Lakes written before the lake became a Delta table (a `_lake_log/` manifest) are converted in
 * place (lakeMigration.ts): their files keep their columns (`ts_ms`, `kafka_timestamp`,
 * `ingest_time` as epoch milliseconds, no `event_time` or `record_timestamp`; the oldest have no
 * `kafka_key` or `event_mapping` either), which the converted table's schema lists as nullable
 * legacy columns; `lakeRowsSql` reads every layout alike.
 */
import { join } from 'node:path';
import type { DataDirLayout } from '../config/dataDir.ts';
import type { EventMapping } from '../metrics/fieldSemantics.ts';
import { sqlQuote } from '../storage/sql.ts';

/** A lake column: its Delta type (for the log's schema) and DuckDB type (for the Parquet writer). */
export interface LakeColumn {
  delta: 'string' | 'long' | 'integer' | 'timestamp' | 'binary' | 'date';
  duckdb: string;
  /** What it holds (docs/lake.md shows the same table). */
  doc: string;
}

/** Data columns in file order. */
export const LAKE_COLUMNS = {
  id: { delta: 'string', duckdb: 'VARCHAR', doc: 'the event id' },
  type: { delta: 'string', duckdb: 'VARCHAR', doc: 'the event type' },
  event_time: { delta: 'timestamp', duckdb: 'TIMESTAMPTZ', doc: 'the event time (UTC, microseconds)' },
  kafka_key: { delta: 'binary', duckdb: 'BLOB', doc: "the Kafka record's key, as sent (null when the record had none)" },
  record_timestamp: { delta: 'timestamp', duckdb: 'TIMESTAMPTZ', doc: "the Kafka record's timestamp (log-append or create time)" },
  kafka_partition: { delta: 'integer', duckdb: 'INTEGER', doc: 'the source partition' },
  kafka_offset: { delta: 'long', duckdb: 'BIGINT', doc: 'the source offset' },
  raw: { delta: 'string', duckdb: 'VARCHAR', doc: 'the event JSON exactly as logged' },
  /**
   * Kafka's partitioner hash of the id (services/log/partitioner.ts `idHash`): an event is
   * misplaced when `id_hash % homePartitions` is not its partition.
   */
  id_hash: { delta: 'integer', duckdb: 'INTEGER', doc: "Kafka's partitioner hash of the id (misplaced records)" },
  /**
   * The lake writer's event mapping (`lakeMappingName`): under it, the typed columns are the
   * event. NULL in files written before this column existed: the flat model, the only one then.
   */
  event_mapping: {
    delta: 'string',
    duckdb: 'VARCHAR',
    doc: "the lake writer's event mapping, under which the typed columns are the event",
  },
} as const satisfies Record<string, LakeColumn>;

export type LakeColumnName = keyof typeof LAKE_COLUMNS;

/** Partition columns: not stored in the files, recorded per file in the log. */
export const LAKE_PARTITION_COLUMNS = {
  dt: { delta: 'date', duckdb: 'DATE', doc: 'UTC date of event_time (null partition without one)' },
  hr: { delta: 'integer', duckdb: 'INTEGER', doc: 'UTC hour of event_time, 0-23' },
} as const satisfies Record<string, LakeColumn>;

/** Columns of files written before the lake was a Delta table (epoch milliseconds). */
export const LEGACY_LAKE_COLUMNS = {
  ts_ms: { delta: 'long', duckdb: 'BIGINT', doc: 'older files only: the event time, epoch ms' },
  kafka_timestamp: { delta: 'long', duckdb: 'BIGINT', doc: "older files only: the record's timestamp, epoch ms" },
  ingest_time: { delta: 'long', duckdb: 'BIGINT', doc: 'older files only: when the lake writer read the record, epoch ms' },
} as const satisfies Record<string, LakeColumn>;

/** The null partition's folder name (Hive's, as Spark and delta-rs write it). */
export const NULL_PARTITION = '__HIVE_DEFAULT_PARTITION__';

/**
 * SQL reading lake files (local paths) as the columns the platform's readers use, whatever layout
 * each file has: `id, type, ts_ms, raw, kafka_partition, kafka_offset, kafka_timestamp, id_hash,
 * kafka_key, event_mapping` (and the Delta layout's `event_time`, `record_timestamp`), with the
 * event and record times as epoch milliseconds. Files are read by column name, and a
 * typed empty row names every column of every layout (`UNION ALL BY NAME`), so a column missing
 * from some files (or from all of them: a lake of only new or only old files, or files another
 * engine appended) reads as NULL instead of failing the query.
 */
export function lakeRowsSql(files: readonly string[]): string {
  const all = { ...LAKE_COLUMNS, ...LEGACY_LAKE_COLUMNS };
  const typed = Object.entries(all)
    .map(([name, c]) => `NULL::${c.duckdb} AS ${name}`)
    .join(', ');
  const source =
    files.length === 0
      ? `(SELECT ${typed} WHERE false)`
      : `(SELECT * FROM read_parquet([${files.map(sqlQuote).join(', ')}], union_by_name = true, hive_partitioning = false) UNION ALL BY NAME SELECT ${typed} WHERE false)`;
  return `(SELECT id, type, coalesce(epoch_ms(event_time), ts_ms) AS ts_ms, raw, kafka_partition, kafka_offset,
      coalesce(epoch_ms(record_timestamp), kafka_timestamp) AS kafka_timestamp, id_hash, kafka_key, event_mapping, event_time, record_timestamp
    FROM ${source})`;
}

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
 * anyone listing the lake can tell where a file came from without opening it, and a unique id
 * ("Data Files": uniquely named, never overwritten).
 */
export function partFileName(partition: number, fromOffset: number, toOffset: number, unique: string): string {
  const pad = (n: number) => String(n).padStart(12, '0');
  return `part-p${String(partition).padStart(3, '0')}-o${pad(fromOffset)}-o${pad(toOffset)}-${unique}.parquet`;
}

/** The folder of a partition (`dt=2026-01-01/hr=07`, or the null partition's). */
export function partitionFolder(dt: string | null, hr: number | null): string {
  return `dt=${dt ?? NULL_PARTITION}/hr=${hr === null ? NULL_PARTITION : String(hr).padStart(2, '0')}`;
}

/** The default lake location, `<data-dir>/lake` (each topic's table in a folder of its own). */
export function defaultLakeUri(layout: DataDirLayout): string {
  return layout.lake;
}

/** Where a lake on object storage keeps downloaded data files for DuckDB (lakeFileCache.ts). */
export function lakeCacheDir(layout: DataDirLayout): string {
  return join(layout.root, 'cache', 'lake');
}

/** A local folder for files on their way into the lake (rolls, compaction outputs, checkpoints). */
export function lakeScratchDir(layout: DataDirLayout): string {
  return join(layout.root, 'tmp', 'lake');
}
