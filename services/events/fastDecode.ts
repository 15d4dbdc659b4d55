/**
 * Decoding events read back from the log (the speed layer and the lake writer). The log holds
 * events validated at ingest, so almost every record takes the scanner's fast path
 * (eventScanner.ts); anything the scanner cannot decide alone goes to `decodeLoggedEvent`
 * itself, so the two can never disagree on what is an event or why a record is not one.
 * `__tests__/fastDecode.spec.ts` and `__tests__/eventScanner.spec.ts` compare them.
 */
import { decodeLoggedEvent, type AttributeValue, type Rejection, type Validation } from './event.ts';
import { EventScanner, LOGGED_EVENT_SCAN_LIMITS } from './eventScanner.ts';

export interface DecodedEvent {
  id: string;
  ts: number;
  fields: Record<string, AttributeValue>;
  /** The record's text (the lake keeps it as the raw column). */
  text: string;
}

/** `decodeLoggedEvent`'s verdict, as a decoded event or the rejection that says why. */
export function decodeWithValidator(value: Buffer | null): DecodedEvent | Rejection {
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

const scanner = new EventScanner();

/** The event (every field), or the rejection that says why the record is not one. */
export function decodeLogRecord(value: Buffer | null): DecodedEvent | Rejection {
  if (value !== null && scanner.scan(value, LOGGED_EVENT_SCAN_LIMITS))
    return { id: scanner.id, ts: scanner.ts, fields: scanner.allFields(), text: value.toString('utf8') };
  return decodeWithValidator(value);
}
