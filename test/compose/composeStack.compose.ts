/**
 * The docker-compose stack, for real: docker-compose.yml with the CI override
 * (infra/docker/compose.ci.yml: host networking, a seeded finite generator), on images built on
 * this machine (infra/docker/build-images.sh). Run it with `npm run test:compose`
 * (scripts/compose-ci.sh: dockerd, the images, then this file); it is not part of `npm test`.
 *
 * What it proves, against an oracle computed in this process from the same generated events:
 *  1. the stack comes up healthy in dependency order (kafka -> topics -> generator -> batch);
 *  2. GraphQL serves exact totals, top keys, distinct counts and windows once the batch run and
 *     both speed replicas have covered the generator's events;
 *  3. killed with SIGKILL, one speed replica's partitions move to the other (with their
 *     checkpointed state): events produced after the kill are counted exactly, and windows mixing
 *     both phases come from the speed view while older ones come from the batch view (merged);
 *  4. the next batch run covers everything and agrees; the killed replica, started again, takes
 *     partitions back and the answers do not change;
 *  5. the lake is a Delta table on the stack's S3 server, its positions the batch run's cut.
 * `docker-compose down -v` runs whatever happens. Timings are printed at the end.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeAnswers, readEvents, readMetricDefs, type Aggregate, type Granularity, type MetricAnswer } from './oracle.ts';
import { REPO_ROOT, Stack, batchRunsOfWorkers, ciEnvironment, getJson, graphql, portInUse, run, until, type CiSettings } from './stack.ts';

const env = process.env;
const settings: CiSettings = {
  kafkaPort: Number(env.LK_CI_KAFKA_PORT ?? 29092),
  kafkaControllerPort: Number(env.LK_CI_KAFKA_CONTROLLER_PORT ?? 29093),
  speed1Port: Number(env.LK_CI_SPEED1_PORT ?? 29101),
  speed2Port: Number(env.LK_CI_SPEED2_PORT ?? 29102),
  batchPort: Number(env.LK_CI_BATCH_PORT ?? 29103),
  servePort: Number(env.LK_CI_SERVE_PORT ?? 24000),
  s3Port: Number(env.LK_CI_S3_PORT ?? 29070),
  genCount: Number(env.LK_CI_GEN_COUNT ?? 20_000),
  genSeed: 4242,
  genStart: '2026-03-01T10:00:00Z',
};
/** Produced after a speed replica is killed: later event times, no late events (none dropped by speed). */
const PHASE2 = { count: Math.round(settings.genCount / 4), seed: 4343 };
/** Every event of both phases (late ones are 2-6 h before the start) falls on this day. */
const FROM = '2026-03-01T00:00:00Z';
const TO = '2026-03-02T00:00:00Z';
const LK_SERVICES = ['speed-1', 'speed-2', 'batch', 'serve'];

const project = `lkci${Date.now().toString(36)}`;
const timings: [string, number][] = [];
const started = Date.now();
const log = (msg: string) => console.log(`[compose ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`);
let stack: Stack | undefined;
let failed = false;

