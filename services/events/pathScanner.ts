/**
 * The hot path for mapped shapes (a metric file with an `event:` section): a single-pass byte
 * scanner compiled from the paths one mapping reads (its id, time and type, and the metric
 * fields). It checks the whole record the way the validator does (JSON grammar, UTF-8, no name
 * repeated in any object, no exponent beyond MAX_EXPONENT_DIGITS digits) and records where the
 * value of each wanted path lies in the buffer, without allocating; what it cannot decide alone
 * (escapes in names or in a wanted string, a `\u` escape of a surrogate, objects of more than
 * MAX_MEMBERS members, nesting deeper than MAX_DEPTH, whitespace around the object, anything odd)
 * makes `scan` return false, and the caller asks the validator (event.ts `validateMappedRecord`),
 * which decides and explains. The flat model keeps its own scanner (eventScanner.ts).
 *
 * Paths are compiled into a trie of names: at each object the scanner compares a member's name
 * (hashed while it is read) with the names the trie expects there, descends into the objects a
 * wanted path continues into, and only validates the rest. `__tests__/pathScanner.spec.ts`
 * compares it with the validator on generated, hand-written and mutated records.
 */
import { isUtf8 } from 'node:buffer';
import { JsonNumber, MAX_EXPONENT_DIGITS, type FieldValue } from '../metrics/fieldSemantics.ts';

export const KIND_MISSING = 0;
export const KIND_STRING = 1;
export const KIND_NUMBER = 2;
export const KIND_TRUE = 3;
export const KIND_FALSE = 4;
export const KIND_NULL = 5;
export const KIND_OBJECT = 6;
export const KIND_ARRAY = 7;

/** Deeper nesting is left to the validator (it bounds the recursion and the name stack). */
const MAX_DEPTH = 32;
/** Objects with more members are left to the validator (the duplicate check is quadratic). */
const MAX_MEMBERS = 64;
/** Member names kept for the duplicate check over all open objects. */
const NAME_STACK = MAX_DEPTH * 16;

const BAIL = -1;

/** Bytes inside a JSON string: 0 plain ASCII, 1 the closing quote, 2 a backslash, 3 a control byte, 4 a byte >= 0x80. */
const STRING_CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) STRING_CLASS[c] = c === 0x22 ? 1 : c === 0x5c ? 2 : c < 0x20 ? 3 : c >= 0x80 ? 4 : 0;

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x57;
  return -1;
}

/** The hash of a name's bytes, as the scanner computes it while reading the name. */
function nameHash(bytes: Uint8Array, start: number, end: number): number {
  let h = 0;
  for (let k = start; k < end; k++) h = (Math.imul(h, 31) + bytes[k]!) | 0;
  return (Math.imul(h, 131) + (end - start)) | 0;
}

/** One trie node: the names expected in the object it stands for, and what each leads to. */
interface TrieNode {
  names: Uint8Array[];
  hashes: Int32Array;
  children: number[];
  /** The wanted path ending here (its slot), or -1. */
  slot: number;
}

export class PathScanner {
  private readonly nodes: TrieNode[] = [];
  /** Per slot (wanted path, in the order given): what the last accepted record holds there. */
  readonly kinds: Uint8Array;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
  /** 1 when the string value holds bytes >= 0x80 (decoded as UTF-8, not Latin-1). */
  readonly wide: Uint8Array;
  buf: Buffer = Buffer.alloc(0);
  private anyWide = false;
  private readonly stackHashes = new Int32Array(NAME_STACK);
  private readonly stackStarts = new Int32Array(NAME_STACK);
  private readonly stackEnds = new Int32Array(NAME_STACK);
  private stackTop = 0;

  /** `paths`: the names of each wanted path; slot i is paths[i]. */
  constructor(paths: readonly (readonly string[])[]) {
    this.nodes.push(this.node());
    paths.forEach((names, slot) => {
      let n = 0;
      for (const name of names) {
        const bytes = Buffer.from(name, 'utf8');
        const node = this.nodes[n]!;
        let k = node.names.findIndex((b) => Buffer.compare(b, bytes) === 0);
        if (k < 0) {
          node.names.push(bytes);
          node.hashes = Int32Array.from([...node.hashes, nameHash(bytes, 0, bytes.length)]);
          node.children.push(this.nodes.length);
          this.nodes.push(this.node());
          k = node.names.length - 1;
        }
        n = node.children[k]!;
      }
      this.nodes[n]!.slot = slot;
    });
    this.kinds = new Uint8Array(paths.length);
    this.starts = new Int32Array(paths.length);
    this.ends = new Int32Array(paths.length);
    this.wide = new Uint8Array(paths.length);
  }

  private node(): TrieNode {
    return { names: [], hashes: new Int32Array(0), children: [], slot: -1 };
  }

