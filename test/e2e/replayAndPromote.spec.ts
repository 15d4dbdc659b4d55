/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers and status files are untyped JSON here. */
/**
 * Reprocessing end to end on the real broker, the way a user does it: `lk speed` runs v1,
 * `lk replay` replays the log into new versions, `lk batch run --version` gives each its batch
 * view from the one lake, `lk promote` switches serving's default version and back.
 *
 * - v1's own metric file replayed into v2: v2's view equals v1's, and the independent speed
 *   oracle (streaming/__tests__/support/oracle.ts), and serving finds no window that differs.
 * - A changed metric file (a new filter value, a new granularity, a new metric) replayed into v3:
 *   v3's speed view equals the oracle computed for the new file; its batch totals equal a plain
 *   count of the deduplicated events; v1 is unchanged.
 * - Promotion: refused with the reasons while a version lags or has no batch view, --force
 *   skips them; promote switches what queries without a version answer, promoting back restores
 *   it; 50 flips under concurrent readers never give a reader an answer mixing two versions;
 *   `lk promote` killed at each step leaves serving all-old or all-new, agreeing with
 *   `lk versions` after a restart. Retiring deletes a version's topic, group, checkpoints and views.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { speedViewTopic, type ViewRow } from '../../services/views/viewRow.ts';
import { currentBatchRun, localState } from '../sharedState.ts';
import { readVersionDefinitions, readVersionRecord } from '../../services/versions/versionRecord.ts';
import { listAll } from '../../services/storage/objectStore.ts';
import { ORACLE_METRICS, TEST_METRICS_YAML, computeOracle, rowId, type OracleMetric } from '../../streaming/__tests__/support/oracle.ts';
import { compareWithOracle, createEventsTopic, produceLines, readView } from '../../streaming/__tests__/support/harness.ts';
import { gql, gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { eventually, tempDir, uniqueName } from '../helpers.ts';
import { PROMOTION_POINTS } from './crashPointScenarios.ts';
import { Pipeline, killAll, startServing, type LkProcess, type Serving } from './pipeline.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 31337);
const PARTITIONS = 3;
const FLIPS = 50;
const rerun = `rerun: LK_TEST_SEED=${SEED} npx vitest run test/e2e/replayAndPromote.spec.ts`;

/** The changed file: spend counts impressions too (a new filter value), clicks get days (a new granularity), a new metric. */
const CHANGED_METRICS_YAML = TEST_METRICS_YAML.replace(
  'filter: { type: [click, conversion] }',
  'filter: { type: [click, conversion, impression] }',
).replace('value: cost\n    granularities: [minute, hour]', 'value: cost\n    granularities: [minute, hour, day]')
  .concat(`  - name: users_by_ad
    filter: { type: [impression, click] }
    key: ad_id
    distinct: user_id
    granularities: [hour]
    allowedLateness: 30m
`);

/** The same file described by hand for the oracle. */
const CHANGED_ORACLE_METRICS: OracleMetric[] = [
  ORACLE_METRICS[0]!,
  { ...ORACLE_METRICS[1]!, granularities: [...ORACLE_METRICS[1]!.granularities, { name: 'day', ms: 86_400_000 }] },
  { ...ORACLE_METRICS[2]!, types: ['click', 'conversion', 'impression'] },
  {
    name: 'users_by_ad',
    types: ['impression', 'click'],
    key: 'ad_id',
    distinct: 'user_id',
    granularities: [{ name: 'hour', ms: 3_600_000 }],
    latenessMs: 1_800_000,
  },
];

interface Event {
  id: string;
  type: string;
  ts: number;
  fields: Record<string, unknown>;
}

