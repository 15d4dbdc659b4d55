/**
 * The Spark job's plan: every statement the batch views need, in Spark SQL, compiled from the
 * version's metric definitions (services/metrics/sparkSql.ts). The job (viewsJob.py) only runs
 * it: it reads the Delta table at the run's version as the view `lake`, runs `statements`, writes
 * the rows of `rowsQuery` as Parquet and the one row of `countsQuery` as JSON.
 *
 * The same steps as the DuckDB recompute (batch/views/batchViews.ts), in the form Spark runs well:
 * - `lk_ev`: one row per event, with its partition, event time, misplaced flag, first-copy flag
 *   (deduplication by id over the whole lake: the first occurrence, lowest partition then offset,
 *   is counted; a record without an id is its own first copy, as in DuckDB, where a NULL id is
 *   never among the repeated ones), and each field's kind and text, read once per record. It is
 *   cached: every metric reads it. The event of a record is the version's mapping's, as in
 *   DuckDB's `loadEvents`:
 *   - flat events (no `event:` section): the lake writer's typed columns, each field's kind and
 *     text read from the raw text by the member pattern (`sparkMemberCaptureSql`); a record
 *     written under another mapping is counted as `foreign`, and the run refuses to publish
 *     (DuckDB derives the flat model's event from its raw text; the Spark engine does not yet);
 *   - an `event:` section: the typed columns where the lake writer wrote the record under the same
 *     mapping, else the event derived from the raw text, the record key and the record timestamp
 *     (`mappedEventSql`'s twin: `sparkMappedEventSql` below), and the fields walked along their
 *     paths in the rewritten document (`sparkPathWalkSql`).
 *   A readable record that is no event has no time and is left out, as DuckDB leaves it out.
 * - one GROUP BY over `lk_ev` for every metric and granularity at once (each record exploded
 *   into one entry per metric and granularity it counts in), straight from the events (DuckDB
 *   rolls coarser windows up from finer ones, which gives the same rows), with the distinct
 *   registers as a set per window, serialized in SQL (sparkSketchSql); for metrics with
 *   percentiles, each distinct value's bucket from the boundary table (sparkBucketSelectSql) and
 *   one more GROUP BY for the buckets' counts per window, written as the sketch text
 *   (sparkSketchTextSql).
 * - per session metric, its partial sessions (sparkSessionRowsSql): sessionRule.ts's window
 *   functions over the metric's first copies in each (key, partition), as DuckDB's
 *   `computeSessions`, one query each beside the windows' rows (`window_end` NULL on those).
 */
import { eventMappingOf, metricFieldsOf, type MetricDefinition } from '../../../services/metrics/definitions.ts';
import {
  MAX_EVENT_TIME_MS,
  RECORD_KEY,
  RECORD_TIMESTAMP,
  fieldNames,
  type EventMapping,
} from '../../../services/metrics/fieldSemantics.ts';
import {
  compileMetricSpark,
  sparkEventTimeSql,
  sparkIdHashSql,
  sparkIdentifierSql,
  sparkIdTextOfBytesSql,
  sparkIdTextOfStringSql,
  sparkNumberTokensSql,
  sparkPathWalkSql,
  sparkTokenField,
  sparkFieldsStructType,
  sparkIdent,
  sparkMemberCaptureSql,
  sparkMemberKindSql,
  sparkMemberTextSql,
  sparkQuote,
  sparkBucketSelectSql,
  sparkSketchSql,
  sparkSketchTextSql,
  type CompiledMetricSpark,
  type SparkField,
} from '../../../services/metrics/sparkSql.ts';
import { sessionNumberSql, startsSessionSql } from '../../../services/metrics/sessionRule.ts';
import { SESSION_GRANULARITY } from '../../../services/views/viewRow.ts';
import { HyperLogLog } from '../../../services/metrics/hll.ts';
import { bucketBoundaries } from '../../../services/metrics/ddsketch.ts';
import { FLAT_MAPPING_NAME, lakeMappingName } from '../../../services/lake/lakeLayout.ts';

