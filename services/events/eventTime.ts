/**
 * Event time (`ts`) parsing. Accepted forms:
 * - epoch milliseconds as a JSON integer;
 * - an ISO-8601 date-time with seconds and an explicit zone (`Z` or `±HH:MM`), optional fraction.
 * Anything else is rejected: `Date.parse` alone accepts too much (`"1"`, `"March 7"`), and a
 * wrongly guessed event time silently moves an event into another window.
 */

const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$/;

export type ParsedTime = { ok: true; ms: number } | { ok: false; expected: string };

export function parseEventTime(value: unknown): ParsedTime {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) {
      return { ok: false, expected: 'integer epoch milliseconds (got a fraction)' };
    }
    return { ok: true, ms: value };
  }
  if (typeof value === 'string') {
    const m = ISO_8601.exec(value);
    if (!m) return { ok: false, expected: 'ISO-8601 date-time with zone, e.g. 2026-11-21T10:15:00Z' };
    const ms = Date.parse(value.replace(' ', 'T'));
    if (Number.isNaN(ms)) return { ok: false, expected: 'a valid calendar date-time' };
    // Date.parse rolls 2026-02-30 over to March; refuse dates that do not exist.
    const [, y, mo, d] = m;
    const probe = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
    if (probe.getUTCMonth() !== Number(mo) - 1 || probe.getUTCDate() !== Number(d)) {
      return { ok: false, expected: 'a valid calendar date-time' };
    }
    return { ok: true, ms };
  }
  return { ok: false, expected: 'ISO-8601 string or epoch milliseconds' };
}
