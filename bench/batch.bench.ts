/**
 * `npm run bench:batch`: the batch layer against a real Kafka broker, with the lake on the local
 * disk and on an S3 server (versitygw on 127.0.0.1, scripts/s3server.mjs) in the same run.
 *
 *   1. produce LK_BENCH_EVENTS (default 5,000,000) generated events into a fresh 6-partition topic
 *   2. raw consume rate: read the whole topic with the log consumer doing nothing else
 *   3. lake write, on each store: the lake writer from Kafka into the Delta table (events/s
 *      against the raw consume rate, commit latency p50/p99, bytes per event)
 *   4. full recompute of the batch views from each lake (seconds): local in place; on S3 with a
 *      cold file cache (every data file downloaded) and a warm one
 *
 *   5. engines: each store's lake recomputed by DuckDB (on S3 with the cache warm from step 4) and
 *      by Apache Spark, local[2] (`--engine spark`, batch/engines/spark/; on S3 through Hadoop's
 *      S3A, read from the server every run): seconds, events/s, peak memory (resident, the
 *      process and every process it started: the Spark job's Python and JVM), CPU seconds, and the
 *      measured cost per 100M events in core-hours (CPU seconds scaled linearly)
 *
 * LK_BENCH_STORES=local or s3 measures one store only. LK_BENCH_ENGINES=duckdb skips Spark;
 * LK_BENCH_SPARK_MASTER (default local[2]) runs it elsewhere.
 * Needs KAFKA_BROKERS (e.g. 127.0.0.1:9092, see `npm run kafka -- start`). Prints one JSON line
 * with every figure at the end. The topic and the data dir are deleted afterwards.
 *
 * Iterating on the recompute: LK_BENCH_LAKE_DIR=DIR keeps the data dir. The first run writes the
 * lake into DIR as above (and keeps it); later runs find the lake there and only time the
 * recompute (steps 1-3 skipped, no broker needed), LK_BENCH_RECOMPUTES times (default 2), so
 * variants are compared on the same lake, back to back.
 */
import { LocalObjectStore } from '../services/storage/localObjectStore.ts';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateEventLines } from '../services/ingest/generator.ts';
import type { EventLog, OutgoingRecord } from '../services/log/eventLog.ts';
import { openLog } from '../services/log/openLog.ts';
import { eventTopicSpecs } from '../services/log/topics.ts';
import { loadMetricDefinitions } from '../services/metrics/definitions.ts';
import { logger } from '../services/observability/logger.ts';
import { catchUpLake } from '../batch/batchCycle.ts';
import { dataDirLayout } from '../services/config/dataDir.ts';
import { resolveLake, type LakeHandle } from '../services/lake/lakeLocation.ts';
import { lakeFiles, openLakeForReading } from '../services/lake/lakeTable.ts';
import { recomputeBatchViews } from '../batch/views/batchViews.ts';
import { recomputeWithSpark } from '../batch/engines/spark/sparkViews.ts';
import { s3Env, startS3Server } from '../scripts/s3server.mjs';
import { createServer } from 'node:net';

const EVENTS = Number(process.env.LK_BENCH_EVENTS ?? 5_000_000);
const PARTITIONS = Number(process.env.LK_BENCH_PARTITIONS ?? 6);
const RECOMPUTES = Number(process.env.LK_BENCH_RECOMPUTES ?? 2);
const keptDir = process.env.LK_BENCH_LAKE_DIR;

/** CPU seconds a process has used so far (/proc; 0 where there is none). */
function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100/s)
  } catch {
    return 0;
  }
}

/** A free port of 127.0.0.1 for the S3 server this benchmark starts. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
/** This process and every process it started, from /proc: pid -> [ppid, rss bytes, cpu seconds]. */
function processTree(): Map<number, { rss: number; cpu: number }> {
  const all = new Map<number, { ppid: number; rss: number; cpu: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const fields = readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ');
      all.set(Number(name), {
        ppid: Number(fields[1]),
        cpu: (Number(fields[11]) + Number(fields[12])) / 100,
        rss: Number(fields[21]) * 4096,
      });
    } catch {
      // gone meanwhile
    }
  }
  const tree = new Map<number, { rss: number; cpu: number }>();
  const add = (pid: number) => {
    const p = all.get(pid);
    if (!p || tree.has(pid)) return;
    tree.set(pid, { rss: p.rss, cpu: p.cpu });
    for (const [child, c] of all) if (c.ppid === pid) add(child);
  };
  add(process.pid);
  return tree;
}

/**
 * Samples the process tree every 200 ms while `work` runs: the peak resident memory of the tree,
 * and its CPU seconds (each process's last sample; this process's own CPU from cpuUsage).
 */
