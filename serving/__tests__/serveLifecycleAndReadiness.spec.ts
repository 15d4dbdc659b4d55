/**
 * `lk serve` as a process: refuses bad flags with exit code 2 and one line, reports ready only
 * when its views are (a published batch run that cannot be loaded keeps it unready), and shuts
 * down gracefully on SIGTERM (exit 0).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { batchRows, partitionedLog, publishBatchRun } from './fixtures/viewFixtures.ts';
import { METRICS, startTestServer } from './fixtures/testServer.ts';

const REPO = new URL('../../', import.meta.url).pathname;

function lkServe(args: string[]): {
  exit: Promise<number | null>;
  output: () => string;
  url: Promise<string>;
  kill: (s: NodeJS.Signals) => void;
} {
  const child = spawn(process.execPath, [join(REPO, 'bin/lk.js'), 'serve', ...args], {
    cwd: REPO,
    env: { ...process.env, KAFKA_BROKERS: testBrokers(), LK_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let resolveUrl: (u: string) => void;
  const url = new Promise<string>((r) => (resolveUrl = r));
  child.stdout.on('data', (d) => {
    out += d;
    const m = /serving (http:\/\/\S+)\/graphql/.exec(out);
    if (m) resolveUrl(m[1]!);
  });
  child.stderr.on('data', (d) => (out += d));
  return { exit: new Promise((r) => child.once('exit', r)), output: () => out, url, kill: (s) => child.kill(s) };
}

describe('lk serve lifecycle and readiness', () => {
  const dir = tempDir('lk-serve-life-');
  afterAll(() => dir.remove());

  it('refuses bad flags with exit code 2 and a one-line reason', async () => {
    const badPort = lkServe(['--port', '99999', '--data-dir', dir.path]);
    expect(await badPort.exit).toBe(2);
    expect(badPort.output()).toMatch(/--port.*must be a TCP port/);
    const shortToken = lkServe(['--port', '0', '--auth-token', 'short', '--data-dir', dir.path]);
    expect(await shortToken.exit).toBe(2);
    expect(shortToken.output().trim().split('\n')).toHaveLength(1);
    expect(shortToken.output()).toMatch(/authToken must be at least 16 characters/);
    const badVersion = lkServe(['--version', 'V 1', '--data-dir', dir.path]);
    expect(await badVersion.exit).toBe(2);
  });

  it('answers health and readiness, and exits 0 on SIGTERM', async () => {
    const serve = lkServe([
      '--port',
      '0',
      '--data-dir',
      dir.path,
      '--version',
      uniqueName('lc').toLowerCase().slice(-24),
      '--metrics',
      join(REPO, 'metrics.yaml'),
    ]);
    const url = await serve.url;
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    await eventually(async () => ((await fetch(`${url}/readyz`)).status === 200 ? true : undefined), 'ready (nothing published yet)');
    serve.kill('SIGTERM');
    expect(await serve.exit).toBe(0);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it('stays unready while a published batch run cannot be loaded, and gets ready once a good run is published', async () => {
    const version = uniqueName('rd').toLowerCase().slice(-24);
    const base = join(dir.path, 'views', version);
    mkdirSync(join(base, 'runs', 'broken'), { recursive: true });
    writeFileSync(join(base, 'runs', 'broken', 'rows.parquet'), 'not parquet');
    const log = partitionedLog({ seed: 5, count: 200 }, 2);
    const manifest = {
      runId: 'broken',
      version,
      cut: log.ends,
      processingTimes: [0, 0],
      startedAt: 0,
      finishedAt: 0,
      durationMs: 0,
      rows: 0,
      rawEvents: 0,
      uniqueEvents: 0,
      lakeFiles: 0,
      lakeBytes: 0,
      full: true,
      metricsSource: 'x',
    };
    writeFileSync(join(base, 'runs', 'broken', 'run.json'), JSON.stringify(manifest));
    writeFileSync(join(base, 'CURRENT'), JSON.stringify({ runId: 'broken' }));
    const server = await startTestServer(dir.path, { defaultVersion: version });
    try {
      const res = await fetch(`${server.url}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ status: 'not ready', batchPublished: true, batchView: null });
      await publishBatchRun(dir.path, version, 'good', log, batchRows(log, METRICS.metrics, log.ends), log.ends);
      await eventually(
        async () => ((await fetch(`${server.url}/readyz`)).status === 200 ? true : undefined),
        'ready once the good run is loaded',
      );
    } finally {
      await server.close();
    }
  });
});
