/** Topic names and defaults shared by all layers (the documented contract, see docs/contracts.md). */
import type { TopicSpec } from './eventLog.ts';

export const DEFAULT_EVENTS_TOPIC = 'events';
export const DEFAULT_EVENTS_PARTITIONS = 6;

/** Dead letters of a topic: `<topic>.dlq`. */
export function deadLetterTopic(topic: string): string {
  return `${topic}.dlq`;
}

/** The log is the history that replay needs: keep it forever. */
export const UNLIMITED_RETENTION = { 'retention.ms': '-1', 'retention.bytes': '-1' };

export function eventTopicSpecs(topic: string, partitions: number): TopicSpec[] {
  return [
    {
      name: topic,
      partitions,
      config: {
        ...UNLIMITED_RETENTION,
        'cleanup.policy': 'delete',
        // The broker stamps each record at append: non-decreasing within a partition, which the
        // merge rule's processing-time stamps rely on (docs/merge-rule.md).
        'message.timestamp.type': 'LogAppendTime',
      },
    },
    { name: deadLetterTopic(topic), partitions: 1, config: { ...UNLIMITED_RETENTION, 'cleanup.policy': 'delete' } },
  ];
}

/** Speed view topics keep the latest row per key: compacted, never deleted by time. */
export function viewTopicSpec(name: string, partitions = 6): TopicSpec {
  return { name, partitions, config: { 'cleanup.policy': 'compact', 'retention.ms': '-1', 'min.compaction.lag.ms': '0' } };
}
