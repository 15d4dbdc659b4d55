/**
 * One definition, two batch engines: generated events (every JSON number form as keys and filter
 * values, strings with escapes and Unicode, booleans, the string "1" beside the number 1, field
 * names differing only in case, duplicates, misplaced records) and generated metric definitions
 * (filters of every type, conditions (not, in, bounds, exists), one-field and composite keys,
 * values, percentile sketches (values at every bucket boundary of the table and one ulp either
 * side) and distinct fields on any field, any granularities) go
 * into one Delta table through the real lake writer; DuckDB and Spark recompute the views from
 * it, and every view row must be equal, column by column (Object.is: sums, sketches' bytes and
 * texts, counts, stamps), and so must the run records' counts and cuts. Twice on one lake: flat
 * events under a flat metric file, then, after more records written under a generated `event:`
 * section (ids at a path or `$key`, times at a path in a drawn format or `$timestamp`), a metric
 * file over nested paths; the first phase's records are then derived from their raw text, the
 * second's read from the columns the lake writer typed. One seed draws one event: section.
 *
 * The field `amount` holds multiples of 1/4 below 2^20 (written in many forms), so that every
 * summation order gives the same double, and its sums are compared exactly; a metric summing
 * another field (any number) has its sums compared up to rounding: the engines add in different
 * orders, and a sum is only defined up to rounding (docs/batch-layer.md).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { formatDuration } from '../../../../services/config/durations.ts';
import { partitionForKey } from '../../../../services/log/partitioner.ts';
import { bucketBoundaries } from '../../../../services/metrics/ddsketch.ts';
import { parseMetricDefinitions } from '../../../../services/metrics/definitions.ts';
import { logger } from '../../../../services/observability/logger.ts';
import { tempDir } from '../../../../test/helpers.ts';
import { localStateOptions } from '../../../../test/sharedState.ts';
import { recomputeBatchViews } from '../../../views/batchViews.ts';
import { recomputeWithSpark } from '../sparkViews.ts';
import type { LakeHandle } from '../../../../services/lake/lakeLocation.ts';
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
const PARTITIONS = 3;

/**
 * Session probes: a twin of some events, every field the same, at exactly `gapMs` or `gapMs - 1`
 * (or 0) before or after it, in the same partition (an id of its own whose record key lands
 * there), so that the session rule is compared where `>= gap` and `< gap` part. Drawn from a
 * random stream of their own: a seed draws the same events and metric files as without them.
 */
interface SessionProbes {
  r: Rand;
  gapMs: number;
  count: number;
}

/** A twin's id (and record key) of index `i` that the partitioner places in the partition of record key `key`. */
function twinId(i: number, key: string): string {
  const p = partitionForKey(key, PARTITIONS);
  for (let j = 0; ; j++) if (partitionForKey(`s${i}-${j}`, PARTITIONS) === p) return `s${i}-${j}`;
}

/** Random numbers as `r` drew them (the tape), once more: a twin drawn like its original. */
function replay(tape: readonly number[]): Rand {
  let i = 0;
  return () => tape[i++]!;
}
const TYPES = ['view', 'click', 'buy'];

/**
 * Two phases of records: flat events with some nested ones (which the flat model leaves out), then
 * mostly nested events (`section`'s time format), with duplicates of the first phase's ids.
 */
