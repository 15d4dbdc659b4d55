/**
 * How an event becomes what the metrics read: one definition, written once for each engine, side
 * by side, so that a reader can check them rule by rule. The speed layer runs the JavaScript, the
 * batch layer the DuckDB SQL; `__tests__/fieldSemantics.differential.spec.ts` runs both on
 * generated values, events, record keys, record timestamps and mappings, and allows no
 * disagreement.
 *
 * The rules (docs/metrics.md):
 *
 * Field values
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
 * Paths (a metric file with an `event:` section; without one, fields are top-level names of flat
 * events, as they always were)
 * - a path is names separated by dots (`payload.user.id`); a name holding a dot, a space or
 *   another character that is not allowed bare is quoted (`payload."user.id"`). Names are matched
 *   exactly, after JSON unescaping. A quoted name holds no `"`, `\`, `*` or control character,
 *   and no name is empty: DuckDB's JSON paths cannot address those;
 * - the walk starts at the top-level object; each name selects that member of the current value
 *   when it is an object. Anything else (an array, a scalar, null, a missing member) ends the
 *   walk: the path is missing. Arrays are never walked: a metric reads one value per event, an
 *   array holds many, and picking one by position is rarely what a topic means;
 * - what a walk finds counts as a field value when it is a string, number or boolean; null, an
 *   object or an array count as missing (a filter never matches them, they are no key).
 *
 * The event id, time and type (`event:` `id`, `time`, `timeFormat`, `type`)
 * - `id`: a path to a non-blank string or a number (its canonical text, as a key), or `$key`, the
 *   record key's bytes (a null or empty key refuses the event). The id is its bytes (the UTF-8 of
 *   the text; the key as sent): dedup compares them, and the home partition is Kafka's
 *   partitioner's over them (services/log/partitioner.ts). Written as text (the lake's `id`
 *   column, the batch dedup key), the id is `idText`: its UTF-8 text, or `\x` and the bytes in
 *   lowercase hex when they are not UTF-8 or the text itself starts with `\x` (PostgreSQL's bytea
 *   form). That keeps the text one-to-one with the bytes: no UTF-8 key can be mistaken for the
 *   hex form of another;
 * - `time`: a path, or `$timestamp`, the record's timestamp (epoch ms; Kafka's -1, no timestamp,
 *   refuses the event). A path's value is read by `timeFormat`:
 *   - `auto` (the default, and the flat model's rule): an ISO-8601 string (`isoMillis`), or a
 *     JSON number whose nearest double is an integer: epoch milliseconds;
 *   - `iso`: an ISO-8601 string only;
 *   - `epoch-ms`, `epoch-s`, `epoch-us`: a JSON number, or a string holding exactly a JSON number
 *     (`"1767225600"`; no spaces, no `+`). Its exact decimal value in that unit is turned into
 *     milliseconds and floored (towards minus infinity): `1767225600.5` s is ...600500 ms,
 *     `1767225600123456.9` us is ...600123 ms, `-0.5` s is -500 ms, `-0.0001` ms is -1 ms. No
 *     digit goes through a double, so microseconds keep their precision;
 *   an event time beyond +-8.64e15 ms (what a Date can hold) is out of range;
 * - `type`: an optional path, read as `id` is (a non-blank string or a number): the lake's typed
 *   `type` column.
 * The flat model (no `event:` section) is `id: id, time: ts, timeFormat: auto, type: type` plus
 * its own rules (services/events/event.ts): a flat object, no null, the id and type strings.
 *
 * Why not DuckDB's own number text: DuckDB's JSON reader keeps a double, not its source, and
 * prints it its own way (`1e-07`, `100.0`); JavaScript's JSON.parse rounds integers beyond 2^53.
 * Both engines therefore read the number's source text from the event: the speed layer from the
 * bytes the event scanner located (or the validator's tokens), the batch layer with a regular
 * expression anchored on the member's name in a flat event (`numberSourceSql`), or, along a path
 * of a nested one, from a rewrite of the document in which every number is a string holding its
 * source (`numberTokensSql`).
 */
import { isUtf8 } from 'node:buffer';
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

/**
 * The tests a filter writes beside equality (`in` is equality): `not` (the field equals none of
 * the values: a missing field matches), numeric bounds (the field is a finite JSON number, its
 * nearest double compared with the bound's), `exists` (the field is present with a scalar value,
 * as a key must be). A field's tests all hold for the event to match.
 */
export interface FieldCondition {
  readonly not?: readonly FilterValue[];
  readonly gt?: number;
  readonly gte?: number;
  readonly lt?: number;
  readonly lte?: number;
  readonly exists?: boolean;
}

export interface CompiledCondition {
  readonly field: string;
  readonly not: CompiledFilter | null;
  readonly gt: number;
  readonly gte: number;
  readonly lt: number;
  readonly lte: number;
  readonly ranged: boolean;
  readonly exists: boolean | null;
}

export function compileCondition(field: string, c: FieldCondition): CompiledCondition {
  return {
    field,
    not: c.not === undefined ? null : compileFilter(field, c.not),
    gt: c.gt ?? -Infinity,
    gte: c.gte ?? -Infinity,
    lt: c.lt ?? Infinity,
    lte: c.lte ?? Infinity,
    ranged: c.gt !== undefined || c.gte !== undefined || c.lt !== undefined || c.lte !== undefined,
    exists: c.exists ?? null,
  };
}

export function conditionAccepts(c: CompiledCondition, v: FieldValue | undefined): boolean {
  if (c.exists !== null && (v !== undefined) !== c.exists) return false;
  if (c.not !== null && filterAccepts(c.not, v)) return false;
  if (c.ranged) {
    const n = numericValue(v);
    if (n === undefined || !(n > c.gt && n >= c.gte && n < c.lt && n <= c.lte)) return false;
  }
  return true;
}

/**
 * A composite key's text: each part's text (`fieldText`) with `\` written `\\` and `|` written
 * `\|`, joined by `|`: `Paris|van`, `a\|b|c` for the parts `a|b` and `c`. One-to-one with the
 * parts (`splitCompositeKey` reads them back), readable where parts hold no `|`.
 */
export function compositeKeyText(parts: readonly string[]): string {
  let out = '';
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (i > 0) out += '|';
    out += p.includes('\\') || p.includes('|') ? p.replaceAll('\\', '\\\\').replaceAll('|', '\\|') : p;
  }
  return out;
}

