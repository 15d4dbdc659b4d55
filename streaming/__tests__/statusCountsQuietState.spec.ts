/**
 * The state bytes a speed instance reports (its status file, `/status`, the `lk_speed_state_bytes`
 * gauge) describe the state it holds, also once its partitions have gone quiet. A state thread
 * refreshes the figure at most every 10 s and only when it answers a batch, so a partition that
 * caught up on a burst soon after its first figure would report that first figure for as long as
 * it stayed quiet (bench:takeover showed "state 0 MiB" for 100,000 keys). The job now measures a
 * quiet partition once more (speedJob.ts remeasureQuietPartitions).
 *
 * The burst arrives right after a first, tiny stream is caught up (within the 10 s of its
 * figure); then the test waits, with no more records, for a figure that counts the burst: at
 * least what the state's own measure gives for its windows and dedup ids alone.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { readSpeedStatuses } from '../../services/status/speedStatus.ts';
import { LocalObjectStore } from '../../services/storage/localObjectStore.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { caughtUp, createEventsTopic, kafkaLog, killAllSpeed, produceLines, spawnSpeed, writeTestMetrics } from './support/harness.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 5151);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run streaming/__tests__/statusCountsQuietState.spec.ts`;

describe(`the status's state bytes once partitions are quiet (seed ${SEED})`, () => {
  const brokers = testBrokers();
  const log = kafkaLog(brokers);
  const dir = tempDir('lk-speed-quiet-bytes-');
  afterAll(async () => {
    killAllSpeed();
    await log.close();
    dir.remove();
  });

  it('counts a burst that ended within 10 s of the first figure', { timeout: 180_000 }, async () => {
    const metricsFile = writeTestMetrics(dir.path);
    const lines = [
      ...generateEventLines({ seed: SEED, count: 20_020, startTime: Date.UTC(2026, 0, 3), eventsPerSecond: 50, duplicateRate: 0 }),
    ];
    const topic = uniqueName('speed-quiet-bytes');
    const version = `qb${Date.now().toString(36)}`;
    const group = `lk-speed-${version}`;
    await createEventsTopic(log, topic, 1);
    const speed = spawnSpeed(
      [
        '--topic',
        topic,
        '--version',
        version,
        '--metrics',
        metricsFile,
        '--data-dir',
        dir.path,
        '--checkpoint-interval',
        '200ms',
        '--instance-id',
        'quiet',
      ],
      { KAFKA_BROKERS: brokers },
    );
    const state = new LocalObjectStore(dir.path);
    const status = async () => (await readSpeedStatuses(state, version)).find((s) => s.status?.instanceId === 'quiet')?.status;
    const upTo = async (records: number) =>
      eventually(
        async () => {
          const st = await status();
          return (await caughtUp(log, group, topic)) && st?.partitions[0]?.position === records ? st : undefined;
        },
        `the instance to catch up on ${records} records (${speed.output().slice(-500)})`,
        90_000,
      );

    await produceLines(log, topic, lines.slice(0, 20));
    const first = await upTo(20);
    await produceLines(log, topic, lines.slice(20));
    const burst = await upTo(lines.length);
    expect(burst.stateWindows, rerun).toBeGreaterThan(first.stateWindows * 10);

    // The state's own measure (partitionState.ts measureBytes) counts at least 40 bytes and the key
    // for each window, and 16 bytes of fingerprint for each dedup id; the first figure (tens of
    // windows and ids) is the tables' initial capacity, far below this floor for 20,000 ids.
    const floor = burst.stateWindows * 40 + burst.dedupEntries * 16;
    expect(burst.dedupEntries, rerun).toBe(lines.length);
    const settled = await eventually(
      async () => {
        const st = await status();
        return st && st.stateBytes >= floor ? st : undefined;
      },
      `a state figure of at least ${floor} bytes for ${burst.stateWindows} windows once quiet (${JSON.stringify({
        first: first.stateBytes,
        burst: burst.stateBytes,
      })}); ${rerun}`,
      60_000,
    );
    expect(settled.partitions[0]?.position, 'no record came meanwhile').toBe(lines.length);
    expect(settled.stateBytes).toBeGreaterThan(first.stateBytes);
    speed.child.kill('SIGTERM');
    expect(await speed.exited).toEqual({ code: 0, signal: null });
  });
});
