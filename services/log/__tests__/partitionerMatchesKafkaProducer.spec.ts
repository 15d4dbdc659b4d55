/**
 * Reference vectors from Apache Kafka itself: keyed records written by Kafka's own console
 * producer (its default partitioner), read back with their partitions, must be exactly where
 * `partitionForKey` puts them, for ASCII, Unicode and long keys, on topics of several partition
 * counts. The platform relies on it twice: the embedded log places records like Kafka, and an
 * event's home partition (idHash, isMisplaced) is Kafka's placement of its id.
 */
import { describe, expect, it } from 'vitest';
import { KafkaLog } from '../kafka/kafkaLog.ts';
import { parseBrokers } from '../openLog.ts';
import { idHash, isMisplaced, partitionForKey } from '../partitioner.ts';
import { testBrokers, uniqueName } from '../../../test/helpers.ts';
import { kafkaTool } from '../../../test/kafkaTools.ts';
import { readTopic } from '../../../test/logReader.ts';

const KEYS = [
  ...Array.from({ length: 150 }, (_, i) => `e-42-${i}`),
  'Zoë',
  '日本語のキー',
  '☕',
  'a'.repeat(300),
  'key with spaces',
  '0',
  '-1',
  '9007199254740993',
];

describe("partitionForKey is Kafka's default partitioner", () => {
  it.each([6, 7, 1])('places every key where Kafka puts it (%i partitions)', async (partitions) => {
    const topic = uniqueName(`placement-${partitions}`);
    const log = new KafkaLog({ brokers: parseBrokers(testBrokers()), clientId: 'placement-test' });
    try {
      await log.createTopics([{ name: topic, partitions }]);
      await kafkaTool(
        'org.apache.kafka.tools.ConsoleProducer',
        ['--bootstrap-server', testBrokers(), '--topic', topic, '--property', 'parse.key=true', '--property', 'key.separator=\t'],
        KEYS.map((k, i) => `${k}\tv${i}`).join('\n') + '\n',
      );
      const byPartition = await readTopic(log, topic);
      const placed = byPartition.flatMap((records, p) => records.map((r) => ({ key: r.key!.toString('utf8'), p })));
      expect(placed).toHaveLength(KEYS.length);
      for (const { key, p } of placed) {
        expect(partitionForKey(key, partitions), key).toBe(p);
        expect(idHash(Buffer.from(key)) % partitions, key).toBe(p);
        expect(isMisplaced(idHash(Buffer.from(key)), p, partitions), key).toBe(false);
      }
    } finally {
      await log.deleteTopics([topic]).catch(() => undefined);
      await log.close();
    }
  });
});
