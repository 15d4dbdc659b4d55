/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * The whole pipeline with the Spark engine, as serving/__tests__/endToEndThroughSpeedAndBatch.spec.ts
 * runs it with DuckDB: generated events through the real `lk speed` and `lk batch run --engine
 * spark` into serving; the GraphQL answers over HTTP (series, topKeys, total, distinct counts
 * from the merged sketches) equal an oracle computed from the input alone:
 * - after the Spark batch run, the batch view answers everything (source BATCH);
 * - with the speed job resumed on newer events, serving merges the Spark batch view and the
 *   speed view exactly;
 * - a Spark run killed at each batch crash point (services/faults/crashPoints.ts) leaves a
 *   complete run current (the previous one, or the new one once CURRENT is swapped) and serving
 *   answers exactly from it; the next run is exact.
 * The run records name the engine.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { fieldValuesOf } from '../../services/metrics/fieldSemantics.ts';
import { CRASH_POINTS } from '../../services/faults/crashPoints.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../helpers.ts';
import { currentBatchRun } from '../sharedState.ts';
import type { LoggedEvent } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { gqlData, startTestServer, testLog, type TestServer } from '../../serving/__tests__/fixtures/testServer.ts';
import { checkServingAgainstOracle } from './servingOracle.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 9021);
const REPO = new URL('../../', import.meta.url).pathname;
const COUNT = 3000;
const RATE = 2; // events per second of event time: 33 minutes, so that minute windows close

