/**
 * Batch views: the truth recomputed from the lake with DuckDB, compiled from the same metric
 * definitions as the speed layer (services/metrics/compile.ts), in the row shape of the view
 * contract (services/views/viewRow.ts) and published as an immutable snapshot
 * (services/views/batchSnapshots.ts).
 *
 * - The run's cut is the lake manifest's position at the start: the files of that manifest
 *   version hold exactly the partitions' records below the cut, so every row can say
 *   `through_offset = cut[partition]` and `processing_time = log-append time of record cut - 1`.
 * - Deduplication by event id over the whole lake keeps the first occurrence (lowest partition,
 *   then offset); `raw_count` counts before it. Every late event counts: the batch layer has no
 *   lateness horizon.
 * - Distinct counts are HyperLogLog registers computed in SQL with the shared hash
 *   (hllRegisterSql), rolled up from the finest granularity (a register is a max, so hour and
 *   day sketches are maxima of minute registers), and serialized in SQL in the exact byte
 *   layout of services/metrics/hll.ts (sparse pairs in bucket order, dense above 1024 pairs), so
 *   serving merges batch and speed sketches. Doing it in SQL avoids shipping millions of
 *   register rows to JS; batchViews.exactness.spec.ts checks the registers against the speed
 *   side's HyperLogLog fed the same values.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { GRANULARITY_MS, type Granularity, type MetricDefinition, type MetricDefinitions } from '../../services/metrics/definitions.ts';
import { compileMetricSql } from '../../services/metrics/compile.ts';
import { HLL_M, HyperLogLog, hllRegisterSql } from '../../services/metrics/hll.ts';

const EMPTY_SKETCH = new HyperLogLog().toBase64();
import type { Logger } from '../../services/observability/logger.ts';
import {
  SNAPSHOT_COLUMNS,
  commitBatchRun,
  pruneBatchRuns,
  stageBatchRun,
  type BatchRunManifest,
} from '../../services/views/batchSnapshots.ts';
import { LakeManifest, type LakeSnapshot } from '../lake/commitProtocol.ts';
import { sqlQuote } from '../lake/lakeSchema.ts';

export interface RecomputeOptions {
  /** The topic's lake directory. */
  lakeRoot: string;
  viewsRoot: string;
  version: string;
  metrics: MetricDefinitions;
  logger: Logger;
  /** Recompute from the whole lake (the only mode: every run is a full recompute, see docs). */
  full?: boolean;
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

/** The cut and processing-time stamps of a lake snapshot, one entry per input partition. */
export function cutOf(snapshot: Pick<LakeSnapshot, 'partitionCount' | 'positions'>): { cut: number[]; processingTimes: number[] } {
  const n = Math.max(snapshot.partitionCount, ...[...snapshot.positions.keys()].map((p) => p + 1), 0);
  const cut: number[] = [];
  const processingTimes: number[] = [];
  for (let p = 0; p < n; p++) {
    const pos = snapshot.positions.get(p);
    cut.push(pos?.nextOffset ?? 0);
    processingTimes.push(pos?.lastTimestamp ?? 0);
  }
  return { cut, processingTimes };
}

/** Runs one statement, timing it (LK_BATCH_PROFILE=1 prints each statement's duration). */
async function exec(conn: DuckDBConnection, sql: string): Promise<void> {
  const started = performance.now();
  await conn.run(sql);
  if (process.env.LK_BATCH_PROFILE)
    process.stderr.write(`${((performance.now() - started) / 1000).toFixed(3)}s ${sql.replace(/\s+/g, ' ').slice(0, 110)}\n`);
}

const ROW_COLUMNS = Object.entries(SNAPSHOT_COLUMNS)
  .map(([name, type]) => `"${name}" ${type}`)
  .join(', ');

function finestFirst(granularities: readonly Granularity[]): Granularity[] {
  return [...granularities].sort((a, b) => GRANULARITY_MS[a] - GRANULARITY_MS[b]);
}

