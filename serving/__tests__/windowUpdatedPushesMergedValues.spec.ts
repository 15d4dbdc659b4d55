/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * windowUpdated over WebSocket (graphql-ws): as speed rows arrive, subscribers get the *merged*
 * window values (speed rows merged with the batch view), only for what they subscribed to, and
 * the last value pushed for each window equals the oracle.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import {
  batchRows,
  expectedEvents,
  oracleWindows,
  partitionedLog,
  publishBatchRun,
  publishSpeedRows,
  speedRows,
} from './fixtures/viewFixtures.ts';
import { METRICS, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 4242);
const START = Date.UTC(2026, 0, 1);

describe('windowUpdated subscription', () => {
  const dir = tempDir('lk-serve-sub-');
  const version = uniqueName('ws').toLowerCase().slice(-24);
  const log = partitionedLog(
    {
      seed: SEED,
      count: 1500,
      startTime: START,
      eventsPerSecond: 2,
      duplicateRate: 0.05,
      lateRate: 0.02,
      lateMinMs: 15 * 60_000,
      lateMaxMs: 20 * 60_000,
      campaigns: 4,
      adsPerCampaign: 2,
      users: 100,
    },
    3,
  );
  const cut = log.ends.map((e) => Math.floor(e * 0.5));
  let server: TestServer;
  let client: Client;

  beforeAll(async () => {
    await publishBatchRun(dir.path, version, 'run-1', log, batchRows(log, METRICS.metrics, cut), cut);
    server = await startTestServer(dir.path, { defaultVersion: version });
    await eventually(() => (server.handle.ready() ? true : undefined), 'ready');
    client = createClient({ url: `${server.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
  });
  afterAll(async () => {
    await client?.dispose();
    await server?.close();
    dir.remove();
  });

  it('pushes the merged value of every window the speed view changes, filtered by metric and key', async () => {
    const def = METRICS.metrics.find((m) => m.name === 'impressions_by_campaign')!;
    const received = new Map<string, any>();
    const otherKeys: string[] = [];
    const errors: unknown[] = [];
    const query = `subscription { windowUpdated(metric: "impressions_by_campaign", key: "c1", granularity: MINUTE) { key windowStart count distinct source batchRunId granularity } }`;
    const unsubscribe = client.subscribe<any>(
      { query },
      {
        next: (msg) => {
          const w = msg.data?.windowUpdated;
          if (!w) return errors.push(msg.errors);
          if (w.key !== 'c1' || w.granularity !== 'MINUTE') otherKeys.push(w.key);
          received.set(w.windowStart, w);
        },
        error: (e) => errors.push(e),
        complete: () => undefined,
      },
    );
    // The subscription is registered once the server acknowledges it; the pipeline query shows it.
    await eventually(async () => {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ pipeline { serving { subscriptions } } }' }),
      });
      const body = (await res.json()) as any;
      return body.data.pipeline.serving.subscriptions === 1 ? true : undefined;
    }, 'subscription registered');

    const run = speedRows(log, METRICS.metrics, log.ends);
    const publisher = testLog('lk-serve-test-publisher');
    try {
      await publishSpeedRows(publisher, version, run.rows, `${version}-tx`);
    } finally {
      await publisher.close();
    }
    const oracle = oracleWindows(expectedEvents(log, def, 'minute', cut, log.ends), def, 'minute', 'c1');
    const pushedWindows = new Set(
      run.rows
        .filter((r) => r.metric === def.name && r.granularity === 'minute' && r.key === 'c1')
        .map((r) => new Date(r.windowStart).toISOString()),
    );
    expect(pushedWindows.size).toBeGreaterThan(5);
    await eventually(
      () => {
        for (const start of pushedWindows) {
          const w = received.get(start);
          const o = oracle.get(Date.parse(start));
          if (!w || !o || w.count !== o.count || w.distinct !== o.distinct) return undefined;
        }
        return true;
      },
      `final merged values pushed (seed ${SEED})`,
      30_000,
    );
    unsubscribe();
    expect(errors).toEqual([]);
    expect(otherKeys).toEqual([]);
    expect([...received.keys()].every((k) => pushedWindows.has(k))).toBe(true);
    // Merged with the batch view: windows below the cut carry batch rows for some partitions.
    expect([...received.values()].every((w) => w.batchRunId === 'run-1')).toBe(true);
    await eventually(async () => {
      const res = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: '{ pipeline { serving { subscriptions } } }' }),
      });
      return ((await res.json()) as any).data.pipeline.serving.subscriptions === 0 ? true : undefined;
    }, 'subscription released');
  });

  it('refuses a subscription to an unknown metric with a coded error', async () => {
    const result = await new Promise<any>((resolve) => {
      client.subscribe(
        { query: 'subscription { windowUpdated(metric: "nope") { count } }' },
        { next: (m) => resolve(m), error: (e) => resolve(e), complete: () => undefined },
      );
    });
    const errors = Array.isArray(result) ? result : result.errors;
    expect(errors[0].extensions.code).toBe('UNKNOWN_METRIC');
  });
});
