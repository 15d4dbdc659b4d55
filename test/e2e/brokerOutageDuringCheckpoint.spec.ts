/**
 * The core of riding out a broker outage, in seconds (the long scenario with every layer is
 * test/outages/brokerOutages.outage.ts, `npm run test:outages`): on a broker of its own,
 * `lk speed` is held at a checkpoint's commit (pause point `speed.checkpoint.commit`), the broker
 * is SIGKILLed exactly then and kept down 5 s, restarted on its own data, and more events follow.
 * The same process, never restarted, must say once that the broker is gone and once that it is
 * back, report not ready meanwhile, and end with a view equal to the oracle (no event lost, none
 * counted twice). Then what retrying cannot fix: a newer producer fencing a partition it still
 * owns, and its events topic deleted, each stop it with one line and exit code 1.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { computeOracle } from '../../streaming/__tests__/support/oracle.ts';
import {
  compareWithOracle,
  createEventsTopic,
  produceLines,
  readView,
  writeTestMetrics,
} from '../../streaming/__tests__/support/harness.ts';
import { transactionalIdFor } from '../../streaming/job/partitionTask.ts';
import { BrokerOfItsOwn } from '../brokerOfItsOwn.ts';
import { eventually, freePort, tempDir } from '../helpers.ts';
import { Pipeline, killAll, type LkProcess } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 1616);
const PARTITIONS = 3;
const OUT_OF_ORDERNESS_MS = 2000;
const OUTAGE_MS = 5000;
const UNREACHABLE = /"msg":"Kafka unreachable/g;
const BACK = /"msg":"Kafka reachable again/g;
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/brokerOutageDuringCheckpoint.spec.ts`;

async function readyz(port: number): Promise<number> {
  return fetch(`http://127.0.0.1:${port}/readyz`).then(
    (r) => r.status,
    () => 0,
  );
}

describe(`lk speed rides out a broker outage during a checkpoint commit (seed ${SEED})`, () => {
  const dir = tempDir('lk-outage-');
  let broker: BrokerOfItsOwn;
  let metricsFile: string;

  beforeAll(async () => {
    broker = await BrokerOfItsOwn.start(join(dir.path, 'kafka'));
    metricsFile = writeTestMetrics(dir.path);
  });

  afterAll(async () => {
    killAll();
    await broker?.stop();
    dir.remove();
  });

  it('waits through it, says so once each way, and the view equals the oracle', { timeout: 240_000 }, async () => {
    const p = new Pipeline(join(dir.path, 'data'), metricsFile, 'events', 'v1', {}, { brokers: [broker.brokers] });
    const lines = [
      ...generateEventLines({
        seed: SEED,
        count: 8000,
        startTime: Date.UTC(2026, 2, 1, 9, 0),
        eventsPerSecond: 20,
        duplicateRate: 0.05,
        outOfOrderRate: 0.1,
        outOfOrderMs: 3000,
        lateRate: 0.02,
        lateMinMs: 60_000,
        lateMaxMs: 20 * 60_000,
      }),
    ];
    const half = Math.floor(lines.length / 2);
    await createEventsTopic(p.log, 'events', PARTITIONS);
    await produceLines(p.log, 'events', lines.slice(0, half));
    const statusPort = await freePort();
    const pauseDir = join(dir.path, 'pause');
    const marker = join(pauseDir, 'speed.checkpoint.commit');
    const speed = p.startSpeed('outage', ['--out-of-orderness', `${OUT_OF_ORDERNESS_MS}ms`, '--status-port', String(statusPort)], {
      LK_PAUSE_AT: 'speed.checkpoint.commit@3',
      LK_PAUSE_DIR: pauseDir,
    });
    const says = (what: string) => `${what}\n${rerun}\nlk speed said:\n${speed.output().slice(-3000)}`;
    try {
      // Held at its third commit: the transaction holds rows and offsets, the commit is not sent.
      await eventually(() => (existsSync(marker) ? true : undefined), says('the pause point'), 60_000);
      await broker.kill();
      rmSync(marker); // the commit now goes to a dead broker
      await eventually(
        async () => ((await readyz(statusPort)) === 503 ? true : undefined),
        says('/readyz false during the outage'),
        30_000,
      );
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      await broker.restart();
      await produceLines(p.log, 'events', lines.slice(half));
      await p.speedCaughtUp(says('the speed job caught up after the outage'), 180_000);
      await eventually(async () => ((await readyz(statusPort)) === 200 ? true : undefined), says('/readyz true after the outage'), 60_000);
      expect(speed.child.exitCode, says('lk speed exited')).toBeNull();
      const problems = compareWithOracle(
        await readView(p.log, speedViewTopic('v1')),
        computeOracle(lines, PARTITIONS, OUT_OF_ORDERNESS_MS),
      );
      expect(problems.slice(0, 10), says(`${problems.length} differences from the oracle`)).toEqual([]);
      expect(speed.output().match(UNREACHABLE)?.length, says('one "unreachable" line')).toBe(1);
      expect(speed.output().match(BACK)?.length, says('one "reachable again" line')).toBe(1);
    } finally {
      await p.stop(speed);
      await p.close();
    }
    expect((await speed.exited).code, says('a graceful stop')).toBe(0);
  });

  /** Waits for `proc` to exit by itself; its exit code and the `lk:` line it printed. */
  async function exitOf(proc: LkProcess): Promise<{ code: number | null; line: string }> {
    const deadline = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000).unref());
    const exit = await Promise.race([proc.exited, deadline]);
    if (exit === 'timeout') proc.child.kill('SIGKILL');
    const lines = proc
      .output()
      .split('\n')
      .filter((l) => l.startsWith('lk: '));
    return { code: exit === 'timeout' ? null : exit.code, line: lines.join('\n') };
  }

  it('stops with one line when a newer producer fences a partition it still owns', { timeout: 180_000 }, async () => {
    const p = new Pipeline(join(dir.path, 'fenced'), metricsFile, 'fenced-events', 'fenced', {}, { brokers: [broker.brokers] });
    const lines = [...generateEventLines({ seed: SEED + 1, count: 3000, startTime: Date.UTC(2026, 2, 1, 9, 0), eventsPerSecond: 20 })];
    await createEventsTopic(p.log, 'fenced-events', 1);
    await produceLines(p.log, 'fenced-events', lines.slice(0, 1000));
    const speed = p.startSpeed('fenced');
    try {
      await p.speedCaughtUp('the first events', 120_000);
      // Another producer takes the partition's transactional id (as a second instance of the
      // version with another --group would), then more events make the job commit again.
      const intruder = await p.log.producer({ transactionalId: transactionalIdFor('fenced', 0) });
      const tx = await intruder.transaction();
      await tx.abort();
      await intruder.close();
      await produceLines(p.log, 'fenced-events', lines.slice(1000));
      const { code, line } = await exitOf(speed);
      expect(code, speed.output().slice(-2000)).toBe(1);
      expect(line).toMatch(
        /^lk: partition 0 of version "fenced": a newer producer took transactional id lk-speed-fenced-p0 while this instance/,
      );
      expect(line.split('\n')).toHaveLength(1);
    } finally {
      await p.stop(speed);
      await p.close();
    }
  });

  it('stops with one line when its events topic is deleted', { timeout: 180_000 }, async () => {
    const p = new Pipeline(join(dir.path, 'deleted'), metricsFile, 'doomed-events', 'doomed', {}, { brokers: [broker.brokers] });
    const lines = [...generateEventLines({ seed: SEED + 2, count: 1000, startTime: Date.UTC(2026, 2, 1, 9, 0), eventsPerSecond: 20 })];
    await createEventsTopic(p.log, 'doomed-events', 2);
    await produceLines(p.log, 'doomed-events', lines);
    const speed = p.startSpeed('doomed');
    try {
      await p.speedCaughtUp('the events', 120_000);
      await p.log.deleteTopics(['doomed-events']);
      const { code, line } = await exitOf(speed);
      expect(code, speed.output().slice(-2000)).toBe(1);
      expect(line).toMatch(/^lk: topic "doomed-events" (was deleted from|does not exist on) 127\.0\.0\.1:\d+/);
      expect(line.split('\n')).toHaveLength(1);
    } finally {
      await p.stop(speed);
      await p.close();
    }
  });
});
