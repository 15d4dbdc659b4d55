/**
 * One partition of the embedded log: a directory of segment files plus a high-watermark file.
 *
 * - Segments are named by their base offset and rolled at `SEGMENT_BYTES`.
 * - Appends happen under a cross-process lock, as one positional write, after which the
 *   high watermark (`hw`, 8 bytes) is advanced. Readers never read past the high watermark, so
 *   a batch becomes visible all at once, never a prefix of it.
 * - A writer that takes the lock first repairs the tail: frames beyond the last intact one are
 *   truncated (torn by a crash) and the high watermark is set to the intact end.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, fstatSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { LogRecord, OutgoingRecord } from '../eventLog.ts';
import { acquireLock, releaseLock } from '../../storage/fileLock.ts';
import { decodeFrame, encodeFrames, frameLengthAt } from './segmentFormat.ts';

export const SEGMENT_BYTES = 128 * 1024 * 1024;
const INDEX_EVERY = 128;
const READ_CHUNK = 1024 * 1024;
const SEGMENT_SUFFIX = '.seg';

interface Segment {
  base: number;
  path: string;
  /** Bytes of intact frames scanned so far. */
  scannedBytes: number;
  count: number;
  /** Byte position of record base + i * INDEX_EVERY. */
  index: number[];
}

