/**
 * How an event field becomes a key, a distinct value, a filter match and a numeric value: one
 * definition, written once for each engine, side by side, so that a reader can check them rule
 * by rule. The speed layer runs the JavaScript, the batch layer the DuckDB SQL;
 * `__tests__/fieldSemantics.differential.spec.ts` runs both on 100,000+ generated values (every
 * JSON number form, strings with escapes and Unicode, booleans) and allows no disagreement.
 *
 * The rules (docs/metrics.md):
 * - strings are their decoded text; booleans are `true` / `false`;
 * - a number is its exact decimal value, written canonically (`canonicalNumberText`): the source
 *   digits are never rounded through a double, so 9007199254740993 and 9007199254740992 stay two
 *   keys, while 100, 1e2 and 100.0 are one. The form is ECMAScript's Number-to-String layout
 *   applied to the exact digits: plain digits up to 21 integer digits, `0.000001` down to six
 *   leading zeros, else `d.ddde+n`; `-0` is `0`. So for every number whose source is the shortest
 *   round-trip text of a double (what JavaScript and most producers write), the key is exactly
 *   `String(value)`;
 * - a filter matches by JSON type and that text: the string "1" never matches the number 1;
 * - the numeric value (sum, min, max) is the number rounded to the nearest double, counted only
 *   when finite (1e400 is a number but has no double), with -0 taken as 0.
 *
 * Why not DuckDB's own number text: DuckDB's JSON reader keeps a double, not its source, and
 * prints it its own way (`1e-07`, `100.0`); JavaScript's JSON.parse rounds integers beyond 2^53.
 * Both engines therefore read the number's source text from the event: the speed layer from the
 * bytes the event scanner located (or the validator's tokens), the batch layer with a regular
 * expression anchored on the member's name (`numberSourceSql`), valid because events are flat
 * objects whose names and strings were validated.
 */
import { sqlQuote } from '../storage/sql.ts';

// ---------------------------------------------------------------- values as the engines see them

/**
 * A JSON number as its source text (exactly as the event wrote it). Its canonical text and its
 * double are computed on first use: most fields the speed layer reads are strings.
 */
export class JsonNumber {
  private canonical: string | undefined;
  private double: number | undefined;
  constructor(readonly source: string) {}

  /** The canonical decimal text (keys, distinct values, filters). */
  get text(): string {
    return (this.canonical ??= canonicalNumberText(this.source));
  }

  /** The nearest double (sum, min, max), as JSON.parse gives it. */
  get value(): number {
    return (this.double ??= Number(this.source));
  }
}

/** A field value as the metric engines read it: numbers keep their source text. */
export type FieldValue = string | boolean | JsonNumber;
export type FieldValues = Readonly<Record<string, FieldValue>>;

/**
 * The field values of a parsed event (JSON.parse's values, plus the source text of each number
 * field from the validator), restricted to `wanted` when given.
 */
export function fieldValuesOf(
  fields: Readonly<Record<string, string | number | boolean>>,
  numberSources: Readonly<Record<string, string>>,
  wanted?: ReadonlySet<string>,
): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const name of Object.keys(fields)) {
    if (wanted && !wanted.has(name)) continue;
    const v = fields[name]!;
    out[name] = typeof v === 'number' ? new JsonNumber(numberSources[name] ?? String(v)) : v;
  }
  return out;
}

/** A filter's accepted value as metric definitions hold it: numbers by their canonical text. */
export type FilterValue = string | boolean | { readonly number: string };

// ---------------------------------------------------------------- canonical number text (JS)

