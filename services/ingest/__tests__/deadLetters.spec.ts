/**
 * `lk produce` against the real broker: every bad line lands in the dead-letter topic with the
 * right reason, source and line number; every valid line around them is delivered, keyed so
 * that copies of one id share a partition.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BAD_INPUTS } from '../../events/__tests__/badInputs.ts';
import { KafkaLog } from '../../log/kafka/kafkaLog.ts';
import { partitionForKey } from '../../log/partitioner.ts';
import { eventTopicSpecs } from '../../log/topics.ts';
import type { LogRecord } from '../../log/eventLog.ts';
import { readDeadLetter } from '../deadLetter.ts';
import { runLk } from '../../../test/cli.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../../test/helpers.ts';

const dir = tempDir();
afterAll(() => dir.remove());

async function readTopic(log: KafkaLog, topic: string): Promise<LogRecord[]> {
  const ends = await log.endOffsets(topic);
  const total = ends.reduce((a, b) => a + b, 0);
  const consumer = log.consumer({ groupId: uniqueName('reader'), fromBeginning: true });
  const out: LogRecord[] = [];
  await consumer.subscribe([topic]);
  await consumer.run({ eachBatch: async (b) => void out.push(...b.records) });
  await eventually(() => (out.length >= total ? true : undefined), `${total} records of ${topic}`);
  await consumer.stop();
  return out;
}

describe('lk produce with dead letters (real broker)', () => {
  it('delivers every valid line and dead-letters every bad one with its reason and line', async () => {
    const brokers = testBrokers();
    const log = new KafkaLog({ brokers: brokers.split(',') });
    const topic = uniqueName('ingest');
    await log.createTopics(eventTopicSpecs(topic, 3));

    // valid, bad, valid, bad, ... and a duplicate id; the file ends with a truncated line.
    const lines: Buffer[] = [];
    const expectedValid: string[] = [];
    const expectedBad = new Map<number, string>();
    const now = Date.now();
    const valid = (i: number) =>
      Buffer.from(JSON.stringify({ id: `ok-${i}`, type: 'click', ts: now - 1000, ad_id: `a${i % 3}`, cost: i / 10 }));
    BAD_INPUTS.forEach((bad, i) => {
      lines.push(valid(i));
      expectedValid.push(`ok-${i}`);
      lines.push(bad.raw);
      expectedBad.set(lines.length, bad.code);
    });
    lines.push(valid(0)); // an exact duplicate: valid, delivered again, same partition
    expectedValid.push('ok-0');
    const truncated = Buffer.from('{"id":"cut","type":"click","ts":');
    const file = join(dir.path, 'input.jsonl');
    writeFileSync(file, Buffer.concat([...lines.flatMap((l) => [l, Buffer.from('\n')]), truncated]));
    expectedBad.set(lines.length + 1, 'invalid_json');

    const result = await runLk(['produce', '--brokers', brokers, '--topic', topic, '--file', file]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`accepted ${expectedValid.length} event(s) into ${topic}`);
    expect(result.stdout).toContain(`rejected ${expectedBad.size} line(s) into ${topic}.dlq`);

    const events = await readTopic(log, topic);
    expect(events.map((r) => JSON.parse(r.value!.toString()).id).sort()).toEqual([...expectedValid].sort());
    for (const r of events) {
      const id = r.key!.toString();
      expect(r.partition).toBe(partitionForKey(id, 3));
    }

    const letters = (await readTopic(log, `${topic}.dlq`)).map(readDeadLetter);
    expect(letters).toHaveLength(expectedBad.size);
    const byLine = new Map(letters.map((l) => [l.line, l]));
    for (const [lineNo, code] of expectedBad) {
      const letter = byLine.get(lineNo);
      expect(letter, `dead letter for line ${lineNo}`).toBeDefined();
      expect(letter!.reason, `reason of line ${lineNo}`).toBe(code);
      expect(letter!.source).toBe(file);
      expect(Date.parse(letter!.ingestedAt)).toBeGreaterThanOrEqual(now - 60_000);
    }
    // Raw bytes are kept exactly (head only for the oversized line).
    const binary = BAD_INPUTS.findIndex((b) => b.name === 'binary garbage');
    expect(byLine.get(binary * 2 + 2)!.raw.equals(BAD_INPUTS[binary]!.raw)).toBe(true);
    const oversized = letters.find((l) => l.reason === 'too_large')!;
    expect(oversized.originalBytes).toBeGreaterThan(70 * 1024);
    await log.close();
  });

  it('reads standard input like the console producer', async () => {
    const brokers = testBrokers();
    const log = new KafkaLog({ brokers: brokers.split(',') });
    const topic = uniqueName('stdin');
    await log.createTopics(eventTopicSpecs(topic, 3));
    const input = [0, 1, 2].map((i) => JSON.stringify({ id: `s${i}`, type: 'view', ts: Date.now() })).join('\n') + '\n';
    const result = await runLk(['produce', '--topic', topic], { input, env: { KAFKA_BROKERS: brokers } });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('accepted 3 event(s)');
    expect((await log.endOffsets(topic)).reduce((a, b) => a + b, 0)).toBe(3);
    await log.close();
  });
});
