/**
 * npm run bench:replay — reprocessing history into a new job version, from the log and from the
 * Parquet lake, and what a throttled replay costs the live version.
 *
 *   1. pre-fill a fresh 6-partition events topic with 2,000,000 generated events, and write
 *      them all to the lake (the batch layer's lake writer, as `lk batch run` does);
 *   2. (a) replay from the log: the speed job as a new version `--from earliest`, to the end;
 *   3. (b) replay from the lake: the same job `--from lake` (the lake holds every event, so the
 *      log hands over at its end); both in a child process of their own, the demo's metric file,
 *      rates measured from the first record processed until every partition is committed at its
 *      end (start-up and group join excluded); the ratio (b)/(a) (aim >= 3);
 *   3b. (d) the warm-up of a version that starts mid-log (docs/merge-rule.md, "Hard case 3"): a
 *      version `--from <the log's end offsets>`, so that all history is warm-up, read from the lake
 *      (records below the floor without their values); timed like (b); seconds per million history
 *      records, and against (b). The generated events span minutes of event time, well inside
 *      the dedup horizon, so every record is read with its value: the warm-up's worst case;
 *   4. (c) the live version's freshness while a replay throttled with --max-rate runs: `lk speed`
 *      (live, caught up first), `lk serve` and `lk replay --from lake --max-rate R` as processes,
 *      and a probe event produced every 100 ms; each probe's latency is from just before its
 *      produce call until GraphQL answers its window with it (p50, p99; aim p99 < 2 s). The
 *      same probes are measured without the replay first, as the baseline of the same run.
 * Sizes: LK_BENCH_EVENTS (default 2000000), LK_BENCH_REPLAY_RATE (default 20000 events/s),
 * LK_BENCH_PROBE_SECONDS (default 30).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { catchUpLake } from '../batch/batchCycle.ts';
import { dataDirLayout } from '../services/config/dataDir.ts';
import { ingestLines } from '../services/ingest/ingest.ts';
import { resolveLake } from '../services/lake/lakeLocation.ts';
import { KafkaLog } from '../services/log/kafka/kafkaLog.ts';
import { eventTopicSpecs } from '../services/log/topics.ts';
import { parseMetricDefinitions } from '../services/metrics/definitions.ts';
import { speedViewTopic } from '../services/views/viewRow.ts';
import type { VersionOrigin } from '../services/versions/versionRecord.ts';
import { SpeedJob } from '../streaming/job/speedJob.ts';
import { defaultSpeedJobConfig } from '../streaming/cli.ts';
import { LakeSource } from '../streaming/replay/lakeSource.ts';
import { parseReplayFrom, resolveReplayStart } from '../streaming/replay/replayStart.ts';
import { benchBrokers, fmtMiB, fmtRate, machineLine, printTable, runBenchWorker, benchEvents } from './lib.ts';

const EVENTS = Number(process.env.LK_BENCH_EVENTS ?? 2_000_000);
const REPLAY_RATE = Number(process.env.LK_BENCH_REPLAY_RATE ?? 20_000);
const PROBE_SECONDS = Number(process.env.LK_BENCH_PROBE_SECONDS ?? 30);
const REPO = fileURLToPath(new URL('..', import.meta.url));
const METRICS_FILE = join(REPO, 'metrics.yaml');

interface ReplayResult {
  records: number;
  seconds: number;
  peakRssBytes: number;
}

type WorkerFrom = 'earliest' | 'lake' | 'warm-up';

/**
 * (a), (b) or (d), in this process when started with --worker: prints one JSON line with the result.
 * (d) `warm-up`: a version that starts at the log's end (`--from <end offsets>`): the whole history
 * is its warm-up, from the lake (narrow below the floor), and it publishes nothing.
 */