const JSON_NUMBER = /^(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;
/** Integers of at most 21 digits are their own canonical text (but `-0`). */
const PLAIN_INTEGER = /^-?(?:0|[1-9][0-9]{0,20})$/;
/**
 * The validator refuses exponents whose value needs more digits than this (after leading zeros):
 * below it every engine computes the decimal point's position exactly (a double holds 15 digits
 * exactly, DuckDB's BIGINT 18).
 */
export const MAX_EXPONENT_DIGITS = 15;

/**
 * The canonical text of the JSON number `source` (which must be JSON number text). The exact
 * decimal value is written as digits d1..dk (no leading or trailing zero) and the position n of
 * the decimal point (value = 0.d1..dk x 10^n), then laid out as ECMAScript's Number::toString
 * lays out a double's shortest digits.
 */
export function canonicalNumberText(source: string): string {
  if (PLAIN_INTEGER.test(source)) return source === '-0' ? '0' : source;
  const m = JSON_NUMBER.exec(source);
  if (!m) throw new Error(`not a JSON number: ${JSON.stringify(source)}`);
  const sign = m[1]!;
  const fraction = m[3] ?? '';
  const all = m[2]! + fraction;
  let first = 0;
  while (first < all.length && all.charCodeAt(first) === 0x30) first++;
  if (first === all.length) return '0';
  let end = all.length;
  while (all.charCodeAt(end - 1) === 0x30) end--;
  const d = all.slice(first, end);
  const k = d.length;
  const n = k + Number(m[4] ?? '0') - fraction.length + (all.length - end);
  return sign + layoutDigits(d, n);
}

function layoutDigits(d: string, n: number): string {
  const k = d.length;
  if (k <= n && n <= 21) return d + '0'.repeat(n - k);
  if (0 < n && n <= 21) return `${d.slice(0, n)}.${d.slice(n)}`;
  if (-6 < n && n <= 0) return `0.${'0'.repeat(-n)}${d}`;
  const e = n - 1;
  return `${d[0]}${k > 1 ? `.${d.slice(1)}` : ''}e${e < 0 ? '-' : '+'}${Math.abs(e)}`;
}

// ---------------------------------------------------------------- the rules (JS)

/** Key and distinct text of a field value. */
export function fieldText(v: FieldValue): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return v.text;
}

/** The numeric value of a field (sum, min, max), or undefined when it has none. */
export function numericValue(v: FieldValue | undefined): number | undefined {
  if (!(v instanceof JsonNumber)) return undefined;
  const n = v.value;
  // + 0 turns -0 into 0: the two engines would otherwise disagree on the sign of a zero minimum.
  return Number.isFinite(n) ? n + 0 : undefined;
}

/** A filter's accepted values, ready to test field values against. */
export interface CompiledFilter {
  readonly field: string;
  readonly strings: ReadonlySet<string>;
  readonly numbers: ReadonlySet<string>;
  readonly booleans: ReadonlySet<boolean>;
}

export function compileFilter(field: string, accepted: readonly FilterValue[]): CompiledFilter {
  const strings = new Set<string>();
  const numbers = new Set<string>();
  const booleans = new Set<boolean>();
  for (const a of accepted) {
    if (typeof a === 'string') strings.add(a);
    else if (typeof a === 'boolean') booleans.add(a);
    else numbers.add(a.number);
  }
  return { field, strings, numbers, booleans };
}

/** Strict JSON equality of type and value (a missing field never matches). */
export function filterAccepts(f: CompiledFilter, v: FieldValue | undefined): boolean {
  if (v === undefined) return false;
  if (typeof v === 'string') return f.strings.has(v);
  if (typeof v === 'boolean') return f.booleans.has(v);
  return f.numbers.size > 0 && f.numbers.has(v.text);
}

/** A number written in a metric file (YAML or JSON) as a filter value, from its source text. */
export function filterNumber(sourceText: string | undefined, value: number): { number: string } {
  const text = sourceText?.trim().replace(/^\+/, '');
  if (text !== undefined && JSON_NUMBER.test(text)) return { number: canonicalNumberText(text) };
  // YAML-only spellings (0x1F, 0o17, 1_000): their value, exact since YAML reads them as integers.
  if (!Number.isFinite(value)) throw new Error(`${String(sourceText ?? value)} is not a finite number`);
  return { number: canonicalNumberText(String(value)) };
}

// ---------------------------------------------------------------- the same rules in DuckDB SQL

/** DuckDB JSON path of a top-level field. */
export function jsonPathSql(field: string): string {
  return sqlQuote(`$."${field.replace(/"/g, '\\"')}"`);
}

