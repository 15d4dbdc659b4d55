// The dedup set against a plain model (a Map of id -> first-sighting time, with the rule of
// docs/speed-layer.md written out again here): same verdict for every record of a long random
// sequence that forces many table rebuilds, the same live size, and a restore from its entries
// that answers like the original.
import { describe, expect, it } from 'vitest';
import { DedupSet } from '../state/dedupSet.ts';
import { fingerprintId } from '../state/idFingerprint.ts';
import { seededRandom } from '../../services/ingest/generator.ts';

const HORIZON = 10 * 60_000;
const MINUTE = 60_000;

describe('dedup set', () => {
  it('gives the model’s verdicts and size across rebuilds, expiry and refreshes', () => {
    const rand = seededRandom(3);
    const set = new DedupSet(HORIZON);
    const model = new Map<string, number>();
    const fp = new Int32Array(4);
    let maxTs = 0;
    let duplicates = 0;
    for (let i = 0; i < 200_000; i++) {
      // Mostly new ids, some repeats of recent ones, some of long-expired ones.
      const r = rand();
      const id = r < 0.8 ? `e${i}` : r < 0.95 ? `e${Math.max(0, i - Math.floor(rand() * 2000))}` : `e${Math.floor(rand() * i)}`;
      const ts = i * 50 - Math.floor(rand() * 5000); // ~20 events per event-time second, out of order
      const watermark = maxTs - 2000;
      // The model: a live entry (ts >= watermark - horizon) makes a duplicate; otherwise a record
      // inside the horizon (re)sets the entry.
      const seenAt = model.get(id);
      const expected = seenAt !== undefined && seenAt >= watermark - HORIZON;
      if (!expected && ts >= watermark - HORIZON) model.set(id, ts);
      fingerprintId(id, fp);
      expect(set.seen(fp, ts, watermark), `record ${i} (${id})`).toBe(expected);
      if (expected) duplicates++;
      if (i % 10_000 === 0) set.takeAdded(); // as the checkpoints do
      if (ts > maxTs) {
        maxTs = ts;
        set.expire(maxTs - 2000);
      }
    }
    expect(duplicates).toBeGreaterThan(10_000);
    // Live size: model entries whose event-time minute has not expired.
    const limit = maxTs - 2000 - HORIZON;
    let live = 0;
    for (const ts of model.values()) if ((Math.floor(ts / MINUTE) + 1) * MINUTE > limit) live++;
    expect(set.size).toBe(live);
    // Bounded: the table holds the live entries, not all 200,000 ids ever seen.
    expect(set.approxBytes()).toBeLessThan(live * 24 * 4 + 300_000);

    const restored = new DedupSet(HORIZON);
    restored.restore(set.entries());
    restored.expire(maxTs - 2000);
    expect(restored.size).toBe(set.size);
    for (let i = 0; i < 200_000; i += 7) {
      fingerprintId(`e${i}`, fp);
      expect(restored.has(fp, maxTs - 2000)).toBe(set.has(fp, maxTs - 2000));
    }
  });

  it('tracks exactly the additions since the last take, for delta checkpoints', () => {
    const set = new DedupSet(HORIZON);
    for (let i = 0; i < 5000; i++) set.addId(`a${i}`, 1000 + i);
    expect(set.takeAdded().length).toBe(5000);
    set.addId('b1', 9000);
    set.addId('a3', 9001); // a refresh is an addition too
    const added = set.takeAdded();
    expect(added.length).toBe(2);
    expect([...added.ts]).toEqual([9000, 9001]);
    const fp = new Int32Array(4);
    fingerprintId('a3', fp);
    expect([...added.fingerprints.subarray(4, 8)]).toEqual([...fp]);
    expect(set.takeAdded().length).toBe(0);
  });
});
