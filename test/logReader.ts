/** Reads topics back with a plain consumer of the log contract: what tests compare the platform's output with. */
import type { EventLog, LogRecord } from '../services/log/eventLog.ts';

/** Reads every record of a topic up to its current end offsets (a plain consumer, no lake code). */
export async function readTopic(log: EventLog, topic: string): Promise<LogRecord[][]> {
  const ends = await log.endOffsets(topic);
  const out: LogRecord[][] = ends.map(() => []);
  const position = ends.map(() => 0);
  const consumer = log.consumer({ groupId: `reader-${topic}-${Date.now()}`, fromBeginning: true });
  await consumer.subscribe([topic]);
  await consumer.run({
    onAssignment: async (assigned) => assigned.map((tp) => ({ ...tp, offset: 0 })),
    eachBatch: async (batch) => {
      out[batch.partition]!.push(...batch.records);
      position[batch.partition] = batch.nextOffset;
    },
    onProgress: (p) => {
      position[p.partition] = Math.max(position[p.partition]!, p.nextOffset);
    },
  });
  const deadline = Date.now() + 60_000;
  while (!ends.every((end, p) => position[p]! >= end)) {
    if (Date.now() > deadline) throw new Error(`timed out reading ${topic}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await consumer.stop();
  return out;
}