/** The parts of a composite key's text (the inverse of compositeKeyText). */
export function splitCompositeKey(text: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && i + 1 < text.length) cur += text[++i]!;
    else if (ch === '|') {
      parts.push(cur);
      cur = '';
    } else cur += ch;
  }
  parts.push(cur);
  return parts;
}

/** A number written in a metric file (YAML or JSON) as a filter value, from its source text. */
export function filterNumber(sourceText: string | undefined, value: number): { number: string } {
  const text = sourceText?.trim().replace(/^\+/, '');
  if (text !== undefined && JSON_NUMBER.test(text)) return { number: canonicalNumberText(text) };
  // YAML-only spellings (0x1F, 0o17, 1_000): their value, exact since YAML reads them as integers.
  if (!Number.isFinite(value)) throw new Error(`${String(sourceText ?? value)} is not a finite number`);
  return { number: canonicalNumberText(String(value)) };
}

// ---------------------------------------------------------------- paths (JS)

/** A path has at most this many names, each of at most MAX_NAME_LENGTH characters. */
export const MAX_PATH_NAMES = 16;
export const MAX_NAME_LENGTH = 128;
/** A name written without quotes: no dot, quote, backslash, bracket, star, space or control character. */
// eslint-disable-next-line no-control-regex -- the class excludes control characters on purpose
const BARE_NAME = /^[^\s."\\[\]*\u0000-\u001f]+$/u;
/** A quoted name: anything but a quote, backslash, star or control character (DuckDB's paths cannot hold them). */
// eslint-disable-next-line no-control-regex -- the class excludes control characters on purpose
const QUOTED_NAME = /^[^"\\*\u0000-\u001f]+$/u;

export type ParsedPath = { ok: true; names: string[] } | { ok: false; error: string };

/** The names of a dotted path (`payload.user.id`, `payload."user.id"`), or why it is not one. */
export function parseFieldPath(text: string): ParsedPath {
  const names: string[] = [];
  let i = 0;
  for (;;) {
    let name: string;
    if (text.charCodeAt(i) === 0x22) {
      const close = text.indexOf('"', i + 1);
      if (close < 0) return { ok: false, error: `the quote at character ${i + 1} is not closed` };
      name = text.slice(i + 1, close);
      if (!QUOTED_NAME.test(name))
        return { ok: false, error: `the quoted name "${name}" must be non-empty, without a quote, backslash, star or control character` };
      i = close + 1;
    } else {
      let j = i;
      while (j < text.length && text.charCodeAt(j) !== 0x2e) j++;
      name = text.slice(i, j);
      if (name === '')
        return { ok: false, error: i === 0 ? 'the path is empty or starts with a dot' : `an empty name at character ${i + 1}` };
      if (!BARE_NAME.test(name))
        return {
          ok: false,
          error: `the name ${JSON.stringify(name)} must be quoted ("...") or use no space, quote, backslash, bracket or star`,
        };
      i = j;
    }
    if (name.length > MAX_NAME_LENGTH) return { ok: false, error: `a name is longer than ${MAX_NAME_LENGTH} characters` };
    names.push(name);
    if (i === text.length) break;
    if (text.charCodeAt(i) !== 0x2e) return { ok: false, error: `expected a dot after the name "${name}"` };
    i++;
    if (i === text.length) return { ok: false, error: 'the path ends with a dot' };
  }
  if (names.length > MAX_PATH_NAMES) return { ok: false, error: `a path has at most ${MAX_PATH_NAMES} names` };
  return { ok: true, names };
}

/** The canonical text of a path: names joined by dots, quoted only where they must be. */
export function formatFieldPath(names: readonly string[]): string {
  return names.map((n) => (BARE_NAME.test(n) ? n : `"${n}"`)).join('.');
}

/** The names a field of a metric or the mapping walks: its path, or the one name of a flat event's field. */
export function fieldNames(field: string, flat: boolean): readonly string[] {
  if (flat) return [field];
  const parsed = parseFieldPath(field);
  if (!parsed.ok) throw new Error(`not a field path: ${JSON.stringify(field)}: ${parsed.error}`);
  return parsed.names;
}

/** What the walk of `names` from the parsed object `obj` finds (undefined: missing). Arrays are never walked. */
export function valueAtPath(obj: unknown, names: readonly string[]): unknown {
  let v = obj;
  for (const name of names) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.prototype.hasOwnProperty.call(v, name)) return undefined;
    v = (v as Record<string, unknown>)[name];
  }
  return v;
}

// ---------------------------------------------------------------- the event mapping, id and time (JS)

export const RECORD_KEY = '$key';
export const RECORD_TIMESTAMP = '$timestamp';
export const TIME_FORMATS = ['auto', 'iso', 'epoch-ms', 'epoch-s', 'epoch-us'] as const;
export type TimeFormat = (typeof TIME_FORMATS)[number];

/**
 * Where the platform finds an event's id, time and type: a metric file's `event:` section, or
 * the flat model (`flat`: no `event:` section, fields are top-level names, services/events/event.ts
 * adds its rules). Paths are in their canonical text (formatFieldPath).
 */
export interface EventMapping {
  readonly flat: boolean;
  /** A path, or RECORD_KEY. */
  readonly id: string;
  /** A path, or RECORD_TIMESTAMP. */
  readonly time: string;
  readonly timeFormat: TimeFormat;
  readonly type?: string;
}

export const FLAT_EVENT_MAPPING: EventMapping = Object.freeze({ flat: true, id: 'id', time: 'ts', timeFormat: 'auto', type: 'type' });

/** The largest event time (epoch ms) either way: what a JavaScript Date can hold. */
export const MAX_EVENT_TIME_MS = 8.64e15;

const BACKSLASH = 0x5c;
const LOWER_X = 0x78;

/** Whether bytes[start..end) is the id's text as is (UTF-8 not starting with `\x`), so that `idText` makes no hex. */
export function idBytesAreText(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
  if (end - start >= 2 && bytes[start] === BACKSLASH && bytes[start + 1] === LOWER_X) return false;
  return isUtf8(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end));
}

/** The text of an id whose bytes are bytes[start..end): its UTF-8, or `\x` and lowercase hex (see the rules above). */
export function idText(bytes: Uint8Array, start = 0, end = bytes.length): string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start);
  return idBytesAreText(b) ? b.toString('utf8') : `\\x${b.toString('hex')}`;
}

