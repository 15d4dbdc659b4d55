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
 * Structured like compile.ts's `compileMetricSql`, one expression per rule (filters, conditions,
 * keys and composite keys, values, HyperLogLog registers, percentile buckets, the event of an
 * `event:` section), so that a feature the DuckDB compiler gains gets its Spark twin beside it.
 * Session windows need none: their SQL (sessionRule.ts) is the same text in both engines.
 */
import { keyFieldsOf, type Granularity, type MetricDefinition } from './definitions.ts';
import {
  BLANK_PATTERN,
  EPOCH_SHIFT,
  ISO_8601,
  JSON_NUMBER_PATTERN,
  MARKED_NUMBER_PATTERN,
  MARKED_STRING_PATTERN,
  MAX_EVENT_TIME_MS,
  MAX_EXPONENT_DIGITS,
  MURMUR2_M,
  MURMUR2_SEED,
  NUMBER_TOKEN_PREFIX,
  STRING_TOKEN_PREFIX,
  TOKEN_PATTERN_JAVA,
  memberValuePattern,
  NON_STRING_TEXT_STARTS,
  tokenName,
  wholeTextJavaPattern,
  type FieldCondition,
  type FilterValue,
  type TimeFormat,
} from './fieldSemantics.ts';
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

// ---------------------------------------------------------------- nested events (an event: section)

/** fieldSemantics.ts `numberTokensSql` in Spark: the document with every string prefixed `s` and every number a string `n<digits>`. */
export function sparkNumberTokensSql(doc: string): string {
  const marked = `regexp_replace(${doc}, ${sparkQuote(TOKEN_PATTERN_JAVA)}, concat(chr(1), '$1', chr(2), '$2', chr(3)))`;
  const numbers = `regexp_replace(${marked}, ${sparkQuote(MARKED_NUMBER_PATTERN)}, ${sparkQuote(`"${NUMBER_TOKEN_PREFIX}$1"`)})`;
  return `regexp_replace(${numbers}, ${sparkQuote(MARKED_STRING_PATTERN)}, ${sparkQuote(`"${STRING_TOKEN_PREFIX}$1"`)})`;
}

/**
 * The walk of `paths` (lists of names) over the rewritten document column `doc`
 * (fieldSemantics.ts `tokenName`, `tokenKindOf`): each object on the way is read once per record by
 * `from_json` into a struct of STRING members (any JSON value reads as a STRING: a string's
 * content, an object's JSON text), and an object is read further only when its text starts with
 * `{`. Returns the SELECT list of each layer (layer d reads the objects at depth d from the
 * previous layer's columns `lk_o<i>`) and, per path, the expression of what its walk found.
 */
export function sparkPathWalkSql(paths: readonly (readonly string[])[], doc: string): { layers: string[][]; found: string[] } {
  interface Node {
    id: number;
    children: Map<string, Node>;
  }
  let next = 0;
  const root: Node = { id: next++, children: new Map() };
  for (const names of paths) {
    let node = root;
    for (const n of names) {
      let child = node.children.get(n);
      if (!child) node.children.set(n, (child = { id: next++, children: new Map() }));
      node = child;
    }
  }
  const structOf = (node: Node) =>
    sparkQuote(`struct<${[...node.children.keys()].map((n) => `${sparkIdent(tokenName(n))}: STRING`).join(', ')}>`);
  const member = (parent: Node, name: string) => `lk_o${parent.id}.${sparkIdent(tokenName(name))}`;
  const layers: string[][] = [[`from_json(${doc}, ${structOf(root)}) AS lk_o${root.id}`]];
  let level: Node[] = [root];
  while (level.length > 0) {
    const deeper: string[] = [];
    const nextLevel: Node[] = [];
    for (const parent of level)
      for (const [name, child] of parent.children) {
        if (child.children.size === 0) continue;
        const text = member(parent, name);
        deeper.push(`from_json(CASE WHEN startswith(${text}, '{') THEN ${text} END, ${structOf(child)}) AS lk_o${child.id}`);
        nextLevel.push(child);
      }
    if (deeper.length > 0) layers.push(deeper);
    level = nextLevel;
  }
  const found = paths.map((names) => {
    let node = root;
    for (const n of names.slice(0, -1)) node = node.children.get(n)!;
    return member(node, names[names.length - 1]!);
  });
  return { layers, found };
}

