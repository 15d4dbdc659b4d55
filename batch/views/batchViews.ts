/**
 * Batch views: the truth recomputed from the lake with DuckDB, compiled from the same metric
 * definitions as the speed layer (services/metrics/compile.ts), in the row shape of the view
 * contract (services/views/viewRow.ts) and published as an immutable snapshot
 * (services/views/batchSnapshots.ts).
 *
 * - The run's cut is the lake table's position at the start (the writer's transaction
 *   identifiers, services/lake/lakeTable.ts): the files of that table version hold exactly the
 *   partitions' records below the cut, so every row can say `through_offset = cut[partition]`
 *   and `processing_time = log-append time of record cut - 1`. The files are read in place on a
 *   local disk, from the local cache of a lake on object storage (lakeFileCache.ts).
 * - Deduplication by event id over the whole lake keeps the first occurrence (lowest partition,
 *   then offset); `raw_count` counts before it. Every late event counts: the batch layer has no
 *   lateness horizon. Only the copies of ids seen more than once are ordered (a window over
 *   about twice the duplicates, not a sort of the whole lake).
 * - Each metric aggregates the events at its finest granularity; coarser windows roll up finer
 *   ones that tile them (rollUpSource), or read the events themselves.
 * - Distinct counts are HyperLogLog registers computed in SQL with the shared hash
 *   (hllRegisterSql), once per distinct value, kept as one sorted list of packed registers per
 *   window (a register is a max, so an hour's list is the register-wise max of its minutes'),
 *   and serialized in SQL in the exact byte layout of services/metrics/hll.ts (sparse pairs in
 *   bucket order, dense above 1024 pairs), so serving merges batch and speed sketches. Doing it
 *   in SQL avoids shipping millions of register rows to JS; batchViews.exactness.spec.ts checks
 *   the registers against the speed side's HyperLogLog fed the same values.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import {
  eventMappingOf,
  keyFieldsOf,
  metricFieldsOf,
  type Granularity,
  type MetricDefinition,
  type MetricDefinitions,
} from '../../services/metrics/definitions.ts';
import { compileMetricSql } from '../../services/metrics/compile.ts';
import { sessionNumberSql, startsSessionSql } from '../../services/metrics/sessionRule.ts';
import { SESSION_GRANULARITY } from '../../services/views/viewRow.ts';
import { windowShape } from '../../services/metrics/windowStart.ts';
import {
  fieldJsonSql,
  fieldNames,
  fieldsDocumentSql,
  fieldsStructureSql,
  mappedEventSql,
  sqlField,
} from '../../services/metrics/fieldSemantics.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';
import { bucketBoundaries, bucketSelectSql, sketchTextSql } from '../../services/metrics/ddsketch.ts';
import { HLL_M, HyperLogLog, hllRegisterSql } from '../../services/metrics/hll.ts';
import type { Logger } from '../../services/observability/logger.ts';
import {
  SNAPSHOT_COLUMNS,
  commitBatchRun,
  keepStagedRows,
  runKey,
  pruneBatchRuns,
  stageBatchRun,
  type BatchRunManifest,
} from '../../services/views/batchSnapshots.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { LakeFileAccess } from '../../services/lake/lakeFileCache.ts';
import { FLAT_MAPPING_NAME, lakeMappingName, lakeRowsSql } from '../../services/lake/lakeLayout.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { lakeFiles as filesOf, lakePositions, openLakeForReading, type PartitionPosition } from '../../services/lake/lakeTable.ts';
import { sqlQuote } from '../../services/storage/sql.ts';

const EMPTY_SKETCH = new HyperLogLog().toBase64();

export interface RecomputeOptions {
  /** The topic's lake table. */
  lake: LakeHandle;
  /** The shared state, where runs are published (services/views/batchSnapshots.ts). */
  state: ObjectStore;
  /** This host's scratch folder (runs are built there) and cache folder (their rows kept there). */
  scratchDir: string;
  cacheDir: string;
  version: string;
  metrics: MetricDefinitions;
  /** The version's home partition count (services/versions/versionRecord.ts): which events are misplaced. */
  homePartitions: number;
  logger: Logger;
  /** DuckDB memory limit, e.g. '4GB'; spills to the staging directory beyond it. */
  memoryLimit?: string;
  threads?: number;
  /** Runs kept besides the current one, and how long an old run stays readable. */
  keepRuns?: number;
  runGraceMs?: number;
  /** Called between phases (for a progress line). */
  onPhase?: (phase: string, done: number, total: number) => void;
}

export function newRunId(now = new Date()): string {
  return `r${now.toISOString().replace(/[-:.]/g, '').replace('T', 't').replace('Z', '')}-${randomBytes(2).toString('hex')}`;
}

