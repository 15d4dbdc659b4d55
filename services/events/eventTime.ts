/**
 * Event time (`ts`) of the flat model. Accepted forms:
 * - epoch milliseconds as a JSON number whose value is an integer;
 * - an ISO-8601 date-time with seconds and an explicit zone (`Z` or `±HH:MM`), optional fraction.
 * Anything else is rejected: `Date.parse` alone accepts too much (`"1"`, `"March 7"`), and a
 * wrongly guessed event time silently moves an event into another window. The rules, and the
 * other time formats a metric file's `event:` section may name, are stated once for both engines
 * in services/metrics/fieldSemantics.ts (`eventTimeOf`, `parseIsoTime`).
 */
import { ISO_8601, parseIsoTime } from '../metrics/fieldSemantics.ts';

export type ParsedTime = { ok: true; ms: number } | { ok: false; expected: string };

export function parseEventTime(value: unknown): ParsedTime {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      return { ok: false, expected: 'integer epoch milliseconds (got a fraction)' };
    }
    return { ok: true, ms: value };
  }
  if (typeof value === 'string') {
    if (!ISO_8601.test(value)) return { ok: false, expected: 'ISO-8601 date-time with zone, e.g. 2026-11-21T10:15:00Z' };
    const ms = parseIsoTime(value);
    if (Number.isNaN(ms)) return { ok: false, expected: 'a valid calendar date-time' };
    return { ok: true, ms };
  }
  return { ok: false, expected: 'ISO-8601 string or epoch milliseconds' };
}
