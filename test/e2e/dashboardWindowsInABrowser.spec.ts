/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * The dashboard's windows and measures in a real browser (Debian's chromium through
 * playwright-core), over a real `lk serve` reading a real speed view topic on the real broker: a
 * metric with a composite key ([city, vehicle], one part holding a `|`), 5-minute and hour
 * windows and percentiles, its rows computed by the speed layer's own PartitionState from
 * generated events of the last hour.
 *
 * It checks what a person would see against what GraphQL answers for the same selection:
 * - hopping windows (1 h every 5 minutes) of p95: as many windows as `hopping` answers, the same
 *   values; a window the speed layer changes while the page is open asks them again (no reload);
 * - the composite key: one box per part named by its field, the top keys in one column per part,
 *   a click on a row shows that key (its parts in the boxes and in the address);
 * - the range's p50 ... p99 table equals `total`'s for the key;
 * - tumbling windows of p95 and of avg equal `series` / `seriesColumns`;
 * - a session metric (its rows computed by the same PartitionState): the sessions table and the
 *   chart's bars equal `sessions` for the typed key, with their sources;
 * and no console error, nothing leaves 127.0.0.1. A screenshot goes to .lk/artifacts/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../services/ingest/generator.ts';
import { partitionForKey } from '../../services/log/partitioner.ts';
import { parseMetricDefinitions } from '../../services/metrics/definitions.ts';
import type { ViewRow } from '../../services/views/viewRow.ts';
import { PartitionState } from '../../streaming/state/partitionState.ts';
import { eventually, tempDir, uniqueName } from '../helpers.ts';
import { launchChromium, type TestBrowser } from '../../serving/__tests__/fixtures/browser.ts';
import { publishSpeedRows } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { gqlData, startTestServer, type TestServer } from '../../serving/__tests__/fixtures/testServer.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const ARTIFACTS = join(REPO, '.lk', 'artifacts');
const METRIC = 'fares';
const SESSION_METRIC = 'city_sessions';
const PARTITIONS = 3;
const DEFS = parseMetricDefinitions(`
metrics:
  - name: ${METRIC}
    description: fares by city and vehicle
    filter: { type: trip }
    key: [city, vehicle]
    value: fare
    percentiles: true
    granularities: [minute, 5m, hour]
    allowedLateness: 1h
  - name: ${SESSION_METRIC}
    filter: { type: trip }
    key: city
    value: fare
    session: { gap: 20s }
    allowedLateness: 1h
`);

interface Trip {
  id: string;
  type: 'trip';
  ts: number;
  city: string;
  vehicle: string;
  fare: number;
}

function trips(r: () => number, from: number, n: number, t0: number, spanMs: number): Trip[] {
  const cities = ['Lisbon', 'Porto'];
  const vehicles = ['van', 'car|xl'];
  return Array.from({ length: n }, (_, i) => ({
    id: `t${from + i}`,
    type: 'trip' as const,
    ts: t0 + Math.floor(r() * spanMs),
    city: cities[r() < 0.65 ? 0 : 1]!,
    vehicle: vehicles[r() < 0.7 ? 0 : 1]!,
    fare: Math.round(10 ** (0.5 + r() * 2) * 100) / 100,
  }));
}

async function watchErrors(page: Page, errors: string[], foreign: string[]): Promise<void> {
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  await page.route(
    (url) => !(url.protocol === 'data:' || url.protocol === 'blob:' || url.hostname === '127.0.0.1'),
    (route) => {
      foreign.push(route.request().url());
      return route.abort();
    },
  );
}

async function chartData(page: Page): Promise<Record<string, string>> {
  return page.locator('#chart').evaluate((el) => ({ ...(el as HTMLElement).dataset }) as Record<string, string>);
}