/**
 * The typed `type` column narrows the rows before the compiled JSON filter runs (the JSON
 * functions are the expensive part). It implies nothing the filter does not: `type` is always a
 * string, so only the filter's string values can match; the compiled condition still decides.
 */
function typePrefilter(def: MetricDefinition): string {
  const accepted = def.filter.type;
  if (accepted === undefined) return 'TRUE';
  const strings = accepted.filter((v): v is string => typeof v === 'string');
  return strings.length === 0 ? 'FALSE' : `type IN (${strings.map(sqlQuote).join(', ')})`;
}

/** Hex of a sparse sketch pair (u16 bucket, u8 rank) and of a dense register: hll.ts's layout. */
const SPARSE_PAIR_HEX = `lpad(hex(bucket * 256 + rank), 6, '0')`;
/** Above this many pairs hll.ts switches to the dense form (SPARSE_LIMIT = HLL_M / 4). */
const SPARSE_LIMIT = HLL_M / 4;

/**
 * Fields read by any metric, in a fixed order: `ev` holds each one's JSON value (extracted once
 * per event: one parse per event for all metrics).
 */
export function referencedFields(defs: readonly MetricDefinition[]): string[] {
  const fields = new Set<string>();
  for (const d of defs) {
    for (const f of Object.keys(d.filter)) fields.add(f);
    fields.add(d.key);
    if (d.value !== undefined) fields.add(d.value);
    if (d.distinct !== undefined) fields.add(d.distinct);
  }
  return [...fields];
}

/**
 * A JSON object holding only `fields`, rebuilt from their extracted JSON values (absent fields
 * stay absent). The compiled metric SQL gives the same answer on it as on the full event for any
 * expression that reads only these fields: the extracted value is the field's JSON text, types
 * included, so json_type/json_extract on the rebuilt object see the same value.
 */
function docOf(fields: readonly string[], column: (field: string) => string): string {
  const members = fields.map((f) => `CASE WHEN ${column(f)} IS NOT NULL THEN ${sqlQuote(`${JSON.stringify(f)}:`)} || ${column(f)} END`);
  return `('{' || concat_ws(',', ${members.join(', ')}) || '}')`;
}

/**
 * Aggregates and sketches of one metric, into `agg` and `sketches`.
 *
 * The compiled expressions (services/metrics/compile.ts) are evaluated once per *distinct* value
 * of the fields they read, not once per event: the filter and key over the distinct (filter
 * fields, key) tuples, the value over distinct values, the distinct field over distinct values,
 * each on a rebuilt JSON object of just those fields (docOf), then joined back to the events.
 * Same SQL, same answers, a few thousand JSON evaluations instead of tens of millions.
 */
