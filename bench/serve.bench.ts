/**
 * `npm run bench:serve`: the serving layer's query path.
 *
 *   1. a batch snapshot of LK_BENCH_KEYS (default 10,000) keys x one day of minute windows
 *      (14.4 M windows) written with DuckDB and published as the batch layer does;
 *   2. the real `lk serve` in a child process loads it (embedded log: no speed view);
 *   3. LK_BENCH_CLIENTS (default 32) concurrent HTTP clients ask `series` for a 24 h range of a
 *      random key for LK_BENCH_SECONDS (default 20): requests/s, p50, p99; then the same for
 *      `seriesColumns`, the same windows as columns, twice: with the same five fields as `series`,
 *      and with what the dashboard's chart reads (window starts as small integers, count, source,
 *      provisional);
 *   4. the baselines, in this process: the same answers straight from the in-memory view
 *      (serving/queries.ts seriesWindows and seriesColumns over a loaded VersionView), no HTTP,
 *      no GraphQL.
 *
 * Client and server are separate processes (each gets one of the two cores); one answer per
 * second is checked in full against the baseline. Prints a table and one JSON line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { commitBatchRun, readCurrentBatchRun, stageBatchRun } from '../services/views/batchSnapshots.ts';
import { seededRandom } from '../services/ingest/generator.ts';
import { loadBatchView } from '../serving/views/batchLoader.ts';
import { VersionView } from '../serving/views/versionView.ts';
import { seriesColumns, seriesWindows } from '../serving/queries.ts';
import { machineLine, printTable, trackPeakRss } from './lib.ts';

const KEYS = Number(process.env.LK_BENCH_KEYS ?? 10_000);
const CLIENTS = Number(process.env.LK_BENCH_CLIENTS ?? 32);
const SECONDS = Number(process.env.LK_BENCH_SECONDS ?? 20);
const WINDOWS = 1440;
const DAY_START = Date.UTC(2026, 0, 1);
const FROM = new Date(DAY_START).toISOString();
const TO = new Date(DAY_START + 86_400_000).toISOString();
const VERSION = 'bench';
const say = (line: string) => process.stderr.write(`${line}\n`);

const SELECTION = '{ windowStart count sum source processingTime }';
const QUERY = `query($k: String!) { series(metric: "clicks_by_ad", key: $k, granularity: MINUTE, from: "${FROM}", to: "${TO}") ${SELECTION} }`;
/** Supplementary: the same query for one hour (60 windows), to show where the time per answer goes. */
const ONE_HOUR_TO = new Date(DAY_START + 3_600_000).toISOString();
const QUERY_1H = `query($k: String!) { series(metric: "clicks_by_ad", key: $k, granularity: MINUTE, from: "${FROM}", to: "${ONE_HOUR_TO}") ${SELECTION} }`;
/** The same windows and fields as columns: a few arrays instead of 1,440 objects. */
const QUERY_COLUMNS = `query($k: String!) { seriesColumns(metric: "clicks_by_ad", key: $k, granularity: MINUTE, from: "${FROM}", to: "${TO}") ${SELECTION} }`;
/** What the dashboard's chart asks (serving/dashboard/operations.ts seriesQuery, measure count). */
const CHART_SELECTION = '{ windowBase windowMs windowIndex count source provisional latestProcessingTime }';
const QUERY_CHART = `query($k: String!) { seriesColumns(metric: "clicks_by_ad", key: $k, granularity: MINUTE, from: "${FROM}", to: "${TO}") ${CHART_SELECTION} }`;