describe('the dashboard: hopping windows, composite keys, percentiles and averages in a real browser', () => {
  const dir = tempDir('lk-dashboard-windows-');
  const version = uniqueName('dw')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '')
    .slice(-20);
  const bundle = join(dir.path, 'dashboard');
  const r = seededRandom(Number(process.env.LK_TEST_SEED ?? 20261207));
  const states = Array.from(
    { length: PARTITIONS },
    (_, p) => new PartitionState(p, DEFS.metrics, { outOfOrdernessMs: 1e13, dedupHorizonMs: 1e13 }, { homePartitions: PARTITIONS }),
  );
  const offsets = Array.from({ length: PARTITIONS }, () => 0);
  let server: TestServer;
  let browser: TestBrowser;
  let published = 0;
  let tx = 0;

  /** The speed layer's rows for more events, published in one transaction as a checkpoint does. */
  async function publish(es: Trip[]): Promise<void> {
    for (const e of es) {
      const p = partitionForKey(e.id, PARTITIONS);
      states[p]!.apply({ offset: offsets[p]!++, timestamp: e.ts, key: Buffer.from(e.id), value: Buffer.from(JSON.stringify(e)) });
    }
    const changes = states.map((s) => s.captureChanges());
    const rows: ViewRow[] = changes.flatMap((c) => c.rows);
    // As a checkpoint does: the rows, then the tombstones of moved or merged sessions, in one transaction.
    await publishSpeedRows(
      server.log,
      version,
      rows,
      `${version}-tx-${tx++}`,
      changes.flatMap((c) => c.tombstones),
    );
    published += es.length;
    await eventually(async () => {
      const d = await gqlData(
        server.url,
        `{ total(metric: "${METRIC}", from: "${new Date(Date.now() - 2 * 3_600_000).toISOString()}", to: "${new Date(Date.now() + 3_600_000).toISOString()}", granularity: "5m") { count } }`,
      );
      return d.total.count === published ? true : undefined;
    }, `serving holds the ${published} events' rows`);
  }

  beforeAll(async () => {
    const build = spawnSync(process.execPath, [join(REPO, 'scripts/build-dashboard.mjs'), '--out', bundle], { encoding: 'utf8' });
    expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
    browser = await launchChromium();
    const previous = process.env.LK_DASHBOARD_DIR;
    process.env.LK_DASHBOARD_DIR = bundle;
    server = await startTestServer(dir.path, { defaultVersion: version }, { metrics: DEFS }).finally(() => {
      if (previous === undefined) delete process.env.LK_DASHBOARD_DIR;
      else process.env.LK_DASHBOARD_DIR = previous;
    });
    // 50 minutes of trips up to two minutes ago.
    await publish(trips(r, 0, 900, Date.now() - 52 * 60_000, 50 * 60_000));
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await server?.log.deleteTopics([`views.speed.${version}`]).catch(() => undefined);
    dir.remove();
  });

  it('draws what hopping, series and total answer for the key on display, follows a click on a top key and a live change', async () => {
    const page = await browser.context.newPage();
    const errors: string[] = [];
    const foreign: string[] = [];
    await watchErrors(page, errors, foreign);
    await page.goto(`${server.url}/?metric=${METRIC}&g=5m&range=3600000&window=hopping&size=1h&measure=p95`);

    /** The chart equals GraphQL's answer for the page's selection: windows, values, views. */
    const chartMatches = async (query: (d: Record<string, string>, keyParts: string[]) => Promise<(number | null)[]>, what: string) =>
      eventually(async () => {
        const d = await chartData(page);
        const keyParts = await page.locator('input.key-part').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value));
        if (!d.windows || keyParts.some((p) => p === '')) return undefined;
        const values = await query(d, keyParts);
        const drawn = values.filter((v): v is number => v !== null);
        const got = { windows: Number(d.windows), points: Number(d.pointsBatch) + Number(d.pointsSpeed), total: Number(d.total) };
        const want = { windows: values.length, points: drawn.length, total: drawn.reduce((a, b) => a + b, 0) };
        return JSON.stringify(got) === JSON.stringify(want) && want.windows > 0 ? { ...got, keyParts, key: d.key, d } : undefined;
      }, `the chart draws what GraphQL answers (${what})`);
    const hopping = (measure: string) => async (d: Record<string, string>, keyParts: string[]) =>
      (
        await gqlData<any>(
          server.url,
          `query($k: [String!], $from: DateTime!, $to: DateTime!) { hopping(metric: "${METRIC}", keyParts: $k, size: "1h", advance: "5m", from: $from, to: $to) { v: ${measure} } }`,
          { k: keyParts, from: new Date(Number(d.from)).toISOString(), to: new Date(Number(d.to)).toISOString() },
        )
      ).hopping.map((w: { v: number | null }) => w.v);

    // Hopping windows of p95, for the top key (the page picks it), one box per key part.
    const first = await chartMatches(hopping('p95'), 'hopping p95');
    expect(first.d.kind).toBe('hopping');
    expect(first.d.measure).toBe('p95');
    // One per 5 minutes of the hour on display; the newest holds events only once its 5 minutes have some.
    expect(first.windows).toBeGreaterThanOrEqual(11);
    expect(await page.locator('[data-testid="key-part"]').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.field))).toEqual([
      'city',
      'vehicle',
    ]);
    expect(await page.locator('#chart-title').innerText()).toContain('per 1h window every 5m (hopping)');
    // The top keys in one column per part; the first row is the key on display.
    const top = await gqlData<any>(
      server.url,
      `query($from: DateTime!, $to: DateTime!) { topKeys(metric: "${METRIC}", granularity: "5m", from: $from, to: $to) { key keyParts count } }`,
      { from: new Date(Number(first.d.from)).toISOString(), to: new Date(Number(first.d.to)).toISOString() },
    );
    expect(top.topKeys).toHaveLength(4);
    expect(first.keyParts).toEqual(top.topKeys[0].keyParts);
    expect(await page.locator('[data-testid="top-keys"] thead th[data-field]').evaluateAll((els) => els.map((e) => e.textContent))).toEqual(
      ['city', 'vehicle'],
    );
    const rows = page.locator('[data-testid="top-keys"] tbody tr');
    expect(await rows.count()).toBe(4);

    // A click on the key whose vehicle holds a "|": its parts in the boxes and the address, its windows drawn.
    const pick = top.topKeys.find((k: { keyParts: string[] }) => k.keyParts[1] === 'car|xl')!;
    await page.locator(`[data-testid="top-keys"] tbody tr[data-key="${pick.key.replace(/[\\"]/g, (c: string) => `\\${c}`)}"]`).click();
    const picked = await chartMatches(hopping('p95'), 'hopping p95 of the picked key');
    expect(picked.keyParts).toEqual(pick.keyParts);
    expect(picked.key).toBe(pick.key);
    expect(new URL(page.url()).searchParams.getAll('key')).toEqual(pick.keyParts);
    expect(new URL(page.url()).searchParams.get('window')).toBe('hopping');

    // The range's percentiles: total over the same windows, for the same key.
    const t = await gqlData<any>(
      server.url,
      `query($k: [String!], $from: DateTime!, $to: DateTime!) { total(metric: "${METRIC}", keyParts: $k, granularity: "5m", from: $from, to: $to) { p50 p90 p95 p99 } }`,
      { k: pick.keyParts, from: new Date(Number(picked.d.from)).toISOString(), to: new Date(Number(picked.d.to)).toISOString() },
    );
    await expect
      .poll(async () =>
        Object.fromEntries(
          await page
            .locator('[data-testid="range-percentiles"] td[data-percentile]')
            .evaluateAll((els) => els.map((e) => [(e as HTMLElement).dataset.percentile, Number((e as HTMLElement).dataset.value)])),
        ),
      )
      .toEqual(t.total);

    // A live change: more trips of the picked key now; the page asks its hopping windows again.
    await page.evaluate(() => ((window as any).__sameDocument = true));
    const before = Number((await chartData(page)).liveUpdates);
    const countsBefore = await hopping('count')(picked.d, picked.keyParts);
    const more = trips(r, 10_000, 40, Date.now() - 60_000, 30_000).map((e) => ({
      ...e,
      city: pick.keyParts[0],
      vehicle: pick.keyParts[1],
    }));
    await publish(more);
    await page.waitForFunction((n) => Number(document.getElementById('chart')?.dataset.liveUpdates ?? 0) > n, before);
    const live = await chartMatches(hopping('p95'), 'hopping p95 after the live change');
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
    const sum = (xs: (number | null)[]) => xs.reduce<number>((a, b) => a + (b ?? 0), 0);
    // Each new trip counts in up to 12 hopping windows of the range.
    expect(sum(await hopping('count')(live.d, live.keyParts))).toBeGreaterThan(sum(countsBefore));

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'dashboard-windows.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`[dashboard] screenshot: ${shot}`);

    // Tumbling 5-minute windows of p95, then of avg: series and seriesColumns answer the same.
    await page.locator('[data-control="kind"] button[data-value="tumbling"]').click();
    const series = (measure: string) => async (d: Record<string, string>, keyParts: string[]) =>
      (
        await gqlData<any>(
          server.url,
          `query($k: [String!], $from: DateTime!, $to: DateTime!) { series(metric: "${METRIC}", keyParts: $k, granularity: "5m", from: $from, to: $to) { v: ${measure} } }`,
          { k: keyParts, from: new Date(Number(d.from)).toISOString(), to: new Date(Number(d.to)).toISOString() },
        )
      ).series.map((w: { v: number | null }) => w.v);
    const tumbling = await chartMatches(series('p95'), 'series p95');
    expect(tumbling.d.kind).toBe('tumbling');
    expect(new URL(page.url()).searchParams.get('window')).toBeNull();
    await page.locator('#measure-select').selectOption('avg');
    const avg = await chartMatches(series('avg'), 'series avg');
    expect(avg.d.measure).toBe('avg');
    console.log(
      `[dashboard] ${METRIC} ${pick.keyParts.join(' · ')}: hopping ${picked.windows} windows, tumbling ${tumbling.windows}; ${Number(live.d.liveUpdates) - before} live refresh(es)`,
    );

    expect(errors).toEqual([]);
    expect(foreign).toEqual([]);
    await page.close();
  });

  it('shows a session metric: the sessions of a typed key, as sessions answers them', async () => {
    const page = await browser.context.newPage();
    const errors: string[] = [];
    const foreign: string[] = [];
    await watchErrors(page, errors, foreign);
    await page.goto(`${server.url}/?metric=${SESSION_METRIC}&key=Porto&range=3600000&measure=sum`);
    await page.locator('[data-control="sessions"]').waitFor();
    expect(await page.locator('[data-control="granularity"]').count()).toBe(0);
    const rows = page.locator('[data-testid="sessions"] tbody tr');
    const got = await eventually(async () => {
      const d = await chartData(page);
      if (!d.windows || Number(d.windows) === 0) return undefined;
      const q = await gqlData<any>(
        server.url,
        `query($from: DateTime!, $to: DateTime!) { sessions(metric: "${SESSION_METRIC}", key: "Porto", from: $from, to: $to) { start end count sum source } }`,
        { from: new Date(Number(d.from)).toISOString(), to: new Date(Number(d.to)).toISOString() },
      );
      const table = await rows.evaluateAll((els) =>
        els.map((e) => {
          const ds = (e as HTMLElement).dataset;
          return [Number(ds.start), Number(ds.end), Number(ds.count), ds.source];
        }),
      );
      const want = [...q.sessions].reverse().map((x: any) => [Date.parse(x.start), Date.parse(x.end), x.count, x.source]);
      const sum = q.sessions.reduce((a: number, x: any) => a + x.sum, 0);
      return JSON.stringify(table) === JSON.stringify(want) && Number(d.windows) === q.sessions.length && Number(d.total) === sum
        ? { sessions: q.sessions.length }
        : undefined;
    }, 'the sessions table and the chart equal what sessions answers');
    expect(got.sessions).toBeGreaterThan(1);
    expect(await page.locator('[data-testid="top-keys"]').count()).toBe(0);
    console.log(`[dashboard] ${SESSION_METRIC} Porto: ${got.sessions} sessions shown`);
    const shot = join(ARTIFACTS, 'dashboard-sessions.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`[dashboard] screenshot: ${shot}`);
    expect(errors).toEqual([]);
    expect(foreign).toEqual([]);
    await page.close();
  });
});
