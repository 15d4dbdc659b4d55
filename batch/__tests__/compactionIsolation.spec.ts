/**
 * Compaction is atomic for readers: while `lk batch compact` (a separate process) merges a lake
 * of many small files, a reader keeps reading the Delta log and querying the files of its latest
 * version; every answer is the same (never both sets of files, never neither). A reader holding
 * the old version (a time travel to it) can still read it after the compaction (retention),
 * vacuum deletes the old files only afterwards, and the batch views computed before and after are
 * identical.
 */
import { localStateOptions } from '../../test/sharedState.ts';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { loadMetricDefinitions } from '../../services/metrics/definitions.ts';
import { logger } from '../../services/observability/logger.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { catchUpLake } from '../batchCycle.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { openLakeForReading } from '../../services/lake/lakeTable.ts';
import { recomputeBatchViews } from '../views/batchViews.ts';
import { REPO_ROOT, createTopic, kafkaLog, produceLines, readSnapshotRows, spawnLk } from './batchTestKit.ts';
import { lakeFilePaths, lakeState, testLake } from './batchTestKit.ts';

const quiet = logger.child({}, { level: 'warn' });

async function query(conn: DuckDBConnection, lake: LakeHandle, version: number): Promise<string> {
  const files = (await lakeFilePaths(lake, version)).map((f) => `'${f}'`);
  const r = await conn.runAndReadAll(
    `SELECT count(*)::DOUBLE, count(DISTINCT (kafka_partition, kafka_offset))::DOUBLE, sum(kafka_offset)::DOUBLE, count(DISTINCT id)::DOUBLE
     FROM read_parquet([${files.join(', ')}])`,
  );
  return JSON.stringify(r.getRows()[0]);
}

describe('compaction is atomic for readers (compaction isolation)', () => {
  const dir = tempDir('lk-batch-compact-');
  const topic = uniqueName('batch-compact');
  let lake: LakeHandle;
  const metrics = loadMetricDefinitions(join(REPO_ROOT, 'metrics.yaml'));
  let log: EventLog;
  let produced = 0;

  beforeAll(async () => {
    log = kafkaLog();
    lake = await testLake(dir.path, topic);
    await createTopic(log, topic, 2);
    const lines = [...generateEventLines({ seed: 99, count: 8000, eventsPerSecond: 5 })];
    await produceLines(log, topic, lines);
    produced = lines.length;
    // Tiny rolls: a lake of many small files.
    await catchUpLake({ log, topic, groupId: `${topic}-g`, lake, rollBytes: 8 * 1024, rollIntervalMs: 60_000, logger: quiet });
  });

  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  it('a reader querying during `lk batch compact` always sees the same answer; old files survive their grace period', async () => {
    const before = await lakeState(lake);
    expect(before.files.length).toBeGreaterThan(50);
    const viewsBefore = await recomputeBatchViews({
      lake,
      ...localStateOptions(join(dir.path, 'views-before')),
      version: 'v1',
      metrics,
      homePartitions: 3,
      logger: quiet,
    });

    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const expected = await query(conn, lake, before.version);
    expect(JSON.parse(expected)[0]).toBe(produced);

    const compactor = spawnLk(['batch', 'compact', '--topic', topic, '--data-dir', dir.path, '--target-file-size', '1MB']);
    let compactorDone = false;
    const exitCode = compactor.exited.finally(() => (compactorDone = true));
    const versionsSeen = new Set<number>();
    const answers = new Set<string>();
    let readsAfter = 0;
    while (!compactorDone || readsAfter < 3) {
      if (compactorDone) readsAfter++;
      const { version } = await lakeState(lake);
      versionsSeen.add(version);
      answers.add(await query(conn, lake, version));
    }
    expect(await exitCode, compactor.stderr()).toBe(0);
    const after = await lakeState(lake);
    expect(after.files.length).toBeLessThan(before.files.length / 5);
    expect(versionsSeen.size).toBeGreaterThan(1);
    expect([...answers]).toEqual([expected]);

    // The reader that resolved the old version can still read it (time travel, within the retention) ...
    expect(await query(conn, lake, before.version)).toBe(expected);
    // ... and vacuum deletes the old files only once the retention is over.
    const table = (await openLakeForReading(lake))!;
    expect((await table.vacuum({ retentionMs: 60_000 })).deleted).toEqual([]);
    const purged = (await table.vacuum({ retentionMs: 0 })).deleted;
    expect(purged.length).toBe(before.files.length - before.files.filter((f) => after.files.some((a) => a.path === f.path)).length);
    for (const p of purged) expect(existsSync(lake.store.localPath(p)!)).toBe(false);
    expect(await query(conn, lake, (await lakeState(lake)).version)).toBe(expected);
    conn.closeSync();
    db.closeSync();

    const viewsAfter = await recomputeBatchViews({
      lake,
      ...localStateOptions(join(dir.path, 'views-after')),
      version: 'v1',
      metrics,
      homePartitions: 3,
      logger: quiet,
    });
    // Sums are compared to 1e-9 (floating-point addition order may differ with the file layout).
    const norm = (rows: Awaited<ReturnType<typeof readSnapshotRows>>) =>
      rows.map((r) => JSON.stringify({ ...r, sum: r.sum === null ? null : Number(r.sum.toPrecision(12)) })).sort();
    expect(norm(await readSnapshotRows(viewsAfter.rowsPath!))).toEqual(norm(await readSnapshotRows(viewsBefore.rowsPath!)));
  });
});
