// The scanner is a fast path of the validator, never a second definition of an event: whatever
// it accepts, validateEventLine accepts with the same id, event time and fields (values, types
// and order). Checked here on generated events, on hand-written edge cases and on many random
// byte-level mutations of both; and the generator's own events must all take the fast path (a
// regression there is a silent slowdown of every layer).
import { describe, expect, it } from 'vitest';
import { DEFAULT_EVENT_LIMITS, validateEventLine } from '../event.ts';
import { EventScanner, type ScanLimits } from '../eventScanner.ts';
import { generateEventLines, seededRandom } from '../../ingest/generator.ts';
import { BAD_INPUTS, NOW } from './badInputs.ts';

const LIMITS: ScanLimits = {
  maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes,
  minTs: DEFAULT_EVENT_LIMITS.minTs,
  maxTs: NOW + DEFAULT_EVENT_LIMITS.maxFutureMs,
};
const scanner = new EventScanner();

/** Scans `raw`; when the scanner accepts, the validator must agree on everything. Returns the scanner's verdict. */
function agree(raw: Buffer): boolean {
  const accepted = scanner.scan(raw, LIMITS);
  if (!accepted) return false;
  const v = validateEventLine(raw, DEFAULT_EVENT_LIMITS, NOW);
  if (!v.ok) expect.fail(`scanner accepted what the validator refuses (${v.rejection.code}): ${raw.toString('latin1')}`);
  const fields = scanner.allFields();
  expect(scanner.id, raw.toString()).toBe(v.event.id);
  expect(scanner.type, raw.toString()).toBe(v.event.type);
  expect(scanner.ts, raw.toString()).toBe(v.event.ts);
  expect(Object.keys(fields), raw.toString()).toEqual(Object.keys(v.event.fields));
  for (const [k, value] of Object.entries(v.event.fields)) expect(Object.is(fields[k], value), `${k} in ${raw.toString()}`).toBe(true);
  // The id's bytes are its UTF-8 text (what ingest uses as the record key and the speed layer hashes).
  const id = raw.subarray(scanner.starts[scanner.idIndex], scanner.ends[scanner.idIndex]);
  expect(id.equals(Buffer.from(v.event.id, 'utf8'))).toBe(true);
  return true;
}

const at = (s: string) => Buffer.from(s);
const ev = (body: string) => at(`{"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z"${body}}`);

