/** The speed layer's memoised HLL register equals services/metrics/hll.ts hllHash, value by value. */
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../services/ingest/generator.ts';
import { hllHash } from '../../services/metrics/hll.ts';
import { registerOf } from '../state/hllCache.ts';

describe('registerOf', () => {
  it('agrees with hllHash on 50,000 values (seed 5), twice (cold and cached)', () => {
    const rand = seededRandom(5);
    const values = Array.from({ length: 50_000 }, (_, i) => (i % 3 === 0 ? `u${Math.floor(rand() * 1e9)}` : `${rand()}-é-${i}`));
    values.push('', 'x'.repeat(1000));
    for (let pass = 0; pass < 2; pass++) {
      for (const v of values) {
        const { bucket, rank } = hllHash(v);
        expect(registerOf(v)).toBe((bucket << 8) | rank);
      }
    }
  });
});