/** The event field the lake also stores as the typed column `type` (always a non-empty string). */
const TYPE_FIELD = 'type';

/**
 * Columns the job adds as NULL when the table's schema lacks them, so that one SQL text reads
 * every layout (a converted lake of the former format has `ts_ms` and no `event_time`; a table
 * written since has the reverse): services/lake/lakeLayout.ts, Spark's types.
 */
export const SPARK_LAKE_COLUMNS: Readonly<Record<string, string>> = {
  id: 'STRING',
  type: 'STRING',
  event_time: 'TIMESTAMP',
  ts_ms: 'BIGINT',
  kafka_key: 'BINARY',
  record_timestamp: 'TIMESTAMP',
  kafka_timestamp: 'BIGINT',
  kafka_partition: 'INT',
  kafka_offset: 'BIGINT',
  raw: 'STRING',
  id_hash: 'INT',
  event_mapping: 'STRING',
};

/** Columns of the job's row output, with their Parquet (DuckDB) types: checked when read back. */
export const SPARK_ROW_COLUMNS = {
  mi: 'INTEGER',
  granularity: 'VARCHAR',
  key: 'VARCHAR',
  window_start: 'BIGINT',
  partition: 'INTEGER',
  count: 'BIGINT',
  sum: 'DOUBLE',
  min: 'DOUBLE',
  max: 'DOUBLE',
  distinct_sketch: 'VARCHAR',
  value_sketch: 'VARCHAR',
  raw_count: 'BIGINT',
  misplaced: 'BIGINT',
  /** A session's last event time (sessionRule.ts rule 2); NULL on a window's row. */
  window_end: 'BIGINT',
} as const;

export interface SparkPlan {
  /** Lake columns with their types: the job adds those the table lacks, as NULL. */
  lakeColumns: Record<string, string>;
  statements: string[];
  rowsQuery: string;
  /** One row: raw, unique and misplaced record counts. */
  countsQuery: string;
}

/** Fields read by any metric, in a fixed order, except, for flat events, `type` (the typed column). */
export function sparkReferencedFields(defs: readonly MetricDefinition[]): string[] {
  const fields = new Set<string>();
  for (const d of defs) for (const f of metricFieldsOf(d)) fields.add(f);
  if (eventMappingOf(defs).flat) fields.delete(TYPE_FIELD);
  return [...fields];
}

/**
 * fieldSemantics.ts `mappedEventSql`'s twin: the event of a record under the non-flat `mapping`
 * as `named_struct(id, ts, type, hash)` (id as `idText`, hash as `idHash` of its bytes), or NULL
 * when the record is no event under it. `leaf` gives the kind and text found at a path of the
 * mapping; `key` and `timestamp` are the record's key (BINARY) and timestamp (epoch ms).
 */
function sparkMappedEventSql(mapping: EventMapping, leaf: (path: string) => SparkField, key: string, timestamp: string): string {
  const byKey = mapping.id === RECORD_KEY;
  const idString = byKey ? 'CAST(NULL AS STRING)' : sparkIdentifierSql(leaf(mapping.id));
  const idKey = byKey ? `(CASE WHEN octet_length(${key}) > 0 THEN ${key} END)` : 'CAST(NULL AS BINARY)';
  const ts =
    mapping.time === RECORD_TIMESTAMP
      ? `(CASE WHEN ${timestamp} BETWEEN 0 AND ${MAX_EVENT_TIME_MS} THEN ${timestamp} END)`
      : sparkEventTimeSql(leaf(mapping.time), mapping.timeFormat);
  const type = mapping.type === undefined ? 'CAST(NULL AS STRING)' : sparkIdentifierSql(leaf(mapping.type));
  const checks = [byKey ? 'lk_e.k IS NOT NULL' : 'lk_e.s IS NOT NULL', 'lk_e.ts IS NOT NULL'];
  if (mapping.type !== undefined) checks.push('lk_e.type IS NOT NULL');
  const id = byKey ? sparkIdTextOfBytesSql('lk_e.k') : sparkIdTextOfStringSql('lk_e.s');
  const hash = sparkIdHashSql(byKey ? 'lk_e.k' : `encode(lk_e.s, 'UTF-8')`);
  return `transform(array(named_struct('s', ${idString}, 'k', ${idKey}, 'ts', CAST(${ts} AS BIGINT), 'type', ${type})), lk_e ->
    CASE WHEN ${checks.join(' AND ')} THEN named_struct('id', ${id}, 'ts', lk_e.ts, 'type', lk_e.type, 'hash', ${hash}) END)[0]`;
}