/** `idText` of an id given as a string (a path's value: its bytes are its UTF-8). */
export function idTextOfString(id: string): string {
  return id.startsWith('\\x') ? `\\x${Buffer.from(id, 'utf8').toString('hex')}` : id;
}

/** An id or type value: a non-blank string, or a number's canonical text; undefined for anything else. */
export function identifierText(v: FieldValue): string | undefined {
  if (typeof v === 'string') return v.trim() === '' ? undefined : v;
  if (v instanceof JsonNumber) return v.text;
  return undefined;
}

/** Milliseconds per unit of the epoch formats, as a power of ten. */
export const EPOCH_SHIFT: Record<'epoch-ms' | 'epoch-s' | 'epoch-us', number> = { 'epoch-ms': 0, 'epoch-s': 3, 'epoch-us': -3 };

/** What a value read with `format` must be (for messages). */
export function timeFormatExpected(format: TimeFormat): string {
  switch (format) {
    case 'auto':
      return 'an ISO-8601 date-time with zone or integer epoch milliseconds';
    case 'iso':
      return 'an ISO-8601 date-time with zone, e.g. 2026-11-21T10:15:00Z';
    case 'epoch-ms':
      return 'epoch milliseconds: a JSON number or a string holding one';
    case 'epoch-s':
      return 'epoch seconds: a JSON number or a string holding one';
    case 'epoch-us':
      return 'epoch microseconds: a JSON number or a string holding one';
  }
}

/**
 * floor(exact value of the JSON number text `source` x 10^shift): an integer, +-Infinity beyond
 * 16 integer digits (out of range either way), NaN when `source` is not JSON number text or its
 * exponent has more than MAX_EXPONENT_DIGITS digits.
 */
export function scaledFloor(source: string, shift: number): number {
  const m = JSON_NUMBER.exec(source);
  if (!m) return NaN;
  const exponent = m[4] ?? '0';
  if (exponent.replace(/^[+-]?0*/, '').length > MAX_EXPONENT_DIGITS) return NaN;
  const negative = m[1] === '-';
  const fraction = m[3] ?? '';
  const all = m[2]! + fraction;
  let first = 0;
  while (first < all.length && all.charCodeAt(first) === 0x30) first++;
  if (first === all.length) return 0;
  let end = all.length;
  while (all.charCodeAt(end - 1) === 0x30) end--;
  const d = all.slice(first, end);
  // value = 0.d x 10^n, so the integer part of value x 10^shift has n + shift digits.
  const n = d.length + Number(exponent) - fraction.length + (all.length - end) + shift;
  if (n > 16) return negative ? -Infinity : Infinity;
  const int = n <= 0 ? 0 : Number(d.slice(0, n).padEnd(n, '0'));
  const hasFraction = d.length > n;
  return negative ? -(int + (hasFraction ? 1 : 0)) : int;
}

/**
 * The event time (epoch ms) of a field value read with `format`, or NaN when the value is not in
 * that format. The result may lie beyond +-MAX_EVENT_TIME_MS: the caller checks the range.
 */
export function eventTimeOf(v: FieldValue, format: TimeFormat): number {
  if (format === 'auto') {
    if (typeof v === 'string') {
      const t = parseIsoTime(v);
      return t;
    }
    if (v instanceof JsonNumber) {
      const d = v.value;
      return Number.isInteger(d) ? d + 0 : NaN;
    }
    return NaN;
  }
  if (format === 'iso') return typeof v === 'string' ? parseIsoTime(v) : NaN;
  const source = typeof v === 'string' ? v : v instanceof JsonNumber ? v.source : undefined;
  if (source === undefined) return NaN;
  return scaledFloor(source, EPOCH_SHIFT[format]) + 0;
}

/**
 * The ISO-8601 date-times the platform accepts: date, `T` or a space, time with seconds, an
 * optional fraction of up to nine digits (cut to milliseconds), and a zone (`Z`, `+HH:MM`,
 * `+HHMM`). The rules beyond this grammar are JavaScript's Date.parse, which `parseIsoTime`
 * calls, and a calendar check (isoTimeSql states them all for DuckDB).
 */
export const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$/;

/** Epoch ms of an ISO-8601 date-time (ISO_8601), or NaN. */
export function parseIsoTime(value: string): number {
  const m = ISO_8601.exec(value);
  if (!m) return NaN;
  const ms = Date.parse(value.replace(' ', 'T'));
  if (Number.isNaN(ms)) return NaN;
  // Date.parse rolls 2026-02-30 over to March; refuse dates that do not exist. (Date.UTC reads
  // years 0-99 as 1900-1999: so 0000-02-29 is refused, a quirk kept for compatibility.)
  const [, y, mo, d] = m;
  const probe = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (probe.getUTCMonth() !== Number(mo) - 1 || probe.getUTCDate() !== Number(d)) return NaN;
  return ms;
}

// ---------------------------------------------------------------- the same rules in DuckDB SQL

/**
 * A field as SQL reads it from a JSON document: a top-level member of a flat object (a string: the
 * flat model's fields, and the recompute's rebuilt documents), or a path of names in a document
 * that may nest (a metric file with an `event:` section).
 */
export type SqlField = string | { readonly names: readonly string[] };

/** The SQL field of a metric field: its path under a mapping, or the flat name. */
export function sqlField(field: string, mapping: Pick<EventMapping, 'flat'>): SqlField {
  return mapping.flat ? field : { names: fieldNames(field, false) };
}

function namesOf(field: SqlField): readonly string[] {
  return typeof field === 'string' ? [field] : field.names;
}