/** fieldSemantics.ts `tokenKindOf` of what a walk found: the field's kind and text. */
export function sparkTokenField(found: string): SparkField {
  const s = sparkQuote(STRING_TOKEN_PREFIX);
  const n = sparkQuote(NUMBER_TOKEN_PREFIX);
  return {
    kind: `(CASE WHEN startswith(${found}, ${s}) THEN 's' WHEN startswith(${found}, ${n}) THEN 'n' WHEN ${found} IN ('true', 'false') THEN 'b' END)`,
    text: `(CASE WHEN startswith(${found}, ${s}) OR startswith(${found}, ${n}) THEN substr(${found}, 2) WHEN ${found} IN ('true', 'false') THEN ${found} END)`,
  };
}

/** fieldSemantics.ts `identifierText` (the event id or type at a path): a non-blank string, a number's canonical text. */
export function sparkIdentifierSql(f: SparkField): string {
  return `(CASE ${f.kind} WHEN 's' THEN (CASE WHEN NOT ${f.text} rlike ${sparkQuote(wholeTextJavaPattern(BLANK_PATTERN))} THEN ${f.text} END) WHEN 'n' THEN ${sparkCanonicalNumberSql(f.text)} END)`;
}

/** fieldSemantics.ts `idTextOfString`. */
export function sparkIdTextOfStringSql(s: string): string {
  return `(CASE WHEN startswith(${s}, ${sparkQuote('\\x')}) THEN concat(${sparkQuote('\\x')}, lower(hex(encode(${s}, 'UTF-8')))) ELSE ${s} END)`;
}

/** fieldSemantics.ts `idText` of the BINARY `b` (a record key): its UTF-8 text, else `\x` and lowercase hex. */
export function sparkIdTextOfBytesSql(b: string): string {
  const text = `CAST(${b} AS STRING)`;
  return `(CASE WHEN NOT is_valid_utf8(${text}) OR startswith(${text}, ${sparkQuote('\\x')}) THEN concat(${sparkQuote('\\x')}, lower(hex(${b}))) ELSE ${text} END)`;
}

/** (a * M) mod 2^32 for 0 <= a < 2^32 (fieldSemantics.ts `mul32`). */
function mul32(a: string): string {
  return `(((${a}) * ${MURMUR2_M}) & 4294967295)`;
}

/**
 * fieldSemantics.ts `idHashSql` (Kafka's murmur2 of the id's bytes, made positive) of the BINARY
 * `bytes`, in BIGINT arithmetic on unsigned 32-bit values, step by step as there: the bytes, the
 * 4-byte words folded with `aggregate`, the tail and the final mix.
 */
