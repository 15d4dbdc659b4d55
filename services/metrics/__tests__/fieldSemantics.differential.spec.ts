/**
 * Differential test of "one definition, two engines" (services/metrics/fieldSemantics.ts and
 * windowStart.ts): the speed layer's JavaScript and the batch layer's DuckDB SQL must give the
 * same key text, distinct text (and so the same HyperLogLog register), filter verdict, numeric
 * value and window start for every value; and, for records of generated shapes under generated
 * event mappings and metric definitions (shapeGenerators.ts), the same verdict, id, event time,
 * type and id hash (`mappedEventSql`), and the same metric answers along nested paths. Over 100,000 seeded values: every JSON number form
 * (exponents in both cases, signs, -0, leading zeros in exponents, fractions, 15 to 17
 * significant digits, integers beyond 2^53, huge and tiny magnitudes), strings with escapes,
 * Unicode and surrogate pairs, booleans; written in events with plain and escaped field names
 * and odd whitespace. DuckDB is real. A failure prints the value and `LK_TEST_SEED` reruns it.
 *
 * The JavaScript side runs both of its paths: the event scanner (the hot path, which reads the
 * number's bytes) and the validator (JSON.parse plus the source tokens), which must agree too.
 * The SQL side runs both of its forms: on the raw event, and as the batch recompute evaluates it
 * (the field cut out of `raw` into a column, the expression evaluated on a rebuilt document).
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventScanner, LOGGED_EVENT_SCAN_LIMITS } from '../../events/eventScanner.ts';
import { decodeWithValidator } from '../../events/fastDecode.ts';
import { seededRandom } from '../../ingest/generator.ts';
import { GRANULARITY_MS, parseGranularity } from '../definitions.ts';
import {
  canonicalNumberText,
  compileFilter,
  fieldText,
  fieldJsonSql,
  fieldTextSql,
  fieldValuesOf,
  fieldsDocumentSql,
  filterAccepts,
  idHashSql,
  idTextOfBytesSql,
  filterSql,
  numericValue,
  numericValueSql,
  type FieldValue,
  type FilterValue,
} from '../fieldSemantics.ts';
import { hllHash, hllRegisterSql } from '../hll.ts';
import { MONDAY_ORIGIN_MS, windowShape, windowStartOf, windowStartSql } from '../windowStart.ts';
import { createEventDecoder } from '../../events/decoders/eventDecoder.ts';
import type { JsonEventDecoder } from '../../events/decoders/jsonDecoder.ts';
import { LOGGED_RECORD_LIMITS, decodeLoggedEvent, readableObject, validateMappedRecord } from '../../events/event.ts';
import { idHash } from '../../log/partitioner.ts';
import { compileMetric, compileMetricSql } from '../compile.ts';
import { fieldNames, fieldsStructureSql, idText, mappedEventSql, sqlField } from '../fieldSemantics.ts';
import { keyFieldsOf, metricFieldsOf, type MetricDefinition } from '../definitions.ts';
import { generateRecord, generateShape, type GeneratedRecord } from './shapeGenerators.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261202);
const VALUES = 100_000;
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run services/metrics/__tests__/fieldSemantics.differential.spec.ts`;

let db: DuckDBInstance;
let conn: DuckDBConnection;
beforeAll(async () => {
  db = await DuckDBInstance.create(':memory:', { threads: '2' });
  conn = await db.connect();
});
afterAll(() => {
  conn.closeSync();
  db.closeSync();
});

// ---------------------------------------------------------------- value generators

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const digits = (r: Rand, n: number, noLeadingZero = false): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += String(i === 0 && noLeadingZero ? 1 + Math.floor(r() * 9) : Math.floor(r() * 10));
  return s;
};

const EDGE_NUMBERS = [
  '0',
  '-0',
  '0.0',
  '-0.0e5',
  '1e-7',
  '1E-7',
  '0.000025',
  '2.5e-05',
  '10000000000000000',
  '1e+16',
  '9007199254740993',
  '9007199254740992',
  '9007199254740991',
  '-9007199254740993',
  '18446744073709551615',
  '18446744073709551616',
  '-9223372036854775808',
  '-9223372036854775809',
  '123456789012345678901234567890',
  '1e21',
  '1e+21',
  '999999999999999999999',
  '1000000000000000000000',
  '0.000001',
  '0.0000001',
  '1.7976931348623157e308',
  '1.7976931348623159e308',
  '2e308',
  '-1e400',
  '5e-324',
  '1e-400',
  '0.1',
  '0.10',
  '1.50',
  '100',
  '1e2',
  '1E+2',
  '100.0',
  '1e0005',
  '1E-0007',
  '0.30000000000000004',
  '123.456e-2',
  '4.35',
  '-7.5e-1',
];

function numberText(r: Rand): string {
  const sign = r() < 0.3 ? '-' : '';
  switch (Math.floor(r() * 7)) {
    case 0: // integers of any length, beyond 2^53 and 2^64 too
      return sign + (r() < 0.1 ? '0' : digits(r, 1 + Math.floor(r() * 40), true));
    case 1: {
      // decimals, with trailing zeros sometimes
      const int = r() < 0.4 ? '0' : digits(r, 1 + Math.floor(r() * 12), true);
      return `${sign}${int}.${digits(r, 1 + Math.floor(r() * 20))}${r() < 0.2 ? '000' : ''}`;
    }
    case 2: {
      // exponent forms, both cases, signed or not, leading zeros in the exponent
      const mantissa =
        r() < 0.5 ? digits(r, 1 + Math.floor(r() * 6), true) : `${digits(r, 1, true)}.${digits(r, 1 + Math.floor(r() * 16))}`;
      const e = String(Math.floor(r() * 420));
      return `${sign}${mantissa}${pick(r, ['e', 'E'])}${pick(r, ['', '+', '-'])}${r() < 0.2 ? '00' : ''}${e}`;
    }
    case 3: {
      // what JavaScript producers write: a double's shortest text, over every magnitude
      const v = (r() - 0.5) * 10 ** Math.floor(r() * 60 - 30);
      return String(v);
    }
    case 4: {
      // 15 to 17 significant digits
      const v = (r() + 0.01) * 10 ** Math.floor(r() * 40 - 20);
      return sign + v.toPrecision(15 + Math.floor(r() * 3));
    }
    case 5:
      return sign + ((r() * 2 ** 60) / 2 ** Math.floor(r() * 80)).toExponential(Math.floor(r() * 17));
    default:
      return pick(r, EDGE_NUMBERS);
  }
}

const ESCAPES = [
  '\\"',
  '\\\\',
  '\\/',
  '\\b',
  '\\f',
  '\\n',
  '\\r',
  '\\t',
  '\\u00e9',
  '\\u0041',
  '\\u4e2d',
  '\\ud83d\\ude00',
  '\\u0000',
  '\\u001f',
];
const RAW_UNICODE = ['é', 'ü', '中', '😀', 'ß', 'Ω', '\u00a0', '\u2028'];

function stringText(r: Rand): string {
  const parts: string[] = [];
  const n = Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const kind = r();
    if (kind < 0.5) parts.push(pick(r, ['a', 'b', 'user-', '1', '0.5', 'true', ' ', 'x y', "it's", '#', '-']));
    else if (kind < 0.75) parts.push(pick(r, ESCAPES));
    else parts.push(pick(r, RAW_UNICODE));
  }
  return `"${parts.join('')}"`;
}

function valueText(r: Rand): string {
  const kind = r();
  if (kind < 0.62) return numberText(r);
  if (kind < 0.95) return stringText(r);
  return pick(r, ['true', 'false']);
}

/** An event holding `value` as field `k`, the name sometimes escaped, odd whitespace around. */
function eventLine(r: Rand, i: number, value: string): string {
  const ws = () => pick(r, ['', '', '', ' ', '\t', '\r', '  ']);
  const name = r() < 0.1 ? '"\\u006b"' : r() < 0.05 ? '"\\u006B"' : '"k"';
  const members = [`"id":"e${i}"`, `"type":"t"`, `"ts":1767225600000`, `${ws()}${name}${ws()}:${ws()}${value}${ws()}`];
  if (r() < 0.3) members.push(`"v":${value}`);
  if (r() < 0.5) members.splice(1, 0, `"other":${pick(r, ['1.5e3', '"x"', 'true', '12'])}`);
  return `{${members.join(',')}}`;
}