async function worker(brokers: string, topic: string, dataDir: string, from: WorkerFrom): Promise<void> {
  const log = new KafkaLog({ brokers: brokers.split(','), clientId: `bench-replay-${from}` });
  const layout = dataDirLayout(dataDir);
  const version = `bench-${from}-${Date.now().toString(36)}`;
  const lake = await resolveLake(undefined, layout, topic);
  const text = from === 'warm-up' ? (await log.endOffsets(topic)).map((e, p) => `${p}:${e}`).join(',') : from;
  const start = await resolveReplayStart(log, topic, parseReplayFrom(text, undefined, Date.now()), () => LakeSource.open(lake));
  const origin: VersionOrigin = start.origin;
  const job = new SpeedJob(
    log,
    defaultSpeedJobConfig({
      topic,
      version,
      instanceId: 'bench',
      dataDir: layout.root,
      definitions: parseMetricDefinitions(readFileSync(METRICS_FILE, 'utf8'), METRICS_FILE),
      origin,
    }),
  );
  const total = start.ends.reduce((a, b) => a + b, 0);
  const warm = from === 'warm-up';
  await job.start();
  job.failure().catch((err: unknown) => {
    console.error(`replay failed: ${String(err)}`);
    process.exit(1);
  });
  let first = 0;
  for (;;) {
    const status = job.snapshotStatus();
    // A warm-up's position moves from 0 up to the start: it is timed from its first record too.
    const from0 = (p: number) => (warm ? 0 : (origin.startOffsets?.[p] ?? 0));
    if (first === 0 && status.partitions.some((p) => p.position > from0(p.partition))) first = performance.now();
    const committed = await log.committedOffsets(`lk-speed-${version}`, topic);
    if (committed.every((c, p) => (c ?? 0) >= start.ends[p]!)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const seconds = (performance.now() - first) / 1000;
  await job.stop();
  await log.deleteTopics([speedViewTopic(version)]).catch(() => undefined);
  await log.close();
  const result: ReplayResult = { records: total, seconds, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runWorker(brokers: string, topic: string, dataDir: string, from: WorkerFrom): Promise<ReplayResult> {
  return runBenchWorker<ReplayResult>(fileURLToPath(import.meta.url), [brokers, topic, dataDir, from], 'replay worker');
}

/** An `lk` command as a child process, from the sources (the bench measures them, not an older build). */
function lk(args: string[], brokers: string, dataDir: string): ChildProcess {
  const child = spawn(process.execPath, [join(REPO, 'bin/lk.js'), ...args, '--data-dir', dataDir, '--metrics', METRICS_FILE], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, KAFKA_BROKERS: brokers, LK_FROM_SOURCE: '1', LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1' },
  });
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function graphql<T>(url: string, query: string): Promise<T> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query }) });
  const body = (await res.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length) throw new Error(body.errors[0]!.message);
  return body.data!;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const percentile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

