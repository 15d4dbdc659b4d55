/**
 * Serving loads the batch runs of several versions, sometimes at the same moment (a promotion
 * while a new run lands, a diff of two versions): every load must hold its whole run. One DuckDB
 * connection shared by concurrent loads once ended one load's stream early, and that version
 * answered as if its batch run were empty. Loads run concurrently here and each is compared with
 * the same run loaded alone.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { currentBatchRun } from '../../test/sharedState.ts';
import { tempDir } from '../../test/helpers.ts';
import { loadBatchView } from '../views/batchLoader.ts';
import type { BatchView } from '../views/versionView.ts';
import { publishBatchRun, type BatchRow, type PartitionedLog } from './fixtures/viewFixtures.ts';

const START = Date.UTC(2026, 0, 1);

/** Rows of a run: several DuckDB chunks (2,048 rows each) so that a stream is read in steps. */
function rows(version: number): BatchRow[] {
  const out: BatchRow[] = [];
  for (let k = 0; k < 25; k++)
    for (let w = 0; w < 150; w++)
      for (let p = 0; p < 2; p++) {
        const count = 1 + ((k + w + p + version) % 7);
        out.push({
          metric: 'clicks_by_ad',
          granularity: 'minute',
          key: `ad-${k}`,
          windowStart: START + w * 60_000,
          partition: p,
          count,
          sum: count * 2,
          min: 2,
          max: 2,
          distinctSketch: null,
          throughOffset: 5000,
          processingTime: START,
          rawCount: count,
          misplaced: 0,
        });
      }
  return out;
}

describe('batch runs of two versions loading at once', () => {
  const dir = tempDir('lk-serve-load-');
  afterAll(() => dir.remove());

  it('each load holds its whole run, equal to the run loaded alone', async () => {
    const log: PartitionedLog = { partitions: 2, events: [], byPartition: [[], []], ends: [5000, 5000] };
    const runs = [];
    for (const v of [1, 2]) {
      await publishBatchRun(dir.path, `v${v}`, `r${v}`, log, rows(v), [5000, 5000]);
      runs.push((await currentBatchRun(dir.path, `v${v}`))!);
    }
    const alone: BatchView[] = [];
    for (const run of runs) alone.push(await loadBatchView(run, run.rowsPath!));
    expect(alone.map((b) => b.rows)).toEqual([7500, 7500]);
    const describe = (b: BatchView) =>
      [...b.series.entries()].map(([key, side]) => `${key}:${Array.from(side.counts.subarray(0, side.length)).join(',')}`).join(' ');
    for (let round = 0; round < 3; round++) {
      const together = await Promise.all([...runs, ...runs].map((run) => loadBatchView(run, run.rowsPath!)));
      together.forEach((b, i) => {
        expect(b.rows, `load ${i} of round ${round}`).toBe(7500);
        expect(describe(b)).toBe(describe(alone[i % 2]!));
      });
    }
  });
});