async function measured<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number; peakRssBytes: number; cpuSeconds: number }> {
  const own = process.cpuUsage();
  const cpu = new Map<number, number>();
  const before = processTree();
  let peak = 0;
  const sample = () => {
    let rss = 0;
    for (const [pid, p] of processTree()) {
      rss += p.rss;
      if (pid !== process.pid && !before.has(pid)) cpu.set(pid, p.cpu);
    }
    peak = Math.max(peak, rss);
  };
  const timer = setInterval(sample, 200);
  const t = performance.now();
  try {
    const result = await work();
    sample();
    const used = process.cpuUsage(own);
    const children = [...cpu.values()].reduce((a, b) => a + b, 0);
    return { result, seconds: (performance.now() - t) / 1000, peakRssBytes: peak, cpuSeconds: (used.user + used.system) / 1e6 + children };
  } finally {
    clearInterval(timer);
  }
}

/** A shared state in the local folder `dir`, with this host's scratch and cache folders in it. */
function localStateOf(dir: string): { state: LocalObjectStore; scratchDir: string; cacheDir: string } {
  return { state: new LocalObjectStore(dir), scratchDir: join(dir, 'scratch'), cacheDir: join(dir, 'cache') };
}

/** The same lake recomputed by DuckDB and by Spark, one after the other. */
async function compareEngines(lake: LakeHandle, viewsRoot: string, events: number): Promise<Record<string, unknown>> {
  const metrics = loadMetricDefinitions(join(import.meta.dirname, '..', 'metrics.yaml'));
  const common = { lake, version: 'bench-engines', metrics, homePartitions: PARTITIONS, logger: quiet, runGraceMs: 0, keepRuns: 1 };
  const out: Record<string, unknown> = {};
  const engines = (process.env.LK_BENCH_ENGINES ?? 'duckdb,spark').split(',');
  for (const engine of engines) {
    say(`engines: full recompute with ${engine}...`);
    const m = await measured(() =>
      engine === 'spark'
        ? recomputeWithSpark({
            ...common,
            ...localStateOf(join(viewsRoot, 'spark')),
            spark: { master: process.env.LK_BENCH_SPARK_MASTER ?? 'local[2]' },
          })
        : recomputeBatchViews({ ...common, ...localStateOf(join(viewsRoot, 'duckdb')) }),
    );
    const coreHoursPer100M = (m.cpuSeconds / 3600) * (1e8 / events);
    out[engine] = {
      seconds: Number(m.seconds.toFixed(2)),
      eventsPerSec: Math.round(events / m.seconds),
      peakRssMB: Math.round(m.peakRssBytes / 1024 ** 2),
      cpuSeconds: Number(m.cpuSeconds.toFixed(1)),
      coreHoursPer100MEvents: Number(coreHoursPer100M.toFixed(3)),
      viewRows: m.result.manifest.rows,
    };
    say(`  ${JSON.stringify(out[engine])}`);
  }
  const secs = (e: string) => (out[e] as { seconds: number } | undefined)?.seconds ?? NaN;
  out.sparkOverDuckDbSeconds = Number((secs('spark') / secs('duckdb')).toFixed(2));
  return out;
}

const quiet = logger.child({}, { level: process.env.LK_LOG_LEVEL ?? 'warn' });
const say = (line: string) => process.stderr.write(`${line}\n`);

/**
 * Times the full recompute of the batch views from `lake`, `RECOMPUTES` times: wall seconds,
 * and the process's CPU seconds (DuckDB's threads included), the steadier figure on a shared
 * machine.
 */
async function timeRecomputes(
  lake: LakeHandle,
  viewsRoot: string,
): Promise<{ seconds: number[]; cpuSeconds: number[]; rows: number; uniqueEvents: number }> {
  const metrics = loadMetricDefinitions(join(import.meta.dirname, '..', 'metrics.yaml'));
  const seconds: number[] = [];
  const cpuSeconds: number[] = [];
  let rows = 0;
  let uniqueEvents = 0;
  for (let i = 0; i < RECOMPUTES; i++) {
    say('full recompute of the batch views...');
    const t = performance.now();
    const cpu = process.cpuUsage();
    // keepRuns 1 and no grace: repeated runs on a kept lake do not pile up snapshots.
    const run = await recomputeBatchViews({
      lake,
      state: new LocalObjectStore(viewsRoot),
      scratchDir: join(viewsRoot, 'scratch'),
      cacheDir: join(viewsRoot, 'cache'),
      version: 'bench',
      metrics,
      homePartitions: PARTITIONS,
      logger: quiet,
      runGraceMs: 0,
      keepRuns: 1,
    });
    const used = process.cpuUsage(cpu);
    seconds.push(Number(((performance.now() - t) / 1000).toFixed(2)));
    cpuSeconds.push(Number(((used.user + used.system) / 1e6).toFixed(2)));
    rows = run.manifest.rows;
    uniqueEvents = run.manifest.uniqueEvents;
    say(`  ${seconds.at(-1)!.toFixed(2)}s (${cpuSeconds.at(-1)!.toFixed(2)} CPU s), ${rows.toLocaleString()} view rows`);
  }
  return { seconds, cpuSeconds, rows, uniqueEvents };
}

