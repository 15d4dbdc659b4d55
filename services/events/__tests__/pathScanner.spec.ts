/**
 * The path scanner is a fast path of the mapped validator, never a second definition of an
 * event: whatever the decoder accepts on it, `validateMappedRecord` accepts with the same id,
 * event time, type and field values, and what it leaves, the validator decides. Checked on
 * records of generated shapes (services/metrics/__tests__/shapeGenerators.ts), on random byte
 * mutations of them, and on hand-written edges; and a plain nested event must take the fast path
 * (a regression there is a silent slowdown of every layer). A failure prints the record and the
 * command that reruns its seed.
 */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../ingest/generator.ts';
import { fieldNames, scaledFloor, type EventMapping, type FieldValue } from '../../metrics/fieldSemantics.ts';
import { generateRecord, generateShape } from '../../metrics/__tests__/shapeGenerators.ts';
import { metricFieldsOf } from '../../metrics/definitions.ts';
import { JsonEventDecoder } from '../decoders/jsonDecoder.ts';
import { LOGGED_RECORD_LIMITS, validateMappedRecord } from '../event.ts';
import { epochMillisAt } from '../pathScanner.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 4242);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run services/events/__tests__/pathScanner.spec.ts`;

const text = (values: Record<string, FieldValue>) =>
  JSON.stringify(Object.entries(values).map(([k, v]) => [k, typeof v === 'object' ? `n:${v.source}` : v]));

/** Decodes with the decoder and with the validator alone; they must agree. Returns the decoder's path. */
const decoders = new Map<string, JsonEventDecoder>();

function agree(mapping: EventMapping, fields: string[], value: Buffer, key: Buffer | null, timestamp: number): string {
  const id = JSON.stringify([mapping, fields]);
  const d = decoders.get(id) ?? decoders.set(id, new JsonEventDecoder(mapping, fields)).get(id)!;
  const accepted = d.decode(value, 0, value.length, key, timestamp, LOGGED_RECORD_LIMITS);
  const v = validateMappedRecord(
    value,
    key,
    timestamp,
    mapping,
    LOGGED_RECORD_LIMITS,
    fields.map((f) => ({ field: f, names: fieldNames(f, false) })),
  );
  const where = `${JSON.stringify(value.toString('latin1'))} key ${key?.toString('hex') ?? 'null'} ts ${timestamp} mapping ${JSON.stringify(mapping)}\n${rerun}`;
  if (!v.ok) {
    expect(accepted, `decoder accepted what the validator refuses (${v.rejection.message}): ${where}`).toBe(false);
    expect(d.rejection, where).toEqual(v.rejection);
    return 'refused';
  }
  expect(accepted, `decoder refused (${d.rejection.message}) what the validator accepts: ${where}`).toBe(true);
  expect(Buffer.from(d.idBuf.subarray(d.idStart, d.idEnd)).equals(v.event.idBytes), where).toBe(true);
  expect(d.ts, where).toBe(v.event.ts);
  expect(d.typeText(), where).toBe(v.event.type);
  expect(text(d.fieldValues()), where).toBe(text(v.event.values));
  return d.via;
}