/** Probes for `seconds`: one click every 100 ms, each on an ad of its own; latency until GraphQL counts it. */
async function probeFreshness(log: KafkaLog, topic: string, url: string, seconds: number, tag: string): Promise<number[]> {
  const producer = await log.producer();
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  const end = Date.now() + seconds * 1000;
  for (let n = 0; Date.now() < end; n++) {
    const id = `probe-${tag}-${n}`;
    const ad = `probe-${tag}-${n}`;
    const sent = performance.now();
    const ts = Date.now();
    const event = { id, type: 'click', ts: new Date(ts).toISOString(), campaign_id: 'probe', ad_id: ad, user_id: 'probe', cost: 1 };
    await producer.send(topic, [{ key: id, value: JSON.stringify(event) }]);
    const from = new Date(Math.floor(ts / 60_000) * 60_000).toISOString();
    const to = new Date(Math.floor(ts / 60_000) * 60_000 + 60_000).toISOString();
    pending.push(
      (async () => {
        for (;;) {
          const d = await graphql<{ series: { count: number }[] }>(
            url,
            `{ series(metric: "clicks_by_ad", key: "${ad}", granularity: MINUTE, from: "${from}", to: "${to}") { count } }`,
          );
          if (d.series.some((w) => w.count >= 1)) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        latencies.push(performance.now() - sent);
      })(),
    );
    await new Promise((r) => setTimeout(r, 100));
  }
  await Promise.all(pending);
  await producer.close();
  return latencies.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  console.log(`bench:replay — ${EVENTS.toLocaleString('en-US')} events, 6 partitions, the demo's metric file (metrics.yaml)`);
  console.log(machineLine());
  const brokers = await benchBrokers();
  const log = new KafkaLog({ brokers: brokers.split(','), clientId: 'bench-replay' });
  const topic = `bench-replay-${Date.now()}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'lk-bench-replay-'));
  const children: ChildProcess[] = [];
  try {
    await log.createTopics(eventTopicSpecs(topic, 6));
    let t0 = performance.now();
    const produced = await ingestLines(log, benchEvents(EVENTS, { seed: 17 }), { topic, source: 'bench', batchSize: 10_000 });
    console.log(`pre-filled ${produced.accepted.toLocaleString('en-US')} events in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    t0 = performance.now();
    const layout = dataDirLayout(dataDir);
    await catchUpLake({
      log,
      topic,
      groupId: `bench-lake-${Date.now()}`,
      lake: await resolveLake(undefined, layout, topic),
      rollBytes: 128 * 1024 ** 2,
      rollIntervalMs: 60_000,
      logger: pino({ level: 'warn' }),
    });
    console.log(`lake written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const fromLog = await runWorker(brokers, topic, dataDir, 'earliest');
    const fromLake = await runWorker(brokers, topic, dataDir, 'lake');
    const warmUp = await runWorker(brokers, topic, dataDir, 'warm-up');

    // (c): the live version caught up, serving, probes without and with a throttled replay.
    const port = 4600 + Math.floor(Math.random() * 300);
    const url = `http://127.0.0.1:${port}/graphql`;
    children.push(lk(['speed', '--topic', topic, '--version', 'live', '--instance-id', 'live'], brokers, dataDir));
    children.push(lk(['serve', '--port', String(port), '--version', 'live', '--topic', topic], brokers, dataDir));
    const liveGroup = 'lk-speed-live';
    const ends = await log.endOffsets(topic);
    await until('the live version to catch up with the pre-fill', async () => {
      const c = await log.committedOffsets(liveGroup, topic);
      return c.every((o, p) => (o ?? 0) >= ends[p]!);
    });
    await until('serving to answer', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok);
    const quiet = await probeFreshness(log, topic, url, PROBE_SECONDS, 'quiet');
    const replay = lk(
      ['replay', '--topic', topic, '--version', 'throttled', '--from', 'lake', '--max-rate', String(REPLAY_RATE)],
      brokers,
      dataDir,
    );
    children.push(replay);
    const replayStart = Date.now();
    const busy = await probeFreshness(log, topic, url, PROBE_SECONDS, 'busy');
    const replayed = (await log.committedOffsets('lk-speed-throttled', topic)).reduce<number>((a, o) => a + (o ?? 0), 0);
    const replaySeconds = (Date.now() - replayStart) / 1000;

    const logRate = fromLog.records / fromLog.seconds;
    const lakeRate = fromLake.records / fromLake.seconds;
    const ms = (x: number) => `${Math.round(x).toLocaleString('en-US')} ms`;
    printTable([
      ['(a) replay from the log', `${fmtRate(logRate)}  (${fromLog.seconds.toFixed(1)} s, peak RSS ${fmtMiB(fromLog.peakRssBytes)})`],
      ['(b) replay from the lake', `${fmtRate(lakeRate)}  (${fromLake.seconds.toFixed(1)} s, peak RSS ${fmtMiB(fromLake.peakRssBytes)})`],
      ['ratio (b)/(a)', `${(lakeRate / logRate).toFixed(2)}  (aim >= 3)`],
      [
        '(d) warm-up of a start at the log end, from the lake',
        `${((warmUp.seconds * 1e6) / warmUp.records).toFixed(2)} s per million history records  (${warmUp.seconds.toFixed(1)} s, peak RSS ${fmtMiB(warmUp.peakRssBytes)}; ${((lakeRate * warmUp.seconds) / warmUp.records).toFixed(2)}x (b)'s time)`,
      ],
      [
        '(c) freshness, no replay (baseline)',
        `p50 ${ms(percentile(quiet, 0.5))}, p99 ${ms(percentile(quiet, 0.99))}  (${quiet.length} probes)`,
      ],
      [
        `(c) freshness during a replay at --max-rate ${REPLAY_RATE.toLocaleString('en-US')}`,
        `p50 ${ms(percentile(busy, 0.5))}, p99 ${ms(percentile(busy, 0.99))}  (${busy.length} probes; aim p99 < 2,000 ms)`,
      ],
      [
        '(c) the throttled replay meanwhile',
        `${fmtRate(replayed / replaySeconds)} committed over ${replaySeconds.toFixed(0)} s (committed offsets lag by up to one checkpoint)`,
      ],
    ]);
  } finally {
    await Promise.all(children.map(stop));
    for (const v of ['live', 'throttled']) await log.deleteTopics([speedViewTopic(v)]).catch(() => undefined);
    await log.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--worker') await worker(process.argv[3]!, process.argv[4]!, process.argv[5]!, process.argv[6] as WorkerFrom);
else await main();
