/**
 * Every limit on the work of a request refuses with its code and a message naming its flag, over
 * HTTP and over WebSocket alike:
 * - aliases and root fields are capped before validation (5,000 aliases of a one-window series,
 *   the issue's flood, are refused at once);
 * - each resolver call has a base cost, so aliases of a cheap field add up; fragments spreading
 *   each other do not escape the cost, nor make it slow to compute;
 * - key-walking queries cost the keys they walk;
 * - the execution budget cuts a request off (503);
 * - the rate limit answers 429 with Retry-After, per token (another token is not affected), and
 *   a client in debt sending large bodies reads its 429s over a kept-alive connection;
 * - subscriptions: refused while their client is in debt, capped per client, and their events
 *   are charged to the same bucket.
 */
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { sha256Entry } from '../auth/tokensFile.ts';
import { publishSpeedRows, publishSyntheticBatchRun } from './fixtures/viewFixtures.ts';
import { startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const START = Date.UTC(2026, 0, 1);
const KEYS = 300;
const WINDOWS = 1440;
const TOKENS = { a: 'token-a-0123456789abcdef', b: 'token-b-0123456789abcdef', sub: 'token-sub-0123456789abcdef' };
const iso = (t: number) => new Date(t).toISOString();
const HOUR = `from: "${iso(START)}", to: "${iso(START + 3_600_000)}"`;
const DAY = `from: "${iso(START)}", to: "${iso(START + 86_400_000)}"`;

interface Answer {
  status: number;
  retryAfter: string | null;
  code: string | undefined;
  message: string | undefined;
  data: Record<string, unknown> | undefined;
}

async function post(url: string, query: string, token?: string): Promise<Answer> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query }),
  });
  const body = (await res.json()) as { data?: Record<string, unknown>; errors?: { message: string; extensions?: { code?: string } }[] };
  return {
    status: res.status,
    retryAfter: res.headers.get('retry-after'),
    code: body.errors?.[0]?.extensions?.code,
    message: body.errors?.[0]?.message,
    data: body.data,
  };
}

describe('limits on the work of a request', () => {
  const dir = tempDir('lk-serve-limits-');
  const version = uniqueName('lm').toLowerCase().slice(-24);
  let server: TestServer;

  beforeAll(async () => {
    await publishSyntheticBatchRun(dir.path, version, { keys: KEYS, windows: WINDOWS, start: START });
    server = await startTestServer(dir.path, { defaultVersion: version, maxCost: 250_000 });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  it("5,000 aliases of a one-window series (the issue's flood) are refused before validation: TOO_MANY_ALIASES", async () => {
    const one = `series(metric: "clicks_by_ad", key: "ad-1", granularity: MINUTE, from: "${iso(START)}", to: "${iso(START + 60_000)}") { count }`;
    const r = await post(server.url, `{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: ${one}`).join(' ')} }`);
    expect(r.status).toBe(400);
    expect(r.code).toBe('TOO_MANY_ALIASES');
    expect(r.message).toBe(
      'the query has 5000 aliased fields; the limit is 50 (--max-aliases): ask for one value per field, or send several requests',
    );
    // The same field 5,000 times without aliases (quadratic to validate) is refused too: root fields.
    const plain = await post(server.url, `{ ${Array(5000).fill(one).join(' ')} }`);
    expect(plain.status).toBe(400);
    expect(plain.code).toBe('TOO_MANY_ROOT_FIELDS');
    expect(plain.message).toBe('the operation has 5000 root fields; the limit is 25 (--max-root-fields)');
  });

  it('root fields are counted through fragments', async () => {
    const r = await post(
      server.url,
      `query Q { ...A ...A } fragment A on Query { ${Array.from({ length: 13 }, (_, i) => `m${i}: metrics { name }`).join(' ')} }`,
    );
    expect(r.code).toBe('TOO_MANY_ROOT_FIELDS');
    expect(r.message).toBe('the operation Q has 26 root fields; the limit is 25 (--max-root-fields)');
  });

  it('each resolver call has a base cost: aliases of a cheap root field add up', async () => {
    const strict = await startTestServer(dir.path, { defaultVersion: version, maxCost: 2_000 });
    try {
      // metrics { name }: a resolver call (100) + 3 metrics x 1 = 103 each.
      const query = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `m${i}: metrics { name }`).join(' ')} }`;
      expect((await post(strict.url, query(18))).status).toBe(200);
      const over = await post(strict.url, query(20));
      expect(over.status).toBe(400);
      expect(over.code).toBe('QUERY_TOO_COSTLY');
      expect(over.message).toMatch(
        `query cost ${20 * 103 + Math.ceil(query(20).length / 10)} exceeds the limit of 2000 (--max-cost); ask for fewer fields`,
      );
    } finally {
      await strict.close();
    }
  });

  it('fragments that spread each other ten times over, eight deep, are refused at once, not expanded', async () => {
    // 10^8 root fields once expanded; measured with one pass per fragment.
    const fragments = Array.from(
      { length: 8 },
      (_, d) =>
        `fragment F${d} on Query { ${
          d === 7
            ? 'metrics { name }'
            : Array(10)
                .fill(`...F${d + 1}`)
                .join(' ')
        } }`,
    );
    const r = await post(server.url, `query Bomb { ...F0 } ${fragments.join(' ')}`);
    expect(r.status).toBe(400);
    expect(r.code).toBe('TOO_MANY_ROOT_FIELDS');
    expect(r.message).toBe('the operation Bomb has 10000000 root fields; the limit is 25 (--max-root-fields)');
  });

  it('a query walking every key costs the windows it walks', async () => {
    // topKeys over 300 keys x 1,440 windows: 100 + 432,000 / 32 + 10 x 1 = 13,610, plus the text.
    const text = `{ topKeys(metric: "clicks_by_ad", granularity: MINUTE, ${DAY}, limit: 10) { count } }`;
    const strict = await startTestServer(dir.path, { defaultVersion: version, maxCost: 13_000 });
    try {
      await eventually(() => (strict.handle.ready() ? true : undefined), 'ready');
      const r = await post(strict.url, text);
      expect(r.code).toBe('QUERY_TOO_COSTLY');
      expect(r.message).toMatch(`query cost ${13_610 + Math.ceil(text.length / 10)} exceeds the limit of 13000`);
      // One hour walks 60 windows per key: 100 + 18,000 / 32 + 10 = 673.
      expect((await post(strict.url, text.replace(DAY, HOUR))).status).toBe(200);
    } finally {
      await strict.close();
    }
  });

  it('a request over its execution budget is cut off: 503 EXECUTION_BUDGET_EXCEEDED, naming --execution-budget', async () => {
    // 1 ms of event loop: reconciling 300 keys x 1,440 windows takes longer on any machine.
    const tight = await startTestServer(dir.path, { defaultVersion: version, executionBudgetMs: 1 });
    try {
      await eventually(() => (tight.handle.ready() ? true : undefined), 'ready');
      const r = await post(tight.url, `{ reconciliation(metric: "clicks_by_ad", granularity: MINUTE, ${DAY}) { keysCompared } }`);
      expect(r.status).toBe(503);
      expect(r.code).toBe('EXECUTION_BUDGET_EXCEEDED');
      expect(r.message).toMatch(/more than its budget of 1 ms \(--execution-budget\), and was cut off/);
      const metrics = await (await fetch(`${tight.url}/metrics`)).text();
      expect(metrics).toMatch(/^lk_serve_execution_cutoffs_total [1-9]/m);
      expect(metrics).toMatch(/^lk_serve_refusals_total\{code="EXECUTION_BUDGET_EXCEEDED"\} [1-9]/m);
    } finally {
      await tight.close();
    }
  });
});

