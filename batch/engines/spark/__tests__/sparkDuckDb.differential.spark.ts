/**
 * One definition, two batch engines: generated events (every JSON number form as keys and filter
 * values, strings with escapes and Unicode, booleans, the string "1" beside the number 1, field
 * names differing only in case, duplicates, misplaced records) and generated metric definitions
 * (filters of every type, conditions (not, in, bounds, exists), one-field and composite keys,
 * values, percentile sketches (values at every bucket boundary of the table and one ulp either
 * side) and distinct fields on any field, any granularities) go
 * into one Delta table through the real lake writer; DuckDB and Spark recompute the views from
 * it, and every view row must be equal, column by column (Object.is: sums, sketches' bytes,
 * counts, stamps), and so must the run records' counts and cuts.
 *
 * The field `amount` holds multiples of 1/4 below 2^20 (written in many forms), so that every
 * summation order gives the same double, and its sums are compared exactly; a metric summing
 * another field (any number) has its sums compared up to rounding: the engines add in different
 * orders, and a sum is only defined up to rounding (docs/batch-layer.md).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { bucketBoundaries } from '../../../../services/metrics/ddsketch.ts';
import { parseMetricDefinitions } from '../../../../services/metrics/definitions.ts';
import { logger } from '../../../../services/observability/logger.ts';
import { tempDir } from '../../../../test/helpers.ts';
import { localStateOptions } from '../../../../test/sharedState.ts';
import { recomputeBatchViews } from '../../../views/batchViews.ts';
import { recomputeWithSpark } from '../sparkViews.ts';
import { currentRows, firstDifference, lakeFromRecords, pick, seeded, type Rand, type TestRecord } from './sparkTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? Date.now() % 1_000_000_007);
const EVENTS = Number(process.env.LK_TEST_EVENTS ?? 6000);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run --config vitest.spark.config.ts batch/engines/spark/__tests__/sparkDuckDb.differential.spark.ts`;
const quiet = logger.child({}, { level: 'warn' });

const digits = (r: Rand, n: number, noLeadingZero = false): string => {
  let s = '';
  for (let i = 0; i < n; i++) s += String(i === 0 && noLeadingZero ? 1 + Math.floor(r() * 9) : Math.floor(r() * 10));
  return s;
};

const bits = new DataView(new ArrayBuffer(8));
/** The double one ulp away from the positive double x (towards +infinity with step 1, -infinity with -1). */
function ulpStep(x: number, step: 1 | -1): number {
  bits.setFloat64(0, x);
  bits.setBigUint64(0, bits.getBigUint64(0) + BigInt(step));
  return bits.getFloat64(0);
}

/** A percentile bucket boundary of the 1 % or 2 % table (ddsketch.ts), or one ulp either side. */
function boundaryText(r: Rand): string {
  const b = bucketBoundaries(pick(r, [0.01, 0.02])).boundaries;
  const x = b[Math.floor(r() * b.length)]!;
  return String(pick(r, [x, ulpStep(x, 1), ulpStep(x, -1)]));
}

/** JSON number texts of one value in several spellings, and others of any length and exponent. */
function numberText(r: Rand): string {
  const sign = r() < 0.3 ? '-' : '';
  switch (Math.floor(r() * 7)) {
    case 6:
      return sign + boundaryText(r);
    case 0:
      return sign + pick(r, ['100', '1e2', '1E+2', '100.0', '1e0002', '10.0e1', '0', '-0', '0.0', '1', '1.0', '2', '7']);
    case 1:
      return sign + (r() < 0.1 ? '0' : digits(r, 1 + Math.floor(r() * 30), true));
    case 2:
      return `${sign}${r() < 0.4 ? '0' : digits(r, 1 + Math.floor(r() * 6), true)}.${digits(r, 1 + Math.floor(r() * 12))}${r() < 0.2 ? '000' : ''}`;
    case 3:
      return `${sign}${digits(r, 1, true)}.${digits(r, 1 + Math.floor(r() * 10))}${pick(r, ['e', 'E'])}${pick(r, ['', '+', '-'])}${Math.floor(r() * 40)}`;
    case 4:
      return String((r() - 0.5) * 10 ** Math.floor(r() * 40 - 20));
    default:
      return pick(r, [
        '1e-7',
        '0.30000000000000004',
        '123.456e-2',
        '4.35',
        '-7.5e-1',
        '9007199254740993',
        '9007199254740992',
        '1e21',
        '1e-6',
      ]);
  }
}

const ESCAPES = ['\\"', '\\\\', '\\/', '\\n', '\\t', '\\u00e9', '\\u0041', '\\u4e2d', '\\ud83d\\ude00'];
const PIECES = ['a', 'b', 'user-', '1', '100', '0.5', 'true', ' ', "it's", '#', '-', 'é', '中', '😀', '{', '[', 'Infinity', 'NaN', '|'];

