/**
 * Binary form of a partition snapshot (checkpoints and savepoints): a small container holding
 * the scalar state as JSON and two Apache Arrow IPC files (windows, dedup entries), sealed with
 * a CRC-32 so that a torn or corrupted file is refused instead of restored.
 *
 *   "LKSNAP01" | u32 metaLength | meta JSON | u32 windowsLength | windows Arrow IPC
 *              | u32 dedupLength | dedup Arrow IPC | u32 crc32(everything before)
 *
 * Columns are built directly from buffers (makeData) rather than through Arrow's per-value
 * builders: a full snapshot holds hundreds of thousands of dedup entries.
 *
 * Formats: 4 adds each session's last event time (`window_end`, null for windows; a row with
 * count -1 removes a session, partitionState.ts REMOVED_SESSION); 3 adds each window's count of misplaced events (`misplaced`, see partitionState.ts);
 * 2 keeps the dedup set as 128-bit id fingerprints (`fp`, FixedSizeBinary(16), the lanes h1..h4
 * little-endian; see idFingerprint.ts); 1 kept the ids as text (`id`, Utf8). All are read (a
 * window of format 1 or 2 counted no misplaced event; a format-1 savepoint restores into
 * fingerprints); 4 is written.
 */
import { crc32 } from 'node:zlib';
import { Binary, FixedSizeBinary, Float64, Table, Utf8, makeData, makeVector, tableFromIPC, tableToIPC, type Vector } from 'apache-arrow';
import type { DedupEntries } from '../state/dedupSet.ts';
import { fingerprintId } from '../state/idFingerprint.ts';
import type { PartitionState, SpeedSemantics, StateMeta, WindowSnapshotRow } from '../state/partitionState.ts';

const MAGIC = Buffer.from('LKSNAP01', 'latin1');

export const SNAPSHOT_FORMAT = 4;

export interface SnapshotHeader extends StateMeta {
  /** 4: session ends; 3: misplaced counts per window; 2: dedup fingerprints; 1: dedup ids as text (read only). */
  format: 1 | 2 | 3 | 4;
  /** 'full' holds all live state; 'delta' holds changes since the snapshot at `base`. */
  kind: 'full' | 'delta';
  /** Position of the snapshot this delta applies to (null for full snapshots). */
  base: number | null;
  /**
   * Name of that snapshot in the checkpoint store (streaming/checkpoints/checkpointStore.ts);
   * absent in snapshots written before names carried their chain (the base is then named by its position).
   */
  baseName?: string | null;
  /**
   * The names of every snapshot this delta stands on, the full base first (absent in older
   * snapshots): a restore then reads them all at once instead of one header after another.
   */
  chain?: string[];
  /** Snapshots in the chain up to and including this one (1 for a full snapshot). */
  chainLength: number;
  /** Rows in the deltas since the full base (0 for a full snapshot): a new full snapshot is written when they outgrow the live state. */
  chainRows: number;
  /** Fingerprint of the metric definitions the state was computed with. */
  metricsFingerprint: string;
  semantics: { outOfOrdernessMs: number; dedupHorizonMs: number };
}

export interface SnapshotContent {
  header: SnapshotHeader;
  windows: WindowSnapshotRow[];
  dedup: DedupEntries;
}

// ------------------------------------------------------------------ column builders

function validityOf(present: (i: number) => boolean, length: number): { bitmap: Uint8Array; nulls: number } {
  const bitmap = new Uint8Array(Math.ceil(length / 8));
  let nulls = 0;
  for (let i = 0; i < length; i++) {
    if (present(i)) bitmap[i >> 3]! |= 1 << (i & 7);
    else nulls++;
  }
  return { bitmap, nulls };
}

function utf8Vector(values: readonly string[]): Vector<Utf8> {
  let capacity = 0;
  for (const v of values) capacity += v.length * 3;
  const data = Buffer.allocUnsafe(Math.max(capacity, 1));
  const offsets = new Int32Array(values.length + 1);
  let pos = 0;
  for (let i = 0; i < values.length; i++) {
    pos += data.write(values[i]!, pos, 'utf8');
    offsets[i + 1] = pos;
  }
  return makeVector(
    makeData({ type: new Utf8(), length: values.length, nullCount: 0, valueOffsets: offsets, data: data.subarray(0, pos) }),
  );
}

