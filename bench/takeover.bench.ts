/**
 * npm run bench:takeover — how long a speed instance's death costs, against its state, with the
 * checkpoints on an S3 server (versitygw on 127.0.0.1, started by the bench; --state-uri s3://...).
 *
 *   (a) recovery time: for K keys per partition (100,000 and 1,000,000; LK_BENCH_TAKEOVER_KEYS),
 *       a 2-partition topic holding K events per partition, each with its own id and its own key
 *       (a per-key metric, one hour window: K live window-keys and K dedup ids per partition); two
 *       `lk speed` processes, one partition each, caught up; then one is SIGKILLed and an event is
 *       sent to its partition at once. Recovery = the kill to the first row the survivor publishes
 *       for that partition (read_committed, from the view topic). It holds the group's session
 *       timeout (10 s: the broker's only way to tell a dead member), the rebalance, the restore
 *       (the committed chain read from S3, decoded and rebuilt) and one checkpoint interval (1 s).
 *       The restore alone is timed as well, in this process, from the same committed chain, on S3
 *       and from a local copy: it is what grows with the state. Checkpoint bytes per key: the
 *       committed chain's bytes over the partition's window-keys.
 *   (b) events/s per instance as partitions and instances grow: a topic of P partitions (6, 12)
 *       pre-filled with LK_BENCH_SCALING_EVENTS (default 600,000) events of the demo's shape, read
 *       by N `lk speed` processes at once (1, 2, 3), from the first record to every partition's
 *       end offset committed; the total rate and the rate per instance.
 * Every figure is for this machine (2 cores shared with the broker and the S3 server): run it twice
 * and quote ranges. LK_BENCH_SKIP_SCALING=1 skips (b); LK_BENCH_SKIP_RECOVERY=1 skips (a).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ingestLines } from '../services/ingest/ingest.ts';
import type { RawLine } from '../services/ingest/lineReader.ts';
import { KafkaLog } from '../services/log/kafka/kafkaLog.ts';
import { partitionForKey } from '../services/log/partitioner.ts';
import { eventTopicSpecs } from '../services/log/topics.ts';
import { parseMetricDefinitions } from '../services/metrics/definitions.ts';
import { LocalObjectStore } from '../services/storage/localObjectStore.ts';
import type { ObjectStore } from '../services/storage/objectStore.ts';
import { openObjectStore } from '../services/storage/storageLocation.ts';
import { readSpeedStatuses } from '../services/status/speedStatus.ts';
import { checkpointsPrefix } from '../services/config/dataDir.ts';
import { speedViewTopic } from '../services/views/viewRow.ts';
import { CheckpointStore, committedCheckpoint, restoreState } from '../streaming/checkpoints/checkpointStore.ts';
import { decodeSnapshot } from '../streaming/checkpoints/snapshotCodec.ts';
import { startS3Server, s3Env } from '../scripts/s3server.mjs';
import { freePort } from '../test/ports.ts';
import { benchBrokers, benchEvents, fmtMiB, fmtRate, machineLine, printTable } from './lib.ts';

const LK_BIN = fileURLToPath(new URL('../bin/lk.js', import.meta.url));
const KEYS = (process.env.LK_BENCH_TAKEOVER_KEYS ?? '100000,1000000').split(',').map(Number);
const SCALING_EVENTS = Number(process.env.LK_BENCH_SCALING_EVENTS ?? 600_000);
const HOUR = Date.UTC(2026, 0, 5, 10);

/** One window-key per event: a per-key count in one hour window. */
const PER_KEY_METRICS = `version: 1
metrics:
  - name: events_by_key
    key: user_id
    granularities: [hour]
    allowedLateness: 1h
`;

/** The demo's shape for (b). */
const DEMO_METRICS = `version: 1
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
`;

const say = (line: string) => console.log(line);

interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<unknown>;
}

