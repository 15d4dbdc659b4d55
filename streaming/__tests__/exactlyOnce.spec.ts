/**
 * Exactly-once of the speed view against an independent oracle, on a real broker, with
 * 200,000 distinct events (5 % duplicates, out-of-order and late events) over 6 partitions:
 * - one uninterrupted run;
 * - a run whose process is SIGKILLed at seeded random moments 10+ times while events still
 *   arrive, restarted each time, and stopped once with SIGTERM (which must checkpoint
 *   everything it read and exit 0).
 */
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines, seededRandom } from '../../services/ingest/generator.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { computeOracle, type OracleResult } from './support/oracle.ts';
import {
  killAllSpeed,
  caughtUp,
  compareWithOracle,
  createEventsTopic,
  kafkaLog,
  produceLines,
  readView,
  sleep,
  spawnSpeed,
  writeTestMetrics,
} from './support/harness.ts';
import { speedStatusKey, type SpeedStatus } from '../../services/status/speedStatus.ts';

/** A port nobody listens on right now (the child binds it a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const SEED = Number(process.env.LK_TEST_SEED ?? 20261122);
const OUT_OF_ORDERNESS_MS = 2000;
const PARTITIONS = 6;

describe(`speed view is exact (seed ${SEED})`, () => {
  const brokers = testBrokers();
  const log = kafkaLog(brokers);
  const dir = tempDir('lk-speed-exact-');
  let metricsFile: string;
  let lines: string[];
  let oracle: OracleResult;

  beforeAll(() => {
    metricsFile = writeTestMetrics(dir.path);
    lines = [
      ...generateEventLines({
        seed: SEED,
        count: 200_000,
        startTime: Date.UTC(2026, 0, 1, 23, 30),
        eventsPerSecond: 50,
        duplicateRate: 0.05,
        outOfOrderRate: 0.1,
        outOfOrderMs: 5000,
        lateRate: 0.02,
        lateMinMs: 60_000,
        lateMaxMs: 30 * 60_000,
      }),
    ];
    oracle = computeOracle(lines, PARTITIONS, OUT_OF_ORDERNESS_MS);
    // The input must exercise every rule the view depends on.
    expect(oracle.duplicates).toBeGreaterThan(9000);
    expect(oracle.droppedLate).toBeGreaterThan(1000);
    expect([...oracle.rows.values()].some((r) => r.closedThrough !== undefined)).toBe(true);
  });

  afterAll(async () => {
    killAllSpeed();
    await log.close();
    dir.remove();
  });

  const args = (topic: string, version: string) => [
    '--topic',
    topic,
    '--version',
    version,
    '--metrics',
    metricsFile,
    '--data-dir',
    dir.path,
    '--out-of-orderness',
    `${OUT_OF_ORDERNESS_MS}ms`,
    '--checkpoint-interval',
    '200ms',
  ];
  const env = { KAFKA_BROKERS: brokers };

  // The default (one state thread per spare core), the states in the main thread, and more
  // state threads than cores (several partitions per thread, threads sharing cores).
  it.each([
    { threads: undefined, label: 'default state threads' },
    { threads: '0', label: 'states in the main thread' },
    { threads: '3', label: '3 state threads' },
  ])('uninterrupted run equals the oracle ($label)', { timeout: 120_000 }, async ({ threads }) => {
    const topic = uniqueName('speed-exact');
    const version = `x${Date.now().toString(36)}`;
    await createEventsTopic(log, topic, PARTITIONS);
    await produceLines(log, topic, lines);
    const port = await freePort();
    const threadArgs = threads === undefined ? [] : ['--threads', threads];
    const proc = spawnSpeed([...args(topic, version), '--status-port', String(port), ...threadArgs], env);
    try {
      await eventually(
        async () => ((await caughtUp(log, `lk-speed-${version}`, topic)) ? true : undefined),
        'the speed job to catch up',
        100_000,
      );
      // The status endpoint reports the same duplicates and dropped-late counts as the oracle.
      const base = `http://127.0.0.1:${port}`;
      const status = await eventually(async () => {
        const s = (await (await fetch(`${base}/status`)).json()) as SpeedStatus;
        return s.partitions.length === PARTITIONS && s.partitions.every((p) => p.lag === 0 && p.committedOffset === p.position)
          ? s
          : undefined;
      }, 'a caught-up status');
      expect(status.duplicates).toBe(oracle.duplicates);
      expect(Object.values(status.droppedLate).reduce((a, b) => a + b, 0)).toBe(oracle.droppedLate);
      expect(status.watermark).not.toBeNull();
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/^lk_speed_partition_lag\{partition="0"\} 0$/m);
      expect(metrics).toMatch(new RegExp(`^lk_speed_duplicates ${oracle.duplicates}$`, 'm'));
      expect(metrics).toMatch(/^lk_speed_dropped_late\{metric="clicks_by_ad",granularity="minute"\} \d+$/m);
    } finally {
      proc.child.kill('SIGTERM');
    }
    const exit = await proc.exited;
    expect(exit.code, proc.output()).toBe(0);
    const view = await readView(log, speedViewTopic(version));
    const problems = compareWithOracle(view, oracle);
    expect(problems.slice(0, 20), `seed ${SEED}: ${problems.length} differences`).toEqual([]);
  });

  it('10+ SIGKILLs at random moments and a SIGTERM leave the view equal to the oracle', { timeout: 240_000 }, async () => {
    const topic = uniqueName('speed-crash');
    const version = `k${Date.now().toString(36)}`;
    const group = `lk-speed-${version}`;
    const rand = seededRandom(SEED);
    await createEventsTopic(log, topic, PARTITIONS);
    // Events keep arriving while the job is killed and restarted.
    let produced = false;
    const producing = produceLines(log, topic, lines, 4000, 1500).then(() => (produced = true));
    const progress: number[] = [];
    const committedTotal = async () => (await log.committedOffsets(group, topic)).reduce<number>((a, b) => a + (b ?? 0), 0);
    // A SIGKILLed member stays in the group until its session times out (about 10 s), so a
    // restart only processes once that passed. Even kills wait for the restarted process to
    // commit progress and then strike at a random moment of processing; odd kills strike at a
    // random moment of start-up, group join or restore.
    let lastTotal = 0;
    // Twelve restarts: eleven end in SIGKILL; the middle one (index 6, while events still
    // arrive) ends in SIGTERM, which must take a final checkpoint of everything read and exit 0.
    const GRACEFUL = 6;
    for (let round = 0; round < 12; round++) {
      const graceful = round === GRACEFUL;
      const proc = spawnSpeed(graceful ? [...args(topic, version), '--instance-id', 'sigterm'] : args(topic, version), env);
      if (round % 2 === 0) {
        await eventually(
          async () => ((await committedTotal()) > lastTotal || (produced && (await caughtUp(log, group, topic))) ? true : undefined),
          `progress in round ${round}`,
          60_000,
        );
        await sleep(Math.floor(rand() * 1500));
      } else {
        await sleep(300 + Math.floor(rand() * 2500));
      }
      proc.child.kill(graceful ? 'SIGTERM' : 'SIGKILL');
      const exit = await proc.exited;
      if (graceful) {
        expect(exit.code, proc.output()).toBe(0);
        // Its last status (written after the final checkpoint): everything read is committed.
        const status = JSON.parse(readFileSync(join(dir.path, speedStatusKey(version, 'sigterm')), 'utf8')) as SpeedStatus;
        // (It may own only some partitions: the member killed before it can still hold the rest.)
        expect(status.partitions.length).toBeGreaterThan(0);
        for (const p of status.partitions) expect(p.committedOffset, `partition ${p.partition}`).toBe(p.position);
      } else {
        expect(exit.signal, proc.output()).toBe('SIGKILL');
      }
      lastTotal = await committedTotal();
      progress.push(lastTotal);
    }
    expect(new Set(progress).size, `committed totals after each round: ${progress.join(',')}`).toBeGreaterThan(5);

    await producing;
    const final = spawnSpeed([...args(topic, version), '--instance-id', 'final'], env);
    try {
      // The group may already be at the end: wait for the process to run (its status file)
      // before the SIGTERM, which must then find its handler installed.
      await eventually(
        () => (existsSync(join(dir.path, speedStatusKey(version, 'final'))) ? true : undefined),
        'the final run to start',
        60_000,
      );
      await eventually(async () => ((await caughtUp(log, group, topic)) ? true : undefined), 'the speed job to catch up', 100_000);
    } finally {
      final.child.kill('SIGTERM');
    }
    expect((await final.exited).code, final.output()).toBe(0);
    const view = await readView(log, speedViewTopic(version));
    const problems = compareWithOracle(view, oracle);
    expect(problems.slice(0, 20), `seed ${SEED}: ${problems.length} differences`).toEqual([]);
  });
});
