/**
 * Two job versions side by side, window by window: how many merged windows agree, how many
 * differ (or exist in one version only), and the keys that differ most, so that a user can check
 * a replayed version before promoting it. Both versions are read from their own snapshot, fixed
 * for the whole comparison, through the same merge rule as every other answer.
 *
 * Windows are equal when count, sum, min, max and distinct are all equal (numbers exactly: both
 * versions compute them with the same code from the same events, so any difference is real).
 */
import type { Granularity } from '../services/metrics/definitions.ts';
import { KEYS_PER_STEP, NO_DEADLINE, runSteps, type Deadline, type Steps } from './queries.ts';
import type { MergedWindows } from './views/mergeRule.ts';
import type { ViewSnapshot } from './views/versionView.ts';

export interface KeyDifference {
  key: string;
  windowsDiffering: number;
  countA: number;
  countB: number;
  /** |countB - countA| summed over the key's windows: the ranking. */
  countDifference: number;
}

export interface VersionDiff {
  metric: string;
  granularity: Granularity;
  from: number;
  to: number;
  versionA: string;
  versionB: string;
  windowsCompared: number;
  windowsEqual: number;
  windowsDiffering: number;
  onlyInA: number;
  onlyInB: number;
  keysCompared: number;
  keysDiffering: number;
  /** The keys that differ most (by countDifference, then windows differing, then key). */
  topKeys: KeyDifference[];
}

export interface DiffRequest {
  metric: string;
  granularity: Granularity;
  from: number;
  to: number;
  limit: number;
  deadline?: Deadline;
}

function sameWindow(a: MergedWindows, i: number, b: MergedWindows, j: number): boolean {
  return (
    a.counts[i] === b.counts[j] &&
    Object.is(a.sums[i], b.sums[j]) &&
    Object.is(a.mins[i], b.mins[j]) &&
    Object.is(a.maxs[i], b.maxs[j]) &&
    Object.is(a.distincts[i], b.distincts[j])
  );
}

/** One key: walk both sorted window lists in [from, to) together. */
function diffKey(a: MergedWindows | undefined, b: MergedWindows | undefined, from: number, to: number) {
  const out = { compared: 0, equal: 0, differing: 0, onlyA: 0, onlyB: 0, countA: 0, countB: 0, countDifference: 0 };
  let i = a ? a.lowerBound(from) : 0;
  const iEnd = a ? a.lowerBound(to) : 0;
  let j = b ? b.lowerBound(from) : 0;
  const jEnd = b ? b.lowerBound(to) : 0;
  while (i < iEnd || j < jEnd) {
    const sa = i < iEnd ? a!.starts[i]! : Infinity;
    const sb = j < jEnd ? b!.starts[j]! : Infinity;
    out.compared++;
    if (sa === sb) {
      const ca = a!.counts[i]!;
      const cb = b!.counts[j]!;
      out.countA += ca;
      out.countB += cb;
      out.countDifference += Math.abs(cb - ca);
      if (sameWindow(a!, i, b!, j)) out.equal++;
      else out.differing++;
      i++;
      j++;
    } else if (sa < sb) {
      out.onlyA++;
      out.countA += a!.counts[i]!;
      out.countDifference += a!.counts[i]!;
      i++;
    } else {
      out.onlyB++;
      out.countB += b!.counts[j]!;
      out.countDifference += b!.counts[j]!;
      j++;
    }
  }
  return out;
}

export function diffVersions(a: ViewSnapshot, b: ViewSnapshot, request: DiffRequest): VersionDiff {
  return runSteps(diffVersionsSteps(a, b, request));
}

/** diffVersions, pausing every KEYS_PER_STEP keys (serving/queries.ts Steps). */
export function* diffVersionsSteps(a: ViewSnapshot, b: ViewSnapshot, request: DiffRequest): Steps<VersionDiff> {
  const { metric, granularity, from, to, limit } = request;
  const deadline = request.deadline ?? NO_DEADLINE;
  const keys = new Set(a.keys(metric, granularity));
  for (const k of b.keys(metric, granularity)) keys.add(k);
  const result: VersionDiff = {
    metric,
    granularity,
    from,
    to,
    versionA: a.version,
    versionB: b.version,
    windowsCompared: 0,
    windowsEqual: 0,
    windowsDiffering: 0,
    onlyInA: 0,
    onlyInB: 0,
    keysCompared: 0,
    keysDiffering: 0,
    topKeys: [],
  };
  const differing: KeyDifference[] = [];
  let n = 0;
  for (const key of keys) {
    if (++n % KEYS_PER_STEP === 0) {
      deadline.check();
      yield;
    }
    const d = diffKey(a.merged(metric, granularity, key), b.merged(metric, granularity, key), from, to);
    if (d.compared === 0) continue;
    result.keysCompared++;
    result.windowsCompared += d.compared;
    result.windowsEqual += d.equal;
    result.windowsDiffering += d.differing;
    result.onlyInA += d.onlyA;
    result.onlyInB += d.onlyB;
    const windowsDiffering = d.differing + d.onlyA + d.onlyB;
    if (windowsDiffering === 0) continue;
    result.keysDiffering++;
    differing.push({ key, windowsDiffering, countA: d.countA, countB: d.countB, countDifference: d.countDifference });
  }
  differing.sort(
    (x, y) =>
      y.countDifference - x.countDifference || y.windowsDiffering - x.windowsDiffering || (x.key < y.key ? -1 : x.key > y.key ? 1 : 0),
  );
  result.topKeys = differing.slice(0, limit);
  return result;
}