async function computeMetric(
  conn: DuckDBConnection,
  def: MetricDefinition,
  index: number,
  fieldColumn: (f: string) => string,
): Promise<void> {
  const m = `m_${index}`;
  const sql = compileMetricSql(def, 'doc');
  const matchFields = [...new Set([...Object.keys(def.filter), def.key])];
  const same = (fields: readonly string[], t: string) =>
    fields.map((f) => `${t}.${fieldColumn(f)} IS NOT DISTINCT FROM ev.${fieldColumn(f)}`).join(' AND ');
  const cols = (fields: readonly string[]) => fields.map(fieldColumn).join(', ');
  await exec(
    conn,
    `CREATE TEMP TABLE mk_${index} AS SELECT ${cols(matchFields)}, ${sql.key} AS k
     FROM (SELECT *, ${docOf(matchFields, fieldColumn)} AS doc FROM (SELECT DISTINCT ${cols(matchFields)} FROM ev WHERE ${typePrefilter(def)}))
     WHERE ${sql.where}`,
  );
  const joins = [`JOIN mk_${index} mk ON ${same(matchFields, 'mk')}`];
  let value = 'CAST(NULL AS DOUBLE)';
  let hashed = 'CAST(NULL AS INTEGER) AS bucket, CAST(NULL AS INTEGER) AS rank';
  if (def.value !== undefined) {
    const c = fieldColumn(def.value);
    await exec(
      conn,
      `CREATE TEMP TABLE mv_${index} AS SELECT ${c}, ${sql.value} AS v FROM (SELECT ${c}, ${docOf([def.value], fieldColumn)} AS doc FROM (SELECT DISTINCT ${c} FROM ev))`,
    );
    joins.push(`LEFT JOIN mv_${index} mv ON mv.${c} IS NOT DISTINCT FROM ev.${c}`);
    value = 'mv.v';
  }
  if (def.distinct !== undefined) {
    const c = fieldColumn(def.distinct);
    const reg = hllRegisterSql('d');
    // The distinct field's canonical text and its HyperLogLog register, once per distinct value.
    await exec(
      conn,
      `CREATE TEMP TABLE md_${index} AS SELECT ${c}, ${reg.bucket} AS bucket, ${reg.rank} AS rank
       FROM (SELECT ${c}, ${sql.distinct} AS d FROM (SELECT ${c}, ${docOf([def.distinct], fieldColumn)} AS doc FROM (SELECT DISTINCT ${c} FROM ev)))
       WHERE d IS NOT NULL`,
    );
    joins.push(`LEFT JOIN md_${index} md ON md.${c} IS NOT DISTINCT FROM ev.${c}`);
    hashed = 'md.bucket, md.rank';
  }
  await exec(
    conn,
    `CREATE TEMP TABLE ${m} AS SELECT ev.p, ev.ts_ms, ev.first, mk.k, ${value} AS v, ${hashed}
     FROM ev ${joins.join(' ')} WHERE ${typePrefilter(def).replace(/^type/, 'ev.type')}`,
  );
  for (const t of ['mk', 'mv', 'md']) await exec(conn, `DROP TABLE IF EXISTS ${t}_${index}`);
  const grans = finestFirst(def.granularities);
  const finest = grans[0]!;
  const ws = (g: Granularity) => `((ts_ms // ${GRANULARITY_MS[g]}) * ${GRANULARITY_MS[g]})`;
  for (const g of grans) {
    await exec(
      conn,
      `INSERT INTO agg SELECT ${sqlQuote(def.name)}, ${sqlQuote(g)}, k, ${ws(g)} AS w, p,
         count(*) FILTER (first), fsum(v) FILTER (first), min(v) FILTER (first), max(v) FILTER (first), count(*)
       FROM ${m} GROUP BY k, w, p HAVING count(*) FILTER (first) > 0`,
    );
  }
  if (def.distinct !== undefined) {
    // Registers at the finest granularity; coarser windows take the register-wise max of their
    // finer registers (HyperLogLog registers are maxima).
    await exec(
      conn,
      `CREATE TEMP TABLE r_${index} AS SELECT k, ${ws(finest)} AS w, p, bucket, max(rank) AS rank
       FROM ${m} WHERE first AND bucket IS NOT NULL GROUP BY ALL`,
    );
    for (const g of grans) {
      const size = GRANULARITY_MS[g];
      // The finest granularity's registers are r itself; coarser ones are its register-wise max.
      const rg = g === finest ? `r_${index}` : `rg_${index}_${g}`;
      if (g !== finest) {
        await exec(
          conn,
          `CREATE TEMP TABLE ${rg} AS SELECT k, (w // ${size}) * ${size} AS w, p, bucket, max(rank) AS rank FROM r_${index} GROUP BY ALL`,
        );
      }
      // Serialized exactly as HyperLogLog.serialize(): sparse pairs in bucket order, or dense.
      await exec(
        conn,
        `INSERT INTO sketches SELECT ${sqlQuote(def.name)}, ${sqlQuote(g)}, k, w, p,
           to_base64(unhex('01' || string_agg(${SPARSE_PAIR_HEX}, '' ORDER BY bucket)))
         FROM ${rg} GROUP BY k, w, p HAVING count(*) <= ${SPARSE_LIMIT}`,
      );
      await exec(
        conn,
        `INSERT INTO sketches SELECT ${sqlQuote(def.name)}, ${sqlQuote(g)}, g.k, g.w, g.p,
           to_base64(unhex('02' || string_agg(lpad(hex(coalesce(r.rank, 0)), 2, '0'), '' ORDER BY b.i)))
         FROM (SELECT k, w, p FROM ${rg} GROUP BY ALL HAVING count(*) > ${SPARSE_LIMIT}) g
         CROSS JOIN range(${HLL_M}) b(i)
         LEFT JOIN ${rg} r ON r.k = g.k AND r.w = g.w AND r.p = g.p AND r.bucket = b.i
         GROUP BY g.k, g.w, g.p`,
      );
      if (g !== finest) await exec(conn, `DROP TABLE ${rg}`);
    }
    await exec(conn, `DROP TABLE r_${index}`);
  }
  await exec(conn, `DROP TABLE ${m}`);
}