  /**
   * Scans buf[from..to) as one JSON object. True: the record is a readable JSON object and the
   * slots describe the wanted paths (positions index `buf`; a missing path is KIND_MISSING).
   * False: the scanner cannot decide alone; ask the validator.
   */
  scan(buf: Buffer, maxBytes: number, from = 0, to = buf.length): boolean {
    if (to - from < 2 || to - from > maxBytes || buf[from] !== 0x7b || buf[to - 1] !== 0x7d) return false;
    this.buf = buf;
    this.kinds.fill(KIND_MISSING);
    this.anyWide = false;
    this.stackTop = 0;
    const end = this.object(from, 0, 0, to);
    if (end !== to) return false;
    if (this.anyWide && !isUtf8(from === 0 && to === buf.length ? buf : buf.subarray(from, to))) return false;
    return true;
  }

  /** The object at buf[i] (`{`), read with trie node `node` (-1: nothing wanted inside). Returns the index after it, or BAIL. */
  private object(i: number, node: number, depth: number, limit: number): number {
    if (depth >= MAX_DEPTH) return BAIL;
    const buf = this.buf;
    const base = this.stackTop;
    const trie = node >= 0 ? this.nodes[node]! : undefined;
    let c = buf[++i]!;
    while (isWhitespace(c)) c = buf[++i]!;
    if (c === 0x7d) return i + 1;
    for (;;) {
      // ---- the member's name: no escapes (a name is compared as bytes), no control bytes
      if (c !== 0x22) return BAIL;
      const nameStart = ++i;
      let h = 0;
      for (;;) {
        if (i >= limit) return BAIL;
        c = buf[i]!;
        const k = STRING_CLASS[c]!;
        if (k !== 0) {
          if (k === 1) break;
          if (k !== 4) return BAIL; // escapes and control bytes in names: the validator's
          this.anyWide = true;
        }
        h = (Math.imul(h, 31) + c) | 0;
        i++;
      }
      const nameEnd = i;
      h = (Math.imul(h, 131) + (nameEnd - nameStart)) | 0;
      // A repeated name means two things to two JSON readers: the validator refuses it.
      const top = this.stackTop;
      if (top - base >= MAX_MEMBERS || top >= NAME_STACK) return BAIL;
      for (let k = base; k < top; k++) if (this.stackHashes[k] === h && this.sameBytes(k, nameStart, nameEnd)) return BAIL;
      this.stackHashes[top] = h;
      this.stackStarts[top] = nameStart;
      this.stackEnds[top] = nameEnd;
      this.stackTop = top + 1;
      let child = -1;
      if (trie !== undefined) {
        const hashes = trie.hashes;
        for (let k = 0; k < hashes.length; k++) {
          if (hashes[k] === h && this.equals(trie.names[k]!, nameStart, nameEnd)) {
            child = trie.children[k]!;
            break;
          }
        }
      }
      c = buf[++i]!;
      while (isWhitespace(c)) c = buf[++i]!;
      if (c !== 0x3a) return BAIL;
      c = buf[++i]!;
      while (isWhitespace(c)) c = buf[++i]!;
      // ---- the value
      const slot = child >= 0 ? this.nodes[child]!.slot : -1;
      let kind: number;
      let valueStart = i;
      let valueEnd: number;
      let wide = 0;
      if (c === 0x22) {
        valueStart = ++i;
        for (;;) {
          if (i >= limit) return BAIL;
          c = buf[i]!;
          const k = STRING_CLASS[c]!;
          if (k === 0) {
            i++;
            continue;
          }
          if (k === 1) break;
          if (k === 3) return BAIL;
          if (k === 2) {
            // A wanted string with escapes needs decoding: the validator's. Elsewhere, checked and skipped.
            if (slot >= 0) return BAIL;
            const e = buf[i + 1]!;
            if (e === 0x75) {
              const unit =
                (hexDigit(buf[i + 2]!) << 12) | (hexDigit(buf[i + 3]!) << 8) | (hexDigit(buf[i + 4]!) << 4) | hexDigit(buf[i + 5]!);
              // A negative digit makes the unit negative; a surrogate's pairing is the validator's to check.
              if (unit < 0 || (unit >= 0xd800 && unit <= 0xdfff)) return BAIL;
              i += 6;
              continue;
            }
            if (e !== 0x22 && e !== 0x5c && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) return BAIL;
            i += 2;
            continue;
          }
          if (c >= 0x80) wide = 1;
          i++;
        }
        valueEnd = i;
        i++;
        kind = KIND_STRING;
        if (wide) this.anyWide = true;
      } else if (c === 0x2d || isDigit(c)) {
        if (c === 0x2d) c = buf[++i]!;
        if (c === 0x30) c = buf[++i]!;
        else if (isDigit(c)) {
          while (isDigit(c)) c = buf[++i]!;
        } else return BAIL;
        if (c === 0x2e) {
          c = buf[++i]!;
          if (!isDigit(c)) return BAIL;
          while (isDigit(c)) c = buf[++i]!;
        }
        if (c === 0x65 || c === 0x45) {
          c = buf[++i]!;
          if (c === 0x2b || c === 0x2d) c = buf[++i]!;
          if (!isDigit(c)) return BAIL;
          const exponentStart = i;
          while (isDigit(c)) c = buf[++i]!;
          if (i - exponentStart > MAX_EXPONENT_DIGITS) return BAIL;
        }
        valueEnd = i;
        kind = KIND_NUMBER;
      } else if (c === 0x7b) {
        i = this.object(i, child >= 0 && this.nodes[child]!.children.length > 0 ? child : -1, depth + 1, limit);
        if (i === BAIL) return BAIL;
        valueEnd = i;
        kind = KIND_OBJECT;
      } else if (c === 0x5b) {
        i = this.array(i, depth + 1, limit);
        if (i === BAIL) return BAIL;
        valueEnd = i;
        kind = KIND_ARRAY;
      } else {
        i = this.literal(i);
        if (i === BAIL) return BAIL;
        kind = c === 0x74 ? KIND_TRUE : c === 0x66 ? KIND_FALSE : KIND_NULL;
        valueEnd = i;
      }
      if (slot >= 0) {
        this.kinds[slot] = kind;
        this.starts[slot] = valueStart;
        this.ends[slot] = valueEnd;
        this.wide[slot] = wide;
      }
      // ---- separator
      if (i >= limit) return BAIL;
      c = buf[i]!;
      while (isWhitespace(c)) c = buf[++i]!;
      if (c === 0x2c) {
        c = buf[++i]!;
        while (isWhitespace(c)) c = buf[++i]!;
        continue;
      }
      if (c !== 0x7d) return BAIL;
      this.stackTop = base;
      return i + 1;
    }
  }

