/**
 * The same events through a 2-partition topic and a 6-partition topic give identical batch views
 * once partitions are combined (what serving does): counts and raw counts add, min/max, sums
 * (to 1e-12: addition order differs), and distinct sketches merge to identical registers.
 */
import { localStateOptions } from '../../test/sharedState.ts';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { loadMetricDefinitions } from '../../services/metrics/definitions.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { logger } from '../../services/observability/logger.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { runBatchCycle } from '../batchCycle.ts';
import { REPO_ROOT, createTopic, kafkaLog, produceLines, readSnapshotRows, sketchRegisters } from './batchTestKit.ts';
import { testLake } from './batchTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 31337);
const quiet = logger.child({}, { level: 'warn' });

interface Combined {
  count: number;
  rawCount: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  sketch: HyperLogLog | null;
}

describe('batch views do not depend on the partition count (partition count invariance)', () => {
  const dir = tempDir('lk-batch-parts-');
  const metrics = loadMetricDefinitions(join(REPO_ROOT, 'metrics.yaml'));
  const lines = [...generateEventLines({ seed: SEED, count: 8000, eventsPerSecond: 10, duplicateRate: 0.1, lateRate: 0.03 })];
  let log: EventLog;
  const topics: string[] = [];

  beforeAll(() => {
    log = kafkaLog();
  });
  afterAll(async () => {
    await log?.deleteTopics(topics).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  async function combinedViews(partitions: number): Promise<Map<string, Combined>> {
    const topic = uniqueName(`batch-p${partitions}`);
    topics.push(topic, `${topic}.dlq`);
    await createTopic(log, topic, partitions);
    await produceLines(log, topic, lines);
    const result = await runBatchCycle({
      log,
      topic,
      groupId: `${topic}-g`,
      ...localStateOptions(join(dir.path, topic)),
      lake: await testLake(join(dir.path, topic), topic),
      version: 'v1',
      metrics,
      rollBytes: 64 * 1024,
      rollIntervalMs: 60_000,
      logger: quiet,
    });
    expect(result!.manifest.cut.length).toBe(partitions);
    const out = new Map<string, Combined>();
    for (const r of await readSnapshotRows(result!.rowsPath!)) {
      const key = `${r.metric}|${r.granularity}|${r.key}|${r.window_start}`;
      const c = out.get(key) ?? { count: 0, rawCount: 0, sum: null, min: null, max: null, sketch: null };
      c.count += r.count;
      c.rawCount += r.raw_count;
      if (r.sum !== null) c.sum = (c.sum ?? 0) + r.sum;
      if (r.min !== null) c.min = c.min === null ? r.min : Math.min(c.min, r.min);
      if (r.max !== null) c.max = c.max === null ? r.max : Math.max(c.max, r.max);
      if (r.distinct_sketch !== null) c.sketch = (c.sketch ?? new HyperLogLog()).merge(HyperLogLog.fromBase64(r.distinct_sketch));
      out.set(key, c);
    }
    return out;
  }

  it('a 2-partition lake and a 6-partition lake of the same events give the same views', async () => {
    const two = await combinedViews(2);
    const six = await combinedViews(6);
    expect([...six.keys()].sort()).toEqual([...two.keys()].sort());
    const diffs: string[] = [];
    for (const [key, a] of two) {
      const b = six.get(key)!;
      const sumOk = a.sum === null || b.sum === null ? a.sum === b.sum : Math.abs(a.sum - b.sum) <= 1e-12 * Math.max(1, Math.abs(a.sum));
      const sketchOk =
        (a.sketch === null) === (b.sketch === null) &&
        (a.sketch === null ||
          Buffer.compare(Buffer.from(sketchRegisters(a.sketch.toBase64())), Buffer.from(sketchRegisters(b.sketch!.toBase64()))) === 0);
      if (a.count !== b.count || a.rawCount !== b.rawCount || a.min !== b.min || a.max !== b.max || !sumOk || !sketchOk) {
        diffs.push(
          `${key}: 2 partitions ${JSON.stringify({ ...a, sketch: a.sketch?.estimate() })} vs 6 ${JSON.stringify({ ...b, sketch: b.sketch?.estimate() })}`,
        );
      }
    }
    expect(diffs, `seed ${SEED}`).toEqual([]);
  });
});
