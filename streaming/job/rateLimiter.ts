/**
 * `--max-rate`: caps the events a job processes per second, so that a replay of history does not
 * starve the live version of CPU, broker fetches and disk. A token bucket of one second's worth
 * of events: a batch takes as many tokens as it has records and waits when the bucket is empty.
 *
 * Waits are cut into slices of at most HEARTBEAT_SLICE_MS with a heartbeat between them: a
 * consumer that stays inside one batch longer than its session timeout would be thrown out of
 * its group (kafkajs heartbeats only between batches).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RecordBatch } from '../../services/log/eventLog.ts';

const HEARTBEAT_SLICE_MS = 1000;

export class RateLimiter {
  private tokens: number;
  private refilledAt: number;

  /** `perSecond`: events per second (a positive integer). */
  constructor(
    readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isFinite(perSecond) || perSecond <= 0) throw new RangeError(`--max-rate must be positive, got ${perSecond}`);
    this.tokens = perSecond;
    this.refilledAt = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((t - this.refilledAt) * this.perSecond) / 1000);
    this.refilledAt = t;
  }

  /**
   * How long `take(n)` would wait now (ms). A batch larger than the bucket waits for a full
   * bucket and leaves it in debt: the tokens go negative and later batches wait it off.
   */
  delayFor(n: number): number {
    this.refill();
    const need = Math.min(n, this.perSecond);
    return this.tokens >= need ? 0 : Math.ceil(((need - this.tokens) * 1000) / this.perSecond);
  }

  /**
   * Takes `n` tokens, waiting until the bucket can pay for them. `stopped` ends the wait early
   * (a stopping job must not sit out a long throttle).
   */
  async take(n: number, heartbeat?: () => Promise<void>, stopped: () => boolean = () => false): Promise<void> {
    let wait = this.delayFor(n);
    while (wait > 0 && !stopped()) {
      await sleep(Math.min(wait, HEARTBEAT_SLICE_MS));
      if (heartbeat) await heartbeat().catch(() => undefined);
      wait = this.delayFor(n);
    }
    this.refill();
    this.tokens -= n;
  }
}

/**
 * A batch cut into batches of at most `size` records, in order; each but the last ends after its
 * last record, the last at the batch's own next offset (which may lie past transaction markers).
 */
export function sliceBatch(batch: RecordBatch, size: number): RecordBatch[] {
  const { records } = batch;
  if (records.length <= size) return [batch];
  const out: RecordBatch[] = [];
  for (let i = 0; i < records.length; i += size) {
    const part = records.slice(i, i + size);
    const last = i + size >= records.length;
    out.push({ ...batch, records: part, nextOffset: last ? batch.nextOffset : part.at(-1)!.offset + 1 });
  }
  return out;
}
