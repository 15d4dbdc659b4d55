/**
 * The validator's verdict on an event read back from the log, for the records the scanner
 * (eventScanner.ts) leaves to it: the speed layer and the lake writer scan first and call this
 * only when the scanner cannot decide, so the two can never disagree on what is an event or why
 * a record is not one. `__tests__/fastDecode.spec.ts` and `__tests__/eventScanner.spec.ts`
 * compare the combination with `decodeLoggedEvent`.
 */
import { decodeLoggedEvent, type AttributeValue, type Rejection, type Validation } from './event.ts';

export interface DecodedEvent {
  id: string;
  ts: number;
  fields: Record<string, AttributeValue>;
  /** The source text of every number field (fieldSemantics.ts reads keys from it). */
  numberSources: Readonly<Record<string, string>>;
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
    ? {
        id: v.event.id,
        ts: v.event.ts,
        fields: v.event.fields as Record<string, AttributeValue>,
        numberSources: v.event.numberSources,
        text: value!.toString('utf8'),
      }
    : v.rejection;
}
