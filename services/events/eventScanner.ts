/**
 * A single-pass byte scanner for event lines, the hot path of ingest, the speed layer and the
 * lake writer. It accepts only lines whose verdict it can decide alone, and is *exactly* the
 * validator there: every line it accepts, `validateEventLine` accepts too, with the same id,
 * event time and field values. Everything else (escapes, nested values, `null`, duplicate names,
 * a non-canonical time, anything odd) makes `scan` return false, and the caller asks the full
 * validator (services/events/event.ts), which decides and gives the reason. So there is one
 * definition of an event, and the scanner is only a faster way to reach the common verdict;
 * `__tests__/eventScanner.spec.ts` compares the two on generated, hand-written and random lines.
 *
 * Why not JSON.parse: an event's object, its strings and its numbers are all allocated, then
 * mostly thrown away (the speed layer reads 3-5 fields, the lake writer none). Here a scan
 * records where each field's value lies in the buffer (no allocation), and callers materialize
 * only the fields they read: 0.6-0.8 us per event instead of 2.1 us for JSON.parse alone
 * (`npm run bench:ingest` measures it beside the full validator).
 *
 * The fast path's grammar, a subset of JSON: `{` first, `}` last, members `"name":value`
 * separated by `,`, optional spaces/tabs/CRs between tokens; names of [A-Za-z_][A-Za-z0-9_.-]*
 * (up to 128 characters, which is the validator's rule, so no escape can occur in them); values
 * are strings without backslashes or control bytes, JSON numbers, `true` or `false`. Bytes of
 * 0x80 and above are allowed inside string values; the whole line must then pass the native
 * UTF-8 check.
 */
import { isUtf8 } from 'node:buffer';
import { JsonNumber, MAX_EXPONENT_DIGITS, type FieldValue } from '../metrics/fieldSemantics.ts';
import { DEFAULT_EVENT_LIMITS, type AttributeValue } from './event.ts';
import { parseEventTime } from './eventTime.ts';

export const KIND_STRING = 1;
export const KIND_NUMBER = 2;
export const KIND_TRUE = 3;
export const KIND_FALSE = 4;

/** Above this many fields the duplicate-name check would be quadratic: the validator decides. */
const MAX_FAST_FIELDS = 48;
const MAX_NAME_LENGTH = 128;

/** Interned field names: events repeat a few names, so a name is a lookup, not an allocation. */
const internedNames = new Map<number, string>();
const MAX_INTERNED_NAMES = 4096;

/** Character classes of field-name bytes: 1 = may start a name, 2 = may only continue one. */
const NAME_CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z_]/.test(ch)) NAME_CLASS[c] = 1;
  else if (/[0-9.-]/.test(ch)) NAME_CLASS[c] = 2;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Epoch ms of `YYYY-MM-DDTHH:MM:SS.mmmZ` at buf[start..start+24), or NaN for any other text.
 * Exactly `parseEventTime` on this form (Date.parse, and the calendar check it adds).
 */
export function isoMillisAt(buf: Uint8Array, start: number, end: number): number {
  if (
    end - start !== 24 ||
    buf[start + 4] !== 0x2d ||
    buf[start + 7] !== 0x2d ||
    buf[start + 10] !== 0x54 ||
    buf[start + 13] !== 0x3a ||
    buf[start + 16] !== 0x3a ||
    buf[start + 19] !== 0x2e ||
    buf[start + 23] !== 0x5a
  )
    return NaN;
  const year = digits(buf, start, 4);
  const month = digits(buf, start + 5, 2);
  const day = digits(buf, start + 8, 2);
  const hour = digits(buf, start + 11, 2);
  const minute = digits(buf, start + 14, 2);
  const second = digits(buf, start + 17, 2);
  const millis = digits(buf, start + 20, 3);
  // Years before 1970 take the validator's path: Date.UTC reads years 0-99 as 1900-1999, and
  // such an event time is rare enough not to need a fast path.
  if (year < 1970 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59) return NaN;
  if (second < 0 || second > 59 || millis < 0) return NaN;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (day > (month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!)) return NaN;
  return Date.UTC(year, month - 1, day, hour, minute, second, millis);
}

/** The decimal number of `count` digits at buf[at..], or -1e9 (negative whatever follows) for a non-digit. */
function digits(buf: Uint8Array, at: number, count: number): number {
  let v = 0;
  for (let k = 0; k < count; k++) {
    const d = buf[at + k]! - 0x30;
    if (d < 0 || d > 9) return -1e9;
    v = v * 10 + d;
  }
  return v;
}

/** Whether `text` (Latin-1) is exactly buf[start..end). */
function sameText(text: string, buf: Uint8Array, start: number, end: number): boolean {
  if (text.length !== end - start) return false;
  for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) !== buf[start + k]) return false;
  return true;
}

/** The event-time range a scan accepts (outside it, the validator decides and explains). */
export interface ScanLimits {
  maxEventBytes: number;
  minTs: number;
  maxTs: number;
}

/** Limits for events read back from the log (history: no clock check, as decodeLoggedEvent). */
export const LOGGED_EVENT_SCAN_LIMITS: ScanLimits = { maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes, minTs: 0, maxTs: 8.64e15 };