const NUMBER_TYPES = `('BIGINT', 'UBIGINT', 'DOUBLE')`;

/**
 * A regular expression (RE2) matching the member `field` of a flat JSON object and capturing its
 * value when that is a number. The member starts after `{` or `,` (inside a JSON string a quote is
 * always escaped, so no match can start there); each character of the name may be written
 * literally or as its \u escape, which is how JSON lets a producer spell a name.
 */
export function memberNumberPattern(field: string): string {
  const name = [...field]
    .map((ch) => {
      const hex = ch
        .charCodeAt(0)
        .toString(16)
        .padStart(4, '0')
        .replace(/[a-f]/g, (h) => `[${h}${h.toUpperCase()}]`);
      const literal = /[A-Za-z0-9_]/.test(ch) ? ch : `\\${ch}`;
      return `(?:${literal}|\\\\u${hex})`;
    })
    .join('');
  return `[{,]\\s*"${name}"\\s*:\\s*(-?[0-9][0-9.eE+-]*)`;
}

/** SQL: the source text of number field `field` of the JSON document `doc` (NULL when not a number). */
export function numberSourceSql(doc: string, field: string): string {
  return `CASE WHEN json_type(${doc}, ${jsonPathSql(field)}) IN ${NUMBER_TYPES} THEN nullif(regexp_extract(${doc}, ${sqlQuote(memberNumberPattern(field))}, 1), '') END`;
}

/**
 * SQL: `canonicalNumberText` of the VARCHAR expression `text` (JSON number text), step by step as
 * above: the digits of integer and fraction part, without leading and trailing zeros (d, k), and
 * the position of the decimal point (n). Lambdas bind the intermediate values once.
 */
export function canonicalNumberSql(text: string): string {
  const parts =
    `struct_pack(neg := starts_with(t, '-'), ip := regexp_extract(t, '^-?([0-9]+)', 1), ` +
    `fp := regexp_extract(t, '^-?[0-9]+\\.([0-9]+)', 1), ex := coalesce(TRY_CAST(regexp_extract(t, '[eE]([+-]?[0-9]+)$', 1) AS BIGINT), 0))`;
  const digits =
    `struct_pack(neg := p.neg, z := ltrim(p.ip || p.fp, '0'), d := rtrim(ltrim(p.ip || p.fp, '0'), '0'), ` +
    `tz := length(ltrim(p.ip || p.fp, '0')) - length(rtrim(ltrim(p.ip || p.fp, '0'), '0')), e10 := p.ex - length(p.fp))`;
  const layout = `CASE WHEN q.z = '' THEN '0' ELSE (CASE WHEN q.neg THEN '-' ELSE '' END) || (CASE
      WHEN length(q.d) <= q.n AND q.n <= 21 THEN q.d || repeat('0', q.n - length(q.d))
      WHEN 0 < q.n AND q.n <= 21 THEN substr(q.d, 1, q.n) || '.' || substr(q.d, q.n + 1)
      WHEN -6 < q.n AND q.n <= 0 THEN '0.' || repeat('0', -q.n) || q.d
      ELSE substr(q.d, 1, 1) || (CASE WHEN length(q.d) > 1 THEN '.' || substr(q.d, 2) ELSE '' END)
        || 'e' || (CASE WHEN q.n - 1 < 0 THEN '-' ELSE '+' END) || CAST(abs(q.n - 1) AS VARCHAR) END) END`;
  const withN = `struct_pack(neg := r.neg, z := r.z, d := r.d, n := length(r.d) + r.e10 + r.tz)`;
  return `(list_transform([${text}], t -> list_transform([${parts}], p -> list_transform([${digits}], r -> list_transform([${withN}], q -> ${layout})[1])[1])[1])[1])`;
}