/** The window counts of an answer, to check it against the baseline. */
type CountsOf = (data: Record<string, unknown>) => number[];
const seriesCounts: CountsOf = (d) => (d.series as { count: number }[]).map((w) => w.count);
const columnCounts: CountsOf = (d) => (d.seriesColumns as { count: number[] }).count;

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function writeSnapshot(viewsRoot: string): Promise<void> {
  const runId = 'bench-run';
  const dir = stageBatchRun(viewsRoot, VERSION, runId);
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  // Deterministic values: count 1..13, sum = count * 0.5; six partitions by key.
  await conn.run(`COPY (
      SELECT 'clicks_by_ad' AS metric, 'minute' AS granularity, 'ad-' || k AS key,
             CAST(${DAY_START} + w * 60000 AS BIGINT) AS window_start, CAST(k % 6 AS INTEGER) AS partition,
             CAST(1 + (k * 7 + w) % 13 AS BIGINT) AS count, (1 + (k * 7 + w) % 13) * 0.5 AS sum, 0.5 AS min, 0.5 AS max,
             CAST(NULL AS VARCHAR) AS distinct_sketch, CAST(1 + (k * 7 + w) % 13 AS BIGINT) AS raw_count, CAST(0 AS BIGINT) AS misplaced,
             CAST(1000000 AS BIGINT) AS through_offset, CAST(${DAY_START + 86_400_000} AS BIGINT) AS processing_time
      FROM range(${KEYS}) t(k), range(${WINDOWS}) u(w)
    ) TO '${join(dir, 'rows.parquet')}' (FORMAT parquet)`);
  conn.closeSync();
  db.closeSync();
  const now = Date.now();
  commitBatchRun(viewsRoot, {
    runId,
    version: VERSION,
    cut: [1e6, 1e6, 1e6, 1e6, 1e6, 1e6],
    processingTimes: Array(6).fill(DAY_START + 86_400_000),
    startedAt: now,
    finishedAt: now,
    durationMs: 0,
    rows: KEYS * WINDOWS,
    rawEvents: 0,
    uniqueEvents: 0,
    misplacedEvents: 0,
    lakeFiles: 0,
    lakeBytes: 0,
    full: true,
    metricsSource: 'bench',
  });
}

