/**
 * The third engine: the metric definitions compiled to Spark SQL, for the batch layer's Spark
 * engine (batch/engines/spark/). Fed by the same definitions as compile.ts's JavaScript and DuckDB
 * SQL, and by the same rules: fieldSemantics.ts (filters, keys, values, distinct values, the
 * canonical number text), windowStart.ts (the window rule, whose SQL is the same in both SQL
 * engines) and hll.ts (the register of a value). Each function here says which rule it restates.
 *
 * Spark's JSON functions cannot tell the string "1" from the number 1 and re-print numbers, so a
 * field is read as two columns per event (`sparkFieldColumnsSql`): its kind (`s`, `b`, `n` or NULL,
 * fieldSemantics.ts `memberValuePattern`) and its text (a string's decoded text, `true`/`false`, a
 * number's source digits). Every rule below reads those two columns.
 *
 * Expressions are written for `spark.sql.ansi.enabled=false` (a failed cast is NULL, as DuckDB's
 * TRY_CAST) and `spark.sql.caseSensitive=true` (fields `A` and `a` are two fields), which the job
 * sets (batch/engines/spark/viewsJob.py).
 *
 * Structured like compile.ts's `compileMetricSql`, one expression per rule, so that the features
 * the DuckDB compiler gains (window sizes, sessions, composite keys, avg, percentiles) get their
 * Spark twin beside it.
 */
import { keyFieldsOf, type Granularity, type MetricDefinition } from './definitions.ts';
import { memberValuePattern, NON_STRING_TEXT_STARTS, type FieldCondition, type FilterValue } from './fieldSemantics.ts';
import { HLL_M, HLL_P } from './hll.ts';
import { ZERO_BUCKET, type BucketTable } from './ddsketch.ts';
import { windowShape, windowStartSql } from './windowStart.ts';

// ---------------------------------------------------------------- literals

/**
 * A Spark SQL string literal. Spark unescapes backslash sequences inside literals (`\n`, `\u0041`,
 * `\\`), so every backslash and quote is escaped; everything else stands for itself.
 */
