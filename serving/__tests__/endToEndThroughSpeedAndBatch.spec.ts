/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * End to end on the real broker: generated events through the real `lk speed` and
 * `lk batch run` into serving; the GraphQL answers over HTTP equal an oracle computed from the
 * input file alone, for series, topKeys and total: with the speed job running before any batch
 * run, after the batch run with the speed job paused behind the batch cut, and after the speed
 * job resumed. Reconciliation finds no disagreeing key on this clean data. The batch layer keeps
 * its lake on a real S3 server (`--lake-uri s3://...`, test/s3.ts): the whole pipeline with the
 * lake on object storage equals the oracle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import type { Granularity } from '../../services/metrics/definitions.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { fieldValuesOf } from '../../services/metrics/fieldSemantics.ts';
import { currentBatchRun } from '../../test/sharedState.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../test/s3.ts';
import { hllOf, oracleWindows, type LoggedEvent } from './fixtures/viewFixtures.ts';
import { METRICS, gqlData, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 9001);
const REPO = new URL('../../', import.meta.url).pathname;
const COUNT = 4000;
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

describe('end to end: lk speed and lk batch run into lk serve', () => {
  const dir = tempDir('lk-serve-e2e-');
  const topic = uniqueName('e2e-events');
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
  const half = Math.floor(lines.length / 2);
  const events: LoggedEvent[] = lines.map((l, i) => {
    const raw = JSON.parse(l);
    return { id: raw.id, ts: Date.parse(raw.ts), fields: raw, values: fieldValuesOf(raw, {}), partition: 0, offset: i, appendTime: 0 };
  });
  const log = testLog('lk-serve-e2e');
  const common = ['--data-dir', dir.path, '--metrics', join(REPO, 'metrics.yaml')];
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

  async function checkAgainstOracle(upTo: number, expectSource: 'BATCH' | 'SPEED', stage: string): Promise<void> {
    const input = events.slice(0, upTo);
    const times = input.map((e) => e.ts);
    const from = new Date(Math.floor(Math.min(...times) / 86_400_000) * 86_400_000).toISOString();
    const to = new Date(Math.ceil((Math.max(...times) + 1) / 86_400_000) * 86_400_000 + 86_400_000).toISOString();
    for (const def of METRICS.metrics) {
      const c = compileMetric(def);
      const keys = [...new Set(input.filter((e) => c.matches(e.values)).map((e) => c.keyOf(e.values)!))].sort();
      for (const g of def.granularities as Granularity[]) {
        const where = `${stage} ${def.name}/${g} (seed ${SEED})`;
        const q = `{ ${keys.map((k, i) => `k${i}: series(metric: "${def.name}", key: "${k}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}") { windowStart count sum distinct source }`).join(' ')}
          top: topKeys(metric: "${def.name}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}", limit: 1000) { key count }
          total(metric: "${def.name}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}") { count distinct sum } }`;
        const d = await gqlData<any>(server.url, q);
        const ranking: { key: string; count: number }[] = [];
        keys.forEach((key, i) => {
          const oracle = oracleWindows(input, def, g, key);
          const got = d[`k${i}`] as any[];
          expect(
            got.map((w) => [Date.parse(w.windowStart), w.count, w.distinct]),
            `${where} ${key}`,
          ).toEqual([...oracle].sort((a, b) => a[0] - b[0]).map(([s, w]) => [s, w.count, w.distinct]));
          for (const w of got) {
            const o = oracle.get(Date.parse(w.windowStart))!;
            if (o.sum === null) expect(w.sum).toBeNull();
            else expect(w.sum, where).toBeCloseTo(o.sum, 6);
            expect(w.source, where).toBe(expectSource);
          }
          ranking.push({ key, count: [...oracle.values()].reduce((a, w) => a + w.count, 0) });
        });
        ranking.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
        expect(d.top, where).toEqual(ranking);
        const all = oracleWindows(input, def, g, null);
        expect(d.total.count, where).toBe([...all.values()].reduce((a, w) => a + w.count, 0));
        if (def.distinct) {
          const users = new Set<string>();
          for (const w of all.values()) for (const u of w.users) users.add(u);
          expect(d.total.distinct, where).toBe(hllOf(users));
        }
      }
    }
  }

  let s3: TestS3;

  beforeAll(async () => {
    s3 = await startTestS3(['e2e-lake']);
    await log.createTopics(eventTopicSpecs(topic, 3));
    writeFileSync(join(dir.path, 'first.jsonl'), lines.slice(0, half).join('\n') + '\n');
    writeFileSync(join(dir.path, 'second.jsonl'), lines.slice(half).join('\n') + '\n');
    server = await startTestServer(dir.path, { defaultVersion: version, maxCost: 100_000_000, batchPollMs: 200 });
  });

  afterAll(async () => {
    await stop(speed);
    await server?.close();
    await log.close();
    await s3?.stop();
    dir.remove();
  });

  it('before the batch run: the speed view answers, equal to the oracle', async () => {
    startSpeed();
    await lkRun(['produce', '--topic', topic, '--file', join(dir.path, 'first.jsonl'), ...common]);
    await speedCaughtUp();
    await checkAgainstOracle(half, 'SPEED', 'speed only');
  });

  it('speed job paused behind the batch cut: after lk batch run the batch view answers everything', async () => {
    await stop(speed);
    speed = undefined;
    await lkRun(['produce', '--topic', topic, '--file', join(dir.path, 'second.jsonl'), ...common]);
    await lkRun(['batch', 'run', '--topic', topic, '--version', version, '--lake-uri', 's3://e2e-lake/lakes', ...common], s3.env);
    expect(existsSync(join(s3.server.dataDir, 'e2e-lake', 'lakes', topic, '_delta_log')), 'the lake is on the S3 server').toBe(true);
    const runId = (await currentBatchRun(dir.path, version))?.manifest.runId;
    expect(runId).toBeDefined();
    await eventually(async () => {
      const d = await gqlData(server.url, '{ pipeline { serving { batchView { runId } } } }');
      return d.pipeline.serving.batchView?.runId === runId ? true : undefined;
    }, 'batch run installed');
    await checkAgainstOracle(lines.length, 'BATCH', 'speed paused behind the cut');

    // Reconciliation over the closed windows: clean data, no disagreement.
    const times = events.map((e) => e.ts);
    const from = new Date(Math.floor(Math.min(...times) / 86_400_000) * 86_400_000).toISOString();
    const to = new Date(Math.floor(Math.min(...times) / 86_400_000) * 86_400_000 + 2 * 86_400_000).toISOString();
    const r = await gqlData<any>(
      server.url,
      `{ reconciliation(metric: "impressions_by_campaign", granularity: MINUTE, from: "${from}", to: "${to}") { windowsCompared disagreeingKeys keysCompared duplicates { rangeBeforeDedup speedAfterDedup } } }`,
    );
    expect(r.reconciliation.windowsCompared).toBeGreaterThan(0);
    expect(r.reconciliation.disagreeingKeys).toBe(0);
    expect(r.reconciliation.duplicates.rangeBeforeDedup).toBeGreaterThan(0);
    expect(r.reconciliation.duplicates.speedAfterDedup).toBe(0);
  });

  it('after the speed job resumes and catches up: still equal to the oracle', async () => {
    startSpeed();
    await speedCaughtUp();
    await checkAgainstOracle(lines.length, 'BATCH', 'speed resumed');
  });
});
