/**
 * `npm run bench:serve`: the serving layer's query path.
 *
 *   1. a batch snapshot of LK_BENCH_KEYS (default 10,000) keys x one day of minute windows
 *      (14.4 M windows) written with DuckDB and published as the batch layer does;
 *   2. the real `lk serve` in a child process loads it (embedded log: no speed view), three times:
 *      - one worker (`--workers 1`, rate limit off): LK_BENCH_CLIENTS (default 32) concurrent
 *        closed-loop HTTP clients ask `series` for a 24 h range of a random key for
 *        LK_BENCH_SECONDS (default 20): requests/s, p50, p99; then the same for `seriesColumns`,
 *        the same windows as columns, twice: with the same five fields as `series`, and with what
 *        the dashboard's chart reads (window starts as small integers, count, source, provisional);
 *        Then the hopping windows (docs/metrics.md): `hopping` of a 1 h size every 5 minutes over
 *        24 h (288 windows per answer, each merging twelve 5-minute windows of a metric the bench
 *        declares beside the repo's), beside `series` of the same 288 five-minute windows and
 *        beside `series` of the same 24 h as tumbling 1 h windows (24 per answer: what a user
 *        would ask without hopping windows), with the ratios of their server CPU per answer;
 *      - every core (`--workers` = the available parallelism, rate limit off): the chart again,
 *        beside the single-core figure of the same run;
 *      - every core with lk serve's default limits: 32 well-behaved clients asking the chart at a
 *        steady pace (LK_BENCH_PACE_MS, default 100 ms between requests each), alone, then while one
 *        abusive client floods the server (three connections sending the costliest request the
 *        server accepts, a key-walking topKeys just under --max-cost, and one sending the issue's
 *        5,000-alias query, none of them waiting): the well-behaved clients' p50 and p99 in both;
 *   3. the baselines, in this process: the same answers straight from the in-memory view
 *      (serving/queries.ts seriesWindows and seriesColumns over a loaded VersionView), no HTTP,
 *      no GraphQL.
 *
 * LK_BENCH_ONLY=hopping runs the one-worker hopping phases alone (hopping, 5-minute series,
 * tumbling hours), for the hopping figures without the rest.
 *
 * Every client has a token of its own (a tokens file of readers): with the limits on, each has
 * its own rate-limit bucket. Client and server are separate processes; one answer per second is
 * checked in full against the baseline. The servers' resident memory is read from /proc. Prints a
 * table and one JSON line.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { commitBatchRun, readCurrentBatchRun, stageBatchRun } from '../services/views/batchSnapshots.ts';
import { LocalObjectStore } from '../services/storage/localObjectStore.ts';
import { seededRandom } from '../services/ingest/generator.ts';
import { loadBatchView } from '../serving/views/batchLoader.ts';
import { VersionView } from '../serving/views/versionView.ts';
import { hoppingWindows, seriesColumns, seriesWindows } from '../serving/queries.ts';
import { machineLine, printTable, trackPeakRss } from './lib.ts';

const KEYS = Number(process.env.LK_BENCH_KEYS ?? 10_000);
const CLIENTS = Number(process.env.LK_BENCH_CLIENTS ?? 32);
const SECONDS = Number(process.env.LK_BENCH_SECONDS ?? 20);
const PACE_MS = Number(process.env.LK_BENCH_PACE_MS ?? 100);
const ONLY = process.env.LK_BENCH_ONLY ?? '';
if (ONLY !== '' && ONLY !== 'hopping') throw new Error(`LK_BENCH_ONLY must be "hopping" (or unset), got ${JSON.stringify(ONLY)}`);
const CORES = availableParallelism();
/** lk serve's default --max-cost and --resolver-cost (the abusive request is sized against them). */
const MAX_COST = 250_000;
const SCAN_WINDOWS_PER_UNIT = 32;
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

/**
 * The costliest request the default limits accept: one topKeys walking every key over as many
 * minutes as --max-cost allows (a walk costs keys x windows / 32: serving/graphql/limits.ts).
 */