function binaryVector(values: readonly (Uint8Array | null)[]): Vector<Binary> {
  let size = 0;
  for (const v of values) size += v?.length ?? 0;
  const data = new Uint8Array(Math.max(size, 1));
  const offsets = new Int32Array(values.length + 1);
  let pos = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v) {
      data.set(v, pos);
      pos += v.length;
    }
    offsets[i + 1] = pos;
  }
  const { bitmap, nulls } = validityOf((i) => values[i] !== null, values.length);
  return makeVector(
    makeData({
      type: new Binary(),
      length: values.length,
      nullCount: nulls,
      nullBitmap: bitmap,
      valueOffsets: offsets,
      data: data.subarray(0, pos),
    }),
  );
}

function fingerprintVector(entries: DedupEntries): Vector<FixedSizeBinary> {
  const bytes = new Uint8Array(entries.fingerprints.buffer, entries.fingerprints.byteOffset, entries.length * 16);
  return makeVector(makeData({ type: new FixedSizeBinary(16), length: entries.length, nullCount: 0, data: bytes }));
}

/** The dedup columns of a snapshot, as fingerprints whatever the format. */
function readDedup(table: Table, source: string): DedupEntries {
  const length = table.numRows;
  const fingerprints = new Int32Array(length * 4);
  const fpCol = table.getChild('fp');
  if (fpCol) {
    const bytes = new Uint8Array(fingerprints.buffer);
    let at = 0;
    for (const chunk of fpCol.data) {
      const v = chunk.values as Uint8Array;
      bytes.set(v.subarray(0, chunk.length * 16), at);
      at += chunk.length * 16;
    }
  } else {
    const idCol = table.getChild('id');
    if (!idCol) throw new CorruptSnapshotError(`${source}: the dedup table has neither fp nor id`);
    const ids = readStrings(idCol, length);
    const lane = new Int32Array(4);
    for (let i = 0; i < length; i++) {
      fingerprintId(ids[i]!, lane);
      fingerprints.set(lane, i * 4);
    }
  }
  const ts = new Float64Array(length);
  let i = 0;
  for (const chunk of table.getChild('ts')?.data ?? []) for (let k = 0; k < chunk.length; k++) ts[i++] = (chunk.values as Float64Array)[k]!;
  return { length, fingerprints, ts };
}

function float64Vector(values: readonly (number | null)[]): Vector<Float64> {
  const data = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) data[i] = values[i] ?? 0;
  const { bitmap, nulls } = validityOf((i) => values[i] !== null, values.length);
  return makeVector(makeData({ type: new Float64(), length: values.length, nullCount: nulls, nullBitmap: bitmap, data }));
}

function readStrings(vector: Vector | null, length: number): string[] {
  const out: string[] = new Array(length);
  if (!vector) throw new Error('snapshot column missing');
  let i = 0;
  for (const chunk of vector.data) {
    const offsets = chunk.valueOffsets as Int32Array;
    const bytes = Buffer.from(chunk.values.buffer, chunk.values.byteOffset, chunk.values.byteLength);
    for (let k = 0; k < chunk.length; k++) out[i++] = bytes.toString('utf8', offsets[k]!, offsets[k + 1]!);
  }
  return out;
}

function readFloats(vector: Vector | null, length: number): (number | null)[] {
  if (!vector) throw new Error('snapshot column missing');
  const out: (number | null)[] = new Array(length);
  for (let i = 0; i < length; i++) out[i] = vector.get(i) as number | null;
  return out;
}

// ------------------------------------------------------------------ encode / decode

