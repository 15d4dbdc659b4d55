/**
 * The speed layer's state for ONE input partition, and the rules that change it. Pure and
 * synchronous: no I/O, no clock. Everything here is a function of the partition's record
 * sequence, so that a replay after a crash, a restore from a checkpoint and the test oracle
 * agree exactly (docs/speed-layer.md states the rules; the oracle in the tests re-implements
 * them independently).
 *
 * Rules, per record in offset order:
 * 1. watermark = (largest event time seen before this record) - outOfOrderness.
 * 2. dedup: an id already seen and still live (ts >= watermark - horizon) is a duplicate:
 *    counted in `duplicates`, nothing else happens.
 * 3. for every metric the event matches and every granularity, window = [start, start + size)
 *    (windowStart.ts); the window is closed when watermark > start + size + allowedLateness: the
 *    event is then counted in droppedLate for (metric, granularity) and not applied; otherwise it
 *    is applied (and counted in the window's `misplaced` when the record is not in its home
 *    partition, partitioner.ts: serving then marks the window provisional).
 * 4. the largest event time is updated; windows that the new watermark closes are final: their
 *    last row is stamped with this record (throughOffset = offset + 1) and they leave the open
 *    state; their keys are held (heldWindows.ts) until they expire.
 * 5. held windows that the new watermark expires (services/metrics/retention.ts: watermark >
 *    start + size + retention) are forgotten, and the next checkpoint deletes their rows from the
 *    view topic with one tombstone per row key, in its transaction.
 * Session metrics (services/metrics/sessionRule.ts) take step 3 per key instead of per window
 * (`applySession`): an event within gap of a closed, still published session of its key is
 * dropped as late (counted in droppedLate); otherwise it starts a session, extends the one it
 * touches, or merges the ones it bridges. Step 4 closes sessions when the watermark passes
 * end + gap + allowedLateness; step 5 expires them at end + gap + retention. A session whose
 * start moved or that was merged into another has its published row deleted (tombstone) by the
 * checkpoint that publishes its replacement.
 */
import { assert } from '../../services/errors.ts';
import type { LogRecord } from '../../services/log/eventLog.ts';
import { idHash, isMisplaced } from '../../services/log/partitioner.ts';
import type { CompiledMetric } from '../../services/metrics/compile.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { type Granularity, type MetricDefinition } from '../../services/metrics/definitions.ts';
import { eventMappingOf, granularityMs, metricFieldsOf } from '../../services/metrics/definitions.ts';
import type { FieldValues } from '../../services/metrics/fieldSemantics.ts';
import { bucketBoundaries, bucketOf, parseSketch, sketchText, type BucketTable } from '../../services/metrics/ddsketch.ts';
import { HyperLogLog } from '../../services/metrics/hll.ts';
import { windowShape, windowStartOf } from '../../services/metrics/windowStart.ts';
import type { ViewRow } from '../../services/views/viewRow.ts';
import { DedupSet } from './dedupSet.ts';
import { NO_EVENT_TIME, partitionWatermark } from './watermarks.ts';
import { isWindowClosed, windowClosesAt } from '../../services/metrics/windowClosing.ts';
import { createEventDecoder, type EventDecoder } from '../../services/events/decoders/eventDecoder.ts';
import { LOGGED_RECORD_LIMITS } from '../../services/events/event.ts';
import { registerOf } from './hllCache.ts';
import { fingerprintBytes } from './idFingerprint.ts';
import { DIRTY, HAS_VALUE, LIVE, WindowTable } from './windowTable.ts';
import { HeldWindows } from './heldWindows.ts';
import { isWindowExpired, retentionMsOf, windowExpiresAt } from '../../services/metrics/retention.ts';
import { SESSION_GRANULARITY, viewRowKey } from '../../services/views/viewRow.ts';
import {
  isSessionClosed,
  isSessionExpired,
  sessionClosesAt,
  sessionExpiresAt,
  sessionRetentionMs,
  touchesSession,
} from '../../services/metrics/sessionRule.ts';
import { SessionSlot, type OpenSession } from './sessionSlot.ts';

/** The id fingerprint of the record being applied. */
const fingerprint = new Int32Array(4);

export interface SpeedSemantics {
  outOfOrdernessMs: number;
  dedupHorizonMs: number;
}

/** Where events belong (partitioner.ts): fixed for a job version, so that a replay agrees. */
export interface Placement {
  /** The events topic's partition count when the job version was created. */
  homePartitions: number;
}

/** One (metric, granularity) pair: the unit that owns windows. */
export interface Slot {
  readonly id: string;
  readonly metric: string;
  readonly granularity: Granularity;
  readonly sizeMs: number;
  /** Where the windows are aligned (windowStart.ts: the epoch, or a Monday for whole weeks). */
  readonly originMs: number;
  readonly latenessMs: number;
  /** How long closed windows are kept (services/metrics/retention.ts). */
  readonly retentionMs: number;
  readonly hasValue: boolean;
  readonly hasDistinct: boolean;
  /** The percentile bucket table (services/metrics/ddsketch.ts), null without `percentiles`. */
  readonly percentiles: BucketTable | null;
  /**
   * A session metric's one slot (granularity SESSION_GRANULARITY): `sizeMs` is the gap,
   * `retentionMs` sessionRule.ts `sessionRetentionMs`. Its windows are partial sessions.
   */
  readonly session: boolean;
}

export function slotId(metric: string, granularity: Granularity): string {
  return `${metric}/${granularity}`;
}

interface MetricPlan {
  readonly compiled: CompiledMetric;
  readonly slots: number[];
  /** The session slot of a session metric, -1 for a metric of tumbling windows. */
  readonly session: number;
  readonly percentiles: BucketTable | null;
}