const ABUSE_MINUTES = Math.floor(((MAX_COST - 2_000) * SCAN_WINDOWS_PER_UNIT) / KEYS);
const QUERY_ABUSE = `{ topKeys(metric: "clicks_by_ad", granularity: MINUTE, from: "${FROM}", to: "${new Date(DAY_START + ABUSE_MINUTES * 60_000).toISOString()}", limit: 10) { key count } }`;
/** The issue's flood: 5,000 aliases of a one-window series (refused by --max-aliases before validation). */
const QUERY_ALIASES = `{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: series(metric: "clicks_by_ad", key: "ad-1", granularity: MINUTE, from: "${FROM}", to: "${new Date(DAY_START + 60_000).toISOString()}") { count }`).join(' ')} }`;

/** Hopping windows: 1 h every 5 minutes over 24 h, from the 5-minute windows of clicks_by_ad_5m. */
const HOPS = 288;
const QUERY_HOPPING = `query($k: String!) { hopping(metric: "clicks_by_ad_5m", key: $k, size: "1h", advance: "5m", from: "${FROM}", to: "${TO}") { windowStart count sum avg } }`;
const QUERY_5M = `query($k: String!) { series(metric: "clicks_by_ad_5m", key: $k, granularity: "5m", from: "${FROM}", to: "${TO}") { windowStart count sum avg } }`;
/** The same 24 h as tumbling 1 h windows (the hour rows the batch layer writes beside the 5-minute ones). */
const HOURS = 24;
const QUERY_HOURLY = `query($k: String!) { series(metric: "clicks_by_ad_5m", key: $k, granularity: HOUR, from: "${FROM}", to: "${TO}") { windowStart count sum avg } }`;
/** The bench's metric file: the repo's, plus the 5-minute metric the hopping windows read. */
function writeMetrics(dataDir: string): string {
  const file = join(dataDir, 'metrics.yaml');
  writeFileSync(
    file,
    `${readFileSync('metrics.yaml', 'utf8')}
  - name: clicks_by_ad_5m
    filter: { type: click }
    key: ad_id
    value: cost
    granularities: [5m, hour]
    allowedLateness: 10m
`,
  );
  return file;
}
let metricsFile = 'metrics.yaml';

/** The window counts of an answer, to check it against the baseline. */
type CountsOf = (data: Record<string, unknown>) => number[];
const seriesCounts: CountsOf = (d) => (d.series as { count: number }[]).map((w) => w.count);
const columnCounts: CountsOf = (d) => (d.seriesColumns as { count: number[] }).count;
const hoppingCounts: CountsOf = (d) => (d.hopping as { count: number }[]).map((w) => w.count);

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function writeSnapshot(dataDir: string): Promise<void> {
  const runId = 'bench-run';
  const dir = stageBatchRun(join(dataDir, 'scratch'), VERSION, runId);
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
      UNION ALL
      SELECT 'clicks_by_ad_5m', '5m', 'ad-' || k, CAST(${DAY_START} + w * 300000 AS BIGINT), CAST(k % 6 AS INTEGER),
             CAST(1 + (k * 7 + w) % 13 AS BIGINT), (1 + (k * 7 + w) % 13) * 0.5, 0.5, 0.5,
             CAST(NULL AS VARCHAR), CAST(1 + (k * 7 + w) % 13 AS BIGINT), CAST(0 AS BIGINT),
             CAST(1000000 AS BIGINT), CAST(${DAY_START + 86_400_000} AS BIGINT)
      FROM range(${KEYS}) t(k), range(${HOPS}) u(w)
      UNION ALL
      -- The hour rows: each the roll-up of its twelve 5-minute rows, as the batch layer writes them.
      SELECT 'clicks_by_ad_5m', 'hour', 'ad-' || k, CAST(${DAY_START} + (w // 12) * 3600000 AS BIGINT), CAST(k % 6 AS INTEGER),
             CAST(SUM(1 + (k * 7 + w) % 13) AS BIGINT), CAST(SUM(1 + (k * 7 + w) % 13) AS DOUBLE) * 0.5, 0.5, 0.5,
             CAST(NULL AS VARCHAR), CAST(SUM(1 + (k * 7 + w) % 13) AS BIGINT), CAST(0 AS BIGINT),
             CAST(1000000 AS BIGINT), CAST(${DAY_START + 86_400_000} AS BIGINT)
      FROM range(${KEYS}) t(k), range(${HOPS}) u(w)
      GROUP BY k, w // 12
    ) TO '${join(dir, 'rows.parquet')}' (FORMAT parquet)`);
  conn.closeSync();
  db.closeSync();
  const now = Date.now();
  await commitBatchRun(new LocalObjectStore(dataDir), dir, {
    runId,
    version: VERSION,
    cut: [1e6, 1e6, 1e6, 1e6, 1e6, 1e6],
    processingTimes: Array(6).fill(DAY_START + 86_400_000),
    startedAt: now,
    finishedAt: now,
    durationMs: 0,
    rows: KEYS * (WINDOWS + HOPS + HOURS),
    rawEvents: 0,
    uniqueEvents: 0,
    misplacedEvents: 0,
    lakeFiles: 0,
    lakeBytes: 0,
    full: true,
    metricsSource: 'bench',
  });
}

