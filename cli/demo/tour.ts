/**
 * `npm run demo -- --tour`: reprocessing, narrated, on the running demo (docs/replay.md):
 *
 *   1. a changed metric file: a new filter value, a new granularity, a new metric;
 *   2. replay the whole history into a new version with it (the speed layer's own job, the
 *      same code `lk replay` runs), throttled, its progress shown until it has caught up;
 *   3. its batch view, from the one lake, with its own file;
 *   4. v1 and the new version side by side, window by window;
 *   5. promote it (serving switches atomically), ask GraphQL, roll back to v1, ask again.
 *
 * The new version keeps running beside v1 afterwards, as a promoted-then-rolled-back version
 * does in production; `lk versions` lists it, `lk versions retire` deletes it.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../services/errors.ts';
import { parseMetricDefinitions, type MetricDefinitions } from '../../services/metrics/definitions.ts';
import { logger } from '../../services/observability/logger.ts';
import { promoteVersion } from '../../services/versions/promotion.ts';
import { readVersionDefinitions, readVersionRecord } from '../../services/versions/versionRecord.ts';
import { readCurrentBatchRun } from '../../services/views/batchSnapshots.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { diffVersions } from '../../serving/versionDiff.ts';
import { SpeedJob } from '../../streaming/job/speedJob.ts';
import { defaultSpeedJobConfig } from '../../streaming/cli.ts';
import { LakeSource } from '../../streaming/replay/lakeSource.ts';
import { parseReplayFrom, resolveReplayStart } from '../../streaming/replay/replayStart.ts';
import { DEMO_VERSION, type DemoRuntime } from './demo.ts';
import type { StatusLine } from './statusLine.ts';

/** The replay's rate: fast enough to finish in seconds, slow enough to watch. */
const TOUR_REPLAY_RATE = 20_000;

/** The demo's metric file, changed: what a data engineer would change in a day's work. */
export function changedMetrics(current: MetricDefinitions): MetricDefinitions {
  const text = current.text
    .replace(/filter: \{ type: impression \}/, 'filter: { type: [impression, click] }')
    .replace(/(- name: clicks_by_ad[\s\S]*?granularities: )\[minute, hour\]/, '$1[minute, hour, day]').concat(`
  - name: users_by_ad
    description: Unique users reaching each ad (new in the tour's version).
    filter: { type: [impression, click] }
    key: ad_id
    distinct: user_id
    granularities: [hour]
    allowedLateness: 30m
`);
  return parseMetricDefinitions(text, 'metrics-tour.yaml');
}

async function freeVersion(state: ObjectStore): Promise<string> {
  for (let n = 2; ; n++) if (!(await readVersionRecord(state, `v${n}`))) return `v${n}`;
}

async function graphql(url: string, query: string): Promise<unknown> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query }),
  });
  return res.json();
}

async function until(rt: DemoRuntime, check: () => boolean | Promise<boolean>): Promise<boolean> {
  while (!rt.stopping()) {
    if (await check()) return true;
    await sleep(500);
  }
  return false;
}