// ---------------------------------------------------------------- the two JavaScript paths

const scanner = new EventScanner();
const WANTED = new Set(['k']);

function viaScanner(line: string): FieldValue | undefined | 'not decided' {
  const buf = Buffer.from(line);
  if (!scanner.scan(buf, LOGGED_EVENT_SCAN_LIMITS)) return 'not decided';
  return scanner.project(WANTED).k;
}

function viaValidator(line: string): FieldValue | undefined {
  const decoded = decodeWithValidator(Buffer.from(line));
  if ('code' in decoded) throw new Error(`the validator refused ${line}: ${decoded.message}`);
  return fieldValuesOf(decoded.fields, decoded.numberSources, WANTED).k;
}

interface Case {
  i: number;
  line: string;
  value: string;
  key: string;
  numeric: number | null;
}

describe('one definition, two engines: field semantics', () => {
  it(`key, distinct, numeric value and filter agree on ${VALUES.toLocaleString('en-US')} generated values (JS scanner, JS validator, SQL on raw, SQL as the batch recompute evaluates it)`, async () => {
    const r = seededRandom(SEED);
    const cases: Case[] = [];
    let scannerDecided = 0;
    for (let i = 0; i < VALUES; i++) {
      const value = valueText(r);
      const line = eventLine(r, i, value);
      const v = viaValidator(line);
      expect(v, `${line}\n${rerun}`).toBeDefined();
      const fromScanner = viaScanner(line);
      if (fromScanner !== 'not decided') {
        scannerDecided++;
        expect(fieldText(fromScanner!), `scanner vs validator on ${line}\n${rerun}`).toBe(fieldText(v!));
        expect(numericValue(fromScanner), `scanner vs validator value on ${line}\n${rerun}`).toBe(numericValue(v));
      }
      const n = numericValue(v);
      cases.push({ i, line, value, key: fieldText(v!), numeric: n === undefined ? null : n });
    }
    // Both JavaScript paths were exercised on a large share.
    expect(scannerDecided).toBeGreaterThan(VALUES / 3);
    expect(scannerDecided).toBeLessThan(VALUES);

    await conn.run('CREATE OR REPLACE TABLE ev (i INTEGER, raw VARCHAR)');
    const appender = await conn.createAppender('ev');
    for (const c of cases) {
      appender.appendInteger(c.i);
      appender.appendVarchar(c.line);
      appender.endRow();
    }
    appender.closeSync();
    // The batch recompute's form: the field's JSON text in a column, the rules on a rebuilt doc.
    const doc = fieldsDocumentSql(['k'], () => 'f');
    const reader = await conn.runAndReadAll(`
      SELECT i, ${fieldTextSql('raw', 'k')} AS key_raw, ${numericValueSql('raw', 'k')} AS num_raw,
             ${fieldTextSql('doc', 'k')} AS key_doc, ${numericValueSql('doc', 'k')} AS num_doc
      FROM (SELECT i, raw, ${doc} AS doc FROM (SELECT i, raw, ${fieldJsonSql('k', true, "j['k']")} AS f FROM (
        SELECT i, raw, json_transform(raw, '{"k":"JSON"}') AS j FROM ev)))
      ORDER BY i`);
    const rows = reader.getRows() as [number, string | null, number | null, string | null, number | null][];
    expect(rows.length).toBe(cases.length);
    const problems: string[] = [];
    for (const [i, keyRaw, numRaw, keyDoc, numDoc] of rows) {
      const c = cases[i]!;
      if (keyRaw !== c.key) problems.push(`key of ${c.value}: JS ${JSON.stringify(c.key)}, SQL on raw ${JSON.stringify(keyRaw)}`);
      if (keyDoc !== c.key) problems.push(`key of ${c.value}: JS ${JSON.stringify(c.key)}, SQL as recomputed ${JSON.stringify(keyDoc)}`);
      if (!Object.is(numRaw, c.numeric)) problems.push(`value of ${c.value}: JS ${c.numeric}, SQL on raw ${numRaw}`);
      if (!Object.is(numDoc, c.numeric)) problems.push(`value of ${c.value}: JS ${c.numeric}, SQL as recomputed ${numDoc}`);
      if (problems.length > 20) break;
    }
    expect(problems, rerun).toEqual([]);

    // Distinct numbers never collapse, and equal ones never split: a number's key is a function
    // of its exact value and the other way round (checked against an independent oracle: the
    // value as BigInt digits and exponent, computed without fieldSemantics.ts).
    const byKey = new Map<string, string>();
    const byExact = new Map<string, string>();
    for (const c of cases) {
      if (!/^-?[0-9]/.test(c.value)) continue;
      const exact = exactDecimal(c.value);
      const seen = byKey.get(c.key);
      if (seen !== undefined && seen !== exact) problems.push(`${c.value} and another number, exactly ${seen}, share the key ${c.key}`);
      const key = byExact.get(exact);
      if (key !== undefined && key !== c.key) problems.push(`${c.value} has the key ${c.key}, an equal number has ${key}`);
      byKey.set(c.key, exact);
      byExact.set(exact, c.key);
    }
    expect(problems, rerun).toEqual([]);
    expect(byKey.size).toBeGreaterThan(VALUES / 3);
  });

  it('the distinct text gives the same HyperLogLog register in both engines (strings with escapes and Unicode, numbers)', async () => {
    const r = seededRandom(SEED + 1);
    const texts = Array.from({ length: 5000 }, (_, i) => {
      const v = viaValidator(eventLine(r, i, valueText(r)));
      return fieldText(v!);
    });
    await conn.run('CREATE OR REPLACE TABLE d (i INTEGER, v VARCHAR)');
    const appender = await conn.createAppender('d');
    texts.forEach((t, i) => {
      appender.appendInteger(i);
      appender.appendVarchar(t);
      appender.endRow();
    });
    appender.closeSync();
    const { bucket, rank } = hllRegisterSql('v');
    const rows = (await conn.runAndReadAll(`SELECT i, ${bucket}, ${rank} FROM d ORDER BY i`)).getRows() as [number, number, number][];
    for (const [i, b, k] of rows)
      expect({ b, k }, JSON.stringify(texts[i])).toEqual((({ bucket: b2, rank: k2 }) => ({ b: b2, k: k2 }))(hllHash(texts[i]!)));
  });

  it('filters match by JSON type and exact value in both engines', async () => {
    const r = seededRandom(SEED + 2);
    const values = Array.from({ length: 3000 }, () => valueText(r));
    // Accepted: a third of the values (numbers by their canonical text), plus look-alikes of
    // another type that must not match: the string "1" never matches the number 1.
    const accepted: FilterValue[] = [];
    for (const v of values.filter((_, i) => i % 3 === 0)) {
      if (v === 'true' || v === 'false') accepted.push(v === 'true');
      else if (v.startsWith('"')) accepted.push(JSON.parse(v) as string);
      else accepted.push({ number: canonicalNumberText(v) });
    }
    accepted.push('1', '100', 'true');
    const filter = compileFilter('k', accepted);
    await conn.run('CREATE OR REPLACE TABLE f (i INTEGER, raw VARCHAR)');
    const appender = await conn.createAppender('f');
    const lines = values.map((v, i) => eventLine(r, i, v));
    lines.forEach((l, i) => {
      appender.appendInteger(i);
      appender.appendVarchar(l);
      appender.endRow();
    });
    appender.closeSync();
    const rows = (await conn.runAndReadAll(`SELECT i, ${filterSql('raw', 'k', accepted)} FROM f ORDER BY i`)).getRows() as [
      number,
      boolean,
    ][];
    let matched = 0;
    for (const [i, sqlMatch] of rows) {
      const js = filterAccepts(filter, viaValidator(lines[i]!));
      expect(Boolean(sqlMatch), `${values[i]}\n${rerun}`).toBe(js);
      if (js) matched++;
    }
    expect(matched).toBeGreaterThan(values.length / 4);
    expect(matched).toBeLessThan(values.length);
  });

  it('the window start is the same in both engines for every granularity and generated sizes (weeks on Monday), before 1970 and near the largest event time', async () => {
    const r = seededRandom(SEED + 3);
    const times: number[] = [
      0,
      -1,
      1,
      59_999,
      60_000,
      -60_000,
      -60_001,
      8.64e15,
      -8.64e15,
      8.64e15 - 1,
      Date.UTC(1969, 11, 31, 23, 59, 59, 999),
    ];
    // Generated window sizes, as a metric file writes them: the named ones, the issue's, and
    // random durations in every unit (whole weeks among them, aligned on Monday).
    const declared = ['minute', 'hour', 'day', '5m', '15m', '6h', '7d', '14d', '2d', '90m', '30s', '366d'];
    for (let i = 0; i < 12; i++) declared.push(`${1 + Math.floor(r() * 90)}${pick(r, ['s', 'm', 'h', 'd'])}`);
    for (let i = 0; i < 4; i++) declared.push(`${7 * (1 + Math.floor(r() * 8))}d`);
    const shapes = declared.flatMap((text) => {
      const parsed = parseGranularity(text);
      return parsed.ok ? [windowShape(parsed.granularity)] : [];
    });
    expect(shapes.filter((w) => w.originMs === MONDAY_ORIGIN_MS).length).toBeGreaterThanOrEqual(6);
    // Times at every window boundary of every size and one ms either side, then random times.
    for (const w of shapes)
      for (let k = -3; k <= 3; k++) {
        const b = w.originMs + Math.round((r() - 0.5) * 2e6) * w.sizeMs;
        if (Math.abs(b) < 8.6e15) times.push(b + k, b - k);
      }
    for (let i = 0; i < 20_000; i++) times.push(Math.round((r() - 0.5) * 2 * 8.64e15));
    await conn.run('CREATE OR REPLACE TABLE w (i INTEGER, ts BIGINT)');
    const appender = await conn.createAppender('w');
    times.forEach((t, i) => {
      appender.appendInteger(i);
      appender.appendBigInt(BigInt(t));
      appender.endRow();
    });
    appender.closeSync();
    const sizes = [...Object.values(GRANULARITY_MS).map((sizeMs) => ({ sizeMs, originMs: 0 })), ...shapes];
    const rows = (
      await conn.runAndReadAll(
        `SELECT i, ${sizes.map((s) => `${windowStartSql('ts', s.sizeMs, s.originMs)}::DOUBLE`).join(', ')} FROM w ORDER BY i`,
      )
    ).getRows() as number[][];
    for (const [i, ...starts] of rows) {
      const ts = times[i!]!;
      sizes.forEach(({ sizeMs: size, originMs: origin }, g) => {
        const js = windowStartOf(ts, size, origin);
        if (starts[g] !== js) expect(starts[g], `ts ${ts}, size ${size}, origin ${origin}\n${rerun}`).toBe(js);
        // An independent oracle: the largest origin + k x size not after ts, in BigInt arithmetic.
        const big = BigInt(ts) - BigInt(origin);
        const s = BigInt(size);
        const floor = (big >= 0n ? (big / s) * s : -((-big + s - 1n) / s) * s) + BigInt(origin);
        if (js !== Number(floor)) expect(js, `ts ${ts}, size ${size}, origin ${origin}\n${rerun}`).toBe(Number(floor));
        // Weekly windows start on a Monday at 00:00 UTC.
        if (origin === MONDAY_ORIGIN_MS && Math.abs(js) < 8.64e15) expect(new Date(js).getUTCDay()).toBe(1);
      });
    }
  });
});

