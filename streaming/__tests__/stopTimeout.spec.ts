/**
 * SIGTERM ends a speed instance within --stop-timeout whatever it waits for. A checkpoint held
 * in its open transaction (the pause point `speed.checkpoint.commit`, which stands for a commit
 * that does not come back: a broker or coordinator that does not answer, a group rebalancing
 * around it) keeps the final checkpoint from finishing: the instance exits at the deadline
 * without it, with one line saying why, and the next instance resumes from the last committed
 * checkpoint (the open transaction is fenced and aborted): the view equals the oracle.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { computeOracle } from './support/oracle.ts';
import {
  caughtUp,
  compareWithOracle,
  createEventsTopic,
  kafkaLog,
  killAllSpeed,
  produceLines,
  readView,
  spawnSpeed,
  writeTestMetrics,
  type SpeedProcess,
} from './support/harness.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 4242);
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run streaming/__tests__/stopTimeout.spec.ts`;

/** The exit of `p`, or undefined if it has not exited within `ms` (a bound, not a timing assertion). */
async function exitWithin(p: SpeedProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([p.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  clearTimeout(timer);
  return result;
}

describe(`SIGTERM with a final checkpoint that cannot finish (seed ${SEED})`, () => {
  const brokers = testBrokers();
  const log = kafkaLog(brokers);
  const dir = tempDir('lk-speed-stop-timeout-');
  afterAll(async () => {
    killAllSpeed();
    await log.close();
    dir.remove();
  });

  it('exits within --stop-timeout without it; the next instance resumes exactly', { timeout: 120_000 }, async () => {
    const metricsFile = writeTestMetrics(dir.path);
    const lines = [
      ...generateEventLines({
        seed: SEED,
        count: 3000,
        startTime: Date.UTC(2026, 0, 3),
        eventsPerSecond: 20,
        duplicateRate: 0.05,
      }),
    ];
    const oracle = computeOracle(lines, 2, 2000);
    const topic = uniqueName('speed-stop-timeout');
    const version = `st${Date.now().toString(36)}`;
    const group = `lk-speed-${version}`;
    await createEventsTopic(log, topic, 2);
    const half = Math.floor(lines.length / 2);
    await produceLines(log, topic, lines.slice(0, half));
    const pauseDir = join(dir.path, 'pause');
    mkdirSync(pauseDir, { recursive: true });
    const args = (id: string) =>
      ['--topic', topic, '--version', version, '--metrics', metricsFile, '--data-dir', dir.path].concat([
        '--out-of-orderness',
        '2s',
        '--checkpoint-interval',
        '200ms',
        '--instance-id',
        id,
        '--stop-timeout',
        '2s',
      ]);
    const env = { KAFKA_BROKERS: brokers };

    // The second checkpoint transaction (a partition's first) is held open; the rest of the stream comes meanwhile.
    const held = spawnSpeed(args('held'), { ...env, LK_PAUSE_AT: 'speed.checkpoint.commit@2', LK_PAUSE_DIR: pauseDir });
    const marker = join(pauseDir, 'speed.checkpoint.commit');
    await eventually(() => (existsSync(marker) ? true : undefined), `a checkpoint to be held (${held.output().slice(-500)})`, 60_000);
    await produceLines(log, topic, lines.slice(half));
    held.child.kill('SIGTERM');
    const exit = await exitWithin(held, 60_000);
    if (!exit) held.child.kill('SIGKILL');
    expect(exit, `the instance did not exit within 60 s of SIGTERM: ${held.output().slice(-2000)}`).toEqual({ code: 1, signal: null });
    expect(held.output()).toMatch(/did not finish within --stop-timeout: exiting without it/);
    expect(held.output()).toMatch(/"waitingFor":"the final checkpoint of partitions/);

    // The next instance restores the last committed checkpoints; its view equals the oracle.
    const next = spawnSpeed(args('next'), env);
    await eventually(
      async () => ((await caughtUp(log, group, topic)) ? true : undefined),
      `the next instance to catch up (${next.output().slice(-500)})`,
      60_000,
    );
    next.child.kill('SIGTERM');
    expect(await exitWithin(next, 60_000), next.output().slice(-2000)).toEqual({ code: 0, signal: null });
    const problems = compareWithOracle(await readView(log, speedViewTopic(version)), oracle);
    expect(problems.slice(0, 10), `${problems.length} differences\n${rerun}`).toEqual([]);
  });
});