/** SQL for `fieldText` of field `field` of `doc`, NULL when the field is absent. */
export function fieldTextSql(doc: string, field: string): string {
  const path = jsonPathSql(field);
  return `(CASE json_type(${doc}, ${path})
    WHEN 'VARCHAR' THEN json_extract_string(${doc}, ${path})
    WHEN 'BOOLEAN' THEN json_extract_string(${doc}, ${path})
    WHEN 'BIGINT' THEN ${canonicalNumberSql(numberSourceSql(doc, field))}
    WHEN 'UBIGINT' THEN ${canonicalNumberSql(numberSourceSql(doc, field))}
    WHEN 'DOUBLE' THEN ${canonicalNumberSql(numberSourceSql(doc, field))}
    ELSE NULL END)`;
}

/** SQL for `numericValue`: a DOUBLE, or NULL when the field is no number or not finite. */
export function numericValueSql(doc: string, field: string): string {
  const path = jsonPathSql(field);
  const d = `TRY_CAST(json_extract(${doc}, ${path}) AS DOUBLE)`;
  return `(CASE WHEN json_type(${doc}, ${path}) IN ${NUMBER_TYPES} AND isfinite(${d}) THEN ${d} + 0.0 END)`;
}

/** SQL for `filterAccepts`: strict JSON equality of type and value. */
export function filterSql(doc: string, field: string, accepted: readonly FilterValue[]): string {
  const path = jsonPathSql(field);
  const type = `json_type(${doc}, ${path})`;
  const strings = accepted.filter((v): v is string => typeof v === 'string');
  const numbers = accepted.filter((v): v is { number: string } => typeof v === 'object').map((v) => v.number);
  const booleans = accepted.filter((v): v is boolean => typeof v === 'boolean');
  const parts: string[] = [];
  if (strings.length > 0)
    parts.push(`(${type} = 'VARCHAR' AND json_extract_string(${doc}, ${path}) IN (${strings.map(sqlQuote).join(', ')}))`);
  if (numbers.length > 0)
    parts.push(`(${type} IN ${NUMBER_TYPES} AND ${fieldTextSql(doc, field)} IN (${numbers.map(sqlQuote).join(', ')}))`);
  if (booleans.length > 0)
    parts.push(`(${type} = 'BOOLEAN' AND json_extract_string(${doc}, ${path}) IN (${booleans.map((b) => `'${b}'`).join(', ')}))`);
  return parts.length === 0 ? 'FALSE' : `(${parts.join(' OR ')})`;
}

/**
 * How the batch recompute reads fields once per event: the JSON text of field `field`, from
 * `struct` (json_transform of `raw` to a struct of JSON values) and `raw` (the event). With
 * `asText` (a field read as a key, a distinct value or a filter) a number keeps the digits the
 * event wrote, cut out of `raw` only for the events whose field is such a number: DuckDB's JSON
 * value holds a double.
 */
export function fieldJsonSql(field: string, asText: boolean, struct = 'j', raw = 'raw'): string {
  const value = `${struct}[${sqlQuote(field)}]`;
  return asText
    ? `CASE WHEN json_type(${value}) = 'DOUBLE' THEN regexp_extract(${raw}, ${sqlQuote(memberNumberPattern(field))}, 1) ELSE ${value}::VARCHAR END`
    : `${value}::VARCHAR`;
}

/**
 * A JSON object holding only `fields`, rebuilt from their JSON texts (`jsonOf`; absent fields, NULL,
 * stay absent). Every rule above gives the same answer on it as on the whole event for a field it
 * holds: the texts are the fields' JSON, types and number digits included. The recompute
 * evaluates the rules once per distinct document instead of once per event.
 */
export function fieldsDocumentSql(fields: readonly string[], jsonOf: (field: string) => string): string {
  const members = fields.map((f) => `CASE WHEN ${jsonOf(f)} IS NOT NULL THEN ${sqlQuote(`${JSON.stringify(f)}:`)} || ${jsonOf(f)} END`);
  return `('{' || concat_ws(',', ${members.join(', ')}) || '}')`;
}

/** SQL: the field is present with a scalar value (a key or distinct field then has a text). */
export function hasScalarSql(doc: string, field: string): string {
  return `json_type(${doc}, ${jsonPathSql(field)}) IN ('VARCHAR', 'BOOLEAN', ${NUMBER_TYPES.slice(1, -1)})`;
}
