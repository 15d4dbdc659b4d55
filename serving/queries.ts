/**
 * The analytics questions, answered from one ViewSnapshot without any GraphQL: the resolvers
 * call these, and so does the benchmark's in-memory baseline.
 *
 * Ranges are half-open: a window belongs to [from, to) when its start is in it.
 */
import { mergeSketch, type ValueSketch } from '../services/metrics/ddsketch.ts';
import { GRANULARITIES, granularityMs, type Granularity, type MetricDefinition } from '../services/metrics/definitions.ts';
import { windowShape, windowStartAtOrAfter } from '../services/metrics/windowStart.ts';
import { HyperLogLog } from '../services/metrics/hll.ts';
import { SOURCE_SPEED, nullable, type MergedWindows } from './views/mergeRule.ts';
import type { ViewSnapshot } from './views/versionView.ts';

/** Lets long loops give up once the request's time budget is spent. */
export interface Deadline {
  check(): void;
}

export const NO_DEADLINE: Deadline = { check() {} };

/**
 * A loop over every key, written as a generator that pauses every KEYS_PER_STEP keys (after
 * checking its deadline). The resolvers run it under the request's execution budget, which gives
 * the event loop back between slices (serving/graphql/executionBudget.ts `steps`); everything else
 * (the CLI, the tests) runs it straight through with `runSteps`. The answer is the same.
 */
export type Steps<T> = Generator<void, T, void>;
export const KEYS_PER_STEP = 256;

export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * A granularity as the API names it: `MINUTE`, `HOUR`, `DAY` (the GraphQL enum values of before),
 * or the duration of any other size as the metric file declares it (`5m`, `15m`, `6h`, `7d`).
 */
export type GranularityName = string;

export function granularityName(g: Granularity): GranularityName {
  return (GRANULARITIES as readonly string[]).includes(g) ? g.toUpperCase() : g;
}

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
  /** sum / count (null without a sum): derived from the merged sum and count, as everywhere a sum is. */
  avg: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  /** The window's percentile sketch (GraphQL's p50 ... percentile(p) read it); null without `percentiles`. */
  valueSketch: ValueSketch | null;
  source: 'BATCH' | 'SPEED';
  provisional: boolean;
  processingTime: number;
  batchRunId: string | null;
}

/** The mean per event counted: sum / count, null without a sum (or without events). */
export function avgOf(sum: number | null, count: number): number | null {
  return sum === null || count === 0 ? null : sum / count;
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
    granularity: granularityName(granularity),
    windowStart: start,
    windowEnd: start + granularityMs(granularity),
    count: m.counts[i]!,
    sum: nullable(m.sums[i]!),
    avg: avgOf(nullable(m.sums[i]!), m.counts[i]!),
    min: nullable(m.mins[i]!),
    max: nullable(m.maxs[i]!),
    distinct: nullable(m.distincts[i]!),
    valueSketch: m.valueSketches ? (m.valueSketches[i] ?? null) : null,
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
  avg: (number | null)[];
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

// Columns are built with push, never `new Array(n)`: a pre-sized array stays "holey" in V8, and
// JSON.stringify writes a holey array about 3x slower than a packed one.
function numbers(values: Float64Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i++) out.push(values[i]!);
  return out;
}

function nullableColumn(values: Float64Array): (number | null)[] {
  const out: (number | null)[] = [];
  for (let i = 0; i < values.length; i++) out.push(nullable(values[i]!));
  return out;
}

/**
 * The answer of `seriesColumns`: the windows' typed columns copied out of the merged windows in
 * one synchronous step (the cached merged windows are updated in place as speed rows arrive, and
 * an answer must be one consistent cut of them: a copy, not a view, since GraphQL completes the
 * columns a few microtasks later), each turned into the JSON array GraphQL sends only when a query
 * asks for it (most ask for a few of the ten columns).
 */
class SeriesColumnsAnswer implements SeriesColumnsValue {
  readonly windows: number;
  readonly windowMs: number;
  readonly windowBase: number;
  readonly latestProcessingTime: number | null;
  private readonly starts: Float64Array;
  private readonly counts: Float64Array;
  private readonly sums: Float64Array;
  private readonly mins: Float64Array;
  private readonly maxs: Float64Array;
  private readonly distincts: Float64Array;
  private readonly procs: Float64Array;
  private readonly sources: Uint8Array;
  private readonly provisionals: Uint8Array;
  private readonly built = new Map<string, unknown[]>();