function lk(args: string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [LK_BIN, ...args], {
    // The sources under test (not an older dist/ build).
    env: { ...process.env, LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1', LK_FROM_SOURCE: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, exited: new Promise((r) => child.on('exit', r)) };
}

async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 900_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function committedAtEnd(log: KafkaLog, group: string, topic: string): Promise<boolean> {
  const [ends, committed] = await Promise.all([log.endOffsets(topic), log.committedOffsets(group, topic)]);
  return ends.every((e, p) => e === 0 || committed[p] === e);
}

/** `count` events per partition of a 2-partition topic, each with its own id and key, in one hour. */
async function* perKeyEvents(keysPerPartition: number): AsyncGenerator<RawLine> {
  let n = 0;
  for (let i = 0; i < keysPerPartition * 2; i++) {
    const line = JSON.stringify({ id: `k-${i}`, type: 'impression', ts: new Date(HOUR + (i % 3_000_000)).toISOString(), user_id: `u${i}` });
    yield { number: ++n, bytes: Buffer.from(line) };
  }
}

/** Resident memory of a process, from /proc (0 where there is none). */
function rssOf(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** An event id of partition `p` among `partitions` that no event has. */
function idIn(p: number, partitions: number, tag: string): string {
  for (let i = 0; ; i++) if (partitionForKey(`${tag}-${i}`, partitions) === p) return `${tag}-${i}`;
}

interface RecoveryResult {
  keys: number;
  windowKeys: number;
  dedupIds: number;
  recoverySeconds: number;
  /** The dead instance's state bytes (its status, measured by the state thread) and its own RSS just before the kill. */
  victimStateBytes: number;
  victimRssBytes: number;
  chainBytes: number;
  chainSnapshots: number;
  restoreS3Seconds: number;
  restoreLocalSeconds: number;
}

async function recovery(
  log: KafkaLog,
  brokers: string,
  state: ObjectStore,
  stateUri: string,
  env: Record<string, string>,
  keys: number,
): Promise<RecoveryResult> {
  const work = mkdtempSync(join(tmpdir(), 'lk-bench-takeover-'));
  const topic = `bench-takeover-${keys}-${Date.now().toString(36)}`;
  const version = `t${Date.now().toString(36)}`;
  const group = `lk-speed-${version}`;
  const metrics = join(work, 'metrics.yaml');
  writeFileSync(metrics, PER_KEY_METRICS);
  const procs: Proc[] = [];
  try {
    await log.createTopics(eventTopicSpecs(topic, 2));
    const t0 = performance.now();
    await ingestLines(log, perKeyEvents(keys), { topic, source: 'bench', batchSize: 10_000 });
    say(`(a) ${keys.toLocaleString('en-US')} keys per partition: pre-filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const args = (id: string) => [
      'speed',
      '--topic',
      topic,
      '--version',
      version,
      '--metrics',
      metrics,
      '--instance-id',
      id,
      '--checkpoint-interval',
      '1s',
      '--data-dir',
      join(work, id),
      '--brokers',
      brokers,
      '--state-uri',
      stateUri,
    ];
    procs.push(lk(args('a'), env), lk(args('b'), env));
    await until(async () => ((await committedAtEnd(log, group, topic)) ? true : undefined), 'both instances caught up');
    // Who owns which partition now (each has one: the group spreads two partitions over two members).
    const owners = await until(async () => {
      const statuses = await readSpeedStatuses(state, version);
      const own = new Map<number, string>();
      for (const s of statuses) for (const p of s.status?.partitions ?? []) own.set(p.partition, s.status!.instanceId);
      return own.size === 2 && new Set(own.values()).size === 2 ? own : undefined;
    }, 'each instance to own one partition');
    const victim = owners.get(0)!;
    // The status's state bytes are the state thread's last figure (refreshed at most every 10 s,
    // and once more when the partition has gone quiet: speedJob.ts remeasureQuietPartitions): wait
    // for one that counts the partition's window-keys and dedup ids (the measure's floor per item).
    const victimStatus = await until(async () => {
      const st = (await readSpeedStatuses(state, version)).find((s) => s.status?.instanceId === victim)?.status;
      return st && st.stateWindows >= keys * 0.99 && st.stateBytes >= st.stateWindows * 40 + st.dedupEntries * 16 ? st : undefined;
    }, "the victim's status to measure its state");
    const survivor = procs[victim === 'a' ? 1 : 0]!;
    const viewTopic = speedViewTopic(version);
    const viewEnds = await log.endOffsets(viewTopic);
    // Read the view from its end, before the kill: the first row of partition 0 afterwards is the survivor's.
    let firstRowAt = 0;
    let markerOffset = Infinity;
    const reader = log.consumer({ groupId: `bench-view-${Date.now()}`, fromBeginning: true });
    await reader.subscribe([viewTopic]);
    await reader.run({
      onAssignment: async (tps) => tps.map((tp) => ({ ...tp, offset: viewEnds[tp.partition] ?? 0 })),
      eachBatch: async (batch) => {
        for (const r of batch.records) {
          const row = JSON.parse(r.value!.toString('utf8')) as { partition: number; throughOffset: number };
          if (firstRowAt === 0 && row.partition === 0 && row.throughOffset > markerOffset) firstRowAt = performance.now();
        }
      },
    });
    const victimProc = procs[victim === 'a' ? 0 : 1]!;
    const victimRssBytes = rssOf(victimProc.child.pid!);
    const killedAt = performance.now();
    victimProc.child.kill('SIGKILL');
    await victimProc.exited;
    // One event for the dead instance's partition: the survivor's first row with it is the recovery.
    const producer = await log.producer();
    const ends = await log.endOffsets(topic);
    await producer.send(topic, [
      {
        key: idIn(0, 2, 'marker'),
        value: JSON.stringify({ id: idIn(0, 2, 'marker'), type: 'impression', ts: new Date(HOUR + 1).toISOString(), user_id: 'u-marker' }),
      },
    ]);
    await producer.close();
    markerOffset = ends[0]!;
    await until(async () => (firstRowAt > 0 ? true : undefined), `the survivor's first row (${survivor.output().slice(-500)})`);
    const recoverySeconds = (firstRowAt - killedAt) / 1000;
    await reader.stop();
    // The restore alone, from the chain the group's offset names now (the survivor's), on S3 and local.
    await until(async () => ((await committedAtEnd(log, group, topic)) ? true : undefined), 'the survivor caught up');
    const head = committedCheckpoint((await log.committedOffsetsWithMetadata(group, topic))[0] ?? null)!;
    const onS3 = new CheckpointStore(state.child(checkpointsPrefix(version)));
    const local = new CheckpointStore(new LocalObjectStore(join(work, 'local-copy')));
    const restore = async (store: CheckpointStore) => {
      const t = performance.now();
      const chain = await store.readChain(0, head);
      const decoded = chain.buffers.map((b, i) => decodeSnapshot(b, chain.names[i]!));
      const restored = restoreState(
        0,
        parseMetricDefinitions(PER_KEY_METRICS, 'm.yaml').metrics,
        decoded[0]!.header.semantics,
        { homePartitions: 2 },
        decoded,
      );
      return { seconds: (performance.now() - t) / 1000, chain, restored };
    };
    const s3 = await restore(onS3);
    for (let i = 0; i < s3.chain.names.length; i++) await local.write(0, s3.chain.names[i]!, s3.chain.buffers[i]!);
    const fromDisk = await restore(local);
    return {
      keys,
      windowKeys: s3.restored.windowCount,
      dedupIds: s3.restored.dedup.size,
      recoverySeconds,
      victimStateBytes: victimStatus.stateBytes,
      victimRssBytes,
      chainBytes: s3.chain.buffers.reduce((n, b) => n + b.length, 0),
      chainSnapshots: s3.chain.names.length,
      restoreS3Seconds: s3.seconds,
      restoreLocalSeconds: fromDisk.seconds,
    };
  } finally {
    for (const p of procs) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await log.deleteTopics([topic, `${topic}.dlq`, speedViewTopic(version)]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  }
}

interface ScalingResult {
  partitions: number;
  instances: number;
  seconds: number;
  events: number;
}

async function scaling(log: KafkaLog, brokers: string, stateUri: string, env: Record<string, string>): Promise<ScalingResult[]> {
  const out: ScalingResult[] = [];
  for (const partitions of [6, 12]) {
    const topic = `bench-scale-${partitions}-${Date.now().toString(36)}`;
    await log.createTopics(eventTopicSpecs(topic, partitions));
    const { accepted } = await ingestLines(log, benchEvents(SCALING_EVENTS, { seed: 7, users: 50_000 }), {
      topic,
      source: 'bench',
      batchSize: 10_000,
    });
    for (const instances of [1, 2, 3]) {
      const work = mkdtempSync(join(tmpdir(), 'lk-bench-scale-'));
      const metrics = join(work, 'metrics.yaml');
      writeFileSync(metrics, DEMO_METRICS);
      const version = `s${Date.now().toString(36)}`;
      const procs = Array.from({ length: instances }, (_, i) =>
        lk(
          [
            'speed',
            '--topic',
            topic,
            '--version',
            version,
            '--metrics',
            metrics,
            '--instance-id',
            `i${i}`,
            '--data-dir',
            join(work, `i${i}`),
            '--brokers',
            brokers,
            '--state-uri',
            `${stateUri}-scale`,
          ],
          env,
        ),
      );
      try {
        const state = await openObjectStore(`${stateUri}-scale`, 'bench', { ...process.env, ...env });
        // From the first record processed (the group formed) to every partition committed at its end.
        const started = await until(async () => {
          const st = await readSpeedStatuses(state, version);
          return st.some((s) => (s.status?.partitions ?? []).some((p) => p.position > 0)) ? performance.now() : undefined;
        }, 'the first records processed');
        await until(
          async () => ((await committedAtEnd(log, `lk-speed-${version}`, topic)) ? true : undefined),
          `${instances} instances caught up`,
        );
        out.push({ partitions, instances, seconds: (performance.now() - started) / 1000, events: accepted });
        say(`(b) ${partitions} partitions, ${instances} instance(s): ${fmtRate(accepted / out.at(-1)!.seconds)}`);
      } finally {
        for (const p of procs) p.child.kill('SIGTERM');
        await Promise.all(procs.map((p) => p.exited));
        await log.deleteTopics([speedViewTopic(version)]).catch(() => undefined);
        rmSync(work, { recursive: true, force: true });
      }
    }
    await log.deleteTopics([topic, `${topic}.dlq`]);
  }
  return out;
}

async function main(): Promise<void> {
  say(`bench:takeover — recovery after a SIGKILL against state size, checkpoints on S3 (versitygw); events/s as instances grow`);
  say(machineLine());
  const brokers = await benchBrokers();
  const log = new KafkaLog({ brokers: brokers.split(','), clientId: 'bench-takeover' });
  const dir = mkdtempSync(join(tmpdir(), 'lk-bench-takeover-s3-'));
  const server = await startS3Server({ port: await freePort(), dir, buckets: ['state'], quiet: true });
  const env = s3Env(server);
  const stateUri = `s3://state/takeover-${Date.now().toString(36)}`;
  const state = await openObjectStore(stateUri, 'bench', { ...process.env, ...env });
  try {
    const recoveries: RecoveryResult[] = [];
    if (!process.env.LK_BENCH_SKIP_RECOVERY) for (const k of KEYS) recoveries.push(await recovery(log, brokers, state, stateUri, env, k));
    const scaled = process.env.LK_BENCH_SKIP_SCALING ? [] : await scaling(log, brokers, stateUri, env);
    printTable([
      ...recoveries.flatMap((r): [string, string][] => [
        [
          `(a) ${r.keys.toLocaleString('en-US')} keys/partition: recovery (kill -> first row)`,
          `${r.recoverySeconds.toFixed(1)} s (session timeout 10 s + rebalance + restore + 1 s checkpoint)`,
        ],
        [
          `(a) ${r.keys.toLocaleString('en-US')} keys/partition: restore of the chain`,
          `${r.restoreS3Seconds.toFixed(2)} s from S3, ${r.restoreLocalSeconds.toFixed(2)} s from local disk (${r.chainSnapshots} snapshot(s))`,
        ],
        [
          `(a) ${r.keys.toLocaleString('en-US')} keys/partition: memory of the dead instance`,
          `state ${fmtMiB(r.victimStateBytes)} (its one partition), RSS ${fmtMiB(r.victimRssBytes)}`,
        ],
        [
          `(a) ${r.keys.toLocaleString('en-US')} keys/partition: state`,
          `${r.windowKeys.toLocaleString('en-US')} window-keys, ${r.dedupIds.toLocaleString('en-US')} dedup ids; checkpoint chain ${fmtMiB(r.chainBytes)}, ${Math.round(r.chainBytes / Math.max(1, r.windowKeys))} B per key`,
        ],
      ]),
      ...scaled.map((s): [string, string] => [
        `(b) ${s.partitions} partitions, ${s.instances} instance(s)`,
        `${fmtRate(s.events / s.seconds)} in all, ${fmtRate(s.events / s.seconds / s.instances)} per instance`,
      ]),
    ]);
  } finally {
    await log.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