function stringText(r: Rand): string {
  const parts: string[] = [];
  const n = Math.floor(r() * 4);
  for (let i = 0; i < n; i++) parts.push(r() < 0.75 ? pick(r, PIECES) : pick(r, ESCAPES));
  return `"${parts.join('')}"`;
}

/** A pool of value texts per field: repeated, so that windows and keys have several events. */
function valuePool(r: Rand, size: number): string[] {
  return Array.from({ length: size }, () => {
    const kind = r();
    if (kind < 0.45) return numberText(r);
    if (kind < 0.9) return stringText(r);
    return pick(r, ['true', 'false']);
  });
}

/** Values to sum: k/4 with |k| < 2^20, in one of several spellings; sometimes not a number. */
function summableText(r: Rand): string {
  const k = Math.floor((r() - 0.5) * 2 ** 21);
  const v = k / 4;
  const kind = r();
  if (kind < 0.08) return pick(r, ['"12.5"', 'true', '"x"']);
  if (kind < 0.4) return String(v);
  if (kind < 0.6) return v.toExponential();
  if (kind < 0.75) return `${(v * 100).toFixed(0)}e-2`;
  if (kind < 0.85) return pick(r, ['0', '-0', '0.0', '-0.0e5']);
  return v.toFixed(3);
}

const FIELDS = ['k1', 'k2', 'K2', 'flag', 'w-x', 'amount'] as const;
const TYPES = ['view', 'click', 'buy'];

function generate(r: Rand): { records: TestRecord[]; pools: Record<string, string[]> } {
  const pools: Record<string, string[]> = {
    k1: valuePool(r, 12),
    k2: valuePool(r, 40),
    K2: valuePool(r, 5),
    flag: ['true', 'false', '"true"', '1', '"1"', '1.0', '0'],
    'w-x': valuePool(r, 300),
  };
  const start = Date.UTC(2026, 0, 1, 22, 0, 0);
  const records: TestRecord[] = [];
  const sent: string[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const dup = sent.length > 0 && r() < 0.08;
    const id = dup ? pick(r, sent) : `e${i}`;
    sent.push(id);
    // About a day and a half from 22:00: minute, hour and day windows, few lake folders.
    const ts = start + Math.floor(r() * 30 * 3_600_000);
    const members = [
      `"id":${JSON.stringify(id)}`,
      `"type":${JSON.stringify(pick(r, TYPES))}`,
      `"ts":${r() < 0.5 ? ts : JSON.stringify(new Date(ts).toISOString())}`,
    ];
    for (const f of FIELDS) {
      if (r() < 0.15) continue;
      const value = f === 'amount' ? summableText(r) : pick(r, pools[f]!);
      const name = r() < 0.05 && f === 'k1' ? '"\\u006b1"' : JSON.stringify(f);
      members.push(`${name}${pick(r, ['', ' ', '\t'])}:${pick(r, ['', ' '])}${value}`);
    }
    // Member order varies: the rules read by name, wherever a member is.
    const [head, ...rest] = members;
    rest.sort(() => r() - 0.5);
    records.push({ key: r() < 0.05 ? `other-${i}` : id, line: `{${[head, ...rest].join(',')}}` });
  }
  return { records, pools };
}

