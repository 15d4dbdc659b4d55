/**
 * The event model: one JSON object per record, validated at the edge of the platform.
 *
 * Two shapes, chosen by the metric file (services/metrics/definitions.ts):
 * - the flat model (no `event:` section): a flat object with `id`, `type` and `ts` at the top
 *   level (`validateEventLine`);
 * - a mapped shape (an `event:` section): any JSON object; the id, time and type are found where
 *   the mapping says, along paths, in the record key or the record timestamp
 *   (`validateMappedRecord`; the rules: services/metrics/fieldSemantics.ts).
 * Both first require a *readable* JSON object, which every engine reads the same way: at most
 * `maxEventBytes`, UTF-8 without byte order mark, JSON text holding an object, no name repeated in
 * any object, no escaped half of a surrogate pair, no exponent beyond MAX_EXPONENT_DIGITS digits
 * (`readableObject`). The lake keeps every readable record, valid or not under the lake writer's
 * mapping, so that a version with another mapping can be recomputed from it.
 *
 * Every rejection carries a machine-readable `code` (counted per reason and used in dead
 * letters), and the field (a path, `$key` or `$timestamp`), what was expected and what was found,
 * so that a user can fix the producer without reading our code.
 */
import { isUtf8 } from 'node:buffer';
import {
  JsonNumber,
  MAX_EVENT_TIME_MS,
  MAX_EXPONENT_DIGITS,
  RECORD_KEY,
  RECORD_TIMESTAMP,
  eventTimeOf as timeOfValue,
  fieldNames,
  identifierText,
  timeFormatExpected,
  valueAtPath,
  type EventMapping,
  type FieldValue,
} from '../metrics/fieldSemantics.ts';
import { parseEventTime } from './eventTime.ts';

export type AttributeValue = string | number | boolean;

export interface LkEvent {
  readonly id: string;
  readonly type: string;
  /** Event time, epoch milliseconds. */
  readonly ts: number;
  /** Every field of the event as sent, including id, type and ts in their original form. */
  readonly fields: Readonly<Record<string, AttributeValue>>;
  /** The source text of every number field (JSON.parse rounds numbers to doubles). */
  readonly numberSources: Readonly<Record<string, string>>;
}

export const REJECT_CODES = [
  'empty_line',
  'byte_order_mark',
  'binary_data',
  'invalid_utf8',
  'too_large',
  'invalid_json',
  'not_an_object',
  'missing_field',
  'wrong_type',
  'empty_value',
  'invalid_ts',
  'ts_out_of_range',
  'nested_value',
  'null_value',
  'invalid_field_name',
  'too_many_fields',
  'duplicate_field',
  'lone_surrogate',
  'number_out_of_range',
  'missing_key',
  'missing_timestamp',
] as const;
export type RejectCode = (typeof REJECT_CODES)[number];

export interface Rejection {
  code: RejectCode;
  field?: string;
  expected?: string;
  got?: string;
  /** One line a human can act on. */
  message: string;
}

export interface EventLimits {
  /** Maximum size of one event in bytes (the raw line). */
  maxEventBytes: number;
  /** Earliest accepted event time (epoch ms). */
  minTs: number;
  /** How far in the future (relative to the clock at validation) an event time may be. */
  maxFutureMs: number;
  /** Maximum number of fields in one event. */
  maxFields: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = {
  maxEventBytes: 64 * 1024,
  minTs: Date.UTC(2000, 0, 1),
  maxFutureMs: 24 * 3_600_000,
  maxFields: 256,
};

export type Validation = { ok: true; event: LkEvent } | { ok: false; rejection: Rejection };
type Rejected = Extract<Validation, { ok: false }>;

const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

function isBlank(raw: Uint8Array): boolean {
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  }
  return true;
}

/**
 * Control characters other than tab/CR are never valid in JSON text (inside strings they must
 * be escaped): their presence means binary data rather than a JSON typo.
 */
function hasControlByte(raw: Uint8Array): Rejected | undefined {
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b < 0x20 && b !== 0x09 && b !== 0x0d) {
      return reject('binary_data', `line contains control byte 0x${b.toString(16).padStart(2, '0')}; not JSON text`);
    }
  }
  return undefined;
}

