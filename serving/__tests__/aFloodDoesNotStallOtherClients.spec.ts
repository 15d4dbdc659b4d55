/**
 * One client floods the server with the costliest requests it accepts (ten key-walking topKeys
 * per request, just under --max-cost, four at a time, without waiting between refusals), while
 * another client asks a small query again and again. What must hold, without timing anything:
 * - every request of the well-behaved client is answered, with data;
 * - the flood is limited by its own rate limit: refused with 429 RATE_LIMITED and a Retry-After,
 *   the message naming --rate-limit, while the other client's bucket is untouched;
 * - a costly request gives the event loop back while it runs: a small request sent while it
 *   executes is answered before it (the order of the answers, not their times).
 * The well-behaved client's latencies are printed (figures, not assertions: bench:serve measures).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { sha256Entry } from '../auth/tokensFile.ts';
import { publishSyntheticBatchRun } from './fixtures/viewFixtures.ts';
import { startTestServer, type TestServer } from './fixtures/testServer.ts';

const START = Date.UTC(2026, 0, 1);
const KEYS = 500;
const WINDOWS = 1440;
const ABUSER = 'abuser-token-0123456789abcdef';
const POLITE = 'polite-token-0123456789abcdef';
const PROBE = 'probe-token-0123456789abcdef';

const day = (from: number) => `from: "${new Date(from).toISOString()}", to: "${new Date(from + 86_400_000).toISOString()}"`;
/** Ten topKeys over every key and a day of minutes: 10 x (100 + 500 x 1,440 / 32 + 10) + the text, about 226,500 < 250,000. */
const COSTLIEST = `{ ${Array.from({ length: 10 }, (_, i) => `t${i}: topKeys(metric: "clicks_by_ad", granularity: MINUTE, ${day(START)}, limit: 10) { count }`).join(' ')} }`;
const SMALL = `{ total(metric: "clicks_by_ad", key: "ad-7", granularity: MINUTE, ${day(START)}) { count } }`;

interface Answer {
  status: number;
  retryAfter: string | null;
  body: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
}

async function post(url: string, query: string, token: string): Promise<Answer> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Answer['body'] };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${POLITE}` } })).text();
  const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('a flood from one client does not stall the others', () => {
  const dir = tempDir('lk-serve-flood-');
  const version = uniqueName('fl').toLowerCase().slice(-24);
  let server: TestServer;

  beforeAll(async () => {
    await publishSyntheticBatchRun(dir.path, version, { keys: KEYS, windows: WINDOWS, start: START });
    const tokens = join(dir.path, 'tokens.yaml');
    writeFileSync(
      tokens,
      [
        'tokens:',
        ...[
          ['abuser', ABUSER],
          ['polite', POLITE],
          ['probe', PROBE],
        ].map(([name, token]) => `  - { name: ${name}, role: reader, hash: "${sha256Entry(token!)}" }`),
      ].join('\n'),
    );
    // lk serve's default limits, but a 1 ms slice (every costly request yields many times) and a
    // rate limit that admits about one costly request every two seconds: the flood is refused
    // however fast or slow the machine runs it.
    server = await startTestServer(dir.path, {
      defaultVersion: version,
      tokensFile: tokens,
      executionSliceMs: 1,
      rateLimit: 100_000,
      rateBurst: 500_000,
      // Other test files share the cores: a costly request must not be cut off because it waited for a core.
      executionBudgetMs: 10_000,
    });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  it('the costliest accepted request is accepted once: it is what the flood sends', async () => {
    const r = await post(server.url, COSTLIEST, PROBE);
    expect(r.status, JSON.stringify(r.body).slice(0, 500)).toBe(200);
    expect((r.body.data as Record<string, unknown[]>).t9).toHaveLength(10);
  });

  it('a small request sent while a costly one runs is answered first: the costly one yields', async () => {
    const yieldsBefore = await metric(server.url, 'lk_serve_execution_yields_total');
    const order: string[] = [];
    const costly = post(server.url, COSTLIEST, PROBE).then((r) => {
      order.push('costly');
      return r;
    });
    // The costly request is running once it has yielded (the event loop answers /metrics meanwhile).
    await eventually(
      async () => ((await metric(server.url, 'lk_serve_execution_yields_total')) > yieldsBefore ? true : undefined),
      'a yield',
    );
    const small = await post(server.url, SMALL, POLITE);
    order.push('small');
    expect(small.status).toBe(200);
    expect((await costly).status).toBe(200);
    expect(order).toEqual(['small', 'costly']);
  });

  it('while four connections flood, every small request succeeds and the flood is refused 429 with Retry-After', async () => {
    let flooding = true;
    const flood: Answer[] = [];
    const abusers = Array.from({ length: 4 }, async () => {
      while (flooding) {
        flood.push(await post(server.url, COSTLIEST, ABUSER));
        await new Promise((r) => setImmediate(r));
      }
    });
    const latencies: number[] = [];
    const answers: Answer[] = [];
    for (let i = 0; i < 60; i++) {
      const t0 = performance.now();
      answers.push(await post(server.url, SMALL, POLITE));
      latencies.push(performance.now() - t0);
    }
    flooding = false;
    await Promise.all(abusers);

    expect(answers.map((a) => a.status)).toEqual(Array(60).fill(200));
    expect(answers.every((a) => (a.body.data as { total: { count: number } }).total.count > 0)).toBe(true);

    const refused = flood.filter((a) => a.status === 429);
    expect(refused.length, `flood statuses: ${flood.map((a) => a.status).join(',')}`).toBeGreaterThan(0);
    for (const r of refused) {
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(r.body.errors?.[0]?.extensions?.code).toBe('RATE_LIMITED');
      expect(r.body.errors?.[0]?.message).toMatch(/the token "abuser" has spent its budget of \d+ cost units per second \(--rate-limit/);
    }
    // Nothing else went wrong with the flood: answered, refused, or (under a slow machine) cut off.
    expect(flood.every((a) => [200, 429, 503].includes(a.status))).toBe(true);
    expect(await metric(server.url, 'lk_serve_refusals_total{code="RATE_LIMITED"}')).toBeGreaterThan(0);

    const sorted = [...latencies].sort((a, b) => a - b);
    const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!.toFixed(1);
    console.log(
      `flood: ${flood.length} costly requests (${flood.filter((a) => a.status === 200).length} answered, ${refused.length} refused 429); ` +
        `well-behaved client: 60/60 answered, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms (in-process client and server; bench:serve measures)`,
    );
  });
});
