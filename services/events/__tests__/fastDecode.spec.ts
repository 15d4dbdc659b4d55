/**
 * The hot-path decoder must accept exactly the events `decodeLoggedEvent` accepts, with the
 * same id, event time and fields; and the fast ISO-8601 parser must agree with parseEventTime.
 */
import { describe, expect, it } from 'vitest';
import { decodeLoggedEvent } from '../event.ts';
import { parseEventTime } from '../eventTime.ts';
import { generateEventLines, seededRandom } from '../../ingest/generator.ts';
import { decodeWithValidator } from '../fastDecode.ts';
import { EventScanner, KIND_NUMBER, LOGGED_EVENT_SCAN_LIMITS, isoMillisAt } from '../eventScanner.ts';

const SEED = 99;
const scanner = new EventScanner();

/** What the speed layer and the lake writer take a record for: the scanner's reading, else the validator's. */
function decodeLogRecord(raw: Buffer) {
  return scanner.scan(raw, LOGGED_EVENT_SCAN_LIMITS)
    ? { id: scanner.id, ts: scanner.ts, fields: scanner.allFields(), numberSources: scannedNumberSources(), text: raw.toString('utf8') }
    : decodeWithValidator(raw);
}

/** The source text of each number field the scanner found. */
function scannedNumberSources(): Record<string, string> {
  const out: Record<string, string> = {};
  for (let k = 0; k < scanner.count; k++) if (scanner.kinds[k] === KIND_NUMBER) out[scanner.names[k]!] = scanner.numberSourceAt(k);
  return out;
}

function agree(raw: Buffer): void {
  let slow: ReturnType<typeof decodeLoggedEvent>;
  try {
    slow = decodeLoggedEvent(raw);
  } catch {
    slow = { ok: false, rejection: { code: 'ts_out_of_range', message: 'decodeLoggedEvent threw' } };
  }
  // The dead-letter reason the lake writer records is decodeLoggedEvent's own.
  const verdict = decodeLogRecord(raw);
  if (!slow.ok) expect(verdict, raw.toString()).toEqual(slow.rejection);
  else
    expect(verdict, raw.toString()).toEqual({
      id: slow.event.id,
      ts: slow.event.ts,
      fields: slow.event.fields,
      numberSources: slow.event.numberSources,
      text: raw.toString('utf8'),
    });
}

describe(`fast decode agrees with decodeLoggedEvent (seed ${SEED})`, () => {
  it('on generated events and on mutations of them', () => {
    const rand = seededRandom(SEED);
    const lines = [...generateEventLines({ seed: SEED, count: 3000 })];
    const mutations = [
      (l: string) => l.replace('"id":"', '"id":" '),
      (l: string) => l.replace(/"id":"[^"]*"/, '"id":""'),
      (l: string) => l.replace(/"id":"[^"]*"/, '"id":7'),
      (l: string) => l.replace(/"type":"[^"]*",/, ''),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":"2026-02-30T00:00:00.000Z"'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":"2026-01-01T24:00:00.000Z"'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":"2028-02-29T23:59:59.999Z"'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":"2026-01-01T10:00:00+02:00"'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":1767225600123'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":-5'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":"1969-12-31T23:59:59.999Z"'),
      (l: string) => l.replace(/"ts":"[^"]*"/, '"ts":"2026-1-01T00:00:00.000Z"'),
      (l: string) => l.replace('{', '{"bad name":1,'),
      (l: string) => l.replace('{', '{"n":null,'),
      (l: string) => l.replace('{', '{"o":{"a":1},'),
      (l: string) => l.replace('{', '{\n'),
      (l: string) => l.replace('{', '\ufeff{'),
      (l: string) => `[${l}]`,
      (l: string) => l.slice(0, -3),
      (l: string) => l.replace('{', '{ '),
      (l: string) => l,
    ];
    for (const line of lines) {
      agree(Buffer.from(line));
      agree(Buffer.from(mutations[Math.floor(rand() * mutations.length)]!(line)));
    }
    agree(Buffer.from([0x7b, 0xff, 0x7d]));
  });

  it('parses ISO-8601 milliseconds exactly like parseEventTime', () => {
    const rand = seededRandom(SEED + 1);
    for (let i = 0; i < 20_000; i++) {
      const ms = Math.floor(rand() * 4_102_444_800_000);
      const text = new Date(ms).toISOString();
      expect(isoMillisAt(Buffer.from(text), 0, 24)).toBe(ms);
      const p = parseEventTime(text);
      expect(p.ok && p.ms).toBe(ms);
    }
    for (const bad of [
      '2026-02-29T00:00:00.000Z',
      '2026-13-01T00:00:00.000Z',
      '2026-01-01T23:60:00.000Z',
      '2026-01-01T00:00:00Z',
      '2026-01-01 00:00:00.000Z',
      '0099-01-01T00:00:00.000Z', // Date.UTC would read the year as 1999
      '1969-12-31T23:59:59.999Z',
    ]) {
      expect(isoMillisAt(Buffer.from(bad), 0, bad.length)).toBeNaN();
    }
  });
});