function reject(code: RejectCode, message: string, extra: Omit<Rejection, 'code' | 'message'> = {}): Rejected {
  return { ok: false, rejection: { code, message, ...extra } };
}

/** ISO-8601 text of an epoch-ms instant, or the number itself beyond what a Date can hold. */
function isoOrNumber(ms: number): string {
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : `${ms} ms`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  const t = typeof value;
  if (t === 'string') {
    const s = value as string;
    return `string ${JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s)}`;
  }
  if (t === 'number' || t === 'boolean') return `${t} ${String(value)}`;
  return t;
}

/** What `inspectText` found in an event's text that JSON.parse does not tell. */
interface TextFacts {
  /** The first top-level field name that appears twice. */
  duplicate?: string;
  /** A `\uD800`-style escape without its pair, and the top-level field it is in (if any). */
  loneSurrogate?: { field: string | undefined; escape: string };
  /** A top-level number whose exponent is beyond MAX_EXPONENT_DIGITS digits. */
  hugeExponent?: { field: string; number: string };
  /** Source text of every top-level number field (JSON.parse rounds it to a double). */
  numbers: Record<string, string>;
}

const HEX4 = /^[0-9A-Fa-f]{4}$/;

function hexAt(text: string, i: number): number {
  const h = text.slice(i, i + 4);
  return HEX4.test(h) ? parseInt(h, 16) : -1;
}

/**
 * One pass over an event's JSON text (known to be valid JSON holding an object) for what the
 * parsed value hides:
 * - a repeated field name: JSON.parse keeps the last value silently, other readers (DuckDB keeps
 *   the first) disagree, so the event would mean two things;
 * - an escaped UTF-16 surrogate without its pair: JavaScript keeps it, but no UTF-8 text can hold
 *   it and DuckDB refuses the whole document, so the event could not reach the batch layer;
 * - the source text of each top-level number, which keys and filters use (fieldSemantics.ts),
 *   and whose exponent must stay within what both engines compute exactly.
 */
function inspectText(text: string): TextFacts {
  const facts: TextFacts = { numbers: {} };
  const seen = new Set<string>();
  let depth = 0;
  let lastString = '';
  /** The top-level member whose value comes next (after its colon), or is being read. */
  let member: string | undefined;
  let valueOf: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x22) break;
        if (d !== 0x5c) continue;
        i++;
        if (text.charCodeAt(i) !== 0x75 || facts.loneSurrogate) continue; // only \u escapes matter
        const unit = hexAt(text, i + 1);
        if (unit >= 0xd800 && unit <= 0xdbff) {
          const next = text.charCodeAt(i + 5) === 0x5c && text.charCodeAt(i + 6) === 0x75 ? hexAt(text, i + 7) : -1;
          if (next >= 0xdc00 && next <= 0xdfff) i += 6;
          else facts.loneSurrogate = { field: depth === 1 ? valueOf : undefined, escape: text.slice(i - 1, i + 5) };
        } else if (unit >= 0xdc00 && unit <= 0xdfff) {
          facts.loneSurrogate = { field: depth === 1 ? valueOf : undefined, escape: text.slice(i - 1, i + 5) };
        }
        i += 4;
      }
      if (depth === 1) lastString = text.slice(start, i + 1);
      member = undefined;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      member = undefined;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x3a && depth === 1) {
      const name = JSON.parse(lastString) as string;
      if (seen.has(name)) facts.duplicate ??= name;
      seen.add(name);
      member = valueOf = name;
    } else if (c === 0x2c && depth === 1) valueOf = undefined;
    else if ((c === 0x2d || (c >= 0x30 && c <= 0x39)) && member !== undefined) {
      const start = i;
      while (i + 1 < text.length && /[0-9.eE+-]/.test(text[i + 1]!)) i++;
      const number = text.slice(start, i + 1);
      facts.numbers[member] = number;
      const e = /[eE][+-]?0*([0-9]*)$/.exec(number);
      if (e && e[1]!.length > MAX_EXPONENT_DIGITS) facts.hugeExponent ??= { field: member, number };
      member = undefined;
    } else if (c > 0x20) member = undefined;
  }
  return facts;
}