/** DuckDB JSON path of a field (every name quoted: DuckDB would read `*` or `[0]` bare as operators). */
export function jsonPathSql(field: SqlField): string {
  return sqlQuote(
    `$${namesOf(field)
      .map((n) => `."${n.replace(/["\\]/g, '\\$&')}"`)
      .join('')}`,
  );
}

const NUMBER_TYPES = `('BIGINT', 'UBIGINT', 'DOUBLE')`;

/**
 * A regular expression (RE2) matching the member `field` of a flat JSON object and capturing its
 * value when that is a number. The member starts after `{` or `,` (inside a JSON string a quote is
 * always escaped, so no match can start there); each character of the name may be written
 * literally or as its \u escape, which is how JSON lets a producer spell a name.
 */
export function memberNumberPattern(field: string): string {
  return `[{,]\\s*"${memberNamePattern(field)}"\\s*:\\s*(-?[0-9][0-9.eE+-]*)`;
}

/** The name of member `field` as a pattern: each character literally or as its \u escape. */
function memberNamePattern(field: string): string {
  return [...field]
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
}

/** A JSON string token (its content captured) or a JSON number token, in JSON text read from its start. */
const TOKEN_PATTERN = '"((?:[^"\\\\]|\\\\.)*)"|(-?[0-9][0-9.eE+-]*)';

/** numberTokensSql's marks: a number token (group 2 of TOKEN_PATTERN) and a string token (group 1), between control characters. */
export const MARKED_NUMBER_PATTERN = '\\x01\\x02([^\\x01-\\x03]+)\\x03';
export const MARKED_STRING_PATTERN = '\\x01([^\\x01-\\x03]*)\\x02\\x03';
/** What numberTokensSql puts before a number's source text and before a string's content (member names included). */
export const NUMBER_TOKEN_PREFIX = 'n';
export const STRING_TOKEN_PREFIX = 's';

/**
 * SQL: the JSON document `doc` rewritten so that every number is a string holding its source
 * text, prefixed `n`, and every string (member names included) is prefixed `s`: `{"a":1.50}`
 * becomes `{"sa":"n1.50"}`. A path then reads a number's exact digits with DuckDB's own path
 * walk (`numberTokenPathSql`), where a regular expression anchored on a name could meet the same
 * name elsewhere in a nested document. Three passes: mark each token with control characters
 * (which JSON text cannot hold raw), then turn marked numbers, then marked strings, into strings.
 * Exact for every valid JSON text: scanning from the start, a string token is consumed whole
 * (escaped quotes included), so a number is only ever matched outside strings.
 */
export function numberTokensSql(doc: string): string {
  const marked = `regexp_replace(${doc}, ${sqlQuote(TOKEN_PATTERN)}, chr(1) || '\\1' || chr(2) || '\\2' || chr(3), 'g')`;
  const numbers = `regexp_replace(${marked}, ${sqlQuote(MARKED_NUMBER_PATTERN)}, '"${NUMBER_TOKEN_PREFIX}\\1"', 'g')`;
  return `regexp_replace(${numbers}, ${sqlQuote(MARKED_STRING_PATTERN)}, '"${STRING_TOKEN_PREFIX}\\1"', 'g')`;
}

/** The path of `names` in the rewritten document of numberTokensSql. */
function numberTokenPathSql(names: readonly string[]): string {
  return jsonPathSql({ names: names.map((n) => `s${n}`) });
}

/**
 * SQL: the source text of the number at `field` of the JSON document `doc` (NULL when not a
 * number). Integers (BIGINT, UBIGINT) are DuckDB's own exact text; other numbers (DOUBLE: a
 * fraction, an exponent, or beyond 64 bits) come from the document's text.
 */
export function numberSourceSql(doc: string, field: SqlField): string {
  if (typeof field === 'string')
    return `CASE WHEN json_type(${doc}, ${jsonPathSql(field)}) IN ${NUMBER_TYPES} THEN nullif(regexp_extract(${doc}, ${sqlQuote(memberNumberPattern(field))}, 1), '') END`;
  const path = jsonPathSql(field);
  return `(CASE json_type(${doc}, ${path}) WHEN 'BIGINT' THEN json_extract(${doc}, ${path})::VARCHAR WHEN 'UBIGINT' THEN json_extract(${doc}, ${path})::VARCHAR
    WHEN 'DOUBLE' THEN substr(json_extract_string(${numberTokensSql(doc)}, ${numberTokenPathSql(field.names)}), 2) END)`;
}

/** The number parts of JSON number text `t`: sign, integer digits, fraction digits, exponent (a lambda body's struct). */
const NUMBER_PARTS =
  `struct_pack(neg := starts_with(lk_t, '-'), ip := regexp_extract(lk_t, '^-?([0-9]+)', 1), ` +
  `fp := regexp_extract(lk_t, '^-?[0-9]+\\.([0-9]+)', 1), ex := coalesce(TRY_CAST(regexp_extract(lk_t, '[eE]([+-]?[0-9]+)$', 1) AS BIGINT), 0))`;
/** From NUMBER_PARTS `p`: the digits without leading (z) and trailing zeros (d), the zeros cut (tz), the exponent less the fraction (e10). */
const NUMBER_DIGITS =
  `struct_pack(neg := lk_p.neg, z := ltrim(lk_p.ip || lk_p.fp, '0'), d := rtrim(ltrim(lk_p.ip || lk_p.fp, '0'), '0'), ` +
  `tz := length(ltrim(lk_p.ip || lk_p.fp, '0')) - length(rtrim(ltrim(lk_p.ip || lk_p.fp, '0'), '0')), e10 := lk_p.ex - length(lk_p.fp))`;

/**
 * SQL: `canonicalNumberText` of the VARCHAR expression `text` (JSON number text), step by step as
 * above: the digits of integer and fraction part, without leading and trailing zeros (d, k), and
 * the position of the decimal point (n). Lambdas bind the intermediate values once.
 */
export function canonicalNumberSql(text: string): string {
  const layout = `CASE WHEN lk_q.z = '' THEN '0' ELSE (CASE WHEN lk_q.neg THEN '-' ELSE '' END) || (CASE
      WHEN length(lk_q.d) <= lk_q.n AND lk_q.n <= 21 THEN lk_q.d || repeat('0', lk_q.n - length(lk_q.d))
      WHEN 0 < lk_q.n AND lk_q.n <= 21 THEN substr(lk_q.d, 1, lk_q.n) || '.' || substr(lk_q.d, lk_q.n + 1)
      WHEN -6 < lk_q.n AND lk_q.n <= 0 THEN '0.' || repeat('0', -lk_q.n) || lk_q.d
      ELSE substr(lk_q.d, 1, 1) || (CASE WHEN length(lk_q.d) > 1 THEN '.' || substr(lk_q.d, 2) ELSE '' END)
        || 'e' || (CASE WHEN lk_q.n - 1 < 0 THEN '-' ELSE '+' END) || CAST(abs(lk_q.n - 1) AS VARCHAR) END) END`;
  const withN = `struct_pack(neg := lk_r.neg, z := lk_r.z, d := lk_r.d, n := length(lk_r.d) + lk_r.e10 + lk_r.tz)`;
  return `(list_transform([${text}], lk_t -> list_transform([${NUMBER_PARTS}], lk_p -> list_transform([${NUMBER_DIGITS}], lk_r -> list_transform([${withN}], lk_q -> ${layout})[1])[1])[1])[1])`;
}

/** SQL for `fieldText` of field `field` of `doc`, NULL when the field is absent. */
export function fieldTextSql(doc: string, field: SqlField): string {
  const path = jsonPathSql(field);
  const number = canonicalNumberSql(numberSourceSql(doc, field));
  // Each expression appears once: the statement stays small for DuckDB's planner.
  const type = `json_type(${doc}, ${path})`;
  return `(CASE WHEN ${type} IN ('VARCHAR', 'BOOLEAN') THEN json_extract_string(${doc}, ${path})
    WHEN ${type} IN ${NUMBER_TYPES} THEN ${number} END)`;
}

/** SQL for `numericValue`: a DOUBLE, or NULL when the field is no number or not finite. */
export function numericValueSql(doc: string, field: SqlField): string {
  const path = jsonPathSql(field);
  const d = `TRY_CAST(json_extract(${doc}, ${path}) AS DOUBLE)`;
  return `(CASE WHEN json_type(${doc}, ${path}) IN ${NUMBER_TYPES} AND isfinite(${d}) THEN ${d} + 0.0 END)`;
}

/** SQL for `filterAccepts`: strict JSON equality of type and value. */
export function filterSql(doc: string, field: SqlField, accepted: readonly FilterValue[]): string {
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
 * `value` (its JSON value, taken from json_transform of the event `raw` to a struct of JSON
 * values) and `raw`. With `asText` (a field read as a key, a distinct value or a filter) a number
 * keeps the digits the event wrote, cut out of `raw` only for the events whose field is such a
 * number: DuckDB's JSON value holds a double.
 */
export function fieldJsonSql(field: SqlField, asText: boolean, value: string, raw = 'raw'): string {
  if (!asText) return `${value}::VARCHAR`;
  const digits =
    typeof field === 'string'
      ? `regexp_extract(${raw}, ${sqlQuote(memberNumberPattern(field))}, 1)`
      : `substr(json_extract_string(${numberTokensSql(raw)}, ${numberTokenPathSql(field.names)}), 2)`;
  return `CASE WHEN json_type(${value}) = 'DOUBLE' THEN ${digits} ELSE ${value}::VARCHAR END`;
}

/**
 * The json_transform structure reading `fields` (each a list of names) as JSON values in one
 * parse, and the SQL of each field's value from the transformed column `column`. A field that is
 * also the prefix of another is read as JSON and the longer one from its text.
 */
export function fieldsStructureSql(fields: readonly (readonly string[])[], column: string): { structure: string; valueOf: string[] } {
  interface Node {
    leaf: boolean;
    children: Map<string, Node>;
  }
  const root: Node = { leaf: false, children: new Map() };
  for (const names of fields) {
    let node = root;
    for (const n of names) {
      let child = node.children.get(n);
      if (!child) node.children.set(n, (child = { leaf: false, children: new Map() }));
      node = child;
    }
    node.leaf = true;
  }
  const spec = (node: Node): unknown => (node.leaf ? 'JSON' : Object.fromEntries([...node.children].map(([n, child]) => [n, spec(child)])));
  const valueOf = fields.map((names) => {
    let expr = column;
    let node = root;
    for (let i = 0; i < names.length; i++) {
      if (node.leaf) return `json_extract(${expr}, ${jsonPathSql({ names: names.slice(i) })})`;
      // By position: DuckDB looks struct fields up by name without regard to case, so j['k2']
      // would read the member "K2" of a structure that has both (the position is the key's in
      // the structure's JSON, Object.keys order, as JSON.stringify writes it).
      const position = Object.keys(spec(node) as object).indexOf(names[i]!) + 1;
      node = node.children.get(names[i]!)!;
      expr = `struct_extract_at(${expr}, ${position})`;
    }
    return expr;
  });
  return { structure: sqlQuote(JSON.stringify(spec(root))), valueOf };
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

/** SQL for `conditionAccepts` (the bound as the same double: its shortest text, which DuckDB reads exactly). */
export function conditionSql(doc: string, field: SqlField, c: FieldCondition): string {
  const parts: string[] = [];
  // json_type of a missing path is NULL: coalesce, or NOT would keep it NULL.
  if (c.exists !== undefined) parts.push(`${c.exists ? '' : 'NOT '}coalesce(${hasScalarSql(doc, field)}, FALSE)`);
  // A missing field equals none of the values: NOT over the equality test (which is never NULL).
  if (c.not !== undefined) parts.push(`NOT coalesce(${filterSql(doc, field, c.not)}, FALSE)`);
  const bounds = (['gt', 'gte', 'lt', 'lte'] as const).filter((b) => c[b] !== undefined);
  if (bounds.length > 0) {
    const n = numericValueSql(doc, field);
    const op = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;
    parts.push(`coalesce(${bounds.map((b) => `${n} ${op[b]} CAST('${String(c[b])}' AS DOUBLE)`).join(' AND ')}, FALSE)`);
  }
  return parts.length === 0 ? 'TRUE' : `(${parts.join(' AND ')})`;
}

/** SQL for `compositeKeyText` over the parts' text expressions (NULL when a part is). */
export function compositeKeyTextSql(parts: readonly string[]): string {
  return parts.map((p) => `replace(replace(${p}, '\\', '\\\\'), '|', '\\|')`).join(` || '|' || `);
}

/** SQL: the field is present with a scalar value (a key or distinct field then has a text). */
export function hasScalarSql(doc: string, field: SqlField): string {
  return `json_type(${doc}, ${jsonPathSql(field)}) IN ('VARCHAR', 'BOOLEAN', ${NUMBER_TYPES.slice(1, -1)})`;
}

// ---------------------------------------------------------------- the event's id, time and type in DuckDB SQL

/** The characters JavaScript's String.prototype.trim removes, as an RE2 class: a string of only these is blank. */
export const BLANK_PATTERN =
  '[\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}]*';

/** SQL: `identifierText` of the JSON value `v` at `field` of `doc` (a non-blank string, a number's canonical text), else NULL. */
function identifierSql(doc: string, field: SqlField, stringsOnly: boolean): string {
  const path = jsonPathSql(field);
  const text = `json_extract_string(${doc}, ${path})`;
  const string = `CASE WHEN NOT regexp_full_match(${text}, ${sqlQuote(BLANK_PATTERN)}) THEN ${text} END`;
  if (stringsOnly) return `(CASE WHEN json_type(${doc}, ${path}) = 'VARCHAR' THEN ${string} END)`;
  return `(CASE WHEN json_type(${doc}, ${path}) = 'VARCHAR' THEN ${string} WHEN json_type(${doc}, ${path}) IN ${NUMBER_TYPES} THEN ${fieldTextSql(doc, field)} END)`;
}

/** SQL: `idText` of an id given as the VARCHAR `s` (a path's value). */
export function idTextOfStringSql(s: string): string {
  return `(CASE WHEN starts_with(${s}, '\\x') THEN '\\x' || lower(hex(encode(${s}))) ELSE ${s} END)`;
}

/** SQL: `idText` of an id given as the BLOB `b` (a record key): its UTF-8 text, else `\x` and hex. */
export function idTextOfBytesSql(b: string): string {
  return `(CASE WHEN try(decode(${b})) IS NULL OR starts_with(try(decode(${b})), '\\x') THEN '\\x' || lower(hex(${b})) ELSE try(decode(${b})) END)`;
}

export const MURMUR2_M = 0x5bd1e995;
export const MURMUR2_SEED = 0x9747b28c;

/** (a * M) mod 2^32 for 0 <= a < 2^32 (the product stays below 2^63 because M < 2^31). */
function mul32(a: string): string {
  return `(((${a}) * ${MURMUR2_M}) & 4294967295)`;
}

/**
 * SQL: `idHash` (services/log/partitioner.ts, Kafka's murmur2 of the id's bytes, made positive) of
 * the BLOB `bytes`, in BIGINT arithmetic on unsigned 32-bit values: the bytes as a list, the
 * 4-byte words folded with list_reduce, the tail and the final mix. A few microseconds a row:
 * the recompute computes it only for records whose id the lake writer did not hash under the
 * same mapping (batch/views/batchViews.ts).
 */
export function idHashSql(bytes: string): string {
  const x = `list_transform(range(octet_length(lk_b)), lk_i -> ('0x' || substr(hex(lk_b), 2 * lk_i + 1, 2))::BIGINT)`;
  const words = `list_transform(range(lk_s.n // 4), lk_i -> lk_s.x[4 * lk_i + 1] | (lk_s.x[4 * lk_i + 2] << 8) | (lk_s.x[4 * lk_i + 3] << 16) | (lk_s.x[4 * lk_i + 4] << 24))`;
  const body = `list_reduce(${words}, (lk_h, lk_k) -> xor(${mul32('lk_h')}, ${mul32(`xor(${mul32('lk_k')}, ${mul32('lk_k')} >> 24)`)}), xor(${MURMUR2_SEED}, lk_s.n))`;
  const base = `lk_r.n - lk_r.n % 4`;
  const at = (k: number) => `lk_r.x[${base} + ${k}]`;
  const tail = `CASE lk_r.n % 4
      WHEN 3 THEN ${mul32(`xor(xor(xor(lk_r.h, ${at(3)} << 16), ${at(2)} << 8), ${at(1)})`)}
      WHEN 2 THEN ${mul32(`xor(xor(lk_r.h, ${at(2)} << 8), ${at(1)})`)}
      WHEN 1 THEN ${mul32(`xor(lk_r.h, ${at(1)})`)}
      ELSE lk_r.h END`;
  const mix = `xor(${mul32('xor(lk_g, lk_g >> 13)')}, ${mul32('xor(lk_g, lk_g >> 13)')} >> 15) & 2147483647`;
  return `(list_transform([${bytes}], lk_b -> list_transform([struct_pack(n := octet_length(lk_b), x := ${x})], lk_s ->
    list_transform([struct_pack(n := lk_s.n, x := lk_s.x, h := ${body})], lk_r -> list_transform([${tail}], lk_g -> ${mix})[1])[1])[1])[1])::INTEGER`;
}

/** SQL: `parseIsoTime` of the VARCHAR `s` (epoch ms), NULL when it is not an accepted date-time. */
export function isoTimeSql(s: string): string {
  const groups = `regexp_extract(${s}, ${sqlQuote(ISO_8601.source)}, ['y', 'mo', 'd', 'h', 'mi', 'se', 'fr', 'z'])`;
  const ints =
    `struct_pack(y := lk_m.y::BIGINT, mo := lk_m.mo::BIGINT, d := lk_m.d::BIGINT, h := lk_m.h::BIGINT, mi := lk_m.mi::BIGINT, se := lk_m.se::BIGINT, ` +
    `fz := ltrim(substr(lk_m.fr, 2), '0') = '', ms := CASE WHEN lk_m.fr = '' THEN 0 ELSE rpad(substr(lk_m.fr, 2, 3), 3, '0')::BIGINT END, ` +
    `zs := CASE WHEN lk_m.z = 'Z' THEN 0 WHEN starts_with(lk_m.z, '-') THEN -1 ELSE 1 END, ` +
    `oh := CASE WHEN lk_m.z = 'Z' THEN 0 ELSE substr(lk_m.z, 2, 2)::BIGINT END, om := CASE WHEN lk_m.z = 'Z' THEN 0 ELSE right(lk_m.z, 2)::BIGINT END, ` +
    // Date.UTC, which the JavaScript's calendar check calls, reads years 0-99 as 1900-1999.
    `py := CASE WHEN lk_m.y::BIGINT < 100 THEN 1900 + lk_m.y::BIGINT ELSE lk_m.y::BIGINT END)`;
  const leap = `((lk_t.py % 4 = 0 AND lk_t.py % 100 <> 0) OR lk_t.py % 400 = 0)`;
  const daysInMonth = `CASE WHEN lk_t.mo = 2 THEN (CASE WHEN ${leap} THEN 29 ELSE 28 END) WHEN lk_t.mo IN (4, 6, 9, 11) THEN 30 ELSE 31 END`;
  // Date.parse: hour 24 only as 24:00:00 with a zero fraction (the next day's start); zone offsets up to 23:59.
  const valid =
    `lk_t.mo BETWEEN 1 AND 12 AND lk_t.d BETWEEN 1 AND ${daysInMonth} AND lk_t.mi <= 59 AND lk_t.se <= 59 AND lk_t.oh <= 23 AND lk_t.om <= 59 ` +
    `AND (lk_t.h <= 23 OR (lk_t.h = 24 AND lk_t.mi = 0 AND lk_t.se = 0 AND lk_t.fz))`;
  // Days since 1970-01-01 of the proleptic Gregorian date (Howard Hinnant's days_from_civil).
  const yy = `(lk_t.y - CASE WHEN lk_t.mo <= 2 THEN 1 ELSE 0 END)`;
  const era = `((CASE WHEN ${yy} >= 0 THEN ${yy} ELSE ${yy} - 399 END) // 400)`;
  const yoe = `(${yy} - ${era} * 400)`;
  const doy = `((153 * (lk_t.mo + CASE WHEN lk_t.mo > 2 THEN -3 ELSE 9 END) + 2) // 5 + lk_t.d - 1)`;
  const days = `(${era} * 146097 + ${yoe} * 365 + ${yoe} // 4 - ${yoe} // 100 + ${doy} - 719468)`;
  const ms = `${days} * 86400000 + lk_t.h * 3600000 + lk_t.mi * 60000 + lk_t.se * 1000 + lk_t.ms - lk_t.zs * (lk_t.oh * 60 + lk_t.om) * 60000`;
  return `(list_transform([${groups}], lk_m -> CASE WHEN lk_m.y <> '' THEN list_transform([${ints}], lk_t -> CASE WHEN ${valid} THEN ${ms} END)[1] END)[1])`;
}

export const JSON_NUMBER_PATTERN = '-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?(?:[eE][+-]?[0-9]+)?';

/**
 * SQL: `scaledFloor` of the VARCHAR `text` (epoch ms as BIGINT), NULL when `text` is not JSON
 * number text with an exponent of at most MAX_EXPONENT_DIGITS digits, or beyond 16 integer digits.
 */
export function scaledFloorSql(text: string, shift: number): string {
  const ok = `regexp_full_match(lk_t, ${sqlQuote(JSON_NUMBER_PATTERN)}) AND length(regexp_extract(lk_t, '[eE][+-]?0*([0-9]*)$', 1)) <= ${MAX_EXPONENT_DIGITS}`;
  const withN = `struct_pack(neg := lk_r.neg, d := lk_r.d, n := length(lk_r.d) + lk_r.e10 + lk_r.tz + ${shift})`;
  const int = `rpad(substr(lk_q.d, 1, lk_q.n::INTEGER), lk_q.n::INTEGER, '0')::BIGINT`;
  const value = `CASE WHEN lk_q.d = '' THEN 0 WHEN lk_q.n > 16 THEN NULL WHEN lk_q.n <= 0 THEN (CASE WHEN lk_q.neg THEN -1 ELSE 0 END)
    WHEN lk_q.neg THEN -(${int} + CASE WHEN length(lk_q.d) > lk_q.n THEN 1 ELSE 0 END) ELSE ${int} END`;
  return `(list_transform([${text}], lk_t -> CASE WHEN ${ok} THEN list_transform([${NUMBER_PARTS}], lk_p -> list_transform([${NUMBER_DIGITS}], lk_r -> list_transform([${withN}], lk_q -> ${value})[1])[1])[1] END)[1])`;
}

/** SQL: `eventTimeOf` the value at `field` of `doc` in `format`, as epoch ms within +-MAX_EVENT_TIME_MS, else NULL. */
export function eventTimeSql(doc: string, field: SqlField, format: TimeFormat): string {
  const path = jsonPathSql(field);
  const type = `json_type(${doc}, ${path})`;
  const string = `json_extract_string(${doc}, ${path})`;
  let ms: string;
  if (format === 'auto') {
    const d = `TRY_CAST(json_extract(${doc}, ${path}) AS DOUBLE)`;
    ms = `(CASE WHEN ${type} = 'VARCHAR' THEN ${isoTimeSql(string)} WHEN ${type} IN ${NUMBER_TYPES} THEN ${autoNumber(d)} END)`;
  } else if (format === 'iso') {
    ms = `(CASE WHEN ${type} = 'VARCHAR' THEN ${isoTimeSql(string)} END)`;
  } else {
    const shift = EPOCH_SHIFT[format];
    ms = `(CASE WHEN ${type} = 'VARCHAR' THEN ${scaledFloorSql(string, shift)} WHEN ${type} IN ${NUMBER_TYPES} THEN ${scaledFloorSql(numberSourceSql(doc, field), shift)} END)`;
  }
  return `(list_transform([${ms}], lk_x -> CASE WHEN lk_x BETWEEN ${-MAX_EVENT_TIME_MS} AND ${MAX_EVENT_TIME_MS} THEN lk_x END)[1])`;
}

/** `auto`'s number rule on the DOUBLE `d`: an integer within range (a wider one is out of range either way). */
function autoNumber(d: string): string {
  return `(CASE WHEN isfinite(${d}) AND ${d} = floor(${d}) AND abs(${d}) <= ${MAX_EVENT_TIME_MS} THEN ${d}::BIGINT END)`;
}

/** The flat model's field names (services/events/event.ts), as RE2. */
const FLAT_FIELD_NAME = '[A-Za-z_][A-Za-z0-9_.-]{0,127}';
/** The flat model's largest number of fields (services/events/event.ts DEFAULT_EVENT_LIMITS). */
export const FLAT_MAX_FIELDS = 256;

/**
 * SQL: the flat model's rules on `raw` beyond id, type and time: at most FLAT_MAX_FIELDS fields,
 * every name valid, no value null, an object or an array.
 */
function flatRulesSql(raw: string): string {
  return `(len(json_keys(${raw})) <= ${FLAT_MAX_FIELDS}
    AND coalesce(list_bool_and(list_transform(json_keys(${raw}), lk_k -> regexp_full_match(lk_k, ${sqlQuote(FLAT_FIELD_NAME)}))), TRUE)
    AND coalesce(list_bool_and(list_transform(json_extract(${raw}, '$.*'), lk_v -> json_type(lk_v) NOT IN ('NULL', 'OBJECT', 'ARRAY'))), TRUE))`;
}

/** A record as SQL columns: the value's text, the key (BLOB, NULL for none), the record timestamp (BIGINT epoch ms). */
export interface RecordSql {
  raw: string;
  key: string;
  timestamp: string;
}

/**
 * SQL: the event of a record under `mapping`, as `struct(id VARCHAR, ts BIGINT, type VARCHAR,
 * hash INTEGER)` (id as `idText`, hash as `idHash` of its bytes), or NULL when the record is not
 * an event under it. The record is known to be a readable JSON object (the lake keeps no other:
 * services/events/event.ts `readableObject`), so the structural rules need no SQL.
 */
export function mappedEventSql(mapping: EventMapping, r: RecordSql): string {
  const fieldOf = (path: string): SqlField => sqlField(path, mapping);
  const byKey = mapping.id === RECORD_KEY;
  const idString = byKey ? 'CAST(NULL AS VARCHAR)' : identifierSql(r.raw, fieldOf(mapping.id), mapping.flat);
  const idKey = byKey ? `(CASE WHEN octet_length(${r.key}) > 0 THEN ${r.key} END)` : 'CAST(NULL AS BLOB)';
  const ts =
    mapping.time === RECORD_TIMESTAMP
      ? `(CASE WHEN ${r.timestamp} BETWEEN 0 AND ${MAX_EVENT_TIME_MS} THEN ${r.timestamp} END)`
      : eventTimeSql(r.raw, fieldOf(mapping.time), mapping.timeFormat);
  const type = mapping.type === undefined ? 'CAST(NULL AS VARCHAR)' : identifierSql(r.raw, fieldOf(mapping.type), mapping.flat);
  const checks = [byKey ? 'lk_e.k IS NOT NULL' : 'lk_e.s IS NOT NULL', 'lk_e.ts IS NOT NULL'];
  if (mapping.type !== undefined) checks.push('lk_e.type IS NOT NULL');
  if (mapping.flat) checks.push(flatRulesSql(r.raw));
  const id = byKey ? idTextOfBytesSql('lk_e.k') : idTextOfStringSql('lk_e.s');
  const hash = idHashSql(byKey ? 'lk_e.k' : 'encode(lk_e.s)');
  return `(list_transform([struct_pack(s := ${idString}, k := ${idKey}, ts := ${ts}, type := ${type})], lk_e ->
    CASE WHEN ${checks.join(' AND ')} THEN struct_pack(id := ${id}, ts := lk_e.ts::BIGINT, type := lk_e.type, hash := ${hash}) END)[1])`;
}

// ---------------------------------------------------------------- the member's kind from the event text

/**
 * The same rules for an engine whose JSON functions cannot tell a field's JSON type (Spark's
 * `from_json` and `get_json_object` give the text `1` for the string "1" and for the number 1,
 * and re-print numbers, `150.0` for `1.50e2`): the kind of member `field`, and a number's source
 * digits, are read from the event text by one pattern anchored on the member's name, as
 * `memberNumberPattern` reads the digits. The capture is `"` (a string: its decoded text comes
 * from the engine's JSON reader), `true` or `false`, or a number's digits; no match (absent,
 * null, an object, an array) is no scalar. Valid for the same reason: events are flat objects
 * whose names and strings were validated, so no match starts inside a string.
 */
export function memberValuePattern(field: string): string {
  return `[{,]\\s*"${memberNamePattern(field)}"\\s*:\\s*("|true|false|-?[0-9][0-9.eE+-]*)`;
}

/** The scalar kinds of the rules above: string, boolean, number. */
export type MemberKind = 's' | 'b' | 'n';

/** The kind of a `memberValuePattern` capture ('' when it did not match): the rule in JavaScript. */
export function memberKindOf(capture: string): MemberKind | undefined {
  if (capture === '"') return 's';
  if (capture === 'true' || capture === 'false') return 'b';
  return capture === '' ? undefined : 'n';
}

/**
 * The first characters with which a JSON reader's text of a non-string value can begin (digits,
 * `-`, `t`rue, `f`alse, `{`, `[`, and Jackson's `Infinity`, `NaN` and quoted `"Infinity"` for
 * numbers beyond a double): a decoded string beginning otherwise is a string, without the
 * pattern. An engine may skip the pattern for such texts; the answer is the same.
 */
export const NON_STRING_TEXT_STARTS = ['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f', '{', '[', 'I', 'N', '"'] as const;

// ---------------------------------------------------------------- nested events for an engine that cannot tell kinds

/**
 * The same rules along a path of a nested event (a metric file with an `event:` section), for an
 * engine whose JSON functions cannot tell a value's JSON type (Spark, above): the document is
 * rewritten as `numberTokensSql` rewrites it (every string, member names included, prefixed
 * STRING_TOKEN_PREFIX, every number a string holding its source text prefixed NUMBER_TOKEN_PREFIX),
 * and the path is walked by name with the engine's own JSON reader over the rewritten names
 * (`tokenName`). The text found at the end of the walk, as the engine's reader gives it (a
 * string's decoded content; true/false; an object's or array's JSON text; nothing for null or a
 * missing member), tells the kind (`tokenKindOf`): the prefix `s` a string, `n` a number with its
 * exact digits, `true`/`false` a boolean, anything else (`{`, `[`, nothing) no scalar. No member
 * of another object can be met on the way, as a pattern anchored on a name could in a nested
 * document.
 *
 * TOKEN_PATTERN_JAVA is TOKEN_PATTERN for Java's regular expressions: the same language, the
 * string alternative unrolled with possessive quantifiers, because Java's matcher recurses once
 * per repetition of an alternation and overflows its stack on a long string. The marks
 * (MARKED_NUMBER_PATTERN, MARKED_STRING_PATTERN) read the same in both flavours.
 */
export const TOKEN_PATTERN_JAVA = '"([^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+)"|(-?[0-9][0-9.eE+-]*)';

/** A member's name in the rewritten document. */
export function tokenName(name: string): string {
  return STRING_TOKEN_PREFIX + name;
}

/** The kind and text of what the walk over the rewritten document found (`found`: undefined for nothing). */
export function tokenKindOf(found: string | undefined): { kind: MemberKind; text: string } | undefined {
  if (found === undefined) return undefined;
  if (found.startsWith(STRING_TOKEN_PREFIX)) return { kind: 's', text: found.slice(1) };
  if (found.startsWith(NUMBER_TOKEN_PREFIX)) return { kind: 'n', text: found.slice(1) };
  if (found === 'true' || found === 'false') return { kind: 'b', text: found };
  return undefined;
}

/**
 * A pattern of JavaScript's or RE2's flavour (`^...$` meaning the whole text) as a Java pattern
 * for a whole-text match: Java's `$` also matches before a final line break, `\z` does not.
 */
export function wholeTextJavaPattern(pattern: string): string {
  const body = pattern.startsWith('^') && pattern.endsWith('$') ? pattern.slice(1, -1) : pattern;
  return `^(?:${body})\\z`;
}
