/**
 * JSON records: the scanner's verdict where it decides (exactly the validator's), the
 * validator's otherwise, so only a record the scanner cannot decide pays for JSON.parse.
 * - the flat model: eventScanner.ts, then event.ts `validateEventLine`;
 * - a mapped shape: pathScanner.ts (compiled from the mapping's paths and the metric fields),
 *   then event.ts `validateMappedRecord`.
 * `__tests__/eventScanner.spec.ts`, `__tests__/pathScanner.spec.ts` and the differential test
 * (services/metrics/__tests__/fieldSemantics.differential.spec.ts) compare the fast paths with the
 * validators.
 */
import {
  JsonNumber,
  RECORD_KEY,
  RECORD_TIMESTAMP,
  eventTimeOf,
  fieldNames,
  fieldValuesOf,
  idBytesAreText,
  idText,
  type EventMapping,
  type FieldValue,
} from '../../metrics/fieldSemantics.ts';
import {
  DEFAULT_EVENT_LIMITS,
  readableObject,
  validateEventLine,
  validateMappedRecord,
  type RecordLimits,
  type Rejection,
} from '../event.ts';
import { EventScanner, isoMillisAt } from '../eventScanner.ts';
import { KIND_NUMBER, KIND_STRING, PathScanner, epochMillisAt } from '../pathScanner.ts';
import type { EventDecoder } from './eventDecoder.ts';

const EMPTY = new Uint8Array(0);
const EPOCH_FORMATS = new Set(['epoch-ms', 'epoch-s', 'epoch-us']);
/** Milliseconds per unit of the epoch formats, as a power of ten (fieldSemantics.ts `scaledFloor`'s shift). */
const EPOCH_SHIFT: Partial<Record<string, number>> = { 'epoch-ms': 0, 'epoch-s': 3, 'epoch-us': -3 };

export class JsonEventDecoder implements EventDecoder {
  ts = 0;
  idBuf: Uint8Array = EMPTY;
  idStart = 0;
  idEnd = 0;
  typeBuf: Uint8Array | null = null;
  typeStart = 0;
  typeEnd = 0;
  rejection: Rejection = { code: 'empty_line', message: 'nothing decoded yet' };

  private readonly flat: boolean;
  private readonly wanted: ReadonlySet<string>;
  private readonly wantedFields: { field: string; names: readonly string[] }[];
  private readonly scanner = new EventScanner();
  private readonly paths: PathScanner | undefined;
  /** Slots of the mapping's paths in `paths` (-1: not a path). */
  private readonly idSlot: number;
  /** The slot of each wanted field. */
  private readonly fieldSlots: number[] = [];
  private readonly timeSlot: number;
  private readonly typeSlot: number;
  /** Which path decided the last accepted record: the flat scanner, the path scanner, or the validator (read by tests and benchmarks). */
  via: 'flat' | 'paths' | 'validator' = 'validator';
  private slowType: string | undefined;
  private slowValues: Record<string, FieldValue> = {};
  private numberId: Buffer | undefined;
  private value: Buffer | null = null;
  private start = 0;
  private end = 0;
  private maxBytes = DEFAULT_EVENT_LIMITS.maxEventBytes;

  constructor(
    private readonly mapping: EventMapping,
    fields: readonly string[],
  ) {
    this.flat = mapping.flat;
    this.wanted = new Set(fields);
    this.wantedFields = fields.map((field) => ({ field, names: fieldNames(field, mapping.flat) }));
    if (this.flat) {
      this.paths = undefined;
      this.idSlot = this.timeSlot = this.typeSlot = -1;
      return;
    }
    // One slot per distinct path (a path the trie meets twice would keep only its last slot).
    const slots: (readonly string[])[] = [];
    const slotOfNames = (names: readonly string[]): number => {
      const k = slots.findIndex((s) => s.length === names.length && s.every((n, i) => n === names[i]));
      return k >= 0 ? k : slots.push(names) - 1;
    };
    this.fieldSlots = this.wantedFields.map((w) => slotOfNames(w.names));
    const slotOf = (path: string | undefined, special: string): number =>
      path === undefined || path === special ? -1 : slotOfNames(fieldNames(path, false));
    this.idSlot = slotOf(mapping.id, RECORD_KEY);
    this.timeSlot = slotOf(mapping.time, RECORD_TIMESTAMP);
    this.typeSlot = slotOf(mapping.type, '');
    this.paths = new PathScanner(slots);
  }

