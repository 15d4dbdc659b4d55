/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * A batch run arriving while queries run: every response is answered from exactly one batch
 * run (all windows, totals and rankings of one request agree on the run), never a mix, while
 * new runs are installed back to back under concurrent load.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import type { BatchRow, PartitionedLog } from './fixtures/viewFixtures.ts';
import { publishBatchRun } from './fixtures/viewFixtures.ts';
import { gqlData, startTestServer, type TestServer } from './fixtures/testServer.ts';

const KEYS = 20;
const WINDOWS = 120;
const START = Date.UTC(2026, 0, 1);
const RUNS = 6;

/** Run i reports count = i in every window of every key, on 2 partitions (i = 1 + 0 split unevenly). */
function runRows(i: number): BatchRow[] {
  const rows: BatchRow[] = [];
  for (let k = 0; k < KEYS; k++) {
    for (let w = 0; w < WINDOWS; w++) {
      for (let p = 0; p < 2; p++) {
        const count = p === 0 ? i : 0;
        rows.push({
          metric: 'clicks_by_ad',
          granularity: 'minute',
          key: `ad-${k}`,
          windowStart: START + w * 60_000,
          partition: p,
          count,
          sum: count * 1.5,
          min: 1.5,
          max: 1.5,
          distinctSketch: null,
          throughOffset: 1000 * i,
          processingTime: START + i,
          rawCount: count,
          misplaced: 0,
        });
      }
    }
  }
  return rows;
}

const EMPTY_LOG: PartitionedLog = { partitions: 2, events: [], byPartition: [[], []], ends: [0, 0] };

describe('batch swap during queries', () => {
  const dir = tempDir('lk-serve-swap-');
  const version = uniqueName('sw').toLowerCase().slice(-24);
  let server: TestServer;

  beforeAll(async () => {
    await publishBatchRun(dir.path, version, 'run-1', EMPTY_LOG, runRows(1), [1000, 1000]);
    server = await startTestServer(dir.path, { defaultVersion: version, batchPollMs: 20, maxCost: 10_000_000 });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  it('never mixes two runs in one answer', async () => {
    const from = new Date(START).toISOString();
    const to = new Date(START + WINDOWS * 60_000).toISOString();
    const query = `{
      ${Array.from({ length: KEYS }, (_, k) => `s${k}: series(metric: "clicks_by_ad", key: "ad-${k}", granularity: MINUTE, from: "${from}", to: "${to}") { count sum batchRunId source }`).join('\n')}
      total(metric: "clicks_by_ad", from: "${from}", to: "${to}", granularity: MINUTE) { count sum windows }
      topKeys(metric: "clicks_by_ad", granularity: MINUTE, from: "${from}", to: "${to}", limit: 3) { count }
      pipeline { serving { batchView { runId } } }
    }`;
    let publishing = true;
    const seenRuns = new Set<string>();
    let answers = 0;
    const client = async () => {
      while (publishing) {
        const d = await gqlData<any>(server.url, query);
        answers++;
        const runId: string = d.s0[0].batchRunId;
        const i = Number(runId.split('-')[1]);
        seenRuns.add(runId);
        const mixed: string[] = [];
        for (let k = 0; k < KEYS; k++) {
          const windows = d[`s${k}`];
          if (windows.length !== WINDOWS) mixed.push(`s${k} has ${windows.length} windows`);
          for (const w of windows)
            if (w.batchRunId !== runId || w.count !== i || w.source !== 'BATCH')
              mixed.push(`s${k}: ${JSON.stringify(w)} in an answer from ${runId}`);
        }
        expect(mixed).toEqual([]);
        expect(d.total).toEqual({ count: i * KEYS * WINDOWS, sum: 1.5 * i * KEYS * WINDOWS, windows: KEYS * WINDOWS });
        expect(d.topKeys.map((t: any) => t.count)).toEqual([i * WINDOWS, i * WINDOWS, i * WINDOWS]);
        expect(d.pipeline.serving.batchView.runId).toBe(runId);
      }
    };
    const clients = Array.from({ length: 4 }, client);
    try {
      for (let i = 2; i <= RUNS; i++) {
        const t0 = Date.now();
        await publishBatchRun(dir.path, version, `run-${i}`, EMPTY_LOG, runRows(i), [1000 * i, 1000 * i]);
        // Let some queries see this run before the next one lands.
        const before = answers;
        const t1 = Date.now();
        await eventually(() => (seenRuns.has(`run-${i}`) && answers > before + 2 ? true : undefined), `queries answered from run-${i}`);
        if (process.env.LK_TEST_VERBOSE)
          console.log(`run-${i}: published in ${t1 - t0} ms, seen after ${Date.now() - t1} ms, ${answers} answers`);
      }
    } finally {
      publishing = false;
      await Promise.all(clients);
    }
    expect(seenRuns.size).toBe(RUNS);
  });
});