describe('event scanner', () => {
  it('takes the fast path for every generated event, with the validator’s values', () => {
    let n = 0;
    for (const line of generateEventLines({ seed: 5, count: 5000, startTime: NOW - 3_600_000 })) {
      expect(agree(at(line)), line).toBe(true);
      n++;
    }
    expect(n).toBeGreaterThan(5000); // duplicates come on top
  });

  it('accepts the plain forms it is built for, with exact values', () => {
    const accepted = [
      ev(''),
      ev(',"cost":0'),
      ev(',"cost":-0'),
      ev(',"cost":-12.50e-3'),
      ev(',"cost":1E+21'),
      ev(',"cost":123456789012345678901234567890'),
      ev(',"ok":true,"no":false'),
      ev(',"name":"Zoë ☕ 日本"'),
      ev(',"a.b-c_d":"x","_x":"y"'),
      ev(',"empty":""'),
      ev(',"sp":"  "'),
      at('{ "id" : "e1" ,\t"type":"click" , "ts" : 1763719200000 }'),
      at('{"ts":"2026-11-21T10:00:00.000Z","type":"click","id":"ü"}'),
      at('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00+02:00"}'),
      at('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00Z"}'),
      at('{"id":"e1","type":"click","ts":"2026-11-21 10:00:00.123456789Z"}'),
      at('{"id":"e1","type":"click","ts":1.7637192e12}'),
      at('{"id":"e1","type":"click","ts":"2024-02-29T00:00:00.000Z"}'),
      at(`{"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z","${'n'.repeat(128)}":1}`),
    ];
    for (const raw of accepted) expect(agree(raw), raw.toString()).toBe(true);
  });

  it('leaves everything unusual to the validator', () => {
    const refused = [
      ev(',"esc":"a\\"b"'), // escapes
      ev(',"esc":"\\u0041"'),
      at('{"id":"e\\u0031","type":"click","ts":"2026-11-21T10:00:00.000Z"}'),
      ev(',"n":null'),
      ev(',"o":{}'),
      ev(',"a":[]'),
      ev(',"id":"dup"'), // duplicate name: JSON.parse keeps the last
      ev(',"__proto__":"x"'),
      ev(`,"${'n'.repeat(129)}":1`),
      ev(',"9lives":1'),
      ev(',"bad name":1'),
      ev(',"cost":01'),
      ev(',"cost":1.'),
      ev(',"cost":.5'),
      ev(',"cost":+1'),
      ev(',"cost":1e'),
      ev(',"cost":NaN'),
      ev(',"cost":tru'),
      ev(',"cost":truex'),
      ev(','),
      at(' {"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z"}'),
      at('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z"} '),
      at('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z"}\n'),
      at('{\n"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z"}'),
      at('{"id":" ","type":"click","ts":"2026-11-21T10:00:00.000Z"}'),
      at('{"id":"e1","type":"","ts":"2026-11-21T10:00:00.000Z"}'),
      at('{"id":"\u00a0","type":"click","ts":"2026-11-21T10:00:00.000Z"}'), // trim() removes NBSP
      at('{"id":7,"type":"click","ts":"2026-11-21T10:00:00.000Z"}'),
      at('{"type":"click","ts":"2026-11-21T10:00:00.000Z"}'),
      at('{"id":"e1","type":"click","ts":"2026-02-29T00:00:00.000Z"}'),
      at('{"id":"e1","type":"click","ts":"0099-01-01T00:00:00.000Z"}'),
      at('{"id":"e1","type":"click","ts":1.5}'),
      at('{"id":"e1","type":"click","ts":true}'),
      at('{"id":"e1","type":"click","ts":0}'), // before minTs
      at('{"id":"e1","type":"click","ts":"2999-01-01T00:00:00.000Z"}'), // after now + maxFuture
      at('{}'),
      at('{"id":"e1"'),
      at('{"id":"e1","type":"click","ts":"2026-11-21T10:00:00.000Z"'),
      at('{"id":"e1","type":"cl'),
      Buffer.concat([at('{"id":"'), Buffer.from([0xc3, 0x28]), at('","type":"a","ts":1763719200000}')]),
      Buffer.concat([at('{"id":"'), Buffer.from([0xed, 0xa0, 0x80]), at('","type":"a","ts":1763719200000}')]), // a UTF-8 surrogate
      Buffer.concat([at('{"id":"a'), Buffer.from([0x01]), at('","type":"a","ts":1763719200000}')]),
      ...BAD_INPUTS.map((b) => b.raw),
    ];
    for (const raw of refused) expect(agree(raw), raw.toString()).toBe(false);
    const many = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`f${i}`, i]));
    expect(agree(at(JSON.stringify({ id: 'e1', type: 'click', ts: '2026-11-21T10:00:00.000Z', ...many })))).toBe(false);
  });

  it('never accepts what the validator refuses, over random byte-level mutations', () => {
    const rand = seededRandom(77);
    const seeds = [
      ...[...generateEventLines({ seed: 6, count: 400, startTime: NOW - 3_600_000 })].map(at),
      ev(',"cost":-12.5e-3,"ok":true,"name":"Zoë ☕"'),
      at('{ "id" : "e1" ,\t"type":"click" , "ts" : 1763719200000 }'),
    ];
    const alphabet = Buffer.from('{}[]":,.-+eE0123456789 \t\r\\utrfalsn_aZ\u00e9');
    let accepted = 0;
    let total = 0;
    for (const seed of seeds) {
      for (let m = 0; m < 60; m++) {
        const bytes = [...seed];
        const edits = 1 + Math.floor(rand() * 3);
        for (let e = 0; e < edits; e++) {
          const pos = Math.floor(rand() * (bytes.length + 1));
          const r = rand();
          const b = rand() < 0.15 ? Math.floor(rand() * 256) : alphabet[Math.floor(rand() * alphabet.length)]!;
          if (r < 0.4) bytes.splice(pos, 1);
          else if (r < 0.7) bytes.splice(pos, 0, b);
          else bytes[Math.min(pos, bytes.length - 1)] = b;
        }
        if (agree(Buffer.from(bytes))) accepted++;
        total++;
      }
    }
    // Most mutations break the event; enough survive for the agreement check to mean something.
    expect(total).toBe(seeds.length * 60);
    expect(accepted).toBeGreaterThan(total / 10);
  });
});