function generate(
  r: Rand,
  section: ReturnType<typeof eventSection>,
  pools: Record<string, string[]>,
  probes: SessionProbes,
): { first: TestRecord[]; second: TestRecord[] } {
  const start = Date.UTC(2026, 0, 1, 22, 0, 0);
  const sent: string[] = [];
  const phase = (n: number, from: number, nested: number): TestRecord[] => {
    const records: TestRecord[] = [];
    for (let i = from; i < from + n; i++) {
      const dup = sent.length > 0 && r() < 0.08;
      const id = dup ? pick(r, sent) : `e${i}`;
      sent.push(id);
      // About a day and a half from 22:00: minute, hour and day windows, few lake folders.
      const ts = start + Math.floor(r() * 30 * 3_600_000);
      // The record key: the id, another key (a misplaced record; under event.id: $key, another id), none or empty.
      const k = r();
      const key = k < 0.05 ? `other-${i}` : k < 0.07 && section.byKey ? pick(r, [null, '']) : id;
      // A twin for the session probes (not of a duplicate, nor of a record without a key: its partition is the point).
      const twin = !dup && key !== null && key !== '' && probes.r() < 0.12;
      const twinTs = ts + pick(probes.r, [1, -1]) * pick(probes.r, [probes.gapMs, probes.gapMs - 1, probes.gapMs, probes.gapMs - 1, 0]);
      const twinKey = twin ? twinId(i, key) : '';
      if (twin) probes.count++;
      if (r() < nested) {
        const tape: number[] = [];
        const taped = () => {
          const x = r();
          tape.push(x);
          return x;
        };
        records.push({ key, line: nestedLine(taped, id, ts, section.format, pools) });
        if (twin) records.push({ key: twinKey, line: nestedLine(replay(tape), twinKey, twinTs, section.format, pools) });
        continue;
      }
      const numericTs = r() < 0.5;
      const tsMember = (t: number) => `"ts":${numericTs ? t : JSON.stringify(new Date(t).toISOString())}`;
      const members = [`"id":${JSON.stringify(id)}`, `"type":${JSON.stringify(pick(r, TYPES))}`, tsMember(ts)];
      for (const f of FIELDS) {
        if (r() < 0.15) continue;
        const value = f === 'amount' ? summableText(r) : pick(r, pools[f]!);
        const name = r() < 0.05 && f === 'k1' ? '"\\u006b1"' : JSON.stringify(f);
        members.push(`${name}${pick(r, ['', ' ', '\t'])}:${pick(r, ['', ' '])}${value}`);
      }
      // Member order varies: the rules read by name, wherever a member is.
      const [head, ...rest] = members;
      rest.sort(() => r() - 0.5);
      records.push({ key, line: `{${[head, ...rest].join(',')}}` });
      if (twin) {
        const fields = rest.map((m) => (m === members[2] ? tsMember(twinTs) : m));
        records.push({ key: twinKey, line: `{${[`"id":${JSON.stringify(twinKey)}`, ...fields].join(',')}}` });
      }
    }
    return records;
  };
  const first = phase(EVENTS, 0, 0.2);
  return { first, second: phase(Math.floor(EVENTS / 2), EVENTS, 0.8) };
}

/** The fields a generated metric file reads, and the value texts its filters draw from. */
interface FieldSet {
  /** The field filtered by its type strings (TYPES). */
  type: string;
  /** Fields with equality filters, and with conditions (not, in, bounds, exists). */
  equal: readonly string[];
  conditioned: readonly string[];
  /** Key parts, values and distinct fields are drawn from these. */
  all: readonly string[];
  /** The value summed exactly (quarters: any order gives the same double). */
  exact: string;
  pools: Record<string, string[]>;
}

