/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * The dashboard and the GraphQL explorer in a real browser (Debian's chromium through
 * playwright-core), over the real platform: the events topic on the real broker, `lk produce`,
 * `lk speed`, `lk batch run` and `lk serve` as child processes, the pages from a real build of
 * scripts/build-dashboard.mjs.
 *
 * It checks what a person would see: the page loads without console errors; after a batch run and
 * fresh events the chart draws windows from both views, as many per view as GraphQL's
 * seriesColumns says; a window pushed by `windowUpdated` arrives without a reload; the pipeline
 * panel counts a bad line's dead letter by reason; the versions panel lists the version; the
 * explorer loads, answers a query and streams a subscription; and no request of either page
 * leaves 127.0.0.1. Screenshots go to .lk/artifacts/ (the paths are printed).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Page, Request, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { currentBatchRun } from '../../test/sharedState.ts';
import { Pipeline, killAll, testVersion, type LkProcess } from '../../test/e2e/pipeline.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { sha256Entry } from '../auth/tokensFile.ts';
import { launchChromium, type TestBrowser } from './fixtures/browser.ts';
import { gqlData, startTestServer } from './fixtures/testServer.ts';

const REPO = new URL('../../', import.meta.url).pathname;
const ARTIFACTS = join(REPO, '.lk', 'artifacts');
const METRIC = 'impressions_by_campaign';

function events(seed: number, count: number, startTime: number, eventsPerSecond: number): string[] {
  return [
    ...generateEventLines({
      seed,
      count,
      startTime,
      eventsPerSecond,
      duplicateRate: 0.05,
      outOfOrderRate: 0.05,
      outOfOrderMs: 3_000,
      lateRate: 0,
      campaigns: 3,
      adsPerCampaign: 2,
      users: 200,
    }),
  ];
}

/** Fails on any request that would leave this machine's loopback address (and blocks it). */
async function keepLocal(page: Page, foreign: string[]): Promise<void> {
  const local = (url: URL) => url.protocol === 'data:' || url.protocol === 'blob:' || url.hostname === '127.0.0.1';
  await page.route(
    (url) => !local(url),
    (route: Route) => {
      foreign.push(route.request().url());
      return route.abort();
    },
  );
  page.on('websocket', (ws) => {
    if (!local(new URL(ws.url()))) foreign.push(ws.url());
  });
}

