/**
 * The contract every event log adapter honours, run against the real Kafka broker and against
 * the embedded log. Assertions compare with values the test itself put in (the oracle).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { InfrastructureError } from '../../errors.ts';
import { EmbeddedLog } from '../embedded/embeddedLog.ts';
import type { EventLog, LogRecord, OutgoingRecord, PartitionOffset, RunOptions } from '../eventLog.ts';
import { KafkaLog } from '../kafka/kafkaLog.ts';
import { partitionForKey } from '../partitioner.ts';
import { eventually, tempDir, testBrokers, uniqueName } from '../../../test/helpers.ts';

interface Adapter {
  name: string;
  open(): EventLog;
}

const dirs: { remove(): void }[] = [];
const adapters: Adapter[] = [
  { name: 'kafka', open: () => new KafkaLog({ brokers: testBrokers().split(',') }) },
  {
    name: 'embedded',
    open: () => {
      const dir = tempDir('lk-embedded-');
      dirs.push(dir);
      return new EmbeddedLog({ root: dir.path });
    },
  },
];

afterAll(() => dirs.forEach((d) => d.remove()));

/** Consumes until `count` records arrived, then stops. */
async function consumeAll(
  log: EventLog,
  topic: string,
  groupId: string,
  count: number,
  extra: Partial<RunOptions> = {},
): Promise<LogRecord[]> {
  const consumer = log.consumer({ groupId, fromBeginning: true });
  const seen: LogRecord[] = [];
  await consumer.subscribe([topic]);
  await consumer.run({
    ...extra,
    eachBatch: async (batch) => {
      seen.push(...batch.records);
    },
  });
  await eventually(() => (seen.length >= count ? true : undefined), `${count} records from ${topic}`);
  // Give a duplicate delivery the chance to show itself before stopping.
  await new Promise((r) => setTimeout(r, 300));
  await consumer.stop();
  return seen;
}