export interface RecomputeResult {
  manifest: BatchRunManifest;
  rowsPath: string;
}

/** One full recompute from a lake snapshot, published atomically as the version's CURRENT run. */
export async function recomputeBatchViews(options: RecomputeOptions): Promise<RecomputeResult> {
  const startedAt = Date.now();
  const runId = newRunId(new Date(startedAt));
  const snapshot = LakeManifest.open(options.lakeRoot).snapshot();
  const { cut, processingTimes } = cutOf(snapshot);
  const staged = stageBatchRun(options.viewsRoot, options.version, runId);
  const phase = options.onPhase ?? (() => undefined);
  const totalPhases = options.metrics.metrics.length + 2;

  const db = await DuckDBInstance.create(':memory:', {
    threads: String(options.threads ?? 2),
    memory_limit: options.memoryLimit ?? '4GB',
    temp_directory: join(staged, '.spill'),
    preserve_insertion_order: 'false',
  });
  const conn = await db.connect();
  try {
    phase('read lake', 0, totalPhases);
    const files = snapshot.absolutePaths();
    const fields = referencedFields(options.metrics.metrics);
    const fieldColumn = (f: string) => `f${fields.indexOf(f)}`;
    const fieldColumns = fields.map((f, i) => `j[${sqlQuote(f)}] AS f${i}`).join(', ');
    // json_transform to a struct of JSON values: one parse per event for every field any metric
    // reads (faster than a multi-path json_extract, same JSON texts; keys match exactly).
    const structure = sqlQuote(JSON.stringify(Object.fromEntries(fields.map((f) => [f, 'JSON']))));
    if (files.length > 0) {
      await exec(
        conn,
        `CREATE TEMP TABLE ev AS SELECT p, ts_ms, type, first${fields.length > 0 ? `, ${fieldColumns}` : ''} FROM (
           SELECT kafka_partition AS p, ts_ms, type,
             row_number() OVER (PARTITION BY id ORDER BY kafka_partition, kafka_offset) = 1 AS first,
             json_transform(raw, ${structure}) AS j
           FROM read_parquet([${files.map(sqlQuote).join(', ')}]))`,
      );
    } else {
      await exec(
        conn,
        `CREATE TEMP TABLE ev (p INTEGER, ts_ms BIGINT, type VARCHAR, first BOOLEAN${fields.map((_, i) => `, f${i} JSON`).join('')})`,
      );
    }
    const counts = (await conn.runAndReadAll(`SELECT count(*)::BIGINT, count(*) FILTER (first)::BIGINT FROM ev`)).getRows()[0] as [
      bigint,
      bigint,
    ];
    await exec(
      conn,
      `CREATE TEMP TABLE agg (metric VARCHAR, granularity VARCHAR, key VARCHAR, window_start BIGINT, partition INTEGER,
         count BIGINT, sum DOUBLE, min DOUBLE, max DOUBLE, raw_count BIGINT)`,
    );
    await exec(
      conn,
      `CREATE TEMP TABLE sketches (metric VARCHAR, granularity VARCHAR, key VARCHAR, window_start BIGINT, partition INTEGER, sketch VARCHAR)`,
    );
    let done = 1;
    for (const [i, def] of options.metrics.metrics.entries()) {
      phase(`metric ${def.name}`, done++, totalPhases);
      await computeMetric(conn, def, i, fieldColumn);
    }
    await exec(conn, `DROP TABLE ev`);

    phase('write snapshot', done++, totalPhases);
    await exec(conn, `CREATE TEMP TABLE cuts (p INTEGER, through_offset BIGINT, processing_time BIGINT)`);
    if (cut.length > 0) {
      await exec(conn, `INSERT INTO cuts VALUES ${cut.map((c, p) => `(${p}, ${c}, ${processingTimes[p]})`).join(', ')}`);
    }
    await exec(conn, `CREATE TEMP TABLE view_rows (${ROW_COLUMNS})`);
    // A metric with `distinct` always carries a sketch: empty when no event had the field.
    const distinctMetrics =
      options.metrics.metrics
        .filter((d) => d.distinct !== undefined)
        .map((d) => sqlQuote(d.name))
        .join(', ') || "''";
    await exec(
      conn,
      `INSERT INTO view_rows SELECT a.metric, a.granularity, a.key, a.window_start, a.partition, a.count, a.sum, a.min, a.max,
         coalesce(s.sketch, CASE WHEN a.metric IN (${distinctMetrics}) THEN ${sqlQuote(EMPTY_SKETCH)} END),
         a.raw_count, c.through_offset, c.processing_time
       FROM agg a JOIN cuts c ON c.p = a.partition
       LEFT JOIN sketches s ON s.metric = a.metric AND s.granularity = a.granularity AND s.key = a.key AND s.window_start = a.window_start AND s.partition = a.partition`,
    );
    const rows = Number(((await conn.runAndReadAll(`SELECT count(*)::BIGINT FROM view_rows`)).getRows()[0] as [bigint])[0]);
    await exec(
      conn,
      `COPY (SELECT * FROM view_rows ORDER BY metric, granularity, window_start, key, partition)
       TO ${sqlQuote(join(staged, 'rows.parquet'))} (FORMAT parquet, COMPRESSION snappy)`,
    );
    const finishedAt = Date.now();
    const manifest: BatchRunManifest = {
      runId,
      version: options.version,
      cut,
      processingTimes,
      startedAt,
      finishedAt,
      durationMs: finishedAt - startedAt,
      rows,
      rawEvents: Number(counts[0]),
      uniqueEvents: Number(counts[1]),
      lakeFiles: snapshot.files.length,
      lakeBytes: snapshot.files.reduce((n, f) => n + f.bytes, 0),
      full: true,
      metricsSource: options.metrics.source,
    };
    conn.closeSync();
    db.closeSync();
    rmSync(join(staged, '.spill'), { recursive: true, force: true });
    commitBatchRun(options.viewsRoot, manifest);
    pruneBatchRuns(options.viewsRoot, options.version, options.keepRuns ?? 3, options.runGraceMs ?? 10 * 60_000);
    phase('done', totalPhases, totalPhases);
    options.logger.info(
      {
        runId,
        rows,
        rawEvents: manifest.rawEvents,
        uniqueEvents: manifest.uniqueEvents,
        lakeFiles: manifest.lakeFiles,
        ms: manifest.durationMs,
      },
      'batch views published',
    );
    return { manifest, rowsPath: join(options.viewsRoot, options.version, 'runs', runId, 'rows.parquet') };
  } catch (err) {
    try {
      conn.closeSync();
      db.closeSync();
    } catch {
      /* already closed */
    }
    // A failed run publishes nothing: CURRENT still names the previous complete run.
    rmSync(staged, { recursive: true, force: true });
    throw err;
  }
}