function watchErrors(page: Page, errors: string[]): void {
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('requestfailed', (r: Request) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
}

async function chartData(page: Page): Promise<Record<string, string>> {
  return page.locator('#chart').evaluate((el) => ({ ...(el as HTMLElement).dataset }) as Record<string, string>);
}

describe('the dashboard in a real browser', () => {
  const dir = tempDir('lk-dashboard-browser-');
  const topic = uniqueName('dash-events');
  const version = testVersion('dash');
  const pipeline = new Pipeline(dir.path, join(REPO, 'metrics.yaml'), topic, version);
  const bundle = join(dir.path, 'dashboard');
  let serve: LkProcess | undefined;
  let speed: LkProcess | undefined;
  let url = '';
  let browser: TestBrowser;
  let page: Page;
  const errors: string[] = [];
  const foreign: string[] = [];

  async function produce(lines: string[], name: string): Promise<string> {
    const file = join(dir.path, name);
    writeFileSync(file, lines.join('\n') + '\n');
    return pipeline.run(['produce', '--topic', topic, '--file', file, ...pipeline.common()]);
  }

  /** The speed job committed the whole topic and serving read every row it published. */
  async function settled(): Promise<void> {
    await pipeline.speedCaughtUp();
    await pipeline.servingCaughtUp(url);
  }

  beforeAll(async () => {
    // The pages from the sources under test, built the way `npm run build` builds them.
    const build = spawnSync(process.execPath, [join(REPO, 'scripts/build-dashboard.mjs'), '--out', bundle], { encoding: 'utf8' });
    expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
    await pipeline.log.createTopics(eventTopicSpecs(topic, 3));
    browser = await launchChromium();
    speed = pipeline.startSpeed('a');
    serve = pipeline.spawn(
      ['serve', '--port', '0', '--version', version, '--topic', topic, '--batch-poll', '200ms', ...pipeline.common()],
      {
        LK_DASHBOARD_DIR: bundle,
      },
    );
    url = await eventually(() => /serving (http:\/\/\S+)\/graphql/.exec(serve!.output())?.[1], `lk serve started (${serve.output()})`);
    // Installing chromium with apt-get (only when it is missing) can take minutes.
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await pipeline.stop(speed);
    await pipeline.stop(serve);
    killAll();
    await pipeline.close();
    dir.remove();
  });

  it('shows batch and speed windows, live updates, dead letters and versions; no console error, nothing leaves 127.0.0.1', async () => {
    const now = Date.now();
    // 20 minutes of events up to a minute ago, then a batch run over all of them.
    await produce(events(11, 1200, now - 21 * 60_000, 1), 'first.jsonl');
    await settled();
    await pipeline.batchRun();
    const runId = (await currentBatchRun(dir.path, version))!.manifest.runId;
    await pipeline.batchInstalled(url, runId);

    page = await browser.context.newPage();
    watchErrors(page, errors);
    await keepLocal(page, foreign);
    await page.goto(`${url}/?metric=${METRIC}&g=MINUTE&range=3600000`);
    await page.waitForFunction(() => Number(document.getElementById('chart')?.dataset.pointsBatch ?? 0) > 0);
    await page.waitForFunction(() => document.getElementById('live-state')?.dataset.state === 'live');
    const before = await chartData(page);
    expect(Number(before.pointsSpeed), 'right after the batch run every window is the batch view’s').toBe(0);
    await page.evaluate(() => ((window as any).__sameDocument = true));

    // Fresh events (this minute and the last) and one bad line, while the page is open.
    await produce(
      [...events(12, 120, Date.now() - 60_000, 2), '{"id":"bad-1","type":"click","ts":"yesterday"}', 'not json'],
      'second.jsonl',
    );
    await settled();

    // A live point arrived without a reload...
    await page.waitForFunction(() => Number(document.getElementById('chart')?.dataset.liveUpdates ?? 0) > 0);
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
    // ...and the chart draws windows of both views, as many of each as GraphQL answers.
    const drawn = await eventually(async () => {
      const d = await chartData(page);
      const q = await gqlData<any>(
        url,
        `query($m: String!, $k: String!, $from: DateTime!, $to: DateTime!) {
           seriesColumns(metric: $m, key: $k, granularity: MINUTE, from: $from, to: $to) { count source provisional } }`,
        { m: METRIC, k: d.key, from: new Date(Number(d.from)).toISOString(), to: new Date(Number(d.to)).toISOString() },
      );
      const c = q.seriesColumns;
      const expected = {
        batch: c.source.filter((s: string) => s === 'BATCH').length,
        speed: c.source.filter((s: string) => s === 'SPEED').length,
        provisional: c.provisional.filter(Boolean).length,
        total: c.count.reduce((a: number, n: number) => a + n, 0),
      };
      const got = {
        batch: Number(d.pointsBatch),
        speed: Number(d.pointsSpeed),
        provisional: Number(d.pointsProvisional),
        total: Number(d.total),
      };
      return JSON.stringify(got) === JSON.stringify(expected) ? { ...got, liveUpdates: Number(d.liveUpdates), key: d.key } : undefined;
    }, 'the chart draws what GraphQL answers');
    expect(drawn.batch).toBeGreaterThan(0);
    expect(drawn.speed).toBeGreaterThan(0);
    console.log(
      `[dashboard] chart of ${METRIC}/${drawn.key}: ${drawn.batch} batch + ${drawn.speed} speed windows, ${drawn.liveUpdates} live updates`,
    );

    // The pipeline panel counts the bad lines by reason (polled every 5 s).
    await page.locator('[data-testid="dead-letter-reasons"] li[data-reason="invalid_ts"][data-count="1"]').waitFor();
    await page.locator('[data-testid="dead-letter-reasons"] li[data-reason="invalid_json"][data-count="1"]').waitFor();
    expect(await page.locator('[data-testid="dead-letters-total"]').innerText()).toBe('2');
    // Lag and watermark per partition, and the version.
    expect(await page.locator('[data-testid="partitions"] tbody tr').count()).toBe(3);
    await page.locator(`[data-testid="versions"] tr[data-version="${version}"]`).waitFor();
    expect(await page.locator('#chart-panel').innerText()).toContain(drawn.key);

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`[dashboard] screenshot: ${shot}`);
    expect(errors).toEqual([]);
    expect(foreign).toEqual([]);
    await page.close();
  });

  it('promotes a second version from the versions panel (its refusal shown, then forced) and rolls back', async () => {
    const v2 = testVersion('dash2');
    const second = pipeline.spawn([
      'speed',
      '--topic',
      topic,
      '--version',
      v2,
      '--checkpoint-interval',
      '300ms',
      '--instance-id',
      'b',
      ...pipeline.common(),
    ]);
    try {
      const panel = await browser.context.newPage();
      const panelErrors: string[] = [];
      watchErrors(panel, panelErrors);
      await keepLocal(panel, foreign);
      await panel.goto(`${url}/?metric=${METRIC}`);
      // The panel lists the new version once its speed job has written its version record (polled every 5 s).
      const promote = panel.locator(`[data-testid="versions"] button[data-promote="${v2}"]`);
      await promote.waitFor({ timeout: 60_000 });
      await promote.click();
      await panel.locator(`button[data-promote="${v2}"].btn-danger`).click(); // the confirming second click
      const outcome = panel.locator('[data-testid="promote-message"] [data-outcome]');
      await outcome.waitFor();
      const first = await outcome.getAttribute('data-outcome');
      console.log(`[dashboard] promoting ${v2} from the panel: ${first}: ${await outcome.innerText()}`);
      if (first === 'refused') {
        // The reasons are shown, and the user may force it.
        expect(await outcome.innerText()).toMatch(/cannot promote/);
        await outcome.locator('button', { hasText: 'Promote anyway' }).click();
      }
      await panel.locator('[data-testid="promote-message"] [data-outcome="promoted"]').waitFor({ timeout: 60_000 });
      await panel.locator(`[data-testid="versions"] tr[data-version="${v2}"] .badge-default`).waitFor();
      await expect.poll(() => panel.locator('#default-version').innerText()).toBe(`version ${v2}`);

      // Rollback = promote the previous version (the first one), from its row.
      const back = panel.locator(`[data-testid="versions"] button[data-promote="${version}"]`);
      expect(await back.innerText()).toBe('Roll back to this');
      await back.click();
      await panel.locator(`button[data-promote="${version}"].btn-danger`).click();
      await panel.locator(`[data-testid="versions"] tr[data-version="${version}"] .badge-default`).waitFor({ timeout: 60_000 });
      const d = await gqlData<any>(url, '{ versions { default previous } }');
      expect(d.versions).toEqual({ default: version, previous: v2 });
      expect(panelErrors).toEqual([]);
      await panel.close();
    } finally {
      await pipeline.stop(second);
    }
  });

  it('with tokens the page asks for one, or reads it from the URL fragment; a reader sees no promote or rollback buttons', async () => {
    const token = 'browser-test-token-0123456789';
    const readerToken = 'browser-reader-token-0123456789';
    const tokensFile = join(dir.path, 'tokens.yaml');
    writeFileSync(tokensFile, `tokens:\n  - { name: rita, role: reader, hash: "${sha256Entry(readerToken)}" }\n`);
    const previous = process.env.LK_DASHBOARD_DIR;
    process.env.LK_DASHBOARD_DIR = bundle;
    const secured = await startTestServer(dir.path, { defaultVersion: version, authToken: token, tokensFile, eventsTopic: topic }).finally(
      () => {
        if (previous === undefined) delete process.env.LK_DASHBOARD_DIR;
        else process.env.LK_DASHBOARD_DIR = previous;
      },
    );
    try {
      // From the fragment: no prompt, the data loads, and the token leaves the address bar.
      const withFragment = await browser.context.newPage();
      await keepLocal(withFragment, foreign);
      await withFragment.goto(`${secured.url}/?metric=${METRIC}#token=${token}`);
      await withFragment.locator('[data-testid="top-keys"] tr[data-key="c0"]').waitFor();
      await withFragment.waitForFunction(() => document.getElementById('live-state')?.dataset.state === 'live');
      expect(await withFragment.locator('[data-testid="token-dialog"]').count()).toBe(0);
      expect(new URL(withFragment.url()).hash).toBe('');
      // --auth-token is an admin: the other version (the previous default) has its button.
      await withFragment.locator('[data-testid="viewer"][data-role="ADMIN"]').waitFor();
      expect(await withFragment.locator('[data-testid="viewer"]').innerText()).toBe('auth-token · admin');
      await withFragment.locator('[data-testid="versions"] button[data-promote]').first().waitFor();
      expect(await withFragment.locator('[data-testid="read-only"]').count()).toBe(0);
      await withFragment.close();

      // A reader: the same panel without any promote or rollback button, and why.
      const reader = await browser.context.newPage();
      await keepLocal(reader, foreign);
      await reader.goto(`${secured.url}/?metric=${METRIC}#token=${readerToken}`);
      await reader.locator('[data-testid="viewer"][data-role="READER"]').waitFor();
      expect(await reader.locator('[data-testid="viewer"]').innerText()).toBe('rita · reader');
      await reader.locator('[data-testid="versions"] tr[data-version]').first().waitFor();
      expect(await reader.locator('[data-testid="versions"] tr[data-version]').count()).toBeGreaterThan(1);
      expect(await reader.locator('[data-testid="versions"] button').count()).toBe(0);
      expect(await reader.locator('[data-testid="read-only"]').innerText()).toMatch(/need the admin role/);
      await reader.close();

      // Without it (a new tab: its own sessionStorage): the page loads, asks, then shows the data.
      const asking = await browser.context.newPage();
      await keepLocal(asking, foreign);
      await asking.goto(`${secured.url}/?metric=${METRIC}`);
      const dialog = asking.locator('[data-testid="token-dialog"]');
      await dialog.waitFor();
      await dialog.locator('input[name="token"]').fill(token);
      await dialog.locator('button[type="submit"]').click();
      await asking.locator('[data-testid="top-keys"] tr[data-key="c0"]').waitFor();
      await asking.locator('[data-testid="dead-letter-reasons"] li[data-reason="invalid_ts"]').waitFor();
      await asking.close();
    } finally {
      await secured.close();
    }
  });

  it('the GraphQL explorer loads offline, answers a query and streams a subscription', async () => {
    const explorer = await browser.context.newPage();
    const explorerErrors: string[] = [];
    watchErrors(explorer, explorerErrors);
    await keepLocal(explorer, foreign);
    await explorer.goto(`${url}/graphql`);
    await explorer.locator('.graphiql-container').waitFor();
    // The README's examples are there as tabs.
    await explorer.locator('.graphiql-tab', { hasText: 'PipelineHealth' }).waitFor();

    // A query from the address, run with the execute button.
    const query = `{ seriesColumns(metric: "${METRIC}", key: "c0", granularity: MINUTE, from: "${new Date(Date.now() - 3_600_000).toISOString()}", to: "${new Date(Date.now() + 60_000).toISOString()}") { key count source } }`;
    await explorer.goto(`${url}/graphql?query=${encodeURIComponent(query)}`);
    await explorer.locator('.graphiql-execute-button').click();
    await expect.poll(() => explorer.locator('.graphiql-response').innerText(), { timeout: 30_000 }).toContain('"seriesColumns"');

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'explorer.png');
    await explorer.screenshot({ path: shot });
    console.log(`[dashboard] screenshot: ${shot}`);

    // A subscription over graphql-ws: run it, then produce events for the key.
    const subscription = `subscription { windowUpdated(metric: "${METRIC}", key: "c0", granularity: MINUTE) { windowStart count source } }`;
    await explorer.goto(`${url}/graphql?query=${encodeURIComponent(subscription)}`);
    await explorer.locator('.graphiql-execute-button').click();
    // Fresh events until one of c0's windows is pushed (the first ones may beat the subscription).
    let seed = 13;
    await eventually(async () => {
      await produce(events(seed++, 40, Date.now() - 20_000, 2), `live-${seed}.jsonl`);
      await pipeline.speedCaughtUp();
      return (await explorer.locator('.graphiql-response').innerText()).includes('"windowUpdated"') ? true : undefined;
    }, 'a window pushed to the explorer');

    expect(explorerErrors).toEqual([]);
    expect(foreign).toEqual([]);
  });
});
