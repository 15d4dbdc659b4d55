/**
 * The event model: one flat JSON object per line, validated at the edge of the platform.
 *
 * Every rejection carries a machine-readable `code` (counted per reason and used in dead
 * letters), and the field, what was expected and what was found, so that a user can fix the
 * producer without reading our code.
 */
import { isUtf8 } from 'node:buffer';
import { MAX_EXPONENT_DIGITS } from '../metrics/fieldSemantics.ts';
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
function parseObject(raw: Buffer, limits: EventLimits): { obj: Record<string, unknown>; text: string } | Rejected {
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
