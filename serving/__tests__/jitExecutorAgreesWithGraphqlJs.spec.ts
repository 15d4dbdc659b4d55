/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; they are compared whole. */
/**
 * The graphql-jit executor (serving/graphql/jitExecutor.ts) gives graphql-js's answer, to the
 * byte, on queries with aliases, fragments, variables (defaults, enums, DateTime), nulls,
 * @skip/@include, several operations, errors (resolver errors, bad and missing variables) and
 * introspection; answers with errors are re-executed by graphql-js, introspection never goes
 * through graphql-jit, and over HTTP the compiled path is what answers `series`.
 *
 * Both executors run against the same real views: a batch run published to disk and loaded by a
 * real `lk serve` (real Kafka for its speed view), whose version registry the in-process
 * executions share.
 */
import { localState } from '../../test/sharedState.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execute, parse, getOperationAST } from 'graphql/index.js';
import { pino } from 'pino';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import { parseServeConfig } from '../config.ts';
import { ANONYMOUS } from '../auth/roles.ts';
import { ExecutionBudget } from '../graphql/executionBudget.ts';
import { JitQueryCache, executeWithJit } from '../graphql/jitExecutor.ts';
import { deadlineFor, type ServeContext } from '../graphql/resolvers.ts';
import { buildServeSchema } from '../graphql/schema.ts';
import { WindowSubscriptions } from '../subscriptions.ts';
import { publishBatchRun, type BatchRow, type PartitionedLog } from './fixtures/viewFixtures.ts';
import { METRICS, gql, gqlData, startTestServer, type TestServer } from './fixtures/testServer.ts';

const START = Date.UTC(2026, 0, 1);
const FROM = new Date(START).toISOString();
const TO = new Date(START + 2 * 3_600_000).toISOString();
const EMPTY_LOG: PartitionedLog = { partitions: 2, events: [], byPartition: [[], []], ends: [0, 0] };

/** Three keys x 120 minute windows on 2 partitions; ad-2 has no sum (NULL) and only partition 0. */
function rows(): BatchRow[] {
  const out: BatchRow[] = [];
  for (let k = 0; k < 3; k++) {
    for (let w = 0; w < 120; w++) {
      for (let p = 0; p < (k === 2 ? 1 : 2); p++) {
        const count = 1 + ((k + w + p) % 5);
        out.push({
          metric: 'clicks_by_ad',
          granularity: 'minute',
          key: `ad-${k}`,
          windowStart: START + w * 60_000,
          partition: p,
          count,
          sum: k === 2 ? null : count * 0.25,
          min: k === 2 ? null : 0.25,
          max: k === 2 ? null : 0.25 * count,
          distinctSketch: null,
          throughOffset: 100 + w,
          processingTime: START + 7_200_000 + p * 1_337 + k,
          rawCount: count,
          misplaced: 0,
        });
      }
    }
  }
  return out;
}

const SERIES_ARGS = `metric: "clicks_by_ad", granularity: MINUTE, from: "${FROM}", to: "${TO}"`;

interface Case {
  name: string;
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  /** How the executor answers it. */
  expect: 'jit' | 'jit_errors_graphql_js' | 'graphql_js';
  /** What the (reference) answer holds: the comparison is only worth something on real content. */
  holds?: (data: any) => void;
}

