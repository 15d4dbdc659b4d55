/**
 * npm run bench:speed — the speed layer against the raw consume rate of the log adapter.
 *
 *   1. pre-fill a fresh 6-partition events topic with 2,000,000 generated events
 *      (5 % duplicates, out-of-order and late events; 66,000 users, so that the per-user
 *      metric of run (c) holds about a million live window-keys);
 *   2. (a) raw consume: a consumer group reads the topic to its end, no processing;
 *   3. (b) the speed layer (SpeedJob, in a child process so that its peak RSS is its own):
 *      3 metrics x 2 granularities (the demo's metrics on minute and hour), dedup on,
 *      checkpoints every 1 s with Kafka transactions, to the end of the topic (every
 *      partition's offset committed at its end);
 *   4. (c) the same with a per-user metric instead of spend_by_campaign: about a million live
 *      window-keys, for the memory aim; every event then changes its own rows, so the view
 *      output (one full row per changed window-key and checkpoint) dominates its rate;
 *   5. (d) a secured cluster: a broker of the bench's own (test/securedKafka.ts) with a PLAINTEXT
 *      and a SASL_SSL (SCRAM-SHA-512, TLS 1.3) listener; the same topic, pre-filled once, read by
 *      (a) and (b) over each listener: what TLS and SASL cost the raw consume and the speed layer;
 *   6. (a') and (b') the same events in a nested shape (bench/lib.ts: ids and types under meta,
 *      epoch-s times) in a topic of their own, read by (b)'s metrics written as paths under an
 *      event: section: what paths and time formats cost (aim: (b') within 15 % of (b));
 *   7. (b'') the same topic as (b), read by (b)'s metrics plus one 5-minute tumbling metric (the
 *      clicks of (b) per ad and 5 minutes) and the issue's session metric (SESSION_METRIC below:
 *      sessions per user, 30-minute gap): what the windows of issue 20 add
 *      (aim: they cost at most 25 % of (b)'s throughput). (b) and (b'') run alternately,
 *      LK_BENCH_WINDOWS_ROUNDS pairs (default 1), so that both see the same machine;
 *   8. (e) (b) again with its checkpoints on an S3 server (versitygw on 127.0.0.1, started by the
 *      bench: --state-uri s3://...) and (b) once more on the local disk, alternating, so that both
 *      sides see the same machine: the rate on S3 against the local disk (aim: within 10 %).
 * Both rates are measured from the first record delivered to the end (group join excluded).
 * Prints events/s, the ratio (b)/(a) (aim >= 0.7), peak RSS (aim < 1 GiB with 1,000,000 live
 * window-keys, run (c)), state bytes per live window-key, SASL_SSL over PLAINTEXT for (d), and
 * nested over flat for (b'), in wall time and in events per CPU second.
 * Sizes: LK_BENCH_EVENTS (default 2000000); LK_BENCH_SKIP_MEMORY=1 skips (c), LK_BENCH_SKIP_SECURED=1
 * (d), LK_BENCH_SKIP_NESTED=1 (a') and (b'), LK_BENCH_SKIP_WINDOWS=1 (b''), LK_BENCH_SKIP_S3=1 (e),
 * LK_BENCH_WINDOWS_ROUNDS (default 1) sets the (b)/(b'') pairs, LK_BENCH_NO_SESSION=1 leaves (b'')'s session
 * metric out,
 * LK_BENCH_S3_ROUNDS (default 2) sets (e)'s local/S3 pairs; LK_BENCH_CPU_PROF=DIR writes a CPU
 * profile of each speed worker; LK_BENCH_THREADS=N sets the speed job's state threads.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ingestLines } from '../services/ingest/ingest.ts';
import { loadKafkaClientConfig } from '../services/log/kafka/kafkaClientConfig.ts';
import { KafkaLog } from '../services/log/kafka/kafkaLog.ts';
import { eventTopicSpecs } from '../services/log/topics.ts';
import { parseMetricDefinitions } from '../services/metrics/definitions.ts';
import { speedViewTopic } from '../services/views/viewRow.ts';
import { openObjectStore } from '../services/storage/storageLocation.ts';
import { startS3Server, s3Env } from '../scripts/s3server.mjs';
import { freePort } from '../test/ports.ts';
import { SpeedJob } from '../streaming/job/speedJob.ts';
import { defaultSpeedJobConfig } from '../streaming/cli.ts';
import { startSecuredKafka } from '../test/securedKafka.ts';
import {
  NESTED_EVENT_SECTION,
  benchBrokers,
  benchEvents,
  fmtMiB,
  fmtRate,
  machineLine,
  nestedMetrics,
  printTable,
  runBenchWorker,
} from './lib.ts';

const EVENTS = Number(process.env.LK_BENCH_EVENTS ?? 2_000_000);

/** (b): the demo's three metrics on two granularities (keys: campaigns and ads). */
const THROUGHPUT_METRICS = `version: 1
metrics:
  - name: impressions_by_campaign
    filter: { type: impression }
    key: campaign_id
    distinct: user_id
    granularities: [minute, hour]
    allowedLateness: 10m
  - name: clicks_by_ad
    filter: { type: click }
    key: ad_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 10m
  - name: spend_by_campaign
    filter: { type: [click, conversion] }
    key: campaign_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 10m
`;

