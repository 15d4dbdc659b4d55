/**
 * Key -> partition, identical to Kafka's default partitioner for keyed records
 * (`Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions`), and used by both adapters so
 * that all copies of one event id land in the same partition whatever the log.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

/** Kafka's murmur2 (org.apache.kafka.common.utils.Utils#murmur2), 32-bit signed result. */
export function murmur2(data: Uint8Array): number {
  return murmur2Range(data, 0, data.length);
}

/** murmur2 of data[start..end) (a record's id where the event scanner found it: no copy). */
export function murmur2Range(data: Uint8Array, start: number, end: number): number {
  const length = end - start;
  let h = (SEED ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = start + i * 4;
    let k = (data[i4]! & 0xff) | ((data[i4 + 1]! & 0xff) << 8) | ((data[i4 + 2]! & 0xff) << 16) | ((data[i4 + 3]! & 0xff) << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  const rest = length & 3;
  const base = start + (length & ~3);
  if (rest === 3) h ^= (data[base + 2]! & 0xff) << 16;
  if (rest >= 2) h ^= (data[base + 1]! & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[base]! & 0xff;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

export function partitionForKey(key: string | Uint8Array, partitions: number): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  return (murmur2(bytes) & 0x7fffffff) % partitions;
}

/**
 * Where an event belongs: its *home* partition is the one Kafka's default partitioner gives its
 * id among the version's `homePartitions` (the events topic's partition count when the job version
 * was created). A record elsewhere is *misplaced*: written unkeyed (Kafka's console producer), by
 * another key, or after the topic's partitions were raised. Copies of one event can then sit in
 * two partitions, which per-partition dedup cannot see (docs/guarantees.md, "Events from any
 * producer"). `idHash` is the part that does not depend on the version: the lake stores it.
 */
export function idHash(id: Uint8Array, start = 0, end = id.length): number {
  return murmur2Range(id, start, end) & 0x7fffffff;
}

export function isMisplaced(hash: number, partition: number, homePartitions: number): boolean {
  return hash % homePartitions !== partition;
}