function startServer(dataDir: string): Promise<{ url: string; stop(): Promise<void> }> {
  // LK_BENCH_PROFILE_DIR=<dir> writes a V8 CPU profile of the server (where the time goes).
  const profile = process.env.LK_BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LK_BENCH_PROFILE_DIR}`] : [];
  const child = spawn(
    process.execPath,
    [...profile, 'bin/lk.js', 'serve', '--data-dir', dataDir, '--port', '0', '--version', VERSION, '--metrics', 'metrics.yaml'],
    {
      env: { ...process.env, KAFKA_BROKERS: '', LK_LOG_LEVEL: process.env.LK_LOG_LEVEL ?? 'warn' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving (http:\/\/\S+)\/graphql/.exec(out);
      if (m) {
        resolve({
          url: m[1]!,
          stop: () =>
            new Promise<void>((done) => {
              child.once('exit', () => done());
              child.kill('SIGTERM');
            }),
        });
      }
    });
    child.once('exit', (code) => reject(new Error(`lk serve exited with ${code}`)));
  });
}

async function waitReady(url: string): Promise<void> {
  for (;;) {
    const res = await fetch(`${url}/readyz`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** One POST; the body is kept as buffers (decoded only when an answer is checked). */
function post(agent: Agent, url: URL, body: string): Promise<{ status: number; chunks: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, chunks }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * CPU seconds the server process has used, from its own /metrics (prom-client's process
 * counter). Per request, it is the cost of an answer independently of how loaded the machine is:
 * requests/s and latencies move with whatever else runs on the cores, CPU per request much less.
 */
async function serverCpuSeconds(url: URL): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const m = /^lk_serve_process_cpu_seconds_total\s+(\S+)$/m.exec(text);
  if (!m) throw new Error('lk_serve_process_cpu_seconds_total missing from /metrics');
  return Number(m[1]);
}

/** CLIENTS concurrent clients, each one request at a time, 3 s warm-up then `seconds` measured; one answer per second checked. */
async function loadPhase(
  url: URL,
  query: string,
  seconds: number,
  windows: number,
  expected: (key: string) => number[],
  countsOf: CountsOf,
) {
  const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
  const rand = seededRandom(7);
  const warmUntil = Date.now() + 3000;
  const latencies: number[] = [];
  let errors = 0;
  let checked = 0;
  let lastCheck = 0;
  let measuredStart = 0;
  let measuredEnd = 0;
  let measuredCpuStart = 0;
  let measuredAnswers = 0;
  const client = async () => {
    for (;;) {
      const now = Date.now();
      if (now >= warmUntil + seconds * 1000) return;
      if (now >= warmUntil && measuredCpuStart === 0) {
        measuredCpuStart = -1; // taken once, by the first client past the warm-up
        measuredCpuStart = await serverCpuSeconds(url);
        continue;
      }
      const key = `ad-${Math.floor(rand() * KEYS)}`;
      const t0 = process.hrtime.bigint();
      const res = await post(agent, url, JSON.stringify({ query, variables: { k: key } }));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (measuredCpuStart > 0) measuredAnswers++;
      const head = res.chunks[0]?.subarray(0, 8).toString('latin1') ?? '';
      if (res.status !== 200 || head !== '{"data":') {
        errors++;
        if (errors <= 3) say(`error: HTTP ${res.status} ${Buffer.concat(res.chunks).toString('utf8').slice(0, 200)}`);
        continue;
      }
      if (now < warmUntil) continue;
      if (measuredStart === 0) measuredStart = now;
      latencies.push(ms);
      measuredEnd = Date.now();
      if (now - lastCheck > 1000) {
        lastCheck = now;
        const got = countsOf((JSON.parse(Buffer.concat(res.chunks).toString('utf8')) as { data: Record<string, unknown> }).data);
        if (got.length !== windows || JSON.stringify(got) !== JSON.stringify(expected(key))) throw new Error(`wrong answer for ${key}`);
        checked++;
      }
    }
  };
  say(`HTTP: ${CLIENTS} clients, ${windows} windows per answer, 3 s warm-up, ${seconds} s measured ...`);
  await Promise.all(Array.from({ length: CLIENTS }, client));
  agent.destroy();
  const cpuSeconds = (await serverCpuSeconds(url)) - measuredCpuStart;
  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    rps: latencies.length / ((measuredEnd - measuredStart) / 1000),
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    /** Server CPU time per answer over the measured part (both cores count: GC threads too). */
    serverCpuMsPerAnswer: (cpuSeconds * 1000) / Math.max(1, measuredAnswers),
    errors,
    checked,
  };
}

async function main(): Promise<void> {
  say(machineLine());
  const rss = trackPeakRss();
  const dataDir = mkdtempSync(join(tmpdir(), 'lk-bench-serve-'));
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    let t = Date.now();
    await writeSnapshot(join(dataDir, 'views'));
    say(`snapshot: ${KEYS} keys x ${WINDOWS} minute windows written in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    t = Date.now();
    server = await startServer(dataDir);
    await waitReady(server.url);
    const serverLoadSeconds = (Date.now() - t) / 1000;
    say(`lk serve ready at ${server.url} after ${serverLoadSeconds.toFixed(1)} s (snapshot loaded)`);

    // Baseline view in this process, loaded the same way.
    t = Date.now();
    const view = new VersionView(VERSION);
    view.installBatch(await loadBatchView(readCurrentBatchRun(join(dataDir, 'views'), VERSION)!));
    say(`baseline view loaded in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const snapshot = view.snapshot();
    const from = Date.parse(FROM);
    const to = Date.parse(TO);

    const url = new URL(`${server.url}/graphql`);
    const expected24h = (key: string) => seriesWindows(snapshot, 'clicks_by_ad', 'minute', key, from, to).map((w) => w.count);
    const http = await loadPhase(url, QUERY, SECONDS, WINDOWS, expected24h, seriesCounts);
    const oneHour = await loadPhase(
      url,
      QUERY_1H,
      Math.min(10, SECONDS),
      60,
      (key) => seriesWindows(snapshot, 'clicks_by_ad', 'minute', key, from, from + 3_600_000).map((w) => w.count),
      seriesCounts,
    );
    const columns = await loadPhase(url, QUERY_COLUMNS, SECONDS, WINDOWS, expected24h, columnCounts);
    const chart = await loadPhase(url, QUERY_CHART, SECONDS, WINDOWS, expected24h, columnCounts);
    const errors = http.errors + oneHour.errors + columns.errors + chart.errors;
    const checked = http.checked;

    // Baselines: the same answers straight from memory, one at a time (one core).
    const inMemory = (answer: (key: string) => number) => {
      const baseRand = seededRandom(7);
      const base: number[] = [];
      const baseStart = Date.now();
      let windowsSeen = 0;
      while (Date.now() - baseStart < 5000) {
        const key = `ad-${Math.floor(baseRand() * KEYS)}`;
        const t0 = process.hrtime.bigint();
        windowsSeen += answer(key);
        base.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const baseSorted = Float64Array.from(base).sort();
      return {
        requests: base.length,
        rps: base.length / ((Date.now() - baseStart) / 1000),
        p50: percentile(baseSorted, 0.5),
        p99: percentile(baseSorted, 0.99),
        windowsPerAnswer: windowsSeen / base.length,
      };
    };
    const baseline = inMemory((key) => seriesWindows(snapshot, 'clicks_by_ad', 'minute', key, from, to).length);
    // The columns the HTTP query asks for (columns are built when read).
    const columnsBaseline = inMemory((key) => {
      const c = seriesColumns(snapshot, 'clicks_by_ad', 'minute', key, from, to);
      return [c.windowStart, c.count, c.sum, c.source, c.processingTime][0]!.length;
    });

    console.log(`bench:serve  ${machineLine()}`);
    printTable([
      [
        'loaded',
        `${KEYS.toLocaleString('en-US')} keys x ${WINDOWS} minute windows = ${(KEYS * WINDOWS).toLocaleString('en-US')} windows (server ready after ${serverLoadSeconds.toFixed(1)} s)`,
      ],
      [
        'query',
        `series(clicks_by_ad, random key, MINUTE, 24 h) { windowStart count sum source processingTime }: ${WINDOWS} windows per answer`,
      ],
      [
        'HTTP+GraphQL',
        `${CLIENTS} clients: ${Math.round(http.rps).toLocaleString('en-US')} requests/s, p50 ${http.p50.toFixed(2)} ms, p99 ${http.p99.toFixed(2)} ms, server CPU ${http.serverCpuMsPerAnswer.toFixed(2)} ms/answer (${http.requests} requests, ${errors} errors, ${checked} answers checked)`,
      ],
      [
        'HTTP+GraphQL 1 h',
        `${CLIENTS} clients, 60 windows per answer: ${Math.round(oneHour.rps).toLocaleString('en-US')} requests/s, p50 ${oneHour.p50.toFixed(2)} ms, p99 ${oneHour.p99.toFixed(2)} ms, server CPU ${oneHour.serverCpuMsPerAnswer.toFixed(2)} ms/answer`,
      ],
      [
        'seriesColumns',
        `${CLIENTS} clients, same windows and fields as columns: ${Math.round(columns.rps).toLocaleString('en-US')} requests/s, p50 ${columns.p50.toFixed(2)} ms, p99 ${columns.p99.toFixed(2)} ms, server CPU ${columns.serverCpuMsPerAnswer.toFixed(2)} ms/answer (${columns.requests} requests, ${columns.checked} answers checked)`,
      ],
      [
        'seriesColumns chart',
        `${CLIENTS} clients, ${CHART_SELECTION}: ${Math.round(chart.rps).toLocaleString('en-US')} requests/s, p50 ${chart.p50.toFixed(2)} ms, p99 ${chart.p99.toFixed(2)} ms, server CPU ${chart.serverCpuMsPerAnswer.toFixed(2)} ms/answer (${chart.requests} requests, ${chart.checked} answers checked)`,
      ],
      [
        'in-memory',
        `1 thread: series ${Math.round(baseline.rps).toLocaleString('en-US')} answers/s, p50 ${baseline.p50.toFixed(3)} ms, p99 ${baseline.p99.toFixed(3)} ms; seriesColumns ${Math.round(columnsBaseline.rps).toLocaleString('en-US')} answers/s, p50 ${columnsBaseline.p50.toFixed(3)} ms, p99 ${columnsBaseline.p99.toFixed(3)} ms`,
      ],
      [
        'ratio',
        `in-memory / HTTP throughput: series ${(baseline.rps / http.rps).toFixed(1)}x, seriesColumns ${(columnsBaseline.rps / columns.rps).toFixed(1)}x, chart ${(columnsBaseline.rps / chart.rps).toFixed(1)}x; HTTP p50 / in-memory p50: series ${(http.p50 / baseline.p50).toFixed(0)}x, seriesColumns ${(columns.p50 / columnsBaseline.p50).toFixed(0)}x, chart ${(chart.p50 / columnsBaseline.p50).toFixed(0)}x; seriesColumns / series throughput ${(columns.rps / http.rps).toFixed(1)}x (chart ${(chart.rps / http.rps).toFixed(1)}x)`,
      ],
      [
        'aim',
        `seriesColumns p99 < 25 ms at ${CLIENTS} clients: same fields ${columns.p99 < 25 ? 'met' : 'missed'} (${columns.p99.toFixed(2)} ms), chart ${chart.p99 < 25 ? 'met' : 'missed'} (${chart.p99.toFixed(2)} ms)`,
      ],
      ['bench peak RSS', `${(rss.peak() / 2 ** 20).toFixed(0)} MiB (this process: client + baseline view)`],
    ]);
    console.log(
      JSON.stringify({
        bench: 'serve',
        keys: KEYS,
        windows: KEYS * WINDOWS,
        clients: CLIENTS,
        http,
        oneHour,
        columns,
        chart,
        baseline,
        columnsBaseline,
        serverLoadSeconds,
      }),
    );
  } finally {
    rss.stop();
    await server?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
