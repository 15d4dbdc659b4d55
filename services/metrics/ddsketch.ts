/**
 * The bucket rule of a DDSketch-style relative-error sketch (issue 20's percentiles), once for
 * both engines. Not yet wired into the views: this is the rule the speed layer's sketches and the
 * batch layer's SQL will share.
 *
 * With relative accuracy a (1 % by default) and gamma = (1 + a) / (1 - a), bucket i holds the
 * positive values in (gamma^(i-1), gamma^i], and its estimate 2 gamma^i / (gamma + 1) is within a
 * relative error a of every value in it. Computing i as ceil(log(x) / log(gamma)) in each engine
 * would lean on two libm implementations agreeing bit for bit at every boundary, which nothing
 * promises. So the boundaries are one table, computed here once (`bucketBoundaries`), and both
 * engines only compare doubles with it:
 * - JavaScript: the float's binary exponent (read from its bits, exact) picks the first table
 *   entry at or above 2^exponent, then a short scan (at most log(2) / log(gamma) + 1 entries,
 *   36 at 1 %) finds the smallest boundary >= x;
 * - DuckDB: an ASOF join of the values with the same table, emitted as literal doubles in their
 *   shortest round-trip text (which DuckDB reads back to the same double), on value <= boundary.
 * Values below the table's first boundary share its bucket, values above its last share the last
 * one (the relative accuracy is stated for [MIN_INDEXED, MAX_INDEXED]); negative values use the
 * buckets of their magnitude, negated (index -i - 1 ... kept apart by sign); zero is bucket ZERO.
 * `__tests__/ddsketch.differential.spec.ts` holds the engines to the same bucket at every
 * boundary, one ulp either side, and on generated values.
 */

export const DEFAULT_RELATIVE_ACCURACY = 0.01;
/** Positive values the buckets index with the stated accuracy (below and above share the end buckets). */
export const MIN_INDEXED = 1e-9;
export const MAX_INDEXED = 1e15;

export interface BucketTable {
  readonly relativeAccuracy: number;
  readonly gamma: number;
  /** Index of boundaries[0]: boundaries[k] = gamma^(firstIndex + k), computed once here. */
  readonly firstIndex: number;
  readonly boundaries: Float64Array;
  /** Per binary exponent e (offset by EXPONENT_OFFSET): the first k with boundaries[k] >= 2^e. */
  readonly firstAtOrAbove: Int32Array;
}

const EXPONENT_OFFSET = 1100;
const tables = new Map<number, BucketTable>();

/** The boundary table of a relative accuracy (cached: both engines read the same one). */
export function bucketBoundaries(relativeAccuracy = DEFAULT_RELATIVE_ACCURACY): BucketTable {
  let t = tables.get(relativeAccuracy);
  if (t) return t;
  if (!(relativeAccuracy > 0 && relativeAccuracy < 0.5)) throw new Error(`relative accuracy must be in (0, 0.5), got ${relativeAccuracy}`);
  const gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
  const firstIndex = Math.floor(Math.log(MIN_INDEXED) / Math.log(gamma));
  const lastIndex = Math.ceil(Math.log(MAX_INDEXED) / Math.log(gamma));
  // Math.pow's last bit may differ between platforms, but it is computed here only: the table,
  // not the function, is the definition both engines read.
  const boundaries = new Float64Array(lastIndex - firstIndex + 1);
  for (let k = 0; k < boundaries.length; k++) boundaries[k] = Math.pow(gamma, firstIndex + k);
  const firstAtOrAbove = new Int32Array(2 * EXPONENT_OFFSET);
  let k = 0;
  for (let e = -EXPONENT_OFFSET; e < EXPONENT_OFFSET; e++) {
    const p = Math.pow(2, e);
    while (k < boundaries.length && boundaries[k]! < p) k++;
    firstAtOrAbove[e + EXPONENT_OFFSET] = k;
  }
  t = { relativeAccuracy, gamma, firstIndex, boundaries, firstAtOrAbove };
  tables.set(relativeAccuracy, t);
  return t;
}

/** Bucket of zero (and of -0). */
export const ZERO_BUCKET = 0;

const bits = new DataView(new ArrayBuffer(8));

/** The binary exponent of a positive finite double: 2^e <= x < 2^(e+1), exact (from its bits). */
function exponentOf(x: number): number {
  bits.setFloat64(0, x);
  const biased = (bits.getUint16(0) >>> 4) & 0x7ff;
  if (biased !== 0) return biased - 1023;
  // Subnormal: below the table anyway.
  return -1074;
}

/**
 * The bucket of a finite value: ZERO_BUCKET for 0, i + 1 for a positive value in bucket i of the
 * table's indexing shifted to start at 1, and the negation for a negative value, so that the key
 * is one signed integer with 0 for zero.
 */
export function bucketOf(x: number, table: BucketTable = bucketBoundaries()): number {
  if (x === 0) return ZERO_BUCKET;
  const magnitude = x < 0 ? -x : x;
  const b = table.boundaries;
  let k: number;
  if (magnitude <= b[0]!) k = 0;
  else if (magnitude > b[b.length - 1]!) k = b.length - 1;
  else {
    k = table.firstAtOrAbove[Math.max(0, exponentOf(magnitude) + EXPONENT_OFFSET)]!;
    // firstAtOrAbove[e] is the first boundary >= 2^e <= magnitude: step back if the one before
    // already holds it (not needed by construction), then forward to the smallest boundary >= x.
    while (k > 0 && b[k - 1]! >= magnitude) k--;
    while (b[k]! < magnitude) k++;
  }
  const key = k + 1;
  return x < 0 ? -key : key;
}

