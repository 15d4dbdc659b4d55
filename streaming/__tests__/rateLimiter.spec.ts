/**
 * --max-rate: the token bucket's arithmetic on an injected clock (no timed assertions), and the
 * slicing of a batch so that a throttled partition advances in small steps.
 */
import { describe, expect, it } from 'vitest';
import type { LogRecord, RecordBatch } from '../../services/log/eventLog.ts';
import { RateLimiter, sliceBatch } from '../job/rateLimiter.ts';

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('rate limiter (--max-rate)', () => {
  it('pays a second of events at once, then one event per 1/rate seconds', async () => {
    const c = clock();
    const limiter = new RateLimiter(100, c.now);
    expect(limiter.delayFor(100)).toBe(0);
    await limiter.take(100);
    expect(limiter.delayFor(1)).toBe(10);
    expect(limiter.delayFor(50)).toBe(500);
    c.advance(500);
    expect(limiter.delayFor(50)).toBe(0);
  });

  it('a batch larger than the bucket waits for a full bucket and leaves a debt that later batches wait off', async () => {
    const c = clock();
    const limiter = new RateLimiter(100, c.now);
    await limiter.take(100);
    expect(limiter.delayFor(250)).toBe(1000); // waits for a full bucket, not for 250 tokens it can never hold
    c.advance(1000);
    await limiter.take(250); // 100 - 250 = a debt of 150
    expect(limiter.delayFor(1)).toBe(1510);
  });

  it('refuses a rate that is not positive', () => {
    expect(() => new RateLimiter(0)).toThrow(/--max-rate must be positive/);
  });

  it('stops waiting when told to (a stopping job does not sit out the throttle)', async () => {
    const limiter = new RateLimiter(1);
    await limiter.take(1);
    let heartbeats = 0;
    await limiter.take(
      1,
      async () => {
        heartbeats++;
      },
      () => true,
    );
    expect(heartbeats).toBe(0);
  });
});

describe('sliceBatch', () => {
  const record = (offset: number): LogRecord => ({
    topic: 't',
    partition: 2,
    offset,
    key: null,
    value: Buffer.from('{}'),
    timestamp: offset,
    headers: {},
  });
  const batch: RecordBatch = { topic: 't', partition: 2, records: [10, 11, 13, 14, 15].map(record), highWatermark: 30, nextOffset: 18 };

  it('cuts in order; each slice ends after its last record, the last at the batch next offset', () => {
    const slices = sliceBatch(batch, 2);
    expect(slices.map((s) => s.records.map((r) => r.offset))).toEqual([[10, 11], [13, 14], [15]]);
    expect(slices.map((s) => s.nextOffset)).toEqual([12, 15, 18]);
    expect(slices.every((s) => s.highWatermark === 30 && s.partition === 2)).toBe(true);
  });

  it('leaves a small batch whole', () => {
    expect(sliceBatch(batch, 5)).toEqual([batch]);
  });
});