/** The line as a JSON object, or why it is not one (size, encoding, syntax, top-level type). */
export function parseObject(raw: Buffer, limits: EventLimits): { obj: Record<string, unknown>; text: string } | Rejected {
  if (raw.length > limits.maxEventBytes) {
    return reject('too_large', `event is ${raw.length} bytes, the limit is ${limits.maxEventBytes}`, {
      expected: `<= ${limits.maxEventBytes} bytes`,
      got: `${raw.length} bytes`,
    });
  }
  if (raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf) {
    return reject('byte_order_mark', 'line starts with a UTF-8 byte order mark; save the file as UTF-8 without BOM');
  }
  // Fast path first (native UTF-8 check, native decode, JSON.parse); the cheaper-to-explain
  // reasons for a failure are worked out only when it fails.
  if (!isUtf8(raw)) return hasControlByte(raw) ?? reject('invalid_utf8', 'line is not valid UTF-8');
  let parsed: unknown;
  const text = raw.toString('utf8');
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    if (isBlank(raw)) return reject('empty_line', 'empty line');
    const detail = err instanceof Error ? err.message : String(err);
    return hasControlByte(raw) ?? reject('invalid_json', `invalid JSON: ${detail}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return reject('not_an_object', `expected a JSON object, got ${describe(parsed)}`, {
      expected: 'object',
      got: describe(parsed),
    });
  }
  return { obj: parsed as Record<string, unknown>, text };
}

/** What the parsed value hides (inspectText): repeated names, lone surrogates, huge exponents. */
function textRejection(facts: TextFacts): Validation | undefined {
  if (facts.duplicate !== undefined) {
    const field = facts.duplicate;
    return reject('duplicate_field', `field ${JSON.stringify(field)} appears more than once; JSON readers disagree on which value counts`, {
      field,
    });
  }
  if (facts.loneSurrogate) {
    const { field, escape } = facts.loneSurrogate;
    return reject(
      'lone_surrogate',
      `${field === undefined ? 'a string' : `field ${JSON.stringify(field)}`} holds the escape ${escape}, half of a UTF-16 surrogate pair: no Unicode text can hold it alone`,
      { ...(field !== undefined ? { field } : {}), expected: 'a complete surrogate pair or the character itself', got: escape },
    );
  }
  if (facts.hugeExponent) {
    const { field, number } = facts.hugeExponent;
    const shown = number.length > 40 ? `${number.slice(0, 40)}…` : number;
    return reject(
      'number_out_of_range',
      `field ${JSON.stringify(field)}: the exponent of ${shown} has more than ${MAX_EXPONENT_DIGITS} digits`,
      {
        field,
        expected: `an exponent of at most ${MAX_EXPONENT_DIGITS} digits`,
        got: shown,
      },
    );
  }
  return undefined;
}

/** Every field name valid, every value a string, number or boolean (events are flat). */
function fieldRejection(obj: Record<string, unknown>, keys: readonly string[]): Validation | undefined {
  for (const key of keys) {
    if (!FIELD_NAME.test(key))
      return reject('invalid_field_name', `field name ${JSON.stringify(key)} must match ${FIELD_NAME.source}`, { field: key });
    const value = obj[key];
    if (value === null) {
      return reject('null_value', `field "${key}" is null; omit the field instead`, {
        field: key,
        expected: 'string, number or boolean',
        got: 'null',
      });
    }
    if (typeof value === 'object') {
      return reject('nested_value', `field "${key}" is ${describe(value)}; events are flat`, {
        field: key,
        expected: 'string, number or boolean',
        got: describe(value),
      });
    }
  }
  for (const field of ['id', 'type'] as const) {
    const value = obj[field];
    if (value === undefined) return reject('missing_field', `field "${field}" is missing`, { field, expected: 'non-empty string' });
    if (typeof value !== 'string') {
      return reject('wrong_type', `field "${field}" must be a string, got ${describe(value)}`, {
        field,
        expected: 'string',
        got: describe(value),
      });
    }
    if (value.trim() === '') return reject('empty_value', `field "${field}" is empty`, { field, expected: 'non-empty string', got: '""' });
  }
  return undefined;
}

/** The event time in epoch ms, or why `ts` is missing, malformed or out of range. */
function eventTimeOf(obj: Record<string, unknown>, limits: EventLimits, now: number): number | Rejected {
  if (obj.ts === undefined)
    return reject('missing_field', 'field "ts" is missing', { field: 'ts', expected: 'ISO-8601 string or epoch ms' });
  const time = parseEventTime(obj.ts);
  if (!time.ok) {
    return reject('invalid_ts', `field "ts" must be ${time.expected}, got ${describe(obj.ts)}`, {
      field: 'ts',
      expected: time.expected,
      got: describe(obj.ts),
    });
  }
  const latest = now + limits.maxFutureMs;
  if (time.ms < limits.minTs || time.ms > latest) {
    return reject(
      'ts_out_of_range',
      `field "ts" ${isoOrNumber(time.ms)} is outside the accepted range ${isoOrNumber(limits.minTs)} .. ${isoOrNumber(latest)}`,
      {
        field: 'ts',
        expected: 'a sane event time',
        got: describe(obj.ts),
      },
    );
  }
  return time.ms;
}

/**
 * Validates one raw line (without its line terminator), in the order a user fixes a producer:
 * the line (size, encoding, JSON object), what the text hides, the fields, then the event time.
 * `now` is injectable for tests.
 */
export function validateEventLine(raw: Buffer, limits: EventLimits = DEFAULT_EVENT_LIMITS, now: number = Date.now()): Validation {
  const parsed = parseObject(raw, limits);
  if ('ok' in parsed) return parsed;
  const { obj, text } = parsed;
  const keys = Object.keys(obj);
  if (keys.length > limits.maxFields) return reject('too_many_fields', `event has ${keys.length} fields, the limit is ${limits.maxFields}`);
  const facts = inspectText(text);
  const refused = textRejection(facts) ?? fieldRejection(obj, keys);
  if (refused) return refused;
  const ts = eventTimeOf(obj, limits, now);
  if (typeof ts !== 'number') return ts;
  return {
    ok: true,
    event: {
      id: obj.id as string,
      type: obj.type as string,
      ts,
      fields: obj as Record<string, AttributeValue>,
      numberSources: facts.numbers,
    },
  };
}

/**
 * Parses an event that has already been validated at ingest (read back from the log). The log
 * only holds validated events, so a failure here means a foreign producer wrote to the topic:
 * callers send it to the dead-letter topic like any other bad input.
 */
export function decodeLoggedEvent(value: Buffer | null, limits?: EventLimits): Validation {
  if (value === null) return reject('empty_line', 'record has no value (tombstone)');
  // Events already in the log are history: their timestamps are not re-checked against the
  // clock, which would reject a legitimate replay of last year's events.
  // 8.64e15 ms is the latest instant a Date can hold: beyond it formatting a message would throw.
  const now = Date.now();
  return validateEventLine(value, { ...(limits ?? DEFAULT_EVENT_LIMITS), minTs: -8.64e15, maxFutureMs: 8.64e15 - now }, now);
}

// ---------------------------------------------------------------- readable objects and mapped shapes

/** What `inspectDocument` found in a JSON text at any depth. */
interface DocumentFacts {
  /** The first name repeated within one object, with the path of that object. */
  duplicate?: { path: string; name: string };
  loneSurrogate?: { path: string; escape: string };
  hugeExponent?: { path: string; number: string };
  /** The source text of each number found at one of the wanted paths (keyed by JSON of its names). */
  numbers: Map<string, string>;
}

function displayPath(names: readonly (string | null)[]): string {
  return names.map((n) => (n === null ? '[]' : n)).join('.') || '(top level)';
}

/**
 * One pass over a JSON text (valid JSON holding an object) for what the parsed value hides, at
 * every depth: a name repeated within one object (JSON.parse keeps the last value, DuckDB the
 * first), an escaped half of a surrogate pair (DuckDB refuses the whole document), an exponent
 * beyond what both engines compute exactly; and the source text of the numbers at `wanted` paths
 * (JSON of their names: JSON.parse rounds numbers to doubles). Inside arrays no path is wanted
 * (arrays are never walked), which the null name on the stack says.
 */
function inspectDocument(text: string, wanted: ReadonlySet<string>): DocumentFacts {
  const facts: DocumentFacts = { numbers: new Map() };
  /** Per open container: the names seen (objects) or null (arrays). */
  const seen: (Set<string> | null)[] = [];
  /** The path to the value being read: one name per open object, null per open array. */
  const path: (string | null)[] = [];
  let lastString = '';
  /** True right after a member's colon: the next value belongs to the name on top of `path`. */
  let afterColon = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x22) break;
        if (d !== 0x5c) continue;
        i++;
        if (text.charCodeAt(i) !== 0x75 || facts.loneSurrogate) continue;
        const unit = hexAt(text, i + 1);
        const lone =
          (unit >= 0xd800 &&
            unit <= 0xdbff &&
            !(text.charCodeAt(i + 5) === 0x5c && text.charCodeAt(i + 6) === 0x75 && isLow(hexAt(text, i + 7)))) ||
          (unit >= 0xdc00 && unit <= 0xdfff);
        if (unit >= 0xd800 && unit <= 0xdbff && !lone) i += 6;
        else if (lone) facts.loneSurrogate = { path: displayPath(path), escape: text.slice(i - 1, i + 5) };
        i += 4;
      }
      lastString = text.slice(start, i + 1);
      afterColon = false;
    } else if (c === 0x3a) {
      // A member's name: the last string read, in the innermost (object) container.
      const name = lastString.includes('\\') ? (JSON.parse(lastString) as string) : lastString.slice(1, -1);
      const names = seen[seen.length - 1]!;
      if (names.has(name)) facts.duplicate ??= { path: displayPath(path.slice(0, -1)), name };
      names.add(name);
      path[path.length - 1] = name;
      afterColon = true;
    } else if (c === 0x7b || c === 0x5b) {
      seen.push(c === 0x7b ? new Set() : null);
      path.push(null);
      afterColon = false;
    } else if (c === 0x7d || c === 0x5d) {
      seen.pop();
      path.pop();
    } else if (c === 0x2c) {
      if (seen[seen.length - 1] !== null) path[path.length - 1] = null;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      while (i + 1 < text.length && isNumberChar(text.charCodeAt(i + 1))) i++;
      const number = text.slice(start, i + 1);
      const e = number.length > MAX_EXPONENT_DIGITS ? /[eE][+-]?0*([0-9]*)$/.exec(number) : null;
      if (e && e[1]!.length > MAX_EXPONENT_DIGITS) facts.hugeExponent ??= { path: displayPath(path), number };
      if (afterColon && !path.includes(null)) {
        const key = JSON.stringify(path);
        if (wanted.has(key)) facts.numbers.set(key, number);
      }
      afterColon = false;
    } else if (c > 0x20) afterColon = false;
  }
  return facts;
}

/** A character of JSON number text: digits, sign, point, exponent. */
function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

function isLow(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/** What inspectDocument found that makes a JSON object unreadable (the same codes as the flat model's). */
function structuralRejection(facts: DocumentFacts): Rejected | undefined {
  if (facts.duplicate !== undefined) {
    const { path, name } = facts.duplicate;
    const field = path === '(top level)' ? name : `${path}.${name}`;
    return reject('duplicate_field', `field ${JSON.stringify(field)} appears more than once; JSON readers disagree on which value counts`, {
      field,
    });
  }
  if (facts.loneSurrogate) {
    const { path, escape } = facts.loneSurrogate;
    return reject(
      'lone_surrogate',
      `${path} holds the escape ${escape}, half of a UTF-16 surrogate pair: no Unicode text can hold it alone`,
      {
        field: path,
        expected: 'a complete surrogate pair or the character itself',
        got: escape,
      },
    );
  }
  if (facts.hugeExponent) {
    const { path, number } = facts.hugeExponent;
    const shown = number.length > 40 ? `${number.slice(0, 40)}…` : number;
    return reject('number_out_of_range', `${path}: the exponent of ${shown} has more than ${MAX_EXPONENT_DIGITS} digits`, {
      field: path,
      expected: `an exponent of at most ${MAX_EXPONENT_DIGITS} digits`,
      got: shown,
    });
  }
  return undefined;
}

/**
 * Whether a record is a readable JSON object (see the top of this file): what the lake keeps,
 * whatever the mapping. Null when it is, else why not.
 */
export function readableObject(value: Buffer | null, maxEventBytes: number = DEFAULT_EVENT_LIMITS.maxEventBytes): Rejection | null {
  if (value === null) return { code: 'empty_line', message: 'record has no value (tombstone)' };
  const parsed = parseObject(value, { ...DEFAULT_EVENT_LIMITS, maxEventBytes });
  if ('ok' in parsed) return parsed.rejection;
  return structuralRejection(inspectDocument(parsed.text, new Set()))?.rejection ?? null;
}

/** The range of event times and the size a record is checked against. */
export interface RecordLimits {
  maxEventBytes: number;
  minTs: number;
  maxTs: number;
  /** The clock the range was computed from (ingest: messages say the range from it). */
  now?: number;
}

/** Limits for records read back from the log: history, so no clock check (as decodeLoggedEvent). */
export const LOGGED_RECORD_LIMITS: RecordLimits = {
  maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes,
  minTs: -MAX_EVENT_TIME_MS,
  maxTs: MAX_EVENT_TIME_MS,
};

/** A record the mapping makes an event of: what every layer reads of it. */
export interface MappedEvent {
  /** The id's bytes: the UTF-8 of a path's text (a number's canonical text), or the record key. */
  idBytes: Buffer;
  /** Event time, epoch ms. */
  ts: number;
  /** The mapped type's text, undefined when the mapping has none. */
  type: string | undefined;
  /** The values of the wanted fields the event has (by the field's text). */
  values: Record<string, FieldValue>;
}

export type MappedValidation = { ok: true; event: MappedEvent } | { ok: false; rejection: Rejection };

/** A metric field the caller reads: its text (the key of `values`) and the names of its path. */
export interface WantedField {
  readonly field: string;
  readonly names: readonly string[];
}

/** A walked value as the metric engines read it (undefined: missing, null, an object or an array). */
function fieldValueOf(v: unknown, numbers: Map<string, string>, names: readonly string[]): FieldValue | undefined {
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return new JsonNumber(numbers.get(JSON.stringify(names)) ?? String(v));
  return undefined;
}

/**
 * An id or a type at `path`: its text (a non-blank string, a number's canonical text), or why not.
 * `role` names it in messages (`event.id`).
 */
function identifierAt(obj: Record<string, unknown>, path: string, numbers: Map<string, string>, role: string): string | Rejected {
  const names = fieldNames(path, false);
  const v = valueAtPath(obj, names);
  if (v === undefined || v === null)
    return reject('missing_field', `missing ${path} (${role})${v === null ? ': it is null' : ''}`, {
      field: path,
      expected: 'a non-empty string or a number',
      ...(v === null ? { got: 'null' } : {}),
    });
  const value = fieldValueOf(v, numbers, names);
  const text = value === undefined ? undefined : identifierText(value);
  if (text !== undefined) return text;
  if (typeof v === 'string')
    return reject('empty_value', `${path} (${role}) is empty`, { field: path, expected: 'a non-empty string', got: describe(v) });
  return reject('wrong_type', `${path} (${role}) must be a string or a number, got ${describe(v)}`, {
    field: path,
    expected: 'a string or a number',
    got: describe(v),
  });
}

function outOfRange(field: string, ms: number, limits: RecordLimits, got: string): Rejected {
  return reject(
    'ts_out_of_range',
    `${field} ${Number.isFinite(ms) ? isoOrNumber(ms) : got} is outside the accepted range ${isoOrNumber(limits.minTs)} .. ${isoOrNumber(limits.maxTs)}`,
    { field, expected: 'a sane event time', got },
  );
}

/**
 * Validates one record under a mapped shape (`mapping.flat` false): a readable JSON object, then
 * the id, the type and the time where the mapping finds them, each refusal naming the path
 * (`missing meta.eventId`, `meta.occurredAt is not epoch-s`). `key` and `timestamp` are the
 * record's (null and -1: none, as at ingest from a file). Returns the values of `wanted` fields.
 */
export function validateMappedRecord(
  value: Buffer | null,
  key: Uint8Array | null,
  timestamp: number,
  mapping: EventMapping,
  limits: RecordLimits,
  wanted: readonly WantedField[],
): MappedValidation {
  if (value === null) return reject('empty_line', 'record has no value (tombstone)');
  const parsed = parseObject(value, { ...DEFAULT_EVENT_LIMITS, maxEventBytes: limits.maxEventBytes });
  if ('ok' in parsed) return parsed;
  const { obj, text } = parsed;
  const paths = new Set(wanted.map((w) => JSON.stringify(w.names)));
  for (const p of [mapping.id, mapping.time, mapping.type])
    if (p !== undefined && p !== RECORD_KEY && p !== RECORD_TIMESTAMP) paths.add(JSON.stringify(fieldNames(p, false)));
  const facts = inspectDocument(text, paths);
  const refused = structuralRejection(facts);
  if (refused) return refused;

  let idBytes: Buffer;
  if (mapping.id === RECORD_KEY) {
    if (key === null)
      return reject('missing_key', 'the record has no key, and event.id is $key', { field: RECORD_KEY, expected: 'a record key' });
    if (key.length === 0)
      return reject('empty_value', 'the record key is empty (event.id is $key)', { field: RECORD_KEY, expected: 'a non-empty key' });
    idBytes = Buffer.from(key.buffer, key.byteOffset, key.length);
  } else {
    const id = identifierAt(obj, mapping.id, facts.numbers, 'event.id');
    if (typeof id !== 'string') return id;
    idBytes = Buffer.from(id, 'utf8');
  }
  let type: string | undefined;
  if (mapping.type !== undefined) {
    const t = identifierAt(obj, mapping.type, facts.numbers, 'event.type');
    if (typeof t !== 'string') return t;
    type = t;
  }
  let ts: number;
  if (mapping.time === RECORD_TIMESTAMP) {
    if (!(timestamp >= 0))
      return reject('missing_timestamp', 'the record has no timestamp, and event.time is $timestamp', {
        field: RECORD_TIMESTAMP,
        expected: 'a record timestamp',
      });
    if (timestamp < limits.minTs || timestamp > limits.maxTs) return outOfRange(RECORD_TIMESTAMP, timestamp, limits, `${timestamp} ms`);
    ts = timestamp;
  } else {
    const names = fieldNames(mapping.time, false);
    const v = valueAtPath(obj, names);
    const path = mapping.time;
    if (v === undefined || v === null)
      return reject('missing_field', `missing ${path} (event.time)${v === null ? ': it is null' : ''}`, {
        field: path,
        expected: timeFormatExpected(mapping.timeFormat),
        ...(v === null ? { got: 'null' } : {}),
      });
    const fv = fieldValueOf(v, facts.numbers, names);
    ts = fv === undefined ? NaN : timeOfValue(fv, mapping.timeFormat);
    if (Number.isNaN(ts))
      return reject(
        'invalid_ts',
        `${path} is not ${mapping.timeFormat}: expected ${timeFormatExpected(mapping.timeFormat)}, got ${describe(v)}`,
        {
          field: path,
          expected: timeFormatExpected(mapping.timeFormat),
          got: describe(v),
        },
      );
    if (!(ts >= limits.minTs && ts <= limits.maxTs)) return outOfRange(path, ts, limits, describe(v));
  }
  const values: Record<string, FieldValue> = {};
  for (const w of wanted) {
    const fv = fieldValueOf(valueAtPath(obj, w.names), facts.numbers, w.names);
    if (fv !== undefined) values[w.field] = fv;
  }
  return { ok: true, event: { idBytes, ts, type, values } };
}
