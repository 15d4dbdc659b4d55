/**
 * The analytics questions, answered from one ViewSnapshot without any GraphQL: the resolvers
 * call these, and so does the benchmark's in-memory baseline.
 *
 * Ranges are half-open: a window belongs to [from, to) when its start is in it.
 */
import { GRANULARITY_MS, type Granularity, type MetricDefinition } from '../services/metrics/definitions.ts';
import { HyperLogLog } from '../services/metrics/hll.ts';
import { SOURCE_SPEED, nullable, type MergedWindows } from './views/mergeRule.ts';
import type { ViewSnapshot } from './views/versionView.ts';

/** Lets long loops give up once the request's time budget is spent. */
export interface Deadline {
  check(): void;
}

export const NO_DEADLINE: Deadline = { check() {} };

export type GranularityName = 'MINUTE' | 'HOUR' | 'DAY';
const GRANULARITY_NAME: Record<Granularity, GranularityName> = { minute: 'MINUTE', hour: 'HOUR', day: 'DAY' };

/** One merged window as the API reports it (the GraphQL WindowValue, plus what its resolvers need). */
export interface WindowValue {
  metric: string;
  version: string;
  key: string;
  granularity: GranularityName;
  windowStart: number;
  windowEnd: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  source: 'BATCH' | 'SPEED';
  provisional: boolean;
  processingTime: number;
  batchRunId: string | null;
}

/** Builds the API value of merged window i in one allocation (one object shape: fast to serialize). */
export function windowValueAt(
  m: MergedWindows,
  i: number,
  metric: string,
  version: string,
  key: string,
  granularity: Granularity,
  batchRunId: string | null,
): WindowValue {
  const start = m.starts[i]!;
  return {
    metric,
    version,
    key,
    granularity: GRANULARITY_NAME[granularity],
    windowStart: start,
    windowEnd: start + GRANULARITY_MS[granularity],
    count: m.counts[i]!,
    sum: nullable(m.sums[i]!),
    min: nullable(m.mins[i]!),
    max: nullable(m.maxs[i]!),
    distinct: nullable(m.distincts[i]!),
    source: m.sources[i] === SOURCE_SPEED ? 'SPEED' : 'BATCH',
    provisional: m.provisional[i] === 1,
    processingTime: m.procs[i]!,
    batchRunId,
  };
}

export function seriesWindows(
  view: ViewSnapshot,
  metric: string,
  granularity: Granularity,
  key: string,
  from: number,
  to: number,
): WindowValue[] {
  const m = view.merged(metric, granularity, key);
  if (!m) return [];
  const lo = m.lowerBound(from);
  const hi = m.lowerBound(to);
  const runId = view.batch?.manifest.runId ?? null;
  const out = new Array<WindowValue>(hi - lo);
  for (let i = lo; i < hi; i++) out[i - lo] = windowValueAt(m, i, metric, view.version, key, granularity, runId);
  return out;
}

/**
 * One key's merged windows as columns (the GraphQL SeriesColumns): the same windows, in the same
 * order, as `seriesWindows`, but a handful of arrays instead of one object per window, which is
 * what a chart draws and far less to build and to serialize (24 h of minute windows: 1,440
 * objects of 6+ fields against a few arrays). `windowIndex` states the window starts as small
 * integers from `windowBase`: serializing a 13-digit epoch-ms double costs several times a small
 * integer, and the times are most of a chart's answer.
 */
export interface SeriesColumnsValue {
  metric: string;
  version: string;
  key: string;
  granularity: GranularityName;
  from: number;
  to: number;
  batchRunId: string | null;
  /** Number of windows (the length of every column). */
  windows: number;
  /** Window length, ms. */
  windowMs: number;
  /** Start of the range's first window: `from` rounded up to a window boundary (epoch ms). */
  windowBase: number;
  /** Window starts, epoch ms. */
  windowStart: number[];
  /** (windowStart - windowBase) / windowMs. */
  windowIndex: number[];
  count: number[];
  sum: (number | null)[];
  min: (number | null)[];
  max: (number | null)[];
  distinct: (number | null)[];
  source: ('BATCH' | 'SPEED')[];
  provisional: boolean[];
  /** Epoch ms. */
  processingTime: number[];
  /** The latest of `processingTime` (null without windows). */
  latestProcessingTime: number | null;
}

function nullableColumn(values: Float64Array, lo: number, hi: number): (number | null)[] {
  const out = new Array<number | null>(hi - lo);
  for (let i = lo; i < hi; i++) out[i - lo] = nullable(values[i]!);
  return out;
}

export function seriesColumns(
  view: ViewSnapshot,
  metric: string,
  granularity: Granularity,
  key: string,
  from: number,
  to: number,
): SeriesColumnsValue {
  const m = view.merged(metric, granularity, key);
  const lo = m ? m.lowerBound(from) : 0;
  const hi = m ? m.lowerBound(to) : 0;
  const n = hi - lo;
  const windowMs = GRANULARITY_MS[granularity];
  const windowBase = Math.ceil(from / windowMs) * windowMs;
  const out: SeriesColumnsValue = {
    metric,
    version: view.version,
    key,
    granularity: GRANULARITY_NAME[granularity],
    from,
    to,
    batchRunId: view.batch?.manifest.runId ?? null,
    windows: n,
    windowMs,
    windowBase,
    windowStart: new Array<number>(n),
    windowIndex: new Array<number>(n),
    count: new Array<number>(n),
    sum: [],
    min: [],
    max: [],
    distinct: [],
    source: new Array<'BATCH' | 'SPEED'>(n),
    provisional: new Array<boolean>(n),
    processingTime: new Array<number>(n),
    latestProcessingTime: null,
  };
  if (!m) return out;
  let latest = -Infinity;
  // Copied out in one synchronous pass: the cached merged windows are updated in place as speed
  // rows arrive, and the answer must be one consistent cut of them.
  for (let i = lo; i < hi; i++) {
    const j = i - lo;
    out.windowStart[j] = m.starts[i]!;
    out.windowIndex[j] = (m.starts[i]! - windowBase) / windowMs;
    out.count[j] = m.counts[i]!;
    out.source[j] = m.sources[i] === SOURCE_SPEED ? 'SPEED' : 'BATCH';
    out.provisional[j] = m.provisional[i] === 1;
    out.processingTime[j] = m.procs[i]!;
    if (m.procs[i]! > latest) latest = m.procs[i]!;
  }
  out.latestProcessingTime = n > 0 ? latest : null;
  out.sum = nullableColumn(m.sums, lo, hi);
  out.min = nullableColumn(m.mins, lo, hi);
  out.max = nullableColumn(m.maxs, lo, hi);
  out.distinct = nullableColumn(m.distincts, lo, hi);
  return out;
}

