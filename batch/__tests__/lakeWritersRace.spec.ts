/**
 * Writers racing on one lake: no lock, only the Delta commit (create-only versions, a transaction
 * identifier per source partition). Three lake writers run at once on one topic, two in one
 * consumer group (which shares the partitions between them, and rebalances when the second one
 * joins) and one in a group of its own (which reads every partition: every one of its rolls races
 * another writer's for the same records), while two compactors run beside them. Then every valid
 * record is in the lake exactly once (no lost commit, no file counted twice), for the platform's
 * reader and for delta-rs, and the log shows the writers did collide (covered and overlapped
 * claims, compactions given up).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { logger } from '../../services/observability/logger.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { openLakeForWriting } from '../../services/lake/lakeTable.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { deltaRsRead } from '../../test/deltaRs.ts';
import { LakeWriter } from '../lake/lakeWriter.ts';
import { compactLake } from '../lake/compaction.ts';
import { createTopic, kafkaLog, lakeState, produceLines, readLakeWithDuckDb, readTopic, testLake } from './batchTestKit.ts';

const quiet = logger.child({}, { level: 'warn' });

describe('lake writers and compaction racing on one table', () => {
  const dir = tempDir('lk-writers-race-');
  const topic = uniqueName('writers-race');
  let log: EventLog;
  let lake: LakeHandle;

  beforeAll(async () => {
    log = kafkaLog();
    lake = await testLake(dir.path, topic);
    await createTopic(log, topic, 4);
    await produceLines(log, topic, [...generateEventLines({ seed: 77, count: 12_000, duplicateRate: 0.05 })]);
  });
  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  it('three writers and compactions at once: every record exactly once', { timeout: 300_000 }, async () => {
    const ends = await log.endOffsets(topic);
    const open = (group: string) =>
      LakeWriter.open({ log, topic, lake, groupId: group, rollBytes: 24 * 1024, rollIntervalMs: 500, logger: quiet });
    const writers = await Promise.all([open(`${topic}-shared`), open(`${topic}-shared`), open(`${topic}-alone`)]);
    let compacting = true;
    const compactions = { merges: 0, conflicts: 0 };
    // Two compactors: each can lose a merge to the other (an input removed first).
    const compactor = async () => {
      const table = await openLakeForWriting(lake, quiet);
      while (compacting) {
        const r = await compactLake({ table, lake, targetFileSize: 256 * 1024, logger: quiet });
        compactions.merges += r.merges;
        compactions.conflicts += r.conflicts;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const compactors = Promise.all([compactor(), compactor()]);
    try {
      await Promise.all(writers.map((w) => w.start()));
      expect(await Promise.all(writers.map((w) => w.catchUp(ends)))).toEqual([true, true, true]);
    } finally {
      await Promise.all(writers.map((w) => w.close()));
      compacting = false;
      await compactors;
    }
    const records = (await readTopic(log, topic)).flat();
    const expected = records.map((r) => `${r.partition}:${r.offset}`).sort();
    const rows = (await readLakeWithDuckDb(lake)).map((r) => `${r.kafka_partition}:${r.kafka_offset}`).sort();
    expect(rows.length).toBe(expected.length);
    expect(rows).toEqual(expected);
    const state = await lakeState(lake);
    ends.forEach((end, p) => expect(state.positions.get(p)?.nextOffset, `partition ${p}`).toBe(end));
    const read = await deltaRsRead(join(dir.path, 'lake', topic));
    expect(read.keys).toEqual(expected);
    // They did collide: claims another writer covered, and merges that lost an input.
    const rewinds = writers.reduce((n, w) => n + w.stats.rewinds, 0);
    expect(rewinds, 'claims covered or overlapped by another writer').toBeGreaterThan(0);
    expect(compactions.merges).toBeGreaterThan(0);
    expect(compactions.conflicts, 'merges given up to the other compactor').toBeGreaterThan(0);
  });
});