export function encodeSnapshot(content: SnapshotContent): Buffer {
  const w = content.windows;
  const windows = new Table({
    slot: utf8Vector(w.map((r) => r.slot)),
    window_start: float64Vector(w.map((r) => r.windowStart)),
    key: utf8Vector(w.map((r) => r.key)),
    count: float64Vector(w.map((r) => r.count)),
    sum: float64Vector(w.map((r) => r.sum)),
    min: float64Vector(w.map((r) => r.min)),
    max: float64Vector(w.map((r) => r.max)),
    sketch: binaryVector(w.map((r) => r.sketch)),
    // Nullable text, stored as its UTF-8 bytes (binaryVector takes nulls; utf8Vector does not).
    value_sketch: binaryVector(w.map((r) => (r.valueSketch === null ? null : Buffer.from(r.valueSketch, 'utf8')))),
    misplaced: float64Vector(w.map((r) => r.misplaced)),
    window_end: float64Vector(w.map((r) => r.windowEnd ?? null)),
  });
  const d = content.dedup;
  const dedup = new Table({
    fp: fingerprintVector(d),
    ts: makeVector(makeData({ type: new Float64(), length: d.length, nullCount: 0, data: d.ts.subarray(0, d.length) })),
  });
  const meta = Buffer.from(JSON.stringify(content.header));
  const windowsIpc = tableToIPC(windows, 'file');
  const dedupIpc = tableToIPC(dedup, 'file');
  const parts = [MAGIC, u32(meta.length), meta, u32(windowsIpc.length), windowsIpc, u32(dedupIpc.length), dedupIpc];
  const body = Buffer.concat(parts);
  return Buffer.concat([body, u32(crc32(body))]);
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

export class CorruptSnapshotError extends Error {
  override name = 'CorruptSnapshotError';
}

/**
 * The header alone (the first part of the file), without the checksum over the rest: enough to
 * follow a chain of deltas to its base before the whole chain is decoded (decodeSnapshot checks
 * every byte then).
 */
export function readSnapshotHeader(buf: Buffer, source: string): SnapshotHeader {
  if (buf.length < MAGIC.length + 16 || !buf.subarray(0, MAGIC.length).equals(MAGIC))
    throw new CorruptSnapshotError(`${source}: not a speed-layer snapshot`);
  const len = buf.readUInt32BE(MAGIC.length);
  if (MAGIC.length + 4 + len > buf.length) throw new CorruptSnapshotError(`${source}: truncated header`);
  try {
    return JSON.parse(buf.toString('utf8', MAGIC.length + 4, MAGIC.length + 4 + len)) as SnapshotHeader;
  } catch {
    throw new CorruptSnapshotError(`${source}: unreadable header`);
  }
}

export function decodeSnapshot(buf: Buffer, source: string): SnapshotContent {
  if (buf.length < MAGIC.length + 16 || !buf.subarray(0, MAGIC.length).equals(MAGIC))
    throw new CorruptSnapshotError(`${source}: not a speed-layer snapshot`);
  const body = buf.subarray(0, buf.length - 4);
  if (crc32(body) !== buf.readUInt32BE(buf.length - 4))
    throw new CorruptSnapshotError(`${source}: checksum mismatch (torn or corrupted file)`);
  let pos = MAGIC.length;
  const take = (): Buffer => {
    const len = buf.readUInt32BE(pos);
    const part = buf.subarray(pos + 4, pos + 4 + len);
    pos += 4 + len;
    return part;
  };
  const header = JSON.parse(take().toString('utf8')) as SnapshotHeader;
  const windowsTable = tableFromIPC(take());
  const dedupTable = tableFromIPC(take());
  const n = windowsTable.numRows;
  const slots = readStrings(windowsTable.getChild('slot'), n);
  const starts = readFloats(windowsTable.getChild('window_start'), n);
  const keys = readStrings(windowsTable.getChild('key'), n);
  const counts = readFloats(windowsTable.getChild('count'), n);
  const sums = readFloats(windowsTable.getChild('sum'), n);
  const mins = readFloats(windowsTable.getChild('min'), n);
  const maxs = readFloats(windowsTable.getChild('max'), n);
  const sketchCol = windowsTable.getChild('sketch');
  const misplacedCol = windowsTable.getChild('misplaced');
  // Snapshots written before percentiles have no such column.
  const valueSketchCol = windowsTable.getChild('value_sketch');
  // Nor snapshots written before sessions a window_end column.
  const windowEndCol = windowsTable.getChild('window_end');
  const windows: WindowSnapshotRow[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const sketch = sketchCol?.get(i) as Uint8Array | null;
    windows[i] = {
      slot: slots[i]!,
      windowStart: starts[i]!,
      key: keys[i]!,
      count: counts[i]!,
      sum: sums[i]!,
      min: mins[i]!,
      max: maxs[i]!,
      sketch: sketch ? new Uint8Array(sketch) : null,
      valueSketch: sketchTextAt(valueSketchCol, i),
      misplaced: misplacedCol ? ((misplacedCol.get(i) as number | null) ?? 0) : 0,
    };
    const end = windowEndCol ? (windowEndCol.get(i) as number | null) : null;
    if (end !== null) windows[i]!.windowEnd = end;
  }
  return { header, windows, dedup: readDedup(dedupTable, source) };
}

function sketchTextAt(col: Vector | null, i: number): string | null {
  const bytes = col ? (col.get(i) as Uint8Array | null) : null;
  return bytes ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8') : null;
}

/** A full snapshot of one partition's live state (checkpoints and savepoints both write these). */
export function encodeFullSnapshot(state: PartitionState, metricsFingerprint: string, semantics: SpeedSemantics): Buffer {
  return encodeSnapshot({
    header: {
      ...state.meta(),
      format: SNAPSHOT_FORMAT,
      kind: 'full',
      base: null,
      chainLength: 1,
      chainRows: 0,
      metricsFingerprint,
      semantics,
    },
    windows: state.allWindows(),
    dedup: state.dedup.entries(),
  });
}
