/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here. */
/**
 * `pipeline { deadLetters }`: serving follows the dead-letter topic (`<topic>.dlq`) on the real
 * broker and counts its records by reason: the lines the real `lk produce` refused (with the
 * reasons it printed), records another producer wrote without a readable reason (counted as
 * "unreadable", never fatal), dead letters that arrive while serving runs, and a topic that does
 * not exist yet when serving starts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadLetterTopic, eventTopicSpecs } from '../../services/log/topics.ts';
import { runLk } from '../../test/cli.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../test/helpers.ts';
import { gqlData, startTestServer, testLog, type TestServer } from './fixtures/testServer.ts';

const QUERY =
  '{ pipeline { deadLetters { topic topicExists caughtUp total lastAt lastError byReason { reason count lastAt lastMessage } } } }';

async function deadLetters(server: TestServer): Promise<any> {
  return (await gqlData<any>(server.url, QUERY)).pipeline.deadLetters;
}

function countsOf(dl: any): Record<string, number> {
  return Object.fromEntries(dl.byReason.map((r: any) => [r.reason, r.count]));
}

describe('dead letters by reason', () => {
  const dir = tempDir('lk-serve-dlq-');
  const topic = uniqueName('dlq-events');
  const log = testLog('lk-serve-dlq-test');
  let server: TestServer | undefined;

  async function produce(lines: string[]): Promise<string> {
    const r = await runLk(['produce', '--topic', topic, '--data-dir', dir.path], {
      env: { KAFKA_BROKERS: testBrokers() },
      input: lines.join('\n') + '\n',
    });
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  }

  beforeAll(async () => {
    await log.createTopics(eventTopicSpecs(topic, 3));
  });

  afterAll(async () => {
    await server?.close();
    await log.close();
    dir.remove();
  });

  it('counts what lk produce refused, and records without a reason as unreadable', async () => {
    const out = await produce([
      '{"id":"ok-1","type":"click","ts":"2026-01-01T00:00:00Z"}',
      '{"id":"x1","type":"click","ts":"yesterday"}',
      '{"id":"x2","type":"click","ts":"last week"}',
      'not json at all',
      '{"type":"click","ts":"2026-01-01T00:00:00Z"}',
    ]);
    expect(out).toMatch(/invalid_ts\s+2/);
    // Another producer writes junk to the dead-letter topic: no headers, a reason that is no code.
    const producer = await log.producer();
    await producer.send(deadLetterTopic(topic), [
      { key: null, value: 'no headers at all' },
      { key: 'k', value: null, headers: { 'lk.reason': 'Not A Reason!', 'lk.ingested-at': 'whenever' } },
    ]);
    await producer.close();

    server = await startTestServer(dir.path, { eventsTopic: topic });
    const dl = await eventually(async () => {
      const d = await deadLetters(server!);
      return d.caughtUp && d.total === 6 ? d : undefined;
    }, 'dead letters counted');
    expect(dl.topic).toBe(`${topic}.dlq`);
    expect(dl.topicExists).toBe(true);
    expect(dl.lastError).toBeNull();
    expect(countsOf(dl)).toEqual({ invalid_ts: 2, invalid_json: 1, missing_field: 1, unreadable: 2 });
    // Most frequent first, ties by reason.
    expect(dl.byReason.map((r: any) => r.reason)).toEqual(['invalid_ts', 'unreadable', 'invalid_json', 'missing_field']);
    const ts = dl.byReason.find((r: any) => r.reason === 'invalid_ts');
    expect(ts.lastMessage).toMatch(/ts/);
    expect(Date.parse(ts.lastAt)).toBeGreaterThan(Date.now() - 10 * 60_000);
    expect(Date.parse(dl.lastAt)).toBeGreaterThanOrEqual(Date.parse(ts.lastAt));
  });

  it('counts dead letters that arrive while serving runs', async () => {
    await produce(['{"id":"x3","type":"click","ts":"tomorrow"}', '{"id":"x4","type":"click","ts":"2026-01-01T00:00:00Z","n":{"a":1}}']);
    const dl = await eventually(async () => {
      const d = await deadLetters(server!);
      return d.total === 8 ? d : undefined;
    }, 'new dead letters counted');
    expect(countsOf(dl)).toEqual({ invalid_ts: 3, invalid_json: 1, missing_field: 1, unreadable: 2, nested_value: 1 });
  });

  it('a dead-letter topic created after serving started is found and followed', async () => {
    const later = uniqueName('dlq-later');
    const other = await startTestServer(dir.path, { eventsTopic: later });
    try {
      const before = await deadLetters(other);
      expect(before).toMatchObject({ topic: `${later}.dlq`, topicExists: false, total: 0, byReason: [] });
      await log.createTopics(eventTopicSpecs(later, 1));
      const producer = await log.producer();
      await producer.send(deadLetterTopic(later), [
        { key: 'a:1', value: 'x', headers: { 'lk.reason': 'invalid_json', 'lk.message': 'nope' } },
      ]);
      await producer.close();
      const dl = await eventually(async () => {
        const d = await deadLetters(other);
        return d.total === 1 ? d : undefined;
      }, 'dead letters of a topic created later');
      expect(dl.byReason).toEqual([{ reason: 'invalid_json', count: 1, lastAt: dl.lastAt, lastMessage: 'nope' }]);
    } finally {
      await other.close();
    }
  });
});