const CASES: Case[] = [
  {
    name: 'every WindowValue field, nested per-partition list',
    query: `{ series(${SERIES_ARGS}, key: "ad-0") { key windowStart windowEnd count sum min max distinct source processingTime granularity batchRunId partitions { partition source throughOffset processingTime count } } }`,
    expect: 'jit',
    holds: (d) => {
      expect(d.series).toHaveLength(120);
      expect(d.series[0].partitions).toHaveLength(2);
      expect(d.series[0].batchRunId).toBe('run-1');
    },
  },
  {
    name: 'aliases, several root fields, a key without sums (nulls)',
    query: `{ a: series(${SERIES_ARGS}, key: "ad-1") { start: windowStart n: count } b: series(${SERIES_ARGS}, key: "ad-2") { count sum min max } none: series(${SERIES_ARGS}, key: "nope") { count }
             t: total(metric: "clicks_by_ad", key: "ad-2", from: "${FROM}", to: "${TO}") { metric key granularity from to count sum min max distinct windows batchWindows speedWindows keys latestProcessingTime }
             empty: total(metric: "clicks_by_ad", key: "nope", from: "${FROM}", to: "${TO}") { count sum latestProcessingTime } }`,
    expect: 'jit',
    holds: (d) => {
      expect(d.a).toHaveLength(120);
      expect(d.b[0]).toEqual({ count: 3, sum: null, min: null, max: null });
      expect(d.none).toEqual([]);
      expect(d.t.sum).toBeNull();
      expect(d.empty).toEqual({ count: 0, sum: null, latestProcessingTime: null });
    },
  },
  {
    name: 'seriesColumns: every column (lists of scalars and enums), a key without sums (null elements), no windows',
    query: `{ a: seriesColumns(${SERIES_ARGS}, key: "ad-0") { version metric key granularity from to batchRunId windows windowMs windowBase windowStart windowIndex count sum min max distinct source provisional processingTime latestProcessingTime }
             b: seriesColumns(${SERIES_ARGS}, key: "ad-2") { count sum min max } none: seriesColumns(${SERIES_ARGS}, key: "nope") { windowStart source } }`,
    expect: 'jit',
    holds: (d) => {
      expect(d.a.windowStart).toHaveLength(120);
      expect(d.a.source[0]).toBe('BATCH');
      expect(d.b.sum[0]).toBeNull();
      expect(d.none).toEqual({ windowStart: [], source: [] });
    },
  },
  {
    name: 'named and inline fragments, __typename, a field asked twice',
    query: `query Frag { series(${SERIES_ARGS}, key: "ad-0") { ...W ... on WindowValue { count sum } count __typename } __typename }
            fragment W on WindowValue { windowStart source partitions { ...P } }
            fragment P on PartitionSource { partition count }`,
    expect: 'jit',
  },
  {
    name: 'variables: String, enum, DateTime, Int with a default',
    query: `query($k: String!, $g: Granularity!, $from: DateTime!, $to: DateTime!, $limit: Int = 2) {
              series(metric: "clicks_by_ad", key: $k, granularity: $g, from: $from, to: $to) { windowStart count }
              topKeys(metric: "clicks_by_ad", granularity: $g, from: $from, to: $to, limit: $limit) { key count sum windows } }`,
    variables: { k: 'ad-1', g: 'MINUTE', from: '2026-01-01T00:30:00+00:00', to: '2026-01-01T01:00:00Z' },
    expect: 'jit',
  },
  {
    name: '@skip and @include with variables',
    query: `query($yes: Boolean!, $no: Boolean!) { series(${SERIES_ARGS}, key: "ad-0") { count sum @include(if: $yes) min @skip(if: $yes) max @include(if: $no) } }`,
    variables: { yes: true, no: false },
    expect: 'jit',
  },
  {
    name: 'one of several operations, by name',
    query: `query One { metrics { name key value distinct granularities allowedLatenessMs } } query Two { topKeys(${SERIES_ARGS}, limit: 3) { key count } }`,
    operationName: 'Two',
    expect: 'jit',
  },
  {
    name: 'pipeline and metrics (object and list fields built by resolvers)',
    query: `{ metrics { name description key value distinct granularities allowedLatenessMs } pipeline { version serving { ready batchView { runId rows cut } } batch { lastRun { runId cut rows full } } deadLetters { topic total byReason { reason count } lastAt } } }`,
    expect: 'jit',
  },
  {
    name: 'resolver error with a code (unknown metric)',
    query: `{ series(metric: "nope", key: "ad-0", granularity: MINUTE, from: "${FROM}", to: "${TO}") { count } }`,
    expect: 'jit_errors_graphql_js',
  },
  {
    name: 'resolver error next to a good field (from after to)',
    query: `{ ok: metrics { name } bad: series(metric: "clicks_by_ad", key: "ad-0", granularity: MINUTE, from: "${TO}", to: "${FROM}") { count } }`,
    expect: 'jit_errors_graphql_js',
  },
  {
    name: 'a malformed DateTime variable',
    query: `query($from: DateTime!) { series(metric: "clicks_by_ad", key: "ad-0", granularity: MINUTE, from: $from, to: "${TO}") { count } }`,
    variables: { from: '2026-02-30T00:00:00Z' },
    expect: 'jit_errors_graphql_js',
  },
  {
    name: 'a missing required variable',
    query: `query($k: String!) { series(${SERIES_ARGS}, key: $k) { count } }`,
    variables: {},
    expect: 'jit_errors_graphql_js',
  },
  {
    name: 'a limit out of bounds, from a variable',
    query: `query($limit: Int) { topKeys(${SERIES_ARGS}, limit: $limit) { key } }`,
    variables: { limit: 0 },
    expect: 'jit_errors_graphql_js',
  },
  {
    name: 'introspection of the schema',
    query: `{ __schema { queryType { name } types { name kind } } }`,
    expect: 'graphql_js',
  },
  {
    name: 'introspection of a type, through a fragment',
    query: `{ ...T } fragment T on Query { __type(name: "WindowValue") { name fields { name type { name kind ofType { name } } } } }`,
    expect: 'graphql_js',
  },
];