  decode(value: Buffer | null, start: number, end: number, key: Uint8Array | null, timestamp: number, limits: RecordLimits): boolean {
    this.value = value;
    this.start = start;
    this.end = end;
    this.maxBytes = limits.maxEventBytes;
    if (this.flat) {
      if (value !== null && this.scanner.scan(value, limits, start, end)) {
        const s = this.scanner;
        this.via = 'flat';
        this.ts = s.ts;
        this.idBuf = value;
        this.idStart = s.starts[s.idIndex]!;
        this.idEnd = s.ends[s.idIndex]!;
        this.typeBuf = value;
        this.typeStart = s.starts[s.typeIndex]!;
        this.typeEnd = s.ends[s.typeIndex]!;
        return true;
      }
      return this.validateFlat(limits);
    }
    if (value !== null && this.paths!.scan(value, limits.maxEventBytes, start, end) && this.resolveFast(key, timestamp, limits)) {
      this.via = 'paths';
      return true;
    }
    return this.validateMapped(key, timestamp, limits);
  }

  /** The mapping's id, time and type from the path scanner's slots, when they need no decoding; else false (the validator decides). */
  private resolveFast(key: Uint8Array | null, timestamp: number, limits: RecordLimits): boolean {
    const p = this.paths!;
    const m = this.mapping;
    // ---- id
    this.numberId = undefined;
    if (this.idSlot < 0) {
      if (key === null || key.length === 0) return false;
      this.idBuf = key;
      this.idStart = 0;
      this.idEnd = key.length;
    } else {
      const kind = p.kinds[this.idSlot];
      if (kind === KIND_STRING) {
        if (!p.hasNonBlank(this.idSlot)) return false;
        this.idBuf = p.buf;
        this.idStart = p.starts[this.idSlot]!;
        this.idEnd = p.ends[this.idSlot]!;
      } else if (kind === KIND_NUMBER) {
        this.numberId = Buffer.from(new JsonNumber(p.numberSourceAt(this.idSlot)).text, 'latin1');
        this.idBuf = this.numberId;
        this.idStart = 0;
        this.idEnd = this.numberId.length;
      } else return false;
    }
    // ---- type
    this.typeBuf = null;
    if (this.typeSlot >= 0) {
      const kind = p.kinds[this.typeSlot];
      if (kind === KIND_STRING) {
        if (!p.hasNonBlank(this.typeSlot)) return false;
        this.typeBuf = p.buf;
        this.typeStart = p.starts[this.typeSlot]!;
        this.typeEnd = p.ends[this.typeSlot]!;
      } else if (kind === KIND_NUMBER) this.setType(new JsonNumber(p.numberSourceAt(this.typeSlot)).text);
      else return false;
    }
    // ---- time
    let ts: number;
    if (this.timeSlot < 0) ts = timestamp >= 0 ? timestamp : NaN;
    else {
      const slot = this.timeSlot;
      const kind = p.kinds[slot];
      if (kind === KIND_STRING) {
        if (EPOCH_FORMATS.has(m.timeFormat)) ts = p.wide[slot] ? NaN : eventTimeOf(p.stringAt(slot), m.timeFormat);
        else {
          ts = isoMillisAt(p.buf, p.starts[slot]!, p.ends[slot]!);
          if (Number.isNaN(ts)) ts = eventTimeOf(p.stringAt(slot), m.timeFormat);
        }
      } else if (kind === KIND_NUMBER) {
        const shift = EPOCH_SHIFT[m.timeFormat];
        ts = shift === undefined ? NaN : epochMillisAt(p.buf, p.starts[slot]!, p.ends[slot]!, shift);
        if (Number.isNaN(ts)) ts = eventTimeOf(new JsonNumber(p.numberSourceAt(slot)), m.timeFormat);
      } else return false;
    }
    if (!(ts >= limits.minTs && ts <= limits.maxTs)) return false; // also NaN
    this.ts = ts;
    return true;
  }