  constructor(
    readonly metric: string,
    readonly version: string,
    readonly key: string,
    readonly granularity: GranularityName,
    readonly from: number,
    readonly to: number,
    readonly batchRunId: string | null,
    m: MergedWindows | undefined,
    windowMs: number,
    windowOriginMs: number,
  ) {
    const lo = m ? m.lowerBound(from) : 0;
    const hi = m ? m.lowerBound(to) : 0;
    this.windows = hi - lo;
    this.windowMs = windowMs;
    this.windowBase = windowStartAtOrAfter(from, windowMs, windowOriginMs);
    const empty = new Float64Array(0);
    this.starts = m ? m.starts.slice(lo, hi) : empty;
    this.counts = m ? m.counts.slice(lo, hi) : empty;
    this.sums = m ? m.sums.slice(lo, hi) : empty;
    this.mins = m ? m.mins.slice(lo, hi) : empty;
    this.maxs = m ? m.maxs.slice(lo, hi) : empty;
    this.distincts = m ? m.distincts.slice(lo, hi) : empty;
    this.procs = m ? m.procs.slice(lo, hi) : empty;
    this.sources = m ? m.sources.slice(lo, hi) : new Uint8Array(0);
    this.provisionals = m ? m.provisional.slice(lo, hi) : new Uint8Array(0);
    let latest = -Infinity;
    for (let i = 0; i < this.procs.length; i++) if (this.procs[i]! > latest) latest = this.procs[i]!;
    this.latestProcessingTime = this.windows > 0 ? latest : null;
  }

  private column<T>(name: string, build: () => T[]): T[] {
    let c = this.built.get(name);
    if (!c) this.built.set(name, (c = build()));
    return c as T[];
  }

  // Plain loops: Array.from over a typed array with a mapping function goes through the iterator
  // protocol, several times slower (it was a quarter of the server's time per answer).
  get windowStart(): number[] {
    return this.column('windowStart', () => numbers(this.starts));
  }
  get windowIndex(): number[] {
    return this.column('windowIndex', () => {
      const out: number[] = [];
      for (let i = 0; i < this.starts.length; i++) out.push((this.starts[i]! - this.windowBase) / this.windowMs);
      return out;
    });
  }
  get count(): number[] {
    return this.column('count', () => numbers(this.counts));
  }
  get sum(): (number | null)[] {
    return this.column('sum', () => nullableColumn(this.sums));
  }
  get avg(): (number | null)[] {
    return this.column('avg', () => {
      const out: (number | null)[] = [];
      for (let i = 0; i < this.sums.length; i++) out.push(avgOf(nullable(this.sums[i]!), this.counts[i]!));
      return out;
    });
  }
  get min(): (number | null)[] {
    return this.column('min', () => nullableColumn(this.mins));
  }
  get max(): (number | null)[] {
    return this.column('max', () => nullableColumn(this.maxs));
  }
  get distinct(): (number | null)[] {
    return this.column('distinct', () => nullableColumn(this.distincts));
  }
  get source(): ('BATCH' | 'SPEED')[] {
    return this.column('source', () => {
      const out: ('BATCH' | 'SPEED')[] = [];
      for (let i = 0; i < this.sources.length; i++) out.push(this.sources[i] === SOURCE_SPEED ? 'SPEED' : 'BATCH');
      return out;
    });
  }
  get provisional(): boolean[] {
    return this.column('provisional', () => {
      const out: boolean[] = [];
      for (let i = 0; i < this.provisionals.length; i++) out.push(this.provisionals[i] === 1);
      return out;
    });
  }
  get processingTime(): number[] {
    return this.column('processingTime', () => numbers(this.procs));
  }
}

export function seriesColumns(
  view: ViewSnapshot,
  metric: string,
  granularity: Granularity,
  key: string,
  from: number,
  to: number,
): SeriesColumnsValue {
  return new SeriesColumnsAnswer(
    metric,
    view.version,
    key,
    granularityName(granularity),
    from,
    to,
    view.batch?.manifest.runId ?? null,
    view.merged(metric, granularity, key),
    windowShape(granularity).sizeMs,
    windowShape(granularity).originMs,
  );
}

