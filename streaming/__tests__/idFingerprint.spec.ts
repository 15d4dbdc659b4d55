// The dedup fingerprint is MurmurHash3 x86_128: checked against the reference implementation's
// output (Python's mmh3.hash128(data, 0, x64arch=False), lanes h1..h4 as unsigned 32-bit), on
// lengths that reach every tail case and a block boundary, and on UTF-8.
import { describe, expect, it } from 'vitest';
import { fingerprintBytes, fingerprintId } from '../state/idFingerprint.ts';

const VECTORS: [string, [number, number, number, number]][] = [
  ['a', [2811532092, 1431744539, 1431744539, 1431744539]],
  ['e-42-0', [3260957978, 2165872217, 2968127710, 2968127710]],
  ['hello world!!', [3896039566, 3292445619, 347709360, 3548871474]],
  ['0123456789abcdef', [4219290633, 917426954, 1219304859, 1462451197]],
  ['0123456789abcdefX', [474855287, 446341843, 3255703076, 1528271395]],
  ['Zoë ☕ 日本', [1683804081, 2413553499, 3580753145, 285421663]],
];

describe('id fingerprints (MurmurHash3 x86_128)', () => {
  it('equal the reference vectors', () => {
    const out = new Int32Array(4);
    for (const [text, lanes] of VECTORS) {
      fingerprintId(text, out);
      expect([...new Uint32Array(out.buffer)], text).toEqual(lanes);
    }
  });

  it('hash a slice of a larger buffer like the bytes alone', () => {
    const a = new Int32Array(4);
    const b = new Int32Array(4);
    for (let len = 0; len <= 40; len++) {
      const id = 'x'.repeat(len);
      const line = Buffer.from(`{"id":"${id}","type":"t"}`);
      fingerprintBytes(line, 7, 7 + len, a);
      fingerprintId(id, b);
      expect([...a]).toEqual([...b]);
    }
  });

  it('tells 100,000 similar ids apart', () => {
    const out = new Int32Array(4);
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) {
      fingerprintId(`e-42-${i}`, out);
      seen.add(`${out[0]},${out[1]},${out[2]},${out[3]}`);
    }
    expect(seen.size).toBe(100_000);
  });
});