// ---------------------------------------------------------------- event shapes

const SHAPES = 24;
const RECORDS_PER_SHAPE = 400;

/** What JavaScript makes of a record under a shape: its verdict, and for an event what each engine must agree on. */
interface JsVerdict {
  readable: boolean;
  event: { id: string; ts: number; type: string | null; hash: number } | null;
  /** Per metric: matches, key, value, distinct (null where undefined). */
  metrics: { matches: boolean; key: string | null; value: number | null; distinct: string | null }[];
}

/** The fields of a metric definition. */
function fieldsOf(defs: readonly MetricDefinition[]): string[] {
  return [...new Set(defs.flatMap(metricFieldsOf))];
}

const fromHex = (h: string | null) => (h === null ? null : Buffer.from(h, 'hex').toString('utf8'));

const fmt = (rec: GeneratedRecord) =>
  `value ${rec.value.toString('utf8')}, key ${rec.key === null ? 'null' : rec.key.toString('hex')}, timestamp ${rec.timestamp}`;

describe('one definition, two engines: event shapes, mappings and metric definitions', () => {
  it(`${SHAPES} generated mappings x ${RECORDS_PER_SHAPE} records: the decoder's fast path, its validator and the SQL agree on every record (verdict, id, time, type, id hash, metric answers on raw and as the recompute reads it)`, async () => {
    const r = seededRandom(SEED + 10);
    const problems: string[] = [];
    let valid = 0;
    let viaFastPath = 0;
    let total = 0;
    /** What the valid events exercised (each must be seen). */
    const seen = new Set<string>();
    for (let s = 0; s < SHAPES && problems.length === 0; s++) {
      const shape = generateShape(r, s);
      const fields = fieldsOf(shape.metrics);
      const decoder = createEventDecoder(shape.mapping, fields);
      const compiled = shape.metrics.map(compileMetric);
      const records: GeneratedRecord[] = [];
      const verdicts: JsVerdict[] = [];
      const where = `mapping ${JSON.stringify(shape.mapping)}, metrics ${JSON.stringify(shape.metrics)}`;
      for (let i = 0; i < RECORDS_PER_SHAPE; i++) {
        const rec = generateRecord(r, shape);
        records.push(rec);
        total++;
        const accepted = decoder.decode(rec.value, 0, rec.value.length, rec.key, rec.timestamp, LOGGED_RECORD_LIMITS);
        // The validator alone (no fast path) must give the same verdict and the same event.
        const v = shape.mapping.flat
          ? decodeLoggedEvent(rec.value)
          : validateMappedRecord(
              rec.value,
              rec.key,
              rec.timestamp,
              shape.mapping,
              LOGGED_RECORD_LIMITS,
              fields.map((f) => ({ field: f, names: fieldNames(f, false) })),
            );
        if (v.ok !== accepted) {
          problems.push(
            `decoder ${accepted ? 'accepted' : `refused (${decoder.rejection.message})`} what the validator ${v.ok ? 'accepted' : `refused (${v.rejection.message})`}: ${fmt(rec)}; ${where}`,
          );
          break;
        }
        if (!accepted && !v.ok && decoder.rejection.code !== v.rejection.code) {
          problems.push(`decoder refused for ${decoder.rejection.code}, the validator for ${v.rejection.code}: ${fmt(rec)}; ${where}`);
          break;
        }
        const readable = readableObject(rec.value) === null;
        if (accepted && !readable) problems.push(`an event that is no readable object: ${fmt(rec)}`);
        if (!accepted && decoder.readable() !== readable) problems.push(`decoder.readable() is not readableObject: ${fmt(rec)}`);
        let event: JsVerdict['event'] = null;
        const metrics: JsVerdict['metrics'] = [];
        if (accepted) {
          valid++;
          if ((decoder as JsonEventDecoder).via !== 'validator') viaFastPath++;
          const bytes = Buffer.from(decoder.idBuf.subarray(decoder.idStart, decoder.idEnd));
          event = { id: decoder.idText(), ts: decoder.ts, type: decoder.typeText() ?? null, hash: idHash(bytes) };
          const values = decoder.fieldValues();
          // The validator's own reading of the id, time and fields.
          if (v.ok) {
            const vb = 'idBytes' in v.event ? v.event.idBytes : Buffer.from(v.event.id, 'utf8');
            if (!vb.equals(bytes) || v.event.ts !== decoder.ts)
              problems.push(`fast path and validator read another id or time: ${fmt(rec)}; ${where}`);
            if ('values' in v.event) {
              const a = JSON.stringify(
                Object.entries(values)
                  .map(([k, x]) => [k, typeof x === 'object' ? x.text : x])
                  .sort(),
              );
              const b = JSON.stringify(
                Object.entries(v.event.values)
                  .map(([k, x]) => [k, typeof x === 'object' ? x.text : x])
                  .sort(),
              );
              if (a !== b) problems.push(`fast path values ${a}, validator values ${b}: ${fmt(rec)}; ${where}`);
            }
          }
          seen.add(shape.mapping.flat ? 'flat' : shape.mapping.time === '$timestamp' ? '$timestamp' : shape.mapping.timeFormat);
          if (shape.mapping.id === '$key') seen.add('$key');
          if (event.id.startsWith('\\x')) seen.add('hex id');
          if (event.ts < 0) seen.add('negative time');
          for (const [f, x] of Object.entries(values))
            if (typeof x === 'object' && /[.eE]/.test(x.source) && fieldNames(f, shape.mapping.flat).length > 1)
              seen.add('nested number with digits beyond integers');
          for (const m of compiled) {
            const matches = m.matches(values);
            if (m.def.conditions !== undefined) seen.add(matches ? 'conditions: a match' : 'conditions: no match');
            if (m.def.keyParts !== undefined && matches) seen.add('composite key');
            metrics.push({
              matches,
              key: matches ? (m.keyOf(values) ?? null) : null,
              value: matches ? (m.valueOf(values) ?? null) : null,
              distinct: matches ? (m.distinctOf(values) ?? null) : null,
            });
          }
        }
        verdicts.push({ readable, event, metrics });
      }
      if (problems.length > 0) break;

      // The SQL, on the readable records (the lake keeps no other).
      await conn.run('CREATE OR REPLACE TABLE rec (i INTEGER, raw VARCHAR, k BLOB, t BIGINT)');
      const appender = await conn.createAppender('rec');
      records.forEach((rec, i) => {
        if (!verdicts[i]!.readable) return;
        appender.appendInteger(i);
        appender.appendVarchar(rec.value.toString('utf8'));
        if (rec.key === null) appender.appendNull();
        else appender.appendBlob(rec.key);
        appender.appendBigInt(BigInt(rec.timestamp));
        appender.endRow();
      });
      appender.closeSync();
      const ev = mappedEventSql(shape.mapping, { raw: 'raw', key: 'k', timestamp: 't' });
      // The recompute's reading: the fields cut out of one json_transform, rebuilt into a flat document.
      const { structure, valueOf } = fieldsStructureSql(
        fields.map((f) => fieldNames(f, shape.mapping.flat)),
        'j',
      );
      const column = (f: string) => `f${fields.indexOf(f)}`;
      const texts = new Set(
        shape.metrics.flatMap((d) => [
          ...Object.keys(d.filter),
          ...Object.entries(d.conditions ?? {}).flatMap(([f, c]) => (c.not !== undefined ? [f] : [])),
          ...keyFieldsOf(d),
          ...(d.distinct !== undefined ? [d.distinct] : []),
        ]),
      );
      const cut = fields.map((f, k) => `${fieldJsonSql(sqlField(f, shape.mapping), texts.has(f), valueOf[k]!)} AS f${k}`).join(', ');
      const doc = fieldsDocumentSql(fields.map(column), (c) => c);
      // Texts cross as UTF-8 hex: the DuckDB client's string decoding drops a leading U+FEFF.
      const text = (x: string) => `hex(encode(${x}))`;
      const textColumns = new Set([1, 3, ...shape.metrics.flatMap((_, k) => [6, 8, 10, 12].map((c) => c + k * 8))]);
      const metricColumns = shape.metrics.flatMap((def, k) => {
        const onRaw = compileMetricSql(def, 'raw');
        const onDoc = compileMetricSql(def, 'doc', column);
        return [
          `(${onRaw.where}) AS w${k}`,
          `${text(onRaw.key)} AS k${k}`,
          `${onRaw.value} AS v${k}`,
          `${text(onRaw.distinct)} AS d${k}`,
          `(${onDoc.where}) AS dw${k}`,
          `${text(onDoc.key)} AS dk${k}`,
          `${onDoc.value} AS dv${k}`,
          `${text(onDoc.distinct)} AS dd${k}`,
        ];
      });
      const sql = `SELECT i, ${text('e.id')}, e.ts, ${text('e.type')}, e.hash, ${metricColumns.join(', ')} FROM (
          SELECT i, raw, ${ev} AS e, ${doc} AS doc FROM (SELECT *, ${cut} FROM (SELECT *, json_transform(raw, ${structure}) AS j FROM rec)))
        ORDER BY i`;
      let rows: unknown[][];
      try {
        const t0 = performance.now();
        rows = (await conn.runAndReadAll(sql)).getRows();
        if (process.env.LK_PROFILE) {
          const t1 = performance.now();
          await conn.runAndReadAll(`SELECT * FROM (${sql}) LIMIT 0`);
          console.log(
            `shape ${s}: ${(t1 - t0).toFixed(0)} ms, plan only ${(performance.now() - t1).toFixed(0)} ms, sql ${sql.length} chars`,
          );
        }
      } catch (err) {
        problems.push(`DuckDB failed (${(err as Error).message.slice(0, 300)}) on ${where}`);
        break;
      }
      for (const row of rows) {
        for (let c = 0; c < row.length; c++) if (textColumns.has(c)) row[c] = fromHex(row[c] as string | null);
        const i = row[0] as number;
        const js = verdicts[i]!;
        const rec = records[i]!;
        const [id, ts, type, hash] = row.slice(1, 5) as [string | null, bigint | null, string | null, number | null];
        const sqlEvent = id === null && ts === null ? null : { id, ts: ts === null ? null : Number(ts), type, hash };
        if (JSON.stringify(sqlEvent) !== JSON.stringify(js.event)) {
          problems.push(`event: JS ${JSON.stringify(js.event)}, SQL ${JSON.stringify(sqlEvent)}: ${fmt(rec)}; ${where}`);
          continue;
        }
        if (js.event === null) continue;
        shape.metrics.forEach((_, k) => {
          const at = 5 + k * 8;
          const [w, key, value, distinct, dw, dkey, dvalue, ddistinct] = row.slice(at, at + 8) as [
            boolean,
            string | null,
            number | null,
            string | null,
            boolean,
            string | null,
            number | null,
            string | null,
          ];
          const want = js.metrics[k]!;
          for (const [form, got] of [
            ['on raw', { matches: Boolean(w), key: w ? key : null, value: w ? value : null, distinct: w ? distinct : null }],
            ['as recomputed', { matches: Boolean(dw), key: dw ? dkey : null, value: dw ? dvalue : null, distinct: dw ? ddistinct : null }],
          ] as const) {
            if (JSON.stringify(got) !== JSON.stringify(want))
              problems.push(`metric ${k} ${form}: JS ${JSON.stringify(want)}, SQL ${JSON.stringify(got)}: ${fmt(rec)}; ${where}`);
          }
        });
        if (problems.length > 5) break;
      }
    }
    expect(problems.slice(0, 5), rerun).toEqual([]);
    // The generated records exercise both verdicts and both JavaScript paths.
    expect(valid).toBeGreaterThan(total / 10);
    expect(valid).toBeLessThan(total);
    expect(viaFastPath).toBeGreaterThan(valid / 10);
    expect([...seen].sort(), rerun).toEqual(
      [
        '$key',
        '$timestamp',
        'auto',
        'composite key',
        'conditions: a match',
        'conditions: no match',
        'epoch-ms',
        'epoch-s',
        'epoch-us',
        'flat',
        'hex id',
        'iso',
        'negative time',
        'nested number with digits beyond integers',
      ].sort(),
    );
    expect(viaFastPath).toBeLessThan(valid);
  });

  it('the id text is one-to-one with the id bytes, and DuckDB writes it alike (keys that are null, empty, UTF-8, \\x-prefixed or not UTF-8)', async () => {
    const r = seededRandom(SEED + 11);
    const keys = Array.from({ length: 3000 }, () =>
      Buffer.from(
        Array.from({ length: Math.floor(r() * 6) }, () => pick(r, [0x5c, 0x78, 0x61, 0xc3, 0xa9, 0xed, 0xa0, 0x80, 0xff, 0x00, 0x7f])),
      ),
    );
    const byText = new Map<string, string>();
    for (const k of keys) {
      const t = idText(k);
      const seen = byText.get(t);
      if (seen !== undefined && seen !== k.toString('hex'))
        throw new Error(`keys ${seen} and ${k.toString('hex')} share the text ${t}\n${rerun}`);
      byText.set(t, k.toString('hex'));
    }
    await conn.run('CREATE OR REPLACE TABLE keys (i INTEGER, k BLOB)');
    const appender = await conn.createAppender('keys');
    keys.forEach((k, i) => {
      appender.appendInteger(i);
      appender.appendBlob(k);
      appender.endRow();
    });
    appender.closeSync();
    const rows = (await conn.runAndReadAll(`SELECT i, ${idTextOfBytesSql('k')}, ${idHashSql('k')} FROM keys ORDER BY i`)).getRows() as [
      number,
      string,
      number,
    ][];
    for (const [i, text, hash] of rows) {
      expect(text, `${keys[i]!.toString('hex')}\n${rerun}`).toBe(idText(keys[i]!));
      expect(hash, `${keys[i]!.toString('hex')}\n${rerun}`).toBe(idHash(keys[i]!));
    }
  });
});

/** The exact value of JSON number text as a reduced fraction "p/q" (an oracle independent of fieldSemantics.ts). */
function exactDecimal(text: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text)!;
  let num = BigInt(m[2]! + (m[3] ?? ''));
  if (num === 0n) return '0/1';
  let exp = BigInt(m[4] ?? '0') - BigInt((m[3] ?? '').length);
  while (num % 10n === 0n) {
    num /= 10n;
    exp += 1n;
  }
  return `${m[1]}${num}e${exp}`;
}
