/**
 * Every bad input gets a GraphQL error with a clear message and a stable code, never a stack
 * trace; depth and cost limits refuse before execution; with a token configured every
 * operation but health answers 401; introspection can be turned off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { gql, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';
import { viewTopicSpec } from '../../services/log/topics.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';

const TOKEN = 'test-token-0123456789abcdef';
const DAY = 86_400_000;

function noStack(raw: string): void {
  expect(raw).not.toMatch(/stacktrace|at .*\.ts:\d+|node_modules/);
}

describe('bad input is refused with a code and a clear message', () => {
  const dir = tempDir('lk-serve-input-');
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(dir.path, {
      defaultVersion: uniqueName('bi').toLowerCase().slice(-24),
      maxRangeMs: { minute: DAY, hour: 10 * DAY, day: 100 * DAY },
      maxTopKeys: 50,
      maxDepth: 4,
      maxCost: 5000,
    });
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  const cases: { name: string; query: string; variables?: Record<string, unknown>; code: string; message: RegExp; status?: number }[] = [
    {
      name: 'unknown metric',
      query:
        '{ series(metric: "nope", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { count } }',
      code: 'UNKNOWN_METRIC',
      message: /unknown metric "nope"; known metrics: impressions_by_campaign, clicks_by_ad, spend_by_campaign/,
    },
    {
      name: 'unknown metric in topKeys',
      query: '{ topKeys(metric: "nope", granularity: HOUR, from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { key } }',
      code: 'UNKNOWN_METRIC',
      message: /unknown metric "nope"/,
    },
    {
      name: 'unknown metric in total',
      query: '{ total(metric: "nope", from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { count } }',
      code: 'UNKNOWN_METRIC',
      message: /unknown metric "nope"/,
    },
    {
      name: 'granularity the metric does not have',
      query:
        '{ series(metric: "clicks_by_ad", key: "k", granularity: DAY, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { count } }',
      code: 'UNSUPPORTED_GRANULARITY',
      message: /metric "clicks_by_ad" has no DAY windows; it has MINUTE, HOUR/,
    },
    {
      name: 'from after to',
      query:
        '{ series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z") { count } }',
      code: 'INVALID_RANGE',
      message: /`from` \(2026-01-02T00:00:00.000Z\) is after `to` \(2026-01-01T00:00:00.000Z\)/,
    },
    {
      name: 'from after to in total',
      query: '{ total(metric: "clicks_by_ad", from: "2026-01-02T00:00:00Z", to: "2026-01-01T00:00:00Z") { count } }',
      code: 'INVALID_RANGE',
      message: /is after `to`/,
    },
    {
      name: 'range too large for MINUTE',
      query:
        '{ series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:01:00Z") { count } }',
      code: 'RANGE_TOO_LARGE',
      message: /range of 1441m exceeds the 1d limit for MINUTE windows; narrow it or use a coarser granularity/,
    },
    {
      name: 'range too large for HOUR in topKeys',
      query: '{ topKeys(metric: "clicks_by_ad", granularity: HOUR, from: "2026-01-01T00:00:00Z", to: "2026-01-12T00:00:00Z") { key } }',
      code: 'RANGE_TOO_LARGE',
      message: /range of 11d exceeds the 10d limit for HOUR windows/,
    },
    {
      name: 'range too large in reconciliation',
      query:
        '{ reconciliation(metric: "clicks_by_ad", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-03T00:00:00Z") { disagreeingKeys } }',
      code: 'RANGE_TOO_LARGE',
      message: /exceeds the 1d limit for MINUTE/,
    },
    {
      name: 'limit zero',
      query:
        '{ topKeys(metric: "clicks_by_ad", granularity: HOUR, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", limit: 0) { key } }',
      code: 'LIMIT_OUT_OF_BOUNDS',
      message: /limit must be between 1 and 50, got 0/,
    },
    {
      name: 'limit above the cap',
      query:
        '{ topKeys(metric: "clicks_by_ad", granularity: HOUR, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", limit: 51) { key } }',
      code: 'LIMIT_OUT_OF_BOUNDS',
      message: /limit must be between 1 and 50, got 51/,
    },
    {
      name: 'negative limit from a variable',
      query:
        'query($l: Int) { topKeys(metric: "clicks_by_ad", granularity: HOUR, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", limit: $l) { key } }',
      variables: { l: -3 },
      code: 'LIMIT_OUT_OF_BOUNDS',
      message: /got -3/,
    },
    {
      name: 'bad version name',
      query:
        '{ series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z", version: "../etc") { count } }',
      code: 'INVALID_VERSION',
      message: /version "..\/etc" is not a version name/,
    },
    {
      name: 'DateTime without timezone (variable)',
      query:
        'query($f: DateTime!) { series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: $f, to: "2026-01-01T01:00:00Z") { count } }',
      variables: { f: '2026-01-01 00:00' },
      code: 'BAD_USER_INPUT',
      message: /DateTime must be an ISO-8601 date-time with a timezone, e.g. 2026-01-01T00:00:00Z; got "2026-01-01 00:00"/,
      status: 400,
    },
    {
      name: 'DateTime that does not exist (literal)',
      query:
        '{ series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-02-30T00:00:00Z", to: "2026-03-01T01:00:00Z") { count } }',
      code: 'GRAPHQL_VALIDATION_FAILED',
      message: /DateTime must be an ISO-8601 date-time/,
      status: 400,
    },
    {
      name: 'unknown granularity',
      query:
        '{ series(metric: "clicks_by_ad", key: "k", granularity: WEEK, from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { count } }',
      code: 'GRAPHQL_VALIDATION_FAILED',
      message: /Granularity: expected one of MINUTE, HOUR, DAY or a duration \(5m, 15m, 6h, 7d\), got "WEEK"/,
      status: 400,
    },
    {
      name: 'query too deep',
      query:
        '{ pipeline { serving { speedView { partitions { partition } } } } series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z") { partitions { partition } } }',
      code: 'QUERY_TOO_DEEP',
      message: /query depth 5 exceeds the limit of 4 \(--max-depth\)/,
      status: 400,
    },
    {
      name: 'query too costly (aliases do not escape)',
      query: `{ ${Array.from({ length: 10 }, (_, i) => `s${i}: series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-01T12:00:00Z") { count sum }`).join(' ')} }`,
      code: 'QUERY_TOO_COSTLY',
      // 10 x (a resolver call, 100, + 720 windows x 2 fields) + 1,390 bytes of text / 10.
      message: /query cost 15539 exceeds the limit of 5000 \(--max-cost\)/,
      status: 400,
    },
    {
      name: 'syntax error',
      query: '{ series(metric: ',
      code: 'GRAPHQL_PARSE_FAILED',
      message: /Syntax Error/,
      status: 400,
    },
  ];

  for (const c of cases) {
    it(`${c.name} -> ${c.code}`, async () => {
      const r = await gql(server.url, c.query, c.variables);
      expect(r.status).toBe(c.status ?? 200);
      expect(r.errors?.length, r.raw).toBeGreaterThan(0);
      expect(r.errors![0]!.extensions?.code, r.raw).toBe(c.code);
      expect(r.errors![0]!.message).toMatch(c.message);
      noStack(r.raw);
    });
  }

  it('a request that runs out of its time budget gets REQUEST_TIMEOUT', async () => {
    const slow = await startTestServer(dir.path, { defaultVersion: uniqueName('to').toLowerCase().slice(-24), requestTimeoutMs: 1 });
    // A version not open yet, whose speed view topic holds a row: serving must join a consumer
    // group and read the topic before it can answer, far longer than 1 ms. (A version without a
    // topic could be ready within a millisecond on a fast machine: one metadata request.)
    const version = uniqueName('nv').toLowerCase().slice(-20);
    const log = testLog('lk-serve-timeout');
    try {
      await log.createTopics([viewTopicSpec(speedViewTopic(version))]);
      const producer = await log.producer();
      await producer.send(speedViewTopic(version), [{ key: 'k', value: '{}' }]);
      await producer.close();
      const r = await gql(
        slow.url,
        `{ series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: "2026-01-01T00:00:00Z", to: "2026-01-01T01:00:00Z", version: "${version}") { count } }`,
      );
      expect(r.raw).toMatch(/REQUEST_TIMEOUT/);
      noStack(r.raw);
    } finally {
      await slow.close();
      await log.close();
    }
  });
});

describe('bearer-token auth and introspection', () => {
  const dir = tempDir('lk-serve-auth-');
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(dir.path, {
      defaultVersion: uniqueName('au').toLowerCase().slice(-24),
      authToken: TOKEN,
      introspection: false,
    });
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  const metricsQuery = '{ metrics { name } }';

  it('health and readiness answer without a token', async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect([200, 503]).toContain((await fetch(`${server.url}/readyz`)).status);
  });

  it('no token, a wrong token, or a non-bearer scheme: 401 UNAUTHENTICATED on /graphql and /metrics', async () => {
    for (const headers of [
      {},
      { authorization: 'Bearer wrong-token-0123456789' },
      { authorization: `Basic ${TOKEN}` },
      { authorization: `Bearer ${TOKEN}x` },
    ] as Record<string, string>[]) {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query: metricsQuery }),
      });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/Bearer/);
      const body = (await res.json()) as { errors: { extensions: { code: string } }[] };
      expect(body.errors[0]!.extensions.code).toBe('UNAUTHENTICATED');
      const get = await fetch(`${server.url}/graphql?query=${encodeURIComponent(metricsQuery)}`, {
        headers: { ...headers, 'apollo-require-preflight': '1' },
      });
      expect(get.status).toBe(401);
      expect((await fetch(`${server.url}/metrics`, { headers })).status).toBe(401);
    }
  });

  it('the right token passes, over POST and GET, and /metrics', async () => {
    const r = await gql(server.url, metricsQuery, undefined, TOKEN);
    expect(r.status).toBe(200);
    expect(r.data?.metrics).toHaveLength(3);
    const get = await fetch(`${server.url}/graphql?query=${encodeURIComponent(metricsQuery)}`, {
      headers: { authorization: `Bearer ${TOKEN}`, 'apollo-require-preflight': '1' },
    });
    expect(get.status).toBe(200);
    const m = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(m.status).toBe(200);
    expect(await m.text()).toMatch(/lk_serve_graphql_requests_total\{operation="unknown",outcome="unauthenticated"\}/);
  });

  it('subscriptions over WebSocket need the token too', async () => {
    const wsUrl = server.url.replace('http', 'ws') + '/graphql';
    const attempt = (params: Record<string, unknown> | undefined) =>
      new Promise<{ closed?: number; connected?: boolean }>((resolve) => {
        const client = createClient({
          url: wsUrl,
          webSocketImpl: WebSocket,
          retryAttempts: 0,
          lazy: false,
          connectionParams: params,
          // A non-lazy client reports connection problems here (it would throw them otherwise).
          onNonLazyError: () => undefined,
          on: {
            connected: () => {
              resolve({ connected: true });
              void client.dispose();
            },
            closed: (e) => resolve({ closed: (e as { code: number }).code }),
          },
        });
      });
    expect(await attempt(undefined)).toEqual({ closed: 4403 });
    expect(await attempt({ authorization: 'Bearer nope-nope-nope-nope' })).toEqual({ closed: 4403 });
    expect(await attempt({ authorization: `Bearer ${TOKEN}` })).toEqual({ connected: true });
  });

  it('introspection is refused when turned off', async () => {
    const r = await gql(server.url, '{ __schema { types { name } } }', undefined, TOKEN);
    expect(r.status).toBe(400);
    expect(r.errors?.[0]?.message).toMatch(/introspection/i);
    noStack(r.raw);
  });
});
