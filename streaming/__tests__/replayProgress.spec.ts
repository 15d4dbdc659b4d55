/**
 * The replay's progress figures (what `lk replay` shows on a TTY): events done since the start
 * offsets, lag, percent, the rate over the last seconds and the ETA from it, and one caught-up
 * notice. Fed with status snapshots and an explicit clock: no timed assertions.
 */
import { describe, expect, it } from 'vitest';
import type { SpeedStatus } from '../../services/status/speedStatus.ts';
import { ReplayProgress, describe as describeFigures } from '../replay/replayProgress.ts';

function status(partitions: { position: number; end: number }[], ready = true): SpeedStatus {
  return {
    version: 'v2',
    instanceId: 'r',
    pid: 1,
    updatedAt: 0,
    topic: 'events',
    viewTopic: 'views.speed.v2',
    ready,
    partitions: partitions.map((p, partition) => ({
      partition,
      committedOffset: null,
      position: p.position,
      endOffset: p.end,
      lag: p.end - p.position,
      watermark: null,
      idle: false,
      misplaced: 0,
    })),
    watermark: null,
    lastCheckpoint: null,
    eventsPerSecond: 0,
    duplicates: 0,
    invalid: 0,
    misplaced: 0,
    droppedLate: {},
    droppedLateByGranularity: {},
    stateWindows: 0,
    stateBytes: 0,
    dedupEntries: 0,
  } as SpeedStatus;
}

describe('replay progress', () => {
  it('counts from the start offsets, rates over the recent window, and announces the catch-up once', () => {
    const caughtUp: number[] = [];
    // Partition 0 starts at 100 (a replay from a time), partition 1 at 0; partition 1 not held yet.
    const p = new ReplayProgress(
      'replay v2',
      [
        { start: 100, position: 100, end: 1100 },
        { start: 0, position: 0, end: 1000 },
      ],
      (f) => caughtUp.push(f.done),
    );
    const t0 = 1_000_000;
    let f = p.update(status([{ position: 100, end: 1100 }]), t0);
    expect(f).toMatchObject({ done: 0, total: 2000, lag: 2000, percent: 0, caughtUp: false });
    f = p.update(status([{ position: 600, end: 1100 }]), t0 + 1000);
    expect(f).toMatchObject({ done: 500, lag: 1500, percent: 25, eventsPerSecond: 500, etaSeconds: 3 });
    // The log grows meanwhile: the total follows the end.
    f = p.update(
      status([
        { position: 1200, end: 1200 },
        { position: 1000, end: 1000 },
      ]),
      t0 + 2000,
    );
    expect(f).toMatchObject({ done: 2100, total: 2100, lag: 0, percent: 100, etaSeconds: 0, caughtUp: true });
    p.update(
      status([
        { position: 1300, end: 1300 },
        { position: 1000, end: 1000 },
      ]),
      t0 + 3000,
    );
    expect(caughtUp).toEqual([2100]);
    expect(describeFigures(f)).toBe('· lag 0 · 100.0% of 2,100 · 1,050/s now · ETA 0s');
  });

  it('is not caught up while the job is not ready, and has no ETA while nothing moves', () => {
    const p = new ReplayProgress('replay v3', [{ start: 0, position: 0, end: 10 }], () => undefined);
    expect(p.update(status([{ position: 10, end: 10 }], false), 1).caughtUp).toBe(false);
    const stalled = new ReplayProgress('replay v4', [{ start: 0, position: 0, end: 10 }], () => undefined);
    stalled.update(status([{ position: 2, end: 10 }]), 1);
    expect(stalled.update(status([{ position: 2, end: 10 }]), 2001).etaSeconds).toBeNull();
  });
});
