/**
 * HyperLogLog register of a value, memoised, on the hot path: services/metrics/hll.ts
 * `hllHash`, packed into one number; `__tests__/hllCache.spec.ts` checks both agree.
 * The distinct field (a user id) repeats across events and granularities, hence the cache; it is
 * bounded and simply emptied when full.
 */
import { hllHash } from '../services/metrics/hll.ts';

const MAX_ENTRIES = 200_000;
let cache = new Map<string, number>();

function compute(value: string): number {
  const { bucket, rank } = hllHash(value);
  return (bucket << 8) | rank;
}

/** (bucket << 8) | rank. */
export function registerOf(value: string): number {
  let packed = cache.get(value);
  if (packed === undefined) {
    packed = compute(value);
    if (cache.size >= MAX_ENTRIES) cache = new Map();
    cache.set(value, packed);
  }
  return packed;
}
