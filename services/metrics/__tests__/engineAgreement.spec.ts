/**
 * One definition, two engines: the JavaScript the speed layer runs and the SQL the batch layer
 * runs must classify, key and value every event identically, and build identical HyperLogLog
 * registers. DuckDB is real; the JavaScript side is the oracle for the SQL and vice versa.
 */
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileMetric, compileMetricSql } from '../compile.ts';
import { fieldValuesOf } from '../fieldSemantics.ts';
import { parseMetricDefinitions } from '../definitions.ts';
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