/** The cut and processing-time stamps of the lake's positions, one entry per input partition. */
export function cutOf(positions: ReadonlyMap<number, PartitionPosition>): { cut: number[]; processingTimes: number[] } {
  const n = Math.max(...[...positions.keys()].map((p) => p + 1), 0);
  const cut: number[] = [];
  const processingTimes: number[] = [];
  for (let p = 0; p < n; p++) {
    const pos = positions.get(p);
    cut.push(pos?.nextOffset ?? 0);
    processingTimes.push(pos?.lastTimestamp ?? 0);
  }
  return { cut, processingTimes };
}

/**
 * Runs one statement, timing it (LK_BATCH_PROFILE=1 prints each statement's wall time and the
 * process's CPU time over it: DuckDB's threads are the process's, and on a shared machine the CPU
 * time is the steadier figure to compare variants by).
 */
async function exec(conn: DuckDBConnection, sql: string): Promise<void> {
  const started = performance.now();
  const cpu = process.cpuUsage();
  await conn.run(sql);
  if (process.env.LK_BATCH_PROFILE) {
    const used = process.cpuUsage(cpu);
    process.stderr.write(
      `${((performance.now() - started) / 1000).toFixed(3)}s wall ${((used.user + used.system) / 1e6).toFixed(2)}s cpu ${sql.replace(/\s+/g, ' ').slice(0, 110)}\n`,
    );
  }
}

const ROW_COLUMNS = Object.entries(SNAPSHOT_COLUMNS)
  .map(([name, type]) => `"${name}" ${type}`)
  .join(', ');

function finestFirst(granularities: readonly Granularity[]): Granularity[] {
  return [...granularities].sort((a, b) => windowShape(a).sizeMs - windowShape(b).sizeMs);
}

/**
 * The coarsest of `finer` whose windows tile every window of `g` (its size divides g's, and the
 * alignments differ by whole windows: 5m, 15m and hour windows tile a 6h window, day windows
 * tile a Monday week, 7d windows do not tile 30d), or undefined: then `g` reads the events.
 */
export function rollUpSource(g: Granularity, finer: readonly Granularity[]): Granularity | undefined {
  const w = windowShape(g);
  let best: Granularity | undefined;
  for (const f of finer) {
    const v = windowShape(f);
    if (v.sizeMs < w.sizeMs && w.sizeMs % v.sizeMs === 0 && (w.originMs - v.originMs) % v.sizeMs === 0) {
      if (best === undefined || v.sizeMs > windowShape(best).sizeMs) best = f;
    }
  }
  return best;
}

/**
 * The typed `type` column narrows the rows before the compiled JSON filter runs (the JSON
 * functions are the expensive part). It implies nothing the filter does not: in the flat model
 * `type` is always a string, so only the filter's string values can match; the compiled
 * condition still decides. (Under an `event:` section a filter's `type` is just a path.)
 */
function typePrefilter(def: MetricDefinition): string {
  if (def.event !== undefined) return 'TRUE';
  const accepted = def.filter.type;
  if (accepted === undefined) return 'TRUE';
  const strings = accepted.filter((v): v is string => typeof v === 'string');
  return strings.length === 0 ? 'FALSE' : `type IN (${strings.map(sqlQuote).join(', ')})`;
}

/** Above this many pairs hll.ts switches to the dense form (SPARSE_LIMIT = HLL_M / 4). */
const SPARSE_LIMIT = HLL_M / 4;

/**
 * Registers are handled as one list per sketch of `bucket * 256 + rank` (rank <= 53 < 256), so
 * that sorting the packed integers sorts by bucket, and, within a bucket, puts the maximum rank
 * last. This keeps, of a sorted list, the last entry of each bucket: the register-wise maximum,
 * in bucket order. (A GROUP BY per register costs a hash-table entry per event; sorting short
 * lists is cheaper.)
 */
function registersSql(sorted: string): string {
  return `list_filter(${sorted}, (x, j) -> j = len(${sorted}) OR (${sorted}[j + 1] >> 8) <> (x >> 8))`;
}

/**
 * SQL serializing a sketch exactly as HyperLogLog.serialize() from `regs`, a column holding the
 * sorted register list of `registersSql` (one entry per non-zero register, in bucket order), or
 * NULL when no event had the field (the empty sketch). Sparse: tag 1, then (u16 bucket, u8 rank)
 * pairs, which is each entry as 6 hex digits. Dense (above SPARSE_LIMIT pairs, where hll.ts
 * densifies): tag 2, then 4096 one-byte registers, which is each entry's rank as 2 hex digits
 * left-padded with two zero digits per bucket skipped since the previous entry, and zeros after
 * the last one. Plain list functions over one list per sketch: no ordered aggregate (it sorts
 * every group) and no join with the 4096 buckets.
 *
 * The list is routed to one of two columns (`sp`, `de`), each NULL for the other form, instead
 * of a CASE around the two list_transform calls: DuckDB evaluates lambdas inside a CASE branch on
 * a sliced copy of the lists, which measured twice as slow. Returns the columns to select from
 * and the expression over them.
 */