  private validateFlat(limits: RecordLimits): boolean {
    const raw = this.slice();
    try {
      if (raw === null) {
        this.rejection = { code: 'empty_line', message: 'record has no value (tombstone)' };
        return false;
      }
      const now = limits.now ?? Date.now();
      const v = validateEventLine(
        raw,
        { ...DEFAULT_EVENT_LIMITS, maxEventBytes: limits.maxEventBytes, minTs: limits.minTs, maxFutureMs: limits.maxTs - now },
        now,
      );
      if (!v.ok) {
        this.rejection = v.rejection;
        return false;
      }
      this.via = 'validator';
      this.ts = v.event.ts;
      this.idBuf = Buffer.from(v.event.id, 'utf8');
      this.idStart = 0;
      this.idEnd = this.idBuf.length;
      this.setType(v.event.type);
      this.slowValues = fieldValuesOf(v.event.fields, v.event.numberSources, this.wanted);
      return true;
    } catch (err) {
      return this.validatorFailed(err);
    }
  }

  private validateMapped(key: Uint8Array | null, timestamp: number, limits: RecordLimits): boolean {
    try {
      const v = validateMappedRecord(this.slice(), key, timestamp, this.mapping, limits, this.wantedFields);
      if (!v.ok) {
        this.rejection = v.rejection;
        return false;
      }
      this.via = 'validator';
      this.ts = v.event.ts;
      this.idBuf = v.event.idBytes;
      this.idStart = 0;
      this.idEnd = v.event.idBytes.length;
      this.setType(v.event.type);
      this.slowValues = v.event.values;
      return true;
    } catch (err) {
      return this.validatorFailed(err);
    }
  }

  private setType(text: string | undefined): void {
    this.slowType = text;
    if (text === undefined) this.typeBuf = null;
    else {
      this.typeBuf = Buffer.from(text, 'utf8');
      this.typeStart = 0;
      this.typeEnd = this.typeBuf.length;
    }
  }

  /** A validator bug on some odd input must not stop a job: the record is refused with the error as its reason. */
  private validatorFailed(err: unknown): false {
    this.rejection = { code: 'invalid_ts', message: `the event could not be decoded: ${String(err)}` };
    return false;
  }

  private slice(): Buffer | null {
    const v = this.value;
    if (v === null) return null;
    return this.start === 0 && this.end === v.length ? v : v.subarray(this.start, this.end);
  }

  idText(): string {
    if (this.via === 'flat') return this.scanner.id;
    return idText(this.idBuf, this.idStart, this.idEnd);
  }

  idIsText(): boolean {
    return this.via === 'flat' || idBytesAreText(this.idBuf, this.idStart, this.idEnd);
  }

  typeText(): string | undefined {
    if (this.via === 'flat') return this.scanner.type;
    if (this.via === 'paths') {
      if (this.typeBuf === null) return undefined;
      return this.typeBuf === this.paths!.buf ? this.paths!.stringAt(this.typeSlot) : this.slowType;
    }
    return this.slowType;
  }

  fieldValues(): Record<string, FieldValue> {
    if (this.via === 'flat') return this.scanner.project(this.wanted);
    if (this.via === 'validator') return this.slowValues;
    const out: Record<string, FieldValue> = {};
    const p = this.paths!;
    for (let k = 0; k < this.wantedFields.length; k++) {
      const v = p.fieldValueAt(this.fieldSlots[k]!);
      if (v !== undefined) out[this.wantedFields[k]!.field] = v;
    }
    return out;
  }

  readable(): boolean {
    return readableObject(this.slice(), this.maxBytes) === null;
  }
}
