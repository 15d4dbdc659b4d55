/**
 * The percentile sketch's bucket rule (services/metrics/ddsketch.ts) is one definition for both
 * engines: for every boundary of the table, one ulp either side, and generated values over every
 * magnitude (negative, zero, subnormal, beyond the indexed range), JavaScript's bucketOf and
 * DuckDB's ASOF join over the emitted table give the same bucket. Independently of both, each
 * bucket is the table's (boundary before < |x| <= its boundary) and its value is within the
 * stated relative accuracy of x. A failure prints the value and the command that reruns the seed.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../ingest/generator.ts';
import { MAX_INDEXED, MIN_INDEXED, ZERO_BUCKET, bucketBoundaries, bucketOf, bucketSelectSql, bucketValue } from '../ddsketch.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 20261207);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run services/metrics/__tests__/ddsketch.differential.spec.ts`;

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

const view = new DataView(new ArrayBuffer(8));
/** The next double towards +infinity / -infinity (an independent ulp step, from the bits). */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  view.setFloat64(0, x);
  const b = view.getBigUint64(0);
  view.setBigUint64(0, x > 0 ? b + 1n : b - 1n);
  return view.getFloat64(0);
}
const nextDown = (x: number) => -nextUp(-x);

describe('percentile sketch buckets: one rule, two engines', () => {
  for (const accuracy of [0.01, 0.02]) {
    it(`at every boundary, one ulp either side, and on generated values (relative accuracy ${accuracy})`, async () => {
      const table = bucketBoundaries(accuracy);
      const r = seededRandom(SEED + Math.round(accuracy * 1000));
      const values: number[] = [0, -0, Number.MIN_VALUE, -Number.MIN_VALUE, Number.MAX_VALUE, -Number.MAX_VALUE, 1, -1, 1e-300, 1e300];
      for (const b of table.boundaries) values.push(b, nextUp(b), nextDown(b), -b, -nextUp(b));
      for (let i = 0; i < 20_000; i++) {
        const magnitude = Math.exp((r() - 0.5) * 2 * Math.log(1e18));
        values.push(r() < 0.2 ? -magnitude : magnitude);
      }
      await conn.run('CREATE OR REPLACE TABLE v (i INTEGER, x DOUBLE)');
      const appender = await conn.createAppender('v');
      values.forEach((x, i) => {
        appender.appendInteger(i);
        appender.appendDouble(x);
        appender.endRow();
      });
      appender.closeSync();
      const rows = (
        await conn.runAndReadAll(`SELECT id, bucket FROM (${bucketSelectSql('v', 'i', 'x', table)}) ORDER BY id`)
      ).getRows() as [number, number][];
      expect(rows.length).toBe(values.length);
      const b = table.boundaries;
      let checked = 0;
      for (const [i, sqlBucket] of rows) {
        const x = values[i]!;
        const js = bucketOf(x, table);
        if (js !== Number(sqlBucket)) expect(Number(sqlBucket), `x = ${x} (${i})\n${rerun}`).toBe(js);
        // The table's own semantics, checked without bucketOf's search.
        if (x === 0) {
          expect(js).toBe(ZERO_BUCKET);
          continue;
        }
        const m = Math.abs(x);
        const k = Math.abs(js) - 1;
        expect(Math.sign(js)).toBe(Math.sign(x));
        if (m > b[0]! && m <= b[b.length - 1]!) {
          if (!(b[k - 1]! < m && m <= b[k]!)) throw new Error(`x = ${x}: bucket ${k} is (${b[k - 1]}, ${b[k]}]\n${rerun}`);
        }
        // The stated accuracy holds over the indexed range.
        if (m >= MIN_INDEXED && m <= MAX_INDEXED) {
          const err = Math.abs(bucketValue(js, table) - x) / m;
          if (err > accuracy * (1 + 1e-9)) throw new Error(`x = ${x}: relative error ${err} > ${accuracy}\n${rerun}`);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(table.boundaries.length * 2);
    });
  }
});
