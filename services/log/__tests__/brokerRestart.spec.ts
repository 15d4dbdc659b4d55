/**
 * A broker restart in the middle of a run: a group consumer rides it out and reads every record
 * exactly once (by partition and offset), and a producer keeps sending once the broker is back.
 * Uses a broker of its own (another port and state dir), so the shared test broker is untouched.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startKafka, stopKafka } from '../../../scripts/kafka.mjs';
import { KafkaLog } from '../kafka/kafkaLog.ts';
import { eventually } from '../../../test/helpers.ts';

const PORT = Number(process.env.LK_TEST_RESTART_KAFKA_PORT ?? 19192);
const HOME = join(process.cwd(), '.lk', 'kafka-restart-test');
const opts = { port: PORT, home: HOME, quiet: true };

afterAll(async () => {
  await stopKafka(opts).catch(() => undefined);
  rmSync(HOME, { recursive: true, force: true });
});

describe('broker restart', () => {
  it('loses nothing and reads nothing twice across a broker restart', async () => {
    rmSync(HOME, { recursive: true, force: true });
    const { brokers } = await startKafka(opts);
    const log = new KafkaLog({ brokers: [brokers] });
    const topic = 'restart-events';
    await log.createTopics([{ name: topic, partitions: 3 }]);
    const producer = await log.producer();
    const send = (from: number, n: number) =>
      producer.send(
        topic,
        Array.from({ length: n }, (_, i) => ({ key: `k${from + i}`, value: String(from + i) })),
      );
    await send(0, 3000);

    const seen = new Map<string, string>();
    let duplicates = 0;
    const consumer = log.consumer({ groupId: 'restart-group', fromBeginning: true });
    await consumer.subscribe([topic]);
    await consumer.run({
      eachBatch: async (batch) => {
        for (const r of batch.records) {
          const where = `${r.partition}:${r.offset}`;
          if (seen.has(where)) duplicates++;
          seen.set(where, r.value!.toString());
        }
        await consumer.commit([{ topic, partition: batch.partition, offset: batch.nextOffset }]);
      },
    });
    await eventually(() => (seen.size >= 3000 ? true : undefined), 'the first 3000 records');

    await stopKafka(opts);
    await startKafka(opts);
    await send(3000, 3000);

    await eventually(() => (seen.size >= 6000 ? true : undefined), 'all 6000 records after the restart', 120_000);
    await consumer.stop();
    await producer.close();
    await log.close();
    expect(duplicates).toBe(0);
    expect(new Set(seen.values()).size).toBe(6000);
  });
});
