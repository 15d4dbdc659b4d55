/**
 * Load-time fixes for kafkajs 2.2.4, which has had no release since 2023. Imported before
 * kafkajs itself (see kafkaLog.ts), so kafkajs's own `require` picks up the fixed modules.
 *
 * 1. `producer/groupMessagesPerPartition.js` copies the whole per-partition array for every
 *    message (`[...current, message]`): quadratic in the batch size. With 10,000-record batches
 *    over 6 partitions it capped produce at about 40k events/s on 2 cores, CPU-bound in that
 *    function. The replacement is the same grouping, linear. (Measured by `npm run bench:ingest`;
 *    figures in the README.)
 */
import { createRequire, Module } from 'node:module';

const require = createRequire(import.meta.url);

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;

function groupMessagesPerPartition({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: Partitioner;
}): Record<number, unknown[]> {
  if (partitionMetadata.length === 0) return {};
  const result: Record<number, unknown[]> = {};
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

const path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
if (!require.cache[path]) {
  const patched = new Module(path);
  patched.filename = path;
  patched.loaded = true;
  patched.exports = groupMessagesPerPartition;
  require.cache[path] = patched;
}