export interface WindowSnapshotRow {
  slot: string;
  windowStart: number;
  key: string;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  sketch: Uint8Array | null;
  /** Percentile sketch text (ddsketch.ts `sketchText`), null without `percentiles`. */
  valueSketch: string | null;
  /** Events counted in the window that are not in their home partition. */
  misplaced: number;
  /**
   * Session slots: the session's last event time (windowStart is its first). A row of a delta
   * snapshot with count -1 removes the session (slot, windowStart, key): it moved its start or
   * was merged into another since the snapshot before. Absent (null) in window rows.
   */
  windowEnd?: number | null;
}

/** The count of a delta snapshot row that removes a session (WindowSnapshotRow.windowEnd). */
export const REMOVED_SESSION = -1;

export interface StateCounters {
  events: number;
  duplicates: number;
  invalid: number;
  /** Valid records read that are not in their home partition (duplicates included). */
  misplaced: number;
  /** Per slot id (`metric/granularity`): events not applied because their window was closed. */
  droppedLate: Record<string, number>;
}

/** The scalar part of a checkpoint. */
export interface StateMeta {
  partition: number;
  /** Next offset to read: the checkpoint covers exactly the records before it. */
  position: number;
  /** Log-append time of the last record read (the processing-time stamp at `position`). */
  lastTimestamp: number;
  /** Largest event time seen (NO_EVENT_TIME, watermarks.ts, before the first event). */
  maxTs: number;
  counters: StateCounters;
  /**
   * A warm-up in progress (streaming/replay/warmUpSource.ts): the version's start offset, below which
   * the state is built but publishes nothing. Absent (or null) once the state has reached it.
   */
  warmUntil?: number | null;
}

export function buildSlots(defs: readonly MetricDefinition[]): Slot[] {
  const slots: Slot[] = [];
  for (const def of defs) {
    for (const g of def.granularities) {
      slots.push({
        id: slotId(def.name, g),
        metric: def.name,
        granularity: g,
        ...windowShape(g),
        latenessMs: def.allowedLatenessMs,
        retentionMs: retentionMsOf(def.retention, g, granularityMs(g)),
        hasValue: def.value !== undefined,
        hasDistinct: def.distinct !== undefined,
        percentiles: def.percentiles ? bucketBoundaries(def.percentiles.relativeAccuracy) : null,
        session: false,
      });
    }
    if (def.session !== undefined)
      slots.push({
        id: slotId(def.name, SESSION_GRANULARITY),
        metric: def.name,
        granularity: SESSION_GRANULARITY,
        sizeMs: def.session.gapMs,
        originMs: 0,
        latenessMs: def.allowedLatenessMs,
        retentionMs: sessionRetentionMs(def),
        hasValue: def.value !== undefined,
        hasDistinct: def.distinct !== undefined,
        percentiles: null,
        session: true,
      });
  }
  return slots;
}

export class PartitionState {
  readonly slots: Slot[];
  private readonly plans: MetricPlan[];
  /**
   * How records become events under the version's mapping (its metric file's `event:` section),
   * reading only the fields a metric reads. One per state: `apply` is synchronous.
   */
  private readonly decoder: EventDecoder;
  /** Per slot: windowStart -> key -> row of `table` (nested maps: no key string built per event). */
  private readonly windows: Map<number, Map<string, number>>[];
  /** Per slot, the window last looked up (NaN: none) and its map. */
  private readonly lastStart: Float64Array;
  private readonly lastWindow: (Map<string, number> | undefined)[];
  /** The open windows' aggregates, column by column. */
  private readonly table = new WindowTable();
  readonly dedup: DedupSet;
  /** Rows of `table` changed since the last capture (an entry may be stale: check DIRTY). */
  private dirty: number[] = [];
  /** Final rows of windows closed since the last checkpoint, each with its own stamp. */
  private closedRows: ViewRow[] = [];
  /** Smallest `start + size + lateness` over open windows: the watermark that closes the next one. */
  private nextCloseAt = Infinity;
  /** A lower bound of the watermark that closes the next open session (SessionSlot's queue). */
  private nextSessionCloseAt = Infinity;
  /** Per slot: closed windows whose rows are still published, until they expire. */
  private readonly held: HeldWindows[];
  /** Smallest `start + size + retention` over held windows: the watermark that expires the next one. */
  private nextExpireAt = Infinity;
  /** Snapshot rows of windows closed with unsnapshotted changes since the last capture (for the delta). */
  private closedChanges: WindowSnapshotRow[] = [];
  /** Row keys of expired windows since the last checkpoint: its tombstones. */
  private tombstones: string[] = [];
  /** Per slot: a session slot's sessions, null for a slot of tumbling windows. */
  private readonly sessions: (SessionSlot | null)[];
  /** The open session of each table row that holds one (sparse). */
  private readonly sessionAt: (OpenSession | undefined)[] = [];
  /** Removal rows (REMOVED_SESSION) for the next delta snapshot. */
  private removals: WindowSnapshotRow[] = [];

  position = 0;
  lastTimestamp = 0;
  maxTs = NO_EVENT_TIME;
  readonly counters: StateCounters;
  /** Records applied since the last checkpoint capture (0 = nothing to checkpoint). */
  pendingRecords = 0;
  /** Position and watermark of the last capture (for the invariants checked there). */
  private capturedPosition = 0;
  private capturedWatermark = NO_EVENT_TIME;
  /**
   * The start offset of a version that starts mid-log, while the state is still being warmed up
   * from the history before it (null: not warming). Until the position reaches it, nothing is
   * published: final rows of windows the warm-up closes are discarded (the warm-up may have
   * skipped records of them; the batch view answers them), and captures carry no rows.
   * docs/merge-rule.md, "Hard case 3: a version that starts mid-log", argues why the state at the start is
   * then exactly a full replay's for every window still open.
   */
  warmUntil: number | null = null;