/** A JSON metric file (YAML reads JSON), numbers in the filter written as the events write them; `event` its event: section. */
function metricFile(r: Rand, set: FieldSet, sessions: readonly string[], event?: string): string {
  const metrics: string[] = [];
  const count = 4 + Math.floor(r() * 4);
  const q = JSON.stringify;
  for (let m = 0; m < count; m++) {
    const filter: string[] = [];
    if (r() < 0.6) filter.push(`${q(set.type)}: ${r() < 0.5 ? q(pick(r, TYPES)) : `[${q(pick(r, TYPES))}, ${q(pick(r, TYPES))}]`}`);
    const filtered = new Set<string>([set.type]);
    for (const f of set.equal) {
      if (r() < 0.25) {
        filtered.add(f);
        const accepted = Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, set.pools[f]!));
        filter.push(`${q(f)}: [${accepted.join(', ')}]`);
      }
    }
    // Conditions beside equality on any field: not (values as the events write them), numeric
    // bounds (from the values' own numbers, so that bounds fall among them), exists.
    for (const f of set.conditioned) {
      if (filtered.has(f) || r() >= 0.2) continue;
      const c: string[] = [];
      const from = f === set.exact || f === 'amount' ? Array.from({ length: 4 }, () => summableText(r)) : set.pools[f]!;
      const numbers = from.filter((t) => /^-?[0-9]/.test(t) && Number.isFinite(Number(t)));
      if (r() < 0.4) c.push(`"not": [${Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, from)).join(', ')}]`);
      for (const b of ['gt', 'gte', 'lt', 'lte']) if (numbers.length > 0 && r() < 0.25) c.push(`"${b}": ${pick(r, numbers)}`);
      if (r() < 0.25) c.push(`"exists": ${r() < 0.7}`);
      if (c.length === 0 || r() < 0.2) c.push(`"in": [${Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(r, from)).join(', ')}]`);
      filter.push(`${q(f)}: {${c.join(', ')}}`);
    }
    // One field, or a composite key of two or three (parts holding | and \ are in the pools).
    const keyFields = [...new Set(Array.from({ length: r() < 0.35 ? 2 + Math.floor(r() * 2) : 1 }, () => pick(r, [set.type, ...set.all])))];
    const key = keyFields.length === 1 ? q(keyFields[0]) : q(keyFields);
    // The first metric sketches the percentiles of a field of any numbers (bucket boundaries and
    // their neighbours among them), at the default 1 % or another accuracy; others may too.
    const value =
      m === 0
        ? pick(
            r,
            set.all.filter((f) => f !== set.exact),
          )
        : r() < 0.7
          ? set.exact
          : r() < 0.5
            ? pick(r, set.all)
            : undefined;
    const percentiles = value !== undefined && (m === 0 || r() < 0.4) ? pick(r, ['true', '{"relativeAccuracy": 0.02}']) : undefined;
    const distinct = r() < 0.6 ? pick(r, [set.type, ...set.all]) : undefined;
    const grans = ['minute', 'hour', 'day', '5m', '6h', '7d'].filter(() => r() < 0.4);
    metrics.push(
      `{"name": "m${m}", "filter": {${filter.join(', ')}}, "key": ${key}${value ? `, "value": ${q(value)}` : ''}${
        percentiles ? `, "percentiles": ${percentiles}` : ''
      }${distinct ? `, "distinct": ${q(distinct)}` : ''}, "granularities": ${q(grans.length > 0 ? grans : ['hour'])}, "allowedLateness": "1h"}`,
    );
  }
  metrics.push(...sessions);
  return `{"version": 1, ${event !== undefined ? `"event": ${event}, ` : ''}"metrics": [\n  ${metrics.join(',\n  ')}\n]}\n`;
}

/**
 * Session metrics (drawn from the probes' stream, `r`): the first with the probes' gap, the other
 * with a gap of its own; a key of one field or two, a value (the exact one mostly), a distinct
 * field, sometimes a type filter or a condition.
 */
function sessionMetrics(r: Rand, set: FieldSet, gapMs: number): string[] {
  const q = JSON.stringify;
  return [gapMs, (1 + Math.floor(r() * 120)) * 60_000 + (r() < 0.3 ? Math.floor(r() * 60_000) : 0)].map((gap, n) => {
    const filter: string[] = [];
    if (r() < 0.4) filter.push(`${q(set.type)}: ${q(pick(r, TYPES))}`);
    if (r() < 0.3) filter.push(`${q(pick(r, set.conditioned))}: {"exists": true}`);
    const keyFields = [...new Set(Array.from({ length: r() < 0.3 ? 2 : 1 }, () => pick(r, [set.type, ...set.all])))];
    const value = r() < 0.7 ? set.exact : r() < 0.5 ? pick(r, set.all) : undefined;
    const distinct = r() < 0.6 ? pick(r, [set.type, ...set.all]) : undefined;
    return `{"name": "s${n}", "filter": {${filter.join(', ')}}, "key": ${keyFields.length === 1 ? q(keyFields[0]) : q(keyFields)}${
      value ? `, "value": ${q(value)}` : ''
    }${distinct ? `, "distinct": ${q(distinct)}` : ''}, "session": {"gap": ${q(formatDuration(gap))}}, "allowedLateness": "1h"}`;
  });
}

const FLAT_SET = (pools: Record<string, string[]>): FieldSet => ({
  type: 'type',
  equal: ['k1', 'flag', 'K2'],
  conditioned: ['k1', 'k2', 'flag', 'w-x', 'amount'],
  all: FIELDS,
  exact: 'amount',
  pools,
});

// ---------------------------------------------------------------- nested events under an event: section

/**
 * The nested events' paths (a quoted name holding a dot beside the path through the object of that
 * name; a path that is also the prefix of another), and flat names.
 */