async function step<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const t0 = Date.now();
  log(`${name} ...`);
  try {
    const value = await fn();
    timings.push([name, Date.now() - t0]);
    log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return value;
  } catch (err) {
    failed = true;
    throw new Error(`step "${name}" failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

// ------------------------------------------------------------------------------ speed status

interface SpeedStatus {
  instanceId: string;
  ready: boolean;
  partitions: { partition: number; committedOffset: number | null; endOffset: number; lag: number }[];
}

async function speedStatus(port: number): Promise<SpeedStatus | undefined> {
  const r = await getJson<SpeedStatus>(port, '/status');
  return r?.status === 200 ? r.body : undefined;
}

function describeSpeed(statuses: (SpeedStatus | undefined)[]): string {
  return statuses
    .map((s) =>
      s
        ? `${s.instanceId} ready=${s.ready} ${s.partitions.map((p) => `p${p.partition}:${p.committedOffset ?? '-'}/${p.endOffset}`).join(' ')}`
        : 'no answer',
    )
    .join('; ');
}

/** Every partition owned by a ready replica and committed up to `records` in total. */
function speedCaughtUp(statuses: (SpeedStatus | undefined)[], records: number): boolean {
  const owned = statuses.flatMap((s) => (s?.ready ? s.partitions : []));
  const partitions = new Set(owned.map((p) => p.partition));
  const committed = owned.reduce((n, p) => n + (p.committedOffset ?? 0), 0);
  return partitions.size === 6 && owned.length === 6 && owned.every((p) => p.committedOffset === p.endOffset) && committed === records;
}

// ------------------------------------------------------------------------------ GraphQL vs oracle

interface BatchRun {
  runId: string;
  cut: number[];
}

async function lastBatchRun(): Promise<BatchRun | undefined> {
  const data = await graphql<{ pipeline: { batch: { lastRun: BatchRun | null } } }>(
    settings.servePort,
    '{ pipeline { batch { lastRun { runId cut } } } }',
  ).catch(() => undefined);
  return data?.pipeline.batch.lastRun ?? undefined;
}

/**
 * Waits until every `lk serve` worker answers from the batch run `runId`. The batch status
 * (pipeline { batch { lastRun } }) says a run exists as soon as it is committed; each worker then
 * loads it on its own, a fraction of a second apart, and until it has, that worker still answers
 * the newer windows from the speed view (exactly, but not from batch, which the checks of the
 * sources below are about).
 */
async function everyWorkerServes(runId: string): Promise<void> {
  let seen: (string | null)[] = [];
  await until(
    `every serving worker to install batch run ${runId}`,
    async () => {
      seen = await batchRunsOfWorkers(settings.servePort, 8).catch(() => []);
      return seen.length > 0 && seen.every((r) => r === runId) ? true : undefined;
    },
    60_000,
    () => `batch runs answered by 8 new connections: ${JSON.stringify(seen)}`,
  );
}

interface Served {
  total: Aggregate & { windows: number; batchWindows: number; speedWindows: number; provisionalWindows: number; keys: number };
  top: { key: string; count: number; sum: number | null; provisionalWindows: number }[];
  series: {
    windowStart: string;
    count: number;
    sum: number | null;
    distinct: number | null;
    source: 'BATCH' | 'SPEED';
    provisional: boolean;
  }[];
}

const GRANULARITY_ORDER: Granularity[] = ['day', 'hour', 'minute'];
const coarsest = (a: MetricAnswer) => GRANULARITY_ORDER.find((g) => a.def.granularities.includes(g))!;
const seriesGranularity = (a: MetricAnswer): Granularity => (a.def.granularities.includes('hour') ? 'hour' : coarsest(a));
/** The key the series check looks at: the one with most events (ties by name). */
const topKey = (a: MetricAnswer) => [...a.keys].sort((x, y) => y[1].count - x[1].count || x[0].localeCompare(y[0]))[0]![0];

/** The root fields that ask for one metric's answers (aliases m<i>_...). */
function metricFields(a: MetricAnswer, i: number): string[] {
  const m = JSON.stringify(a.def.name);
  const range = `from: "${FROM}", to: "${TO}"`;
  const perKey = a.def.distinct
    ? [...a.keys.keys()].map((k, j) => `m${i}_k${j}: total(metric: ${m}, key: ${JSON.stringify(k)}, ${range}) { count distinct }`)
    : [];
  return [
    `m${i}_total: total(metric: ${m}, ${range}) { count sum distinct windows batchWindows speedWindows provisionalWindows keys }`,
    `m${i}_top: topKeys(metric: ${m}, granularity: ${coarsest(a).toUpperCase()}, ${range}, limit: 1000) { key count sum provisionalWindows }`,
    `m${i}_series: series(metric: ${m}, key: ${JSON.stringify(topKey(a))}, granularity: ${seriesGranularity(a).toUpperCase()}, ${range}) {
      windowStart count sum distinct source provisional }`,
    ...perKey,
  ];
}

/** Serving refuses operations with more than --max-root-fields (25 by default) root fields,
 * as it should for any client; the check asks in operations of at most 20 and merges them. */
async function askInChunks(fields: string[]): Promise<Record<string, unknown>> {
  const data: Record<string, unknown> = {};
  for (let i = 0; i < fields.length; i += 20) {
    Object.assign(data, await graphql<Record<string, unknown>>(settings.servePort, `{ ${fields.slice(i, i + 20).join('\n')} }`));
  }
  return data;
}

const close = (a: number | null, b: number | null) =>
  a === null || b === null ? a === b : Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));

interface Comparison {
  problems: string[];
  sources: { BATCH: number; SPEED: number };
  batchWindows: number;
  speedWindows: number;
}

/** Asks GraphQL for every metric and compares with the oracle; lists every difference. */
async function compare(answers: MetricAnswer[]): Promise<Comparison> {
  const data = await askInChunks(answers.flatMap(metricFields));
  const problems: string[] = [];
  const sources = { BATCH: 0, SPEED: 0 };
  let batchWindows = 0;
  let speedWindows = 0;
  answers.forEach((a, i) => {
    const name = a.def.name;
    const got = (field: string) => data[`m${i}_${field}`] as never;
    const served: Served = {
      total: got('total'),
      top: got('top'),
      series: got('series'),
    };
    const t = served.total;
    batchWindows += t.batchWindows;
    speedWindows += t.speedWindows;
    if (t.count !== a.total.count) problems.push(`${name}: total count ${t.count}, expected ${a.total.count}`);
    if (!close(t.sum, a.total.sum)) problems.push(`${name}: total sum ${t.sum}, expected ${a.total.sum}`);
    if (t.distinct !== a.total.distinct) problems.push(`${name}: total distinct ${t.distinct}, expected ${a.total.distinct}`);
    if (t.keys !== a.keys.size) problems.push(`${name}: ${t.keys} keys, expected ${a.keys.size}`);
    if (t.provisionalWindows !== 0)
      problems.push(`${name}: ${t.provisionalWindows} provisional windows, expected none (every event is at home)`);
    const top = new Map(served.top.map((k) => [k.key, k]));
    for (const [key, want] of a.keys) {
      const k = top.get(key);
      if (!k) problems.push(`${name}: key ${key} missing from topKeys (expected count ${want.count})`);
      else if (k.count !== want.count || !close(k.sum, want.sum)) {
        problems.push(`${name}: key ${key} count ${k.count} sum ${k.sum}, expected ${want.count} / ${want.sum}`);
      }
    }
    for (const key of top.keys()) if (!a.keys.has(key)) problems.push(`${name}: topKeys has key ${key}, which no event has`);
    if (a.def.distinct) {
      [...a.keys].forEach(([key, want], j) => {
        const k = data[`m${i}_k${j}`] as { count: number; distinct: number | null };
        if (k.count !== want.count || k.distinct !== want.distinct) {
          problems.push(`${name}: key ${key} total count ${k.count} distinct ${k.distinct}, expected ${want.count} / ${want.distinct}`);
        }
      });
    }
    const key = topKey(a);
    const g = seriesGranularity(a);
    const expected = a.windows.get(g)!.get(key)!;
    const seen = new Set<number>();
    for (const w of served.series) {
      const start = Date.parse(w.windowStart);
      seen.add(start);
      sources[w.source]++;
      const want = expected.get(start);
      if (!want) problems.push(`${name} ${key} ${g} ${w.windowStart}: served (count ${w.count}), expected no window`);
      else if (w.count !== want.count || !close(w.sum, want.sum) || w.distinct !== want.distinct) {
        problems.push(
          `${name} ${key} ${g} ${w.windowStart} (${w.source}): count ${w.count} sum ${w.sum} distinct ${w.distinct}, expected ${want.count} / ${want.sum} / ${want.distinct}`,
        );
      }
    }
    for (const [start, want] of expected) {
      if (!seen.has(start)) problems.push(`${name} ${key} ${g} ${new Date(start).toISOString()}: missing (expected count ${want.count})`);
    }
  });
  return { problems, sources, batchWindows, speedWindows };
}

/** Polls until GraphQL agrees with the oracle (serving loads new rows within about a second). */
async function exactAnswers(answers: MetricAnswer[], what: string): Promise<Comparison> {
  let last: Comparison | undefined;
  let lastError = '';
  return until(
    `exact answers ${what}`,
    async () => {
      try {
        last = await compare(answers);
        lastError = '';
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
        return undefined;
      }
      return last.problems.length === 0 ? last : undefined;
    },
    90_000,
    () =>
      lastError ||
      `${last?.problems.length} difference(s) from the oracle:\n  ${last?.problems.slice(0, 15).join('\n  ')}${(last?.problems.length ?? 0) > 15 ? '\n  ...' : ''}`,
  );
}

// ------------------------------------------------------------------------------ the test

describe('docker-compose stack (host networking, local images)', () => {
  const dir = join(REPO_ROOT, '.lk', 'compose', project);
  const phase1File = join(dir, 'events-phase1.jsonl');
  const phase2File = join(dir, 'events-phase2.jsonl');
  let phase2Start = '';

  beforeAll(async () => {
    const images = { LK_IMAGE: env.LK_IMAGE, KAFKA_IMAGE: env.KAFKA_IMAGE, LK_BASE_IMAGE: env.LK_BASE_IMAGE };
    const missing = Object.entries(images).filter(([, v]) => !v);
    if (missing.length > 0) {
      throw new Error(
        `${missing.map(([k]) => k).join(', ')} not set: run \`npm run test:compose\` (scripts/compose-ci.sh builds the images with infra/docker/build-images.sh and sets them)`,
      );
    }
    await step('check the ports are free', async () => {
      const ports = [
        settings.kafkaPort,
        settings.kafkaControllerPort,
        settings.speed1Port,
        settings.speed2Port,
        settings.batchPort,
        settings.servePort,
        settings.s3Port,
      ];
      const busy = [];
      for (const p of ports) if (await portInUse(p)) busy.push(p);
      if (busy.length > 0) {
        const docker = new Stack(project, {}).docker;
        const left = run(
          [docker, 'ps', '--filter', 'label=com.docker.compose.project', '--format', '{{.Label "com.docker.compose.project"}}'],
          {
            allowFailure: true,
          },
        )
          .stdout.split('\n')
          .filter((p) => p.startsWith('lkci'));
        throw new Error(
          `127.0.0.1 port(s) ${busy.join(', ')} already in use${
            left.length
              ? `; compose project(s) left by an earlier run: ${[...new Set(left)].join(', ')} (remove with: docker-compose -p <project> down -v)`
              : ''
          }; choose others with LK_CI_*_PORT`,
        );
      }
    });
    stack = new Stack(project, { ...ciEnvironment(settings), ...(images as Record<string, string>) });
    for (const image of Object.values(images)) {
      if (run([stack.docker, 'image', 'inspect', image!], { allowFailure: true }).status !== 0) {
        throw new Error(`image ${image} does not exist: build it with infra/docker/build-images.sh`);
      }
    }
    const { services } = stack.writeConfig();
    log(`project ${project}: ${services.join(', ')} (${stack.compose.join(' ')}, ${stack.file})`);

    await step('generate the expected events on the host', () => {
      const lk = (args: string[]) =>
        run([process.execPath, 'bin/lk.js', 'generate', ...args], { env: { LK_FROM_SOURCE: '1', LK_NO_PROGRESS: '1' } });
      lk(['--count', String(settings.genCount), '--seed', String(settings.genSeed), '--start', settings.genStart, '--output', phase1File]);
      const last = Math.max(...readEvents(phase1File).map((e) => e.ts));
      phase2Start = new Date(Math.ceil(last / 1000) * 1000 + 10_000).toISOString();
      lk(['--count', String(PHASE2.count), '--seed', String(PHASE2.seed), '--start', phase2Start, '--late', '0', '--output', phase2File]);
      expect(existsSync(phase2File)).toBe(true);
    });
  }, 300_000);

  afterAll(async () => {
    if (stack) {
      if (failed) console.log(stack.diagnostics());
      const t0 = Date.now();
      const r = stack.down();
      timings.push(['docker-compose down -v', Date.now() - t0]);
      if (r.status !== 0) console.log(`docker-compose down -v failed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
      // The merged configuration and the generated events stay for a look after a failure.
      if (!failed && r.status === 0) rmSync(stack.dir, { recursive: true, force: true });
      else console.log(`configuration and generated events kept in ${stack.dir}`);
    }
    const width = Math.max(...timings.map(([n]) => n.length));
    console.log(
      `\ncompose test timings (project ${project}):\n${timings.map(([n, ms]) => `  ${n.padEnd(width)}  ${(ms / 1000).toFixed(1).padStart(6)} s`).join('\n')}\n  ${'total'.padEnd(width)}  ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s`,
    );
  }, 300_000);

  it('serves exact merged answers, survives a killed speed replica and agrees with the next batch run', async ({ onTestFailed }) => {
    // Any failed expectation, inside a step or not: print the services' logs before `down`.
    onTestFailed(() => {
      failed = true;
    });
    const s = stack!;
    const defs = readMetricDefs(join(REPO_ROOT, 'metrics.yaml'));
    const phase1 = readEvents(phase1File);
    const phase2 = readEvents(phase2File);
    const [from, to] = [Date.parse(FROM), Date.parse(TO)];
    for (const e of [...phase1, ...phase2]) {
      if (e.ts < from || e.ts >= to)
        throw new Error(`generated event ${e.id} at ${new Date(e.ts).toISOString()} is outside ${FROM}..${TO}`);
    }
    const oracle1 = computeAnswers(phase1, defs, from, to);
    const oracle2 = computeAnswers([...phase1, ...phase2], defs, from, to);

    // 1. Up, in dependency order: `up -d` returns once kafka is healthy, topics and the generator
    //    have exited 0 (batch waits for the generator in CI) and every container is started.
    const upStarted = Date.now();
    await step('docker-compose up -d', () => s.composeRunAsync(['up', '-d', '--no-build'], { timeoutMs: 300_000 }));
    await step('every lk service healthy (/readyz)', async () => {
      const healthyAfter = new Map<string, number>();
      await until(
        'kafka, speed-1, speed-2, batch and serve to be healthy',
        async () => {
          for (const svc of ['kafka', ...LK_SERVICES]) {
            if (healthyAfter.has(svc)) continue;
            const st = s.state(svc);
            if (st?.status !== 'running') throw new Error(`${svc} is ${st?.status ?? 'not created'} (exit code ${st?.exitCode})`);
            if (st.health === 'healthy') healthyAfter.set(svc, Date.now() - upStarted);
            if (st.health === 'unhealthy') throw new Error(`${svc} is unhealthy`);
          }
          return healthyAfter.size === LK_SERVICES.length + 1 ? true : undefined;
        },
        180_000,
        () => LK_SERVICES.map((svc) => `${svc}: ${s.state(svc)?.health ?? '?'}`).join(', '),
      );
      // The services share nothing but Kafka and the S3 server (issue 19): no writable mount is
      // in two of them, so a takeover below goes through the state bucket alone.
      const owners = new Map<string, string>();
      for (const svc of LK_SERVICES) {
        for (const mount of s.writableMounts(svc)) {
          expect(owners.get(mount), `${mount} is mounted in ${owners.get(mount)} and ${svc}`).toBeUndefined();
          owners.set(mount, svc);
        }
      }
      for (const svc of ['topics', 'generator']) {
        const st = s.state(svc);
        expect(st?.status, `${svc} should have finished`).toBe('exited');
        expect(st?.exitCode, `${svc} should have exited 0`).toBe(0);
      }
      for (const [svc, ms] of healthyAfter) {
        const fromStart = s.healthyAfterStart(svc);
        timings.push([
          `  ${svc}: healthy ${fromStart === undefined ? '(seen) after up started' : 'after its container started'}`,
          fromStart ?? ms,
        ]);
      }
    });

    // 2. Phase 1: the batch run that started after the generator covers all its events; both
    //    replicas share the partitions and have committed everything.
    const run1 = await step('phase 1: batch run covers the generator, speed replicas caught up', async () => {
      const run = await until(
        `a batch run covering the ${phase1.length} records`,
        async () => {
          const r = await lastBatchRun();
          return r && r.cut.reduce((a, b) => a + b, 0) === phase1.length ? r : undefined;
        },
        120_000,
        () => 'no such run in pipeline { batch { lastRun } }',
      );
      let statuses: (SpeedStatus | undefined)[] = [];
      await until(
        'both speed replicas to own partitions and commit every record',
        async () => {
          statuses = await Promise.all([speedStatus(settings.speed1Port), speedStatus(settings.speed2Port)]);
          return speedCaughtUp(statuses, phase1.length) && statuses.every((st) => (st?.partitions.length ?? 0) > 0) ? true : undefined;
        },
        120_000,
        () => describeSpeed(statuses),
      );
      log(`batch run ${run.runId}, cut ${run.cut.join(',')}; ${describeSpeed(statuses)}`);
      await everyWorkerServes(run.runId);
      return run;
    });
    const c1 = await step('phase 1: GraphQL answers = oracle', () => exactAnswers(oracle1, 'after phase 1'));
    log(`phase 1: windows from batch ${c1.batchWindows}, from speed ${c1.speedWindows}; series sources ${JSON.stringify(c1.sources)}`);
    expect(c1.batchWindows, 'the batch run should answer the windows it covers').toBeGreaterThan(0);

    // 3. Kill one replica; produce more events right away; the other replica takes over.
    const killedAt = Date.now();
    const killed = await step('docker kill speed-1', () => s.kill('speed-1'));
    await step('phase 2: produce more events (docker-compose run generator)', () =>
      s.composeRun(
        [
          'run',
          '--rm',
          '--no-deps',
          '-T',
          'generator',
          'generate',
          '--count',
          String(PHASE2.count),
          '--seed',
          String(PHASE2.seed),
          '--start',
          phase2Start,
          '--late',
          '0',
          '--to-log',
        ],
        { timeoutMs: 180_000 },
      ),
    );
    await step('speed-2 owns all 6 partitions', async () => {
      let st: SpeedStatus | undefined;
      await until(
        'speed-2 to be ready with all 6 partitions',
        async () => {
          st = await speedStatus(settings.speed2Port);
          return st?.ready && st.partitions.length === 6 ? true : undefined;
        },
        120_000,
        () => describeSpeed([st]),
      );
      timings.push(['  takeover: kill -> speed-2 owns every partition', Date.now() - killedAt]);
      const dead = s.state('speed-1');
      expect(dead?.status, 'a killed replica stays down (restart policies do not restart a killed container)').toBe('exited');
      expect(dead?.id).toBe(killed);
    });
    await step('phase 2: speed-2 commits every record', async () => {
      let st: SpeedStatus | undefined;
      await until(
        `speed-2 to commit all ${phase1.length + phase2.length} records`,
        async () => {
          st = await speedStatus(settings.speed2Port);
          return speedCaughtUp([st], phase1.length + phase2.length) ? true : undefined;
        },
        120_000,
        () => describeSpeed([st]),
      );
    });
    const c2 = await step('phase 2: GraphQL answers = oracle (batch + speed merged)', () => exactAnswers(oracle2, 'after the kill'));
    log(`phase 2: windows from batch ${c2.batchWindows}, from speed ${c2.speedWindows}; series sources ${JSON.stringify(c2.sources)}`);
    expect((await lastBatchRun())?.runId, 'no batch run should have happened since phase 1 (the phase-2 answers came from speed)').toBe(
      run1.runId,
    );
    expect(c2.speedWindows, 'windows with phase-2 events come from the speed view').toBeGreaterThan(0);
    expect(c2.sources.SPEED, 'the series of the top keys should include speed windows').toBeGreaterThan(0);
    expect(c2.sources.BATCH, 'the series of the top keys should include batch windows (late events only batch counts)').toBeGreaterThan(0);

    // 4. The next batch run (the batch service recomputes when it starts) covers both phases.
    await step('restart batch: its next run covers both phases', async () => {
      s.composeRun(['restart', 'batch'], { timeoutMs: 120_000 });
      const run2 = await until(
        `a batch run covering all ${phase1.length + phase2.length} records`,
        async () => {
          const r = await lastBatchRun();
          return r && r.runId !== run1.runId && r.cut.reduce((a, b) => a + b, 0) === phase1.length + phase2.length ? r : undefined;
        },
        180_000,
        () => `last run ${JSON.stringify(s.state('batch'))}`,
      );
      await everyWorkerServes(run2.runId);
    });
    const c3 = await step('after the second batch run: GraphQL answers = oracle', () =>
      exactAnswers(oracle2, 'after the second batch run'),
    );
    await step("the lake is a Delta table on the stack's S3 server, at the batch run's cut", async () => {
      const { resolveLake } = await import('../../services/lake/lakeLocation.ts');
      const { lakePositions, openLakeForReading } = await import('../../services/lake/lakeTable.ts');
      const { dataDirLayout } = await import('../../services/config/dataDir.ts');
      Object.assign(process.env, {
        AWS_ENDPOINT_URL: `http://127.0.0.1:${settings.s3Port}`,
        AWS_ACCESS_KEY_ID: 'lk-access-key',
        AWS_SECRET_ACCESS_KEY: 'lk-secret-key-for-local-tests',
        AWS_REGION: 'us-east-1',
      });
      const lake = await resolveLake('s3://lake/lakes', dataDirLayout(join(REPO_ROOT, '.lk', 'compose', 'host')), 'events');
      const snapshot = (await openLakeForReading(lake))!.current!;
      const committed = [...lakePositions(snapshot, 'events').values()].reduce((n, p) => n + p.nextOffset, 0);
      expect(committed, 'the lake holds both phases').toBe(phase1.length + phase2.length);
      log(`lake s3://lake/lakes/events: Delta version ${snapshot.version}, ${snapshot.files.size} files`);
    });
    log(`second batch run: windows from batch ${c3.batchWindows}, from speed ${c3.speedWindows}`);
    expect(c3.speedWindows, 'a batch run that covers everything answers every window').toBe(0);

    // 5. The killed replica comes back and takes partitions back from the shared checkpoints.
    await step('start speed-1 again: partitions are shared again', async () => {
      run([s.docker, 'start', killed]);
      let statuses: (SpeedStatus | undefined)[] = [];
      await until(
        'both replicas to own partitions again',
        async () => {
          statuses = await Promise.all([speedStatus(settings.speed1Port), speedStatus(settings.speed2Port)]);
          return speedCaughtUp(statuses, phase1.length + phase2.length) && statuses.every((st) => (st?.partitions.length ?? 0) > 0)
            ? true
            : undefined;
        },
        120_000,
        () => describeSpeed(statuses),
      );
      log(describeSpeed(statuses));
    });
    await step('after the rebalance: GraphQL answers = oracle', () => exactAnswers(oracle2, 'after speed-1 rejoined'));
  });
});
