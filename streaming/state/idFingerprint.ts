/**
 * 128-bit fingerprints of event ids, for the speed layer's dedup set: MurmurHash3 x86_128
 * (Austin Appleby's public-domain hash, seed 0) over the UTF-8 bytes of the id.
 *
 * Why fingerprints instead of the ids: the dedup set holds every id seen within the horizon
 * (about two million in the benchmark). As JavaScript strings in a Map they cost ~100 bytes each
 * and every one is a heap object the garbage collector walks; as four 32-bit lanes in a typed
 * array they cost 16 bytes and nothing to walk. And the speed layer's scanner hands over the id
 * as bytes, so no string is made at all.
 *
 * The price is a collision probability: two different ids within one partition's horizon with
 * the same 128 bits make the second look like a duplicate. For n live ids that probability is
 * about n^2 / 2^129: 6e-27 for two million, 1.5e-21 for a billion. MurmurHash3 is not a
 * cryptographic hash: someone who can write events could craft colliding ids, but such a
 * producer can write wrong events anyway. (docs/speed-layer.md, "Dedup".)
 *
 * `__tests__/idFingerprint.spec.ts` checks the lanes against the reference implementation's
 * vectors (Python's mmh3.hash128(..., x64arch=False)).
 */

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

function lane32(buf: Uint8Array, i: number): number {
  return buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
}

/** Up to four bytes at buf[i..i+count), little-endian. */
function tailLane(buf: Uint8Array, i: number, count: number): number {
  let k = 0;
  for (let j = count - 1; j >= 0; j--) k = (k << 8) | buf[i + j]!;
  return k;
}

/** Writes the fingerprint of buf[start..end) into out[0..4) (signed 32-bit lanes h1..h4). */
export function fingerprintBytes(buf: Uint8Array, start: number, end: number, out: Int32Array): void {
  const len = end - start;
  let h1 = 0;
  let h2 = 0;
  let h3 = 0;
  let h4 = 0;
  const blocksEnd = start + (len & ~15);
  for (let i = start; i < blocksEnd; i += 16) {
    let k1 = lane32(buf, i);
    let k2 = lane32(buf, i + 4);
    let k3 = lane32(buf, i + 8);
    let k4 = lane32(buf, i + 12);
    k1 = Math.imul(rotl(Math.imul(k1, C1), 15), C2);
    h1 ^= k1;
    h1 = (Math.imul(rotl(h1, 19) + h2, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(k2, C2), 16), C3);
    h2 ^= k2;
    h2 = (Math.imul(rotl(h2, 17) + h3, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(k3, C3), 17), C4);
    h3 ^= k3;
    h3 = (Math.imul(rotl(h3, 15) + h4, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(k4, C4), 18), C1);
    h4 ^= k4;
    h4 = (Math.imul(rotl(h4, 13) + h1, 5) + 0x32ac3b17) | 0;
  }
  const tail = blocksEnd;
  const rest = len & 15;
  // The last len % 16 bytes, as the reference's fall-through switch reads them: lane j takes
  // bytes 4j..4j+3 of the tail, little-endian, as far as they exist.
  if (rest > 12) h4 ^= Math.imul(rotl(Math.imul(tailLane(buf, tail + 12, rest - 12), C4), 18), C1);
  if (rest > 8) h3 ^= Math.imul(rotl(Math.imul(tailLane(buf, tail + 8, Math.min(rest - 8, 4)), C3), 17), C4);
  if (rest > 4) h2 ^= Math.imul(rotl(Math.imul(tailLane(buf, tail + 4, Math.min(rest - 4, 4)), C2), 16), C3);
  if (rest > 0) h1 ^= Math.imul(rotl(Math.imul(tailLane(buf, tail, Math.min(rest, 4)), C1), 15), C2);
  h1 ^= len;
  h2 ^= len;
  h3 ^= len;
  h4 ^= len;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h3 = fmix(h3);
  h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  out[0] = h1;
  out[1] = (h2 + h1) | 0;
  out[2] = (h3 + h1) | 0;
  out[3] = (h4 + h1) | 0;
}

/** The fingerprint of an id given as a string (its UTF-8 bytes: the same as `fingerprintBytes` of the raw id). */
export function fingerprintId(id: string, out: Int32Array): void {
  const bytes = Buffer.from(id, 'utf8');
  fingerprintBytes(bytes, 0, bytes.length, out);
}
