/**
 * The partial sessions of one session metric in one partition state (services/metrics/sessionRule.ts
 * states the rule; partitionState.ts applies events and publishes rows): per key, the open
 * sessions in order of start, and the closed ones whose rows are still in the view (held, as
 * spans only, until they expire). The open sessions' aggregates live in the state's WindowTable,
 * one row each, like a window's.
 *
 * Closing without scanning every session: a queue (binary heap) of (closing watermark, session)
 * entries, each a lower bound of its session's closing watermark (end + gap + lateness only grows
 * as the session is extended or merged). When the watermark passes an entry, the session is
 * either closed or pushed again with its current closing watermark; an entry of a session merged
 * into another is dropped. So a session costs a push when it is created and about one per
 * gap + lateness of event time while it keeps growing, not one per event.
 *
 * Expiry: held sessions in order of end (closing order, except that a very late event's session
 * closes at once with an older end: inserted in place), forgotten once the watermark passes
 * end + gap + retention (sessionRule.ts `sessionExpiresAt`).
 */
import { touchesSession, type SessionSpan } from '../../services/metrics/sessionRule.ts';

export interface OpenSession extends SessionSpan {
  readonly key: string;
  /** Row of the state's WindowTable holding the aggregates. */
  w: number;
  /**
   * The start its row was last published (and snapshotted) under; NaN: never. When the start
   * has moved since, or the session is merged into another, that row is deleted (tombstone) in
   * the transaction that publishes its replacement.
   */
  publishedStart: number;
  /** Merged into another session or closed: its queue entries are stale. */
  gone: boolean;
}

interface QueueEntry {
  at: number;
  session: OpenSession;
}

interface HeldSession extends SessionSpan {
  key: string;
}

export class SessionSlot {
  /** Open sessions per key, in order of start (disjoint, and no two touch: they would be one). */
  readonly open = new Map<string, OpenSession[]>();
  /** Closed sessions whose rows are still published, per key, in order of start. */
  readonly held = new Map<string, SessionSpan[]>();
  private readonly heap: QueueEntry[] = [];
  /** Held sessions in order of end, from `head` on. */
  private expiry: HeldSession[] = [];
  private head = 0;
  openCount = 0;
  heldCount = 0;

  constructor(
    readonly gapMs: number,
    readonly latenessMs: number,
    readonly retentionMs: number,
  ) {}

  // ---------------------------------------------------------------- closing queue

  /** The lowest closing watermark queued (Infinity: none): no session closes before the watermark passes it. */
  nextCloseAt(): number {
    return this.heap.length > 0 ? this.heap[0]!.at : Infinity;
  }

  queue(session: OpenSession, at: number): void {
    const h = this.heap;
    const entry = { at, session };
    let i = h.length;
    h.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.at <= at) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = entry;
  }

  /** Removes and returns the entry with the lowest closing watermark. */
  dequeue(): QueueEntry {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      // Sift `last` down from the root (moving children up instead of swapping pairs).
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && h[r]!.at < h[l]!.at ? r : l;
        if (h[c]!.at >= last.at) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }

  // ---------------------------------------------------------------- open sessions

  add(session: OpenSession): void {
    let list = this.open.get(session.key);
    if (list === undefined) this.open.set(session.key, (list = []));
    let i = list.length;
    while (i > 0 && list[i - 1]!.start > session.start) i--;
    list.splice(i, 0, session);
    this.openCount++;
  }

  /** Removes an open session (merged into another, or closed). */
  remove(session: OpenSession): void {
    const list = this.open.get(session.key)!;
    list.splice(list.indexOf(session), 1);
    if (list.length === 0) this.open.delete(session.key);
    session.gone = true;
    this.openCount--;
  }

  // ---------------------------------------------------------------- held (closed) sessions

  hold(key: string, start: number, end: number): void {
    let spans = this.held.get(key);
    if (spans === undefined) this.held.set(key, (spans = []));
    let i = spans.length;
    while (i > 0 && spans[i - 1]!.start > start) i--;
    spans.splice(i, 0, { start, end });
    let j = this.expiry.length;
    while (j > this.head && this.expiry[j - 1]!.end > end) j--;
    this.expiry.splice(j, 0, { key, start, end });
    this.heldCount++;
  }

  /**
   * Whether an event at `ts` of `key` lies within gap of a held (closed) session: it would change
   * a final row. The spans are in order of start, disjoint and at least gap apart, so only the
   * last one starting before ts + gap and the one before it can be within gap of ts (a binary
   * search: a key may hold many closed sessions until they expire).
   */
  touchesHeld(key: string, ts: number): boolean {
    const spans = this.held.get(key);
    if (spans === undefined) return false;
    let lo = 0;
    let hi = spans.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (spans[mid]!.start - ts < this.gapMs) lo = mid + 1;
      else hi = mid;
    }
    // spans[lo - 1] is the last one starting before ts + gap.
    for (let i = lo - 1; i >= Math.max(0, lo - 2); i--) if (touchesSession(spans[i]!, ts, this.gapMs)) return true;
    return false;
  }

  /** End of the held session that expires first, or undefined. */
  oldestEnd(): number | undefined {
    return this.head < this.expiry.length ? this.expiry[this.head]!.end : undefined;
  }

  /** Forgets the held session that expires first; returns it. */
  shiftHeld(): HeldSession {
    const h = this.expiry[this.head++]!;
    const spans = this.held.get(h.key)!;
    spans.splice(
      spans.findIndex((s) => s.start === h.start),
      1,
    );
    if (spans.length === 0) this.held.delete(h.key);
    this.heldCount--;
    if (this.head > 1024 && this.head * 2 > this.expiry.length) {
      this.expiry = this.expiry.slice(this.head);
      this.head = 0;
    }
    return h;
  }

  /** Every held session, in order of end. */
  *heldSessions(): Generator<HeldSession> {
    for (let i = this.head; i < this.expiry.length; i++) yield this.expiry[i]!;
  }

  /** Approximate heap bytes beyond the table rows: session objects, spans, queue entries. */
  approxBytes(): number {
    let bytes = this.heap.length * 40;
    for (const [key, list] of this.open) bytes += 64 + key.length + list.length * 72;
    bytes += (this.expiry.length - this.head) * 56;
    for (const [key, spans] of this.held) bytes += 64 + key.length + spans.length * 40;
    return bytes;
  }
}
