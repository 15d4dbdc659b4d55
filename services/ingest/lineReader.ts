/**
 * Splits a byte stream into lines (LF, with a trailing CR removed) without decoding them: the
 * validator needs the raw bytes (to detect BOMs, binary data and invalid UTF-8, and to put the
 * exact bytes into a dead letter). A line longer than `maxLineBytes` is not buffered whole: its
 * head is kept (for the dead letter) and the rest is skipped, so one huge line cannot exhaust
 * memory.
 */
import type { Readable } from 'node:stream';

export interface RawLine {
  /** 1-based line number in the source. */
  number: number;
  bytes: Buffer;
  /** Full length of the line when it was longer than the limit (bytes holds only its head). */
  truncatedFrom?: number;
  /** True for a last line that had no line terminator (possibly a truncated file). */
  unterminated?: boolean;
}

export async function* readLines(input: Readable, maxLineBytes: number, onBytes?: (n: number) => void): AsyncGenerator<RawLine> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let overflow = 0; // bytes of the current line beyond the limit, skipped
  let number = 0;
  const finish = (unterminated: boolean): RawLine => {
    number++;
    let bytes = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    if (overflow === 0 && bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, -1);
    const line: RawLine = { number, bytes };
    if (overflow > 0) line.truncatedFrom = pendingBytes + overflow;
    if (unterminated) line.unterminated = true;
    pending = [];
    pendingBytes = 0;
    overflow = 0;
    return line;
  };
  const append = (part: Buffer) => {
    const room = maxLineBytes + 1 - pendingBytes; // keep one byte more than the limit: "too large" is then visible
    if (room <= 0) {
      overflow += part.length;
      return;
    }
    const kept = part.length <= room ? part : part.subarray(0, room);
    pending.push(kept);
    pendingBytes += kept.length;
    overflow += part.length - kept.length;
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    onBytes?.(chunk.length);
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) {
        if (start < chunk.length) append(chunk.subarray(start));
        break;
      }
      append(chunk.subarray(start, nl));
      yield finish(false);
      start = nl + 1;
    }
  }
  if (pendingBytes > 0 || overflow > 0) yield finish(true);
}