  constructor(
    readonly partition: number,
    defs: readonly MetricDefinition[],
    readonly semantics: SpeedSemantics,
    readonly placement: Placement,
  ) {
    this.slots = buildSlots(defs);
    let next = 0;
    this.plans = defs.map((def) => ({
      compiled: compileMetric(def),
      slots: def.granularities.map(() => next++),
      session: def.session !== undefined ? next++ : -1,
      percentiles: def.percentiles ? bucketBoundaries(def.percentiles.relativeAccuracy) : null,
    }));
    this.sessions = this.slots.map((s) => (s.session ? new SessionSlot(s.sizeMs, s.latenessMs, s.retentionMs) : null));
    const mapping = eventMappingOf(defs);
    const referenced = new Set(defs.flatMap(metricFieldsOf));
    this.decoder = createEventDecoder(mapping, [...referenced]);
    this.windows = this.slots.map(() => new Map());
    this.held = this.slots.map(() => new HeldWindows());
    this.lastStart = new Float64Array(this.slots.length).fill(NaN);
    this.lastWindow = this.slots.map(() => undefined);
    this.dedup = new DedupSet(semantics.dedupHorizonMs);
    this.counters = {
      events: 0,
      duplicates: 0,
      invalid: 0,
      misplaced: 0,
      droppedLate: Object.fromEntries(this.slots.map((s) => [s.id, 0])),
    };
  }

  watermark(): number {
    return partitionWatermark(this.maxTs, this.semantics.outOfOrdernessMs);
  }

  /** Rows the next checkpoint would publish (changed windows plus final rows of closed ones). */
  get pendingRows(): number {
    return this.warmUntil !== null ? 0 : this.dirty.length + this.closedRows.length + this.tombstones.length;
  }

  /** Open windows (open sessions included). */
  get windowCount(): number {
    return this.table.live;
  }

  /** Closed windows whose rows are still in the view (they leave at expiry), closed sessions included. */
  get heldWindowCount(): number {
    let n = 0;
    for (const h of this.held) n += h.size;
    for (const ss of this.sessions) n += ss?.heldCount ?? 0;
    return n;
  }

  /** Applies one record of this partition (records must come in offset order). */
  apply(record: LogRecord | Pick<LogRecord, 'offset' | 'timestamp' | 'value' | 'key'>): void {
    const v = record.value;
    this.applyValue(record.offset, record.timestamp, v, 0, v === null ? 0 : v.length, record.key);
  }

  /**
   * Applies the record at `offset` whose value is buf[start..end) (`buf` null: a tombstone) and
   * whose key is `key` (null: none, or not carried because the mapping does not read it).
   * Records must come in offset order. Taking a range lets a batch travel as one buffer (the
   * speed job hands batches to worker threads that way) without a Buffer object per record.
   */
  applyValue(offset: number, timestamp: number, buf: Buffer | null, start: number, end: number, key: Uint8Array | null = null): void {
    // Invariant: records come once each, in offset order (the consumer adapter filters replays).
    // (The message is built only when the invariant is broken: this runs for every record.)
    if (offset < this.position) assert(false, `partition ${this.partition}: record ${offset} arrived after position ${this.position}`);
    if (this.warmUntil !== null && offset >= this.warmUntil) this.reachStart();
    this.position = offset + 1;
    this.lastTimestamp = timestamp;
    this.pendingRecords++;
    const d = this.decoder;
    if (!d.decode(buf, start, end, key, timestamp, LOGGED_RECORD_LIMITS)) {
      // Not an event under the version's mapping (a foreign producer wrote it). Counted and
      // skipped here; the batch layer, which reads the same log, sends it to the dead-letter
      // topic with the reason (one dead letter per bad record, not one per layer).
      this.counters.invalid++;
      return;
    }
    const ts = d.ts;
    fingerprintBytes(d.idBuf, d.idStart, d.idEnd, fingerprint);
    const hash = idHash(d.idBuf, d.idStart, d.idEnd);
    this.counters.events++;
    const misplaced = isMisplaced(hash, this.partition, this.placement.homePartitions);
    if (misplaced) this.counters.misplaced++;
    const watermark = partitionWatermark(this.maxTs, this.semantics.outOfOrdernessMs);
    if (this.dedup.seen(fingerprint, ts, watermark)) {
      this.counters.duplicates++;
      return;
    }
    // Only a first sighting pays for its fields (the decoder still describes this record).
    const fields: FieldValues = d.fieldValues();

    const t = this.table;
    for (const plan of this.plans) {
      const m = plan.compiled;
      if (!m.matches(fields)) continue;
      const key = m.keyOf(fields)!;
      const value = m.valueOf(fields);
      const distinct = m.distinctOf(fields);
      const reg = distinct === undefined ? -1 : registerOf(distinct);
      // All slots of a metric share its bucket table: the bucket is found once per event.
      const pt = plan.percentiles;
      const bucket = pt === null || value === undefined ? undefined : bucketOf(value, pt);
      if (plan.session >= 0) {
        this.applySession(plan.session, key, ts, value, reg, misplaced, watermark, offset, timestamp);
        continue;
      }
      for (const s of plan.slots) {
        const slot = this.slots[s]!;
        const start = windowStartOf(ts, slot.sizeMs, slot.originMs);
        const closing = windowClosesAt(start, slot.sizeMs, slot.latenessMs);
        if (isWindowClosed(closing, watermark)) {
          this.counters.droppedLate[slot.id]!++;
          continue;
        }
        const byKey = this.windowMap(s, start);
        let w = byKey.get(key);
        if (w === undefined) {
          w = t.alloc(s, start, key, slot.hasDistinct ? new HyperLogLog() : null, slot.percentiles ? new Map() : null);
          byKey.set(key, w);
          if (closing < this.nextCloseAt) this.nextCloseAt = closing;
        }
        t.counts[w]!++;
        if (misplaced) t.misplaced[w]!++;
        if (value !== undefined) {
          t.sums[w]! += value;
          if (value < t.mins[w]!) t.mins[w] = value;
          if (value > t.maxs[w]!) t.maxs[w] = value;
          t.flags[w]! |= HAS_VALUE;
        }
        if (reg !== -1) t.sketches[w]!.setRegister(reg >>> 8, reg & 0xff);
        if (bucket !== undefined) {
          const vs = t.valueSketches[w]!;
          vs.set(bucket, (vs.get(bucket) ?? 0) + 1);
        }
        if ((t.flags[w]! & DIRTY) === 0) {
          t.flags[w]! |= DIRTY;
          this.dirty.push(w);
        }
      }
    }
    if (ts > this.maxTs) {
      this.maxTs = ts;
      const wm = partitionWatermark(ts, this.semantics.outOfOrdernessMs);
      if (wm > this.nextCloseAt) this.closeWindows(offset + 1, timestamp);
      // Sessions close as often as their keys go quiet: without the windows' scan and the dedup expiry.
      else if (wm > this.nextSessionCloseAt) this.nextSessionCloseAt = this.closeSessions(offset + 1, timestamp, this.warmUntil === null);
      if (wm > this.nextExpireAt) this.expireWindows(true);
    }
  }