// A kept lake from an earlier run: time only the recompute on it.
const keptLakes = keptDir !== undefined && existsSync(join(keptDir, 'local', 'lake')) ? readdirSync(join(keptDir, 'local', 'lake')) : [];
if (keptDir !== undefined && keptLakes.length === 1) {
  const lake = await resolveLake(undefined, dataDirLayout(join(keptDir, 'local')), keptLakes[0]!);
  const rows = lakeFiles((await openLakeForReading(lake))!.current).reduce((n, f) => n + (f.rows ?? 0), 0);
  say(`recompute only, on the kept lake ${lake.uri} (${rows.toLocaleString()} rows)`);
  const r = await timeRecomputes(lake, join(keptDir, 'views'));
  const engines = await compareEngines(lake, join(keptDir, 'views-engines'), rows);
  const cpus = (await import('node:os')).availableParallelism();
  console.log(
    JSON.stringify({
      lakeRows: rows,
      engines,
      recomputeSeconds: r.seconds,
      recomputeCpuSeconds: r.cpuSeconds,
      viewRows: r.rows,
      uniqueEvents: r.uniqueEvents,
      cpus,
    }),
  );
  process.exit(0);
}

const brokers = process.env.KAFKA_BROKERS;
if (!brokers) {
  console.error('bench:batch needs KAFKA_BROKERS (start a broker with `npm run kafka -- start`, then KAFKA_BROKERS=127.0.0.1:9092)');
  process.exit(2);
}

async function produce(log: EventLog, topic: string): Promise<number> {
  const producer = await log.producer();
  let batch: OutgoingRecord[] = [];
  let sent = 0;
  const inflight: Promise<void>[] = [];
  // Several sends in flight: the producer is not what this benchmark measures.
  const flush = async () => {
    const records = batch;
    batch = [];
    inflight.push(producer.send(topic, records));
    if (inflight.length >= 4) await inflight.shift();
  };
  for (const line of generateEventLines({ seed: 1, count: EVENTS, eventsPerSecond: 1000 })) {
    const id = line.slice(7, line.indexOf('"', 7)); // {"id":"...": the generator writes id first
    batch.push({ key: id, value: line });
    sent++;
    if (batch.length === 20_000) await flush();
  }
  if (batch.length > 0) await flush();
  await Promise.all(inflight);
  await producer.close();
  return sent;
}

async function rawConsume(log: EventLog, topic: string, ends: number[]): Promise<{ records: number; seconds: number }> {
  const consumer = log.consumer({ groupId: `${topic}-raw`, fromBeginning: true });
  const position = ends.map(() => 0);
  let records = 0;
  await consumer.subscribe([topic]);
  const started = performance.now();
  await consumer.run({
    onAssignment: async (assigned) => assigned.map((tp) => ({ ...tp, offset: 0 })),
    eachBatch: async (batch) => {
      records += batch.records.length;
      position[batch.partition] = batch.nextOffset;
    },
  });
  while (!ends.every((end, p) => position[p]! >= end)) await new Promise((r) => setTimeout(r, 20));
  const seconds = (performance.now() - started) / 1000;
  await consumer.stop();
  return { records, seconds };
}