function lk(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [join(REPO, 'bin/lk.js'), ...args], {
    cwd: REPO,
    env: { ...process.env, KAFKA_BROKERS: testBrokers(), LK_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function lkRun(args: string[], env: Record<string, string> = {}): Promise<string> {
  const child = lk(args, env);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`lk ${args.join(' ')} exited with ${code}:\n${out}`);
  return out;
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

describe('the whole pipeline with lk batch run --engine spark', () => {
  const dir = tempDir('lk-spark-e2e-');
  const topic = uniqueName('spark-events');
  const version = uniqueName('e')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-24);
  const lines = [
    ...generateEventLines({
      seed: SEED,
      count: COUNT,
      startTime: Date.now() - (COUNT / RATE) * 1000 - 60_000,
      eventsPerSecond: RATE,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 5_000,
      lateRate: 0,
      campaigns: 6,
      adsPerCampaign: 3,
      users: 300,
    }),
  ];
  // Three chunks: speed only; then a Spark batch run; then the crash runs and the final one.
  const first = Math.floor(lines.length / 3);
  const second = Math.floor((2 * lines.length) / 3);
  const events: LoggedEvent[] = lines.map((l, i) => {
    const raw = JSON.parse(l);
    return { id: raw.id, ts: Date.parse(raw.ts), fields: raw, values: fieldValuesOf(raw, {}), partition: 0, offset: i, appendTime: 0 };
  });
  const log = testLog('lk-serve-e2e');
  const common = ['--data-dir', dir.path, '--metrics', join(REPO, 'metrics.yaml')];
  const sparkRun = ['batch', 'run', '--topic', topic, '--version', version, '--engine', 'spark', '--spark-master', 'local[2]', ...common];
  const speedArgs = ['speed', '--topic', topic, '--version', version, '--checkpoint-interval', '300ms', '--instance-id', 'e2e', ...common];
  let server: TestServer;
  let speed: ChildProcess | undefined;
  let speedOutput = '';

  function startSpeed(): void {
    speed = lk(speedArgs);
    speed.stdout!.on('data', (d) => (speedOutput += d));
    speed.stderr!.on('data', (d) => (speedOutput += d));
  }

  /** The speed job has committed everything in the topic, and serving has read every committed view row. */
  async function speedCaughtUp(): Promise<void> {
    const ends = await log.endOffsets(topic);
    const statusFile = join(dir.path, 'speed', 'status', `${version}-e2e.json`);
    await eventually(
      () => {
        if (!existsSync(statusFile)) return undefined;
        const status = JSON.parse(readFileSync(statusFile, 'utf8'));
        return ends.every((end, p) => status.partitions.find((x: any) => x.partition === p)?.committedOffset === end) ? true : undefined;
      },
      `speed job caught up (output so far: ${speedOutput.slice(-500)})`,
      90_000,
    );
    const viewEnds = await log.endOffsets(speedViewTopic(version));
    await eventually(async () => {
      const d = await gqlData(server.url, '{ pipeline { serving { speedView { partitions { partition nextOffset } } } } }');
      const parts: { partition: number; nextOffset: number }[] = d.pipeline.serving.speedView.partitions;
      return viewEnds.every((end, p) => (parts.find((x) => x.partition === p)?.nextOffset ?? 0) >= end) ? true : undefined;
    }, 'serving caught up with the speed view');
  }

  async function checkAgainstOracle(upTo: number, expectSource: 'BATCH' | 'SPEED' | undefined, stage: string): Promise<void> {
    await checkServingAgainstOracle(server.url, events.slice(0, upTo), expectSource, `${stage} (seed ${SEED})`);
  }

  /** The run CURRENT names in the shared state (the data dir: no --state-uri). */
  async function currentRun(): Promise<{ runId: string; engine: string | undefined; cut: number[] } | undefined> {
    const m = (await currentBatchRun(dir.path, version))?.manifest;
    return m ? { runId: m.runId, engine: m.engine, cut: m.cut } : undefined;
  }

  async function batchInstalled(runId: string): Promise<void> {
    await eventually(async () => {
      const d = await gqlData(server.url, '{ pipeline { serving { batchView { runId } } } }');
      return d.pipeline.serving.batchView?.runId === runId ? true : undefined;
    }, `batch run ${runId} installed`);
  }

  beforeAll(async () => {
    await log.createTopics(eventTopicSpecs(topic, 3));
    writeFileSync(join(dir.path, 'first.jsonl'), lines.slice(0, first).join('\n') + '\n');
    writeFileSync(join(dir.path, 'second.jsonl'), lines.slice(first, second).join('\n') + '\n');
    writeFileSync(join(dir.path, 'third.jsonl'), lines.slice(second).join('\n') + '\n');
    server = await startTestServer(dir.path, { defaultVersion: version, maxCost: 100_000_000, batchPollMs: 200 });
  });

  afterAll(async () => {
    await stop(speed);
    await server?.close();
    await log.close();
    dir.remove();
  });

  it('after lk batch run --engine spark the Spark batch view answers everything, equal to the oracle', async () => {
    startSpeed();
    await lkRun(['produce', '--topic', topic, '--file', join(dir.path, 'first.jsonl'), ...common]);
    await speedCaughtUp();
    await stop(speed);
    speed = undefined;
    await lkRun(['produce', '--topic', topic, '--file', join(dir.path, 'second.jsonl'), ...common]);
    const out = await lkRun(sparkRun);
    expect(out).toContain('(spark)');
    const run = (await currentRun())!;
    expect(run.engine).toBe('spark');
    await batchInstalled(run.runId);
    await checkAgainstOracle(second, 'BATCH', 'after the Spark run');
  });

  it('serving merges the Spark batch view with the speed view exactly', async () => {
    startSpeed();
    await lkRun(['produce', '--topic', topic, '--file', join(dir.path, 'third.jsonl'), ...common]);
    await speedCaughtUp();
    await checkAgainstOracle(lines.length, undefined, 'Spark batch view + speed view');
  });

  it('a Spark run killed at each batch crash point leaves a complete run serving; the next run is exact', async () => {
    const before = (await currentRun())!;
    // Every crash point of a batch run, as declared (the same ones the DuckDB run passes).
    const points = Object.keys(CRASH_POINTS).filter((p) => p.startsWith('batch.run.'));
    expect(points).toContain('batch.run.current-swapped');
    for (const point of points) {
      const child = lk(sparkRun, { LK_CRASH_AT: point });
      let out = '';
      child.stdout!.on('data', (d) => (out += d));
      child.stderr!.on('data', (d) => (out += d));
      const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, s) => resolve(s)));
      expect(signal, `${point}: the run should have died there (seed ${SEED}):\n${out.slice(-2000)}`).toBe('SIGKILL');
      const now = (await currentRun())!;
      // Before the swap CURRENT still names the previous complete run; after it, the new one.
      if (point === 'batch.run.current-swapped') expect(now.runId, point).not.toBe(before.runId);
      else expect(now.runId, point).toBe(before.runId);
      expect(now.engine).toBe('spark');
      await batchInstalled(now.runId);
      await checkAgainstOracle(lines.length, undefined, `after a crash at ${point}`);
    }
    await stop(speed);
    speed = undefined;
    await lkRun(sparkRun);
    const last = (await currentRun())!;
    expect(last.engine).toBe('spark');
    await batchInstalled(last.runId);
    await checkAgainstOracle(lines.length, 'BATCH', 'the run after the crashes');
  });
});