function sketchSql(regs: string): { columns: string; sketch: string } {
  const sparse = `'01' || array_to_string(list_transform(sp, x -> lpad(hex(x), 6, '0')), '')`;
  const dense =
    `'02' || array_to_string(list_transform(de, (x, j) -> lpad(hex(x & 255), 2 * ((x >> 8) - coalesce(de[j - 1] >> 8, -1)), '0')), '')` +
    ` || repeat('00', ${HLL_M - 1} - (de[-1] >> 8))`;
  return {
    columns: `CASE WHEN len(${regs}) <= ${SPARSE_LIMIT} THEN ${regs} END AS sp, CASE WHEN len(${regs}) > ${SPARSE_LIMIT} THEN ${regs} END AS de`,
    sketch: `coalesce(to_base64(unhex(${sparse})), to_base64(unhex(${dense})), ${sqlQuote(EMPTY_SKETCH)})`,
  };
}

/** The flat model's event field the lake also stores as the typed column `type` (always a non-empty string). */
const TYPE_FIELD = 'type';

/**
 * Fields read by any metric, in a fixed order, except, in the flat model, `type`: the lake has it
 * as a typed column (docs/lake.md), so it is not parsed out of `raw` again (see `docOf`).
 */
export function referencedFields(defs: readonly MetricDefinition[]): string[] {
  const fields = new Set<string>();
  for (const d of defs) for (const f of metricFieldsOf(d)) fields.add(f);
  if (eventMappingOf(defs).flat) fields.delete(TYPE_FIELD);
  return [...fields];
}

/**
 * Fields whose numbers are read as text (filters, keys, distinct values): the number's source
 * text must come from `raw`, because DuckDB's JSON values keep a double, not the digits
 * (services/metrics/fieldSemantics.ts). A field read only as a value needs only its double.
 */
function textFields(defs: readonly MetricDefinition[]): Set<string> {
  const fields = new Set<string>();
  for (const d of defs) {
    for (const f of Object.keys(d.filter)) fields.add(f);
    // `not` compares numbers by their text; bounds and exists need only the value.
    for (const [f, c] of Object.entries(d.conditions ?? {})) if (c.not !== undefined) fields.add(f);
    for (const f of keyFieldsOf(d)) fields.add(f);
    if (d.distinct !== undefined) fields.add(d.distinct);
  }
  return fields;
}

/**
 * A JSON object of just `fields` (services/metrics/fieldSemantics.ts `fieldsDocumentSql`), each
 * under its column's name (a plain name, whatever the field's path); `type` comes from the typed
 * column as the JSON string the raw event holds (to_json quotes and escapes it).
 */
function docOf(fields: readonly string[], column: (field: string) => string): string {
  return fieldsDocumentSql(fields.map(column), (c) => (c === TYPE_FIELD ? `to_json(${c})` : c));
}

/**
 * Aggregates and sketches of one metric, into `agg` and `keys`.
 *
 * The compiled expressions (services/metrics/compile.ts) are evaluated once per *distinct* value
 * of the fields they read, not once per event: the filter and key over the distinct (filter
 * fields, key) tuples, the value over distinct values, the distinct field over distinct values,
 * each on a rebuilt JSON object of just those fields (docOf), then joined back to the events.
 * Same SQL, same answers, a few thousand JSON evaluations instead of tens of millions. Keys are
 * numbered (`kid`) so that the per-event table and every GROUP BY carry an integer, not text;
 * `keys` maps them back when the rows are written.
 *
 * Only the finest granularity reads the events; each coarser one rolls up the coarsest finer one
 * whose windows tile it (rollUpSource; minute, hour and day windows nest), or reads the events
 * when none does (a 7d window is no union of 30d ones): counts add, min and max of mins and maxes,
 * the sum is the compensated sum (fsum) of the finer sums (equal to the sum over the events up
 * to rounding, as any summation order is), and the registers are register-wise maxima.
 */