const NESTED_FIELDS = [
  'payload.city',
  'payload.vehicle',
  'payload.fare',
  'payload."user.id"',
  'payload.user.id',
  'payload.user',
  'k1',
  'amount',
] as const;
const TIME_FORMATS_DRAWN = ['auto', 'iso', 'epoch-ms', 'epoch-s', 'epoch-us'] as const;

/** An event: section: ids at a path or the record key, times at a path in a format or the record timestamp, a type path or none. */
function eventSection(r: Rand): {
  text: string;
  byKey: boolean;
  atTimestamp: boolean;
  format: (typeof TIME_FORMATS_DRAWN)[number];
  typed: boolean;
} {
  const byKey = r() < 0.3;
  const atTimestamp = r() < 0.2;
  const format = pick(r, TIME_FORMATS_DRAWN);
  const typed = r() < 0.6;
  const text = JSON.stringify({
    id: byKey ? '$key' : 'meta.id',
    time: atTimestamp ? '$timestamp' : 'meta.at',
    ...(atTimestamp ? {} : { timeFormat: format }),
    ...(typed ? { type: 'meta.kind' } : {}),
  });
  return { text, byKey, atTimestamp, format, typed };
}

/** The time `ts` (epoch ms) written in `format`, in one of its spellings; sometimes a value that is no time in it. */
function timeText(r: Rand, ts: number, format: (typeof TIME_FORMATS_DRAWN)[number]): string {
  const iso = () => {
    const kind = r();
    if (kind < 0.5) return JSON.stringify(new Date(ts).toISOString());
    if (kind < 0.7)
      return JSON.stringify(
        new Date(ts)
          .toISOString()
          .replace('T', ' ')
          .replace(/\.\d+Z$/, `.${digits(r, 1 + Math.floor(r() * 8))}Z`),
      );
    // The same instant in another zone: +HH:MM or +HHMM.
    const off = (Math.floor(r() * 28) - 14) * 30;
    const local = new Date(ts + off * 60_000).toISOString().slice(0, 23);
    const z = `${off < 0 ? '-' : '+'}${String(Math.floor(Math.abs(off) / 60)).padStart(2, '0')}${r() < 0.5 ? ':' : ''}${String(Math.abs(off) % 60).padStart(2, '0')}`;
    return JSON.stringify(local + z);
  };
  if (r() < 0.06)
    return pick(r, [
      '"2026-02-30T00:00:00Z"',
      '"2026-01-02T24:00:00Z"',
      '"2026-01-02T10:00:00"',
      '"yesterday"',
      'true',
      '1.5',
      '"1767225600 "',
      '{"t": 1}',
      'null',
    ]);
  switch (format) {
    case 'auto':
      return r() < 0.5 ? iso() : pick(r, [String(ts), `${ts / 1000}e3`, `${ts}.0`]);
    case 'iso':
      return iso();
    case 'epoch-ms': {
      const t = pick(r, [String(ts), `${ts}.${digits(r, 3)}`, `${ts / 1000}e3`, `-${ts}`.slice(1)]);
      return r() < 0.3 ? JSON.stringify(t) : t;
    }
    case 'epoch-s': {
      const t = pick(r, [String(Math.floor(ts / 1000)), (ts / 1000).toFixed(3), `${(ts / 1000).toFixed(3)}${digits(r, 4)}`, `${ts}e-3`]);
      return r() < 0.3 ? JSON.stringify(t) : t;
    }
    case 'epoch-us': {
      // Microseconds beyond 2^53: only exact digits keep them.
      const t = pick(r, [`${ts}${digits(r, 3)}`, `${ts}${digits(r, 3)}.${digits(r, 2)}`, `${ts}e3`]);
      return r() < 0.3 ? JSON.stringify(t) : t;
    }
  }
}