/** Runs the tour; the parts it starts (the new version's job) are added to `parts` to be stopped with the demo. */
export async function runTour(rt: DemoRuntime, status: StatusLine, parts: { name: string; stop: () => Promise<unknown> }[]): Promise<void> {
  const say = (text: string) => status.print(`\n[tour] ${text}`);
  try {
    if (!(await until(rt, async () => (await readCurrentBatchRun(rt.state, DEMO_VERSION)) !== undefined && rt.serve.ready()))) return;
    const v1 = (await readVersionDefinitions(rt.state, DEMO_VERSION))!;
    const v2 = await freeVersion(rt.state);
    const changed = changedMetrics(v1);
    const file = join(rt.dataDir, 'demo', `metrics-${v2}.yaml`);
    writeFileSync(file, changed.text);
    say(
      `1/5 A changed metric file (${file}): impressions_by_campaign also counts clicks (a new filter value), clicks_by_ad gets day windows (a new granularity), users_by_ad is new (a new metric).`,
    );

    say(
      `2/5 Replaying the whole history into ${v2} with it: the speed layer's own code, at most ${TOUR_REPLAY_RATE.toLocaleString('en-US')} events/s (same as: lk replay --version ${v2} --metrics ${file} --from earliest --max-rate ${TOUR_REPLAY_RATE}).`,
    );
    const log = rt.openLog('lk-demo-replay');
    const start = await resolveReplayStart(log, rt.topic, parseReplayFrom('earliest', undefined, Date.now()), () =>
      LakeSource.open(rt.lake),
    );
    const job = new SpeedJob(
      log,
      defaultSpeedJobConfig({
        topic: rt.topic,
        version: v2,
        instanceId: 'demo-tour',
        dataDir: rt.dataDir,
        state: rt.state,
        definitions: changed,
        origin: start.origin,
        maxRate: TOUR_REPLAY_RATE,
      }),
    );
    await job.start();
    parts.push({ name: `replayed version ${v2}`, stop: () => job.stop() });
    let lastSaid = 0;
    const caughtUp = await until(rt, async () => {
      const st = job.snapshotStatus();
      const ends = await log.endOffsets(rt.topic);
      const done = st.partitions.reduce((n, p) => n + p.position, 0);
      const total = ends.reduce((n, e) => n + e, 0);
      const lag = ends.reduce((n, e, p) => n + Math.max(0, e - (st.partitions.find((x) => x.partition === p)?.position ?? 0)), 0);
      if (Date.now() - lastSaid > 2000) {
        lastSaid = Date.now();
        status.print(
          `[tour]     ${v2}: ${done.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} offsets (${((100 * done) / Math.max(1, total)).toFixed(0)}%), lag ${lag.toLocaleString('en-US')}`,
        );
      }
      return st.partitions.length === ends.length && lag < 500;
    });
    if (!caughtUp) return;
    say(`   ${v2} has caught up with the log; it keeps running as ${v2}'s live job.`);

    say(`3/5 ${v2}'s batch view: from the one lake, with ${v2}'s own metric file (lk batch run --version ${v2}).`);
    await rt.batch.recomputeNow();
    if (!(await until(rt, async () => (await readCurrentBatchRun(rt.state, v2)) !== undefined))) return;

    say(`4/5 ${DEMO_VERSION} and ${v2} side by side, window by window (lk versions diff ${DEMO_VERSION} ${v2}):`);
    const [ra, rb] = await Promise.all([rt.serve.registry.whenReady(DEMO_VERSION), rt.serve.registry.whenReady(v2)]);
    const [sa, sb] = [ra.view.snapshot(), rb.view.snapshot()];
    for (const def of changed.metrics) {
      const old = v1.metrics.find((m) => m.name === def.name);
      if (!old) {
        status.print(`[tour]     ${def.name}: new in ${v2} (${sb.keys(def.name, def.granularities[0]!).length} keys)`);
        continue;
      }
      for (const g of def.granularities.filter((x) => old.granularities.includes(x))) {
        const d = diffVersions(sa, sb, { metric: def.name, granularity: g, from: 0, to: 8.64e15, limit: 1 });
        const top = d.topKeys[0];
        status.print(
          `[tour]     ${def.name} ${g}: ${d.windowsEqual.toLocaleString('en-US')} windows equal, ${(d.windowsDiffering + d.onlyInA + d.onlyInB).toLocaleString('en-US')} differ` +
            (top ? ` (most: ${top.key}, count ${top.countA} -> ${top.countB})` : ''),
        );
      }
    }

    say(`5/5 Promote ${v2} (lk promote ${v2}): serving switches atomically once ${v2}'s views are open.`);
    await promoteVersion({ state: rt.state, fallbackDefault: DEMO_VERSION, version: v2 });
    await rt.serve.defaults.poll();
    const question = `{ metrics { name } total(metric: "impressions_by_campaign", from: "${new Date(Date.now() - 86_400_000).toISOString()}", to: "${new Date(Date.now() + 3_600_000).toISOString()}") { version count } }`;
    status.print(`[tour]     GraphQL now: ${JSON.stringify(await graphql(rt.serve.url, question))}`);
    say(`   Roll back (lk promote ${DEMO_VERSION}):`);
    await promoteVersion({ state: rt.state, fallbackDefault: DEMO_VERSION, version: DEMO_VERSION });
    await rt.serve.defaults.poll();
    status.print(`[tour]     GraphQL now: ${JSON.stringify(await graphql(rt.serve.url, question))}`);
    say(
      `Tour done. ${v2} keeps running beside ${DEMO_VERSION} (warm, for the next promotion); the dashboard's versions panel shows both. After the demo: lk versions, lk versions retire ${v2}.`,
    );
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'the tour failed');
    say(`the tour failed: ${errorMessage(err)}`);
    throw err;
  }
}