/** The value a bucket stands for: within the relative accuracy of every value in it. */
export function bucketValue(bucket: number, table: BucketTable = bucketBoundaries()): number {
  if (bucket === ZERO_BUCKET) return 0;
  const k = Math.abs(bucket) - 1;
  const upper = table.boundaries[k]!;
  const estimate = (2 * upper) / (table.gamma + 1);
  return bucket < 0 ? -estimate : estimate;
}

/**
 * SQL: the boundary table as a VALUES list (k, boundary), each boundary in its shortest
 * round-trip text so that DuckDB reads the same double.
 */
export function boundaryTableSql(table: BucketTable = bucketBoundaries()): string {
  const rows: string[] = [];
  table.boundaries.forEach((b, k) => rows.push(`(${k}, CAST('${String(b)}' AS DOUBLE))`));
  return `(SELECT * FROM (VALUES ${rows.join(', ')}) AS lk_ddb(k, b))`;
}

/**
 * SQL selecting `bucketOf` of the DOUBLE column `value` of `source` (a table or subquery with the
 * column `id` to join back by): `SELECT id, bucket FROM ...`. The positive magnitudes find their
 * smallest boundary >= x with an ASOF join; zero, negatives and the ends as in bucketOf.
 */
export function bucketSelectSql(source: string, id: string, value: string, table: BucketTable = bucketBoundaries()): string {
  const last = table.boundaries.length - 1;
  const first = String(table.boundaries[0]!);
  const top = String(table.boundaries[last]!);
  return `SELECT s.${id} AS id, CASE
      WHEN s.${value} = 0 THEN ${ZERO_BUCKET}
      ELSE sign(s.${value})::INTEGER * (CASE
        WHEN abs(s.${value}) <= CAST('${first}' AS DOUBLE) THEN 1
        WHEN abs(s.${value}) > CAST('${top}' AS DOUBLE) THEN ${last + 1}
        ELSE t.k + 1 END) END AS bucket
    FROM (SELECT *, abs(${value}) AS lk_m FROM ${source}) s
    ASOF LEFT JOIN ${boundaryTableSql(table)} t ON s.lk_m <= t.b`;
}

// ---------------------------------------------------------------- the sketch of a window

/**
 * A window's sketch: bucket (bucketOf) -> count. Its text, the form view rows, checkpoints and
 * batch snapshots carry, is `bucket:count` pairs in ascending bucket order joined by commas
 * ("-3:1,0:2,17:5"), written the same by both engines (`sketchText`, `sketchTextSql`) so that
 * equal sketches are equal strings. Signed buckets ascend with the values they stand for
 * (negatives are -key, growing in magnitude with key), so the text's order is the values' order.
 */
export type ValueSketch = Map<number, number>;

export function sketchText(sketch: ValueSketch): string {
  return [...sketch.keys()]
    .sort((a, b) => a - b)
    .map((b) => `${b}:${sketch.get(b)!}`)
    .join(',');
}

const PAIR = /^(-?\d+):(\d+)$/;

/** Parses a sketch's text (throws on anything else: it is read back from storage and topics). */
export function parseSketch(text: string): ValueSketch {
  const out: ValueSketch = new Map();
  if (text === '') return out;
  for (const pair of text.split(',')) {
    const m = PAIR.exec(pair);
    if (!m) throw new Error(`not a percentile sketch pair: ${JSON.stringify(pair.slice(0, 40))}`);
    const b = Number(m[1]);
    out.set(b, (out.get(b) ?? 0) + Number(m[2]));
  }
  return out;
}

/** Adds `from`'s counts into `into` (the merge of two windows' or two partitions' sketches). */
export function mergeSketch(into: ValueSketch, from: ValueSketch): ValueSketch {
  for (const [b, c] of from) into.set(b, (into.get(b) ?? 0) + c);
  return into;
}

/**
 * The p-quantile (0 <= p <= 1) of the sketched values: the value of the bucket holding the value
 * of rank floor(p * (n - 1)) in ascending order (0-based), so within the relative accuracy of
 * that exact value (for magnitudes in [MIN_INDEXED, MAX_INDEXED]). Null for an empty sketch.
 */
export function sketchQuantile(sketch: ValueSketch, p: number, table: BucketTable): number | null {
  let n = 0;
  for (const c of sketch.values()) n += c;
  if (n === 0) return null;
  const rank = Math.floor(p * (n - 1));
  let seen = 0;
  for (const b of [...sketch.keys()].sort((x, y) => x - y)) {
    seen += sketch.get(b)!;
    if (seen > rank) return bucketValue(b, table);
  }
  return null;
}

/**
 * SQL: the aggregate writing `sketchText` of a group of (bucket, count) rows, one row per bucket
 * (the INTEGER column `bucket`, the BIGINT column `count`), in ascending bucket order.
 */
export function sketchTextSql(bucket: string, count: string): string {
  return `string_agg(${bucket}::VARCHAR || ':' || ${count}::VARCHAR, ',' ORDER BY ${bucket})`;
}