async function computeMetric(
  conn: DuckDBConnection,
  def: MetricDefinition,
  index: number,
  fieldColumn: (f: string) => string,
): Promise<void> {
  // The rules read the rebuilt document (docOf), whose members are the fields' columns.
  const sql = compileMetricSql(def, 'doc', fieldColumn);
  const matchFields = [...new Set([...Object.keys(def.filter), ...Object.keys(def.conditions ?? {}), ...keyFieldsOf(def)])];
  const same = (fields: readonly string[], t: string) =>
    fields.map((f) => `${t}.${fieldColumn(f)} IS NOT DISTINCT FROM ev.${fieldColumn(f)}`).join(' AND ');
  const cols = (fields: readonly string[]) => fields.map(fieldColumn).join(', ');
  await exec(
    conn,
    `CREATE TEMP TABLE mk_${index} AS SELECT *, dense_rank() OVER (ORDER BY k)::INTEGER AS kid FROM (
       SELECT ${cols(matchFields)}, ${sql.key} AS k
       FROM (SELECT *, ${docOf(matchFields, fieldColumn)} AS doc FROM (SELECT DISTINCT ${cols(matchFields)} FROM ev WHERE ${typePrefilter(def)}))
       WHERE ${sql.where})`,
  );
  await exec(conn, `INSERT INTO keys SELECT DISTINCT ${index}, kid, k FROM mk_${index}`);
  const joins = [`JOIN mk_${index} mk ON ${same(matchFields, 'mk')}`];
  const columns = ['ev.p', 'ev.o', 'ev.ts_ms', 'ev.first', 'ev.mis', 'mk.kid'];
  if (def.value !== undefined) {
    const c = fieldColumn(def.value);
    await exec(
      conn,
      `CREATE TEMP TABLE mv_${index} AS SELECT ${c}, ${sql.value} AS v FROM (SELECT ${c}, ${docOf([def.value], fieldColumn)} AS doc FROM (SELECT DISTINCT ${c} FROM ev))`,
    );
    joins.push(`LEFT JOIN mv_${index} mv ON mv.${c} IS NOT DISTINCT FROM ev.${c}`);
    columns.push('mv.v');
    if (def.percentiles !== undefined) {
      // The percentile bucket of each distinct value, by the boundary table both engines read
      // (services/metrics/ddsketch.ts): an ASOF join, no logarithm.
      const table = bucketBoundaries(def.percentiles.relativeAccuracy);
      await exec(
        conn,
        `CREATE TEMP TABLE mb_${index} AS ${bucketSelectSql(`(SELECT rowid AS rid, v FROM mv_${index} WHERE v IS NOT NULL)`, 'rid', 'v', table)}`,
      );
      joins.push(`LEFT JOIN mb_${index} mb ON mb.id = mv.rowid`);
      columns.push('mb.bucket AS vb');
    }
  }
  if (def.distinct !== undefined) {
    const c = fieldColumn(def.distinct);
    const reg = hllRegisterSql('d');
    // The distinct field's canonical text and its HyperLogLog register, once per distinct value.
    await exec(
      conn,
      `CREATE TEMP TABLE md_${index} AS SELECT ${c}, (${reg.bucket} * 256 + ${reg.rank})::INTEGER AS reg
       FROM (SELECT ${c}, ${sql.distinct} AS d FROM (SELECT ${c}, ${docOf([def.distinct], fieldColumn)} AS doc FROM (SELECT DISTINCT ${c} FROM ev)))
       WHERE d IS NOT NULL`,
    );
    joins.push(`LEFT JOIN md_${index} md ON md.${c} IS NOT DISTINCT FROM ev.${c}`);
    columns.push('md.reg');
  }
  // The events of the metric, with their key number, value and register: only the finest
  // granularity reads them, straight from this join (it is not materialized).
  const events = `(SELECT ${columns.join(', ')} FROM ev ${joins.join(' ')} WHERE ${typePrefilter(def).replace(/^type/, 'ev.type')})`;

  if (def.session !== undefined) {
    await computeSessions(conn, def, index, events);
    for (const t of ['mk', 'mb', 'mv', 'md']) await exec(conn, `DROP TABLE IF EXISTS ${t}_${index}`);
    return;
  }
  const hasValue = def.value !== undefined;
  const hasDistinct = def.distinct !== undefined;
  const hasPercentiles = def.percentiles !== undefined;
  const grans = finestFirst(def.granularities);
  const none = 'CAST(NULL AS DOUBLE)';
  const tables = new Map<Granularity, string>();
  for (const [gi, g] of grans.entries()) {
    const table = `g_${index}_${gi}`;
    const source = rollUpSource(g, grans.slice(0, gi));
    const finer = source === undefined ? undefined : tables.get(source)!;
    const w = sql.windowStart(g, finer === undefined ? 'ts_ms' : 'w');
    // The finest granularity aggregates the events, a coarser one the next finer windows.
    const aggregates =
      finer === undefined
        ? [
            'count(*) FILTER (first) AS count',
            `${hasValue ? 'fsum(v) FILTER (first)' : none} AS sum`,
            `${hasValue ? 'min(v) FILTER (first)' : none} AS min`,
            `${hasValue ? 'max(v) FILTER (first)' : none} AS max`,
            'count(*) AS raw_count',
            'count(*) FILTER (first AND mis) AS misplaced',
            ...(hasDistinct ? ['list(reg) FILTER (first AND reg IS NOT NULL) AS unsorted'] : []),
          ]
        : [
            'sum(count)::BIGINT AS count',
            'fsum(sum) AS sum',
            'min(min) AS min',
            'max(max) AS max',
            'sum(raw_count)::BIGINT AS raw_count',
            'sum(misplaced)::BIGINT AS misplaced',
            ...(hasDistinct ? ['flatten(list(regs) FILTER (regs IS NOT NULL)) AS unsorted'] : []),
          ];
    const grouped = `SELECT kid, ${w} AS w, p, ${aggregates.join(', ')} FROM ${finer ?? events} GROUP BY kid, ${w}, p`;
    // Every window is kept here, also those with only duplicates (count 0): their raw_count
    // still counts in the coarser windows. Only windows with count > 0 become rows.
    if (hasDistinct) {
      const sketch = sketchSql('regs');
      await exec(
        conn,
        `CREATE TEMP TABLE ${table} AS SELECT * EXCLUDE (sp, de), ${sketch.sketch} AS sketch FROM (
           SELECT *, ${sketch.columns} FROM (
             SELECT * EXCLUDE (sorted), ${registersSql('sorted')} AS regs FROM (
               SELECT * EXCLUDE (unsorted), list_sort(unsorted) AS sorted FROM (${grouped}))))`,
      );
    } else {
      await exec(conn, `CREATE TEMP TABLE ${table} AS SELECT *, CAST(NULL AS VARCHAR) AS sketch FROM (${grouped})`);
    }
    // Percentile buckets: (window, bucket) -> count, rolled up like the counts; each window's
    // sketch text is written by sketchTextSql, in the form the speed layer writes (sketchText).
    let valueSketch = 'CAST(NULL AS VARCHAR)';
    if (hasPercentiles) {
      const bucketsFrom =
        finer === undefined
          ? `SELECT kid, ${w} AS w, p, vb, count(*) AS n FROM ${events} WHERE first AND vb IS NOT NULL GROUP BY ALL`
          : `SELECT kid, ${w} AS w, p, vb, sum(n)::BIGINT AS n FROM vb_${finer} GROUP BY ALL`;
      await exec(conn, `CREATE TEMP TABLE vb_${table} AS ${bucketsFrom}`);
      await exec(
        conn,
        `CREATE TEMP TABLE vs_${table} AS SELECT kid, w, p, ${sketchTextSql('vb', 'n')} AS value_sketch FROM vb_${table} GROUP BY kid, w, p`,
      );
      valueSketch = `coalesce(s.value_sketch, '')`;
    }
    await exec(
      conn,
      `INSERT INTO agg SELECT ${index}, ${sqlQuote(g)}, kid, w, p, count, sum, min, max, raw_count, misplaced, sketch, ${valueSketch}, NULL
       FROM ${table} t${hasPercentiles ? ` LEFT JOIN vs_${table} s USING (kid, w, p)` : ''} WHERE count > 0`,
    );
    tables.set(g, table);
  }
  for (const table of tables.values()) for (const t of [`vb_${table}`, `vs_${table}`]) await exec(conn, `DROP TABLE IF EXISTS ${t}`);
  for (const t of ['mk', 'mb', 'mv', 'md']) await exec(conn, `DROP TABLE IF EXISTS ${t}_${index}`);
  for (const table of tables.values()) await exec(conn, `DROP TABLE ${table}`);
}