/**
 * The statements creating `lk_ev` for a version with an `event:` section (see the module
 * comment): the records' rewritten documents, the walk of every path once per record, then the
 * event (typed or derived) and each field's kind (`k<i>`) and text (`t<i>`).
 */
function mappedEventStatements(mapping: EventMapping, fields: readonly string[], homePartitions: number): string[] {
  const mappingPaths = [mapping.id, mapping.time, ...(mapping.type !== undefined ? [mapping.type] : [])].filter(
    (p) => p !== RECORD_KEY && p !== RECORD_TIMESTAMP,
  );
  const paths = [...new Set([...fields, ...mappingPaths])];
  const walk =
    paths.length === 0
      ? { layers: [], found: [] }
      : sparkPathWalkSql(
          paths.map((p) => fieldNames(p, false)),
          'lk_doc',
        );
  const leaf = (path: string) => sparkTokenField(`lk_f${paths.indexOf(path)}`);
  const statements = [
    `CREATE OR REPLACE TEMP VIEW lk_m0 AS
     SELECT kafka_partition AS p, kafka_offset AS o, id, type, id_hash, coalesce(unix_millis(event_time), ts_ms) AS ts_typed, kafka_key,
       coalesce(unix_millis(record_timestamp), kafka_timestamp) AS kafka_ts,
       coalesce(event_mapping, ${sparkQuote(FLAT_MAPPING_NAME)}) = ${sparkQuote(lakeMappingName(mapping))} AS same,
       ${sparkNumberTokensSql('raw')} AS lk_doc
     FROM lake`,
  ];
  walk.layers.forEach((layer, d) =>
    statements.push(`CREATE OR REPLACE TEMP VIEW lk_m${d + 1} AS SELECT *, ${layer.join(', ')} FROM lk_m${d}`),
  );
  const found = `SELECT *${walk.found.map((f, i) => `, ${f} AS lk_f${i}`).join('')} FROM lk_m${walk.layers.length}`;
  const typed = `CASE WHEN ts_typed IS NOT NULL THEN named_struct('id', id, 'ts', ts_typed, 'type', type, 'hash', id_hash) END`;
  const derived = sparkMappedEventSql(mapping, leaf, 'kafka_key', 'kafka_ts');
  const columns = fields.map((f, i) => {
    const l = leaf(f);
    return `, ${l.kind} AS k${i}, ${l.text} AS t${i}`;
  });
  statements.push(
    `CREATE OR REPLACE TEMP VIEW lk_src AS
     SELECT p, o, e.id AS id, e.ts AS ts_ms, e.type AS type, coalesce(e.hash % ${homePartitions} <> p, TRUE) AS mis${columns.join('')}
     FROM (SELECT *, CASE WHEN same THEN ${typed} ELSE ${derived} END AS e FROM (${found}))
     WHERE e IS NOT NULL`,
    `CREATE OR REPLACE TEMP VIEW lk_ev AS
     SELECT p, o, ts_ms, type, mis, (id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY p, o) = 1) AS first${fields.map((_, i) => `, k${i}, t${i}`).join('')}
     FROM lk_src`,
    `CACHE TABLE lk_ev`,
  );
  return statements;
}