const log = openLog({ brokers, embeddedDir: '' });
const topic = `bench-batch-${Date.now().toString(36)}`;
const dataDir = keptDir ?? mkdtempSync(join(tmpdir(), 'lk-bench-batch-'));
if (keptDir !== undefined) mkdirSync(keptDir, { recursive: true });
try {
  await log.createTopics(eventTopicSpecs(topic, PARTITIONS));
  say(`producing ${EVENTS.toLocaleString()} events (plus generated duplicates) into ${topic} (${PARTITIONS} partitions)...`);
  let t = performance.now();
  const records = await produce(log, topic);
  say(`  ${records.toLocaleString()} records in ${((performance.now() - t) / 1000).toFixed(1)}s`);
  const ends = await log.endOffsets(topic);

  say('raw consume (log consumer, no work)...');
  const raw = await rawConsume(log, topic, ends);
  const rawRate = raw.records / raw.seconds;
  say(`  ${Math.round(rawRate).toLocaleString()} records/s`);

  const stores = (process.env.LK_BENCH_STORES ?? 'local,s3').split(',');
  const perStore: Record<string, Record<string, unknown>> = {};
  for (const store of stores) {
    let lakeUri: string | undefined;
    let stopS3: (() => Promise<void>) | undefined;
    let s3Pid: number | undefined;
    if (store === 's3') {
      const server = await startS3Server({ port: await freePort(), dir: join(dataDir, 's3'), buckets: ['bench'], quiet: true });
      Object.assign(process.env, s3Env(server));
      stopS3 = server.stop;
      s3Pid = server.pid;
      lakeUri = 's3://bench/lakes';
    }
    try {
      say(`lake write on ${store === 's3' ? 'the S3 server' : 'the local disk'} (Kafka -> Delta table)...`);
      const lake = await resolveLake(lakeUri, dataDirLayout(join(dataDir, store)), topic);
      t = performance.now();
      const cpu = process.cpuUsage();
      const s3Cpu = processCpuSeconds(s3Pid);
      const written = await catchUpLake({
        log,
        topic,
        groupId: `${topic}-lake-${store}`,
        lake,
        rollBytes: 128 * 1024 ** 2,
        rollIntervalMs: 60_000,
        logger: quiet,
      });
      const lakeSeconds = (performance.now() - t) / 1000;
      const used = process.cpuUsage(cpu);
      // The writer's CPU (this process: kafkajs, staging, DuckDB's threads) and the S3 server's:
      // steadier than the rate on a shared machine.
      const writerCpu = (used.user + used.system) / 1e6;
      const serverCpu = processCpuSeconds(s3Pid) - s3Cpu;
      const files = lakeFiles((await openLakeForReading(lake))!.current);
      const lakeBytes = files.reduce((n, f) => n + f.size, 0);
      const lakeRows = files.reduce((n, f) => n + (f.rows ?? 0), 0);
      const lakeRate = lakeRows / lakeSeconds;
      const commits = [...written.stats.commitMs].sort((a, b) => a - b);
      const pct = (q: number) => Number((commits[Math.min(commits.length - 1, Math.floor(q * commits.length))] ?? 0).toFixed(1));
      say(
        `  ${Math.round(lakeRate).toLocaleString()} events/s (${(lakeRate / rawRate).toFixed(2)} of raw consume), ${files.length} files, ${(lakeBytes / lakeRows).toFixed(1)} bytes/event, ${commits.length} commits p50 ${pct(0.5)} ms p99 ${pct(0.99)} ms; CPU ${writerCpu.toFixed(1)} s${s3Pid ? ` + S3 server ${serverCpu.toFixed(1)} s` : ''}`,
      );
      const recompute = await timeRecomputes(lake, join(dataDir, store, 'views'));
      // The engine comparison on each store: Spark reads a lake on S3 through Hadoop's S3A (every
      // run from the server), DuckDB through the lake's file cache (warm after step 4).
      const engines = await compareEngines(lake, join(dataDir, store, 'views-engines'), lakeRows);
      perStore[store] = {
        engines,
        lakeWriteEventsPerSec: Math.round(lakeRate),
        lakeWriteShareOfRawConsume: Number((lakeRate / rawRate).toFixed(3)),
        lakeWriteCpuSeconds: Number(writerCpu.toFixed(2)),
        s3ServerCpuSeconds: Number(serverCpu.toFixed(2)),
        commits: commits.length,
        commitP50Ms: pct(0.5),
        commitP99Ms: pct(0.99),
        lakeFiles: files.length,
        lakeBytes,
        lakeBytesPerEvent: Number((lakeBytes / lakeRows).toFixed(1)),
        // On S3 the first recompute downloads every data file into the cache, the next ones read it.
        recomputeSeconds: recompute.seconds,
        recomputeCpuSeconds: recompute.cpuSeconds,
        viewRows: recompute.rows,
        uniqueEvents: recompute.uniqueEvents,
      };
    } finally {
      await stopS3?.();
    }
  }
  const rate = (s: string) => (perStore[s]?.lakeWriteEventsPerSec as number | undefined) ?? NaN;
  const result = {
    events: EVENTS,
    records,
    partitions: PARTITIONS,
    rawConsumeRecordsPerSec: Math.round(rawRate),
    ...perStore,
    s3ShareOfLocalLakeWrite: Number((rate('s3') / rate('local')).toFixed(3)),
    cpus: (await import('node:os')).availableParallelism(),
  };
  console.log(JSON.stringify(result));
} finally {
  await log.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
  await log.close();
  // A kept lake stays for the recompute-only runs; the topic is not needed by them.
  if (keptDir === undefined) rmSync(dataDir, { recursive: true, force: true });
}
