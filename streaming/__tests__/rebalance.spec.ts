/**
 * Two speed instances share the partitions of one group; one is SIGKILLed mid-run. Its
 * partitions move to the survivor with their state (restored from the shared checkpoint store)
 * and the final view still equals the oracle.
 */
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { speedStatusKey, type SpeedStatus } from '../../services/status/speedStatus.ts';
import { computeOracle } from './support/oracle.ts';
import {
  killAllSpeed,
  caughtUp,
  compareWithOracle,
  createEventsTopic,
  kafkaLog,
  produceLines,
  readView,
  spawnSpeed,
  writeTestMetrics,
} from './support/harness.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 7771);

describe(`rebalance (seed ${SEED})`, () => {
  const brokers = testBrokers();
  const log = kafkaLog(brokers);
  const dir = tempDir('lk-speed-rebalance-');
  afterAll(async () => {
    killAllSpeed();
    await log.close();
    dir.remove();
  });

  it('keeps the view exact when an instance dies and its partitions move', { timeout: 150_000 }, async () => {
    const metricsFile = writeTestMetrics(dir.path);
    const lines = [
      ...generateEventLines({
        seed: SEED,
        count: 80_000,
        startTime: Date.UTC(2026, 0, 2),
        eventsPerSecond: 40,
        lateRate: 0.02,
        lateMinMs: 60_000,
        lateMaxMs: 1_800_000,
      }),
    ];
    const oracle = computeOracle(lines, 6, 2000);
    const topic = uniqueName('speed-rebalance');
    const version = `r${Date.now().toString(36)}`;
    const group = `lk-speed-${version}`;
    await createEventsTopic(log, topic, 6);
    let produced = false;
    const producing = produceLines(log, topic, lines, 2000, 500).then(() => (produced = true));
    const args = (id: string) => [
      '--topic',
      topic,
      '--version',
      version,
      '--metrics',
      metricsFile,
      '--data-dir',
      dir.path,
      '--out-of-orderness',
      '2s',
      '--checkpoint-interval',
      '300ms',
      '--instance-id',
      id,
    ];
    const env = { KAFKA_BROKERS: brokers };
    const status = (id: string): SpeedStatus | undefined => {
      const path = join(dir.path, speedStatusKey(version, id));
      return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as SpeedStatus) : undefined;
    };
    const committedTotal = async () => (await log.committedOffsets(group, topic)).reduce<number>((a, b) => a + (b ?? 0), 0);

    const a = spawnSpeed(args('a'), env);
    await eventually(async () => ((await committedTotal()) > 0 ? true : undefined), 'instance a to commit', 60_000);
    const b = spawnSpeed(args('b'), env);
    try {
      // Both own partitions and both make progress.
      await eventually(
        () => {
          const sa = status('a');
          const sb = status('b');
          return sa && sb && sa.partitions.length > 0 && sb.partitions.length > 0 && sa.partitions.length + sb.partitions.length === 6
            ? true
            : undefined;
        },
        'the partitions to be shared',
        60_000,
      );
      const before = await committedTotal();
      await eventually(async () => ((await committedTotal()) > before ? true : undefined), 'progress while shared', 60_000);
      a.child.kill('SIGKILL');
      expect((await a.exited).signal).toBe('SIGKILL');
      await eventually(() => (status('b')?.partitions.length === 6 ? true : undefined), 'instance b to take every partition', 60_000);
      await producing;
      await eventually(async () => (produced && (await caughtUp(log, group, topic)) ? true : undefined), 'instance b to catch up', 90_000);
    } finally {
      a.child.kill('SIGKILL');
      b.child.kill('SIGTERM');
    }
    expect((await b.exited).code, b.output()).toBe(0);
    const problems = compareWithOracle(await readView(log, speedViewTopic(version)), oracle);
    expect(problems.slice(0, 20), `seed ${SEED}: ${problems.length} differences`).toEqual([]);
  });
});
