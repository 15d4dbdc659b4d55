/**
 * The merge rule (docs/merge-rule.md) on the hard cases the page walks through, row by row, with
 * the offsets of its tables: a speed job lagging behind the batch cut, a window the speed job
 * closed while late events kept coming, a missing batch row (the run's empty row at its cut), a
 * speed row the batch view contradicts, and when a window is provisional (misplaced events).
 * The expected answers are written out by hand from the page, not computed by the code under test.
 */
import { describe, expect, it } from 'vitest';
import { SOURCE_BATCH, SOURCE_SPEED, mergeSeries, mergeWindow, windowPartitionSources } from '../views/mergeRule.ts';
import { PartialRows, type PartialRowValues } from '../views/partialRows.ts';

const W = Date.UTC(2026, 10, 21, 12, 7);

function rows(...values: Partial<PartialRowValues>[]): PartialRows {
  const side = new PartialRows();
  for (const v of values) {
    side.upsert({
      windowStart: W,
      partition: 2,
      count: 0,
      sum: null,
      min: null,
      max: null,
      distinctSketch: null,
      throughOffset: 0,
      processingTime: 0,
      rawCount: null,
      misplaced: 0,
      ...v,
    });
  }
  return side;
}

/** Cut of a batch run over partitions 0..3 (partition 2 is the one of the page's tables). */
const cut = (p2: number) => [100, 100, p2, 100];

describe('merge rule: the hard cases of docs/merge-rule.md', () => {
  it('hard case 1: a speed job lagging behind the batch cut loses to the batch row (21, not 17)', () => {
    const speed = rows({ count: 17, throughOffset: 3000 });
    const batch = rows({ count: 21, throughOffset: 5000 });
    expect(mergeWindow(batch, speed, cut(5000), W)).toMatchObject({ count: 21, source: SOURCE_BATCH });
    // Caught up past the cut, the window still open: the speed row (23) wins.
    const caughtUp = rows({ count: 23, throughOffset: 6200 });
    expect(mergeWindow(batch, caughtUp, cut(5000), W)).toMatchObject({ count: 23, source: SOURCE_SPEED });
  });

  it('hard case 2: a closed window (final row stamped 4,901) and a late event at offset 5,300', () => {
    const speed = rows({ count: 2, throughOffset: 4901 });
    // Batch cut 5,000 (before the late event): batch wins with 2.
    expect(mergeWindow(rows({ count: 2, throughOffset: 5000 }), speed, cut(5000), W)).toMatchObject({ count: 2, source: SOURCE_BATCH });
    // Batch cut 6,000 (after it): batch wins with 3, the late event counted.
    expect(mergeWindow(rows({ count: 3, throughOffset: 6000 }), speed, cut(6000), W)).toMatchObject({ count: 3, source: SOURCE_BATCH });
    // No batch run since: the speed row is right for the prefix it covers.
    expect(mergeWindow(undefined, speed, undefined, W)).toMatchObject({ count: 2, source: SOURCE_SPEED });
  });

  it('a tie goes to batch', () => {
    expect(mergeWindow(rows({ count: 5, throughOffset: 5000 }), rows({ count: 6, throughOffset: 5000 }), cut(5000), W)).toMatchObject({
      count: 5,
      source: SOURCE_BATCH,
    });
  });

  it("a missing batch row is the run's empty row at its cut: a speed row at or below the cut counts nothing", () => {
    // The speed row counted 4 events below offset 4,000; the batch run saw everything below 5,000
    // and has no row for the window: none of those events belong to it (copies counted elsewhere).
    const speed = rows({ count: 4, throughOffset: 4000 });
    expect(mergeWindow(undefined, speed, cut(5000), W)).toBeUndefined();
    expect(mergeSeries(undefined, speed, cut(5000)).length).toBe(0);
    // Exactly at the cut: still the batch run's (the tie rule).
    expect(mergeWindow(undefined, rows({ count: 4, throughOffset: 5000 }), cut(5000), W)).toBeUndefined();
    // Past the cut the speed row holds events the run has not seen: it wins.
    expect(mergeWindow(undefined, rows({ count: 4, throughOffset: 5001 }), cut(5000), W)).toMatchObject({ count: 4, source: SOURCE_SPEED });
    // A partition the run did not cover at all (added later): its cut is 0.
    expect(mergeWindow(undefined, rows({ count: 4, throughOffset: 10, partition: 7 }), cut(5000), W)).toMatchObject({ count: 4 });
    // The partition detail says why the window lost its speed row.
    const other = rows({ count: 9, throughOffset: 100, partition: 1 });
    expect(windowPartitionSources(other, speed, cut(5000), [0, 11, 22, 33], W)).toEqual([
      { partition: 1, source: SOURCE_BATCH, throughOffset: 100, processingTime: 0, count: 9, misplaced: 0 },
      { partition: 2, source: SOURCE_BATCH, throughOffset: 5000, processingTime: 22, count: 0, misplaced: 0 },
    ]);
    expect(mergeWindow(other, speed, cut(5000), W)).toMatchObject({ count: 9, source: SOURCE_BATCH });
  });

  it('a speed row the batch view contradicts loses when the batch run covers it', () => {
    // The speed layer says 8 (a copy in another partition counted twice), batch says 7 for the same prefix.
    expect(mergeWindow(rows({ count: 7, throughOffset: 4500 }), rows({ count: 8, throughOffset: 4400 }), cut(4500), W)).toMatchObject({
      count: 7,
      source: SOURCE_BATCH,
    });
  });

  it('provisional: a speed row meeting a row that counted misplaced events; never a pure batch answer', () => {
    const p0 = (v: Partial<PartialRowValues>) => ({ partition: 0, ...v });
    // Batch row of partition 0 counted a misplaced event, the speed row of partition 2 is fresher.
    const batch = rows(p0({ count: 3, throughOffset: 100, misplaced: 1 }), { count: 1, throughOffset: 5000 });
    const speed = rows({ count: 2, throughOffset: 5200 });
    expect(mergeWindow(batch, speed, cut(5000), W)).toMatchObject({ count: 5, source: SOURCE_SPEED, provisional: true });
    // Same rows, speed behind the cut: the batch view answers alone, exactly.
    expect(mergeWindow(batch, rows({ count: 2, throughOffset: 4000 }), cut(5000), W)).toMatchObject({
      count: 4,
      source: SOURCE_BATCH,
      provisional: false,
    });
    // A speed row that itself counted a misplaced event.
    expect(mergeWindow(undefined, rows({ count: 2, throughOffset: 5200, misplaced: 2 }), cut(5000), W)).toMatchObject({
      provisional: true,
    });
    // No misplaced event anywhere: fresh but exact for its prefix.
    expect(mergeWindow(rows({ count: 1, throughOffset: 5000 }), speed, cut(5000), W)).toMatchObject({ provisional: false });
  });
});