/**
 * The partial sessions of a session metric (services/metrics/sessionRule.ts), into `agg`: per
 * (key, input partition), the first copies of the events (deduplicated over the whole lake, as
 * for windows) ordered by time then offset; a new session where the time since the previous
 * event is >= gap (`startsSessionSql`, the twin of the speed layer's `startsSession`), numbered
 * by the running count of those flags (`sessionNumberSql`); one row per number, `window_start`
 * = its first event time and `window_end` its last, measured as a window is (count, the
 * compensated sum, min, max, misplaced, the HLL registers serialized in SQL). `raw_count` is the
 * count: duplicates belong to no session (their first copy does).
 */
async function computeSessions(conn: DuckDBConnection, def: MetricDefinition, index: number, events: string): Promise<void> {
  const gapMs = def.session!.gapMs;
  const over = 'PARTITION BY kid, p ORDER BY ts_ms, o';
  const hasValue = def.value !== undefined;
  const hasDistinct = def.distinct !== undefined;
  const none = 'CAST(NULL AS DOUBLE)';
  const numbered = `SELECT *, ${sessionNumberSql('starts', over)} AS sid FROM (
       SELECT *, ${startsSessionSql('ts_ms', over, gapMs)} AS starts FROM ${events} WHERE first)`;
  const grouped = `SELECT kid, p, min(ts_ms) AS w, max(ts_ms) AS window_end, count(*) AS count,
       ${hasValue ? 'fsum(v)' : none} AS sum, ${hasValue ? 'min(v)' : none} AS min, ${hasValue ? 'max(v)' : none} AS max,
       count(*) AS raw_count, count(*) FILTER (mis) AS misplaced
       ${hasDistinct ? ', list(reg) FILTER (reg IS NOT NULL) AS unsorted' : ''}
     FROM (${numbered}) GROUP BY kid, p, sid`;
  const table = `s_${index}`;
  if (hasDistinct) {
    const sketch = sketchSql('regs');
    await exec(
      conn,
      `CREATE TEMP TABLE ${table} AS SELECT * EXCLUDE (sp, de), ${sketch.sketch} AS sketch FROM (
         SELECT *, ${sketch.columns} FROM (
           SELECT * EXCLUDE (sorted), ${registersSql('sorted')} AS regs FROM (
             SELECT * EXCLUDE (unsorted), list_sort(unsorted) AS sorted FROM (${grouped}))))`,
    );
  } else {
    await exec(conn, `CREATE TEMP TABLE ${table} AS SELECT *, CAST(NULL AS VARCHAR) AS sketch FROM (${grouped})`);
  }
  await exec(
    conn,
    `INSERT INTO agg SELECT ${index}, ${sqlQuote(SESSION_GRANULARITY)}, kid, w, p, count, sum, min, max, raw_count, misplaced, sketch,
       CAST(NULL AS VARCHAR), window_end FROM ${table}`,
  );
  await exec(conn, `DROP TABLE ${table}`);
}