describe('rate limits per client', () => {
  const dir = tempDir('lk-serve-rate-');
  const version = uniqueName('rl').toLowerCase().slice(-24);
  let server: TestServer;
  const clients: Client[] = [];

  beforeAll(async () => {
    await publishSyntheticBatchRun(dir.path, version, { keys: 10, windows: WINDOWS, start: START });
    const tokens = join(dir.path, 'tokens.yaml');
    writeFileSync(
      tokens,
      `tokens:\n${Object.entries(TOKENS)
        .map(([name, t]) => `  - { name: ${name}, role: reader, hash: "${sha256Entry(t)}" }`)
        .join('\n')}\n`,
    );
    // 10 units a second: a client in debt stays so for the whole test, however slow the machine.
    server = await startTestServer(dir.path, {
      defaultVersion: version,
      tokensFile: tokens,
      rateLimit: 10,
      rateBurst: 20_000,
      maxSubscriptions: 2,
    });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.dispose()));
    await server?.close();
    dir.remove();
  });

  // 100 + 1,440 x 6 = 8,740 + the text: the third one puts the client in debt.
  const costly = `{ series(metric: "clicks_by_ad", key: "ad-1", granularity: MINUTE, ${DAY}) { windowStart count sum min max source } }`;

  it('a client in debt gets 429 RATE_LIMITED with Retry-After; another token is not affected', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post(server.url, costly, TOKENS.a)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const r = await post(server.url, costly, TOKENS.a);
    expect(r.status).toBe(429);
    expect(r.code).toBe('RATE_LIMITED');
    expect(r.message).toMatch(
      /^the token "a" has spent its budget of 10 cost units per second \(--rate-limit; at most 20000 at once, --rate-burst\): retry after \d+ s$/,
    );
    // About 6,500 units of debt at 10 a second.
    expect(Number(r.retryAfter)).toBeGreaterThan(300);
    expect((await post(server.url, costly, TOKENS.b)).status).toBe(200);
  });

  it('a client in debt that sends large bodies reads each 429 over its kept-alive connection (no EPIPE)', async () => {
    // TOKENS.a is in debt (above). Its body is not parsed, but it is read: a server that answers
    // and closes while the client still writes makes the client fail with EPIPE or ECONNRESET
    // instead of reading the 429 and its Retry-After (bench:serve's abuser failed so).
    const big = JSON.stringify({ query: '{ metrics { name } }', padding: 'x'.repeat(700_000) });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers: { status: number; retryAfter: string | undefined; code: string | undefined }[] = [];
      for (let i = 0; i < 8; i++) {
        answers.push(
          await new Promise((resolve, reject) => {
            const req = request(
              `${server.url}/graphql`,
              {
                method: 'POST',
                agent,
                headers: {
                  'content-type': 'application/json',
                  'content-length': Buffer.byteLength(big),
                  authorization: `Bearer ${TOKENS.a}`,
                },
              },
              (res) => {
                const chunks: Buffer[] = [];
                res.on('data', (c: Buffer) => chunks.push(c));
                res.on('end', () => {
                  const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { errors?: { extensions?: { code?: string } }[] };
                  resolve({
                    status: res.statusCode ?? 0,
                    retryAfter: res.headers['retry-after'],
                    code: body.errors?.[0]?.extensions?.code,
                  });
                });
                res.on('error', reject);
              },
            );
            req.on('error', reject);
            req.end(big);
          }),
        );
      }
      expect(answers.map((a) => `${a.status} ${a.code}`)).toEqual(Array(8).fill('429 RATE_LIMITED'));
      for (const a of answers) expect(Number(a.retryAfter)).toBeGreaterThan(0);
    } finally {
      agent.destroy();
    }
  });

  it('subscriptions: refused while in debt, at most --max-subscriptions per client, events charged to the same bucket', async () => {
    const wsUrl = `${server.url.replace('http', 'ws')}/graphql`;
    const events = new Map<string, number>();
    const subscribe = (token: string, key: string) =>
      new Promise<{ error?: { message: string; extensions?: { code?: string } }; next?: unknown }>((resolve) => {
        const client = createClient({
          url: wsUrl,
          webSocketImpl: WebSocket,
          retryAttempts: 0,
          connectionParams: { authorization: `Bearer ${token}` },
        });
        clients.push(client);
        client.subscribe(
          { query: `subscription { windowUpdated(metric: "clicks_by_ad", key: "${key}", granularity: MINUTE) { count } }` },
          {
            next: (value) => {
              events.set(key, (events.get(key) ?? 0) + 1);
              resolve({ next: value });
            },
            error: (err) => resolve({ error: (Array.isArray(err) ? err[0] : err) as { message: string } }),
            complete: () => undefined,
          },
        );
      });
    // /metrics costs nothing, but is refused at the door while its token is in debt: a free probe.
    const inDebt = async (token: string) =>
      (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).status === 429;

    // Token a is in debt (previous test).
    expect(await inDebt(TOKENS.a)).toBe(true);
    const refused = await subscribe(TOKENS.a, 'ad-1');
    expect(refused.error?.extensions?.code).toBe('RATE_LIMITED');
    expect(refused.error?.message).toMatch(/--rate-limit/);

    // Token sub: two subscriptions, the third refused.
    const first = subscribe(TOKENS.sub, 'ad-2');
    void subscribe(TOKENS.sub, 'ad-3');
    await eventually(async () => {
      const m = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKENS.b}` } })).text();
      return /^lk_serve_subscriptions 2$/m.test(m) ? true : undefined;
    }, 'two subscriptions open');
    const third = await subscribe(TOKENS.sub, 'ad-4');
    expect(third.error?.extensions?.code).toBe('TOO_MANY_SUBSCRIPTIONS');
    expect(third.error?.message).toBe('sub already has 2 subscriptions open; the limit is 2 per client (--max-subscriptions)');
    expect(await inDebt(TOKENS.sub)).toBe(false);

    // 600 windows of ad-2 change: each event delivered costs the subscription's cost (about 110
    // units), so sub's 20,000 run out after about 180 events, and the rest wait (coalesced).
    const log = testLog('lk-serve-limits-events');
    try {
      const rows = Array.from({ length: 600 }, (_, w) => ({
        metric: 'clicks_by_ad',
        granularity: 'minute' as const,
        key: 'ad-2',
        windowStart: START + w * 60_000,
        partition: 0,
        count: 99,
        sum: 1,
        min: 1,
        max: 1,
        distinctSketch: null,
        misplaced: 0,
        throughOffset: 2_000_000 + w,
        processingTime: START + 86_400_000 + w,
      }));
      await publishSpeedRows(log, version, rows, `lk-limits-${version}`);
    } finally {
      await log.close();
    }
    expect((await first).next).toBeDefined();
    await eventually(async () => ((await inDebt(TOKENS.sub)) ? true : undefined), 'sub in debt through its events alone');
    expect(events.get('ad-2')).toBeLessThan(600);
    expect(events.has('ad-3')).toBe(false);
  });
});