  /**
   * Step 3 for a session metric (services/metrics/sessionRule.ts): the event of `key` at `ts`
   * joins the open sessions it touches (lies within gap of), merging them into the one that
   * starts first, or starts a session of its own. Dropped as late when it touches a closed
   * session whose row is still published (its final row is never changed), or when its own
   * session would already have expired. A new session the watermark has already closed (a very
   * late event touching nothing) is closed at once, with its final row stamped at this record:
   * no open session is ever closable under the current watermark, so a restore closes exactly
   * what an uninterrupted run had closed.
   */
  private applySession(
    s: number,
    key: string,
    ts: number,
    value: number | undefined,
    reg: number,
    misplaced: boolean,
    watermark: number,
    offset: number,
    timestamp: number,
  ): void {
    const ss = this.sessions[s]!;
    const slot = this.slots[s]!;
    const gap = ss.gapMs;
    if (ss.touchesHeld(key, ts) || isSessionExpired(sessionExpiresAt(ts, gap, slot.retentionMs), watermark)) {
      this.counters.droppedLate[slot.id]!++;
      return;
    }
    const t = this.table;
    let session: OpenSession | undefined;
    const list = ss.open.get(key);
    if (list !== undefined) {
      // The list is in order of start and its sessions do not touch each other: the ones this
      // event touches are consecutive, and the first of them starts first.
      for (let i = 0; i < list.length;) {
        const o = list[i]!;
        if (touchesSession(o, ts, gap)) {
          if (session === undefined) {
            session = o;
            i++;
          } else this.absorbSession(ss, session, o);
        } else i++;
      }
    }
    if (session === undefined) {
      const w = t.alloc(s, ts, key, slot.hasDistinct ? new HyperLogLog() : null, null);
      session = { key, start: ts, end: ts, w, publishedStart: NaN, gone: false };
      ss.add(session);
      this.sessionAt[w] = session;
      ss.queue(session, sessionClosesAt(ts, gap, slot.latenessMs));
    } else {
      if (ts < session.start) {
        session.start = ts;
        t.starts[session.w] = ts;
      }
      if (ts > session.end) session.end = ts;
    }
    const w = session.w;
    t.counts[w]!++;
    if (misplaced) t.misplaced[w]!++;
    if (value !== undefined) {
      t.sums[w]! += value;
      if (value < t.mins[w]!) t.mins[w] = value;
      if (value > t.maxs[w]!) t.maxs[w] = value;
      t.flags[w]! |= HAS_VALUE;
    }
    if (reg !== -1) t.sketches[w]!.setRegister(reg >>> 8, reg & 0xff);
    if ((t.flags[w]! & DIRTY) === 0) {
      t.flags[w]! |= DIRTY;
      this.dirty.push(w);
    }
    const closesAt = sessionClosesAt(session.end, gap, slot.latenessMs);
    if (isSessionClosed(closesAt, watermark)) this.closeSession(s, session, offset + 1, timestamp, this.warmUntil === null);
    else if (closesAt < this.nextSessionCloseAt) this.nextSessionCloseAt = closesAt;
  }

  /** Merges open session `o` into `into` (a late event bridged them): aggregates combined, `o`'s published row deleted. */
  private absorbSession(ss: SessionSlot, into: OpenSession, o: OpenSession): void {
    const t = this.table;
    const [a, b] = [into.w, o.w];
    t.counts[a]! += t.counts[b]!;
    t.misplaced[a]! += t.misplaced[b]!;
    if ((t.flags[b]! & HAS_VALUE) !== 0) {
      t.sums[a]! += t.sums[b]!;
      if (t.mins[b]! < t.mins[a]!) t.mins[a] = t.mins[b]!;
      if (t.maxs[b]! > t.maxs[a]!) t.maxs[a] = t.maxs[b]!;
      t.flags[a]! |= HAS_VALUE;
    }
    if (t.sketches[b]) t.sketches[a]!.merge(t.sketches[b]);
    if (o.end > into.end) into.end = o.end;
    if (o.start < into.start) {
      into.start = o.start;
      t.starts[a] = o.start;
    }
    this.unpublishSession(ss, o, o.publishedStart);
    ss.remove(o);
    this.sessionAt[b] = undefined;
    t.release(b);
  }