export class PartitionStore {
  private segments: Segment[] = [];
  private readonly lockPath: string;
  private readonly hwPath: string;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly dir: string,
    private readonly fsync: boolean,
    /** Kafka's `message.timestamp.type=LogAppendTime`: stamp records at append, non-decreasing. */
    private readonly logAppendTime = false,
  ) {
    mkdirSync(dir, { recursive: true });
    this.lockPath = join(dir, '.lock');
    this.hwPath = join(dir, 'hw');
  }

  private segmentPath(base: number): string {
    return join(this.dir, `${String(base).padStart(20, '0')}${SEGMENT_SUFFIX}`);
  }

  /** Picks up segments and frames written by any process since the last look. */
  private scan(): void {
    const names = readdirSync(this.dir)
      .filter((n) => n.endsWith(SEGMENT_SUFFIX))
      .sort();
    if (names.length !== this.segments.length) {
      const known = new Map(this.segments.map((s) => [s.path, s]));
      this.segments = names.map((n) => {
        const path = join(this.dir, n);
        return known.get(path) ?? { base: Number(n.slice(0, -SEGMENT_SUFFIX.length)), path, scannedBytes: 0, count: 0, index: [] };
      });
    }
    // Only the last segment grows; earlier ones were fully scanned before a later one existed,
    // except right after start-up.
    for (const seg of this.segments) this.scanSegment(seg);
  }

  private scanSegment(seg: Segment): void {
    const fd = openSync(seg.path, 'r');
    try {
      const size = fstatSync(fd).size;
      let chunk = Buffer.allocUnsafe(READ_CHUNK);
      while (seg.scannedBytes < size) {
        const want = Math.min(chunk.length, size - seg.scannedBytes);
        const n = readSync(fd, chunk, 0, want, seg.scannedBytes);
        const buf = chunk.subarray(0, n);
        let pos = 0;
        for (;;) {
          const len = frameLengthAt(buf, pos, true);
          if (len === 0) break;
          if (seg.count % INDEX_EVERY === 0) seg.index.push(seg.scannedBytes + pos);
          seg.count++;
          pos += len;
        }
        if (pos === 0) {
          // The frame does not fit the chunk: grow it, unless the frame is cut off by the end of
          // the file (being written, or torn).
          const declared = buf.length >= 4 ? buf.readUInt32LE(0) + 4 : Infinity;
          if (seg.scannedBytes + declared <= size && declared > chunk.length) {
            chunk = Buffer.allocUnsafe(declared);
            continue;
          }
          break;
        }
        seg.scannedBytes += pos;
      }
    } finally {
      closeSync(fd);
    }
  }

  /** The visible end: records below it are complete and committed. */
  highWatermark(): number {
    if (!existsSync(this.hwPath)) return 0;
    const fd = openSync(this.hwPath, 'r');
    try {
      const buf = Buffer.alloc(8);
      return readSync(fd, buf, 0, 8, 0) === 8 ? buf.readDoubleLE(0) : 0;
    } finally {
      closeSync(fd);
    }
  }

  private writeHighWatermark(end: number): void {
    const fd = openSync(this.hwPath, existsSync(this.hwPath) ? 'r+' : 'w');
    try {
      const buf = Buffer.alloc(8);
      buf.writeDoubleLE(end, 0);
      writeSync(fd, buf, 0, 8, 0);
      if (this.fsync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  private scannedEnd(): number {
    const last = this.segments.at(-1);
    return last ? last.base + last.count : 0;
  }

  beginningOffset(): number {
    this.scan();
    return this.segments[0]?.base ?? 0;
  }

  endOffset(): number {
    return this.highWatermark();
  }

  /**
   * Appends records as one write; returns the offset of the first. `beforeWrite` runs under the
   * lock with the base offset (transactions record it in their redo log first).
   */
  async append(records: readonly OutgoingRecord[], now: number, beforeWrite?: (base: number) => void): Promise<number> {
    await acquireLock(this.lockPath);
    try {
      this.scan();
      this.repairTail();
      let seg = this.segments.at(-1);
      const base = this.scannedEnd();
      if (!seg || seg.scannedBytes >= SEGMENT_BYTES) {
        seg = { base, path: this.segmentPath(base), scannedBytes: 0, count: 0, index: [] };
        closeSync(openSync(seg.path, 'a'));
        this.segments.push(seg);
      }
      beforeWrite?.(base);
      let stamped = records;
      if (this.logAppendTime) {
        const ts = Math.max(now, this.lastAppendTime(seg));
        stamped = records.map((r) => ({ ...r, timestamp: ts }));
      }
      const buf = encodeFrames(stamped, now);
      const fd = openSync(seg.path, 'r+');
      try {
        writeSync(fd, buf, 0, buf.length, seg.scannedBytes);
        if (this.fsync) fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      this.scanSegment(seg);
      this.writeHighWatermark(this.scannedEnd());
      return base;
    } finally {
      releaseLock(this.lockPath);
    }
  }

  /** Timestamp of the last record (the wall clock may step back; log-append time must not). */
  private lastAppendTime(seg: Segment): number {
    if (seg.count === 0) {
      const prev = this.segments.at(-2);
      return prev && prev.count > 0 ? this.read(prev.base + prev.count - 1, 1, prev.base + prev.count)[0]!.timestamp : 0;
    }
    const end = seg.base + seg.count;
    return this.read(end - 1, 1, end)[0]!.timestamp;
  }

  /** Under the lock: drop torn frames and make every intact frame visible. */
  private repairTail(): void {
    const last = this.segments.at(-1);
    if (last) {
      const fd = openSync(last.path, 'r+');
      try {
        if (fstatSync(fd).size > last.scannedBytes) ftruncateSync(fd, last.scannedBytes);
      } finally {
        closeSync(fd);
      }
    }
    const end = this.scannedEnd();
    if (this.highWatermark() !== end) this.writeHighWatermark(end);
  }

  /** Reads records from `offset` up to the high watermark, about `maxBytes` at most (at least one). */
  read(offset: number, maxBytes: number, limit = this.highWatermark()): LogRecord[] {
    if (offset >= limit) return [];
    if (this.scannedEnd() < limit) this.scan();
    const out: LogRecord[] = [];
    let next = offset;
    let budget = maxBytes;
    for (const seg of this.segments) {
      if (next >= limit || budget <= 0) break;
      if (next < seg.base || next >= seg.base + seg.count) continue;
      const slot = Math.floor((next - seg.base) / INDEX_EVERY);
      let pos = seg.index[slot]!;
      let skip = next - seg.base - slot * INDEX_EVERY;
      const fd = openSync(seg.path, 'r');
      try {
        let chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(64 * 1024, budget)));
        while (next < limit && next < seg.base + seg.count && budget > 0) {
          const n = readSync(fd, chunk, 0, Math.min(chunk.length, seg.scannedBytes - pos), pos);
          const buf = chunk.subarray(0, n);
          let p = 0;
          for (;;) {
            if (next >= limit || next >= seg.base + seg.count || (budget <= 0 && out.length > 0)) break;
            const len = frameLengthAt(buf, p, false);
            if (len === 0) break;
            if (skip > 0) {
              skip--;
            } else {
              const f = decodeFrame(buf, p);
              out.push({
                topic: this.topic,
                partition: this.partition,
                offset: next,
                // Copy out of the reusable chunk.
                key: f.key === null ? null : Buffer.from(f.key),
                value: f.value === null ? null : Buffer.from(f.value),
                timestamp: f.timestamp,
                headers: f.headers,
              });
              budget -= len;
              next++;
              p += len;
              continue;
            }
            p += len;
          }
          if (p === 0) {
            const declared = buf.readUInt32LE(0) + 4;
            chunk = Buffer.allocUnsafe(declared);
            continue;
          }
          pos += p;
          if (budget <= 0 && out.length > 0) break;
        }
      } finally {
        closeSync(fd);
      }
    }
    return out;
  }
}