export interface KeyTotal {
  key: string;
  count: number;
  sum: number | null;
  windows: number;
  /** Windows of the key in the range whose answer is provisional (MergedWindow.provisional). */
  provisionalWindows: number;
}

export function topKeys(
  view: ViewSnapshot,
  metric: string,
  granularity: Granularity,
  from: number,
  to: number,
  limit: number,
  deadline: Deadline = NO_DEADLINE,
): KeyTotal[] {
  const totals: KeyTotal[] = [];
  let n = 0;
  for (const key of view.keys(metric, granularity)) {
    if ((++n & 255) === 0) deadline.check();
    const m = view.merged(metric, granularity, key);
    if (!m) continue;
    const lo = m.lowerBound(from);
    const hi = m.lowerBound(to);
    if (hi === lo) continue;
    let count = 0;
    let sum = NaN;
    let provisional = 0;
    for (let i = lo; i < hi; i++) {
      count += m.counts[i]!;
      const s = m.sums[i]!;
      if (!Number.isNaN(s)) sum = Number.isNaN(sum) ? s : sum + s;
      provisional += m.provisional[i]!;
    }
    totals.push({ key, count, sum: Number.isNaN(sum) ? null : sum, windows: hi - lo, provisionalWindows: provisional });
  }
  // Ties broken by key so that the answer is deterministic.
  totals.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return totals.slice(0, limit);
}

/**
 * The granularity a total rolls up: the coarsest one of the metric whose windows tile
 * [from, to) exactly (both ends on a window boundary), else the finest one the metric has.
 */
export function totalGranularity(def: MetricDefinition, from: number, to: number): Granularity {
  const bySize = [...def.granularities].sort((a, b) => GRANULARITY_MS[b] - GRANULARITY_MS[a]);
  for (const g of bySize) {
    const size = GRANULARITY_MS[g];
    if (from % size === 0 && to % size === 0) return g;
  }
  return bySize[bySize.length - 1]!;
}

export interface TotalValue {
  metric: string;
  key: string | null;
  granularity: Granularity;
  from: number;
  to: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  windows: number;
  batchWindows: number;
  speedWindows: number;
  provisionalWindows: number;
  keys: number;
  latestProcessingTime: number | null;
}

export function total(
  view: ViewSnapshot,
  def: MetricDefinition,
  key: string | null,
  from: number,
  to: number,
  granularity: Granularity,
  deadline: Deadline = NO_DEADLINE,
): TotalValue {
  const out: TotalValue = {
    metric: def.name,
    key,
    granularity,
    from,
    to,
    count: 0,
    sum: null,
    min: null,
    max: null,
    distinct: null,
    windows: 0,
    batchWindows: 0,
    speedWindows: 0,
    provisionalWindows: 0,
    keys: 0,
    latestProcessingTime: null,
  };
  let sum = NaN;
  let min = NaN;
  let max = NaN;
  let proc = -Infinity;
  // Distinct over a range is a sketch merge: adding per-window estimates would count a user
  // seen in two windows twice.
  const sketch = def.distinct !== undefined ? new HyperLogLog() : null;
  const keys = key === null ? view.keys(def.name, granularity) : [key];
  let n = 0;
  for (const k of keys) {
    if ((++n & 255) === 0) deadline.check();
    const m = view.merged(def.name, granularity, k);
    if (!m) continue;
    const lo = m.lowerBound(from);
    const hi = m.lowerBound(to);
    if (hi > lo) out.keys++;
    for (let i = lo; i < hi; i++) {
      out.count += m.counts[i]!;
      const s = m.sums[i]!;
      if (!Number.isNaN(s)) sum = Number.isNaN(sum) ? s : sum + s;
      const mn = m.mins[i]!;
      if (!Number.isNaN(mn) && !(mn >= min)) min = mn;
      const mx = m.maxs[i]!;
      if (!Number.isNaN(mx) && !(mx <= max)) max = mx;
      if (m.procs[i]! > proc) proc = m.procs[i]!;
      if (m.sources[i] === SOURCE_SPEED) out.speedWindows++;
      else out.batchWindows++;
      out.provisionalWindows += m.provisional[i]!;
      const h = m.sketches?.[i];
      if (sketch && h) sketch.merge(h);
    }
    out.windows += hi - lo;
  }
  out.sum = Number.isNaN(sum) ? null : sum;
  out.min = Number.isNaN(min) ? null : min;
  out.max = Number.isNaN(max) ? null : max;
  out.distinct = sketch ? sketch.estimate() : null;
  out.latestProcessingTime = proc === -Infinity ? null : proc;
  return out;
}