  /** Deletes the row a session was published under at `start` (NaN: none): a tombstone, and a removal for the next delta snapshot. */
  private unpublishSession(ss: SessionSlot, session: OpenSession, start: number): void {
    if (Number.isNaN(start)) return;
    const slot = this.slots[this.table.slots[session.w]!]!;
    this.tombstones.push(
      viewRowKey({
        metric: slot.metric,
        granularity: SESSION_GRANULARITY,
        windowStart: start,
        partition: this.partition,
        key: session.key,
      }),
    );
    this.removals.push({
      slot: slot.id,
      windowStart: start,
      key: session.key,
      count: REMOVED_SESSION,
      sum: null,
      min: null,
      max: null,
      sketch: null,
      valueSketch: null,
      misplaced: 0,
      windowEnd: null,
    });
    void ss;
  }

  /** Before a session's row is published: the row of its previous start, if it moved, is deleted. */
  private republishSession(ss: SessionSlot, session: OpenSession): void {
    if (session.publishedStart !== session.start) this.unpublishSession(ss, session, session.publishedStart);
    session.publishedStart = session.start;
  }

  /**
   * Closes an open session: with `throughOffset`, its final row (when it changed since the last
   * capture) stamped at the closing record; without (restore), silently (its final row was
   * published by the checkpoint that closed it). With `hold`, it is held until it expires.
   */
  private closeSession(
    s: number,
    session: OpenSession,
    throughOffset: number | undefined,
    processingTime: number | undefined,
    hold: boolean,
  ): void {
    const ss = this.sessions[s]!;
    const slot = this.slots[s]!;
    const t = this.table;
    const w = session.w;
    if ((t.flags[w]! & DIRTY) !== 0 && throughOffset !== undefined && this.warmUntil === null) {
      this.republishSession(ss, session);
      this.closedRows.push(this.row(w, throughOffset, processingTime!));
      this.closedChanges.push(this.snapshotRow(w));
    }
    ss.remove(session);
    this.sessionAt[w] = undefined;
    t.release(w);
    if (hold) {
      ss.hold(session.key, session.start, session.end);
      const expires = sessionExpiresAt(ss.oldestEnd()!, ss.gapMs, slot.retentionMs);
      if (expires < this.nextExpireAt) this.nextExpireAt = expires;
    }
  }

  /** Closes the sessions the current watermark closes (closeWindows' part for session slots); returns the next closing watermark. */
  private closeSessions(throughOffset: number | undefined, processingTime: number | undefined, hold: boolean): number {
    const watermark = this.watermark();
    let next = Infinity;
    this.sessions.forEach((ss, s) => {
      if (ss === null) return;
      const slot = this.slots[s]!;
      while (isSessionClosed(ss.nextCloseAt(), watermark)) {
        const { session } = ss.dequeue();
        if (session.gone) continue;
        const closesAt = sessionClosesAt(session.end, ss.gapMs, slot.latenessMs);
        if (isSessionClosed(closesAt, watermark)) this.closeSession(s, session, throughOffset, processingTime, hold);
        else ss.queue(session, closesAt);
      }
      next = Math.min(next, ss.nextCloseAt());
    });
    return next;
  }

  /**
   * A warm-up record that can fall only in windows already closed at the version's start
   * (streaming/replay/warmUpSource.ts): its id's fingerprint and event time, as the version's mapping
   * reads them, without its value. It takes exactly the steps of `applyValue` that do not touch a
   * window: the dedup rule (the id's entry, and the duplicate count) and the largest event time
   * (the watermark every later record is judged by, and the windows it closes).
   */
  applyNarrow(offset: number, timestamp: number, ts: number, fp: Int32Array): void {
    if (offset < this.position) assert(false, `partition ${this.partition}: record ${offset} arrived after position ${this.position}`);
    if (this.warmUntil === null || offset >= this.warmUntil)
      assert(false, `partition ${this.partition}: a narrow record ${offset} outside a warm-up`);
    this.position = offset + 1;
    this.lastTimestamp = timestamp;
    this.pendingRecords++;
    this.counters.events++;
    if (this.dedup.seen(fp, ts, partitionWatermark(this.maxTs, this.semantics.outOfOrdernessMs))) {
      this.counters.duplicates++;
      return;
    }
    if (ts > this.maxTs) {
      this.maxTs = ts;
      if (partitionWatermark(ts, this.semantics.outOfOrdernessMs) > Math.min(this.nextCloseAt, this.nextSessionCloseAt))
        this.closeWindows(offset + 1, timestamp);
    }
  }

  /**
   * Moves past records that are not events (transaction markers, records the lake does not
   * keep). A move counts as pending work: the next checkpoint commits the new position even when
   * no event changed a row (a replay's hand-over must commit exactly the lake's end).
   */
  advanceTo(nextOffset: number): void {
    if (this.warmUntil !== null && nextOffset >= this.warmUntil) this.reachStart();
    if (nextOffset > this.position) {
      if (this.pendingRecords === 0) this.pendingRecords = 1;
      this.position = nextOffset;
    }
  }

  /** Starts a warm-up: the state is at the history's first offset and publishes from `start` on. */
  beginWarmUp(start: number): void {
    assert(this.position < start, `partition ${this.partition}: a warm-up up to ${start} begins at ${this.position}`);
    this.warmUntil = start;
  }

  /**
   * The warm-up has reached the version's start (the next record or position is at or past it):
   * drop the windows the watermark has closed, and mark every window still open as changed, so
   * that the next capture publishes them all stamped at its position (they hold exactly a full
   * replay's events below it). The counters start from zero: they describe what the version
   * read from its start on.
   */
  private reachStart(): void {
    const start = this.warmUntil!;
    assert(this.position <= start, `partition ${this.partition}: the warm-up went past the start ${start} to ${this.position}`);
    // Offsets left below the start held no record (transaction markers).
    this.position = start;
    this.warmUntil = null;
    this.closeWindows(undefined, undefined, false);
    this.closedRows = [];
    const t = this.table;
    this.dirty = [];
    for (const bySlot of this.windows)
      for (const byKey of bySlot.values())
        for (const w of byKey.values()) {
          t.flags[w]! |= DIRTY;
          this.dirty.push(w);
        }
    t.recycle();
    this.counters.events = 0;
    this.counters.duplicates = 0;
    this.counters.invalid = 0;
    this.counters.misplaced = 0;
    for (const id of Object.keys(this.counters.droppedLate)) this.counters.droppedLate[id] = 0;
    this.pendingRecords = Math.max(1, this.pendingRecords);
  }