interface Server {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** A tokens file of readers, one token per client (the well-behaved ones, the abuser, and spares). */
function writeTokens(dataDir: string, count: number): { file: string; tokens: string[] } {
  const tokens = Array.from({ length: count }, () => randomBytes(24).toString('hex'));
  const file = join(dataDir, 'tokens.yaml');
  writeFileSync(
    file,
    `tokens:\n${tokens.map((t, i) => `  - { name: client-${i}, role: reader, hash: "sha256:${createHash('sha256').update(t).digest('hex')}" }`).join('\n')}\n`,
  );
  return { file, tokens };
}

function startServer(dataDir: string, args: string[]): Promise<Server> {
  // LK_BENCH_PROFILE_DIR=<dir> writes a V8 CPU profile of the server (where the time goes).
  const profile = process.env.LK_BENCH_PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LK_BENCH_PROFILE_DIR}`] : [];
  const child = spawn(
    process.execPath,
    [...profile, 'bin/lk.js', 'serve', '--data-dir', dataDir, '--port', '0', '--version', VERSION, '--metrics', metricsFile, ...args],
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
          pid: child.pid!,
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

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Resident memory of a server: its process, and its workers when it has several (their pids from /readyz). */
async function serverMemory(server: Server): Promise<{ primary: number; workers: number[]; total: number }> {
  const body = (await (await fetch(`${server.url}/readyz`)).json()) as { workers?: { pid: number }[] };
  const primary = rssMiB(server.pid);
  const workers = (body.workers ?? []).map((w) => rssMiB(w.pid));
  return { primary, workers, total: primary + workers.reduce((a, b) => a + b, 0) };
}

const fmtMemory = (m: { primary: number; workers: number[]; total: number }) =>
  m.workers.length === 0
    ? `${m.primary.toFixed(0)} MiB`
    : `${m.total.toFixed(0)} MiB (primary ${m.primary.toFixed(0)} + workers ${m.workers.map((w) => w.toFixed(0)).join(' + ')})`;

async function waitReady(url: string): Promise<void> {
  for (;;) {
    const res = await fetch(`${url}/readyz`).catch(() => undefined);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** One POST; the body is kept as buffers (decoded only when an answer is checked). */
function post(agent: Agent, url: URL, body: string, token: string): Promise<{ status: number; chunks: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${token}` },
      },
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
async function serverCpuSeconds(url: URL, token: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url), { headers: { authorization: `Bearer ${token}` } })).text();
  const m = /^lk_serve_process_cpu_seconds_total\s+(\S+)$/m.exec(text);
  if (!m) throw new Error('lk_serve_process_cpu_seconds_total missing from /metrics');
  return Number(m[1]);
}

/**
 * CLIENTS concurrent clients (token i for client i), each one request at a time, 3 s warm-up then
 * `seconds` measured; one answer per second checked. Closed loop, or paced: a client sends its
 * next request `paceMs` after the previous one was sent (or at once if it came back later).
 */
