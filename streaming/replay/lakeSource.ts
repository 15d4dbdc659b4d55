/**
 * The Parquet lake as a source of records for the speed layer's own code (Kappa+: a replay reads
 * history from the lake where the log's retention no longer holds it, then continues from Kafka).
 *
 * The lake is read through its manifest (services/lake/commitProtocol.ts), never by globbing:
 * only committed files, and for every partition the manifest's `nextOffset`, the offset below
 * which the lake holds every valid record of the partition. That offset is where Kafka takes
 * over: the hand-over is by offset, so there is no gap and no overlap.
 *
 * Files are laid out by event time (dt=/hr=), so one partition's offsets are spread over many
 * files whose ranges interleave. Records are therefore read in offset ranges (`chunkOffsets`
 * at a time): every committed file of the partition whose [fromOffset, toOffset] meets the range,
 * filtered and sorted by offset in DuckDB (Parquet statistics skip the other row groups). The
 * manifest is re-read for every range, so a long replay follows compactions; a compacted file
 * stays on disk for the manifest's grace period, far longer than one range takes.
 *
 * Records become what the log would have delivered: offset, log-append time and the value's
 * exact text (`raw`); the speed state reads nothing else (streaming/threads/recordPack.ts).
 * Records the lake writer refused (dead letters) are not in the lake; the speed layer would
 * have counted them as invalid and skipped them, so the windows are the same.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { join } from 'node:path';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { LakeManifest, lakeExists, type LakeFile } from '../../services/lake/commitProtocol.ts';
import { readLakeSql } from '../../services/lake/lakeLayout.ts';
import type { LogRecord } from '../../services/log/eventLog.ts';

export const DEFAULT_CHUNK_OFFSETS = 50_000;

export interface LakeChunk {
  partition: number;
  records: LogRecord[];
  /** The position after the chunk: the next offset to read (the lake's end after the last chunk). */
  nextOffset: number;
}

export class LakeSource {
  private constructor(
    private readonly manifest: LakeManifest,
    private readonly conn: DuckDBConnection,
    private readonly topic: string,
  ) {}

  static async open(lakeRoot: string, topic: string): Promise<LakeSource> {
    if (!lakeExists(lakeRoot)) {
      throw new InfrastructureError(
        `no lake at ${lakeRoot}: a replay --from lake needs the batch layer's lake of topic "${topic}" (lk batch run writes it)`,
      );
    }
    const db = await DuckDBInstance.create(':memory:', { threads: '1' });
    return new LakeSource(LakeManifest.open(lakeRoot), await db.connect(), topic);
  }

  /** Per partition, the offset below which the lake holds every valid record (0: nothing yet). */
  ends(): Map<number, number> {
    const snap = this.manifest.snapshot();
    return new Map([...snap.positions].map(([p, pos]) => [p, pos.nextOffset]));
  }

  /** Per partition, the smallest offset the lake holds (its first file), or undefined when it holds none. */
  starts(): Map<number, number> {
    const starts = new Map<number, number>();
    for (const f of this.manifest.snapshot().files) starts.set(f.partition, Math.min(starts.get(f.partition) ?? Infinity, f.fromOffset));
    return starts;
  }

  /**
   * Per partition, the first offset whose log-append time is at or after `time` (as Kafka's
   * offsetsForTimes answers for the log), or the lake's end when no record is that recent.
   */
  async offsetsForTime(time: number): Promise<Map<number, number>> {
    const snap = this.manifest.snapshot();
    const out = this.ends();
    if (snap.files.length === 0) return out;
    const files = snap.files.map((f) => join(snap.root, f.path));
    const reader = await this.conn.runAndReadAll(
      `SELECT kafka_partition::INTEGER, min(kafka_offset)::DOUBLE FROM ${readLakeSql(files)} WHERE kafka_timestamp >= ${Math.trunc(time)} GROUP BY 1`,
    );
    for (const [p, o] of reader.getRows() as [number, number][]) if (o < (out.get(p) ?? Infinity)) out.set(p, o);
    return out;
  }

  /**
   * Records of `partition` with offsets in [from, min(from + chunkOffsets, end)), in offset
   * order; `nextOffset` is that range's end. `end` is the hand-over offset fixed by the caller.
   */
  async read(partition: number, from: number, end: number, chunkOffsets = DEFAULT_CHUNK_OFFSETS): Promise<LakeChunk> {
    const to = Math.min(end, from + chunkOffsets);
    if (to <= from) return { partition, records: [], nextOffset: Math.max(from, end) };
    const snap = this.manifest.snapshot();
    const committed = snap.positions.get(partition)?.nextOffset ?? 0;
    if (committed < to) {
      throw new InfrastructureError(
        `the lake of topic "${this.topic}" holds partition ${partition} only up to offset ${committed}, not ${to}: was it deleted or rewritten?`,
      );
    }
    const files = snap.files.filter((f: LakeFile) => f.partition === partition && f.toOffset >= from && f.fromOffset < to);
    if (files.length === 0) return { partition, records: [], nextOffset: to };
    let rows: [number, number, string][];
    try {
      const reader = await this.conn.runAndReadAll(
        `SELECT kafka_offset::DOUBLE, kafka_timestamp::DOUBLE, raw FROM ${readLakeSql(files.map((f) => join(snap.root, f.path)))}
         WHERE kafka_partition = ${partition} AND kafka_offset >= ${from} AND kafka_offset < ${to} ORDER BY kafka_offset`,
      );
      rows = reader.getRows() as [number, number, string][];
    } catch (err) {
      throw new InfrastructureError(`cannot read the lake (partition ${partition}, offsets ${from}-${to}): ${errorMessage(err)}`, {
        cause: err,
      });
    }
    const records = new Array<LogRecord>(rows.length);
    let previous = from - 1;
    for (let i = 0; i < rows.length; i++) {
      const [offset, timestamp, raw] = rows[i]!;
      // The lake holds a record once (the commit protocol's promise); a repeat would be counted twice.
      if (offset <= previous)
        throw new InfrastructureError(
          `the lake holds offset ${offset} of partition ${partition} twice (after ${previous}): the lake is damaged`,
        );
      previous = offset;
      records[i] = { topic: this.topic, partition, offset, key: null, value: Buffer.from(raw, 'utf8'), timestamp, headers: {} };
    }
    return { partition, records, nextOffset: to };
  }

  close(): void {
    this.conn.closeSync();
  }
}
