/**
 * Records as a foreign producer could write them straight to the topic (no ingest in front):
 * whitespace with line feeds, carriage returns and tabs, escapes in id and type, Unicode, an
 * event time before 1970, epoch-millisecond times, and invalid records around them (a repeated
 * field name among them). The lake
 * writer's staging file (stagingBuffer.ts) must carry every valid one into the lake exactly: id,
 * type and event time as JSON.parse and the validator read them, the raw text byte for byte, the
 * record key's bytes; the invalid ones go to the dead-letter topic, and those that are still
 * readable JSON objects stay in the lake with NULL typed columns (another mapping may read them).
 * Checked with DuckDB and with hyparquet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeLoggedEvent } from '../../services/events/event.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { logger } from '../../services/observability/logger.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { catchUpLake } from '../batchCycle.ts';
import { createTopic, kafkaLog, readLakeWithDuckDb, readLakeWithHyparquet, readTopic, testLake } from './batchTestKit.ts';

const quiet = logger.child({}, { level: 'warn' });

const VALID = [
  '{"id":"a1","type":"click","ts":"2026-11-21T10:00:00.000Z","cost":1.5}',
  '{"id":"a2",\n"type":"click",\n"ts":"2026-11-21T10:00:01.000Z"}',
  '{"id":"a3",\r\n"type":"click","ts":"2026-11-21T10:00:02.000Z"}',
  '{ "id" : "a4" ,\t"type" : "view" , "ts" : 1763719203000 }',
  '{"id":"a\\u00355","type":"cl\\"ick\\"","ts":"2026-11-21T10:00:04.000Z"}',
  '{"id":"a6 ☕ Zoë","type":"日本","ts":"2026-11-21T10:00:05.000Z"}',
  '{"id":"a7","type":"old","ts":"1969-07-20T20:17:40.000Z"}',
  '{"id":"a8","type":"click","ts":"2026-11-21T12:00:00+02:00","note":"tab\\there"}',
];
/** No events under the flat model, but readable JSON objects: kept with NULL typed columns. */
const READABLE_INVALID = [
  '{"id":"b1","ts":"2026-11-21T10:00:00Z"}',
  '{"id":"b2","type":"x","ts":"yesterday"}',
  '{"id":"b4","type":"x","ts":"2026-11-21T10:00:00Z","nested":{"a":[1,{"b":null}]}}',
];
const INVALID = [
  'not json',
  ...READABLE_INVALID,
  '',
  // A repeated name: JSON.parse would keep the last value, DuckDB the first; refused.
  '{"id":"b3","type":"click","type":"twice","ts":"2026-11-21T10:00:06.000Z"}',
];

describe('lake writer: unusual records from a foreign producer', () => {
  const dir = tempDir('lk-lake-unusual-');
  let log: EventLog;
  const topic = uniqueName('lake-unusual');

  beforeAll(async () => {
    log = kafkaLog();
    await createTopic(log, topic, 2);
    const producer = await log.producer();
    try {
      const lines = [...VALID, ...INVALID];
      await producer.send(
        topic,
        lines.map((value, i) => ({ key: `k${i}`, value })),
      );
    } finally {
      await producer.close();
    }
  });
  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
  });

  it(
    'keeps every valid record exactly, dead-letters the rest, keeps the readable ones with NULL typed columns',
    { timeout: 60_000 },
    async () => {
      const lake = await testLake(dir.path, topic);
      await catchUpLake({ log, topic, groupId: `${topic}-lake`, lake, rollBytes: 1 << 20, rollIntervalMs: 60_000, logger: quiet });
      // The oracle: the validator's reading of each record, by raw text.
      const expected = new Map<string, { id: string; type: string; ts: number }>();
      for (const raw of VALID) {
        const v = decodeLoggedEvent(Buffer.from(raw));
        if (!v.ok) throw new Error(`fixture ${raw} should be valid: ${v.rejection.message}`);
        expected.set(raw, { id: v.event.id, type: v.event.type, ts: v.event.ts });
      }
      const lines = [...VALID, ...INVALID];
      for (const read of [readLakeWithDuckDb, readLakeWithHyparquet]) {
        const rows = await read(lake);
        expect(rows.map((r) => r.raw).sort(), read.name).toEqual([...VALID, ...READABLE_INVALID].sort());
        for (const r of rows) {
          const e = expected.get(r.raw) ?? { id: null, type: null, ts: null };
          expect({ id: r.id, type: r.type, ts: r.ts_ms }, `${read.name}: ${JSON.stringify(r.raw)}`).toEqual(e);
          // The record key as sent, and the mapping the typed columns follow.
          expect(r.kafka_key, r.raw).toBe(Buffer.from(`k${lines.indexOf(r.raw)}`).toString('hex'));
          expect(r.event_mapping).toBe('flat');
        }
      }
      const dead = (await readTopic(log, `${topic}.dlq`)).flat();
      expect(dead).toHaveLength(INVALID.length);
    },
  );
});