export function sparkQuote(text: string): string {
  return `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A Spark identifier (struct field or column), backquoted. */
export function sparkIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}

// ---------------------------------------------------------------- reading a field once per event

/** The two columns one field is read into (see the module comment). */
export interface SparkField {
  /** 's' (string), 'b' (boolean), 'n' (number) or NULL (absent, null, object, array). */
  kind: string;
  /** The decoded string, `true`/`false`, or the number's source digits; NULL without a kind. */
  text: string;
}

/**
 * The struct type `from_json` reads every field into: each as STRING, which is a string's decoded
 * text and, for any other value, a JSON text of it (fieldSemantics.ts `NON_STRING_TEXT_STARTS`).
 */
export function sparkFieldsStructType(fields: readonly string[]): string {
  return `struct<${fields.map((f) => `${sparkIdent(f)}: STRING`).join(', ')}>`;
}

/**
 * Kind and text of field `field`, given `decoded` (its `from_json` STRING) and `raw` (the event
 * text): the pattern of fieldSemantics.ts `memberValuePattern` decides, and runs only when the
 * decoded text could be something other than a string (an optimization with the same answer).
 * `capture` names a column the caller binds to `sparkMemberCaptureSql` (kept once per event).
 */
export function sparkMemberCaptureSql(decoded: string, raw: string, field: string): string {
  const starts = NON_STRING_TEXT_STARTS.map(sparkQuote).join(', ');
  return `(CASE WHEN ${decoded} IS NULL THEN '' WHEN substr(${decoded}, 1, 1) IN (${starts}) THEN regexp_extract(${raw}, ${sparkQuote(memberValuePattern(field))}, 1) ELSE '"' END)`;
}

/** fieldSemantics.ts `memberKindOf` over the capture column. */
export function sparkMemberKindSql(capture: string): string {
  return `(CASE WHEN ${capture} = '"' THEN 's' WHEN ${capture} IN ('true', 'false') THEN 'b' WHEN ${capture} <> '' THEN 'n' END)`;
}

/** The field's text: the decoded string for a string, else the capture (true/false, the digits). */
export function sparkMemberTextSql(capture: string, decoded: string): string {
  return `(CASE WHEN ${capture} = '"' THEN ${decoded} WHEN ${capture} <> '' THEN ${capture} END)`;
}

// ---------------------------------------------------------------- the rules (fieldSemantics.ts)

/**
 * `canonicalNumberText` of the STRING expression `text` (JSON number text), step by step as
 * fieldSemantics.ts `canonicalNumberSql` (digits d without leading and trailing zeros, the
 * position n of the decimal point, then ECMAScript's layout). `transform(array(x), v -> ...)[0]`
 * binds an intermediate value once.
 */
/** The number parts of JSON number text `t` (sign, integer and fraction digits, exponent), as fieldSemantics.ts NUMBER_PARTS. */
const NUMBER_PARTS =
  `named_struct('neg', startswith(t, '-'), 'ip', regexp_extract(t, '^-?([0-9]+)', 1), ` +
  `'fp', regexp_extract(t, '^-?[0-9]+\\\\.([0-9]+)', 1), 'ex', coalesce(try_cast(regexp_extract(t, '[eE]([+-]?[0-9]+)$', 1) AS BIGINT), 0))`;
const Z_DIGITS = `TRIM(LEADING '0' FROM concat(p.ip, p.fp))`;
const D_DIGITS = `TRIM(TRAILING '0' FROM ${Z_DIGITS})`;
/** From NUMBER_PARTS `p`: the digits without leading (z) and trailing zeros (d), the zeros cut (tz), the exponent less the fraction (e10). */
const NUMBER_DIGITS = `named_struct('neg', p.neg, 'z', ${Z_DIGITS}, 'd', ${D_DIGITS}, 'tz', length(${Z_DIGITS}) - length(${D_DIGITS}), 'e10', p.ex - length(p.fp))`;

export function sparkCanonicalNumberSql(text: string): string {
  const parts = NUMBER_PARTS;
  const digits = NUMBER_DIGITS;
  const withN = `named_struct('neg', r.neg, 'z', r.z, 'd', r.d, 'n', length(r.d) + r.e10 + r.tz)`;
  const layout = `CASE WHEN q.z = '' THEN '0' ELSE concat(CASE WHEN q.neg THEN '-' ELSE '' END, CASE
      WHEN length(q.d) <= q.n AND q.n <= 21 THEN concat(q.d, repeat('0', CAST(q.n - length(q.d) AS INT)))
      WHEN 0 < q.n AND q.n <= 21 THEN concat(substr(q.d, 1, CAST(q.n AS INT)), '.', substr(q.d, CAST(q.n + 1 AS INT)))
      WHEN -6 < q.n AND q.n <= 0 THEN concat('0.', repeat('0', CAST(-q.n AS INT)), q.d)
      ELSE concat(substr(q.d, 1, 1), CASE WHEN length(q.d) > 1 THEN concat('.', substr(q.d, 2)) ELSE '' END,
        'e', CASE WHEN q.n - 1 < 0 THEN '-' ELSE '+' END, CAST(abs(q.n - 1) AS STRING)) END) END`;
  return `(transform(array(${text}), t -> transform(array(${parts}), p -> transform(array(${digits}), r -> transform(array(${withN}), q -> ${layout})[0])[0])[0])[0])`;
}

/** `fieldText`: key and distinct text (NULL without a scalar). */
export function sparkFieldTextSql(f: SparkField): string {
  return `(CASE ${f.kind} WHEN 's' THEN ${f.text} WHEN 'b' THEN ${f.text} WHEN 'n' THEN ${sparkCanonicalNumberSql(f.text)} END)`;
}

/** `numericValue`: the nearest double of a finite number, -0 as 0; NULL otherwise. */
export function sparkNumericValueSql(f: SparkField): string {
  const d = `CAST(${f.text} AS DOUBLE)`;
  return `(CASE WHEN ${f.kind} = 'n' AND abs(${d}) <= 1.7976931348623157E308 THEN ${d} + 0.0D END)`;
}

/** `filterAccepts`: strict JSON equality of type and value. */
export function sparkFilterSql(f: SparkField, accepted: readonly FilterValue[]): string {
  const strings = accepted.filter((v): v is string => typeof v === 'string');
  const numbers = accepted.filter((v): v is { number: string } => typeof v === 'object').map((v) => v.number);
  const booleans = accepted.filter((v): v is boolean => typeof v === 'boolean');
  const parts: string[] = [];
  if (strings.length > 0) parts.push(`(${f.kind} = 's' AND ${f.text} IN (${strings.map(sparkQuote).join(', ')}))`);
  if (numbers.length > 0) parts.push(`(${f.kind} = 'n' AND ${sparkCanonicalNumberSql(f.text)} IN (${numbers.map(sparkQuote).join(', ')}))`);
  if (booleans.length > 0) parts.push(`(${f.kind} = 'b' AND ${f.text} IN (${booleans.map((b) => `'${b}'`).join(', ')}))`);
  return parts.length === 0 ? 'FALSE' : `(${parts.join(' OR ')})`;
}

/** The field is present with a scalar value. */
export function sparkHasScalarSql(f: SparkField): string {
  return `(${f.kind} IS NOT NULL)`;
}

/**
 * `conditionAccepts` (fieldSemantics.ts `conditionSql`'s twin): `exists` tests the kind, `not` is
 * NOT over the equality test (a missing field equals none of the values), and a bound compares
 * the numeric value with the bound's double, read from its shortest text (Java's parser, as
 * DuckDB's, reads it back to the same double). coalesce: an unknown is no match, as in DuckDB.
 */
export function sparkConditionSql(f: SparkField, c: FieldCondition): string {
  const parts: string[] = [];
  if (c.exists !== undefined) parts.push(`(${f.kind} IS ${c.exists ? 'NOT ' : ''}NULL)`);
  if (c.not !== undefined) parts.push(`NOT coalesce(${sparkFilterSql(f, c.not)}, FALSE)`);
  const bounds = (['gt', 'gte', 'lt', 'lte'] as const).filter((b) => c[b] !== undefined);
  if (bounds.length > 0) {
    const n = sparkNumericValueSql(f);
    const op = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;
    parts.push(`coalesce(${bounds.map((b) => `${n} ${op[b]} CAST('${String(c[b])}' AS DOUBLE)`).join(' AND ')}, FALSE)`);
  }
  return parts.length === 0 ? 'TRUE' : `(${parts.join(' AND ')})`;
}

/**
 * `compositeKeyText` of the parts' text expressions: `\` written `\\`, `|` written `\|`, joined
 * by `|` (Spark's replace is literal, as DuckDB's). concat, not concat_ws: a missing part makes
 * the key NULL, as in DuckDB (the metric's condition already requires every part).
 */
export function sparkCompositeKeyTextSql(parts: readonly string[]): string {
  const escaped = parts.map((p) => `replace(replace(${p}, ${sparkQuote('\\')}, ${sparkQuote('\\\\')}), '|', ${sparkQuote('\\|')})`);
  return `concat(${escaped.join(`, '|', `)})`;
}

// ---------------------------------------------------------------- HyperLogLog (hll.ts)

/**
 * hll.ts `hllHash` in Spark SQL: the first 64 bits of MD5 of the UTF-8 value in two halves; the
 * bucket is the high p bits of the first, the rank the position of the first 1 bit after them.
 * floor(log2(x)) is the bit length of x minus one, `length(bin(x)) - 1`: exact, where Spark's
 * log2 (a quotient of logarithms) is not. Returns the packed register `bucket * 256 + rank`.
 */
export function sparkHllRegisterSql(value: string): string {
  const hex = `md5(CAST(${value} AS BINARY))`;
  const hi = `CAST(conv(substr(${hex}, 1, 8), 16, 10) AS BIGINT)`;
  const lo = `CAST(conv(substr(${hex}, 9, 8), 16, 10) AS BIGINT)`;
  const restHi = `(${hi} & ${(1 << (32 - HLL_P)) - 1})`;
  const rank = `CASE WHEN ${restHi} <> 0 THEN ${33 - HLL_P} - length(bin(${restHi})) WHEN ${lo} <> 0 THEN ${65 - HLL_P} - length(bin(${lo})) ELSE ${64 - HLL_P + 1} END`;
  return `(CAST(shiftright(${hi}, ${32 - HLL_P}) * 256 + ${rank} AS INT))`;
}

/**
 * The sketch of a window, serialized as HyperLogLog.serialize() and base64, from `regs`: the
 * window's distinct packed registers (collect_set). Sorted, the last entry of each bucket is its
 * maximum rank (batch/views/batchViews.ts `registersSql`); sparse (tag 1, u16 bucket and u8 rank
 * per register, in bucket order) up to HLL_M / 4 registers, dense (tag 2, 4096 ranks) above, the
 * empty sketch without any. Spark's base64 breaks lines every 76 characters; they are removed.
 */
export function sparkSketchSql(regs: string, emptySketch: string): string {
  const sorted = `array_sort(${regs})`;
  const max = `filter(s, (x, j) -> j = size(s) - 1 OR shiftright(try_element_at(s, j + 2), 8) <> shiftright(x, 8))`;
  const b64 = (hex: string) => `replace(replace(base64(unhex(${hex})), char(13), ''), char(10), '')`;
  const sparse = `concat('01', concat_ws('', transform(m, x -> lpad(hex(x), 6, '0'))))`;
  const ranks = `map_from_arrays(transform(m, x -> shiftright(x, 8)), transform(m, x -> x & 255))`;
  const dense = `concat('02', concat_ws('', transform(sequence(0, ${HLL_M - 1}), b -> lpad(hex(coalesce(try_element_at(rk, b), 0)), 2, '0'))))`;
  const body = `CASE WHEN size(m) = 0 THEN ${sparkQuote(emptySketch)} WHEN size(m) <= ${HLL_M / 4} THEN ${b64(sparse)} ELSE transform(array(${ranks}), rk -> ${b64(dense)})[0] END`;
  return `transform(array(${sorted}), s -> transform(array(${max}), m -> ${body})[0])[0]`;
}

// ---------------------------------------------------------------- percentile buckets (ddsketch.ts)

/**
 * ddsketch.ts's boundary tables (`bucketBoundaries`, one per relative accuracy `a`, the index in
 * `tables`) as Spark rows `(a, k, lo, hi)`: bucket k >= 1 of the table holds the magnitudes in
 * (lo, hi] = (boundaries[k - 1], boundaries[k]]. Each boundary is written in its shortest
 * round-trip text, which Spark's cast (Java's correctly rounded parser) reads back to the same
 * double, as DuckDB's does from `boundaryTableSql`.
 */
export function sparkBucketTableSql(tables: readonly BucketTable[]): string {
  const rows: string[] = [];
  tables.forEach((t, a) => {
    for (let k = 1; k < t.boundaries.length; k++)
      rows.push(`(${a}, ${k}, CAST('${String(t.boundaries[k - 1]!)}' AS DOUBLE), CAST('${String(t.boundaries[k]!)}' AS DOUBLE))`);
  });
  return `SELECT * FROM VALUES ${rows.join(', ')} AS lk_ddb(a, k, lo, hi)`;
}

/**
 * `bucketOf` of the DOUBLE column `v` of `source` (columns `a`, the accuracy's index in `tables`,
 * and `v`): `SELECT a, v, bucket`, zero as ZERO_BUCKET, magnitudes at or below the first boundary
 * in bucket 1, above the last in the last, negative values as the negated bucket of their
 * magnitude, as DuckDB's `bucketSelectSql`. The table decides: the bucket is the row with lo < |v|
 * <= hi. Spark has no ASOF join and a range join would compare each value with every boundary, so
 * the rows compared are narrowed to a few candidates around floor(ln|v| / ln gamma) (an equi-join
 * on k); the logarithm only picks the candidates, four buckets wide where its error is far below
 * one bucket, and never decides a bucket.
 */
export function sparkBucketSelectSql(source: string, tables: readonly BucketTable[]): string {
  const at = (pick: (t: BucketTable) => string) => `CASE s.a ${tables.map((t, a) => `WHEN ${a} THEN ${pick(t)}`).join(' ')} END`;
  const first = at((t) => `CAST('${String(t.boundaries[0]!)}' AS DOUBLE)`);
  const top = at((t) => `CAST('${String(t.boundaries[t.boundaries.length - 1]!)}' AS DOUBLE)`);
  const last = at((t) => String(t.boundaries.length - 1));
  const estimate = `CAST(floor(ln(s.m) / ${at((t) => `CAST('${String(Math.log(t.gamma))}' AS DOUBLE)`)}) AS INT) - ${at((t) => String(t.firstIndex))}`;
  const candidates = `(SELECT a, v, m, explode(sequence(${estimate} - 1, ${estimate} + 2)) AS c FROM (SELECT a, v, abs(v) AS m FROM ${source}) s WHERE s.m > ${first} AND s.m <= ${top})`;
  const inTable = `SELECT c.a, c.v, CAST(sign(c.v) AS INT) * (t.k + 1) AS bucket FROM ${candidates} c JOIN (${sparkBucketTableSql(tables)}) t ON t.a = c.a AND t.k = c.c AND t.lo < c.m AND c.m <= t.hi`;
  const ends = `SELECT s.a, s.v, CASE WHEN s.v = 0 THEN ${ZERO_BUCKET} ELSE CAST(sign(s.v) AS INT) * (CASE WHEN s.m <= ${first} THEN 1 ELSE ${last} + 1 END) END AS bucket
    FROM (SELECT a, v, abs(v) AS m FROM ${source}) s WHERE s.m <= ${first} OR s.m > ${top}`;
  return `${inTable} UNION ALL ${ends}`;
}

/**
 * ddsketch.ts `sketchText` of a window from `pairs`, an array of `named_struct('b', bucket, 'n',
 * count)` (collect_list of the window's buckets): `bucket:count` in ascending bucket order,
 * joined by commas (array_sort orders the structs by their first field).
 */
export function sparkSketchTextSql(pairs: string): string {
  return `concat_ws(',', transform(array_sort(${pairs}), x -> concat(CAST(x.b AS STRING), ':', CAST(x.n AS STRING))))`;
}

// ---------------------------------------------------------------- one metric

export interface CompiledMetricSpark {
  /** Boolean expression: the event matches the metric (filter and key present). */
  where: string;
  key: string;
  /** DOUBLE expression or NULL when the event carries no numeric value. */
  value: string;
  /** The packed HyperLogLog register of the distinct field's text, NULL without one. */
  register: string;
  /** The window start of the BIGINT event-time expression `ts` (epoch ms): windowStart.ts's SQL. */
  windowStart(granularity: Granularity, ts: string): string;
}

/** compile.ts `compileMetricSql`'s twin, over the fields' kind and text columns (`fieldOf`). */
export function compileMetricSpark(def: MetricDefinition, fieldOf: (field: string) => SparkField): CompiledMetricSpark {
  const conditions = Object.entries(def.filter).map(([field, accepted]) => sparkFilterSql(fieldOf(field), accepted));
  for (const [field, c] of Object.entries(def.conditions ?? {})) conditions.push(sparkConditionSql(fieldOf(field), c));
  const keyFields = keyFieldsOf(def);
  for (const k of keyFields) conditions.push(sparkHasScalarSql(fieldOf(k)));
  const distinct = def.distinct === undefined ? undefined : sparkFieldTextSql(fieldOf(def.distinct));
  return {
    where: conditions.join(' AND '),
    key:
      keyFields.length === 1
        ? sparkFieldTextSql(fieldOf(keyFields[0]!))
        : sparkCompositeKeyTextSql(keyFields.map((k) => sparkFieldTextSql(fieldOf(k)))),
    value: def.value === undefined ? 'CAST(NULL AS DOUBLE)' : sparkNumericValueSql(fieldOf(def.value)),
    register:
      distinct === undefined ? 'CAST(NULL AS INT)' : `(CASE WHEN ${distinct} IS NOT NULL THEN ${sparkHllRegisterSql(distinct)} END)`,
    windowStart: (g, ts) => {
      const w = windowShape(g);
      return windowStartSql(ts, w.sizeMs, w.originMs);
    },
  };
}