/**
 * One reusable scanner: `scan` fills it in place (no allocation per event) and the accessors
 * read the last scanned line. Not re-entrant: one scanner per consumer loop.
 */
export class EventScanner {
  /** Fields of the last accepted line, in line order. */
  count = 0;
  readonly names: string[] = new Array<string>(MAX_FAST_FIELDS);
  readonly kinds = new Uint8Array(MAX_FAST_FIELDS);
  /** String values: the bytes between the quotes; other values: the literal's bytes. */
  readonly starts = new Int32Array(MAX_FAST_FIELDS);
  readonly ends = new Int32Array(MAX_FAST_FIELDS);
  /** 1 when the string value holds bytes >= 0x80 (decoded as UTF-8, not Latin-1). */
  readonly wide = new Uint8Array(MAX_FAST_FIELDS);
  buf: Buffer = Buffer.alloc(0);
  /** Event time (epoch ms) of the last accepted line. */
  ts = 0;
  /** Field index of `id` (its bytes are the UTF-8 of the id: no escapes on the fast path). */
  idIndex = -1;
  typeIndex = -1;

  /**
   * Scans buf[from..to) as one event. True: the line is a valid event and the accessors
   * describe it (positions are indexes into `buf`). False: the scanner cannot decide alone; ask
   * the validator.
   */
  scan(buf: Buffer, limits: ScanLimits, from = 0, to = buf.length): boolean {
    const len = to;
    if (to - from < 2 || to - from > limits.maxEventBytes || buf[from] !== 0x7b) return false;
    this.buf = buf;
    let n = 0;
    let anyWide = false;
    let id = -1;
    let type = -1;
    let ts = -1;
    let i = from + 1;
    let c = buf[i]!;
    while (isWhitespace(c)) c = buf[++i]!;
    if (c === 0x7d) return false; // {} lacks id, type and ts: the validator says which
    for (;;) {
      // ---- name
      if (c !== 0x22 || n === MAX_FAST_FIELDS) return false;
      const nameStart = ++i;
      c = buf[i]!;
      if (NAME_CLASS[c] !== 1) return false;
      let h = c;
      c = buf[++i]!;
      while (NAME_CLASS[c]! > 0) {
        h = (Math.imul(h, 31) + c) | 0;
        c = buf[++i]!;
      }
      if (c !== 0x22) return false;
      const nameLength = i - nameStart;
      if (nameLength > MAX_NAME_LENGTH) return false;
      const name = this.internName(buf, nameStart, i, (Math.imul(h, 131) + nameLength) | 0);
      if (name === '__proto__') return false; // would not be a plain own property everywhere
      for (let k = 0; k < n; k++) if (this.names[k] === name) return false; // duplicate: JSON.parse keeps the last
      c = buf[++i]!;
      while (isWhitespace(c)) c = buf[++i]!;
      if (c !== 0x3a) return false;
      c = buf[++i]!;
      while (isWhitespace(c)) c = buf[++i]!;
      // ---- value
      let kind: number;
      let start: number;
      let end: number;
      let wide = 0;
      if (c === 0x22) {
        start = ++i;
        for (;;) {
          if (i >= len) return false;
          c = buf[i]!;
          if (c === 0x22) break;
          if (c === 0x5c || c < 0x20) return false; // escapes and control bytes: the validator decides
          if (c >= 0x80) wide = 1;
          i++;
        }
        end = i;
        kind = KIND_STRING;
        c = buf[++i]!;
      } else if (c === 0x2d || isDigit(c)) {
        start = i;
        if (c === 0x2d) c = buf[++i]!;
        if (c === 0x30) c = buf[++i]!;
        else if (isDigit(c)) {
          while (isDigit(c)) c = buf[++i]!;
        } else return false;
        if (c === 0x2e) {
          c = buf[++i]!;
          if (!isDigit(c)) return false;
          while (isDigit(c)) c = buf[++i]!;
        }
        if (c === 0x65 || c === 0x45) {
          c = buf[++i]!;
          if (c === 0x2b || c === 0x2d) c = buf[++i]!;
          if (!isDigit(c)) return false;
          const exponentStart = i;
          while (isDigit(c)) c = buf[++i]!;
          // A long exponent may still be small (leading zeros): the validator decides.
          if (i - exponentStart > MAX_EXPONENT_DIGITS) return false;
        }
        end = i;
        kind = KIND_NUMBER;
      } else if (c === 0x74 && buf[i + 1] === 0x72 && buf[i + 2] === 0x75 && buf[i + 3] === 0x65) {
        start = i;
        i += 4;
        end = i;
        kind = KIND_TRUE;
        c = buf[i]!;
      } else if (c === 0x66 && buf[i + 1] === 0x61 && buf[i + 2] === 0x6c && buf[i + 3] === 0x73 && buf[i + 4] === 0x65) {
        start = i;
        i += 5;
        end = i;
        kind = KIND_FALSE;
        c = buf[i]!;
      } else return false; // null, objects, arrays, garbage: rejections the validator explains
      this.names[n] = name;
      this.kinds[n] = kind;
      this.starts[n] = start;
      this.ends[n] = end;
      this.wide[n] = wide;
      if (wide) anyWide = true;
      if (name === 'id') id = n;
      else if (name === 'type') type = n;
      else if (name === 'ts') ts = n;
      n++;
      // ---- separator
      while (isWhitespace(c)) c = buf[++i]!;
      if (c === 0x2c) {
        c = buf[++i]!;
        while (isWhitespace(c)) c = buf[++i]!;
        continue;
      }
      if (c !== 0x7d) return false;
      break;
    }
    // Nothing may follow the closing brace (trailing whitespace: the validator decides).
    if (i !== len - 1) return false;
    if (id < 0 || type < 0 || ts < 0) return false;
    if (this.kinds[id] !== KIND_STRING || this.kinds[type] !== KIND_STRING) return false;
    if (!this.hasNonSpace(id) || !this.hasNonSpace(type)) return false;
    if (anyWide && !isUtf8(from === 0 && to === buf.length ? buf : buf.subarray(from, to))) return false;
    const ms = this.eventTime(ts);
    if (!(ms >= limits.minTs && ms <= limits.maxTs)) return false; // also NaN
    this.count = n;
    this.ts = ms;
    this.idIndex = id;
    this.typeIndex = type;
    return true;
  }