  /** The array at buf[i] (`[`): checked, nothing in it is wanted. Returns the index after it, or BAIL. */
  private array(i: number, depth: number, limit: number): number {
    if (depth >= MAX_DEPTH) return BAIL;
    const buf = this.buf;
    let c = buf[++i]!;
    while (isWhitespace(c)) c = buf[++i]!;
    if (c === 0x5d) return i + 1;
    for (;;) {
      i = this.skipValue(i, depth, limit);
      if (i === BAIL || i >= limit) return BAIL;
      c = buf[i]!;
      while (isWhitespace(c)) c = buf[++i]!;
      if (c === 0x2c) {
        c = buf[++i]!;
        while (isWhitespace(c)) c = buf[++i]!;
        continue;
      }
      if (c !== 0x5d) return BAIL;
      return i + 1;
    }
  }

  /** Any value at buf[i] (nothing in it wanted): checked and skipped. Returns the index after it, or BAIL. */
  private skipValue(i: number, depth: number, limit: number): number {
    const buf = this.buf;
    let c = buf[i]!;
    if (c === 0x7b) return this.object(i, -1, depth + 1, limit);
    if (c === 0x5b) return this.array(i, depth + 1, limit);
    if (c === 0x22) {
      i++;
      for (;;) {
        if (i >= limit) return BAIL;
        c = buf[i]!;
        if (c === 0x22) return i + 1;
        if (c < 0x20) return BAIL;
        if (c === 0x5c) {
          const e = buf[i + 1]!;
          if (e === 0x75) {
            const unit =
              (hexDigit(buf[i + 2]!) << 12) | (hexDigit(buf[i + 3]!) << 8) | (hexDigit(buf[i + 4]!) << 4) | hexDigit(buf[i + 5]!);
            if (unit < 0 || (unit >= 0xd800 && unit <= 0xdfff)) return BAIL;
            i += 6;
            continue;
          }
          if (e !== 0x22 && e !== 0x5c && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) return BAIL;
          i += 2;
          continue;
        }
        if (c >= 0x80) this.anyWide = true;
        i++;
      }
    }
    if (c === 0x2d || isDigit(c)) {
      if (c === 0x2d) c = buf[++i]!;
      if (c === 0x30) c = buf[++i]!;
      else if (isDigit(c)) {
        while (isDigit(c)) c = buf[++i]!;
      } else return BAIL;
      if (c === 0x2e) {
        c = buf[++i]!;
        if (!isDigit(c)) return BAIL;
        while (isDigit(c)) c = buf[++i]!;
      }
      if (c === 0x65 || c === 0x45) {
        c = buf[++i]!;
        if (c === 0x2b || c === 0x2d) c = buf[++i]!;
        if (!isDigit(c)) return BAIL;
        const exponentStart = i;
        while (isDigit(c)) c = buf[++i]!;
        if (i - exponentStart > MAX_EXPONENT_DIGITS) return BAIL;
      }
      return i;
    }
    return this.literal(i);
  }

