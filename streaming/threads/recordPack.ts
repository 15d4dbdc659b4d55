/**
 * A record batch as a few flat arrays, so that it crosses to a worker thread as transferred
 * memory instead of a structured clone of thousands of objects: the values concatenated in one
 * buffer, their end positions, offsets and log-append times. Keys are carried only for a version
 * whose mapping reads them (`event.id: $key`); headers never: the speed layer does not read them.
 */
import type { RecordBatch } from '../../services/log/eventLog.ts';

export interface PackedBatch {
  partition: number;
  /** Position after the batch (may lie past the last record: transaction markers). */
  nextOffset: number;
  count: number;
  offsets: Float64Array;
  timestamps: Float64Array;
  /** End of record i's value in `values` (its start is the previous end); -1: a null value. */
  valueEnds: Int32Array;
  values: Uint8Array;
  /** With keys: record i's key ends at keyEnds[i] in `keys` (its start is the previous end); -1: a null key. */
  keyEnds?: Int32Array;
  keys?: Uint8Array;
  /**
   * A warm-up's records that need no value (valueEnds[i] = NARROW_RECORD): record i's event time
   * and its id's fingerprint (lanes 4i..4i+3), as the version's mapping reads them
   * (streaming/replay/warmUpSource.ts). Every entry of the other records is unused.
   */
  narrow?: { eventTimes: Float64Array; fingerprints: Int32Array };
}

/** `valueEnds[i]` of a narrow record: it carries its event time and id fingerprint, not its value. */
export const NARROW_RECORD = -2;

/** Packs the records of `batch` (the state skips those before its position), with their keys when `withKeys`. */
export function packBatch(batch: RecordBatch, withKeys = false): PackedBatch {
  const records = batch.records;
  const first = 0;
  const count = records.length;
  let bytes = 0;
  for (let i = first; i < records.length; i++) bytes += records[i]!.value?.length ?? 0;
  const values = new Uint8Array(bytes);
  const offsets = new Float64Array(count);
  const timestamps = new Float64Array(count);
  const valueEnds = new Int32Array(count);
  let at = 0;
  for (let k = 0; k < count; k++) {
    const r = records[first + k]!;
    offsets[k] = r.offset;
    timestamps[k] = r.timestamp;
    if (r.value === null) valueEnds[k] = -1;
    else {
      values.set(r.value, at);
      at += r.value.length;
      valueEnds[k] = at;
    }
  }
  const packed: PackedBatch = { partition: batch.partition, nextOffset: batch.nextOffset, count, offsets, timestamps, valueEnds, values };
  if (withKeys) {
    let keyBytes = 0;
    for (const r of records) keyBytes += r.key?.length ?? 0;
    const keys = new Uint8Array(keyBytes);
    const keyEnds = new Int32Array(count);
    let k = 0;
    for (let i = 0; i < count; i++) {
      const key = records[i]!.key;
      if (key === null) keyEnds[i] = -1;
      else {
        keys.set(key, k);
        k += key.length;
        keyEnds[i] = k;
      }
    }
    packed.keys = keys;
    packed.keyEnds = keyEnds;
  }
  return packed;
}

/** The buffers of a packed batch, for `postMessage`'s transfer list. */
export function transferablesOf(p: PackedBatch): ArrayBuffer[] {
  const buffers = [p.offsets.buffer, p.timestamps.buffer, p.valueEnds.buffer, p.values.buffer] as ArrayBuffer[];
  if (p.keys && p.keyEnds) buffers.push(p.keys.buffer as ArrayBuffer, p.keyEnds.buffer as ArrayBuffer);
  if (p.narrow) buffers.push(p.narrow.eventTimes.buffer as ArrayBuffer, p.narrow.fingerprints.buffer as ArrayBuffer);
  return buffers;
}

/** A batch of no records that moves the partition's position to `nextOffset`. */
export function emptyPack(partition: number, nextOffset: number): PackedBatch {
  return {
    partition,
    nextOffset,
    count: 0,
    offsets: new Float64Array(0),
    timestamps: new Float64Array(0),
    valueEnds: new Int32Array(0),
    values: new Uint8Array(0),
  };
}