export function sparkIdHashSql(bytes: string): string {
  const x = `transform(sequence(0, octet_length(lk_b) - 1), lk_i -> CAST(conv(substr(hex(lk_b), 2 * lk_i + 1, 2), 16, 10) AS BIGINT))`;
  const word = (i: string) =>
    `(lk_s.x[4 * ${i}] | shiftleft(lk_s.x[4 * ${i} + 1], 8) | shiftleft(lk_s.x[4 * ${i} + 2], 16) | shiftleft(lk_s.x[4 * ${i} + 3], 24))`;
  const k = mul32(word('lk_i'));
  const words = `IF(lk_s.n >= 4, sequence(0, CAST(lk_s.n div 4 AS INT) - 1), CAST(array() AS ARRAY<INT>))`;
  const body = `aggregate(${words}, CAST(${MURMUR2_SEED} ^ lk_s.n AS BIGINT), (lk_h, lk_i) -> ${mul32('lk_h')} ^ ${mul32(`${k} ^ shiftright(${k}, 24)`)})`;
  const base = `lk_r.n - lk_r.n % 4`;
  const at = (j: number) => `lk_r.x[CAST(${base} + ${j - 1} AS INT)]`;
  const tail = `CASE lk_r.n % 4
      WHEN 3 THEN ${mul32(`lk_r.h ^ shiftleft(${at(3)}, 16) ^ shiftleft(${at(2)}, 8) ^ ${at(1)}`)}
      WHEN 2 THEN ${mul32(`lk_r.h ^ shiftleft(${at(2)}, 8) ^ ${at(1)}`)}
      WHEN 1 THEN ${mul32(`lk_r.h ^ ${at(1)}`)}
      ELSE lk_r.h END`;
  const g = `(lk_g ^ shiftright(lk_g, 13))`;
  const mix = `(${mul32(g)} ^ shiftright(${mul32(g)}, 15)) & 2147483647`;
  return `(CAST(transform(array(${bytes}), lk_b -> transform(array(named_struct('n', CAST(octet_length(lk_b) AS BIGINT), 'x', ${x})), lk_s ->
    transform(array(named_struct('n', lk_s.n, 'x', lk_s.x, 'h', ${body})), lk_r -> transform(array(${tail}), lk_g -> ${mix})[0])[0])[0])[0] AS INT))`;
}

/** fieldSemantics.ts `isoTimeSql` (`parseIsoTime`): epoch ms of the STRING `s`, NULL when it is no accepted date-time. */
export function sparkIsoTimeSql(s: string): string {
  const pattern = sparkQuote(wholeTextJavaPattern(ISO_8601.source));
  const names = ['y', 'mo', 'd', 'h', 'mi', 'se', 'fr', 'z'];
  const groups = `named_struct(${names.map((n, i) => `'${n}', regexp_extract(lk_s, ${pattern}, ${i + 1})`).join(', ')})`;
  const int = (v: string) => `CAST(${v} AS BIGINT)`;
  const ints =
    `named_struct('y', ${int('lk_m.y')}, 'mo', ${int('lk_m.mo')}, 'd', ${int('lk_m.d')}, 'h', ${int('lk_m.h')}, 'mi', ${int('lk_m.mi')}, 'se', ${int('lk_m.se')}, ` +
    `'fz', TRIM(LEADING '0' FROM substr(lk_m.fr, 2)) = '', 'ms', CASE WHEN lk_m.fr = '' THEN CAST(0 AS BIGINT) ELSE ${int(`rpad(substr(lk_m.fr, 2, 3), 3, '0')`)} END, ` +
    `'zs', CASE WHEN lk_m.z = 'Z' THEN 0 WHEN startswith(lk_m.z, '-') THEN -1 ELSE 1 END, ` +
    `'oh', CASE WHEN lk_m.z = 'Z' THEN CAST(0 AS BIGINT) ELSE ${int('substr(lk_m.z, 2, 2)')} END, 'om', CASE WHEN lk_m.z = 'Z' THEN CAST(0 AS BIGINT) ELSE ${int('right(lk_m.z, 2)')} END, ` +
    // Date.UTC, which the JavaScript's calendar check calls, reads years 0-99 as 1900-1999.
    `'py', CASE WHEN ${int('lk_m.y')} < 100 THEN 1900 + ${int('lk_m.y')} ELSE ${int('lk_m.y')} END)`;
  const leap = `((lk_t.py % 4 = 0 AND lk_t.py % 100 <> 0) OR lk_t.py % 400 = 0)`;
  const daysInMonth = `CASE WHEN lk_t.mo = 2 THEN (CASE WHEN ${leap} THEN 29 ELSE 28 END) WHEN lk_t.mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END`;
  const valid =
    `lk_t.mo BETWEEN 1 AND 12 AND lk_t.d BETWEEN 1 AND ${daysInMonth} AND lk_t.mi <= 59 AND lk_t.se <= 59 AND lk_t.oh <= 23 AND lk_t.om <= 59 ` +
    `AND (lk_t.h <= 23 OR (lk_t.h = 24 AND lk_t.mi = 0 AND lk_t.se = 0 AND lk_t.fz))`;
  // Days since 1970-01-01 (days_from_civil); `div` truncates as DuckDB's `//` on integers.
  const yy = `(lk_t.y - CASE WHEN lk_t.mo <= 2 THEN 1 ELSE 0 END)`;
  const era = `((CASE WHEN ${yy} >= 0 THEN ${yy} ELSE ${yy} - 399 END) div 400)`;
  const yoe = `(${yy} - ${era} * 400)`;
  const doy = `((153 * (lk_t.mo + CASE WHEN lk_t.mo > 2 THEN -3 ELSE 9 END) + 2) div 5 + lk_t.d - 1)`;
  const days = `(${era} * 146097 + ${yoe} * 365 + ${yoe} div 4 - ${yoe} div 100 + ${doy} - 719468)`;
  const ms = `${days} * 86400000 + lk_t.h * 3600000 + lk_t.mi * 60000 + lk_t.se * 1000 + lk_t.ms - lk_t.zs * (lk_t.oh * 60 + lk_t.om) * 60000`;
  return `(transform(array(${s}), lk_s -> transform(array(${groups}), lk_m -> CASE WHEN lk_m.y <> '' THEN transform(array(${ints}), lk_t -> CASE WHEN ${valid} THEN ${ms} END)[0] END)[0])[0])`;
}

