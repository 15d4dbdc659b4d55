/**
 * Batch view snapshots on shared state, a local folder and a real S3 server (versitygw): CURRENT
 * only moves forward. Batch processes on several hosts finish in any order; a run of an older lake
 * snapshot never replaces a newer one, runs racing for CURRENT each either win or find a newer one
 * there, and what a reader resolves is always a complete run (rows and manifest), read through a
 * local copy when the state is on S3.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../../test/s3.ts';
import { LocalObjectStore } from '../../storage/localObjectStore.ts';
import { listAll, type ObjectStore } from '../../storage/objectStore.ts';
import { openObjectStore } from '../../storage/storageLocation.ts';
import {
  commitBatchRun,
  cutCovers,
  localRowsFile,
  pruneBatchRuns,
  readCurrentBatchRun,
  stageBatchRun,
  type BatchRunManifest,
} from '../batchSnapshots.ts';

let s3: TestS3;
const local = tempDir('lk-views-state-');

beforeAll(async () => {
  s3 = await startTestS3(['state']);
});

afterAll(async () => {
  await s3?.stop();
  local.remove();
});

const stores: [string, () => Promise<ObjectStore>][] = [
  ['local folder', async () => new LocalObjectStore(join(local.path, randomBytes(4).toString('hex')))],
  [
    'S3 (versitygw)',
    async () => openObjectStore(`s3://state/run-${randomBytes(4).toString('hex')}`, 'test', { ...process.env, ...s3.env }),
  ],
];

function manifest(runId: string, cut: number[]): BatchRunManifest {
  const now = Date.now();
  return {
    runId,
    version: 'v1',
    cut,
    processingTimes: cut.map(() => 0),
    startedAt: now,
    finishedAt: now,
    durationMs: 0,
    rows: 0,
    rawEvents: 0,
    uniqueEvents: 0,
    misplacedEvents: 0,
    lakeFiles: 0,
    lakeBytes: 0,
    full: true,
    metricsSource: 'metrics.yaml',
  };
}

/** A staged run whose "rows" file names the run (the tests read it back through the reader). */
function stage(host: string, runId: string): string {
  const dir = stageBatchRun(join(local.path, host, 'scratch'), 'v1', runId);
  writeFileSync(join(dir, 'rows.parquet'), `rows of ${runId}`);
  return dir;
}

describe.each(stores)('batch CURRENT on shared state: %s', (_name, open) => {
  it('a run of an older lake snapshot, finished later, never replaces a newer one', async () => {
    const state = await open();
    expect((await commitBatchRun(state, stage('h1', 'r-new'), manifest('r-new', [10, 20]))).published).toBe(true);
    const late = await commitBatchRun(state, stage('h2', 'r-old'), manifest('r-old', [10, 19]));
    expect(late.published).toBe(false);
    expect(late.current.runId).toBe('r-new');
    expect((await readCurrentBatchRun(state, 'v1'))?.manifest.runId).toBe('r-new');
    // The refused run left nothing behind.
    expect((await listAll(state, 'views/v1/runs/r-old/')).length).toBe(0);
    // A run over the same cut (a rerun) or further moves it on.
    expect((await commitBatchRun(state, stage('h2', 'r-same'), manifest('r-same', [10, 20]))).published).toBe(true);
    expect((await commitBatchRun(state, stage('h1', 'r-more'), manifest('r-more', [11, 20, 5]))).published).toBe(true);
    expect((await readCurrentBatchRun(state, 'v1'))?.manifest.runId).toBe('r-more');
  });

  it('runs racing for CURRENT: readers see it only move forward, always to a complete run, ending at one that covers every published run', async () => {
    const state = await open();
    // Cuts of which some pairs are ordered and some are not (neither covers the other).
    const cuts = Array.from({ length: 8 }, (_, i) => [100 + ((i * 37) % 8), 100 + ((i * 11) % 8)]);
    let reading = true;
    const seen: BatchRunManifest[] = [];
    const reader = (async () => {
      const cache = join(local.path, 'reader-cache', randomBytes(4).toString('hex'));
      while (reading) {
        const run = await readCurrentBatchRun(state, 'v1');
        if (!run) continue;
        // Complete: its rows are there and are the run's own.
        expect(readFileSync(await localRowsFile(state, run, cache), 'utf8')).toBe(`rows of ${run.manifest.runId}`);
        if (seen.at(-1)?.runId !== run.manifest.runId) seen.push(run.manifest);
      }
    })();
    const results = await Promise.all(cuts.map((cut, i) => commitBatchRun(state, stage(`race-${i}`, `r${i}`), manifest(`r${i}`, cut))));
    reading = false;
    await reader;
    for (let i = 1; i < seen.length; i++)
      expect(cutCovers(seen[i]!.cut, seen[i - 1]!.cut), `${seen[i - 1]!.runId} -> ${seen[i]!.runId}`).toBe(true);
    const current = (await readCurrentBatchRun(state, 'v1'))!.manifest;
    const published = cuts.filter((_, i) => results[i]!.published);
    expect(published.length).toBeGreaterThan(0);
    for (const cut of published) expect(cutCovers(current.cut, cut), `${current.runId} covers ${cut}`).toBe(true);
  });

  it('prunes old runs after their grace period, never the current one', async () => {
    const state = await open();
    for (let i = 1; i <= 5; i++) await commitBatchRun(state, stage('p', `p${i}`), manifest(`p${i}`, [i]));
    const scratch = join(local.path, 'p', 'scratch');
    mkdirSync(scratch, { recursive: true });
    expect(await pruneBatchRuns(state, 'v1', scratch, 1, 60_000)).toEqual([]);
    expect((await pruneBatchRuns(state, 'v1', scratch, 1, -1)).sort()).toEqual(['p1', 'p2', 'p3', 'p4']);
    expect((await readCurrentBatchRun(state, 'v1'))?.manifest.runId).toBe('p5');
    expect(readFileSync(await localRowsFile(state, (await readCurrentBatchRun(state, 'v1'))!, join(local.path, 'pc')), 'utf8')).toBe(
      'rows of p5',
    );
  });
});
