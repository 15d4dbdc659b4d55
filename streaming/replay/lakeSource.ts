/**
 * The Parquet lake as a source of records for the speed layer's own code (Kappa+: a replay reads
 * history from the lake where the log's retention no longer holds it, then continues from Kafka).
 *
 * The lake is a Delta table (services/lake/lakeTable.ts), read through its log, never by globbing:
 * only the files of a snapshot, and for every partition the writer's transaction identifier, the
 * offset below which the lake holds every valid record of the partition. That offset is where
 * Kafka takes over: the hand-over is by offset, so there is no gap and no overlap.
 *
 * Files are laid out by event time (dt=/hr=), so one partition's offsets are spread over many
 * files whose ranges interleave. Records are therefore read in offset ranges (`chunkOffsets`
 * at a time): every file of the snapshot whose statistics say it may hold the partition's
 * offsets in the range (a file without statistics, appended by another engine, always may),
 * filtered and sorted by offset in DuckDB (Parquet statistics skip the other row groups). The
 * log is re-read for every range, so a long replay follows compactions; a compacted file stays
 * stored for the table's retention, far longer than one range takes. On object storage the
 * files are read from the local cache (services/lake/lakeFileCache.ts).
 *
 * Records become what the log would have delivered: offset, log-append time, the value's exact
 * bytes (`raw`) and, for a version whose mapping reads it (`event.id: $key`), the key
 * (`kafka_key`); the speed state reads nothing else (streaming/threads/recordPack.ts). The lake
 * keeps every record that is a readable JSON object, valid or not under the lake writer's own
 * mapping, so the version's mapping decides here as it does on the log. Records that are not
 * readable JSON objects are not in the lake; the speed layer would have counted them as invalid
 * under any mapping and skipped them, so the windows are the same.
 */
import { DuckDBInstance, type DuckDBConnection, type DuckDBListValue } from '@duckdb/node-api';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import type { DeltaLog } from '../../services/lake/delta/deltaLog.ts';
import { LakeFileAccess } from '../../services/lake/lakeFileCache.ts';
import { lakeRowsSql } from '../../services/lake/lakeLayout.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import {
  lakeFiles,
  lakeHorizonAppId,
  lakePositions,
  lakeRemovedLogTimeAppId,
  lakeStarts,
  openLakeForReading,
  type LakeFile,
} from '../../services/lake/lakeTable.ts';
import { emptyPack, type PackedBatch } from '../threads/recordPack.ts';

export const DEFAULT_CHUNK_OFFSETS = 50_000;

export interface LakeChunk {
  partition: number;
  /** The range's records as the state threads take them. */
  packed: PackedBatch;
  /** The position after the chunk: the next offset to read (the lake's end after the last chunk). */
  nextOffset: number;
}

export class LakeSource {
  private constructor(
    private readonly table: DeltaLog,
    private readonly access: LakeFileAccess,
    private readonly db: DuckDBInstance,
    /** For the queries about the whole lake; each range is read on a connection of its own. */
    private readonly conn: DuckDBConnection,
    private readonly topic: string,
    private readonly withKeys: boolean,
  ) {}

  /** `withKeys`: the records' keys are read too (a version whose mapping reads them). */
  static async open(lake: LakeHandle, options: { withKeys?: boolean } = {}): Promise<LakeSource> {
    const table = await openLakeForReading(lake, { missingOk: true, migrate: true });
    if (!table) {
      throw new InfrastructureError(
        `no lake at ${lake.uri}: a replay --from lake needs the batch layer's lake of topic "${lake.topic}" (lk batch run writes it)`,
      );
    }
    const db = await DuckDBInstance.create(':memory:', { threads: '1' });
    return new LakeSource(
      table,
      new LakeFileAccess(lake.store, lake.cacheDir),
      db,
      await db.connect(),
      lake.topic,
      options.withKeys ?? false,
    );
  }

  /**
   * Where lake retention (`lk batch --lake-retention`) left the lake: per partition, the offset
   * from which it holds every record (partitions it never touched are whole), and the event time
   * below which it removed files. Undefined: nothing was ever removed.
   */
  async retention(): Promise<{ starts: Map<number, number>; horizon: number; removedLogTime: number } | undefined> {
    const snap = await this.table.refresh();
    const horizon = snap?.txnVersion(lakeHorizonAppId(this.topic));
    if (horizon === undefined) return undefined;
    return { starts: lakeStarts(snap, this.topic), horizon, removedLogTime: snap!.txnVersion(lakeRemovedLogTimeAppId(this.topic)) ?? 0 };
  }

  /** Per partition, the offset below which the lake holds every valid record (0: nothing yet). */
  async ends(): Promise<Map<number, number>> {
    const snap = await this.table.refresh();
    return new Map([...lakePositions(snap, this.topic)].map(([p, pos]) => [p, pos.nextOffset]));
  }

