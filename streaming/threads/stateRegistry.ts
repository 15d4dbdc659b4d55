/**
 * The partition states of one thread and the operations the speed job asks of them: restore a
 * partition from its checkpoint chain, apply batches, capture a checkpoint (the changed view
 * rows and a full or delta snapshot), drop a revoked partition, report statistics.
 *
 * This is what a state thread runs (stateWorker.ts hosts one in a worker thread; stateHost.ts
 * runs one inline when the job has no worker threads). Nothing here talks to the log: the main
 * thread keeps the consumer, the producers and the commit protocol (partitionTask.ts), so the
 * exactly-once argument is unchanged by where the state lives. Messages to one thread are handled
 * in order, so a capture sees exactly the batches sent before it.
 */
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import type { LogRecord } from '../../services/log/eventLog.ts';
import { viewRowKey } from '../../services/views/viewRow.ts';
import { restoreState } from '../checkpoints/checkpointStore.ts';
import { PartitionState, type Placement, type SpeedSemantics, type StateCounters } from '../state/partitionState.ts';
import { NO_EVENT_TIME } from '../state/watermarks.ts';
import { NARROW_RECORD, type PackedBatch } from './recordPack.ts';
import { SNAPSHOT_FORMAT, decodeSnapshot, encodeSnapshot, type SnapshotHeader } from '../checkpoints/snapshotCodec.ts';

/** A new full snapshot is written when the delta chain gets this long... */
const MAX_CHAIN_LENGTH = 200;
/** ...or when the deltas hold more rows than this multiple of the live state. */
const MAX_DELTA_RATIO = 1;

export interface RegistryConfig {
  definitions: readonly MetricDefinition[];
  semantics: SpeedSemantics;
  placement: Placement;
  metricsFingerprint: string;
}

/** What the main thread knows of a partition's state between two messages. */
export interface PartitionStats {
  partition: number;
  /** Next offset to read. */
  position: number;
  /** Largest event time seen, null before the first event. */
  maxTs: number | null;
  watermark: number | null;
  /** Rows the next checkpoint would publish. */
  pendingRows: number;
  /** Records applied since the last capture (0: nothing to checkpoint). */
  pendingRecords: number;
  counters: StateCounters;
  windows: number;
  dedupEntries: number;
  /** Approximate state bytes (refreshed at most every 10 s unless measured). */
  bytes: number;
}

/** The delta chain of the partition's last committed checkpoint, which decides full or delta. */
export interface ChainInfo {
  length: number;
  rows: number;
  /** Position of the chain's last snapshot (the base of a delta), null for none. */
  last: number | null;
  /** Its name in the checkpoint store (streaming/checkpoints/checkpointStore.ts). */
  lastName: string | null;
  /** Every snapshot name of the chain, the full base first (written into a delta's header). */
  names: string[];
}

/** The committed checkpoint to restore: its snapshots' names and bytes, the full base first (read by the main thread). */
export interface ChainToRestore {
  offset: number;
  names: string[];
  buffers: Uint8Array[];
  /** Where they were read, for messages. */
  location: string;
}

export interface Opened {
  stats: PartitionStats;
  /** The restored chain: its snapshots' names (base first) and positions, and its delta rows. */
  chain: { names: string[]; positions: number[]; rows: number };
}

export interface Capture {
  position: number;
  header: SnapshotHeader;
  snapshot: Uint8Array;
  /** The view rows to publish: record keys, and JSON values (services/views/viewRow.ts) as UTF-8 in one buffer. */
  rowKeys: string[];
  rowValues: Uint8Array;
  /** End of row i's value in `rowValues` (its start is the previous end). */
  rowValueEnds: Int32Array;
  /** Row keys of windows expired since the last capture: tombstones, sent after the rows. */
  tombstoneKeys: string[];
  stats: PartitionStats;
}

export class StateRegistry {
  private readonly states = new Map<number, PartitionState>();

  constructor(private readonly cfg: RegistryConfig) {}

  /**
   * Restores `partition` from the snapshots of the group's committed offset (null: none yet,
   * start at `beginning`), and returns the restored chain's snapshot names and positions (base
   * first) and delta rows.
   */
  open(partition: number, committed: ChainToRestore | null, beginning: number, warmUntil: number | null = null): Opened {
    const { definitions, semantics, placement } = this.cfg;
    let state: PartitionState;
    let chain: Opened['chain'] = { names: [], positions: [], rows: 0 };
    if (committed === null) {
      state = new PartitionState(partition, definitions, semantics, placement);
      state.position = beginning;
      // A version that starts mid-log: built from the history first, published from its start on.
      if (warmUntil !== null && warmUntil > beginning) state.beginWarmUp(warmUntil);
    } else {
      const where = (i: number) => `${committed.location}/p${partition}/${committed.names[i]}.arrow`;
      const snapshots = committed.buffers.map((b, i) => decodeSnapshot(Buffer.from(b.buffer, b.byteOffset, b.byteLength), where(i)));
      state = restoreState(partition, definitions, semantics, placement, snapshots);
      if (state.position !== committed.offset)
        throw new Error(`checkpoint ${where(snapshots.length - 1)} holds position ${state.position}, expected ${committed.offset}`);
      chain = {
        names: committed.names,
        positions: snapshots.map((s) => s.header.position),
        rows: snapshots.at(-1)!.header.chainRows,
      };
    }
    this.states.set(partition, state);
    return { stats: this.stats(partition)!, chain };
  }