export interface RecomputeResult {
  manifest: BatchRunManifest;
  /** False when another batch process had already published a run of a newer lake snapshot (CURRENT only moves forward). */
  published: boolean;
  /** The published rows as a file on this host (undefined when not published). */
  rowsPath: string | undefined;
}

/** Counts of the events read (duplicates included, first copies, misplaced records). */
interface EventCounts {
  raw: number;
  unique: number;
  misplaced: number;
}

/**
 * Step 1: the events of the lake snapshot in the temp table `ev` (partition, offset, id, time,
 * type, first-copy and misplaced flags, and the JSON text of every field a metric reads), with
 * duplicates marked. Returns the column of each field.
 *
 * The event of each record is the version's mapping's (its metric file's `event:` section): the
 * lake's typed columns where the lake writer decoded it under the same mapping
 * (`event_mapping`), otherwise derived in SQL from the raw text, the record key and the record
 * timestamp (`mappedEventSql`, bound to the JavaScript by the differential test). So a version
 * whose mapping differs from the one the lake was written with is recomputed exactly.
 */
async function loadEvents(
  conn: DuckDBConnection,
  files: readonly string[],
  defs: readonly MetricDefinition[],
  homePartitions: number,
): Promise<(f: string) => string> {
  const mapping = eventMappingOf(defs);
  const fields = referencedFields(defs);
  const texts = textFields(defs);
  const fieldColumn = (f: string) => (mapping.flat && f === TYPE_FIELD ? 'type' : `f${fields.indexOf(f)}`);
  if (files.length === 0) {
    await exec(
      conn,
      `CREATE TEMP TABLE ev (p INTEGER, o BIGINT, id VARCHAR, ts_ms BIGINT, type VARCHAR, first BOOLEAN, mis BOOLEAN${fields.map((_, i) => `, f${i} VARCHAR`).join('')})`,
    );
    return fieldColumn;
  }
  // json_transform to a struct of JSON values: one parse per event for every field any metric
  // reads (faster than a multi-path json_extract, same JSON texts; keys match exactly).
  const { structure, valueOf } = fieldsStructureSql(
    fields.map((f) => fieldNames(f, mapping.flat)),
    'j',
  );
  const fieldColumns = fields.map((f, i) => `, ${fieldJsonSql(sqlField(f, mapping), texts.has(f), valueOf[i]!)} AS f${i}`).join('');
  const lake = lakeRowsSql(files);
  const sameMapping = `coalesce(event_mapping, ${sqlQuote(FLAT_MAPPING_NAME)}) = ${sqlQuote(lakeMappingName(mapping))}`;
  const typed = `CASE WHEN ts_ms IS NOT NULL THEN struct_pack(id := id, ts := ts_ms, type := type, hash := id_hash) END`;
  const derived = mappedEventSql(mapping, { raw: 'raw', key: 'kafka_key', timestamp: 'kafka_timestamp' });
  // Misplaced: not in the home partition of its id (services/log/partitioner.ts); a file of an
  // older layout has no id_hash, and its events count as misplaced (the cautious answer).
  const misplaced = `coalesce(e.hash % ${homePartitions} <> kafka_partition, TRUE)`;
  await exec(
    conn,
    `CREATE TEMP TABLE ev AS SELECT p, o, id, ts_ms, type, TRUE AS first, mis${fieldColumns} FROM (
       SELECT kafka_partition AS p, kafka_offset AS o, e.id AS id, e.ts AS ts_ms, e.type AS type, raw, ${misplaced} AS mis${fields.length > 0 ? `, json_transform(raw, ${structure}) AS j` : ''}
       FROM (SELECT *, CASE WHEN ${sameMapping} THEN ${typed} ELSE ${derived} END AS e FROM ${lake})
       WHERE e IS NOT NULL)`,
  );
  // Deduplication without sorting the whole lake by id: only ids seen more than once need an
  // order, so a window over their copies alone finds every copy after the first one (lowest
  // partition, then offset; (p, o) is unique) and marks it. Every other record is its id's
  // first occurrence. The ids come from `ev`: reading them from Parquet again costs more.
  await exec(
    conn,
    `UPDATE ev SET first = FALSE WHERE rowid IN (
       SELECT r FROM (
         SELECT rowid AS r, row_number() OVER (PARTITION BY id ORDER BY p, o) AS n
         FROM ev WHERE id IN (SELECT id FROM ev GROUP BY id HAVING count(*) > 1))
       WHERE n > 1)`,
  );
  return fieldColumn;
}

