/**
 * `windowUpdated`: merged window values pushed as the speed view changes them.
 *
 * Each subscription keeps the set of windows changed since the client last took a value
 * (coalesced: a window updated ten times before the client reads is sent once, with its latest
 * merged value). A slow client therefore holds at most one entry per window it watches, never an
 * unbounded queue of stale values.
 */
import type { Granularity } from '../services/metrics/definitions.ts';
import { windowValueAt, type WindowValue } from './queries.ts';
import type { VersionRuntime } from './views/versionRegistry.ts';
import type { WindowUpdate } from './views/versionView.ts';

export interface WindowFilter {
  metric: string;
  granularity: Granularity | null;
  key: string | null;
}

export class WindowSubscriptions {
  active = 0;

  /**
   * `beforeEvent` runs before each value is taken (serving/http/subscriptions.ts: the client's
   * rate limit may make it wait); changes keep coalescing meanwhile.
   */
  iterate(runtime: VersionRuntime, filter: WindowFilter, beforeEvent?: () => Promise<void>): AsyncIterableIterator<WindowValue> {
    const pending = new Map<string, WindowUpdate>();
    let wake: (() => void) | undefined;
    let closed = false;
    this.active++;
    const unsubscribe = runtime.view.onWindowUpdated((u) => {
      if (u.metric !== filter.metric) return;
      if (filter.key !== null && u.key !== filter.key) return;
      if (filter.granularity !== null && u.granularity !== filter.granularity) return;
      const id = `${u.granularity}\u001f${u.windowStart}\u001f${u.key}`;
      pending.delete(id); // re-insert: the window moves to the back of the line
      pending.set(id, u);
      wake?.();
    });
    const close = () => {
      if (closed) return;
      closed = true;
      this.active--;
      unsubscribe();
      wake?.();
    };
    const iterator: AsyncIterableIterator<WindowValue> = {
      next: async () => {
        for (;;) {
          if (closed) return { done: true, value: undefined };
          if (pending.size > 0 && beforeEvent) {
            await beforeEvent();
            if (closed) return { done: true, value: undefined };
          }
          const first = pending.entries().next();
          if (!first.done) {
            const [id, u] = first.value;
            pending.delete(id);
            const snapshot = runtime.view.snapshot();
            const merged = snapshot.merged(u.metric, u.granularity, u.key);
            const i = merged ? merged.indexOf(u.windowStart) : -1;
            if (!merged || i < 0) continue; // the window vanished (tombstone) before delivery
            return {
              done: false,
              value: windowValueAt(merged, i, u.metric, snapshot.version, u.key, u.granularity, snapshot.batch?.manifest.runId ?? null),
            };
          }
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      },
      return: async () => {
        close();
        return { done: true, value: undefined };
      },
      throw: async (err) => {
        close();
        throw err;
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }
}