/** A nested event: meta (id, time, kind) and payload, with members missing, null, objects or arrays where scalars are read. */
function nestedLine(r: Rand, id: string, ts: number, format: (typeof TIME_FORMATS_DRAWN)[number], pools: Record<string, string[]>): string {
  const odd = () => pick(r, ['null', '{"a": 1}', '[1, "x"]', '{}']);
  const member = (name: string, value: string) => (r() < 0.08 ? '' : `${JSON.stringify(name)}: ${r() < 0.05 ? odd() : value}`);
  const meta = [
    member('id', r() < 0.1 ? pick(r, ['1000', '1e3', '"  "', '"\\\\x41"', '7.50']) : JSON.stringify(id)),
    member('at', timeText(r, ts, format)),
    member('kind', r() < 0.08 ? pick(r, ['7', '" "', '"view"']) : JSON.stringify(pick(r, TYPES))),
  ].filter((m) => m !== '');
  const payload = [
    member('city', pick(r, pools.k1!)),
    member('vehicle', pick(r, pools.k2!)),
    member('fare', summableText(r)),
    member('user.id', pick(r, pools['w-x']!)),
    // payload.user: an object holding id in most events, a scalar (a field of its own) in some.
    member('user', r() < 0.2 ? odd() : r() < 0.2 ? pick(r, pools.K2!) : `{"id": ${pick(r, pools.K2!)}}`),
  ].filter((m) => m !== '');
  const members = [`"meta": {${meta.join(', ')}}`, `"payload": ${r() < 0.05 ? odd() : `{${payload.join(', ')}}`}`];
  if (r() < 0.5) members.push(`"k1": ${pick(r, pools.k1!)}`);
  if (r() < 0.5) members.push(`"amount": ${summableText(r)}`);
  members.sort(() => r() - 0.5);
  return `{${members.join(', ')}}`;
}

const NESTED_SET = (pools: Record<string, string[]>): FieldSet => ({
  type: 'meta.kind',
  equal: ['payload.city', 'payload.user.id', 'k1'],
  conditioned: ['payload.city', 'payload.vehicle', 'payload."user.id"', 'payload.fare', 'amount'],
  all: NESTED_FIELDS,
  exact: 'payload.fare',
  pools: {
    'payload.city': pools.k1!,
    'payload.vehicle': pools.k2!,
    'payload."user.id"': pools['w-x']!,
    'payload.user.id': pools.K2!,
    'payload.user': pools.K2!,
    k1: pools.k1!,
    amount: [],
  },
});