/** The statements creating `lk_ev` for flat events (see the module comment). */
function flatEventStatements(fields: readonly string[], homePartitions: number): string[] {
  const decoded = (i: number) => `j.${sparkIdent(fields[i]!)}`;
  return [
    `CREATE OR REPLACE TEMP VIEW lk_src AS
     SELECT kafka_partition AS p, kafka_offset AS o, id, coalesce(unix_millis(event_time), ts_ms) AS ts_ms, type,
       coalesce(id_hash % ${homePartitions} <> kafka_partition, TRUE) AS mis, raw
       ${fields.length > 0 ? `, from_json(raw, ${sparkQuote(sparkFieldsStructType(fields))}) AS j` : ''}
     FROM lake
     WHERE coalesce(event_mapping, ${sparkQuote(FLAT_MAPPING_NAME)}) = ${sparkQuote(FLAT_MAPPING_NAME)} AND coalesce(unix_millis(event_time), ts_ms) IS NOT NULL`,
    `CREATE OR REPLACE TEMP VIEW lk_cap AS
     SELECT p, o, id, ts_ms, type, mis${fields.map((f, i) => `, ${decoded(i)} AS s${i}, ${sparkMemberCaptureSql(decoded(i), 'raw', f)} AS c${i}`).join('')}
     FROM lk_src`,
    `CREATE OR REPLACE TEMP VIEW lk_ev AS
     SELECT p, o, ts_ms, type, mis, (id IS NULL OR row_number() OVER (PARTITION BY id ORDER BY p, o) = 1) AS first${fields
       .map((_, i) => `, ${sparkMemberKindSql(`c${i}`)} AS k${i}, ${sparkMemberTextSql(`c${i}`, `s${i}`)} AS t${i}`)
       .join('')}
     FROM lk_cap`,
    `CACHE TABLE lk_ev`,
  ];
}

/**
 * The partial sessions of session metric `mi` (services/metrics/sessionRule.ts), as DuckDB's
 * `computeSessions` computes them, in the row layout of `rowsQuery`: per (key, input partition),
 * the first copies of the metric's events (deduplicated over the whole lake, `first`) ordered by
 * time then offset; a new session where the time since the previous event is >= gap
 * (`startsSessionSql`), numbered by the running count of those flags (`sessionNumberSql`): the
 * same SQL text in both engines, Spark's window functions read it as DuckDB's do. One row per
 * number: `window_start` its first event time, `window_end` its last; count, sum, min, max,
 * misplaced and the HyperLogLog registers as a window's; `raw_count` is the count (a duplicate
 * belongs to no session, its first copy does).
 */
function sparkSessionRowsSql(def: MetricDefinition, mi: number, m: CompiledMetricSpark, emptySketch: string): string {
  const over = 'PARTITION BY key, p ORDER BY ts_ms, o';
  const sketch = def.distinct === undefined ? 'CAST(NULL AS STRING)' : sparkSketchSql('collect_set(reg)', emptySketch);
  const events = `SELECT p, o, ts_ms, mis, ${m.key} AS key, CAST(${m.value} AS DOUBLE) AS v, CAST(${m.register} AS INT) AS reg
    FROM lk_ev WHERE first AND (${m.where})`;
  const numbered = `SELECT *, ${sessionNumberSql('starts', over)} AS sid FROM (
      SELECT *, ${startsSessionSql('ts_ms', over, def.session!.gapMs)} AS starts FROM (${events}))`;
  return `SELECT CAST(${mi} AS INT) AS mi, ${sparkQuote(SESSION_GRANULARITY)} AS granularity, key, min(ts_ms) AS window_start, p AS partition,
      count(*) AS count, sum(v) AS sum, min(v) AS min, max(v) AS max, ${sketch} AS distinct_sketch, CAST(NULL AS STRING) AS value_sketch,
      count(*) AS raw_count, count(*) FILTER (WHERE mis) AS misplaced, max(ts_ms) AS window_end
    FROM (${numbered})
    GROUP BY key, p, sid`;
}