describe(`replay into new versions, compare, promote, roll back (seed ${SEED})`, () => {
  const dir = tempDir('lk-e2e-replay-');
  const topic = uniqueName('replay');
  const suffix = Date.now().toString(36).slice(-5);
  const [V1, V2, V3, V4] = ['v1', 'v2', 'v3', 'v4'].map((v) => `${v}-${suffix}`) as [string, string, string, string];
  const lines = [
    ...generateEventLines({
      seed: SEED,
      count: 6000,
      startTime: Date.UTC(2026, 0, 5, 23, 40),
      eventsPerSecond: 10,
      duplicateRate: 0.05,
      outOfOrderRate: 0.1,
      outOfOrderMs: 4000,
      lateRate: 0.02,
      lateMinMs: 60_000,
      lateMaxMs: 40 * 60_000,
      campaigns: 8,
      adsPerCampaign: 3,
      users: 500,
    }),
  ];
  const events: Event[] = [];
  const seenIds = new Set<string>();
  for (const line of lines) {
    const raw = JSON.parse(line) as Record<string, unknown>;
    if (seenIds.has(String(raw.id))) continue;
    seenIds.add(String(raw.id));
    events.push({ id: String(raw.id), type: String(raw.type), ts: Date.parse(String(raw.ts)), fields: raw });
  }
  const minTs = Math.min(...events.map((e) => e.ts));
  const from = new Date(Math.floor(minTs / 86_400_000) * 86_400_000).toISOString();
  const to = new Date(Math.floor(minTs / 86_400_000) * 86_400_000 + 3 * 86_400_000).toISOString();
  const speedArgs = ['--checkpoint-interval', '300ms', '--out-of-orderness', '2s'];
  let v1File: string;
  let v3File: string;
  let p1: Pipeline;
  let serving: Serving;
  const jobs: LkProcess[] = [];

  const pipeline = (version: string, file = v1File) => new Pipeline(dir.path, file, topic, version);
  const common = (file?: string) => ['--data-dir', dir.path, ...(file ? ['--metrics', file] : [])];

  function replay(version: string, file: string, extra: string[] = []): LkProcess {
    const proc = p1.spawn([
      'replay',
      '--topic',
      topic,
      '--version',
      version,
      '--instance-id',
      `r-${version}`,
      ...speedArgs,
      ...extra,
      ...common(file),
    ]);
    jobs.push(proc);
    return proc;
  }

  async function caughtUp(version: string, proc: LkProcess): Promise<void> {
    const p = pipeline(version);
    try {
      await p.speedCaughtUp(`${version} caught up (${proc.output().slice(-800)})`);
    } finally {
      await p.close();
    }
  }

  const lk = (args: string[], env: Record<string, string> = {}) => p1.spawn(args, env);
  async function lkResult(args: string[]): Promise<{ code: number | null; out: string }> {
    const proc = lk(args);
    const { code } = await proc.exited;
    return { code, out: proc.output() };
  }

  /** Totals a plain count of the deduplicated events gives for a metric (every event is inside [from, to)). */
  function expectedTotal(m: OracleMetric) {
    const matching = events.filter((e) => m.types.includes(e.type) && e.fields[m.key] !== undefined);
    const values = m.value ? matching.map((e) => e.fields[m.value!]).filter((v): v is number => typeof v === 'number') : [];
    let distinct: number | null = null;
    if (m.distinct) {
      const h = new HyperLogLog();
      for (const e of matching) if (e.fields[m.distinct] !== undefined) h.add(String(e.fields[m.distinct]));
      distinct = h.estimate();
    }
    return { count: matching.length, sum: values.length ? values.reduce((a, b) => a + b, 0) : null, distinct };
  }

  async function expectBatchTotals(version: string, metrics: OracleMetric[]): Promise<void> {
    for (const m of metrics) {
      const want = expectedTotal(m);
      for (const g of m.granularities) {
        const d = await gqlData<any>(
          serving.url,
          `{ total(version: "${version}", metric: "${m.name}", granularity: ${g.name.toUpperCase()}, from: "${from}", to: "${to}") { version count sum distinct } }`,
        );
        const where = `${version} ${m.name}/${g.name} (${rerun})`;
        expect(d.total.version, where).toBe(version);
        expect(d.total.count, where).toBe(want.count);
        if (want.sum === null) expect(d.total.sum, where).toBeNull();
        else expect(d.total.sum, where).toBeCloseTo(want.sum, 6);
        if (m.distinct) expect(d.total.distinct, where).toBe(want.distinct);
      }
    }
  }

  async function batchRun(version: string, file?: string): Promise<string> {
    const out = await p1.run(['batch', 'run', '--topic', topic, '--version', version, ...common(file)]);
    const runId = /batch run (\S+) \(\w+\):/.exec(out)?.[1];
    expect(runId, out).toBeDefined();
    await eventually(async () => {
      const d = await gqlData<any>(serving.url, `{ pipeline(version: "${version}") { serving { batchView { runId } } } }`);
      return d.pipeline.serving.batchView?.runId === runId ? true : undefined;
    }, `${version}'s batch run installed`);
    return runId!;
  }

  const defaultVersion = async () => (await gqlData<any>(serving.url, '{ versions { default promotion } }')).versions;

  beforeAll(async () => {
    v1File = join(dir.path, 'metrics.yaml');
    writeFileSync(v1File, TEST_METRICS_YAML);
    v3File = join(dir.path, 'metrics-v3.yaml');
    writeFileSync(v3File, CHANGED_METRICS_YAML);
    p1 = pipeline(V1);
    await createEventsTopic(p1.log, topic, PARTITIONS);
    await produceLines(p1.log, topic, lines);
    jobs.push(p1.startSpeed('live', speedArgs));
    await p1.speedCaughtUp('v1 caught up');
    serving = await startServing(p1, { promoteMaxLag: 0 });
  });

  afterAll(async () => {
    killAll();
    await serving?.close();
    await p1?.close();
    dir.remove();
  });

  it("replaying v1's own metric file from the start into v2 gives exactly v1's answers", async () => {
    const dry = await lkResult(['replay', '--topic', topic, '--version', V2, '--from', 'earliest', '--dry-run', ...common(v1File)]);
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toMatch(/partition 0: start offset 0 /);
    expect(existsSync(join(dir.path, 'versions', V2))).toBe(false); // a dry run creates nothing

    await caughtUp(V2, replay(V2, v1File, ['--from', 'earliest']));
    const oracle = computeOracle(lines, PARTITIONS, 2000);
    const [view1, view2] = [await readView(p1.log, speedViewTopic(V1)), await readView(p1.log, speedViewTopic(V2))];
    expect(compareWithOracle(view1, oracle).slice(0, 10), rerun).toEqual([]);
    expect(compareWithOracle(view2, oracle).slice(0, 10), rerun).toEqual([]);
    const values = (v: Map<string, ViewRow>) =>
      [...v.values()].map((r) => `${rowId(r)} ${r.count} ${r.sum} ${r.min} ${r.max} ${r.distinctSketch}`).sort();
    expect(values(view2)).toEqual(values(view1));

    // Both with their batch views, from the one lake: serving finds no window that differs.
    await batchRun(V1);
    await batchRun(V2);
    for (const m of ORACLE_METRICS)
      for (const g of m.granularities) {
        const d = await gqlData<any>(
          serving.url,
          `{ versionDiff(a: "${V1}", b: "${V2}", metric: "${m.name}", granularity: ${g.name.toUpperCase()}, from: "${from}", to: "${to}") { windowsCompared windowsEqual windowsDiffering onlyInA onlyInB } }`,
        );
        expect(d.versionDiff.windowsCompared, `${m.name}/${g.name}`).toBeGreaterThan(0);
        expect(d.versionDiff, `${m.name}/${g.name} ${rerun}`).toMatchObject({ windowsDiffering: 0, onlyInA: 0, onlyInB: 0 });
      }
    await expectBatchTotals(V1, ORACLE_METRICS);
    await expectBatchTotals(V2, ORACLE_METRICS);
    const cli = await lkResult(['versions', 'diff', V1, V2, ...common()]);
    expect(cli.code, cli.out).toBe(0);
    expect(cli.out).toMatch(new RegExp(`${V1} and ${V2} agree on every window compared`));
    expect(cli.out).toMatch(/impressions_by_campaign minute: [\d,]+ windows, [\d,]+ equal, 0 differ, 0 only in/);
  });

  it("a changed metric file replayed into v3 gives exactly the oracle's answers for it; v1's are unchanged", async () => {
    await caughtUp(V3, replay(V3, v3File, ['--from', 'earliest']));
    const view3 = await readView(p1.log, speedViewTopic(V3));
    expect(compareWithOracle(view3, computeOracle(lines, PARTITIONS, 2000, CHANGED_ORACLE_METRICS)).slice(0, 10), rerun).toEqual([]);
    expect(compareWithOracle(await readView(p1.log, speedViewTopic(V1)), computeOracle(lines, PARTITIONS, 2000)).slice(0, 10)).toEqual([]);

    // The version keeps its own copy of its file: the batch layer uses it without --metrics, and refuses another.
    expect((await readVersionDefinitions(localState(dir.path), V3))!.text).toBe(CHANGED_METRICS_YAML);
    const refused = await lkResult(['batch', 'run', '--topic', topic, '--version', V3, ...common(v1File)]);
    expect(refused.code).toBe(2);
    expect(refused.out).toMatch(
      new RegExp(
        `is not the metric file of version "${V3}".*metric "spend_by_campaign": filter is .* in the file, .* in the version.*metric "users_by_ad" is in the version, not in the file`,
      ),
    );
    await batchRun(V3);
    await expectBatchTotals(V3, CHANGED_ORACLE_METRICS);
    await expectBatchTotals(V1, ORACLE_METRICS);
    const metrics3 = await gqlData<any>(serving.url, `{ metrics(version: "${V3}") { name granularities } }`);
    expect(metrics3.metrics.map((m: any) => m.name)).toEqual([
      'impressions_by_campaign',
      'clicks_by_ad',
      'spend_by_campaign',
      'users_by_ad',
    ]);
  });

  it('promotion is refused with the reasons until a version has caught up and has its batch view; retiring deletes a version', async () => {
    // v4 replays slowly: not caught up, and no batch view yet.
    const slow = replay(V4, v1File, ['--from', 'earliest', '--max-rate', '300']);
    await eventually(
      async () => {
        const d = await gqlData<any>(serving.url, '{ versions { versions { name state percentDone etaSeconds runningInstances } } }');
        const v = d.versions.versions.find((x: any) => x.name === V4);
        return v?.state === 'REPLAYING' && v.percentDone !== null && v.percentDone < 100 && v.etaSeconds !== null ? v : undefined;
      },
      `${V4} reported as replaying with its progress (${slow.output().slice(-500)})`,
    );
    const refused = await lkResult(['promote', V4, '--default-version', V1, '--promote-max-lag', '0', ...common()]);
    expect(refused.code, refused.out).toBe(2);
    expect(refused.out).toMatch(new RegExp(`cannot promote "${V4}": "${V4}" is not caught up: partition \\d+ lags \\d+`));
    expect(refused.out).toMatch(new RegExp(`"${V4}" has no batch view yet \\(lk batch run --version ${V4}\\)`));
    const viaGraphql = await gql(serving.url, `mutation { promote(version: "${V4}") { version } }`);
    expect(viaGraphql.errors?.[0]?.extensions?.code).toBe('PROMOTION_REFUSED');
    expect((await defaultVersion()).default).toBe(V1);

    // A running version cannot be retired; stopped, it can, and everything of it is gone.
    const busy = await lkResult(['versions', 'retire', V4, '--default-version', V1, ...common()]);
    expect(busy.code).toBe(2);
    expect(busy.out).toMatch(/are still running: r-.* stop them first/);
    await p1.stop(slow);
    const retired = await lkResult(['versions', 'retire', V4, '--default-version', V1, ...common()]);
    expect(retired.code, retired.out).toBe(0);
    expect(await p1.log.listTopics()).not.toContain(speedViewTopic(V4));
    expect(await listAll(localState(dir.path), `speed/checkpoints/${V4}/`)).toEqual([]);
    expect((await p1.log.committedOffsets(`lk-speed-${V4}`, topic)).every((o) => o === null)).toBe(true);
    const listed = await lkResult(['versions', '--json', '--default-version', V1, ...common()]);
    expect(JSON.parse(listed.out).versions.find((v: any) => v.version === V4).state).toBe('RETIRED');
    const again = await lkResult(['replay', '--topic', topic, '--version', V4, ...common(v1File)]);
    expect(again.code).toBe(2);
    expect(again.out).toMatch(new RegExp(`job version "${V4}" was retired`));
    const retireDefault = await lkResult(['versions', 'retire', V1, '--default-version', V1, ...common()]);
    expect(retireDefault.out).toMatch(new RegExp(`"${V1}" is the default version: promote another version first`));
  });

  it('promote switches the default answers; promoting back restores them', async () => {
    const question = `{ metrics { name } total(metric: "spend_by_campaign", granularity: DAY, from: "${from}", to: "${to}") { version count } }`;
    const before = await gqlData<any>(serving.url, question);
    expect(before.total.version).toBe(V1);
    expect(before.metrics.map((m: any) => m.name)).not.toContain('users_by_ad');

    const promoted = await lkResult(['promote', V3, '--default-version', V1, ...common()]);
    expect(promoted.code, promoted.out).toBe(0);
    expect(promoted.out).toMatch(new RegExp(`${V3} is the default version now \\(promotion 1; previous ${V1}\\)`));
    await eventually(async () => ((await defaultVersion()).default === V3 ? true : undefined), 'serving adopts the promotion');
    const after = await gqlData<any>(serving.url, question);
    const explicit3 = await gqlData<any>(serving.url, question.replace('total(', `total(version: "${V3}", `));
    expect(after.total).toEqual(explicit3.total);
    expect(after.total.version).toBe(V3);
    expect(after.total.count).toBe(expectedTotal(CHANGED_ORACLE_METRICS[2]!).count);
    expect(after.metrics.map((m: any) => m.name)).toContain('users_by_ad');
    const newMetric = await gqlData<any>(serving.url, `{ total(metric: "users_by_ad", from: "${from}", to: "${to}") { version count } }`);
    expect(newMetric.total).toEqual({ version: V3, count: expectedTotal(CHANGED_ORACLE_METRICS[3]!).count });

    const back = await lkResult(['promote', V1, '--default-version', V1, ...common()]);
    expect(back.code, back.out).toBe(0);
    await eventually(async () => ((await defaultVersion()).default === V1 ? true : undefined), 'serving adopts the rollback');
    expect(await gqlData<any>(serving.url, question)).toEqual(before);
    const gone = await gql(serving.url, `{ total(metric: "users_by_ad", from: "${from}", to: "${to}") { count } }`);
    expect(gone.errors?.[0]?.extensions?.code).toBe('UNKNOWN_METRIC');
  });

  it(`${FLIPS} promote/rollback flips under concurrent readers: no reader ever sees a mixed answer`, { timeout: 300_000 }, async () => {
    const question = (version?: string) => {
      const v = version ? `version: "${version}", ` : '';
      return `{ a: total(${v}metric: "spend_by_campaign", granularity: HOUR, from: "${from}", to: "${to}") { version count sum }
        b: topKeys(${v}metric: "spend_by_campaign", granularity: DAY, from: "${from}", to: "${to}", limit: 5) { version key count }
        c: series(${v}metric: "spend_by_campaign", key: "c0", granularity: HOUR, from: "${from}", to: "${to}") { version windowStart count } }`;
    };
    const expected = new Map<string, string>();
    for (const v of [V1, V3]) expected.set(v, JSON.stringify(await gqlData<any>(serving.url, question(v))));
    expect(expected.get(V1)).not.toEqual(expected.get(V3)!.replaceAll(V3, V1)); // the two versions answer differently
    let flipping = true;
    const seen = { [V1]: 0, [V3]: 0 } as Record<string, number>;
    const readers = Array.from({ length: 4 }, async (_, r) => {
      while (flipping) {
        const res = await gql<any>(serving.url, question());
        expect(res.errors, `reader ${r}`).toBeUndefined();
        const versions = new Set([res.data.a.version, ...res.data.b.map((x: any) => x.version), ...res.data.c.map((x: any) => x.version)]);
        expect([...versions], `reader ${r}: one answer, one version`).toHaveLength(1);
        const version = res.data.a.version as string;
        expect(JSON.stringify(res.data), `reader ${r}: the whole answer is ${version}'s`).toBe(expected.get(version));
        seen[version]!++;
      }
    });
    try {
      for (let i = 0; i < FLIPS; i++) {
        const target = i % 2 === 0 ? V3 : V1;
        const d = await gqlData<any>(serving.url, `mutation { promote(version: "${target}") { version changed } }`);
        expect(d.promote).toEqual({ version: target, changed: true });
        // The mutation returns once this server answers with the new default.
        expect((await defaultVersion()).default).toBe(target);
      }
    } finally {
      flipping = false;
      await Promise.all(readers);
    }
    expect(seen[V1]).toBeGreaterThan(0);
    expect(seen[V3]).toBeGreaterThan(0);
    expect((await defaultVersion()).default).toBe(V1);
  });

  it("the batch service recomputes every version's views from the one lake, each with its own metric file", async () => {
    const before = new Map(
      await Promise.all([V1, V2, V3].map(async (v) => [v, (await currentBatchRun(dir.path, v))!.manifest.runId] as const)),
    );
    const service = lk(['batch', '--topic', topic, '--version', V1, '--interval', '1s', '--status-port', '0', ...common(v1File)]);
    try {
      await eventually(
        async () =>
          (await Promise.all([V1, V2, V3].map(async (v) => (await currentBatchRun(dir.path, v))?.manifest.runId !== before.get(v)))).every(
            Boolean,
          )
            ? true
            : undefined,
        `a new batch run of every version (${service.output().slice(-800)})`,
        90_000,
      );
    } finally {
      await p1.stop(service);
    }
    for (const v of [V1, V2, V3]) {
      const run = (await currentBatchRun(dir.path, v))!.manifest;
      expect(run.metricsSha256, v).toBe((await readVersionRecord(localState(dir.path), v))!.metricsSha256);
    }
    expect(await listAll(localState(dir.path), `views/${V4}/`)).toEqual([]); // retired: not recomputed
    await eventually(async () => {
      const d = await gqlData<any>(serving.url, `{ pipeline(version: "${V3}") { serving { batchView { runId } } } }`);
      return d.pipeline.serving.batchView?.runId === (await currentBatchRun(dir.path, V3))!.manifest.runId ? true : undefined;
    }, 'the new run of v3 installed');
    await expectBatchTotals(V3, CHANGED_ORACLE_METRICS);
    await expectBatchTotals(V1, ORACLE_METRICS);
  });

  it('lk promote killed at each step: serving answers all-old or all-new, and agrees with lk versions after a restart', async () => {
    for (const point of PROMOTION_POINTS) {
      const before = (await defaultVersion()).default as string;
      const target = before === V1 ? V3 : V1;
      const proc = lk(['promote', target, '--default-version', V1, ...common()], { LK_CRASH_AT: point });
      const exit = await proc.exited;
      expect(exit.signal, `${point}: ${proc.output()}`).toBe('SIGKILL');
      expect(proc.output()).toContain(`crash point ${point} reached`);
      const expectNow = point === 'versions.promote.before-swap' ? before : target;
      // The pointer is whole (never torn): the old one before the rename, the new one after it.
      const pointer = JSON.parse(readFileSync(join(dir.path, 'versions', 'DEFAULT'), 'utf8'));
      expect(pointer.version, point).toBe(expectNow);
      await eventually(
        async () => ((await defaultVersion()).default === expectNow ? true : undefined),
        `${point}: serving follows the pointer`,
      );
      const answer = await gqlData<any>(
        serving.url,
        `{ total(metric: "spend_by_campaign", granularity: DAY, from: "${from}", to: "${to}") { version } }`,
      );
      expect(answer.total.version, point).toBe(expectNow);
      // A restarted serving agrees with lk versions.
      await serving.close();
      serving = await startServing(p1, { promoteMaxLag: 0 });
      const listed = JSON.parse((await lkResult(['versions', '--json', '--default-version', V1, ...common()])).out);
      expect((await defaultVersion()).default, point).toBe(listed.defaultVersion);
      expect(listed.defaultVersion, point).toBe(expectNow);
    }
  });
});