describe('DuckDB and Spark compute the same batch views from the same definitions', () => {
  const dir = tempDir('lk-spark-diff-');
  // LK_TEST_KEEP=1 keeps the lake and both views for a look after a failure.
  afterAll(() => (process.env.LK_TEST_KEEP ? console.log(`kept ${dir.path}`) : dir.remove()));

  /** Both engines recompute `version` of the lake, each into a shared state of its own (as `lk batch run` does); every row and count must be equal. */
  async function bothEngines(
    lake: LakeHandle,
    version: string,
    text: string,
  ): Promise<{ rows: number; sessions: number; metrics: number; raw: number; unique: number; ms: number[] }> {
    const metrics = parseMetricDefinitions(text, `${version}.json`);
    if (process.env.LK_TEST_VERBOSE) console.log(text);
    const common = { lake, version, metrics, homePartitions: PARTITIONS, logger: quiet };
    const duckState = localStateOptions(`${dir.path}/state-duckdb`);
    const sparkState = localStateOptions(`${dir.path}/state-spark`);
    expect((await recomputeBatchViews({ ...common, ...duckState })).published).toBe(true);
    expect((await recomputeWithSpark({ ...common, ...sparkState, spark: { master: 'local[2]' } })).published).toBe(true);
    const duck = await currentRows(duckState.state, version);
    const spark = await currentRows(sparkState.state, version);
    const where = `${rerun}\nmetric file:\n${text}`;
    expect(duck.rows.length, where).toBeGreaterThan(0);
    // Sums of the quarters field are exact in any order; of any other field, up to rounding.
    const exact = metrics.event.flat ? 'amount' : 'payload.fare';
    const rounded = new Set(metrics.metrics.filter((m) => m.value !== undefined && m.value !== exact).map((m) => m.name));
    expect(firstDifference(duck.rows, spark.rows, rounded), where).toBeUndefined();
    for (const k of ['cut', 'processingTimes', 'rows', 'rawEvents', 'uniqueEvents', 'misplacedEvents', 'lakeFiles', 'lakeBytes'] as const)
      expect(spark.manifest[k], `${k}; ${where}`).toEqual(duck.manifest[k]);
    expect(spark.manifest.engine).toBe('spark');
    expect(duck.manifest.engine).toBe('duckdb');
    // The generator reached what it means to: duplicates, misplaced records (none when the id is
    // the record key: the partitioner placed the record by it).
    expect(duck.manifest.uniqueEvents, where).toBeLessThan(duck.manifest.rawEvents);
    if (metrics.event.id !== '$key') expect(duck.manifest.misplacedEvents, where).toBeGreaterThan(0);
    // Sessions: of one event and of several (event times drawn by the test; under $timestamp every
    // event has the time it was produced at, and a key's events are one session).
    const sessionRows = duck.rows.filter((row) => row.granularity === 'session');
    expect(sessionRows.length, where).toBeGreaterThan(0);
    if (metrics.event.time !== '$timestamp')
      expect(
        sessionRows.some((row) => row.window_end === row.window_start) &&
          sessionRows.some((row) => (row.window_end as number) > (row.window_start as number)),
        where,
      ).toBe(true);
    return {
      rows: duck.rows.length,
      sessions: sessionRows.length,
      metrics: metrics.metrics.length,
      raw: duck.manifest.rawEvents,
      unique: duck.manifest.uniqueEvents,
      ms: [duck.manifest.durationMs, spark.manifest.durationMs],
    };
  }

  it(`every view row equal on generated events and metric files, flat and under an event: section (seed ${SEED})`, async () => {
    console.log(`spark differential: seed ${SEED}, ${EVENTS} + ${Math.floor(EVENTS / 2)} records; ${rerun}`);
    const r = seeded(SEED);
    // The event: section first: a seed names it whatever the rest draws.
    const section = eventSection(r);
    const pools: Record<string, string[]> = {
      k1: valuePool(r, 12),
      k2: valuePool(r, 40),
      K2: valuePool(r, 5),
      flag: ['true', 'false', '"true"', '1', '"1"', '1.0', '0'],
      'w-x': valuePool(r, 300),
    };
    // The session probes' stream, and their gap: 1 s to 40 min, sometimes with milliseconds.
    const rs = seeded(SEED ^ 0x5e5510);
    const gapMs = (1 + Math.floor(rs() * 2400)) * 1000 + (rs() < 0.3 ? Math.floor(rs() * 1000) : 0);
    const probes: SessionProbes = { r: rs, gapMs, count: 0 };
    const { first, second } = generate(r, section, pools, probes);
    const flatFile = metricFile(r, FLAT_SET(pools), sessionMetrics(rs, FLAT_SET(pools), gapMs));
    const mappedFile = metricFile(r, NESTED_SET(pools), sessionMetrics(rs, NESTED_SET(pools), gapMs), section.text);
    console.log(
      `spark differential: session gap ${formatDuration(gapMs)}, ${probes.count} events with a twin at gap, gap - 1 ms or 0 from them`,
    );
    // Phase 1: the lake writer types flat events (nested records are no flat event); the flat version.
    const lake = await lakeFromRecords(dir.path, 'events', PARTITIONS, first, quiet);
    // LK_TEST_PHASE=event compares only the second phase (the lake is written the same way).
    const flat = process.env.LK_TEST_PHASE === 'event' ? undefined : await bothEngines(lake, 'v1', flatFile);
    if (flat)
      console.log(
        `spark differential (flat): ${flat.rows} rows equal, ${flat.sessions} of them sessions (${flat.metrics} metrics; ${flat.raw} records, ${flat.unique} unique); duckdb ${flat.ms[0]} ms, spark ${flat.ms[1]} ms`,
      );
    // Phase 2: more records, written under the event: section's mapping (typed under it); the
    // first phase's records are derived from their raw text, the record key and timestamp.
    if (process.env.LK_TEST_VERBOSE) console.log(mappedFile);
    await lakeFromRecords(dir.path, 'events', PARTITIONS, second, quiet, parseMetricDefinitions(mappedFile, 'v2.json').event);
    const mapped = await bothEngines(lake, 'v2', mappedFile);
    console.log(
      `spark differential (event: ${section.text}): ${mapped.rows} rows equal, ${mapped.sessions} of them sessions (${mapped.metrics} metrics; ${mapped.raw} events, ${mapped.unique} unique); duckdb ${mapped.ms[0]} ms, spark ${mapped.ms[1]} ms`,
    );
  });
});