/** fieldSemantics.ts `scaledFloorSql` (`scaledFloor`): floor(value of the number text `text` x 10^shift) as BIGINT, else NULL. */
export function sparkScaledFloorSql(text: string, shift: number): string {
  const ok = `t rlike ${sparkQuote(wholeTextJavaPattern(JSON_NUMBER_PATTERN))} AND length(regexp_extract(t, '[eE][+-]?0*([0-9]*)$', 1)) <= ${MAX_EXPONENT_DIGITS}`;
  const withN = `named_struct('neg', r.neg, 'd', r.d, 'n', length(r.d) + r.e10 + r.tz + ${shift})`;
  const int = `CAST(rpad(substr(q.d, 1, CAST(q.n AS INT)), CAST(q.n AS INT), '0') AS BIGINT)`;
  const value = `CASE WHEN q.d = '' THEN CAST(0 AS BIGINT) WHEN q.n > 16 THEN NULL WHEN q.n <= 0 THEN CAST(CASE WHEN q.neg THEN -1 ELSE 0 END AS BIGINT)
    WHEN q.neg THEN -(${int} + CASE WHEN length(q.d) > q.n THEN 1 ELSE 0 END) ELSE ${int} END`;
  return `(transform(array(${text}), t -> CASE WHEN ${ok} THEN transform(array(${NUMBER_PARTS}), p -> transform(array(${NUMBER_DIGITS}), r -> transform(array(${withN}), q -> ${value})[0])[0])[0] END)[0])`;
}

/** fieldSemantics.ts `eventTimeSql` (`eventTimeOf` and the range check): epoch ms of the field `f` read in `format`, else NULL. */
export function sparkEventTimeSql(f: SparkField, format: TimeFormat): string {
  let ms: string;
  if (format === 'auto') {
    const d = `CAST(${f.text} AS DOUBLE)`;
    const number = `(CASE WHEN abs(${d}) <= ${MAX_EVENT_TIME_MS} AND ${d} = floor(${d}) THEN CAST(${d} AS BIGINT) END)`;
    ms = `(CASE ${f.kind} WHEN 's' THEN ${sparkIsoTimeSql(f.text)} WHEN 'n' THEN ${number} END)`;
  } else if (format === 'iso') {
    ms = `(CASE ${f.kind} WHEN 's' THEN ${sparkIsoTimeSql(f.text)} END)`;
  } else {
    ms = `(CASE WHEN ${f.kind} IN ('s', 'n') THEN ${sparkScaledFloorSql(f.text, EPOCH_SHIFT[format])} END)`;
  }
  return `(transform(array(${ms}), lk_x -> CASE WHEN lk_x BETWEEN ${-MAX_EVENT_TIME_MS} AND ${MAX_EVENT_TIME_MS} THEN lk_x END)[0])`;
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