describe(`path scanner agrees with the mapped validator (seed ${SEED})`, () => {
  it('on records of generated shapes and on byte mutations of them', () => {
    const r = seededRandom(SEED);
    const paths = new Map<string, number>();
    for (let s = 0; s < 42; s++) {
      const shape = generateShape(r, s);
      if (shape.mapping.flat) continue;
      const fields = [...new Set(shape.metrics.flatMap(metricFieldsOf))];
      for (let i = 0; i < 120; i++) {
        const rec = generateRecord(r, shape);
        const via = agree(shape.mapping, fields, rec.value, rec.key, rec.timestamp);
        paths.set(via, (paths.get(via) ?? 0) + 1);
        // Byte mutations: a flipped, deleted or inserted byte, anywhere.
        for (let m = 0; m < 3; m++) {
          const b = Buffer.from(rec.value);
          const at = Math.floor(r() * b.length);
          const kind = r();
          const mutated =
            kind < 0.4
              ? (b.writeUInt8(Math.floor(r() * 256), at), b)
              : kind < 0.7
                ? Buffer.concat([b.subarray(0, at), b.subarray(at + 1)])
                : Buffer.concat([
                    b.subarray(0, at),
                    Buffer.from([[0x22, 0x7b, 0x7d, 0x5b, 0x2c, 0x3a, 0x5c, 0x30, 0x20, 0x0a][Math.floor(r() * 10)]!]),
                    b.subarray(at),
                  ]);
          agree(shape.mapping, fields, mutated, rec.key, rec.timestamp);
        }
      }
    }
    // Both paths and both verdicts were exercised.
    expect(paths.get('paths') ?? 0, JSON.stringify([...paths])).toBeGreaterThan(100);
    expect(paths.get('validator') ?? 0).toBeGreaterThan(100);
    expect(paths.get('refused') ?? 0).toBeGreaterThan(100);
  });

  const mapping: EventMapping = { flat: false, id: 'meta.eventId', time: 'meta.occurredAt', timeFormat: 'epoch-s', type: 'meta.kind' };
  const fields = ['payload.city', 'payload.fare', 'meta.kind'];
  const plain = (extra = '') =>
    `{"meta":{"eventId":"e1","occurredAt":1767225600.25,"kind":"trip_completed"},"payload":{"city":"Paris","fare":12.50,"tags":["a",{"b":[1,2.5e3,null,true]}]${extra}}}`;

  it('takes the fast path for plain nested events, with the validator’s values', () => {
    expect(agree(mapping, fields, Buffer.from(plain()), null, -1)).toBe('paths');
    expect(agree(mapping, fields, Buffer.from(plain(',"note":"caf\\u00e9 \\"q\\" \\n"')), null, -1)).toBe('paths');
    expect(agree(mapping, fields, Buffer.from(plain().replace('"Paris"', '"Zürich 日本"')), null, -1)).toBe('paths');
    expect(agree(mapping, fields, Buffer.from(plain().replaceAll(',', ' ,\n\t')), null, -1)).toBe('paths');
    const byKey: EventMapping = { flat: false, id: '$key', time: '$timestamp', timeFormat: 'epoch-ms' };
    expect(agree(byKey, fields, Buffer.from(plain()), Buffer.from([0xff, 0x00]), 1767225600000)).toBe('paths');
  });

  it('leaves the validator what it cannot decide alone, which then decides and explains', () => {
    const cases: [string, string][] = [
      [plain(',"city":"again"'), 'duplicate_field'],
      [plain(',"note":"\\ud800"'), 'lone_surrogate'],
      [plain(',"n":1e0000000000000001'), 'valid'],
      [plain(',"n":1e1234567890123456'), 'number_out_of_range'],
      [`${plain()} `, 'valid'],
      [plain(`,"deep":${'['.repeat(40)}1${']'.repeat(40)}`), 'valid'],
      [plain(`,${Array.from({ length: 70 }, (_, i) => `"m${i}":${i}`).join(',')}`), 'valid'],
      [plain().replace('"city"', '"\\u0063ity"'), 'valid'],
      [plain().replace('"Paris"', '"Par\\u00eds"'), 'valid'],
      [plain().replace('"e1"', '"  "'), 'empty_value'],
      [plain().replace('1767225600.25', '"soon"'), 'invalid_ts'],
      [plain().replace('1767225600.25', '1e400'), 'ts_out_of_range'],
      [plain().replace('"meta":{', '"meta":[').replace(',"kind":"trip_completed"}', ',"kind":"trip_completed"]'), 'invalid_json'],
      [plain().replace('{"eventId":"e1",', '{'), 'missing_field'],
    ];
    for (const [line, want] of cases) {
      const via = agree(mapping, fields, Buffer.from(line), null, -1);
      const d = new JsonEventDecoder(mapping, fields);
      const ok = d.decode(Buffer.from(line), 0, Buffer.byteLength(line), null, -1, LOGGED_RECORD_LIMITS);
      expect(ok ? 'valid' : d.rejection.code, line).toBe(want);
      if (ok) expect(via, line).toBe('validator');
    }
  });

  it('reads epoch numbers on their bytes exactly as scaledFloor does', () => {
    const r = seededRandom(SEED + 1);
    const wrong: string[] = [];
    let decided = 0;
    for (let i = 0; i < 50_000; i++) {
      const int = r() < 0.1 ? String(Math.floor(r() * 10)) : String(Math.floor(r() * 10 ** (1 + Math.floor(r() * 14))));
      const text = `${r() < 0.3 ? '-' : ''}${int}${r() < 0.6 ? `.${String(Math.floor(r() * 1e9)).padStart(1 + Math.floor(r() * 9), '0')}` : ''}`;
      for (const shift of [3, 0, -3]) {
        const fast = epochMillisAt(Buffer.from(text), 0, text.length, shift);
        if (Number.isNaN(fast)) continue;
        decided++;
        if (!Object.is(fast, scaledFloor(text, shift) + 0))
          wrong.push(`${text} shift ${shift}: ${fast}, scaledFloor ${scaledFloor(text, shift)}`);
      }
    }
    expect(wrong.slice(0, 5), rerun).toEqual([]);
    expect(decided).toBeGreaterThan(100_000);
  });

  it('names the path that failed', () => {
    const d = new JsonEventDecoder(mapping, fields);
    const refuse = (line: string) => {
      expect(d.decode(Buffer.from(line), 0, Buffer.byteLength(line), null, -1, LOGGED_RECORD_LIMITS), line).toBe(false);
      return d.rejection;
    };
    expect(refuse(plain().replace('"eventId":"e1",', ''))).toMatchObject({
      code: 'missing_field',
      field: 'meta.eventId',
      message: 'missing meta.eventId (event.id)',
    });
    expect(refuse(plain().replace('1767225600.25', '"2026-01-01T00:00:00Z"')).message).toBe(
      'meta.occurredAt is not epoch-s: expected epoch seconds: a JSON number or a string holding one, got string "2026-01-01T00:00:00Z"',
    );
    expect(refuse(plain().replace('"eventId":"e1"', '"eventId":null'))).toMatchObject({
      code: 'missing_field',
      message: 'missing meta.eventId (event.id): it is null',
    });
    expect(refuse(plain().replace('"kind":"trip_completed"', '"kind":{"x":1}'))).toMatchObject({ code: 'wrong_type', field: 'meta.kind' });
    const byKey = new JsonEventDecoder({ flat: false, id: '$key', time: '$timestamp', timeFormat: 'epoch-ms' }, []);
    expect(byKey.decode(Buffer.from(plain()), 0, plain().length, null, 5, LOGGED_RECORD_LIMITS)).toBe(false);
    expect(byKey.rejection).toMatchObject({ code: 'missing_key', field: '$key' });
    expect(byKey.decode(Buffer.from(plain()), 0, plain().length, Buffer.from('k'), -1, LOGGED_RECORD_LIMITS)).toBe(false);
    expect(byKey.rejection).toMatchObject({ code: 'missing_timestamp', field: '$timestamp' });
  });
});