  /**
   * During a warm-up nothing is captured for publishing, so the lists a capture would empty are
   * emptied here instead (called now and then): stale dirty entries go, released window rows
   * become reusable. Memory then follows the open windows, not the history read.
   */
  private compactWarmUp(): void {
    const t = this.table;
    this.dirty = this.dirty.filter((w) => (t.flags[w]! & (LIVE | DIRTY)) === (LIVE | DIRTY));
    t.recycle();
  }

  private windowMap(slot: number, start: number): Map<string, number> {
    // Consecutive events mostly fall in the same window of a slot: remember the last one.
    if (this.lastStart[slot] === start) return this.lastWindow[slot]!;
    const bySlot = this.windows[slot]!;
    let byKey = bySlot.get(start);
    if (byKey === undefined) bySlot.set(start, (byKey = new Map()));
    this.lastStart[slot] = start;
    this.lastWindow[slot] = byKey;
    return byKey;
  }

  /**
   * Removes the windows the current watermark closes. With `stamp`, a closed window with
   * unpublished updates gets its final row stamped at the closing record; without (restore),
   * windows are dropped silently: their final row was published with the checkpoint that
   * closed them. With `hold`, the closed windows' keys are held until they expire (their rows
   * are in the view); a warm-up's are not (it published none).
   */
  private closeWindows(throughOffset?: number, processingTime?: number, hold = this.warmUntil === null): void {
    const watermark = this.watermark();
    let next = Infinity;
    for (let s = 0; s < this.windows.length; s++) {
      const slot = this.slots[s]!;
      let closed: { start: number; keys: string[] }[] | undefined;
      for (const [start, byKey] of this.windows[s]!) {
        const closing = windowClosesAt(start, slot.sizeMs, slot.latenessMs);
        if (!isWindowClosed(closing, watermark)) {
          if (closing < next) next = closing;
          continue;
        }
        const t = this.table;
        const keys: string[] = [];
        for (const w of byKey.values()) {
          // A warm-up publishes no final row: the window may lack records the warm-up skipped.
          if ((t.flags[w]! & DIRTY) !== 0 && throughOffset !== undefined && this.warmUntil === null) {
            this.closedRows.push(this.row(w, throughOffset, processingTime!));
            // The delta snapshot must know the window too: a restore holds it until it expires.
            this.closedChanges.push(this.snapshotRow(w));
          }
          keys.push(t.keys[w]!);
          t.release(w);
        }
        (closed ??= []).push({ start, keys });
        this.windows[s]!.delete(start);
        if (this.lastStart[s] === start) this.lastStart[s] = NaN;
      }
      // Held until they expire only when their rows were published: not the windows a warm-up closes.
      if (closed && hold) {
        closed.sort((a, b) => a.start - b.start);
        for (const c of closed) this.held[s]!.push(c.start, c.keys);
        const oldest = this.held[s]!.oldest()!;
        const expires = windowExpiresAt(oldest, slot.sizeMs, slot.retentionMs);
        if (expires < this.nextExpireAt) this.nextExpireAt = expires;
      }
    }
    this.nextCloseAt = next;
    this.nextSessionCloseAt = this.closeSessions(throughOffset, processingTime, hold);
    this.dedup.expire(watermark);
    if (this.warmUntil !== null && this.dirty.length > 4096 && this.dirty.length > 2 * this.table.live) this.compactWarmUp();
  }

  /**
   * Forgets the held windows the current watermark expires (the one rule:
   * services/metrics/retention.ts). With `stamp`, each of their rows gets a tombstone in the next
   * checkpoint; without (restore), they are dropped silently: the checkpoint that expired them
   * published their tombstones.
   */
  private expireWindows(stamp: boolean): void {
    const watermark = this.watermark();
    let next = Infinity;
    for (let s = 0; s < this.held.length; s++) {
      const slot = this.slots[s]!;
      const held = this.held[s]!;
      for (let start = held.oldest(); start !== undefined; start = held.oldest()) {
        const expires = windowExpiresAt(start, slot.sizeMs, slot.retentionMs);
        if (!isWindowExpired(expires, watermark)) {
          if (expires < next) next = expires;
          break;
        }
        const { keys } = held.shift();
        if (!stamp) continue;
        for (const key of keys)
          this.tombstones.push(
            viewRowKey({ metric: slot.metric, granularity: slot.granularity, windowStart: start, partition: this.partition, key }),
          );
      }
      const ss = this.sessions[s];
      if (ss === null || ss === undefined) continue;
      for (let end = ss.oldestEnd(); end !== undefined; end = ss.oldestEnd()) {
        const expires = sessionExpiresAt(end, ss.gapMs, slot.retentionMs);
        if (!isSessionExpired(expires, watermark)) {
          if (expires < next) next = expires;
          break;
        }
        const h = ss.shiftHeld();
        if (stamp)
          this.tombstones.push(
            viewRowKey({
              metric: slot.metric,
              granularity: SESSION_GRANULARITY,
              windowStart: h.start,
              partition: this.partition,
              key: h.key,
            }),
          );
      }
    }
    this.nextExpireAt = next;
  }