async function loadPhase(
  url: URL,
  query: string,
  seconds: number,
  windows: number,
  expected: (key: string) => number[],
  countsOf: CountsOf,
  tokens: string[],
  paceMs = 0,
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
  const client = async (_: unknown, i: number) => {
    const token = tokens[i]!;
    let next = Date.now();
    for (;;) {
      if (paceMs > 0) {
        next += paceMs;
        const wait = next - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        else next = Date.now();
      }
      const now = Date.now();
      if (now >= warmUntil + seconds * 1000) return;
      if (now >= warmUntil && measuredCpuStart === 0) {
        measuredCpuStart = -1; // taken once, by the first client past the warm-up
        measuredCpuStart = await serverCpuSeconds(url, token);
        continue;
      }
      const key = `ad-${Math.floor(rand() * KEYS)}`;
      const t0 = process.hrtime.bigint();
      const res = await post(agent, url, JSON.stringify({ query, variables: { k: key } }), token).catch((err: NodeJS.ErrnoException) => {
        // A failed connection is an error of the phase (printed and counted), not the bench's end.
        errors++;
        if (errors <= 3) say(`error: ${err.code ?? err.message}`);
        return undefined;
      });
      if (res === undefined) continue;
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
  say(
    `HTTP: ${CLIENTS} clients${paceMs > 0 ? `, one request every ${paceMs} ms each` : ''}, ${windows} windows per answer, 3 s warm-up, ${seconds} s measured ...`,
  );
  await Promise.all(Array.from({ length: CLIENTS }, client));
  agent.destroy();
  const cpuSeconds = (await serverCpuSeconds(url, tokens[0]!)) - measuredCpuStart;
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

/**
 * The abusive client: one token, `connections` loops sending `queries[i % queries.length]` back
 * to back (no pause after a refusal), until `until` resolves. Counts the answers by HTTP status.
 */
function abuse(url: URL, token: string, queries: string[], connections: number, until: Promise<void>) {
  const agent = new Agent({ keepAlive: true, maxSockets: connections });
  const statuses = new Map<string, number>();
  let stop = false;
  void until.then(() => (stop = true));
  const loops = Array.from({ length: connections }, async (_, i) => {
    const query = queries[i % queries.length]!;
    const body = JSON.stringify({ query });
    const label = query === QUERY_ALIASES ? 'aliases' : 'costliest';
    while (!stop) {
      // A failed connection is counted by its code beside the statuses (it never ends the bench).
      const res = await post(agent, url, body, token).catch((err: NodeJS.ErrnoException) => ({ status: err.code ?? 'error' }));
      const key = `${label} ${res.status}`;
      statuses.set(key, (statuses.get(key) ?? 0) + 1);
    }
  });
  return {
    done: Promise.all(loops).then(() => {
      agent.destroy();
      return Object.fromEntries([...statuses].sort());
    }),
  };
}

type Phase = Awaited<ReturnType<typeof loadPhase>>;
interface HoppingPhases {
  fiveMinutes: Phase;
  hopping: Phase;
  hourly: Phase;
}

/**
 * The hopping series (1 h every 5 minutes over 24 h) beside series of the same 288 five-minute
 * windows and of the same 24 h as tumbling hours, same fields, on the server at `url`.
 */
async function hoppingPhases(url: URL, snapshot: ReturnType<VersionView['snapshot']>, tokens: string[]): Promise<HoppingPhases> {
  const from = Date.parse(FROM);
  const to = Date.parse(TO);
  const fiveMinutes = await loadPhase(
    url,
    QUERY_5M,
    SECONDS,
    HOPS,
    (key) => seriesWindows(snapshot, 'clicks_by_ad_5m', '5m', key, from, to).map((w) => w.count),
    seriesCounts,
    tokens,
  );
  const hopping = await loadPhase(
    url,
    QUERY_HOPPING,
    SECONDS,
    HOPS,
    (key) => hoppingWindows(snapshot, 'clicks_by_ad_5m', '5m', 3_600_000, key, from, to).map((w) => w.count),
    hoppingCounts,
    tokens,
  );
  const hourly = await loadPhase(
    url,
    QUERY_HOURLY,
    SECONDS,
    HOURS,
    (key) => seriesWindows(snapshot, 'clicks_by_ad_5m', 'hour', key, from, to).map((w) => w.count),
    seriesCounts,
    tokens,
  );
  return { fiveMinutes, hopping, hourly };
}

function hoppingRows({ fiveMinutes, hopping, hourly }: HoppingPhases): [string, string][] {
  const line = (p: Phase) =>
    `${Math.round(p.rps).toLocaleString('en-US')} requests/s, p50 ${p.p50.toFixed(2)} ms, p99 ${p.p99.toFixed(2)} ms, server CPU ${p.serverCpuMsPerAnswer.toFixed(2)} ms/answer (${p.requests} requests, ${p.errors} errors, ${p.checked} answers checked)`;
  const cpu = (a: Phase, b: Phase) => (a.serverCpuMsPerAnswer / b.serverCpuMsPerAnswer).toFixed(2);
  const rps = (a: Phase, b: Phase) => (a.rps / b.rps).toFixed(2);
  return [
    [
      'hopping 1h/5m, 24 h',
      `${CLIENTS} clients, hopping(size 1h, advance 5m) { windowStart count sum avg }, ${HOPS} windows of 12 merged: ${line(hopping)}`,
    ],
    ['series 1h, 24 h', `${CLIENTS} clients, the same 24 h as ${HOURS} tumbling hour windows, same fields: ${line(hourly)}`],
    ['series 5m, 24 h', `${CLIENTS} clients, the same ${HOPS} five-minute windows as series, same fields: ${line(fiveMinutes)}`],
    [
      'hopping ratio',
      `server CPU per answer: hopping / tumbling hours ${cpu(hopping, hourly)}x, hopping / 5-minute series ${cpu(hopping, fiveMinutes)}x; requests/s: hopping / tumbling hours ${rps(hopping, hourly)}x, hopping / 5-minute series ${rps(hopping, fiveMinutes)}x`,
    ],
  ];
}

async function main(): Promise<void> {
  say(machineLine());
  const rss = trackPeakRss();
  const dataDir = mkdtempSync(join(tmpdir(), 'lk-bench-serve-'));
  let server: Server | undefined;
  try {
    let t = Date.now();
    await writeSnapshot(dataDir);
    metricsFile = writeMetrics(dataDir);
    say(`snapshot: ${KEYS} keys x ${WINDOWS} minute windows written in ${((Date.now() - t) / 1000).toFixed(1)} s`);

    const { file: tokensFile, tokens } = writeTokens(dataDir, CLIENTS + 2);
    const abuserToken = tokens[CLIENTS]!;

    t = Date.now();
    server = await startServer(dataDir, ['--workers', '1', '--tokens-file', tokensFile, '--rate-limit', '0']);
    await waitReady(server.url);
    const serverLoadSeconds = (Date.now() - t) / 1000;
    const singleMemory = await serverMemory(server);
    say(
      `lk serve --workers 1 ready at ${server.url} after ${serverLoadSeconds.toFixed(1)} s (snapshot loaded), ${fmtMemory(singleMemory)}`,
    );

    // Baseline view in this process, loaded the same way.
    t = Date.now();
    const view = new VersionView(VERSION);
    const run = (await readCurrentBatchRun(new LocalObjectStore(dataDir), VERSION))!;
    view.installBatch(await loadBatchView(run, run.rowsPath!));
    say(`baseline view loaded in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    const snapshot = view.snapshot();
    const from = Date.parse(FROM);
    const to = Date.parse(TO);

    const url = new URL(`${server.url}/graphql`);
    const expected24h = (key: string) => seriesWindows(snapshot, 'clicks_by_ad', 'minute', key, from, to).map((w) => w.count);
    if (ONLY === 'hopping') {
      const phases = await hoppingPhases(url, snapshot, tokens);
      await server.stop();
      server = undefined;
      console.log(`bench:serve (LK_BENCH_ONLY=hopping)  ${machineLine()}`);
      printTable([
        [
          'loaded',
          `${KEYS.toLocaleString('en-US')} keys x (${HOPS} five-minute + ${HOURS} hour windows of clicks_by_ad_5m, ${WINDOWS} minute windows of clicks_by_ad), one worker`,
        ],
        ...hoppingRows(phases),
        ['bench peak RSS', `${(rss.peak() / 2 ** 20).toFixed(0)} MiB (this process: client + baseline view)`],
      ]);
      console.log(JSON.stringify({ bench: 'serve', only: 'hopping', keys: KEYS, clients: CLIENTS, ...phases }));
      return;
    }
    const http = await loadPhase(url, QUERY, SECONDS, WINDOWS, expected24h, seriesCounts, tokens);
    const oneHour = await loadPhase(
      url,
      QUERY_1H,
      Math.min(10, SECONDS),
      60,
      (key) => seriesWindows(snapshot, 'clicks_by_ad', 'minute', key, from, from + 3_600_000).map((w) => w.count),
      seriesCounts,
      tokens,
    );
    const columns = await loadPhase(url, QUERY_COLUMNS, SECONDS, WINDOWS, expected24h, columnCounts, tokens);
    const chart = await loadPhase(url, QUERY_CHART, SECONDS, WINDOWS, expected24h, columnCounts, tokens);
    const { fiveMinutes, hopping, hourly } = await hoppingPhases(url, snapshot, tokens);
    await server.stop();
    server = undefined;

    // Every core, rate limit off: the chart again.
    t = Date.now();
    server = await startServer(dataDir, ['--workers', String(CORES), '--tokens-file', tokensFile, '--rate-limit', '0']);
    await waitReady(server.url);
    const allCoresLoadSeconds = (Date.now() - t) / 1000;
    const allCoresMemory = await serverMemory(server);
    say(`lk serve --workers ${CORES} ready after ${allCoresLoadSeconds.toFixed(1)} s, ${fmtMemory(allCoresMemory)}`);
    const chartAll = await loadPhase(new URL(`${server.url}/graphql`), QUERY_CHART, SECONDS, WINDOWS, expected24h, columnCounts, tokens);
    await server.stop();
    server = undefined;

    // Every core, lk serve's default limits: paced well-behaved clients alone, then beside the abuser.
    server = await startServer(dataDir, ['--workers', String(CORES), '--tokens-file', tokensFile]);
    await waitReady(server.url);
    const limitedUrl = new URL(`${server.url}/graphql`);
    const calm = await loadPhase(limitedUrl, QUERY_CHART, SECONDS, WINDOWS, expected24h, columnCounts, tokens, PACE_MS);
    let endAbuse!: () => void;
    const abuser = abuse(
      limitedUrl,
      abuserToken,
      [QUERY_ABUSE, QUERY_ABUSE, QUERY_ABUSE, QUERY_ALIASES],
      4,
      new Promise((r) => (endAbuse = r)),
    );
    const flooded = await loadPhase(limitedUrl, QUERY_CHART, SECONDS, WINDOWS, expected24h, columnCounts, tokens, PACE_MS);
    endAbuse();
    const abuseStatuses = await abuser.done;
    const refusals = await (await fetch(new URL('/metrics', limitedUrl), { headers: { authorization: `Bearer ${tokens[0]}` } })).text();
    const counter = (name: string) =>
      Number(new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(refusals)?.[1] ?? 0);
    const mechanisms = {
      yields: counter('lk_serve_execution_yields_total'),
      cutOffs: counter('lk_serve_execution_cutoffs_total'),
      rateLimited: counter('lk_serve_refusals_total{code="RATE_LIMITED"}'),
      tooManyAliases: counter('lk_serve_refusals_total{code="TOO_MANY_ALIASES"}'),
    };
    await server.stop();
    server = undefined;

    const errors =
      http.errors +
      oneHour.errors +
      columns.errors +
      chart.errors +
      fiveMinutes.errors +
      hopping.errors +
      hourly.errors +
      chartAll.errors +
      calm.errors +
      flooded.errors;
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
        `${KEYS.toLocaleString('en-US')} keys x ${WINDOWS} minute windows = ${(KEYS * WINDOWS).toLocaleString('en-US')} windows (one worker ready after ${serverLoadSeconds.toFixed(1)} s, ${CORES} workers after ${allCoresLoadSeconds.toFixed(1)} s); the phases above the chart's run on one worker`,
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
        'chart, 1 worker',
        `${CLIENTS} clients, ${CHART_SELECTION}: ${Math.round(chart.rps).toLocaleString('en-US')} requests/s, p50 ${chart.p50.toFixed(2)} ms, p99 ${chart.p99.toFixed(2)} ms, server CPU ${chart.serverCpuMsPerAnswer.toFixed(2)} ms/answer (${chart.requests} requests, ${chart.checked} answers checked)`,
      ],
      ...hoppingRows({ fiveMinutes, hopping, hourly }),
      [
        'in-memory',
        `1 thread: series ${Math.round(baseline.rps).toLocaleString('en-US')} answers/s, p50 ${baseline.p50.toFixed(3)} ms, p99 ${baseline.p99.toFixed(3)} ms; seriesColumns ${Math.round(columnsBaseline.rps).toLocaleString('en-US')} answers/s, p50 ${columnsBaseline.p50.toFixed(3)} ms, p99 ${columnsBaseline.p99.toFixed(3)} ms`,
      ],
      [
        'ratio',
        `in-memory / HTTP throughput: series ${(baseline.rps / http.rps).toFixed(1)}x, seriesColumns ${(columnsBaseline.rps / columns.rps).toFixed(1)}x, chart ${(columnsBaseline.rps / chart.rps).toFixed(1)}x; HTTP p50 / in-memory p50: series ${(http.p50 / baseline.p50).toFixed(0)}x, seriesColumns ${(columns.p50 / columnsBaseline.p50).toFixed(0)}x, chart ${(chart.p50 / columnsBaseline.p50).toFixed(0)}x; seriesColumns / series throughput ${(columns.rps / http.rps).toFixed(1)}x (chart ${(chart.rps / http.rps).toFixed(1)}x)`,
      ],
      [
        `chart, ${CORES} workers`,
        `${CLIENTS} clients: ${Math.round(chartAll.rps).toLocaleString('en-US')} requests/s, p50 ${chartAll.p50.toFixed(2)} ms, p99 ${chartAll.p99.toFixed(2)} ms, server CPU ${chartAll.serverCpuMsPerAnswer.toFixed(2)} ms/answer (${chartAll.requests} requests, ${chartAll.checked} answers checked); ${(chartAll.rps / chart.rps).toFixed(2)}x the requests/s of one worker`,
      ],
      ['memory', `1 worker: ${fmtMemory(singleMemory)}; ${CORES} workers: ${fmtMemory(allCoresMemory)} (each worker holds the views)`],
      [
        'well-behaved alone',
        `${CLIENTS} clients, chart every ${PACE_MS} ms each, default limits, ${CORES} workers: ${Math.round(calm.rps).toLocaleString('en-US')} requests/s, p50 ${calm.p50.toFixed(2)} ms, p99 ${calm.p99.toFixed(2)} ms (${calm.requests} requests, ${calm.errors} errors)`,
      ],
      [
        'beside an abuser',
        `the same clients while one token floods (3 connections: topKeys over ${ABUSE_MINUTES} minutes of every key, the costliest accepted; 1 connection: 5,000 aliases): ${Math.round(flooded.rps).toLocaleString('en-US')} requests/s, p50 ${flooded.p50.toFixed(2)} ms, p99 ${flooded.p99.toFixed(2)} ms (${flooded.requests} requests, ${flooded.errors} errors)`,
      ],
      [
        'the abuser got',
        `${Object.entries(abuseStatuses)
          .map(([k, n]) => `${k}: ${n}`)
          .join(
            ', ',
          )}; server: ${mechanisms.rateLimited} refused RATE_LIMITED, ${mechanisms.tooManyAliases} TOO_MANY_ALIASES, ${mechanisms.yields} yields, ${mechanisms.cutOffs} cut off`,
      ],
      [
        'aim',
        `seriesColumns p99 < 25 ms at ${CLIENTS} clients: one worker: same fields ${columns.p99 < 25 ? 'met' : 'missed'} (${columns.p99.toFixed(2)} ms), chart ${chart.p99 < 25 ? 'met' : 'missed'} (${chart.p99.toFixed(2)} ms); ${CORES} workers: chart ${chartAll.p99 < 25 ? 'met' : 'missed'} (${chartAll.p99.toFixed(2)} ms); well-behaved p99 < 50 ms beside the abuser: ${flooded.p99 < 50 ? 'met' : 'missed'} (${flooded.p99.toFixed(2)} ms)`,
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
        fiveMinutes,
        hopping,
        hourly,
        chartAll,
        cores: CORES,
        memory: { single: singleMemory, allCores: allCoresMemory },
        calm,
        flooded,
        abuseStatuses,
        mechanisms,
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
