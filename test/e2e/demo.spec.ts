/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * `npm run demo` as a new user runs it: `lk demo` on a fresh data dir, on the embedded log (no
 * broker), a real process, GraphQL over HTTP.
 *
 * - It prints the GraphQL and dashboard URLs and the example queries, and its status line; GraphQL
 *   answers with merged data (windows from the batch view and from the speed view) once the first
 *   batch run is published (the time it took is printed: the README promises under 60 s);
 * - the printed example queries run as printed and answer without errors;
 * - the foreign-shaped rides topic (nested JSON, its own event: section) answers over GraphQL,
 *   from its batch and speed views, and its dead letters name the path that failed;
 * - Ctrl-C stops it cleanly (exit 0); started again it keeps the data: a closed window of the
 *   history answers the same, and no history is sent twice;
 * - `--tour` replays into v2 with a changed metric file, diffs, promotes and rolls back, on the
 *   running demo.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { gql, gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { LK_BIN } from '../cli.ts';
import { eventually, tempDir } from '../helpers.ts';

interface Demo {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDemo(dataDir: string, extra: string[] = []): Demo {
  // The embedded log (what a fresh clone without a broker gets), and the demo's own log level.
  const env: NodeJS.ProcessEnv = { ...process.env, KAFKA_BROKERS: '', LK_NO_PROGRESS: '1' };
  delete env.LK_LOG_LEVEL;
  const child = spawn(
    process.execPath,
    [LK_BIN, 'demo', '--port', '0', '--batch-interval', '15s', '--rate', '100', '--data-dir', dataDir, ...extra],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited, output: () => out };
}

async function stopDemo(demo: Demo): Promise<{ code: number | null }> {
  demo.child.kill('SIGINT');
  return demo.exited;
}

const HOUR = 3_600_000;

describe('npm run demo, on a fresh data dir', () => {
  const dir = tempDir('lk-demo-');
  const running: Demo[] = [];
  let url = '';
  let historyWindow: { windowStart: string; count: number } | undefined;
  const range = () => ({
    from: new Date(Math.floor(Date.now() / HOUR) * HOUR - 2 * HOUR).toISOString(),
    to: new Date(Math.floor(Date.now() / HOUR) * HOUR + 2 * HOUR).toISOString(),
  });

  afterAll(async () => {
    for (const d of running) if (d.child.exitCode === null) d.child.kill('SIGKILL');
    dir.remove();
  });

  it('answers GraphQL with merged data, runs the printed examples, shows its status and stops cleanly', { timeout: 240_000 }, async () => {
    const started = Date.now();
    const demo = startDemo(dir.path);
    running.push(demo);
    url = await eventually(
      () => /GraphQL\s+(http:\/\/127\.0\.0\.1:\d+)\/graphql/.exec(demo.output())?.[1],
      `the GraphQL URL (${demo.output().slice(-1000)})`,
      120_000,
    );
    expect(demo.output()).toMatch(/dashboard\s+http:\/\/127\.0\.0\.1:\d+\//);
    expect(demo.output()).toMatch(/sent an hour of history: [\d,]+ events/);

    // Merged data: one busy key's minute windows, answered by both views.
    const sources = await eventually(
      async () => {
        const { from, to } = range();
        const d = await gqlData<any>(
          url,
          `{ series(metric: "impressions_by_campaign", key: "c0", granularity: MINUTE, from: "${from}", to: "${to}") { windowStart count source } }`,
        );
        const bySource = new Set(d.series.map((w: any) => w.source));
        return bySource.has('BATCH') && bySource.has('SPEED') ? d.series : undefined;
      },
      `windows from both views (${demo.output().slice(-1500)})`,
      180_000,
    );
    console.log(`demo: merged data (batch and speed windows) in GraphQL ${((Date.now() - started) / 1000).toFixed(1)} s after start`);
    // An hour-old window of the history, closed long ago: it must answer the same after a restart.
    historyWindow = sources.find((w: any) => w.source === 'BATCH' && Date.parse(w.windowStart) < Date.now() - 30 * 60_000 && w.count > 0);
    expect(historyWindow).toBeDefined();

    // The example queries work as printed (the same text a user pastes).
    const examples = [...demo.output().matchAll(/curl -s (\S+) -H 'content-type: application\/json' -d '(.+)'$/gm)];
    expect(examples).toHaveLength(4);
    for (const [, endpoint, body] of examples) {
      const res = await fetch(endpoint!, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: body!.replaceAll("'\\''", "'"),
      });
      const json = (await res.json()) as { data?: unknown; errors?: unknown[] };
      expect(json.errors, body).toBeUndefined();
      expect(json.data).toBeDefined();
    }
    // The rides: a topic of another shape, through its own layers, answered from both views.
    await eventually(
      async () => {
        const { from, to } = range();
        const d = await gqlData<any>(
          url,
          `{ series(version: "rides-v1", metric: "fares_by_city", key: "Paris", granularity: MINUTE, from: "${from}", to: "${to}") { count source } }`,
        );
        const bySource = new Set(d.series.filter((w: any) => w.count > 0).map((w: any) => w.source));
        return bySource.has('BATCH') && bySource.has('SPEED') ? true : undefined;
      },
      `rides windows from both views (${demo.output().slice(-1500)})`,
      180_000,
    );
    expect(demo.output()).toMatch(/a foreign shape\s+topic "rides": nested JSON/);
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);

    await eventually(
      () => (/^status: events [\d,]+ \(\d+\/s, \d+ broken\) · speed lag/m.test(demo.output()) ? true : undefined),
      'a status line',
      60_000,
    );
    const { code } = await stopDemo(demo);
    expect(code, demo.output().slice(-2000)).toBe(0);
    expect(demo.output()).toMatch(/stopped; the data stays in /);
  });

  it('started again it keeps its data, and --tour replays, diffs, promotes and rolls back', { timeout: 300_000 }, async () => {
    const demo = startDemo(dir.path, ['--tour']);
    running.push(demo);
    url = await eventually(() => /GraphQL\s+(http:\/\/127\.0\.0\.1:\d+)\/graphql/.exec(demo.output())?.[1], 'the GraphQL URL', 120_000);
    expect(demo.output()).toMatch(/lambda-kappa demo \(run 2\)/);
    expect(demo.output()).not.toMatch(/sent an hour of history/);
    await eventually(
      async () => {
        const w = historyWindow!;
        const to = new Date(Date.parse(w.windowStart) + 60_000).toISOString();
        const d = await gqlData<any>(
          url,
          `{ series(metric: "impressions_by_campaign", key: "c0", granularity: MINUTE, from: "${w.windowStart}", to: "${to}") { count } }`,
        );
        return d.series[0]?.count === w.count ? true : undefined;
      },
      'the history window, as before the restart',
      120_000,
    );

    await eventually(() => (demo.output().includes('Tour done.') ? true : undefined), `the tour (${demo.output().slice(-2500)})`, 240_000);
    const out = demo.output();
    for (const step of ['1/5', '2/5', '3/5', '4/5', '5/5']) expect(out).toContain(`[tour] ${step}`);
    expect(out).toMatch(/users_by_ad: new in v2/);
    expect(out).toMatch(/GraphQL now: .*"version":"v2"/);
    expect(out).toMatch(/GraphQL now: .*"version":"v1"/);
    // After the tour v1 is the default again, and v2 keeps running beside it.
    const versions = await gqlData<any>(url, '{ versions { default versions { name state } } }');
    expect(versions.versions.default).toBe('v1');
    // (rides-v1 is the rides topic's own version.)
    expect(versions.versions.versions.map((v: any) => v.name)).toContain('rides-v1');
    expect(versions.versions.versions.filter((v: any) => v.name !== 'rides-v1').map((v: any) => [v.name, v.state])).toEqual([
      ['v1', 'LIVE'],
      ['v2', 'CAUGHT_UP'],
    ]);
    const refused = await gql(url, '{ total(metric: "users_by_ad", from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { count } }');
    expect(refused.errors?.[0]?.extensions?.code).toBe('UNKNOWN_METRIC');
    const { code } = await stopDemo(demo);
    expect(code, demo.output().slice(-2000)).toBe(0);
  });
});
