/**
 * What serving makes of the other layers' status files (the contracts in services/status/):
 * one entry per input partition across the speed instances. Layers meet through files, never
 * in-process.
 */
import type { SpeedStatus, StatusRead } from '../../services/status/speedStatus.ts';

export interface SpeedPartitionStatus {
  partition: number;
  instanceId: string;
  committedOffset: number | null;
  endOffset: number | null;
  lag: number | null;
  watermark: number | null;
  misplaced: number | null;
  updatedAt: number;
}

/**
 * One entry per input partition: when several instance files name a partition (a rebalance
 * moved it), the most recently updated file speaks for it.
 */
export function speedPartitions(statuses: StatusRead<SpeedStatus>[]): SpeedPartitionStatus[] {
  const byPartition = new Map<number, SpeedPartitionStatus>();
  for (const { status } of statuses) {
    if (!status) continue;
    for (const p of status.partitions) {
      const prev = byPartition.get(p.partition);
      if (prev && prev.updatedAt >= status.updatedAt) continue;
      byPartition.set(p.partition, {
        partition: p.partition,
        instanceId: status.instanceId,
        committedOffset: p.committedOffset,
        endOffset: p.endOffset,
        lag: p.lag,
        watermark: p.watermark,
        misplaced: p.misplaced,
        updatedAt: status.updatedAt,
      });
    }
  }
  return [...byPartition.values()].sort((a, b) => a.partition - b.partition);
}