async function countEvents(conn: DuckDBConnection): Promise<EventCounts> {
  const [raw, unique, misplaced] = (
    await conn.runAndReadAll(`SELECT count(*)::BIGINT, count(*) FILTER (first)::BIGINT, count(*) FILTER (mis)::BIGINT FROM ev`)
  ).getRows()[0] as [bigint, bigint, bigint];
  return { raw: Number(raw), unique: Number(unique), misplaced: Number(misplaced) };
}

/**
 * Step 2: every metric aggregated into `agg` and `keys` (computeMetric). Rows name their metric by
 * index and their key by number (kid) until they are written. A metric with `distinct` always
 * carries a sketch: the empty one when no event had the field.
 */
async function aggregateMetrics(
  conn: DuckDBConnection,
  defs: readonly MetricDefinition[],
  fieldColumn: (f: string) => string,
  onMetric: (name: string) => void,
): Promise<void> {
  await exec(
    conn,
    `CREATE TEMP TABLE agg (mi INTEGER, granularity VARCHAR, kid INTEGER, window_start BIGINT, partition INTEGER,
       count BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE, raw_count BIGINT, misplaced BIGINT, sketch VARCHAR, value_sketch VARCHAR,
       window_end BIGINT)`,
  );
  await exec(conn, `CREATE TEMP TABLE keys (mi INTEGER, kid INTEGER, key VARCHAR)`);
  await exec(conn, `CREATE TEMP TABLE metric_names (mi INTEGER, metric VARCHAR)`);
  await exec(conn, `INSERT INTO metric_names VALUES ${defs.map((d, i) => `(${i}, ${sqlQuote(d.name)})`).join(', ')}`);
  for (const [i, def] of defs.entries()) {
    onMetric(def.name);
    await computeMetric(conn, def, i, fieldColumn);
  }
  await exec(conn, `DROP TABLE ev`);
}

/** Step 3: the view rows, stamped with the run's cut, written as the staged run's rows.parquet. Returns their number. */
async function writeViewRows(
  conn: DuckDBConnection,
  cut: readonly number[],
  processingTimes: readonly number[],
  staged: string,
): Promise<number> {
  await exec(conn, `CREATE TEMP TABLE cuts (p INTEGER, through_offset BIGINT, processing_time BIGINT)`);
  if (cut.length > 0) await exec(conn, `INSERT INTO cuts VALUES ${cut.map((c, p) => `(${p}, ${c}, ${processingTimes[p]})`).join(', ')}`);
  await exec(conn, `CREATE TEMP TABLE view_rows (${ROW_COLUMNS})`);
  await exec(
    conn,
    `INSERT INTO view_rows SELECT n.metric, a.granularity, k.key, a.window_start, a.partition, a.count, a.sum, a.min, a.max,
       a.sketch, a.value_sketch, a.raw_count, a.misplaced, c.through_offset, c.processing_time, a.window_end
     FROM agg a JOIN cuts c ON c.p = a.partition JOIN metric_names n ON n.mi = a.mi JOIN keys k ON k.mi = a.mi AND k.kid = a.kid`,
  );
  const rows = Number(((await conn.runAndReadAll(`SELECT count(*)::BIGINT FROM view_rows`)).getRows()[0] as [bigint])[0]);
  await exec(
    conn,
    `COPY (SELECT * FROM view_rows ORDER BY metric, granularity, window_start, key, partition)
     TO ${sqlQuote(join(staged, 'rows.parquet'))} (FORMAT parquet, COMPRESSION snappy)`,
  );
  crashPoint('batch.run.rows-written');
  return rows;
}

/**
 * One full recompute from a lake snapshot, published atomically as the version's CURRENT run:
 * the events read (step 1), every metric aggregated (step 2), the rows written (step 3), then
 * the run committed (services/views/batchSnapshots.ts). A failed run publishes nothing.
 */
