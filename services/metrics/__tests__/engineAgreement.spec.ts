/**
 * One definition, two engines: the JavaScript the speed layer runs and the SQL the batch layer
 * runs must classify, key and value every event identically, and build identical HyperLogLog
 * registers. DuckDB is real; the JavaScript side is the oracle for the SQL and vice versa.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileMetric, compileMetricSql } from '../compile.ts';
import { fieldNames, fieldText, fieldValuesOf, splitCompositeKey, type FieldValues } from '../fieldSemantics.ts';
import { keyFieldsOf, metricFieldsOf, parseMetricDefinitions } from '../definitions.ts';
import { LOGGED_RECORD_LIMITS, validateMappedRecord } from '../../events/event.ts';
import { HLL_M, HLL_STANDARD_ERROR, HyperLogLog, hllHash, hllRegisterSql } from '../hll.ts';
import type { DuckDBConnection } from '@duckdb/node-api';

let db: DuckDBInstance;
let conn: DuckDBConnection;
beforeAll(async () => {
  db = await DuckDBInstance.create(':memory:');
  conn = await db.connect();
});
afterAll(() => {
  conn.closeSync();
  db.closeSync();
});

const defs = parseMetricDefinitions(`
metrics:
  - name: m
    filter: { type: [click, "1", 2, true], region: eu }
    key: k
    value: v
    distinct: u
    granularities: [minute]
    allowedLateness: 1m
`);

const events: Record<string, string | number | boolean>[] = [
  { type: 'click', region: 'eu', k: 'a', v: 1.5, u: 'x' },
  { type: 'click', region: 'us', k: 'a', v: 1 },
  { type: '1', region: 'eu', k: 7, v: '3' },
  { type: 1, region: 'eu', k: 'b', v: 2 },
  { type: 2, region: 'eu', k: 2.5, v: -1, u: 3 },
  { type: 2.0, region: 'eu', k: 1e14, v: 0 },
  { type: true, region: 'eu', k: true, v: 1e300, u: false },
  { type: 'true', region: 'eu', k: 'c' },
  { type: 'click', region: 'eu', v: 4 },
  { type: 'click', region: 'eu', k: '', u: 'ü' },
  { type: 'click', region: 'eu', k: 'quote\'s "k"', v: 0.1 },
  { type: 'click', k: 'a' },
  { type: 'view', region: 'eu', k: 'a' },
];

describe('compiled metric: JavaScript and DuckDB SQL agree', () => {
  it('on filter, key, value and distinct for tricky values', async () => {
    const js = compileMetric(defs.metrics[0]!);
    const sql = compileMetricSql(defs.metrics[0]!, 'raw');
    await conn.run('CREATE TABLE ev (i INTEGER, raw VARCHAR)');
    for (const [i, e] of events.entries()) {
      await conn.run(`INSERT INTO ev VALUES (${i}, '${JSON.stringify(e).replace(/'/g, "''")}')`);
    }
    const reader = await conn.runAndReadAll(
      `SELECT i, (${sql.where}) AS m, ${sql.key} AS k, ${sql.value} AS v, ${sql.distinct} AS u FROM ev ORDER BY i`,
    );
    const rows = reader.getRowObjectsJS() as { i: number; m: boolean | null; k: string | null; v: number | null; u: string | null }[];
    for (const row of rows) {
      const e = fieldValuesOf(events[row.i]!, {});
      const matches = js.matches(e);
      const shown = JSON.stringify(events[row.i]);
      expect(Boolean(row.m), `event ${row.i} ${shown}`).toBe(matches);
      if (!matches) continue;
      expect(row.k, `key of ${shown}`).toBe(js.keyOf(e));
      expect(row.v ?? undefined, `value of ${shown}`).toBe(js.valueOf(e));
      expect(row.u ?? undefined, `distinct of ${shown}`).toBe(js.distinctOf(e));
    }
    // The test must exercise both outcomes.
    expect(rows.filter((r) => r.m).length).toBeGreaterThan(4);
    expect(rows.filter((r) => !r.m).length).toBeGreaterThan(3);
  });
});

describe('composite keys and filter conditions: the metric file, JavaScript and DuckDB SQL agree', () => {
  const file = parseMetricDefinitions(`
event: { id: meta.id, time: meta.ts }
metrics:
  - name: fares
    filter:
      meta.kind: { in: [trip, "1"], not: [test] }
      payload.fare: { gte: 2.5, lt: 1e3 }
      payload.flag: { exists: false }
      payload.zone: { not: [9007199254740993, "x"] }
    key: [payload.city, 'payload."the van"', payload.n]
    value: payload.fare
    granularities: [5m]
    allowedLateness: 1m
`);
  const def = file.metrics[0]!;

  it('reads in, not, bounds, exists and the composite key from the file', () => {
    expect(def.filter).toEqual({ 'meta.kind': ['trip', '1'] });
    expect(def.conditions).toEqual({
      'meta.kind': { not: ['test'] },
      'payload.fare': { gte: 2.5, lt: 1000 },
      'payload.flag': { exists: false },
      'payload.zone': { not: [{ number: '9007199254740993' }, 'x'] },
    });
    expect(def.keyParts).toEqual(['payload.city', 'payload."the van"', 'payload.n']);
    expect(keyFieldsOf(def)).toEqual(def.keyParts);
  });

  it('refuses what a filter or key cannot mean, naming the place', () => {
    const bad = (metric: string) => () =>
      parseMetricDefinitions(`metrics:\n  - { name: m, granularities: [minute], allowedLateness: 1m, ${metric} }`, 'm.yaml');
    expect(bad('key: k, filter: { a: { gt: x } }')).toThrow(/metrics\[0\]\.filter\.a\.gt: .*expected number, received string/);
    expect(bad('key: k, filter: { a: { between: 1 } }')).toThrow(/filter\.a/);
    expect(bad('key: k, filter: { a: {} }')).toThrow(/at least one of in, not, gt, gte, lt, lte, exists/);
    expect(bad('key: [k]')).toThrow(/a composite key lists at least two fields/);
    expect(bad('key: [k, k]')).toThrow(/must not repeat a field/);
  });

  it('agree event by event, parts holding | and \\ included; the key text splits back into the parts', async () => {
    const events: unknown[] = [];
    const cities = ['Paris', 'a|b', 'a\\', '\\|', '', 'é|\\x', 7, true, 1e2];
    for (const [i, city] of cities.entries())
      for (const fare of [2.5, 2.4999, 999.99, 1000, '5', null, 3])
        events.push({
          meta: { id: `e${i}`, ts: 1, kind: i % 4 === 0 ? 'test' : i % 4 === 1 ? 1 : 'trip' },
          payload: {
            city,
            'the van': i % 3 === 0 ? 'van' : 'a|b',
            n: i,
            fare,
            ...(i % 5 === 0 ? { flag: false } : {}),
            zone: i % 6 === 0 ? 9007199254740992 : 'x' + i,
          },
        });
    events.push({ meta: { id: 'z', ts: 1, kind: 'trip' }, payload: { city: 'P', 'the van': 'v', n: 1, fare: 3, zone: 'x' } });
    events.push({ meta: { id: 'y', ts: 1, kind: 'trip' }, payload: { city: 'P', n: 1, fare: 3 } });
    const js = compileMetric(def);
    const sql = compileMetricSql(def, 'raw');
    await conn.run('CREATE OR REPLACE TABLE ck (i INTEGER, raw VARCHAR)');
    const appender = await conn.createAppender('ck');
    events.forEach((e, i) => {
      appender.appendInteger(i);
      appender.appendVarchar(JSON.stringify(e));
      appender.endRow();
    });
    appender.closeSync();
    const rows = (
      await conn.runAndReadAll(`SELECT i, (${sql.where}) AS m, ${sql.key} AS k, ${sql.value} AS v FROM ck ORDER BY i`)
    ).getRowObjectsJS() as {
      i: number;
      m: boolean | null;
      k: string | null;
      v: number | null;
    }[];
    let matched = 0;
    for (const row of rows) {
      const e = events[row.i] as { payload: Record<string, unknown> };
      const validated = validateMappedRecord(
        Buffer.from(JSON.stringify(e)),
        null,
        0,
        file.event,
        LOGGED_RECORD_LIMITS,
        metricFieldsOf(def).map((f) => ({ field: f, names: fieldNames(f, false) })),
      );
      if (!validated.ok) throw new Error(`${JSON.stringify(e)}: ${validated.rejection.message}`);
      const values = (validated.event as { values: FieldValues }).values;
      const m = js.matches(values);
      expect(Boolean(row.m), JSON.stringify(e)).toBe(m);
      if (!m) continue;
      matched++;
      expect(row.k, JSON.stringify(e)).toBe(js.keyOf(values));
      expect(row.v ?? undefined).toBe(js.valueOf(values));
      const parts = keyFieldsOf(def).map((f) => fieldText(values[f]!));
      expect(splitCompositeKey(row.k!)).toEqual(parts);
    }
    expect(matched).toBeGreaterThan(5);
    expect(matched).toBeLessThan(rows.length / 2);
  });
});

describe('HyperLogLog shared by both engines', () => {
  it('computes the same register for every value in JavaScript and in SQL', async () => {
    const values = Array.from({ length: 5000 }, (_, i) => (i % 7 === 0 ? `ü-${i}` : `user-${i}`));
    await conn.run('CREATE TABLE vals (v VARCHAR)');
    const appender = await conn.createAppender('vals');
    for (const v of values) {
      appender.appendVarchar(v);
      appender.endRow();
    }
    appender.closeSync();
    const { bucket, rank } = hllRegisterSql('v');
    const reader = await conn.runAndReadAll(`SELECT v, ${bucket} AS b, ${rank} AS r FROM vals`);
    let compared = 0;
    for (const row of reader.getRowObjectsJS() as { v: string; b: number; r: number }[]) {
      expect({ b: row.b, r: row.r }, row.v).toEqual((({ bucket: b, rank: r }) => ({ b, r }))(hllHash(row.v)));
      compared++;
    }
    expect(compared).toBe(values.length);
  });

  it('estimates within 3 standard errors, merges instead of adding, and round-trips', () => {
    for (const n of [100, 10_000, 200_000]) {
      const h = new HyperLogLog();
      for (let i = 0; i < n; i++) h.add(`v${i}`);
      expect(Math.abs(h.estimate() - n) / n).toBeLessThan(3 * HLL_STANDARD_ERROR);
      expect(HyperLogLog.fromBase64(h.toBase64()).estimate()).toBe(h.estimate());
    }
    // Two overlapping halves: merge counts the union, not the sum.
    const a = new HyperLogLog();
    const b = new HyperLogLog();
    for (let i = 0; i < 60_000; i++) a.add(`v${i}`);
    for (let i = 40_000; i < 100_000; i++) b.add(`v${i}`);
    const union = HyperLogLog.fromBase64(a.toBase64()).merge(b);
    expect(Math.abs(union.estimate() - 100_000) / 100_000).toBeLessThan(3 * HLL_STANDARD_ERROR);
    expect(HLL_M).toBe(4096);
  });

  it('keeps small sketches small (sparse)', () => {
    const h = new HyperLogLog();
    for (let i = 0; i < 10; i++) h.add(`v${i}`);
    expect(h.serialize().length).toBeLessThanOrEqual(1 + 10 * 3);
    expect(h.estimate()).toBe(10);
  });
});