  row(w: number, throughOffset: number, processingTime: number): ViewRow {
    const t = this.table;
    const slot = this.slots[t.slots[w]!]!;
    const withValue = slot.hasValue && (t.flags[w]! & HAS_VALUE) !== 0;
    const sketch = t.sketches[w];
    return {
      metric: slot.metric,
      granularity: slot.granularity,
      key: t.keys[w]!,
      windowStart: t.starts[w]!,
      partition: this.partition,
      count: t.counts[w]!,
      sum: withValue ? t.sums[w]! : null,
      min: withValue ? t.mins[w]! : null,
      max: withValue ? t.maxs[w]! : null,
      distinctSketch: sketch ? sketch.toBase64() : null,
      valueSketch: this.valueSketchText(w),
      misplaced: t.misplaced[w]!,
      throughOffset,
      processingTime,
      ...(slot.session ? { windowEnd: this.sessionAt[w]!.end } : {}),
    };
  }

  /**
   * Takes what the next checkpoint publishes: rows of windows changed since the last capture,
   * stamped with the current position, plus the final rows of windows closed meanwhile.
   * Also returns the changed windows for a delta snapshot.
   */
  captureChanges(): { rows: ViewRow[]; changedWindows: WindowSnapshotRow[]; tombstones: string[] } {
    // Invariants serving relies on (docs/merge-rule.md): a row key's stamp never goes back, and
    // neither does the watermark that closes windows.
    assert(
      this.position >= this.capturedPosition,
      `partition ${this.partition}: capture at ${this.position} after one at ${this.capturedPosition}`,
    );
    const watermark = this.watermark();
    assert(
      watermark >= this.capturedWatermark,
      `partition ${this.partition}: watermark went back from ${this.capturedWatermark} to ${watermark}`,
    );
    this.capturedPosition = this.position;
    this.capturedWatermark = watermark;
    const rows = this.closedRows;
    const t = this.table;
    for (const w of this.dirty) {
      // Closed since (released: flags 0) or listed twice: nothing to publish for this entry.
      if ((t.flags[w]! & (LIVE | DIRTY)) !== (LIVE | DIRTY)) continue;
      t.flags[w]! &= ~DIRTY;
      const session = this.sessionAt[w];
      if (session !== undefined) this.republishSession(this.sessions[t.slots[w]!]!, session);
      rows.push(this.row(w, this.position, this.lastTimestamp));
      this.closedChanges.push(this.snapshotRow(w));
    }
    // Removals first: a delta is applied in order (a removed start is never a live one, anyway).
    const changedWindows: WindowSnapshotRow[] = this.removals.length > 0 ? [...this.removals, ...this.closedChanges] : this.closedChanges;
    const tombstones = this.tombstones;
    this.removals = [];
    this.dirty = [];
    this.closedRows = [];
    this.closedChanges = [];
    this.tombstones = [];
    this.pendingRecords = 0;
    // No index in a dirty list any more: released rows may be reused now.
    t.recycle();
    return { rows, changedWindows, tombstones };
  }

  snapshotRow(w: number): WindowSnapshotRow {
    const t = this.table;
    const hasValue = (t.flags[w]! & HAS_VALUE) !== 0;
    return {
      slot: this.slots[t.slots[w]!]!.id,
      windowStart: t.starts[w]!,
      key: t.keys[w]!,
      count: t.counts[w]!,
      sum: hasValue ? t.sums[w]! : null,
      min: hasValue ? t.mins[w]! : null,
      max: hasValue ? t.maxs[w]! : null,
      sketch: t.sketches[w] ? t.sketches[w]!.serialize() : null,
      valueSketch: this.valueSketchText(w),
      misplaced: t.misplaced[w]!,
      ...(this.sessionAt[w] !== undefined ? { windowEnd: this.sessionAt[w].end } : {}),
    };
  }

  private valueSketchText(w: number): string | null {
    const vs = this.table.valueSketches[w];
    return vs ? sketchText(vs) : null;
  }

  /**
   * Every window of a full snapshot: the open ones, and the held ones as key-only rows (count 0,
   * which no open window has: a restore holds them again without a sketch, and closes them).
   */
  allWindows(): WindowSnapshotRow[] {
    const out: WindowSnapshotRow[] = [];
    for (const bySlot of this.windows) for (const byKey of bySlot.values()) for (const w of byKey.values()) out.push(this.snapshotRow(w));
    this.held.forEach((held, s) => {
      const slot = this.slots[s]!.id;
      for (const { start, keys } of held.entries())
        for (const key of keys)
          out.push({
            slot,
            windowStart: start,
            key,
            count: 0,
            sum: null,
            min: null,
            max: null,
            sketch: null,
            valueSketch: null,
            misplaced: 0,
          });
    });
    this.sessions.forEach((ss, s) => {
      if (ss === null) return;
      const slot = this.slots[s]!.id;
      for (const list of ss.open.values()) for (const session of list) out.push(this.snapshotRow(session.w));
      for (const h of ss.heldSessions())
        out.push({
          slot,
          windowStart: h.start,
          key: h.key,
          count: 0,
          sum: null,
          min: null,
          max: null,
          sketch: null,
          valueSketch: null,
          misplaced: 0,
          windowEnd: h.end,
        });
    });
    return out;
  }

  meta(): StateMeta {
    return {
      partition: this.partition,
      position: this.position,
      lastTimestamp: this.lastTimestamp,
      maxTs: this.maxTs,
      counters: { ...this.counters, droppedLate: { ...this.counters.droppedLate } },
      warmUntil: this.warmUntil,
    };
  }

  /**
   * A checkpoint during a warm-up: it commits the position and the state (so that a restart
   * resumes the warm-up there) but publishes no row, and windows stay marked for the capture
   * after the start.
   */
  captureWarmUp(): void {
    this.pendingRecords = 0;
    this.compactWarmUp();
  }

  // ------------------------------------------------------------------ restore

