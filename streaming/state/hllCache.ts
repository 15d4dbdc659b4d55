/**
 * HyperLogLog register of a value, memoised, on the hot path: services/metrics/hll.ts
 * `hllHash` (an MD5 per value), packed into one number; `__tests__/hllCache.spec.ts` checks both
 * agree. The distinct field (a user id) repeats across events and granularities, hence the cache.
 *
 * A two-way set-associative cache in arrays (a pair of slots per 32-bit hash of the value, the
 * value kept to confirm a hit; a new value takes the pair's second slot after moving the first
 * there): a lookup is a short hash loop and one or two string comparisons, where a Map of
 * 100,000 strings cost ~0.7 us (hashing a fresh string and a cache miss into a large table).
 */
import { hllHash } from '../../services/metrics/hll.ts';

const SLOTS = 1 << 19;
const values: (string | undefined)[] = new Array<string | undefined>(SLOTS);
const registers = new Int32Array(SLOTS);

function compute(value: string): number {
  const { bucket, rank } = hllHash(value);
  return (bucket << 8) | rank;
}

/** (bucket << 8) | rank. */
export function registerOf(value: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
  const slot = (h ^ (h >>> 15)) & (SLOTS - 2);
  if (values[slot] === value) return registers[slot]!;
  if (values[slot + 1] === value) return registers[slot + 1]!;
  const packed = compute(value);
  values[slot + 1] = values[slot];
  registers[slot + 1] = registers[slot]!;
  values[slot] = value;
  registers[slot] = packed;
  return packed;
}