  /**
   * Per partition, the smallest offset the lake holds (from its files' statistics), or undefined
   * when it holds none. A file without statistics makes its partitions start at 0 (the cautious
   * answer: the replay then reads from the lake's first record of them).
   */
  async starts(): Promise<Map<number, number>> {
    const starts = new Map<number, number>();
    const files = lakeFiles(await this.table.refresh());
    const unknown = files.some((f) => f.partition === undefined || f.fromOffset === undefined);
    for (const f of files)
      if (f.partition !== undefined && f.fromOffset !== undefined)
        starts.set(f.partition, Math.min(starts.get(f.partition) ?? Infinity, f.fromOffset));
    if (unknown) for (const p of (await this.ends()).keys()) starts.set(p, 0);
    return starts;
  }

  /**
   * Per partition, the first offset whose log-append time is at or after `time` (as Kafka's
   * offsetsForTimes answers for the log), or the lake's end when no record is that recent.
   */
  async offsetsForTime(time: number): Promise<Map<number, number>> {
    const out = await this.ends();
    const files = lakeFiles(this.table.current);
    if (files.length === 0) return out;
    const paths = await this.access.localPaths(files.map((f) => ({ key: f.key, size: f.size })));
    const reader = await this.conn.runAndReadAll(
      `SELECT kafka_partition::INTEGER, min(kafka_offset)::DOUBLE FROM ${lakeRowsSql(paths)} WHERE kafka_timestamp >= ${Math.trunc(time)} GROUP BY 1`,
    );
    for (const [p, o] of reader.getRows() as [number, number][]) if (o < (out.get(p) ?? Infinity)) out.set(p, o);
    return out;
  }

  /**
   * Records of `partition` with offsets in [from, min(from + chunkOffsets, end)), in offset
   * order, packed as the state threads take them (streaming/threads/recordPack.ts); `nextOffset`
   * is that range's end. `end` is the hand-over offset fixed by the caller.
   *
   * One query returns the range as four values, not one row per record: the offsets and times as
   * lists, the values concatenated in offset order with their byte lengths. The values' bytes are
   * the records' exact bytes (the lake keeps `raw` as logged, always valid UTF-8), and no
   * JavaScript object is made per record: reading the lake costs a fraction of decoding the log.
   */
  async read(partition: number, from: number, end: number, chunkOffsets = DEFAULT_CHUNK_OFFSETS): Promise<LakeChunk> {
    const to = Math.min(end, from + chunkOffsets);
    if (to <= from) return { partition, packed: emptyPack(partition, Math.max(from, end)), nextOffset: Math.max(from, end) };
    const snap = await this.table.refresh();
    const committed = lakePositions(snap, this.topic).get(partition)?.nextOffset ?? 0;
    if (committed < to) {
      throw new InfrastructureError(
        `the lake of topic "${this.topic}" holds partition ${partition} only up to offset ${committed}, not ${to}: was it deleted or rewritten?`,
      );
    }
    // A file may hold the range unless its statistics say otherwise.
    const files = lakeFiles(snap).filter(
      (f: LakeFile) =>
        (f.partition === undefined || f.partition === partition) &&
        (f.toOffset === undefined || f.toOffset >= from) &&
        (f.fromOffset === undefined || f.fromOffset < to),
    );
    if (files.length === 0) return { partition, packed: emptyPack(partition, to), nextOffset: to };
    let offsets: number[];
    let times: number[];
    let lengths: number[];
    let text: string;
    let keyLengths: (number | null)[] = [];
    let keyBytes: Uint8Array | undefined;
    try {
      // A connection runs one query at a time, and partitions are read side by side (lakeReplay.ts).
      // Keys: their lengths (NULL for none; files written before the column existed have none)
      // and their bytes concatenated, in hex (string_agg takes no BLOB).
      const keys = this.withKeys
        ? `, list(octet_length(kafka_key)::INTEGER ORDER BY kafka_offset), coalesce(string_agg(hex(kafka_key), '' ORDER BY kafka_offset), '')`
        : '';
      const paths = await this.access.localPaths(files.map((f) => ({ key: f.key, size: f.size })));
      const conn = await this.db.connect();
      // Files written before the key column existed read it as NULL (lakeRowsSql).
      const reader = await conn
        .runAndReadAll(
          `SELECT list(kafka_offset::DOUBLE ORDER BY kafka_offset), list(kafka_timestamp::DOUBLE ORDER BY kafka_offset),
                list(strlen(raw)::INTEGER ORDER BY kafka_offset), coalesce(string_agg(raw, '' ORDER BY kafka_offset), '')${keys}
         FROM ${lakeRowsSql(paths)}
         WHERE kafka_partition = ${partition} AND kafka_offset >= ${from} AND kafka_offset < ${to}`,
        )
        .finally(() => conn.closeSync());
      const [row] = reader.getRows() as [DuckDBListValue | null, DuckDBListValue | null, DuckDBListValue | null, string, ...unknown[]][];
      offsets = (row![0]?.items ?? []) as number[];
      times = (row![1]?.items ?? []) as number[];
      lengths = (row![2]?.items ?? []) as number[];
      text = row![3];
      if (this.withKeys) {
        keyLengths = ((row![4] as DuckDBListValue | null)?.items ?? []) as (number | null)[];
        keyBytes = Buffer.from(row![5] as string, 'hex');
      }
    } catch (err) {
      throw new InfrastructureError(`cannot read the lake (partition ${partition}, offsets ${from}-${to}): ${errorMessage(err)}`, {
        cause: err,
      });
    }
    const count = offsets.length;
    // A fresh buffer of its own: it is transferred to a state thread (never a slice of Buffer's pool).
    const values = new Uint8Array(Buffer.byteLength(text, 'utf8'));
    const written = Buffer.from(values.buffer, values.byteOffset, values.byteLength).write(text, 'utf8');
    const packed: PackedBatch = {
      partition,
      nextOffset: to,
      count,
      offsets: Float64Array.from(offsets),
      timestamps: Float64Array.from(times),
      valueEnds: new Int32Array(count),
      values,
    };
    let at = 0;
    let previous = from - 1;
    for (let i = 0; i < count; i++) {
      // The lake holds a record once (the commit protocol's promise); a repeat would be counted twice.
      if (offsets[i]! <= previous)
        throw new InfrastructureError(
          `the lake holds offset ${offsets[i]} of partition ${partition} twice (after ${previous}): the lake is damaged`,
        );
      previous = offsets[i]!;
      at += lengths[i]!;
      packed.valueEnds[i] = at;
    }
    if (at !== written)
      throw new InfrastructureError(
        `the lake's values of partition ${partition}, offsets ${from}-${to}, do not add up (${at} of ${written} bytes)`,
      );
    if (keyBytes !== undefined) {
      // A fresh buffer of its own, transferred like the values.
      packed.keys = Uint8Array.from(keyBytes);
      packed.keyEnds = new Int32Array(count);
      let k = 0;
      for (let i = 0; i < count; i++) {
        const n = keyLengths[i];
        if (n === null || n === undefined) packed.keyEnds[i] = -1;
        else packed.keyEnds[i] = k += n;
      }
      if (k !== packed.keys.length)
        throw new InfrastructureError(
          `the lake's keys of partition ${partition}, offsets ${from}-${to}, do not add up (${k} of ${packed.keys.length} bytes)`,
        );
    }
    return { partition, packed, nextOffset: to };
  }