export async function recomputeBatchViews(options: RecomputeOptions): Promise<RecomputeResult> {
  const startedAt = Date.now();
  const runId = newRunId(new Date(startedAt));
  const table = await openLakeForReading(options.lake, { missingOk: true, migrate: true, logger: options.logger });
  const snapshot = table?.current;
  const { cut, processingTimes } = cutOf(lakePositions(snapshot, options.lake.topic));
  const files = filesOf(snapshot);
  const staged = stageBatchRun(options.scratchDir, options.version, runId);
  const phase = options.onPhase ?? (() => undefined);
  const defs = options.metrics.metrics;
  const totalPhases = defs.length + 2;
  const db = await DuckDBInstance.create(':memory:', {
    threads: String(options.threads ?? 2),
    memory_limit: options.memoryLimit ?? '4GB',
    temp_directory: join(staged, '.spill'),
    preserve_insertion_order: 'false',
  });
  const conn = await db.connect();
  let manifest: BatchRunManifest;
  try {
    phase('read lake', 0, totalPhases);
    const access = new LakeFileAccess(options.lake.store, options.lake.cacheDir);
    const fetchStarted = performance.now();
    const paths = await access.localPaths(files.map((f) => ({ key: f.key, size: f.size })));
    if (process.env.LK_BATCH_PROFILE)
      process.stderr.write(
        `lake files: ${files.length} (${access.inPlace ? 'in place' : `cache: ${access.stats.hits} hits, ${access.stats.downloads} downloads of ${access.stats.downloadedBytes} bytes`}) in ${((performance.now() - fetchStarted) / 1000).toFixed(2)}s\n`,
      );
    const fieldColumn = await loadEvents(conn, paths, defs, options.homePartitions);
    const counts = await countEvents(conn);
    let done = 1;
    await aggregateMetrics(conn, defs, fieldColumn, (name) => phase(`metric ${name}`, done++, totalPhases));
    phase('write snapshot', done, totalPhases);
    const rows = await writeViewRows(conn, cut, processingTimes, staged);
    manifest = runManifest(options, { engine: 'duckdb', runId, cut, processingTimes, startedAt, rows, counts, files });
  } catch (err) {
    // A failed run publishes nothing: CURRENT still names the previous complete run.
    rmSync(staged, { recursive: true, force: true });
    throw err;
  } finally {
    conn.closeSync();
    db.closeSync();
  }
  rmSync(join(staged, '.spill'), { recursive: true, force: true });
  const result = await publishStagedRun(options, staged, manifest);
  phase('done', totalPhases, totalPhases);
  return result;
}

/**
 * Step 4 of every engine's run (DuckDB's above, Spark's in batch/engines/spark/sparkViews.ts):
 * the run built in `staged` (rows.parquet) committed to the shared state (commitBatchRun: the
 * same crash points, CURRENT moved forward only), its rows kept readable on this host, the
 * staging folder removed and old runs pruned. One function, so that the engines cannot publish
 * differently.
 */
/**
 * The run record of a finished recompute, as every engine writes it: what it read (cut, lake
 * files), what it found (events) and what it wrote (rows), stamped with the engine that ran.
 */
export function runManifest(
  options: Pick<RecomputeOptions, 'version' | 'homePartitions' | 'metrics'>,
  run: {
    engine: BatchRunManifest['engine'];
    runId: string;
    cut: BatchRunManifest['cut'];
    processingTimes: BatchRunManifest['processingTimes'];
    startedAt: number;
    rows: number;
    counts: EventCounts;
    files: readonly { size: number }[];
  },
): BatchRunManifest {
  const finishedAt = Date.now();
  return {
    runId: run.runId,
    version: options.version,
    engine: run.engine,
    cut: run.cut,
    processingTimes: run.processingTimes,
    startedAt: run.startedAt,
    finishedAt,
    durationMs: finishedAt - run.startedAt,
    rows: run.rows,
    rawEvents: run.counts.raw,
    uniqueEvents: run.counts.unique,
    misplacedEvents: run.counts.misplaced,
    homePartitions: options.homePartitions,
    lakeFiles: run.files.length,
    lakeBytes: run.files.reduce((n, f) => n + f.size, 0),
    full: true,
    metricsSource: options.metrics.source,
    metricsSha256: options.metrics.sha256,
  };
}

export async function publishStagedRun(
  options: Pick<RecomputeOptions, 'state' | 'scratchDir' | 'cacheDir' | 'version' | 'logger' | 'keepRuns' | 'runGraceMs'>,
  staged: string,
  manifest: BatchRunManifest,
): Promise<RecomputeResult> {
  const { state } = options;
  const { runId, engine } = manifest;
  const committed = await commitBatchRun(state, staged, manifest);
  // The rows stay readable here: in place on a local state, else as this host's cached copy.
  const rowsPath = committed.published
    ? (state.localPath(runKey(options.version, runId, 'rows.parquet')) ?? keepStagedRows(staged, options.cacheDir, manifest))
    : undefined;
  rmSync(staged, { recursive: true, force: true });
  await pruneBatchRuns(state, options.version, options.scratchDir, options.keepRuns ?? 3, options.runGraceMs ?? 10 * 60_000);
  const { rows, rawEvents, uniqueEvents, lakeFiles, durationMs } = manifest;
  if (!committed.published) {
    options.logger.warn(
      { runId, engine, current: committed.current.runId, cut: manifest.cut, currentCut: committed.current.cut },
      'batch run not published: another batch process published a run of a newer lake snapshot first',
    );
    return { manifest, published: false, rowsPath: undefined };
  }
  options.logger.info({ runId, engine, rows, rawEvents, uniqueEvents, lakeFiles, ms: durationMs }, 'batch views published');
  return { manifest, published: true, rowsPath };
}
