/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers and status bodies are untyped JSON here. */
/**
 * Three hosts on one machine that share nothing but the Kafka broker and an S3 server (issue 19).
 * Each host (test/hosts.ts) has its own loopback address for its HTTP ports and a private data
 * folder no other host can see (a mount namespace per process; the shared state is
 * `--state-uri s3://...`). Compared with independent oracles computed from the input alone:
 *
 * 1. Speed instances of one version on hosts 1, 2 and 3; host 1 dies mid-stream (every process,
 *    SIGKILL): hosts 2 and 3 take its partitions over from the checkpoints its commits named, and
 *    the view equals the speed oracle, with no batch run. Host 1 comes back, rejoins, and its
 *    serving answers the oracle's totals.
 * 2. A savepoint taken on host 2 mid-stream is restored on host 3 (every instance stopped first):
 *    the version rewinds to it and ends at the oracle's view again.
 * 3. Batch runs on host 2 and serving on host 1 read the same views (the run host 2 published is
 *    the one host 1 serves), and a promotion made on host 3 is seen by serving on host 1.
 * A failing seed prints the command that reruns it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateEventLines, seededRandom } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { openObjectStore } from '../../services/storage/storageLocation.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { readSpeedStatuses } from '../../services/status/speedStatus.ts';
import { readCurrentBatchRun } from '../../services/views/batchSnapshots.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { readDefaultVersion } from '../../services/versions/defaultVersion.ts';
import { oracleViews, readTopic, type OracleInput } from '../../batch/__tests__/batchTestKit.ts';
import { computeOracle, TEST_METRICS_YAML, type OracleResult } from '../../streaming/__tests__/support/oracle.ts';
import { compareWithOracle, createEventsTopic, kafkaLog, produceLines, readView } from '../../streaming/__tests__/support/harness.ts';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { eventually, freePort, tempDir, testBrokers, uniqueName } from '../helpers.ts';
import { createHosts, openedForeignFiles, type Host, type HostProcess } from '../hosts.ts';
import { startTestS3, type TestS3 } from '../s3.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 190019);
const PARTITIONS = 6;
/** How long a speed instance may take to exit after SIGTERM (its final checkpoint included). */
const STOP_BOUND_MS = 120_000;
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/threeHosts.spec.ts`;

describe(`three hosts sharing only Kafka and S3 (seed ${SEED})`, () => {
  const dir = tempDir('lk-three-hosts-');
  const rand = seededRandom(SEED);
  const topic = uniqueName('hosts');
  const tag = uniqueName('h').slice(-10);
  const V1 = `v1-${tag}`;
  const V2 = `v2-${tag}`;
  const lines = [
    ...generateEventLines({
      seed: SEED,
      count: 9000,
      startTime: Date.UTC(2026, 2, 1, 10, 0),
      eventsPerSecond: 15,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 4000,
      lateRate: 0.02,
      lateMinMs: 60_000,
      lateMaxMs: 20 * 60_000,
    }),
  ];
  const oracle: OracleResult = computeOracle(lines, PARTITIONS, 2000);
  let s3: TestS3;
  let state: ObjectStore;
  let log: EventLog;
  let hosts: Host[];
  let namespaces = false;
  const speed = new Map<string, HostProcess>();
  const serving = new Map<string, { proc: HostProcess; url: string }>();
  const statusPorts = new Map<string, number>();
  /** What `lk speed savepoint` printed (its offsets), for the message of a rewind that does not come. */
  let savepointOutput = '';

  beforeAll(async () => {
    s3 = await startTestS3(['state']);
    const stateUri = `s3://state/${tag}`;
    const env = { KAFKA_BROKERS: testBrokers(), LK_STATE_URI: stateUri, LK_SERVE_WORKERS: '1', ...s3.env };
    state = await openObjectStore(stateUri, 'test', { ...process.env, ...s3.env });
    ({ hosts, namespaces } = createHosts(dir.path, 3, env));
    // Each host has its own copy of the metric file, in its own folder.
    for (const h of hosts) writeFileSync(join(h.realDir, 'metrics.yaml'), TEST_METRICS_YAML);
    log = kafkaLog(testBrokers(), 'three-hosts-test');
    await createEventsTopic(log, topic, PARTITIONS);
  });

  afterAll(async () => {
    await Promise.all((hosts ?? []).map((h) => h.killAll()));
    await log?.close();
    await s3?.stop();
    dir.remove();
  });

  const metricsOf = (h: Host) => ['--metrics', join(h.dataDir, 'metrics.yaml')];

  async function startSpeed(h: Host, extra: string[] = []): Promise<HostProcess> {
    const port = statusPorts.get(h.name) ?? (await freePort());
    statusPorts.set(h.name, port);
    const proc = h.lk([
      'speed',
      '--topic',
      topic,
      '--version',
      V1,
      '--checkpoint-interval',
      '300ms',
      '--out-of-orderness',
      '2s',
      '--instance-id',
      h.name,
      '--status-port',
      String(port),
      '--status-host',
      h.ip,
      ...extra,
      ...metricsOf(h),
    ]);
    speed.set(h.name, proc);
    return proc;
  }

  /**
   * SIGTERM to a speed instance, and a bounded wait for it to exit (a final checkpoint when it
   * can make one): one that does not exit fails the test naming its host, with its last output.
   */
  async function stopSpeed(name: string): Promise<void> {
    const p = speed.get(name);
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exited = await Promise.race([
      p.exited.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), STOP_BOUND_MS))),
    ]);
    clearTimeout(timer);
    if (exited) return;
    const tail = p.output().slice(-3000);
    p.child.kill('SIGKILL');
    expect.fail(`speed on ${name} did not exit within ${STOP_BOUND_MS / 1000} s of SIGTERM; its last output:\n${tail}\n${rerun}`);
  }

  async function startServing(h: Host): Promise<string> {
    const port = await freePort();
    const proc = h.lk([
      'serve',
      '--host',
      h.ip,
      '--port',
      String(port),
      '--version',
      V1,
      '--topic',
      topic,
      '--batch-poll',
      '200ms',
      ...metricsOf(h),
    ]);
    const url = `http://${h.ip}:${port}`;
    serving.set(h.name, { proc, url });
    await eventually(
      async () => ((await fetch(`${url}/readyz`).catch(() => undefined))?.ok ? true : undefined),
      `serving on ${h.name} ready (${proc.output().slice(-500)})`,
      90_000,
    );
    return url;
  }

  async function caughtUp(version: string, what: string): Promise<void> {
    const ends = await log.endOffsets(topic);
    await eventually(
      async () => {
        const committed = await log.committedOffsets(`lk-speed-${version}`, topic);
        return ends.every((e, p) => committed[p] === e) ? true : undefined;
      },
      `${what} (${[...speed.values()].map((p) => p.output().slice(-300)).join(' | ')})`,
      120_000,
    );
  }

  async function expectSpeedViewExact(version: string, what: string): Promise<void> {
    const problems = compareWithOracle(await readView(log, speedViewTopic(version)), oracle);
    expect(problems.slice(0, 10), `${what}: ${problems.length} differences\n${rerun}`).toEqual([]);
  }

  /** Events counted per metric over every hour window, as serving answers `total` (HOUR). */
  function speedTotals(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const r of oracle.rows.values()) if (r.granularity === 'hour') out[r.metric] = (out[r.metric] ?? 0) + r.count;
    return out;
  }

  async function servedTotals(url: string, version?: string): Promise<Record<string, number>> {
    const from = new Date(Date.UTC(2026, 2, 1, 0, 0)).toISOString();
    const to = new Date(Date.UTC(2026, 2, 2, 0, 0)).toISOString();
    const v = version ? `, version: "${version}"` : '';
    const d = await gqlData<any>(
      url,
      `{ ${Object.keys(speedTotals())
        .map((m) => `${m}: total(metric: "${m}", from: "${from}", to: "${to}", granularity: HOUR${v}) { count }`)
        .join(' ')} }`,
    );
    return Object.fromEntries(Object.entries(d).map(([m, t]: [string, any]) => [m, t.count]));
  }

  function expectHostsApart(): void {
    for (const h of hosts)
      expect(
        openedForeignFiles(
          h,
          hosts.filter((o) => o !== h),
        ),
      ).toEqual([]);
  }

  it('each host sees only its own data folder', async () => {
    for (const h of hosts) writeFileSync(join(h.realDir, `${h.name}.marker`), h.name);
    for (const h of hosts) {
      const seen = await h.shell(`ls -A ${h.dataDir}; ls -A ${join(dir.path, 'real')} 2>&1 | sed 's/^/real: /'`);
      expect(seen).toContain(`${h.name}.marker`);
      for (const o of hosts.filter((x) => x !== h)) expect(seen).not.toContain(`${o.name}.marker`);
      // In namespaces the folder holding every host's folder is an empty tmpfs.
      if (namespaces) expect(seen).not.toMatch(/^real: /m);
    }
  });

  it(
    'speed on hosts 1, 2 and 3; host 1 SIGKILLed mid-stream: the view equals the oracle with no batch run; host 1 comes back',
    { timeout: 400_000 },
    async () => {
      const cut = Math.floor(lines.length * 0.4);
      await produceLines(log, topic, lines.slice(0, cut));
      for (const h of hosts) await startSpeed(h);
      // Every host owns partitions, each answering its status on its own address.
      await eventually(
        async () => {
          const statuses = (await readSpeedStatuses(state, V1)).flatMap((s) =>
            s.status?.ready && s.status.partitions.length > 0 ? [s.status.instanceId] : [],
          );
          return hosts.every((h) => statuses.includes(h.name)) ? true : undefined;
        },
        'the group to give every host partitions',
        120_000,
      );
      for (const h of hosts) {
        const body = (await (await fetch(`http://${h.ip}:${statusPorts.get(h.name)}/status`)).json()) as any;
        expect(body.instanceId).toBe(h.name);
      }
      const host1Url = await startServing(hosts[0]!);
      expect(host1Url).toContain('127.0.0.2');

      // The rest of the stream, with host 1 killed at a seeded moment in it.
      const rest = lines.slice(cut);
      const chunks = 30;
      const killAt = 6 + Math.floor(rand() * 15);
      const chunk = Math.ceil(rest.length / chunks);
      let savepoint: Promise<string> | undefined;
      for (let i = 0; i < chunks; i++) {
        await produceLines(log, topic, rest.slice(i * chunk, (i + 1) * chunk));
        if (i === killAt) {
          expectHostsApart();
          await hosts[0]!.killAll();
          // A savepoint on host 2 while host 1's partitions wait for their takeover (mid-stream).
          savepoint = hosts[1]!.run([
            'speed',
            'savepoint',
            '--name',
            `mid-${tag}`,
            '--topic',
            topic,
            '--version',
            V1,
            ...metricsOf(hosts[1]!),
          ]);
        }
        await new Promise((r) => setTimeout(r, 150));
      }
      savepointOutput = (await savepoint) ?? '';
      expect(savepointOutput).toContain(`savepoint mid-${tag}`);
      await caughtUp(V1, 'hosts 2 and 3 caught up after host 1 died');
      await expectSpeedViewExact(V1, `host 1 killed at chunk ${killAt}`);
      expectHostsApart();

      // Host 1 back: it rejoins the group and takes partitions again; its serving answers the oracle.
      const back = Date.now();
      await startSpeed(hosts[0]!);
      await eventually(
        async () => {
          const mine = (await readSpeedStatuses(state, V1)).find((s) => s.status?.instanceId === 'host1')?.status;
          return mine && mine.updatedAt > back && mine.partitions.length > 0 ? true : undefined;
        },
        'host 1 to own partitions again',
        120_000,
      );
      const url = await startServing(hosts[0]!);
      await eventually(
        async () => {
          const served = await servedTotals(url);
          return JSON.stringify(served) === JSON.stringify(speedTotals()) ? true : undefined;
        },
        `host 1's serving to answer the oracle's totals (${JSON.stringify(speedTotals())})`,
      );
      await caughtUp(V1, 'three hosts again');
      await expectSpeedViewExact(V1, 'host 1 back');
    },
  );

  it('a savepoint taken on host 2 is restored on host 3', { timeout: 300_000 }, async () => {
    // Every instance stopped first (as `--from-savepoint` asks), then host 3 alone restores it.
    for (const h of hosts) await stopSpeed(h.name);
    const before = await log.committedOffsets(`lk-speed-${V1}`, topic);
    const restored = await startSpeed(hosts[2]!, ['--from-savepoint', `mid-${tag}`]);
    // The savepoint's offsets are behind the end: the version rewinds, then catches up again.
    await eventually(
      async () => ((await log.committedOffsets(`lk-speed-${V1}`, topic)).some((c, p) => c !== null && c < before[p]!) ? true : undefined),
      `host 3 to rewind to the savepoint: committed before ${JSON.stringify(before)}, ${savepointOutput} (${restored.output().slice(-500)})`,
      120_000,
    );
    await caughtUp(V1, 'host 3 caught up from the savepoint');
    await expectSpeedViewExact(V1, 'restored from the savepoint on host 3');
  });

  it(
    'batch on host 2 and serving on host 1 read the same views; a promotion on host 3 is seen by serving on host 1',
    { timeout: 400_000 },
    async () => {
      const host1 = serving.get('host1')!.url;
      // A second version, replayed from the start on host 3 (same metrics).
      const replay = hosts[2]!.lk([
        'replay',
        '--version',
        V2,
        '--from',
        'earliest',
        '--topic',
        topic,
        '--instance-id',
        'host3-v2',
        ...metricsOf(hosts[2]!),
      ]);
      speed.set('host3-v2', replay);
      await caughtUp(V2, 'v2 replayed on host 3');
      await hosts[1]!.run(['batch', 'run', '--topic', topic, '--version', V1, ...metricsOf(hosts[1]!)]);
      await hosts[1]!.run(['batch', 'run', '--topic', topic, '--version', V2, ...metricsOf(hosts[1]!)]);
      const runs = new Map<string, string>();
      for (const v of [V1, V2]) runs.set(v, (await readCurrentBatchRun(state, v))!.manifest.runId);
      // Serving on host 1 installs the run host 2 published.
      await eventually(
        async () => {
          const d = await gqlData<any>(host1, `{ pipeline(version: "${V1}") { serving { batchView { runId } } } }`);
          return d.pipeline.serving.batchView?.runId === runs.get(V1) ? true : undefined;
        },
        `host 1 serving v1's batch run ${runs.get(V1)}`,
      );
      // Every window is now under the batch cut: the answers are the batch oracle's.
      const batchOracle = oracleViews(
        (await readTopic(log, topic))
          .flat()
          .map<OracleInput>((r) => ({ partition: r.partition, offset: r.offset, line: r.value!.toString('utf8') })),
      );
      const batchTotals: Record<string, number> = {};
      for (const [k, r] of batchOracle) {
        const [metric, granularity] = k.split('|') as [string, string];
        if (granularity === 'hour') batchTotals[metric] = (batchTotals[metric] ?? 0) + r.count;
      }
      expect(await servedTotals(host1, V1), rerun).toEqual(batchTotals);

      // The promotion, made on host 3 with its checks (v2 caught up, its batch view there).
      const out = await hosts[2]!.run(['promote', V2, '--default-version', V1, ...metricsOf(hosts[2]!)]);
      expect(out).toContain(`${V2} is the default version now (promotion 1; previous ${V1})`);
      expect((await readDefaultVersion(state))?.version).toBe(V2);
      await eventually(async () => {
        const d = await gqlData<any>(host1, '{ versions { default } }');
        return d.versions.default === V2 ? true : undefined;
      }, 'serving on host 1 to follow the promotion made on host 3');
      const d = await gqlData<any>(host1, `{ pipeline { version serving { batchView { runId } } } }`);
      expect(d.pipeline).toEqual({ version: V2, serving: { batchView: { runId: runs.get(V2) } } });
      expect(await servedTotals(host1), rerun).toEqual(batchTotals);
      expectHostsApart();
    },
  );
});