  /** Restores the scalar state; counters of slots that no longer exist are dropped. */
  restoreMeta(meta: StateMeta): void {
    this.position = meta.position;
    this.lastTimestamp = meta.lastTimestamp;
    this.maxTs = meta.maxTs;
    this.warmUntil = meta.warmUntil ?? null;
    this.counters.events = meta.counters.events;
    this.counters.duplicates = meta.counters.duplicates;
    this.counters.invalid = meta.counters.invalid;
    // Snapshots before format 3 did not count misplaced records.
    this.counters.misplaced = meta.counters.misplaced ?? 0;
    for (const id of Object.keys(this.counters.droppedLate)) this.counters.droppedLate[id] = meta.counters.droppedLate[id] ?? 0;
  }

  /** Upserts a window from a snapshot; windows of slots that no longer exist are skipped. */
  restoreWindow(row: WindowSnapshotRow, slotIndex: Map<string, number>): void {
    const s = slotIndex.get(row.slot);
    if (s === undefined) return;
    const slot = this.slots[s]!;
    if (slot.session) {
      this.restoreSession(s, row);
      return;
    }
    const byKey = this.windowMap(s, row.windowStart);
    // A held (closed) window's row has count 0 and needs no sketch: finishRestore closes it.
    const sketch = slot.hasDistinct && row.count > 0 ? (row.sketch ? HyperLogLog.deserialize(row.sketch) : new HyperLogLog()) : null;
    // A snapshot from before the metric kept percentiles has none: the window's sketch starts empty.
    const valueSketch = slot.percentiles && row.count > 0 ? parseSketch(row.valueSketch ?? '') : null;
    const t = this.table;
    let w = byKey.get(row.key);
    if (w === undefined) {
      w = t.alloc(s, row.windowStart, row.key, sketch, valueSketch);
      byKey.set(row.key, w);
    } else {
      t.sketches[w] = sketch;
      t.valueSketches[w] = valueSketch;
    }
    this.restoreMeasures(w, row);
  }

  /** restoreWindow for a session slot: an open session (upserted by start), a held one (count 0), or a removal. */
  private restoreSession(s: number, row: WindowSnapshotRow): void {
    const ss = this.sessions[s]!;
    const slot = this.slots[s]!;
    const t = this.table;
    const existing = ss.open.get(row.key)?.find((o) => o.start === row.windowStart);
    if (row.count === REMOVED_SESSION) {
      if (existing !== undefined) {
        ss.remove(existing);
        this.sessionAt[existing.w] = undefined;
        t.release(existing.w);
      }
      return;
    }
    const end = row.windowEnd ?? row.windowStart;
    if (row.count === 0) {
      ss.hold(row.key, row.windowStart, end);
      return;
    }
    let session = existing;
    const sketch = slot.hasDistinct ? (row.sketch ? HyperLogLog.deserialize(row.sketch) : new HyperLogLog()) : null;
    if (session === undefined) {
      const w = t.alloc(s, row.windowStart, row.key, sketch, null);
      // Restored from a checkpoint: its row was published under this start.
      session = { key: row.key, start: row.windowStart, end, w, publishedStart: row.windowStart, gone: false };
      ss.add(session);
      this.sessionAt[w] = session;
    } else {
      t.sketches[session.w] = sketch;
      session.end = end;
    }
    ss.queue(session, sessionClosesAt(end, ss.gapMs, slot.latenessMs));
    const w = session.w;
    this.restoreMeasures(w, row);
  }

  /** A restored row's count, misplaced count and value measures, into table slot `w`. */
  private restoreMeasures(w: number, row: WindowSnapshotRow): void {
    const t = this.table;
    t.counts[w] = row.count;
    t.misplaced[w] = row.misplaced;
    if (row.sum !== null) {
      t.sums[w] = row.sum;
      t.mins[w] = row.min!;
      t.maxs[w] = row.max!;
      t.flags[w]! |= HAS_VALUE;
    } else {
      t.sums[w] = 0;
      t.mins[w] = Infinity;
      t.maxs[w] = -Infinity;
      t.flags[w]! &= ~HAS_VALUE;
    }
  }

  slotIndex(): Map<string, number> {
    return new Map(this.slots.map((s, i) => [s.id, i]));
  }

  /** After all snapshot parts are applied: drop what the restored watermark has closed. */
  finishRestore(): void {
    this.capturedPosition = this.position;
    this.capturedWatermark = this.watermark();
    this.dedup.clearAdded();
    this.closeWindows();
    this.expireWindows(false);
    this.pendingRecords = 0;
  }

  private bytesCache = { at: -Infinity, bytes: 0 };

  /**
   * Approximate heap bytes of the state (windows, sketches, dedup set): for status and the
   * bench. Walking every window is not free, so the figure is refreshed at most every 10 s.
   */
  approxBytes(now = Date.now()): number {
    if (now - this.bytesCache.at < 10_000) return this.bytesCache.bytes;
    this.bytesCache = { at: now, bytes: this.measureBytes() };
    return this.bytesCache.bytes;
  }

  measureBytes(): number {
    const t = this.table;
    let bytes = this.dedup.approxBytes() + t.columnBytes();
    for (const bySlot of this.windows) {
      for (const byKey of bySlot.values()) {
        bytes += 64;
        // Map entry, and the key string (shared by the granularities of one event).
        for (const w of byKey.values())
          bytes +=
            40 +
            t.keys[w]!.length +
            (t.sketches[w] ? t.sketches[w]!.byteSize() : 0) +
            (t.valueSketches[w] ? 64 + 40 * t.valueSketches[w]!.size : 0);
      }
    }
    for (const ss of this.sessions) if (ss !== null) bytes += ss.approxBytes();
    for (const held of this.held) {
      for (const { keys } of held.entries()) {
        bytes += 48;
        for (const key of keys) bytes += 24 + key.length;
      }
    }
    return bytes;
  }
}