describe('the graphql-jit executor answers as graphql-js does', () => {
  const dir = tempDir('lk-serve-jit-');
  const version = uniqueName('jit').toLowerCase().slice(-24);
  let server: TestServer;
  const layout = dataDirLayout(dir.path);
  const config = parseServeConfig({ port: 0, dataDir: layout.root, defaultVersion: version }, METRICS);
  const schema = buildServeSchema(new WindowSubscriptions());

  beforeAll(async () => {
    await publishBatchRun(layout.root, version, 'run-1', EMPTY_LOG, rows(), [1000, 1000]);
    server = await startTestServer(dir.path, { defaultVersion: version });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
  });
  afterAll(async () => {
    await server?.close();
    dir.remove();
  });

  const context = (): ServeContext => {
    const deadlineAt = Date.now() + config.requestTimeoutMs;
    const work = new ExecutionBudget({ budgetMs: config.executionBudgetMs, sliceMs: config.executionSliceMs });
    return {
      config,
      state: localState(dir.path),
      caller: { principal: ANONYMOUS, client: 'address:test' },
      work,
      versionsAdmin: {
        retire: () => Promise.reject(new Error('not in this test')),
        propagate: () => Promise.resolve([]),
      },
      logger: pino({ level: 'silent' }),
      charged: 0,
      rootField: 'unknown',
      registry: server.handle.registry,
      defaultVersion: server.handle.defaults.current.version,
      defaultGeneration: server.handle.defaults.current.generation,
      defaults: server.handle.defaults,
      deadlineAt,
      deadline: deadlineFor(deadlineAt, config.requestTimeoutMs, work),
      snapshots: new Map(),
      subscriptionCount: () => 0,
      deadLetters: () => ({
        topic: 'events.dlq',
        topicExists: false,
        caughtUp: true,
        total: 0,
        byReason: [],
        lastAt: null,
        lastError: null,
      }),
    };
  };

  for (const c of CASES) {
    it(c.name, async () => {
      const document = parse(c.query);
      const operation = getOperationAST(document, c.operationName) ?? undefined;
      const reference = await execute({
        schema,
        document,
        contextValue: context(),
        variableValues: c.variables,
        operationName: c.operationName,
      });
      const cache = new JitQueryCache(schema, { onExecuted: () => undefined });
      const run = () =>
        executeWithJit(schema, cache, {
          document,
          operation,
          operationName: c.operationName,
          variables: c.variables,
          contextValue: context(),
        });
      // Twice: the second run uses the compiled query from the cache.
      for (let i = 0; i < 2; i++) {
        const answer = await run();
        expect(JSON.stringify(answer)).toBe(JSON.stringify(reference));
        // The error objects themselves, as Apollo formats them (extensions and AST nodes).
        expect((answer.errors ?? []).map((e) => [e.message, e.extensions, e.nodes?.length, e.path])).toEqual(
          (reference.errors ?? []).map((e) => [e.message, e.extensions, e.nodes?.length, e.path]),
        );
      }
      expect(cache.stats[c.expect]).toBe(2);
      expect(cache.stats.compiled).toBe(c.expect === 'graphql_js' ? 0 : 1);
      c.holds?.(reference.data);
      if (c.expect === 'jit') expect(reference.errors).toBeUndefined();
      else if (c.expect === 'jit_errors_graphql_js') expect(reference.errors?.length).toBeGreaterThan(0);
    });
  }

  it('a subscription operation sent to execute is graphql-js’s too', async () => {
    const document = parse('subscription { windowUpdated(metric: "clicks_by_ad") { count } }');
    const cache = new JitQueryCache(schema);
    const answer = await executeWithJit(schema, cache, {
      document,
      operation: getOperationAST(document) ?? undefined,
      operationName: undefined,
      variables: undefined,
      contextValue: context(),
    });
    const reference = await execute({ schema, document, contextValue: context() });
    expect(JSON.stringify(answer)).toBe(JSON.stringify(reference));
    expect(cache.stats.graphql_js).toBe(1);
  });

  it('an operation name that does not exist gets graphql-js’s error', async () => {
    const document = parse('query A { metrics { name } }');
    const cache = new JitQueryCache(schema);
    const answer = await executeWithJit(schema, cache, {
      document,
      operation: getOperationAST(document, 'B') ?? undefined,
      operationName: 'B',
      variables: undefined,
      contextValue: context(),
    });
    expect(answer.errors?.[0]?.message).toBe('Unknown operation named "B".');
    expect(cache.stats.graphql_js).toBe(1);
  });

  it('over HTTP, series is answered by the compiled query and errors keep their codes', async () => {
    const query = `query($k: String!) { series(${SERIES_ARGS}, key: $k) { windowStart count sum source processingTime } }`;
    const before = server.handle.executionStats();
    const data = await gqlData(server.url, query, { k: 'ad-1' });
    expect(data.series).toHaveLength(120);
    expect(data.series[0]).toEqual({ windowStart: FROM, count: 5, sum: 1.25, source: 'BATCH', processingTime: '2026-01-01T02:00:01.338Z' });
    await gqlData(server.url, query, { k: 'ad-0' });
    const after = server.handle.executionStats();
    expect(after.jit - before.jit).toBe(2);
    expect(after.compiled - before.compiled).toBe(1); // one compilation for both requests

    const bad = await gql(server.url, query.replace('clicks_by_ad', 'nope'), { k: 'ad-1' });
    expect(bad.errors?.[0]?.extensions?.code).toBe('UNKNOWN_METRIC');
    const badVariable = await gql(
      server.url,
      `query($f: DateTime!) { series(metric: "clicks_by_ad", key: "k", granularity: MINUTE, from: $f, to: "${TO}") { count } }`,
      { f: 'yesterday' },
    );
    expect(badVariable.status).toBe(400);
    expect(badVariable.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/lk_serve_graphql_executions_total\{executor="jit"\} [1-9]/);
    expect(metrics).toMatch(/lk_serve_graphql_executions_total\{executor="jit_errors_graphql_js"\} [1-9]/);
  });
});