export function sparkViewsPlan(defs: readonly MetricDefinition[], homePartitions: number): SparkPlan {
  if (!Number.isInteger(homePartitions) || homePartitions < 1)
    throw new Error(`homePartitions must be a positive integer, got ${homePartitions}`);
  const fields = sparkReferencedFields(defs);
  const mapping = eventMappingOf(defs);
  const fieldOf = (f: string): SparkField =>
    mapping.flat && f === TYPE_FIELD
      ? { kind: `(CASE WHEN type IS NOT NULL THEN 's' END)`, text: 'type' }
      : { kind: `k${fields.indexOf(f)}`, text: `t${fields.indexOf(f)}` };
  const statements = mapping.flat ? flatEventStatements(fields, homePartitions) : mappedEventStatements(mapping, fields, homePartitions);
  const empty = new HyperLogLog().toBase64();
  // Each metric's rules once per record (ok, key, value, register), then one entry per matching
  // metric and granularity (explode), then one GROUP BY for all of them: one shuffle whatever the
  // number of metrics and granularities (a GROUP BY each costs a stage each, mostly overhead).
  const compiled = defs.map((def) => compileMetricSpark(def, fieldOf));
  const perRecord = compiled.map((m, mi) => `${m.where} AS ok${mi}, ${m.key} AS key${mi}, ${m.value} AS v${mi}, ${m.register} AS reg${mi}`);
  const entries = defs.flatMap((def, mi) =>
    def.granularities.map(
      (g) =>
        `IF(ok${mi}, named_struct('mi', CAST(${mi} AS INT), 'g', ${sparkQuote(g)}, 'key', key${mi}, 'w', CAST(${compiled[mi]!.windowStart(g, 'ts_ms')} AS BIGINT), 'v', CAST(v${mi} AS DOUBLE), 'reg', CAST(reg${mi} AS INT)), NULL)`,
    ),
  );
  const withDistinct = defs.flatMap((def, mi) => (def.distinct === undefined ? [] : [mi]));
  const sketch =
    withDistinct.length === 0
      ? 'CAST(NULL AS STRING)'
      : `CASE WHEN mi IN (${withDistinct.join(', ')}) THEN ${sparkSketchSql('regs', empty)} END`;
  // A file of session metrics only has no window entries: a typed NULL keeps lk_x's struct type
  // (Spark types an empty array() as array<void>, which x.mi cannot read) and yields no row.
  if (entries.length === 0) entries.push(`CAST(NULL AS STRUCT<mi: INT, g: STRING, key: STRING, w: BIGINT, v: DOUBLE, reg: INT>)`);
  statements.push(
    `CREATE OR REPLACE TEMP VIEW lk_x AS
     SELECT p, first, mis, explode(filter(array(${entries.join(',\n          ')}), s -> s IS NOT NULL)) AS x
     FROM (SELECT p, ts_ms, first, mis, ${perRecord.join(',\n          ')} FROM lk_ev)`,
  );
  const aggregated = `SELECT mi, granularity, key, window_start, partition, count, sum, min, max, ${sketch} AS distinct_sketch, raw_count, misplaced
    FROM (
      SELECT x.mi AS mi, x.g AS granularity, x.key AS key, x.w AS window_start, p AS partition,
        count(*) FILTER (WHERE first) AS count, sum(x.v) FILTER (WHERE first) AS sum,
        min(x.v) FILTER (WHERE first) AS min, max(x.v) FILTER (WHERE first) AS max,
        count(*) AS raw_count, count(*) FILTER (WHERE first AND mis) AS misplaced,
        collect_set(x.reg) FILTER (WHERE first) AS regs
      FROM lk_x
      GROUP BY x.mi, x.g, x.key, x.w, p)
    WHERE count > 0`;
  // Percentiles: each distinct value's bucket (by the boundary table, sparkBucketSelectSql), then
  // (window, bucket) -> count over the first copies, then each window's sketch text; a window
  // whose events carried no value has the empty text, as in DuckDB.
  const withPercentiles = defs.flatMap((def, mi) => (def.percentiles === undefined ? [] : [mi]));
  let rowsQuery = `SELECT mi, granularity, key, window_start, partition, count, sum, min, max, distinct_sketch,
      CAST(NULL AS STRING) AS value_sketch, raw_count, misplaced, CAST(NULL AS BIGINT) AS window_end FROM (${aggregated})`;
  if (withPercentiles.length > 0) {
    const accuracies = [...new Set(withPercentiles.map((mi) => defs[mi]!.percentiles!.relativeAccuracy))];
    const tables = accuracies.map((a) => bucketBoundaries(a));
    const tableOf = `CASE x.mi ${withPercentiles.map((mi) => `WHEN ${mi} THEN ${accuracies.indexOf(defs[mi]!.percentiles!.relativeAccuracy)}`).join(' ')} END`;
    const among = `x.mi IN (${withPercentiles.join(', ')})`;
    statements.push(
      `CREATE OR REPLACE TEMP VIEW lk_vb AS ${sparkBucketSelectSql(`(SELECT DISTINCT ${tableOf} AS a, x.v AS v FROM lk_x WHERE first AND x.v IS NOT NULL AND ${among})`, tables)}`,
    );
    const sketches = `SELECT mi, granularity, key, window_start, partition, ${sparkSketchTextSql(`collect_list(named_struct('b', b, 'n', n))`)} AS value_sketch
      FROM (
        SELECT x.mi AS mi, x.g AS granularity, x.key AS key, x.w AS window_start, p AS partition, vb.bucket AS b, count(*) AS n
        FROM lk_x JOIN lk_vb vb ON vb.a = ${tableOf} AND vb.v = x.v
        WHERE first AND ${among}
        GROUP BY x.mi, x.g, x.key, x.w, p, vb.bucket)
      GROUP BY mi, granularity, key, window_start, partition`;
    rowsQuery = `SELECT r.mi, r.granularity, r.key, r.window_start, r.partition, r.count, r.sum, r.min, r.max, r.distinct_sketch,
        CASE WHEN r.mi IN (${withPercentiles.join(', ')}) THEN coalesce(vs.value_sketch, '') END AS value_sketch, r.raw_count, r.misplaced,
        CAST(NULL AS BIGINT) AS window_end
      FROM (${aggregated}) r LEFT JOIN (${sketches}) vs
        ON vs.mi = r.mi AND vs.granularity = r.granularity AND vs.key = r.key AND vs.window_start = r.window_start AND vs.partition = r.partition`;
  }
  // Session metrics: their partial sessions, one query each, beside the windows' rows.
  const sessions = defs.flatMap((def, mi) => (def.session === undefined ? [] : [sparkSessionRowsSql(def, mi, compiled[mi]!, empty)]));
  if (sessions.length > 0) rowsQuery = [rowsQuery, ...sessions].join('\n    UNION ALL\n    ');
  return {
    lakeColumns: { ...SPARK_LAKE_COLUMNS },
    statements,
    rowsQuery,
    countsQuery: `SELECT count(*) AS raw, count(*) FILTER (WHERE first) AS unique, count(*) FILTER (WHERE mis) AS misplaced,
      ${mapping.flat ? `(SELECT count(*) FROM lake WHERE coalesce(event_mapping, ${sparkQuote(FLAT_MAPPING_NAME)}) <> ${sparkQuote(FLAT_MAPPING_NAME)})` : 'CAST(0 AS BIGINT)'} AS foreign
      FROM lk_ev`,
  };
}