  applyPacked(batch: PackedBatch): PartitionStats | undefined {
    const state = this.states.get(batch.partition);
    if (!state) return undefined; // revoked meanwhile: the new owner recomputes
    const values = Buffer.from(batch.values.buffer, batch.values.byteOffset, batch.values.byteLength);
    const keys = batch.keys;
    const keyEnds = batch.keyEnds;
    let start = 0;
    let keyStart = 0;
    for (let k = 0; k < batch.count; k++) {
      const end = batch.valueEnds[k]!;
      const offset = batch.offsets[k]!;
      let key: Uint8Array | null = null;
      if (keyEnds !== undefined) {
        const keyEnd = keyEnds[k]!;
        if (keyEnd >= 0) {
          key = keys!.subarray(keyStart, keyEnd);
          keyStart = keyEnd;
        }
      }
      if (offset >= state.position) {
        if (end === NARROW_RECORD) {
          const narrow = batch.narrow!;
          state.applyNarrow(offset, batch.timestamps[k]!, narrow.eventTimes[k]!, narrow.fingerprints.subarray(4 * k, 4 * k + 4));
        } else if (end < 0) state.applyValue(offset, batch.timestamps[k]!, null, 0, 0, key);
        else state.applyValue(offset, batch.timestamps[k]!, values, start, end, key);
      }
      if (end >= 0) start = end;
    }
    state.advanceTo(batch.nextOffset);
    return this.stats(batch.partition);
  }

  applyRecords(partition: number, records: readonly LogRecord[], nextOffset: number): PartitionStats | undefined {
    const state = this.states.get(partition);
    if (!state) return undefined;
    for (const r of records) if (r.offset >= state.position) state.apply(r);
    state.advanceTo(nextOffset);
    return this.stats(partition);
  }

  /**
   * Takes what the next checkpoint of `partition` commits, or null when nothing changed since
   * the last capture. The rows leave the state here: if the commit then fails, the state no
   * longer matches any commit and the job must restart from the last committed checkpoint.
   */
  capture(partition: number, chain: ChainInfo): Capture | null {
    const state = this.states.get(partition);
    if (!state || state.pendingRecords === 0) return null;
    const position = state.position;
    // During a warm-up a checkpoint publishes nothing and holds the whole state (the windows'
    // changes are not tracked for a delta then).
    const warming = state.warmUntil !== null;
    if (warming) state.captureWarmUp();
    const { rows, changedWindows, tombstones } = warming ? { rows: [], changedWindows: [], tombstones: [] } : state.captureChanges();
    const added = state.dedup.takeAdded();
    const liveRows = state.windowCount + state.heldWindowCount + state.dedup.size;
    const deltaRows = changedWindows.length + added.length;
    // chain.rows counts the rows of the deltas since the base: once they outgrow the live state,
    // a restore would read more than a full snapshot holds, so write a full one.
    const full =
      warming || chain.length === 0 || chain.length >= MAX_CHAIN_LENGTH || chain.rows + deltaRows > MAX_DELTA_RATIO * liveRows + 1000;
    const header: SnapshotHeader = {
      ...state.meta(),
      format: SNAPSHOT_FORMAT,
      kind: full ? 'full' : 'delta',
      base: full ? null : chain.last,
      baseName: full ? null : chain.lastName,
      chain: full ? [] : chain.names,
      chainLength: full ? 1 : chain.length + 1,
      chainRows: full ? 0 : chain.rows + deltaRows,
      metricsFingerprint: this.cfg.metricsFingerprint,
      semantics: { ...state.semantics },
    };
    const snapshot = full
      ? encodeSnapshot({ header, windows: state.allWindows(), dedup: state.dedup.entries() })
      : encodeSnapshot({ header, windows: changedWindows, dedup: added });
    // Values in one buffer: it crosses to the main thread as transferred memory, and the main
    // thread's heap never holds a copy of the rows' text.
    const rowKeys = new Array<string>(rows.length);
    const texts = new Array<string>(rows.length);
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      rowKeys[i] = viewRowKey(rows[i]!);
      texts[i] = JSON.stringify(rows[i]);
      bytes += Buffer.byteLength(texts[i]!);
    }
    const rowValues = Buffer.allocUnsafeSlow(bytes);
    const rowValueEnds = new Int32Array(rows.length);
    let at = 0;
    for (let i = 0; i < rows.length; i++) {
      at += rowValues.write(texts[i]!, at, 'utf8');
      rowValueEnds[i] = at;
    }
    return { position, header, snapshot, rowKeys, rowValues, rowValueEnds, tombstoneKeys: tombstones, stats: this.stats(partition)! };
  }

  /** Closed windows of `partition` held until they expire (0 when it is not here). */
  heldWindows(partition: number): number {
    return this.states.get(partition)?.heldWindowCount ?? 0;
  }

  drop(partition: number): void {
    this.states.delete(partition);
  }

  stats(partition: number, exactBytes = false): PartitionStats | undefined {
    const s = this.states.get(partition);
    if (!s) return undefined;
    const seen = s.maxTs !== NO_EVENT_TIME;
    return {
      partition,
      position: s.position,
      maxTs: seen ? s.maxTs : null,
      watermark: seen ? s.watermark() : null,
      pendingRows: s.pendingRows,
      pendingRecords: s.pendingRecords,
      counters: { ...s.counters, droppedLate: { ...s.counters.droppedLate } },
      windows: s.windowCount,
      dedupEntries: s.dedup.size,
      bytes: exactBytes ? s.measureBytes() : s.approxBytes(),
    };
  }
}