  /**
   * A DuckDB connection of its own and a subquery with every lake column over the committed
   * files that may hold `partition`'s offsets in [from, to), or null when none can; the caller
   * closes the connection. Refused when the lake does not hold the range. The one place the
   * warm-up of a version that starts mid-log (warmUpSource.ts) lists and reads the lake.
   */
  async rangeQuery(partition: number, from: number, to: number): Promise<{ conn: DuckDBConnection; sql: string } | null> {
    const snap = await this.table.refresh();
    const committed = lakePositions(snap, this.topic).get(partition)?.nextOffset ?? 0;
    if (committed < to) {
      throw new InfrastructureError(
        `the lake of topic "${this.topic}" holds partition ${partition} only up to offset ${committed}, not ${to}: was it deleted or rewritten?`,
      );
    }
    // A file may hold the range unless its statistics say otherwise.
    const files = lakeFiles(snap).filter(
      (f: LakeFile) =>
        (f.partition === undefined || f.partition === partition) &&
        (f.toOffset === undefined || f.toOffset >= from) &&
        (f.fromOffset === undefined || f.fromOffset < to),
    );
    if (files.length === 0) return null;
    const paths = await this.access.localPaths(files.map((f) => ({ key: f.key, size: f.size })));
    return { conn: await this.db.connect(), sql: lakeRowsSql(paths) };
  }

  close(): void {
    this.conn.closeSync();
    this.db.closeSync();
  }
}

/**
 * What the lake holds of each partition, for planning a warm-up (warmUpSource.ts `planWarmUp`):
 * the first offset of its files and the offset below which it holds every record; null when the
 * topic has no lake.
 */
export async function lakeHoldings(lake: LakeHandle): Promise<{ starts: Map<number, number>; ends: Map<number, number> } | null> {
  if (!(await openLakeForReading(lake, { missingOk: true, migrate: true }))) return null;
  const source = await LakeSource.open(lake);
  try {
    return { starts: await source.starts(), ends: await source.ends() };
  } finally {
    source.close();
  }
}
