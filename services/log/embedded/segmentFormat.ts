/**
 * On-disk record frame of the embedded log. One frame per record, appended to a segment file:
 *
 *   u32 frameLength        bytes after this field
 *   u32 crc32              of everything after this field
 *   f64 timestamp          epoch ms
 *   i32 keyLength (-1 = null), key bytes
 *   i32 valueLength (-1 = null), value bytes
 *   u16 headerCount, then per header: u16 nameLength, name, u32 valueLength, value
 *
 * The offset is implicit: the segment's base offset (its file name) plus the frame's ordinal.
 * A crash mid-append leaves a frame whose length runs past the end of the file or whose CRC does
 * not match: readers stop before it and the next writer truncates it.
 */
import { crc32 } from 'node:zlib';
import type { Headers, OutgoingRecord } from '../eventLog.ts';

export const FRAME_PREFIX_BYTES = 8;

export interface DecodedFrame {
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Headers;
}

function bytesOf(v: Buffer | string | null): Buffer | null {
  if (v === null) return null;
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}

export function encodeFrames(records: readonly OutgoingRecord[], now: number): Buffer {
  const parts: { key: Buffer | null; value: Buffer | null; headers: [Buffer, Buffer][]; ts: number }[] = [];
  let total = 0;
  for (const r of records) {
    const key = bytesOf(r.key);
    const value = bytesOf(r.value);
    const headers = Object.entries(r.headers ?? {}).map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as [Buffer, Buffer]);
    let body = 8 + 4 + (key?.length ?? 0) + 4 + (value?.length ?? 0) + 2;
    for (const [k, v] of headers) body += 2 + k.length + 4 + v.length;
    total += FRAME_PREFIX_BYTES + body;
    parts.push({ key, value, headers, ts: r.timestamp ?? now });
  }
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const p of parts) {
    const start = pos;
    pos += FRAME_PREFIX_BYTES;
    out.writeDoubleLE(p.ts, pos);
    pos += 8;
    for (const b of [p.key, p.value]) {
      if (b === null) {
        out.writeInt32LE(-1, pos);
        pos += 4;
      } else {
        out.writeInt32LE(b.length, pos);
        pos += 4;
        b.copy(out, pos);
        pos += b.length;
      }
    }
    out.writeUInt16LE(p.headers.length, pos);
    pos += 2;
    for (const [k, v] of p.headers) {
      out.writeUInt16LE(k.length, pos);
      pos += 2;
      k.copy(out, pos);
      pos += k.length;
      out.writeUInt32LE(v.length, pos);
      pos += 4;
      v.copy(out, pos);
      pos += v.length;
    }
    out.writeUInt32LE(pos - start - 4, start);
    out.writeUInt32LE(crc32(out.subarray(start + FRAME_PREFIX_BYTES, pos)), start + 4);
  }
  return out;
}

/**
 * Length of the complete, intact frame at `pos` in `buf`, or 0 when the frame is incomplete or
 * corrupt (which, at the tail of a segment, means "not written yet" or "torn by a crash").
 */
export function frameLengthAt(buf: Buffer, pos: number, verifyCrc: boolean): number {
  if (pos + FRAME_PREFIX_BYTES > buf.length) return 0;
  const len = buf.readUInt32LE(pos);
  const end = pos + 4 + len;
  if (len < 4 + 18 || end > buf.length) return 0;
  if (verifyCrc && crc32(buf.subarray(pos + FRAME_PREFIX_BYTES, end)) !== buf.readUInt32LE(pos + 4)) return 0;
  return 4 + len;
}

export function decodeFrame(buf: Buffer, pos: number): DecodedFrame {
  let p = pos + FRAME_PREFIX_BYTES;
  const timestamp = buf.readDoubleLE(p);
  p += 8;
  const keyLen = buf.readInt32LE(p);
  p += 4;
  const key = keyLen < 0 ? null : buf.subarray(p, p + keyLen);
  p += Math.max(0, keyLen);
  const valueLen = buf.readInt32LE(p);
  p += 4;
  const value = valueLen < 0 ? null : buf.subarray(p, p + valueLen);
  p += Math.max(0, valueLen);
  const count = buf.readUInt16LE(p);
  p += 2;
  const headers: Headers = {};
  for (let i = 0; i < count; i++) {
    const kl = buf.readUInt16LE(p);
    p += 2;
    const k = buf.toString('utf8', p, p + kl);
    p += kl;
    const vl = buf.readUInt32LE(p);
    p += 4;
    headers[k] = buf.toString('utf8', p, p + vl);
    p += vl;
  }
  return { timestamp, key, value, headers };
}
