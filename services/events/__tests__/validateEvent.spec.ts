import { describe, expect, it } from 'vitest';
import { DEFAULT_EVENT_LIMITS, validateEventLine } from '../event.ts';
import { BAD_INPUTS, NOW, check, line } from './badInputs.ts';
import { parseEventTime } from '../eventTime.ts';
import { parseDuration } from '../../config/durations.ts';

describe('event validation', () => {
  it.each(BAD_INPUTS)('refuses $name as $code', ({ raw, code, field }) => {
    const result = check(raw);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.rejection.code).toBe(code);
    if (field !== undefined) expect(result.rejection.field).toBe(field);
    expect(result.rejection.message.length).toBeGreaterThan(5);
    expect(result.rejection.message).not.toContain('\n');
  });

  it('covers at least 20 distinct kinds of bad input', () => {
    expect(new Set(BAD_INPUTS.map((b) => b.name)).size).toBeGreaterThanOrEqual(20);
  });

  it('says what was expected and what it got', () => {
    const result = check(line({ id: 42 }));
    expect(result).toMatchObject({ ok: false, rejection: { field: 'id', expected: 'string', got: 'number 42' } });
  });

  it('accepts ISO-8601 and epoch milliseconds, keeping every field', () => {
    const iso = check(line({ campaign_id: 'c1', cost: 1.25, paid: true }));
    expect(iso).toMatchObject({ ok: true, event: { id: 'e1', type: 'click', ts: Date.UTC(2026, 10, 21, 10) } });
    if (iso.ok) expect(iso.event.fields).toMatchObject({ campaign_id: 'c1', cost: 1.25, paid: true });
    const epoch = check(line({ ts: Date.UTC(2026, 10, 21, 10) }));
    expect(epoch).toMatchObject({ ok: true, event: { ts: Date.UTC(2026, 10, 21, 10) } });
    const offset = check(line({ ts: '2026-11-21T12:00:00+02:00' }));
    expect(offset).toMatchObject({ ok: true, event: { ts: Date.UTC(2026, 10, 21, 10) } });
  });

  it("accepts escaped surrogate pairs and long exponents that are small, and keeps every number's source text", () => {
    const v = check(
      '{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z","name":"\\ud83d\\ude00","big":9007199254740993,"e":1e000000000000000005}',
    );
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.event.fields.name).toBe('😀');
    expect(v.event.numberSources).toEqual({ big: '9007199254740993', e: '1e000000000000000005' });
  });

  it('accepts an event of exactly the size limit and refuses one byte more', () => {
    const pad = (n: number) => {
      const s = line({ p: '' });
      return line({ p: 'x'.repeat(n - Buffer.byteLength(s)) });
    };
    const limits = { ...DEFAULT_EVENT_LIMITS, maxEventBytes: 200 };
    expect(validateEventLine(Buffer.from(pad(200)), limits, NOW).ok).toBe(true);
    const over = validateEventLine(Buffer.from(pad(201)), limits, NOW);
    expect(over.ok ? undefined : over.rejection.code).toBe('too_large');
  });
});

describe('event time and durations', () => {
  it('parses durations and refuses others', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('10 minutes')).toBeUndefined();
    expect(parseDuration('-1s')).toBeUndefined();
  });
  it('refuses lenient date strings that Date.parse would accept', () => {
    expect(parseEventTime('March 7, 2026').ok).toBe(false);
    expect(parseEventTime('1').ok).toBe(false);
  });
});

describe('events read back from the log', () => {
  it('accepts any representable event time (history is replayed), and refuses the unrepresentable without throwing', async () => {
    const { decodeLoggedEvent } = await import('../event.ts');
    expect(decodeLoggedEvent(Buffer.from(line({ ts: 0 }))).ok).toBe(true);
    expect(decodeLoggedEvent(Buffer.from(line({ ts: -5 }))).ok).toBe(true);
    const beyond = decodeLoggedEvent(Buffer.from(line({ ts: 9e15 })));
    expect(beyond.ok ? undefined : beyond.rejection.code).toBe('ts_out_of_range');
  });
});
