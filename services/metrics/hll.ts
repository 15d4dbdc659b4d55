/**
 * HyperLogLog sketch for the approximate distinct count, shared by both engines.
 *
 * Both engines must produce *the same registers* for the same values, so that serving can merge a
 * batch window's sketch with a speed window's sketch (distinct over a range is a sketch merge,
 * never a sum). Hence the hash is one both can compute: the first 64 bits of MD5 of the UTF-8
 * value, split in two 32-bit halves. The speed layer uses `hllHash` below; the batch layer uses
 * `hllRegisterSql`, which is the same computation in DuckDB SQL, kept here, side by side.
 *
 * Precision p = 12: 4096 registers, standard error 1.04 / sqrt(4096) = 1.625 %. Sketches with few
 * distinct values are stored sparse (bucket, rank pairs), which keeps the state of the many
 * small windows small.
 */
import { hash } from 'node:crypto';

export const HLL_P = 12;
export const HLL_M = 1 << HLL_P;
export const HLL_STANDARD_ERROR = 1.04 / Math.sqrt(HLL_M);
const SPARSE_LIMIT = HLL_M / 4; // beyond this many pairs the dense array is smaller

/** bucket in the high p bits of the first 32-bit half; rank = position of the first 1 bit after them. */
export function hllHash(value: string): { bucket: number; rank: number } {
  // One-shot crypto.hash: much cheaper per value than createHash().update().digest().
  const digest = hash('md5', value, 'buffer');
  const hi = digest.readUInt32BE(0);
  const lo = digest.readUInt32BE(4);
  const bucket = hi >>> (32 - HLL_P);
  const restHi = hi & ((1 << (32 - HLL_P)) - 1);
  let rank: number;
  if (restHi !== 0) rank = Math.clz32(restHi) - HLL_P + 1;
  else if (lo !== 0) rank = 32 - HLL_P + Math.clz32(lo) + 1;
  else rank = 64 - HLL_P + 1;
  return { bucket, rank };
}

/**
 * DuckDB SQL computing (bucket, rank) from a VARCHAR expression, identical to `hllHash`.
 * floor(log2(x)) is exact in double precision for 32-bit integers, so no rounding can move a
 * rank (`__tests__/engineAgreement.spec.ts` and `fieldSemantics.differential.spec.ts` check that the
 * two sides agree value by value).
 */
export function hllRegisterSql(valueExpr: string): { bucket: string; rank: string } {
  const hi = `CAST(('0x' || substr(md5(${valueExpr}), 1, 8)) AS UBIGINT)`;
  const lo = `CAST(('0x' || substr(md5(${valueExpr}), 9, 8)) AS UBIGINT)`;
  const restHi = `(${hi} & ${(1 << (32 - HLL_P)) - 1})`;
  return {
    bucket: `CAST(${hi} >> ${32 - HLL_P} AS INTEGER)`,
    rank: `CAST(CASE WHEN ${restHi} <> 0 THEN ${32 - HLL_P} - floor(log2(${restHi})) WHEN ${lo} <> 0 THEN ${64 - HLL_P} - floor(log2(${lo})) ELSE ${64 - HLL_P + 1} END AS INTEGER)`,
  };
}

export class HyperLogLog {
  /** Dense registers once the sketch is big; until then a sparse map bucket -> rank. */
  private dense: Uint8Array | undefined;
  private sparse: Map<number, number> | undefined = new Map();

  add(value: string): void {
    const { bucket, rank } = hllHash(value);
    this.setRegister(bucket, rank);
  }

  setRegister(bucket: number, rank: number): void {
    if (this.dense) {
      if (rank > this.dense[bucket]!) this.dense[bucket] = rank;
      return;
    }
    const sparse = this.sparse!;
    const current = sparse.get(bucket) ?? 0;
    if (rank > current) {
      sparse.set(bucket, rank);
      if (sparse.size > SPARSE_LIMIT) this.densify();
    }
  }

  private densify(): void {
    const dense = new Uint8Array(HLL_M);
    for (const [b, r] of this.sparse!) dense[b] = r;
    this.dense = dense;
    this.sparse = undefined;
  }

  merge(other: HyperLogLog): this {
    if (other.dense) other.dense.forEach((r, b) => r > 0 && this.setRegister(b, r));
    else for (const [b, r] of other.sparse!) this.setRegister(b, r);
    return this;
  }

  estimate(): number {
    let sum = 0;
    let zeros = 0;
    if (this.dense) {
      for (const r of this.dense) {
        sum += 2 ** -r;
        if (r === 0) zeros++;
      }
    } else {
      zeros = HLL_M - this.sparse!.size;
      sum = zeros;
      for (const r of this.sparse!.values()) sum += 2 ** -r;
    }
    const alpha = 0.7213 / (1 + 1.079 / HLL_M);
    const raw = (alpha * HLL_M * HLL_M) / sum;
    // Small-range correction (linear counting), as in Flajolet et al.; 64-bit hashes need no
    // large-range correction at these cardinalities.
    if (raw <= 2.5 * HLL_M && zeros > 0) return Math.round(HLL_M * Math.log(HLL_M / zeros));
    return Math.round(raw);
  }

  /** Approximate bytes held, for state-size reporting. */
  byteSize(): number {
    return this.dense ? HLL_M : 32 + this.sparse!.size * 16;
  }

  /** Compact binary form: tag 1 = sparse (u16 bucket, u8 rank)*, tag 2 = dense registers. */
  serialize(): Buffer {
    if (this.dense) {
      const out = Buffer.allocUnsafe(1 + HLL_M);
      out[0] = 2;
      out.set(this.dense, 1);
      return out;
    }
    const out = Buffer.allocUnsafe(1 + this.sparse!.size * 3);
    out[0] = 1;
    let i = 1;
    for (const [b, r] of this.sparse!) {
      out.writeUInt16BE(b, i);
      out[i + 2] = r;
      i += 3;
    }
    return out;
  }

  static deserialize(buf: Uint8Array): HyperLogLog {
    const h = new HyperLogLog();
    const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (view[0] === 2) {
      if (view.length !== 1 + HLL_M) throw new Error(`corrupt dense HLL sketch: ${view.length} bytes`);
      h.dense = new Uint8Array(view.subarray(1));
      h.sparse = undefined;
    } else if (view[0] === 1) {
      if ((view.length - 1) % 3 !== 0) throw new Error(`corrupt sparse HLL sketch: ${view.length} bytes`);
      for (let i = 1; i < view.length; i += 3) h.setRegister(view.readUInt16BE(i), view[i + 2]!);
    } else {
      throw new Error(`unknown HLL sketch tag ${view[0]}`);
    }
    return h;
  }

  static fromBase64(text: string): HyperLogLog {
    return HyperLogLog.deserialize(Buffer.from(text, 'base64'));
  }

  toBase64(): string {
    return this.serialize().toString('base64');
  }
}