  /** `true`, `false` or `null` at buf[i]: the index after it, or BAIL. */
  private literal(i: number): number {
    const b = this.buf;
    const c = b[i];
    if (c === 0x74 && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) return i + 4;
    if (c === 0x66 && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 && b[i + 4] === 0x65) return i + 5;
    if (c === 0x6e && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) return i + 4;
    return BAIL;
  }

  private sameBytes(k: number, start: number, end: number): boolean {
    const s = this.stackStarts[k]!;
    if (this.stackEnds[k]! - s !== end - start) return false;
    const buf = this.buf;
    for (let j = 0; j < end - start; j++) if (buf[s + j] !== buf[start + j]) return false;
    return true;
  }

  private equals(name: Uint8Array, start: number, end: number): boolean {
    if (name.length !== end - start) return false;
    const buf = this.buf;
    for (let j = 0; j < name.length; j++) if (name[j] !== buf[start + j]) return false;
    return true;
  }

  // ---------------------------------------------------------------- what the last accepted record holds

  /** The string at `slot` (a KIND_STRING slot: no escapes, a wanted string never has them on this path). */
  stringAt(slot: number): string {
    const buf = this.buf as Buffer & { latin1Slice(s: number, e: number): string; utf8Slice(s: number, e: number): string };
    return this.wide[slot] ? buf.utf8Slice(this.starts[slot]!, this.ends[slot]!) : buf.latin1Slice(this.starts[slot]!, this.ends[slot]!);
  }

  /** The source text of the number at `slot` (a KIND_NUMBER slot). */
  numberSourceAt(slot: number): string {
    return this.buf.toString('latin1', this.starts[slot]!, this.ends[slot]!);
  }

  /** The value at `slot` as the metric engines read it; undefined when missing, null, an object or an array. */
  fieldValueAt(slot: number): FieldValue | undefined {
    switch (this.kinds[slot]) {
      case KIND_STRING:
        return this.stringAt(slot);
      case KIND_NUMBER:
        return new JsonNumber(this.numberSourceAt(slot));
      case KIND_TRUE:
        return true;
      case KIND_FALSE:
        return false;
      default:
        return undefined;
    }
  }

  /** `value.trim() !== ''` of the string at `slot`, decided on its bytes when they are ASCII. */
  hasNonBlank(slot: number): boolean {
    if (this.wide[slot]) return this.stringAt(slot).trim() !== '';
    const buf = this.buf;
    for (let k = this.starts[slot]!; k < this.ends[slot]!; k++) {
      const c = buf[k]!;
      // ASCII whitespace JavaScript's trim removes: tab, LF, VT, FF, CR, space.
      if (c !== 0x20 && (c < 0x09 || c > 0x0d)) return true;
    }
    return false;
  }
}

/**
 * fieldSemantics.ts `scaledFloor` of the plain decimal number at buf[start..end) (`-`, digits, an
 * optional fraction; no exponent), computed on the bytes: `shift` 3 for epoch seconds, 0 for
 * milliseconds, -3 for microseconds. NaN for any other text or an integer part beyond 12 digits
 * (the caller then asks `scaledFloor`, which also decides those exactly).
 */
export function epochMillisAt(buf: Uint8Array, start: number, end: number, shift: number): number {
  let i = start;
  const negative = buf[i] === 0x2d;
  if (negative) i++;
  let int = 0;
  const intStart = i;
  while (i < end && isDigit(buf[i]!)) int = int * 10 + (buf[i++]! - 0x30);
  if (i === intStart || i - intStart > 12) return NaN;
  // The first three fraction digits (what a second's or a millisecond's fraction keeps) and whether any digit beyond is not zero.
  let first3 = 0;
  let rest = false;
  if (i < end) {
    if (buf[i] !== 0x2e) return NaN;
    i++;
    for (let k = 0; i < end; k++, i++) {
      const c = buf[i]!;
      if (!isDigit(c)) return NaN;
      if (k < 3) first3 += (c - 0x30) * (k === 0 ? 100 : k === 1 ? 10 : 1);
      else if (c !== 0x30) rest = true;
    }
  }
  let ms: number;
  let fraction: boolean;
  if (shift === 3) {
    ms = int * 1000 + first3;
    fraction = rest;
  } else if (shift === 0) {
    ms = int;
    fraction = first3 !== 0 || rest;
  } else if (shift === -3) {
    ms = Math.floor(int / 1000);
    fraction = int % 1000 !== 0 || first3 !== 0 || rest;
  } else return NaN;
  return negative ? -(ms + (fraction ? 1 : 0)) + 0 : ms;
}