  private internName(buf: Buffer, start: number, end: number, hash: number): string {
    const cached = internedNames.get(hash);
    if (cached !== undefined && sameText(cached, buf, start, end)) return cached;
    const name = buf.toString('latin1', start, end);
    if (cached === undefined && internedNames.size < MAX_INTERNED_NAMES) internedNames.set(hash, name);
    return name;
  }

  /** `value.trim() !== ''` of a string field, decided on its bytes when they are ASCII. */
  private hasNonSpace(field: number): boolean {
    if (this.wide[field]) return this.stringAt(field).trim() !== '';
    const buf = this.buf;
    for (let k = this.starts[field]!; k < this.ends[field]!; k++) if (buf[k] !== 0x20) return true;
    return false;
  }

  /** The event time of the `ts` field, exactly as `parseEventTime` reads it (NaN: refused). */
  private eventTime(field: number): number {
    const kind = this.kinds[field];
    if (kind === KIND_STRING) {
      const fast = isoMillisAt(this.buf, this.starts[field]!, this.ends[field]!);
      if (!Number.isNaN(fast)) return fast;
      const parsed = parseEventTime(this.stringAt(field));
      return parsed.ok ? parsed.ms : NaN;
    }
    if (kind === KIND_NUMBER) {
      const parsed = parseEventTime(this.numberAt(field));
      return parsed.ok ? parsed.ms : NaN;
    }
    return NaN;
  }

  stringAt(field: number): string {
    const s = this.starts[field]!;
    const e = this.ends[field]!;
    // Buffer's own slice decoders: toString(encoding, ...) dispatches on the encoding name first,
    // which costs as much again for the short values of an event.
    const buf = this.buf as Buffer & { latin1Slice(s: number, e: number): string; utf8Slice(s: number, e: number): string };
    return this.wide[field] ? buf.utf8Slice(s, e) : buf.latin1Slice(s, e);
  }

  numberAt(field: number): number {
    return Number(this.buf.toString('latin1', this.starts[field]!, this.ends[field]!));
  }

  /** The source text of number field `field` (ASCII: digits, sign, point, exponent). */
  numberSourceAt(field: number): string {
    return this.buf.toString('latin1', this.starts[field]!, this.ends[field]!);
  }

  /** The value of field `field` as the metric engines read it (numbers keep their source text). */
  fieldValueAt(field: number): FieldValue {
    switch (this.kinds[field]) {
      case KIND_STRING:
        return this.stringAt(field);
      case KIND_NUMBER:
        return new JsonNumber(this.numberSourceAt(field));
      case KIND_TRUE:
        return true;
      default:
        return false;
    }
  }

  /**
   * The fields named in `wanted` that the event has, as the metric engines read them (only
   * those: callers that read other fields must ask for them). Field order is the line's.
   */
  project(wanted: ReadonlySet<string>): Record<string, FieldValue> {
    const out: Record<string, FieldValue> = {};
    for (let k = 0; k < this.count; k++) {
      const name = this.names[k]!;
      if (wanted.has(name)) out[name] = this.fieldValueAt(k);
    }
    return out;
  }

  /** The value of field `field` as JSON.parse would give it. */
  valueAt(field: number): AttributeValue {
    switch (this.kinds[field]) {
      case KIND_STRING:
        return this.stringAt(field);
      case KIND_NUMBER:
        return this.numberAt(field);
      case KIND_TRUE:
        return true;
      default:
        return false;
    }
  }

  get id(): string {
    return this.stringAt(this.idIndex);
  }

  get type(): string {
    return this.stringAt(this.typeIndex);
  }

  /** Every field, as JSON.parse would give the object (for tests and rare callers). */
  allFields(): Record<string, AttributeValue> {
    const out: Record<string, AttributeValue> = {};
    for (let k = 0; k < this.count; k++) out[this.names[k]!] = this.valueAt(k);
    return out;
  }
}