/** A JSON metric file (YAML reads JSON), numbers in the filter written as the events write them. */
function metricFile(r: Rand, pools: Record<string, string[]>): string {
  const metrics: string[] = [];
  const count = 4 + Math.floor(r() * 4);
  for (let m = 0; m < count; m++) {
    const filter: string[] = [];
    if (r() < 0.6)
      filter.push(
        `"type": ${r() < 0.5 ? JSON.stringify(pick(r, TYPES)) : `[${JSON.stringify(pick(r, TYPES))}, ${JSON.stringify(pick(r, TYPES))}]`}`,
      );
    const filtered = new Set<string>();
    for (const f of ['k1', 'flag', 'K2'] as const) {
      if (r() < 0.25) {
        filtered.add(f);
        const accepted = Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, pools[f]!));
        filter.push(`${JSON.stringify(f)}: [${accepted.join(', ')}]`);
      }
    }
    // Conditions beside equality on any field: not (values as the events write them), numeric
    // bounds (from the values' own numbers, so that bounds fall among them), exists.
    for (const f of ['k1', 'k2', 'flag', 'w-x', 'amount'] as const) {
      if (filtered.has(f) || r() >= 0.2) continue;
      const c: string[] = [];
      const from = f === 'amount' ? Array.from({ length: 4 }, () => summableText(r)) : pools[f]!;
      const numbers = from.filter((t) => /^-?[0-9]/.test(t) && Number.isFinite(Number(t)));
      if (r() < 0.4) c.push(`"not": [${Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, from)).join(', ')}]`);
      for (const b of ['gt', 'gte', 'lt', 'lte']) if (numbers.length > 0 && r() < 0.25) c.push(`"${b}": ${pick(r, numbers)}`);
      if (r() < 0.25) c.push(`"exists": ${r() < 0.7}`);
      if (c.length === 0 || r() < 0.2) c.push(`"in": [${Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, from)).join(', ')}]`);
      filter.push(`${JSON.stringify(f)}: {${c.join(', ')}}`);
    }
    // One field, or a composite key of two or three (parts holding | and \ are in the pools).
    const keyFields = [...new Set(Array.from({ length: r() < 0.35 ? 2 + Math.floor(r() * 2) : 1 }, () => pick(r, ['type', ...FIELDS])))];
    const key = keyFields.length === 1 ? JSON.stringify(keyFields[0]) : JSON.stringify(keyFields);
    const value = r() < 0.7 ? 'amount' : r() < 0.5 ? pick(r, FIELDS) : undefined;
    // Percentile sketches of the value, at the default 1 % or another accuracy.
    const percentiles = value !== undefined && r() < 0.4 ? pick(r, ['true', '{"relativeAccuracy": 0.02}']) : undefined;
    const distinct = r() < 0.6 ? pick(r, ['type', ...FIELDS]) : undefined;
    const grans = ['minute', 'hour', 'day', '5m', '6h', '7d'].filter(() => r() < 0.4);
    metrics.push(
      `{"name": "m${m}", "filter": {${filter.join(', ')}}, "key": ${key}${value ? `, "value": ${JSON.stringify(value)}` : ''}${
        percentiles ? `, "percentiles": ${percentiles}` : ''
      }${
        distinct ? `, "distinct": ${JSON.stringify(distinct)}` : ''
      }, "granularities": ${JSON.stringify(grans.length > 0 ? grans : ['hour'])}, "allowedLateness": "1h"}`,
    );
  }
  return `{"version": 1, "metrics": [\n  ${metrics.join(',\n  ')}\n]}\n`;
}

describe('DuckDB and Spark compute the same batch views from the same definitions', () => {
  const dir = tempDir('lk-spark-diff-');
  // LK_TEST_KEEP=1 keeps the lake and both views for a look after a failure.
  afterAll(() => (process.env.LK_TEST_KEEP ? console.log(`kept ${dir.path}`) : dir.remove()));

  it(`every view row equal on generated events and metric files (seed ${SEED})`, async () => {
    console.log(`spark differential: seed ${SEED}, ${EVENTS} events; ${rerun}`);
    const r = seeded(SEED);
    const { records, pools } = generate(r);
    const text = metricFile(r, pools);
    const metrics = parseMetricDefinitions(text, 'generated.json');
    if (process.env.LK_TEST_VERBOSE) console.log(text);
    const lake = await lakeFromRecords(dir.path, 'events', 3, records, quiet);
    const common = { lake, version: 'v1', metrics, homePartitions: 3, logger: quiet };
    // Each engine publishes into a shared state of its own (a local folder), as `lk batch run` does.
    const duckState = localStateOptions(`${dir.path}/state-duckdb`);
    const sparkState = localStateOptions(`${dir.path}/state-spark`);
    expect((await recomputeBatchViews({ ...common, ...duckState })).published).toBe(true);
    expect((await recomputeWithSpark({ ...common, ...sparkState, spark: { master: 'local[2]' } })).published).toBe(true);
    const duck = await currentRows(duckState.state, 'v1');
    const spark = await currentRows(sparkState.state, 'v1');
    const where = `${rerun}\nmetric file:\n${text}`;
    expect(duck.rows.length, where).toBeGreaterThan(0);
    // Sums of `amount` (quarters) are exact in any order; of any other field, up to rounding.
    const rounded = new Set(metrics.metrics.filter((m) => m.value !== undefined && m.value !== 'amount').map((m) => m.name));
    expect(firstDifference(duck.rows, spark.rows, rounded), where).toBeUndefined();
    for (const k of ['cut', 'processingTimes', 'rows', 'rawEvents', 'uniqueEvents', 'misplacedEvents', 'lakeFiles', 'lakeBytes'] as const)
      expect(spark.manifest[k], `${k}; ${where}`).toEqual(duck.manifest[k]);
    expect(spark.manifest.engine).toBe('spark');
    expect(duck.manifest.engine).toBe('duckdb');
    // The generator reached what it means to: duplicates, misplaced records, sketches, several metrics.
    expect(duck.manifest.uniqueEvents).toBeLessThan(duck.manifest.rawEvents);
    expect(duck.manifest.misplacedEvents).toBeGreaterThan(0);
    console.log(
      `spark differential: ${duck.rows.length} rows equal (${metrics.metrics.length} metrics; ${duck.manifest.rawEvents} records, ${duck.manifest.uniqueEvents} unique); duckdb ${duck.manifest.durationMs} ms, spark ${spark.manifest.durationMs} ms`,
    );
  });
});