/**
 * Issue 20's session metric in (b''): sessions per user with a 30-minute gap (66,000 users: the
 * speed layer keeps their open partial sessions, services/metrics/sessionRule.ts).
 * LK_BENCH_NO_SESSION=1 leaves it out (the 5-minute metric alone); LK_BENCH_SESSION_KEY=ad_id keys
 * it by another field (sessions per ad: a few hundred keys instead of 66,000).
 */
const SESSION_KEY = process.env.LK_BENCH_SESSION_KEY ?? 'user_id';
const SESSION_METRIC: string = process.env.LK_BENCH_NO_SESSION
  ? ''
  : `  - name: sessions_by_key
    key: ${SESSION_KEY}
    value: cost
    session: { gap: 30m }
    allowedLateness: 10m
`;

/** (b''): (b)'s metrics plus a 5-minute tumbling metric and the session metric (when built). */
const WINDOWS_METRICS = `${THROUGHPUT_METRICS}  - name: clicks_by_ad_5m
    filter: { type: click }
    key: ad_id
    value: cost
    granularities: [5m]
    allowedLateness: 10m
${SESSION_METRIC}`;
/** What (b'') adds, as the table says it. */
const WINDOWS_ADDED =
  SESSION_METRIC === '' ? '+ a 5m tumbling metric' : `+ a 5m tumbling metric + a session metric (30m gap, per ${SESSION_KEY})`;

/** (c): one metric per user as well, so that the state holds over a million live window-keys. */
const MEMORY_METRICS = `version: 1
metrics:
  - name: impressions_by_campaign
    filter: { type: impression }
    key: campaign_id
    distinct: user_id
    granularities: [minute, hour]
    allowedLateness: 10m
  - name: clicks_by_ad
    filter: { type: click }
    key: ad_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 10m
  - name: events_by_user
    key: user_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 10m
`;

interface WorkerResult {
  records: number;
  seconds: number;
  /** CPU time of the worker process (all its threads) over the same span: steadier than wall time on a shared machine. */
  cpuSeconds: number;
  peakRssBytes: number;
  stateWindows: number;
  stateBytes: number;
  dedupEntries: number;
  duplicates: number;
  droppedLate: Record<string, number>;
  lastCheckpointBytes: number;
  /** Mean wall time of a checkpoint (snapshot + transaction) as the last status reported it. */
  lastCheckpointMs: number;
  memoryAtEnd: NodeJS.MemoryUsage;
}

async function rawConsume(log: KafkaLog, topic: string, total: number): Promise<{ seconds: number; records: number }> {
  const consumer = log.consumer({ groupId: `bench-raw-${Date.now()}`, fromBeginning: true, maxBytesPerPartition: 4 * 1024 * 1024 });
  let seen = 0;
  let first = 0;
  let last = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  await consumer.subscribe([topic]);
  await consumer.run({
    eachBatch: async (batch) => {
      if (first === 0) first = performance.now();
      seen += batch.records.length;
      if (seen >= total) {
        last = performance.now();
        resolveDone();
      }
    },
  });
  await done;
  await consumer.stop();
  return { seconds: (last - first) / 1000, records: seen };
}

/** A client of `brokers`, over the security settings of a client properties file when one is given. */
function benchLog(brokers: string, kafkaConfig?: string): KafkaLog {
  const security = kafkaConfig ? loadKafkaClientConfig(kafkaConfig).security : undefined;
  return new KafkaLog({ brokers: brokers.split(','), clientId: 'bench-speed', ...(security ? { security } : {}) });
}

