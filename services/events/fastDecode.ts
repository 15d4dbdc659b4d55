/**
 * Decoding events read back from the log, on the hot paths of the speed layer and the lake
 * writer. The log holds events validated at ingest, so almost every record is valid: this
 * checks exactly what `decodeLoggedEvent` checks, in the cheapest order (native UTF-8 check and JSON.parse first), and hands anything
 * unusual to `decodeLoggedEvent` itself, so the two can never disagree on what is an event.
 * The `__tests__/fastDecode.spec.ts` test compares them on valid and invalid inputs.
 */
import { isUtf8 } from 'node:buffer';
import { DEFAULT_EVENT_LIMITS, decodeLoggedEvent, type AttributeValue, type Rejection, type Validation } from './event.ts';
import { parseEventTime } from './eventTime.ts';

const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;
/** Field names already checked: events repeat the same few names (bounded; cleared when full). */
let knownNames = new Set<string>();

function validName(name: string): boolean {
  if (knownNames.has(name)) return true;
  if (!FIELD_NAME.test(name)) return false;
  if (knownNames.size >= 10_000) knownNames = new Set();
  knownNames.add(name);
  return true;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const digit = (s: string, i: number): number => s.charCodeAt(i) - 48;
const isDigits = (s: string, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
};

/**
 * `YYYY-MM-DDTHH:MM:SS.mmmZ` (what JSON producers and our generator write) without regex or
 * Date.parse; any other form, or an out-of-range part, returns NaN and the caller falls back to
 * `parseEventTime`, so the accepted set and the values are exactly parseEventTime's.
 */
export function parseIsoMillisUtc(s: string): number {
  if (
    s.length !== 24 ||
    s.charCodeAt(4) !== 45 ||
    s.charCodeAt(7) !== 45 ||
    s.charCodeAt(10) !== 84 ||
    s.charCodeAt(13) !== 58 ||
    s.charCodeAt(16) !== 58 ||
    s.charCodeAt(19) !== 46 ||
    s.charCodeAt(23) !== 90
  )
    return NaN;
  if (
    !isDigits(s, 0, 4) ||
    !isDigits(s, 5, 7) ||
    !isDigits(s, 8, 10) ||
    !isDigits(s, 11, 13) ||
    !isDigits(s, 14, 16) ||
    !isDigits(s, 17, 19) ||
    !isDigits(s, 20, 23)
  )
    return NaN;
  const year = digit(s, 0) * 1000 + digit(s, 1) * 100 + digit(s, 2) * 10 + digit(s, 3);
  const month = digit(s, 5) * 10 + digit(s, 6);
  const day = digit(s, 8) * 10 + digit(s, 9);
  const hour = digit(s, 11) * 10 + digit(s, 12);
  const minute = digit(s, 14) * 10 + digit(s, 15);
  const second = digit(s, 17) * 10 + digit(s, 18);
  const millis = digit(s, 20) * 100 + digit(s, 21) * 10 + digit(s, 22);
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return NaN;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!)) return NaN;
  return Date.UTC(year, month - 1, day, hour, minute, second, millis);
}

export interface DecodedEvent {
  id: string;
  ts: number;
  fields: Record<string, AttributeValue>;
  /** The record's text (already decoded for JSON.parse; the lake keeps it as the raw column). */
  text: string;
}

/** `decodeLoggedEvent`'s verdict, as a decoded event or the rejection that says why. */
function decodeSlow(value: Buffer | null): DecodedEvent | Rejection {
  let v: Validation;
  try {
    v = decodeLoggedEvent(value);
  } catch (err) {
    // A validator bug on some odd input must not stop a job: the record is refused with the
    // error as its reason.
    return { code: 'invalid_ts', message: `the event could not be decoded: ${String(err)}` };
  }
  return v.ok
    ? { id: v.event.id, ts: v.event.ts, fields: v.event.fields as Record<string, AttributeValue>, text: value!.toString('utf8') }
    : v.rejection;
}

/** The event, or undefined when the record is not a valid event. */
export function decodeEventFast(value: Buffer | null): DecodedEvent | undefined {
  const decoded = decodeLogRecord(value);
  return 'code' in decoded ? undefined : decoded;
}

/** The event, or the rejection that says why the record is not one (for dead letters). */
export function decodeLogRecord(value: Buffer | null): DecodedEvent | Rejection {
  if (value === null || value.length === 0 || value.length > DEFAULT_EVENT_LIMITS.maxEventBytes) return decodeSlow(value);
  // Line feeds are JSON whitespace but not allowed in an event line; other control bytes make
  // JSON.parse fail; a BOM is refused by the validator.
  if (value[0] !== 0x7b || value.indexOf(0x0a) !== -1 || !isUtf8(value)) return decodeSlow(value);
  const text = value.toString('utf8');
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return decodeSlow(value);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return decodeSlow(value);
  let fields = 0;
  for (const k in obj) {
    const v = obj[k];
    if (v === null || typeof v === 'object' || !validName(k)) return decodeSlow(value);
    fields++;
  }
  if (fields > DEFAULT_EVENT_LIMITS.maxFields) return decodeSlow(value);
  const { id, type, ts } = obj;
  if (typeof id !== 'string' || typeof type !== 'string' || id.trim() === '' || type.trim() === '') return decodeSlow(value);
  let ms = typeof ts === 'string' ? parseIsoMillisUtc(ts) : NaN;
  if (Number.isNaN(ms)) {
    const time = parseEventTime(ts);
    if (!time.ok) return decodeSlow(value);
    ms = time.ms;
  }
  if (ms < 0) return decodeSlow(value);
  return { id, ts: ms, fields: obj as Record<string, AttributeValue>, text };
}
