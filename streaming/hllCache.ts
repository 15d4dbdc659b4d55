/**
 * HyperLogLog register of a value, memoised, on the hot path. The register is exactly
 * services/metrics/hll.ts `hllHash` (bucket = high p bits of the first 32-bit half of MD5,
 * rank = position of the first 1 bit after them), computed with the one-shot `crypto.hash`,
 * which is cheaper than createHash per value; `__tests__/hllCache.spec.ts` checks both agree.
 * The distinct field (a user id) repeats across events and granularities, hence the cache; it is
 * bounded and simply emptied when full.
 */
import { hash } from 'node:crypto';
import { HLL_P } from '../services/metrics/hll.ts';

const MAX_ENTRIES = 200_000;
let cache = new Map<string, number>();

function compute(value: string): number {
  const digest = hash('md5', value, 'buffer');
  const hi = digest.readUInt32BE(0);
  const lo = digest.readUInt32BE(4);
  const bucket = hi >>> (32 - HLL_P);
  const restHi = hi & ((1 << (32 - HLL_P)) - 1);
  let rank: number;
  if (restHi !== 0) rank = Math.clz32(restHi) - HLL_P + 1;
  else if (lo !== 0) rank = 32 - HLL_P + Math.clz32(lo) + 1;
  else rank = 64 - HLL_P + 1;
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