describe.each(adapters)('event log contract: $name', (adapter) => {
  const log = adapter.open();
  afterAll(() => log.close());

  it('creates topics once and reports the existing ones', async () => {
    const topic = uniqueName('contract-create');
    const first = await log.createTopics([{ name: topic, partitions: 3 }]);
    expect(first).toEqual({ created: [topic], existing: [] });
    const second = await log.createTopics([{ name: topic, partitions: 3 }]);
    expect(second).toEqual({ created: [], existing: [topic] });
    expect(await log.partitionCount(topic)).toBe(3);
    expect(await log.listTopics()).toContain(topic);
    expect(await log.endOffsets(topic)).toEqual([0, 0, 0]);
  });

  it('fails with a clear error on a topic that does not exist', async () => {
    await expect(log.partitionCount(uniqueName('missing'))).rejects.toBeInstanceOf(InfrastructureError);
    await expect(log.partitionCount(uniqueName('missing'))).rejects.toThrow(/does not exist/);
  });

  it('places keys like Kafka, keeps order within a partition, and round-trips headers and timestamps', async () => {
    const topic = uniqueName('contract-order');
    await log.createTopics([{ name: topic, partitions: 4 }]);
    const producer = await log.producer();
    const sent: OutgoingRecord[] = [];
    for (let i = 0; i < 400; i++) {
      sent.push({ key: `k${i % 37}`, value: JSON.stringify({ i }), timestamp: 1_700_000_000_000 + i, headers: { seq: String(i) } });
    }
    // Two sends, so that order across calls is covered too.
    await producer.send(topic, sent.slice(0, 150));
    await producer.send(topic, sent.slice(150));
    await producer.close();

    const ends = await log.endOffsets(topic);
    const expectedPerPartition = [0, 0, 0, 0];
    for (const r of sent) expectedPerPartition[partitionForKey(r.key!, 4)]!++;
    expect(ends).toEqual(expectedPerPartition);

    const seen = await consumeAll(log, topic, uniqueName('g'), 400);
    expect(seen).toHaveLength(400);
    for (const r of seen) {
      const i = JSON.parse(r.value!.toString()).i as number;
      expect(r.partition).toBe(partitionForKey(`k${i % 37}`, 4));
      expect(r.key!.toString()).toBe(`k${i % 37}`);
      expect(r.headers.seq).toBe(String(i));
      expect(r.timestamp).toBe(1_700_000_000_000 + i);
    }
    for (let p = 0; p < 4; p++) {
      const inPartition = seen.filter((r) => r.partition === p);
      expect(inPartition.map((r) => r.offset)).toEqual(inPartition.map((_, idx) => idx));
      const order = inPartition.map((r) => JSON.parse(r.value!.toString()).i as number);
      expect(order).toEqual([...order].sort((a, b) => a - b));
    }
  });

  it('resumes a group from its committed offsets, and starts where onAssignment says', async () => {
    const topic = uniqueName('contract-commit');
    await log.createTopics([{ name: topic, partitions: 2 }]);
    const producer = await log.producer();
    await producer.send(
      topic,
      Array.from({ length: 20 }, (_, i) => ({ key: null, value: String(i), partition: i % 2 })),
    );
    await producer.close();
    const group = uniqueName('g');
    const first = log.consumer({ groupId: group, fromBeginning: true });
    const got: LogRecord[] = [];
    await first.subscribe([topic]);
    await first.run({ eachBatch: async (b) => void got.push(...b.records) });
    await eventually(() => (got.length >= 20 ? true : undefined), 'first 20');
    await first.commit([
      { topic, partition: 0, offset: 4 },
      { topic, partition: 1, offset: 7 },
    ]);
    await first.stop();
    expect(await log.committedOffsets(group, topic)).toEqual([4, 7]);

    // Resume from the committed offsets: 10-4 + 10-7 = 9 records.
    const resumed = await consumeAll(log, topic, group, 9);
    expect(resumed.filter((r) => r.partition === 0).map((r) => r.offset)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(resumed.filter((r) => r.partition === 1).map((r) => r.offset)).toEqual([7, 8, 9]);

    // Application-owned positions win over the group's.
    const positions: PartitionOffset[] = [
      { topic, partition: 0, offset: 8 },
      { topic, partition: 1, offset: 2 },
    ];
    const fromApp = await consumeAll(log, topic, group, 10, { onAssignment: async () => positions });
    expect(fromApp.filter((r) => r.partition === 0).map((r) => r.offset)).toEqual([8, 9]);
    expect(fromApp.filter((r) => r.partition === 1).map((r) => r.offset)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('finds offsets by timestamp', async () => {
    const topic = uniqueName('contract-time');
    await log.createTopics([{ name: topic, partitions: 1 }]);
    const producer = await log.producer();
    await producer.send(
      topic,
      Array.from({ length: 10 }, (_, i) => ({ key: null, value: String(i), partition: 0, timestamp: 1_000_000 + i * 1000 })),
    );
    await producer.close();
    expect(await log.offsetsForTimestamp(topic, 1_000_000 + 4500)).toEqual([5]);
    expect(await log.offsetsForTimestamp(topic, 0)).toEqual([0]);
    expect(await log.offsetsForTimestamp(topic, 9_999_999_999)).toEqual([10]);
  });

  it('publishes records and offsets atomically in transactions; aborted records are never read', async () => {
    const input = uniqueName('contract-txn-in');
    const output = uniqueName('contract-txn-out');
    await log.createTopics([
      { name: input, partitions: 1 },
      { name: output, partitions: 2 },
    ]);
    const group = uniqueName('g');
    const producer = await log.producer({ transactionalId: uniqueName('tx') });

    const committed = await producer.transaction();
    await committed.send(output, [
      { key: 'a', value: 'committed-1' },
      { key: 'b', value: 'committed-2' },
    ]);
    await committed.sendOffsets(group, [{ topic: input, partition: 0, offset: 42 }]);
    await committed.commit();

    const aborted = await producer.transaction();
    await aborted.send(output, [{ key: 'a', value: 'aborted' }]);
    await aborted.sendOffsets(group, [{ topic: input, partition: 0, offset: 99 }]);
    await aborted.abort();

    const last = await producer.transaction();
    await last.send(output, [{ key: 'c', value: 'committed-3' }]);
    await last.commit();
    await producer.close();

    expect(await log.committedOffsets(group, input)).toEqual([42]);
    const progress = new Map<number, number>();
    const seen = await consumeAll(log, output, uniqueName('reader'), 3, {
      onProgress: (p) => void progress.set(p.partition, p.nextOffset),
    });
    expect(seen.map((r) => r.value!.toString()).sort()).toEqual(['committed-1', 'committed-2', 'committed-3']);
    // Readers can tell they caught up even though markers follow the last record.
    const ends = await log.endOffsets(output);
    await eventually(
      () => (ends.every((e, p) => e === 0 || (progress.get(p) ?? 0) >= e) ? true : undefined),
      'progress to the end offsets',
    );
  });

  it("commits an offset's metadata with it in a transaction; an aborted one leaves the previous pair", async () => {
    const input = uniqueName('contract-meta-in');
    const output = uniqueName('contract-meta-out');
    await log.createTopics([
      { name: input, partitions: 2 },
      { name: output, partitions: 1 },
    ]);
    const group = uniqueName('g');
    const producer = await log.producer({ transactionalId: uniqueName('tx') });
    // Each with a record, as a checkpoint has: Kafka answers a transaction of offsets alone that
    // follows another at once with CONCURRENT_TRANSACTIONS while it writes the first one's markers.
    const first = await producer.transaction();
    await first.send(output, [{ key: 'a', value: '1' }]);
    await first.sendOffsets(group, [{ topic: input, partition: 1, offset: 7, metadata: 'snapshot 7-f' }]);
    await first.commit();
    const aborted = await producer.transaction();
    await aborted.send(output, [{ key: 'a', value: '2' }]);
    await aborted.sendOffsets(group, [{ topic: input, partition: 1, offset: 9, metadata: 'snapshot 9-d' }]);
    await aborted.abort();
    const plain = await producer.transaction();
    await plain.send(output, [{ key: 'a', value: '3' }]);
    await plain.sendOffsets(group, [{ topic: input, partition: 0, offset: 3 }]);
    await plain.commit();
    await producer.close();
    expect(await log.committedOffsetsWithMetadata(group, input)).toEqual([
      { offset: 3, metadata: '' },
      { offset: 7, metadata: 'snapshot 7-f' },
    ]);
    expect(await log.committedOffsets(group, input)).toEqual([3, 7]);
  });

  it('refuses transactions on a producer without a transactional id', async () => {
    const producer = await log.producer();
    await expect(producer.transaction()).rejects.toThrow(/transactionalId/);
    await producer.close();
  });

  it('stops the consumer and rejects done() when eachBatch throws', async () => {
    const topic = uniqueName('contract-fail');
    await log.createTopics([{ name: topic, partitions: 1 }]);
    const producer = await log.producer();
    await producer.send(topic, [{ key: null, value: 'x', partition: 0 }]);
    await producer.close();
    const consumer = log.consumer({ groupId: uniqueName('g'), fromBeginning: true });
    await consumer.subscribe([topic]);
    await consumer.run({
      eachBatch: async () => {
        throw new Error('application failure');
      },
    });
    await expect(consumer.done()).rejects.toThrow('application failure');
    await consumer.stop();
  });
});