/** (b), in this process when started with --worker: prints one JSON line with the result. */
async function worker(brokers: string, topic: string, dataDir: string, profile: string, kafkaConfig?: string): Promise<void> {
  const log = benchLog(brokers, kafkaConfig);
  const version = `bench${Date.now().toString(36)}`;
  const job = new SpeedJob(
    log,
    defaultSpeedJobConfig({
      topic,
      version,
      instanceId: 'bench',
      // LK_BENCH_THREADS: state threads (default: the job's own default, one per spare core).
      ...(process.env.LK_BENCH_THREADS ? { threads: Number(process.env.LK_BENCH_THREADS) } : {}),
      dataDir,
      // (e): the checkpoints (and status) on the S3 server the bench started.
      ...(process.env.LK_BENCH_STATE_URI ? { state: await openObjectStore(process.env.LK_BENCH_STATE_URI, 'LK_BENCH_STATE_URI') } : {}),
      definitions: parseMetricDefinitions(
        profile === 'memory'
          ? MEMORY_METRICS
          : profile === 'nested'
            ? nestedMetrics(THROUGHPUT_METRICS)
            : profile === 'windows'
              ? WINDOWS_METRICS
              : THROUGHPUT_METRICS,
        `bench-${profile}.yaml`,
      ),
    }),
  );
  const ends = await log.endOffsets(topic);
  const total = ends.reduce((a, b) => a + b, 0);
  await job.start();
  job.failure().catch((err: unknown) => {
    console.error(`speed job failed: ${String(err)}`);
    process.exit(1);
  });
  let first = 0;
  let cpu = process.cpuUsage();
  let status = job.snapshotStatus();
  for (;;) {
    status = job.snapshotStatus();
    const position = status.partitions.reduce((a, p) => a + p.position, 0);
    if (first === 0 && position > 0) {
      first = performance.now();
      cpu = process.cpuUsage();
    }
    const committed = status.partitions.reduce((a, p) => a + (p.committedOffset ?? 0), 0);
    if (status.partitions.length === ends.length && committed >= total) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const seconds = (performance.now() - first) / 1000;
  const used = process.cpuUsage(cpu);
  const cpuSeconds = (used.user + used.system) / 1e6;
  status = await job.measuredStatus();
  const result: WorkerResult = {
    records: total,
    seconds,
    cpuSeconds,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    stateWindows: status.stateWindows,
    stateBytes: status.stateBytes,
    dedupEntries: status.dedupEntries,
    duplicates: status.duplicates,
    droppedLate: status.droppedLate,
    lastCheckpointBytes: status.lastCheckpoint?.bytes ?? 0,
    lastCheckpointMs: status.lastCheckpoint?.durationMs ?? 0,
    memoryAtEnd: process.memoryUsage(),
  };
  await job.stop();
  await log.deleteTopics([speedViewTopic(version)]).catch(() => undefined);
  await log.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

type Profile = 'throughput' | 'memory' | 'nested' | 'windows';

const cpuPerEvent = (r: WorkerResult) =>
  `${((r.cpuSeconds / r.records) * 1e6).toFixed(2)} us (${r.cpuSeconds.toFixed(1)} CPU s over ${r.seconds.toFixed(1)} s)`;

function runWorker(brokers: string, topic: string, dataDir: string, profile: Profile, kafkaConfig?: string): Promise<WorkerResult> {
  return runBenchWorker<WorkerResult>(
    fileURLToPath(import.meta.url),
    [brokers, topic, dataDir, profile, ...(kafkaConfig ? [kafkaConfig] : [])],
    'speed worker',
  );
}

interface SecuredResult {
  rawPlain: { seconds: number; records: number };
  rawSecured: { seconds: number; records: number };
  speedPlain: WorkerResult;
  speedSecured: WorkerResult;
}

/**
 * (d): one secured broker, one topic, read over its PLAINTEXT and its SASL_SSL listener in turn
 * (plaintext first each time, so that both read a topic the broker has read once already).
 */
async function securedRuns(): Promise<SecuredResult> {
  const dir = mkdtempSync(join(tmpdir(), 'lk-bench-secured-'));
  const kafka = await startSecuredKafka(dir, { heap: '512m' });
  try {
    const config = kafka.writeProperties('bench.properties', kafka.saslSslProperties());
    const plain = benchLog(kafka.plaintext);
    const secured = benchLog(kafka.saslSsl, config);
    const topic = `bench-secured-${Date.now()}`;
    await plain.createTopics(eventTopicSpecs(topic, 6));
    const t0 = performance.now();
    const produced = await ingestLines(plain, benchEvents(EVENTS, { seed: 11, users: 66_000 }), {
      topic,
      source: 'bench',
      batchSize: 10_000,
    });
    console.log(
      `(d) pre-filled ${produced.accepted.toLocaleString('en-US')} events on the secured broker in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    const rawPlain = await rawConsume(plain, topic, produced.accepted);
    const rawSecured = await rawConsume(secured, topic, produced.accepted);
    const speed = async (brokers: string, kafkaConfig?: string): Promise<WorkerResult> => {
      const dataDir = mkdtempSync(join(tmpdir(), 'lk-bench-speed-'));
      try {
        return await runWorker(brokers, topic, dataDir, 'throughput', kafkaConfig);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    };
    const speedPlain = await speed(kafka.plaintext);
    const speedSecured = await speed(kafka.saslSsl, config);
    await plain.deleteTopics([topic, `${topic}.dlq`]);
    await Promise.all([plain.close(), secured.close()]);
    return { rawPlain, rawSecured, speedPlain, speedSecured };
  } finally {
    await kafka.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  console.log(`bench:speed — ${EVENTS.toLocaleString('en-US')} events, 6 partitions, 3 metrics x 2 granularities, dedup on`);
  console.log(machineLine());
  const brokers = await benchBrokers();
  const log = new KafkaLog({ brokers: brokers.split(','), clientId: 'bench-speed' });
  const topic = `bench-speed-${Date.now()}`;
  await log.createTopics(eventTopicSpecs(topic, 6));
  const t0 = performance.now();
  const produced = await ingestLines(
    log,
    benchEvents(EVENTS, {
      seed: 11,
      users: 66_000, // run (c) then ends with 1,002,400 live window-keys: the aim's million
    }),
    { topic, source: 'bench', batchSize: 10_000 },
  );
  console.log(`pre-filled ${produced.accepted.toLocaleString('en-US')} events in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const raw = await rawConsume(log, topic, produced.accepted);
  const run = async (profile: Profile, from = topic): Promise<WorkerResult> => {
    const dataDir = mkdtempSync(join(tmpdir(), 'lk-bench-speed-'));
    try {
      return await runWorker(brokers, from, dataDir, profile);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
  // (b) and (b''): the same topic, the issue's windows added; alternating pairs.
  const pairs: { speed: WorkerResult; windows?: WorkerResult }[] = [];
  const rounds = process.env.LK_BENCH_SKIP_WINDOWS ? 1 : Math.max(1, Number(process.env.LK_BENCH_WINDOWS_ROUNDS ?? 1));
  for (let i = 0; i < rounds; i++) {
    const b = await run('throughput');
    pairs.push({ speed: b, ...(process.env.LK_BENCH_SKIP_WINDOWS ? {} : { windows: await run('windows') }) });
  }
  const speed = pairs[0]!.speed;
  // (a'), (b'): the same events, nested, in a topic of their own (pre-filled through ingest under the mapping).
  let nested: { raw: { seconds: number; records: number }; speed: WorkerResult } | undefined;
  if (!process.env.LK_BENCH_SKIP_NESTED) {
    const nestedTopic = `${topic}-nested`;
    await log.createTopics(eventTopicSpecs(nestedTopic, 6));
    const mapping = parseMetricDefinitions(nestedMetrics(THROUGHPUT_METRICS)).event;
    const filled = await ingestLines(log, benchEvents(EVENTS, { seed: 11, users: 66_000, nested: true }), {
      topic: nestedTopic,
      source: 'bench',
      batchSize: 10_000,
      mapping,
    });
    if (filled.accepted !== produced.accepted) throw new Error(`nested pre-fill accepted ${filled.accepted}, flat ${produced.accepted}`);
    nested = { raw: await rawConsume(log, nestedTopic, filled.accepted), speed: await run('nested', nestedTopic) };
    await log.deleteTopics([nestedTopic, `${nestedTopic}.dlq`]);
  }
  const memory = process.env.LK_BENCH_SKIP_MEMORY ? undefined : await run('memory');
  const onS3 = process.env.LK_BENCH_SKIP_S3 ? undefined : await s3Runs(run);
  await log.deleteTopics([topic, `${topic}.dlq`]);
  await log.close();
  const secured = process.env.LK_BENCH_SKIP_SECURED ? undefined : await securedRuns();

  const rawRate = raw.records / raw.seconds;
  const speedRate = speed.records / speed.seconds;
  const line = (r: WorkerResult, label: string): [string, string][] => [
    [
      `${label} rate (to committed end)`,
      `${fmtRate(r.records / r.seconds)}  (ratio to (a) ${(r.records / r.seconds / rawRate).toFixed(2)})`,
    ],
    [`${label} CPU per event`, cpuPerEvent(r)],
    [`${label} peak RSS`, fmtMiB(r.peakRssBytes)],
    [`${label} live window-keys at the end`, r.stateWindows.toLocaleString('en-US')],
    [`${label} dedup entries at the end`, r.dedupEntries.toLocaleString('en-US')],
    [
      `${label} state bytes (approx.)`,
      `${fmtMiB(r.stateBytes)}, ${Math.round(r.stateBytes / Math.max(1, r.stateWindows))} B per live window-key (dedup set included)`,
    ],
    [`${label} duplicates / dropped late`, `${r.duplicates.toLocaleString('en-US')} / ${JSON.stringify(r.droppedLate)}`],
    [`${label} last checkpoint size`, fmtMiB(r.lastCheckpointBytes)],
  ];
  printTable([
    ['(a) raw consume (kafka adapter)', fmtRate(rawRate)],
    ['(b) speed layer', fmtRate(speedRate)],
    ['ratio (b)/(a)', `${(speedRate / rawRate).toFixed(2)}  (aim >= 0.7)`],
    ...windowsRows(pairs),
    ...line(speed, '(b)'),
    ...(nested
      ? ([
          [`(a') raw consume, nested shape`, fmtRate(nested.raw.records / nested.raw.seconds)],
          [`(b') speed layer, nested shape`, `${fmtRate(nested.speed.records / nested.speed.seconds)}  (${NESTED_EVENT_SECTION})`],
          [`(b') CPU per event`, cpuPerEvent(nested.speed)],
          [
            `ratio (b')/(b), wall rate`,
            `${(nested.speed.records / nested.speed.seconds / speedRate).toFixed(2)}  (aim >= 0.85: paths and time formats within 15 % of flat)`,
          ],
          [
            `ratio (b')/(b), events per CPU second`,
            `${(nested.speed.records / nested.speed.cpuSeconds / (speed.records / speed.cpuSeconds)).toFixed(2)}  (the steadier figure on a shared machine)`,
          ],
          [`ratio (b')/(a')`, (nested.speed.records / nested.speed.seconds / (nested.raw.records / nested.raw.seconds)).toFixed(2)],
          [`(b') peak RSS`, fmtMiB(nested.speed.peakRssBytes)],
        ] as [string, string][])
      : []),
    ...(memory ? line(memory, '(c) + per-user metric') : []),
    ...(memory
      ? ([
          [
            '(c) peak RSS vs aim',
            `${fmtMiB(memory.peakRssBytes)} with ${memory.stateWindows.toLocaleString('en-US')} live window-keys (aim < 1024 MiB with 1,000,000)`,
          ],
        ] as [string, string][])
      : []),
    ...(secured ? securedRows(secured) : []),
    ...(onS3 ? s3Rows(onS3) : []),
  ]);
}

/**
 * (b) beside (b''), pair by pair: the throughput of each, and what the added windows cost in CPU
 * per event (the steadier figure on a shared machine) and in wall rate. Aim: at most 25 %.
 */
function windowsRows(pairs: { speed: WorkerResult; windows?: WorkerResult }[]): [string, string][] {
  const done = pairs.filter((p): p is { speed: WorkerResult; windows: WorkerResult } => p.windows !== undefined);
  if (done.length === 0) return [];
  const rate = (r: WorkerResult) => r.records / r.seconds;
  const cpuRate = (r: WorkerResult) => r.records / r.cpuSeconds;
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
  const rows: [string, string][] = [];
  done.forEach((p, i) => {
    const tag = done.length > 1 ? ` #${i + 1}` : '';
    rows.push(
      [`(b)${tag} standard set`, `${fmtRate(rate(p.speed))}; CPU per event ${cpuPerEvent(p.speed)}`],
      [`(b'')${tag} ${WINDOWS_ADDED}`, `${fmtRate(rate(p.windows))}; CPU per event ${cpuPerEvent(p.windows)}`],
    );
  });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  // Throughput lost: 1 - (b'')/(b), per CPU second (the steadier figure) and per wall second.
  const cpuLoss = done.map((p) => 1 - cpuRate(p.windows) / cpuRate(p.speed));
  const wallLoss = done.map((p) => 1 - rate(p.windows) / rate(p.speed));
  rows.push([
    `throughput (b'') lost vs (b)`,
    `events per CPU second ${pct(mean(cpuLoss))}${done.length > 1 ? ` (${cpuLoss.map(pct).join(', ')})` : ''}, events per wall second ${pct(mean(wallLoss))}${done.length > 1 ? ` (${wallLoss.map(pct).join(', ')})` : ''}; aim <= 25 %: ${mean(cpuLoss) <= 0.25 ? 'met' : 'missed'} by CPU${SESSION_METRIC === '' ? ' (without the session metric: LK_BENCH_NO_SESSION)' : ''}`,
  ]);
  return rows;
}

interface S3Result {
  local: WorkerResult[];
  s3: WorkerResult[];
}

/** (e): (b) on the local disk and with its state on an S3 server, alternating, LK_BENCH_S3_ROUNDS pairs. */
async function s3Runs(run: (profile: 'throughput') => Promise<WorkerResult>): Promise<S3Result> {
  const dir = mkdtempSync(join(tmpdir(), 'lk-bench-s3-'));
  const server = await startS3Server({ port: await freePort(), dir, buckets: ['state'], quiet: true });
  const saved = { ...process.env };
  const out: S3Result = { local: [], s3: [] };
  try {
    for (let round = 0; round < Number(process.env.LK_BENCH_S3_ROUNDS ?? 2); round++) {
      out.local.push(await run('throughput'));
      Object.assign(process.env, s3Env(server), { LK_BENCH_STATE_URI: `s3://state/bench-${round}` });
      try {
        out.s3.push(await run('throughput'));
      } finally {
        for (const k of ['LK_BENCH_STATE_URI', ...Object.keys(s3Env(server))]) {
          if (saved[k] === undefined) delete process.env[k];
          else process.env[k] = saved[k];
        }
      }
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

function s3Rows(r: S3Result): [string, string][] {
  const rates = (xs: WorkerResult[]) => xs.map((x) => x.records / x.seconds);
  const local = rates(r.local);
  const s3 = rates(r.s3);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [
    ['(e) speed layer, checkpoints on local disk', local.map(fmtRate).join(', ')],
    ['(e) speed layer, checkpoints on S3 (versitygw)', s3.map(fmtRate).join(', ')],
    [
      '(e) S3 / local disk, per pair',
      s3.map((x, i) => (x / local[i]!).toFixed(2)).join(', ') + `  (mean ${(mean(s3) / mean(local)).toFixed(2)}; aim >= 0.90)`,
    ],
    [
      '(e) last checkpoint local / S3',
      `${r.local.map((x) => `${fmtMiB(x.lastCheckpointBytes)} in ${x.lastCheckpointMs} ms`).join(', ')} / ${r.s3.map((x) => `${fmtMiB(x.lastCheckpointBytes)} in ${x.lastCheckpointMs} ms`).join(', ')}`,
    ],
  ];
}

function securedRows(r: SecuredResult): [string, string][] {
  const rate = (x: { seconds: number; records: number }) => x.records / x.seconds;
  const rawPlain = rate(r.rawPlain);
  const rawSecured = rate(r.rawSecured);
  const speedPlain = rate(r.speedPlain);
  const speedSecured = rate(r.speedSecured);
  return [
    ['(d) secured broker: raw consume PLAINTEXT', fmtRate(rawPlain)],
    ['(d) raw consume SASL_SSL (SCRAM-SHA-512)', `${fmtRate(rawSecured)}  (ratio to PLAINTEXT ${(rawSecured / rawPlain).toFixed(2)})`],
    ['(d) speed layer PLAINTEXT', fmtRate(speedPlain)],
    ['(d) speed layer SASL_SSL', `${fmtRate(speedSecured)}  (ratio to PLAINTEXT ${(speedSecured / speedPlain).toFixed(2)})`],
    ['(d) speed layer peak RSS PLAINTEXT / SASL_SSL', `${fmtMiB(r.speedPlain.peakRssBytes)} / ${fmtMiB(r.speedSecured.peakRssBytes)}`],
  ];
}

if (process.argv[2] === '--worker')
  await worker(process.argv[3]!, process.argv[4]!, process.argv[5]!, process.argv[6] ?? 'throughput', process.argv[7]);
else await main();
