/**
 * Watermarks: when a window is complete enough to close, and what an instance reports.
 *
 * A partition's watermark is the largest event time it has seen minus the out-of-orderness
 * (`--out-of-orderness`): events up to that much out of order still land in open windows. A
 * record is judged by the watermark *before* it, so it can never close its own window. A window
 * [start, start + size) with allowed lateness L is closed once the watermark is past
 * start + size + L (the one rule, shared with serving's reconciliation:
 * services/metrics/windowClosing.ts); after that the speed layer drops its late events (the
 * batch layer counts them) and never publishes the window again (docs/merge-rule.md).
 *
 * Windows close on their own partition's watermark (partitionState.ts), which depends only on
 * that partition's records: an idle partition never holds back the windows of the others, and
 * its own windows stay open (and correct) until it receives records again. Deliberately, idleness
 * does not advance a partition's watermark on the wall clock: that would close windows at a
 * moment that a replay cannot reproduce.
 *
 * The watermark an instance reports (status, serving's freshness line) is the minimum over its
 * partitions, and there idleness matters: a partition that is caught up (no lag) and has received
 * no record for `idleTimeoutMs` is idle and left out of the minimum, so one quiet partition does
 * not freeze the reported watermark forever. When every partition is idle the maximum is
 * reported (everything up to it has been seen).
 */

/** "No event yet" (JSON has no -Infinity): the watermark of a partition before its first event. */
export const NO_EVENT_TIME = -1e300;

/** The watermark of a partition whose largest event time so far is `maxTs`. */
export function partitionWatermark(maxTs: number, outOfOrdernessMs: number): number {
  return maxTs === NO_EVENT_TIME ? NO_EVENT_TIME : maxTs - outOfOrdernessMs;
}

export interface PartitionWatermark {
  /** Epoch ms; null before the partition's first event. */
  watermark: number | null;
  idle: boolean;
}

export function isIdle(lag: number, lastRecordAt: number, now: number, idleTimeoutMs: number): boolean {
  return lag === 0 && now - lastRecordAt > idleTimeoutMs;
}

export function combinedWatermark(partitions: readonly PartitionWatermark[]): number | null {
  let activeMin: number | null = null;
  let anyMax: number | null = null;
  for (const p of partitions) {
    if (p.watermark === null) continue;
    if (anyMax === null || p.watermark > anyMax) anyMax = p.watermark;
    if (!p.idle && (activeMin === null || p.watermark < activeMin)) activeMin = p.watermark;
  }
  return activeMin ?? anyMax;
}
