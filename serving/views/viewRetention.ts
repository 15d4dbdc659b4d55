/**
 * Retention as serving applies it to one version's views: which windows it still answers, which
 * rows it evicts (speed and batch alike), and the words of a refusal.
 *
 * "Now" is the view's event-time watermark, never the wall clock (a replay of old data is
 * answered as its live run was): the largest watermark the version's speed layer has shown,
 * learned from two places that can only be at or below the truth:
 * - each tombstone the speed layer publishes for an expired window (partitionState.ts) proves
 *   that its partition's watermark passed that window's expiry (services/metrics/retention.ts),
 *   and it arrives in the same transaction as the deletion: so serving never answers a window
 *   from which some partition's rows were already deleted;
 * - the speed layer's status files (their partitions' watermarks), which survive a restart of
 *   serving after compaction removed old tombstones.
 * A window expired under that watermark is refused and its rows are evicted.
 */
import { granularityMs, type Granularity, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { formatDuration } from '../../services/config/durations.ts';
import { oldestKeptWindowStart, retentionMsOf, windowExpiresAt } from '../../services/metrics/retention.ts';
import { windowShape, windowStartOf } from '../../services/metrics/windowStart.ts';

const SEP = '\u001f';

interface SlotRetention {
  sizeMs: number;
  /** Where the windows of this size are aligned (windowStart.ts). */
  originMs: number;
  retentionMs: number;
}

export class ViewRetention {
  private readonly slots = new Map<string, SlotRetention>();
  /** The largest event-time watermark known (-Infinity: none yet, nothing has expired). */
  watermark = -Infinity;

  constructor(metrics: readonly MetricDefinition[]) {
    for (const m of metrics)
      for (const g of m.granularities)
        this.slots.set(m.name + SEP + g, { ...windowShape(g), retentionMs: retentionMsOf(m.retention, g, granularityMs(g)) });
  }

  /** A watermark the speed layer reached (its status). */
  observeWatermark(watermark: number): void {
    if (watermark > this.watermark) this.watermark = watermark;
  }

  /** A tombstone of window `windowStart`: its partition's watermark is past the window's expiry. */
  observeExpired(metric: string, granularity: Granularity, windowStart: number): void {
    const slot = this.slots.get(metric + SEP + granularity);
    if (slot) this.observeWatermark(windowExpiresAt(windowStart, slot.sizeMs, slot.retentionMs) + 1);
  }

  /** Start of the oldest window of (metric, granularity) still answered under `watermark` (-Infinity: all). */
  oldestKept(metric: string, granularity: Granularity, watermark = this.watermark): number {
    const slot = this.slots.get(metric + SEP + granularity);
    if (!slot || watermark === -Infinity) return -Infinity;
    return oldestKeptWindowStart(watermark, slot.sizeMs, slot.retentionMs, slot.originMs);
  }

  /** How long the windows of (metric, granularity) are kept, ms (undefined: not a window of this version). */
  retentionMs(metric: string, granularity: Granularity): number | undefined {
    return this.slots.get(metric + SEP + granularity)?.retentionMs;
  }

  /** Every (metric, granularity) of the version with its oldest kept window start under `watermark`. */
  *horizons(watermark = this.watermark): Generator<{ metric: string; granularity: Granularity; oldest: number }> {
    for (const [mg, slot] of this.slots) {
      const [metric, granularity] = mg.split(SEP) as [string, Granularity];
      yield {
        metric,
        granularity,
        oldest: watermark === -Infinity ? -Infinity : oldestKeptWindowStart(watermark, slot.sizeMs, slot.retentionMs, slot.originMs),
      };
    }
  }

  /**
   * Why a range [from, to) of (metric, granularity) cannot be answered under `watermark`, or
   * undefined: it holds a window that starts before the oldest one kept.
   */
  refusal(metric: string, granularity: Granularity, from: number, to: number, watermark = this.watermark): string | undefined {
    const slot = this.slots.get(metric + SEP + granularity);
    if (!slot) return undefined;
    const oldest = this.oldestKept(metric, granularity, watermark);
    // The range's first window start (windows belong to the range by their start).
    const first = windowStartOf(from - 1, slot.sizeMs, slot.originMs) + slot.sizeMs;
    if (first >= oldest || first >= to) return undefined;
    return (
      `${granularity} windows of metric "${metric}" are kept for ${formatDuration(slot.retentionMs)}; ` +
      `the oldest answerable window starts at ${new Date(oldest).toISOString()} ` +
      `(retention counts from the view's event-time watermark, ${new Date(watermark).toISOString()}); ask from then on`
    );
  }
}
