/**
 * `lk serve --workers 2`: two processes answer on one port, and stay one server:
 * - both workers answer (new connections are spread over them);
 * - /readyz says ready only when every worker is: checked on every answer seen, from the start
 *   and while a killed worker is replaced;
 * - a promotion (and a rollback) made through one worker is what every worker answers with as
 *   soon as the mutation returns;
 * - a client's rate limit is one bucket whichever worker its connections reach;
 * - subscriptions on both workers receive the speed view's updates;
 * - SIGTERM stops every worker gracefully (exit 0, no worker left).
 * The resident memory of each process is printed (each worker holds its own copy of the views).
 */
import { localState } from '../../test/sharedState.ts';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import { ensureVersionRecord } from '../../services/versions/versionRecord.ts';
import { LK_BIN } from '../../test/cli.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { sha256Entry } from '../auth/tokensFile.ts';
import { publishSpeedRows, publishSyntheticBatchRun } from './fixtures/viewFixtures.ts';
import { METRICS, testLog } from './fixtures/testServer.ts';

const START = Date.UTC(2026, 0, 1);
const ADMIN = 'core-admin-token-0123456789';
const READER = 'core-reader-token-0123456789';

interface Answer {
  status: number;
  worker: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  retryAfter: string | undefined;
}

/** One request on a connection of its own (so that the primary hands it to the next worker). */
function call(url: string, path: string, init: { body?: unknown; token?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const body = init.body === undefined ? undefined : JSON.stringify(init.body);
    const req = request(
      `${url}${path}`,
      {
        method: body ? 'POST' : 'GET',
        agent: false,
        headers: {
          ...(body ? { 'content-type': 'application/json' } : {}),
          ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* /metrics is text */
          }
          resolve({
            status: res.statusCode ?? 0,
            worker: Number(res.headers['lk-worker']),
            body: parsed,
            retryAfter: res.headers['retry-after'] as string | undefined,
          });
        });
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to ${path} in 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const gql = (url: string, query: string, token = READER) => call(url, '/graphql', { body: { query }, token });

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('serving on every core: lk serve --workers 2', () => {
  const dir = tempDir('lk-serve-cores-');
  const layout = dataDirLayout(dir.path);
  const tag = uniqueName('c').toLowerCase().slice(-12);
  const va = `cra-${tag}`;
  const vb = `crb-${tag}`;
  let url = '';
  let output = '';
  let exited: Promise<number | null>;
  let primaryPid = 0;
  const clients: Client[] = [];
  /** Every /readyz answer seen: a 200 must list every worker, each ready. */
  const readyViolations: string[] = [];

  async function readyz(): Promise<Answer> {
    const r = await call(url, '/readyz');
    const workers = r.body.workers as { ready: boolean }[] | undefined;
    if (r.status === 200 && !(workers?.length === 2 && workers.every((w) => w.ready))) readyViolations.push(JSON.stringify(r.body));
    return r;
  }

  beforeAll(async () => {
    for (const v of [va, vb]) {
      await ensureVersionRecord(localState(layout.root), { version: v, topic: 'events', homePartitions: 2, metrics: METRICS });
      await publishSyntheticBatchRun(layout.root, v, { keys: 50, windows: 1440, start: START });
    }
    const tokens = join(dir.path, 'tokens.yaml');
    writeFileSync(
      tokens,
      `tokens:\n  - { name: admin, role: admin, hash: "${sha256Entry(ADMIN)}" }\n  - { name: rita, role: reader, hash: "${sha256Entry(READER)}" }\n`,
    );
    const child = spawn(
      process.execPath,
      [
        LK_BIN,
        'serve',
        '--workers',
        '2',
        '--port',
        '0',
        '--data-dir',
        dir.path,
        '--metrics',
        'metrics.yaml',
        '--version',
        va,
        '--batch-poll',
        '200ms',
        '--tokens-file',
        tokens,
        '--rate-limit',
        '10',
        '--rate-burst',
        '30000',
      ],
      {
        cwd: new URL('../../', import.meta.url).pathname,
        env: { ...process.env, KAFKA_BROKERS: testBrokers(), LK_LOG_LEVEL: process.env.LK_CORES_LOG ?? 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    primaryPid = child.pid!;
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    url = await eventually(
      () => /serving (http:\/\/\S+)\/graphql \(version \S+; 2 workers;/.exec(output)?.[1],
      `lk serve listening (${output})`,
      120_000,
    );
  }, 180_000);
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
    if (alive(primaryPid)) process.kill(primaryPid, 'SIGKILL');
    dir.remove();
  });

  it('is ready only once every worker is, and both workers answer', async () => {
    await eventually(async () => ((await readyz()).status === 200 ? true : undefined), 'ready', 120_000);
    const workers = new Set<number>();
    for (let i = 0; i < 8; i++) workers.add((await readyz()).worker);
    expect([...workers].sort()).toEqual([1, 2]);
    const r = await readyz();
    const pids = (r.body.workers as { pid: number }[]).map((w) => w.pid);
    expect(new Set(pids).size).toBe(2);
    console.log(
      `[cores] resident memory: primary ${rssMiB(primaryPid).toFixed(0)} MiB, workers ${pids.map((p) => `${rssMiB(p).toFixed(0)} MiB`).join(' and ')} (50 keys x 1,440 windows, two versions)`,
    );
    expect(readyViolations).toEqual([]);
  });

  it('a promotion through one worker is what every worker answers with once it returns; so is the rollback', async () => {
    const before = await gql(url, '{ versions { default } }');
    expect(before.body.data.versions.default).toBe(va);
    for (const [mutation, expected] of [
      [`mutation { promote(version: "${vb}", force: true) { version } }`, vb],
      ['mutation { rollback(force: true) { version } }', va],
    ] as const) {
      const m = await gql(url, mutation, ADMIN);
      expect(m.status, JSON.stringify(m.body)).toBe(200);
      const seen = new Map<number, Set<string>>();
      for (let i = 0; i < 12; i++) {
        const r = await gql(url, `{ metrics { name } }`);
        const served = r.body.extensions.versions.default as string;
        seen.set(r.worker, (seen.get(r.worker) ?? new Set()).add(served));
      }
      expect([...seen.keys()].sort()).toEqual([1, 2]);
      for (const [worker, versions] of seen) expect([...versions], `worker ${worker}`).toEqual([expected]);
    }
  });

  it("a client's rate limit is one bucket, whichever worker answers", async () => {
    // A reader's costly series: 100 + 1,440 x 6 = 8,740 + the text; 30,000 at once, 10 a second.
    const costly = `{ series(metric: "clicks_by_ad", key: "ad-1", granularity: MINUTE, from: "${new Date(START).toISOString()}", to: "${new Date(START + 86_400_000).toISOString()}") { windowStart count sum min max source } }`;
    const answers: Answer[] = [];
    for (let i = 0; i < 10; i++) answers.push(await gql(url, costly));
    // One bucket admits at most four of them (30,000 / 8,760 + 1), whichever worker takes them;
    // a bucket per worker would admit six or more.
    const admitted = answers.filter((a) => a.status === 200);
    expect(admitted.length).toBeGreaterThanOrEqual(2);
    expect(admitted.length).toBeLessThanOrEqual(4);
    expect(answers.map((a) => a.status)).toEqual([...Array(admitted.length).fill(200), ...Array(10 - admitted.length).fill(429)]);
    expect(new Set(admitted.map((a) => a.worker)).size).toBe(2);
    // In debt, on both workers.
    const again = [await gql(url, '{ metrics { name } }'), await gql(url, '{ metrics { name } }')];
    expect(again.map((a) => a.status)).toEqual([429, 429]);
    expect(new Set(again.map((a) => a.worker)).size).toBe(2);
    expect(Number(again[0]!.retryAfter)).toBeGreaterThan(100);
  });

  it('subscriptions on both workers receive the updates', async () => {
    const received = Array.from(
      { length: 4 },
      () =>
        new Promise<unknown>((resolve, reject) => {
          const client = createClient({
            url: `${url.replace('http', 'ws')}/graphql`,
            webSocketImpl: WebSocket,
            retryAttempts: 0,
            connectionParams: { authorization: `Bearer ${ADMIN}` },
          });
          clients.push(client);
          client.subscribe(
            { query: 'subscription { windowUpdated(metric: "clicks_by_ad", key: "ad-3", granularity: MINUTE) { key count } }' },
            { next: (v) => resolve(v.data), error: reject, complete: () => undefined },
          );
        }),
    );
    // The sum over the workers (one /metrics request answers for all).
    await eventually(async () => {
      const m = await call(url, '/metrics', { token: ADMIN });
      return /^lk_serve_subscriptions 4$/m.test(m.body as string) ? true : undefined;
    }, 'four subscriptions open');
    const log = testLog('lk-serve-cores');
    try {
      await publishSpeedRows(
        log,
        va,
        [
          {
            metric: 'clicks_by_ad',
            granularity: 'minute',
            key: 'ad-3',
            windowStart: START,
            partition: 1,
            count: 777,
            sum: 1,
            min: 1,
            max: 1,
            distinctSketch: null,
            misplaced: 0,
            throughOffset: 2_000_000,
            processingTime: START + 1,
          },
        ],
        `lk-cores-${va}`,
      );
    } finally {
      await log.close();
    }
    for (const r of await Promise.all(received)) expect(r).toEqual({ windowUpdated: { key: 'ad-3', count: expect.any(Number) } });
  });

  it('a worker killed is replaced; /readyz never says ready without every worker', async () => {
    const before = (await readyz()).body.workers as { worker: number; pid: number }[];
    const victim = before[0]!;
    process.kill(victim.pid, 'SIGKILL');
    const after = await eventually(
      async () => {
        // A connection the primary handed to the worker as it was killed is lost: the client tries again.
        const r = await readyz().catch(() => undefined);
        if (!r) return undefined;
        const ws = r.body.workers as { worker: number; pid: number; ready: boolean }[];
        return r.status === 200 && ws.some((w) => w.worker === victim.worker && w.pid !== victim.pid) ? ws : undefined;
      },
      'the worker replaced and ready',
      120_000,
    );
    expect(after.map((w) => w.worker).sort()).toEqual([1, 2]);
    expect(readyViolations).toEqual([]);
  });

  it('SIGTERM stops every worker gracefully: exit 0, no worker left', async () => {
    const pids = ((await readyz()).body.workers as { pid: number }[]).map((w) => w.pid);
    process.kill(primaryPid, 'SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of pids) expect(alive(pid), `worker ${pid}`).toBe(false);
    expect(output).not.toMatch(/did not stop in time|failed to start/);
  });
});