export interface KeyTotal {
  key: string;
  count: number;
  sum: number | null;
  avg: number | null;
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
  return runSteps(topKeysSteps(view, metric, granularity, from, to, limit, deadline));
}

export function* topKeysSteps(
  view: ViewSnapshot,
  metric: string,
  granularity: Granularity,
  from: number,
  to: number,
  limit: number,
  deadline: Deadline = NO_DEADLINE,
): Steps<KeyTotal[]> {
  const totals: KeyTotal[] = [];
  let n = 0;
  for (const key of view.keys(metric, granularity)) {
    if (++n % KEYS_PER_STEP === 0) {
      deadline.check();
      yield;
    }
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
    const s = Number.isNaN(sum) ? null : sum;
    totals.push({ key, count, sum: s, avg: avgOf(s, count), windows: hi - lo, provisionalWindows: provisional });
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
  const bySize = [...def.granularities].sort((a, b) => granularityMs(b) - granularityMs(a));
  for (const g of bySize) {
    const w = windowShape(g);
    if (windowStartAtOrAfter(from, w.sizeMs, w.originMs) === from && windowStartAtOrAfter(to, w.sizeMs, w.originMs) === to) return g;
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
  avg: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  /** The range's percentile sketch: the windows' bucket counts added; null without `percentiles`. */
  valueSketch: ValueSketch | null;
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
  return runSteps(totalSteps(view, def, key, from, to, granularity, deadline));
}

export function* totalSteps(
  view: ViewSnapshot,
  def: MetricDefinition,
  key: string | null,
  from: number,
  to: number,
  granularity: Granularity,
  deadline: Deadline = NO_DEADLINE,
): Steps<TotalValue> {
  const out: TotalValue = {
    metric: def.name,
    key,
    granularity,
    from,
    to,
    count: 0,
    sum: null,
    avg: null,
    min: null,
    max: null,
    distinct: null,
    valueSketch: null,
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
  // Percentiles over a range: the windows' sketches added bucket by bucket (exactly the sketch
  // one window over the whole range would hold), never an average of per-window percentiles.
  const valueSketch: ValueSketch | null = def.percentiles !== undefined ? new Map() : null;
  const keys = key === null ? view.keys(def.name, granularity) : [key];
  let n = 0;
  for (const k of keys) {
    if (++n % KEYS_PER_STEP === 0) {
      deadline.check();
      yield;
    }
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
      const vs = m.valueSketches?.[i];
      if (valueSketch && vs) mergeSketch(valueSketch, vs);
    }
    out.windows += hi - lo;
  }
  out.sum = Number.isNaN(sum) ? null : sum;
  out.avg = avgOf(out.sum, out.count);
  out.min = Number.isNaN(min) ? null : min;
  out.max = Number.isNaN(max) ? null : max;
  out.distinct = sketch ? sketch.estimate() : null;
  out.valueSketch = valueSketch;
  out.latestProcessingTime = proc === -Infinity ? null : proc;
  return out;
}

/**
 * One hopping window: [windowStart, windowStart + size), the merge of the tumbling windows of the
 * advance size whose start is in it. Counts and sums add, min and max take the extremes, distinct
 * merges the sketches: the same values a hopping window aggregated from the events would hold
 * (a HyperLogLog of a union is the register-wise max of the parts'), percentile sketches add
 * their bucket counts, so the answer is exact for every measure the views keep. Distinct and the
 * percentile sketch are merged only when asked for (getters).
 */
export interface HoppingWindowValue {
  metric: string;
  version: string;
  key: string;
  windowStart: number;
  windowEnd: number;
  count: number;
  sum: number | null;
  avg: number | null;
  min: number | null;
  max: number | null;
  readonly distinct: number | null;
  /**
   * The merged percentile sketch (GraphQL's p50 ... percentile(p) read it): its tumbling windows'
   * buckets added, so it is bucket for bucket the sketch the hopping window's values would build
   * (bucketOf is per value). Null for a metric without percentiles; merged only when asked for.
   */
  readonly valueSketch: ValueSketch | null;
  /** Tumbling windows merged (those with events). */
  windows: number;
  source: 'BATCH' | 'SPEED';
  provisional: boolean;
  processingTime: number;
}

class HoppingWindow implements HoppingWindowValue {
  constructor(
    readonly metric: string,
    readonly version: string,
    readonly key: string,
    readonly windowStart: number,
    readonly windowEnd: number,
    readonly count: number,
    readonly sum: number | null,
    readonly min: number | null,
    readonly max: number | null,
    readonly windows: number,
    readonly source: 'BATCH' | 'SPEED',
    readonly provisional: boolean,
    readonly processingTime: number,
    private readonly m: MergedWindows,
    private readonly lo: number,
    private readonly hi: number,
  ) {}
  private merged: ValueSketch | null | undefined;
  get avg(): number | null {
    return avgOf(this.sum, this.count);
  }
  get valueSketch(): ValueSketch | null {
    // Merged once per window however many percentiles the query asks for (p50, p95, p99 ...).
    if (this.merged !== undefined) return this.merged;
    const parts = this.m.valueSketches;
    let out: ValueSketch | null = null;
    if (parts) {
      out = new Map();
      for (let i = this.lo; i < this.hi; i++) {
        const vs = parts[i];
        if (vs) mergeSketch(out, vs);
      }
    }
    this.merged = out;
    return out;
  }
  get distinct(): number | null {
    if (!this.m.sketches) return null;
    const merged = new HyperLogLog();
    for (let i = this.lo; i < this.hi; i++) {
      const h = this.m.sketches[i];
      if (h) merged.merge(h);
    }
    return merged.estimate();
  }
}

/**
 * Hopping windows of `sizeMs` every `advance` (a granularity of the metric whose size divides
 * sizeMs), starting in [from, to) on the advance's boundaries; windows without events are left
 * out, as series leaves them out. Cost: size / advance tumbling windows read per answer (12 for
 * a 1 h size every 5 minutes; the distinct sketches merged only when asked for).
 */
export function hoppingWindows(
  view: ViewSnapshot,
  metric: string,
  advance: Granularity,
  sizeMs: number,
  key: string,
  from: number,
  to: number,
): HoppingWindowValue[] {
  const m = view.merged(metric, advance, key);
  if (!m) return [];
  const { sizeMs: step, originMs } = windowShape(advance);
  const out: HoppingWindowValue[] = [];
  const first = windowStartAtOrAfter(from, step, originMs);
  let lo = m.lowerBound(first);
  let hi = lo;
  for (let s = first; s < to; s += step) {
    // The tumbling windows of [s, s + size): m.starts[lo .. hi).
    while (lo < m.length && m.starts[lo]! < s) lo++;
    if (hi < lo) hi = lo;
    while (hi < m.length && m.starts[hi]! < s + sizeMs) hi++;
    if (hi === lo) {
      // Nothing until the next tumbling window: jump to the first hopping window holding it.
      if (lo >= m.length) break;
      const next = m.starts[lo]! - sizeMs + step;
      if (next > s) s = next - step;
      continue;
    }
    let count = 0;
    let sum = NaN;
    let min = NaN;
    let max = NaN;
    let proc = -Infinity;
    let speed = false;
    let provisional = false;
    for (let i = lo; i < hi; i++) {
      const mn = m.mins[i]!;
      if (!Number.isNaN(mn) && !(mn >= min)) min = mn;
      const mx = m.maxs[i]!;
      if (!Number.isNaN(mx) && !(mx <= max)) max = mx;
      if (m.procs[i]! > proc) proc = m.procs[i]!;
      if (m.sources[i] === SOURCE_SPEED) speed = true;
      if (m.provisional[i] === 1) provisional = true;
      count += m.counts[i]!;
      const sm = m.sums[i]!;
      if (!Number.isNaN(sm)) sum = Number.isNaN(sum) ? sm : sum + sm;
    }
    out.push(
      new HoppingWindow(
        metric,
        view.version,
        key,
        s,
        s + sizeMs,
        count,
        nullable(sum),
        nullable(min),
        nullable(max),
        hi - lo,
        speed ? 'SPEED' : 'BATCH',
        provisional,
        proc,
        m,
        lo,
        hi,
      ),
    );
  }
  return out;
}
