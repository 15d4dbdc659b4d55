/**
 * The warm-up of a version that starts mid-log: where its history comes from, and the lake's
 * part of it as the state threads take it.
 *
 * A version replayed from offset s_p of partition p (`lk replay --from <time|duration|offsets>`,
 * `--from lake --from-time`) publishes rows that claim the partition's records below their
 * stamp (docs/merge-rule.md). So before it publishes anything, its state is brought to exactly
 * what a replay from the partition's first offset would hold at s_p, for every window still open
 * there: the warm-up reads the history below s_p, from the lake where it holds it, then from the
 * log, and publishes nothing until s_p (streaming/state/partitionState.ts `warmUntil`).
 *
 * From the lake, not every record needs its value. With W_s the watermark at s_p and H the dedup
 * horizon (at least every window's size plus its allowed lateness), every window open at s_p
 * starts at or after X = W_s - H, so a record with event time below X can only fall in windows
 * closed at s_p, which the warm-up never publishes. Such a record still counts for the watermark
 * and for its id's dedup entry, so it is handed over narrow: offset, event time and the id's
 * fingerprint, which take the dedup and watermark steps of a full replay and nothing else
 * (`PartitionState.applyNarrow`). Every other record comes with its value and is applied as on
 * the log. X itself is known only at the end, so the cut is a lower bound of it, `warmUpFloor`:
 * the largest event time among the first copies of the ids (each first copy is applied, so the
 * largest event time at s_p is at least that) minus out-of-orderness and horizon. The argument,
 * with a table of offsets, is in docs/merge-rule.md, "Hard case 3: a version that starts mid-log".
 *
 * Id and event time come from the version's own mapping: the lake's typed columns where the lake
 * writer used the same mapping, else derived in SQL (services/metrics/fieldSemantics.ts
 * `mappedEventSql`, bound to the JavaScript decoder by the differential test). Records that are no
 * event under the mapping take no step in the state and are left out.
 */
import { ConfigError, InfrastructureError, errorMessage } from '../../services/errors.ts';
import { FLAT_MAPPING_NAME, lakeMappingName } from '../../services/lake/lakeLayout.ts';
import { mappedEventSql, type EventMapping } from '../../services/metrics/fieldSemantics.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import { fingerprintBytes } from '../state/idFingerprint.ts';
import { NARROW_RECORD, emptyPack, type PackedBatch } from '../threads/recordPack.ts';
import type { LakeChunk, LakeSource } from './lakeSource.ts';

/** Where the history of one partition below its start comes from. */
export interface WarmUpPart {
  /** The version's start offset s_p: the warm-up ends there. */
  start: number;
  /** The lake holds [0, lakeEnd) of it (0: no lake part); the log [lakeEnd, start). */
  lakeEnd: number;
}

/** What holds the history of each partition: the log from its first offset, the lake's committed range. */
export interface HistoryHolders {
  beginnings: readonly number[];
  /** null: no lake. `starts`: the lake's first offset of each partition (absent: no file). */
  lake: { starts: ReadonlyMap<number, number>; ends: ReadonlyMap<number, number> } | null;
}

/**
 * The warm-up of every partition (null: the version starts at the partition's first offset, no
 * warm-up). Throws ConfigError, naming where each partition's history now starts, when neither
 * the lake nor the log holds all of it.
 *
 * The lake holds a partition from its first offset when its first file starts at offset 0, or
 * when the log still starts at 0 (the lake writer then read the partition from 0; a lake whose
 * first file starts later only lacks records that were no readable JSON object, which no state
 * reads).
 */
export function planWarmUp(topic: string, startOffsets: readonly number[], holders: HistoryHolders): (WarmUpPart | null)[] {
  const gaps: string[] = [];
  const plan = startOffsets.map((start, p) => {
    if (start <= 0) return null;
    const logStart = holders.beginnings[p] ?? 0;
    const lakeEnd = holders.lake?.ends.get(p) ?? 0;
    const lakeStart = holders.lake?.starts.get(p) ?? lakeEnd;
    const lakeFromZero = holders.lake !== null && lakeEnd > 0 && (lakeStart === 0 || logStart === 0);
    const fromLake = lakeFromZero ? Math.min(start, lakeEnd) : 0;
    if (logStart <= fromLake) return { start, lakeEnd: fromLake };
    // Where a contiguous history up to the start now begins.
    const held = holders.lake !== null && lakeEnd >= logStart && lakeEnd > lakeStart ? Math.min(lakeStart, logStart) : logStart;
    const lake =
      holders.lake === null ? 'there is no lake' : lakeEnd === 0 ? 'the lake holds none of it' : `the lake holds ${lakeStart}..${lakeEnd}`;
    gaps.push(`partition ${p} starts at ${start}, and its history now starts at offset ${held} (the log starts at ${logStart}, ${lake})`);
    return null;
  });
  if (gaps.length > 0)
    throw new ConfigError(
      `a version that starts mid-log of topic "${topic}" is first warmed up from the partitions' history before its start, and part of it is gone: ${gaps.join('; ')}. ` +
        `Its rows would claim events it never saw (docs/merge-rule.md). Start where history is held (--from earliest, --from lake, or a later start with a lake that reaches back to offset 0)`,
    );
  return plan;
}

/** The SQL struct (id, ts, type, hash) of a lake row's event under `mapping`, NULL when it is none. */
function lakeEventSql(mapping: EventMapping): string {
  const sameMapping = `coalesce(event_mapping, ${sqlQuote(FLAT_MAPPING_NAME)}) = ${sqlQuote(lakeMappingName(mapping))}`;
  const typed = `CASE WHEN ts_ms IS NOT NULL THEN struct_pack(id := id, ts := ts_ms, type := type, hash := id_hash) END`;
  const derived = mappedEventSql(mapping, { raw: 'raw', key: 'kafka_key', timestamp: 'kafka_timestamp' });
  return `CASE WHEN ${sameMapping} THEN ${typed} ELSE ${derived} END`;
}

/**
 * The event time below which a lake record of `partition` below `to` is handed over narrow: the
 * largest event time among the first copies of the ids, minus out-of-orderness and dedup
 * horizon (a lower bound of W_s - H, see the file comment). -Infinity when no event of the range
 * is below it: then every record is read with its value.
 */
export async function warmUpFloor(
  source: LakeSource,
  partition: number,
  to: number,
  mapping: EventMapping,
  semantics: { outOfOrdernessMs: number; dedupHorizonMs: number },
): Promise<number> {
  const range = await source.rangeQuery(partition, 0, to);
  if (range === null) return -Infinity;
  try {
    const reader = await range.conn.runAndReadAll(
      `SELECT max(first_ts)::DOUBLE, min(min_ts)::DOUBLE FROM (
         SELECT arg_min(e.ts, kafka_offset) AS first_ts, min(e.ts) AS min_ts FROM (
           SELECT kafka_offset, ${lakeEventSql(mapping)} AS e FROM ${range.sql}
           WHERE kafka_partition = ${partition} AND kafka_offset < ${to})
         WHERE e IS NOT NULL GROUP BY e.id)`,
    );
    const [max, min] = reader.getRows()[0] as [number | null, number | null];
    if (max === null || min === null) return -Infinity;
    const floor = max - semantics.outOfOrdernessMs - semantics.dedupHorizonMs;
    // Every record at or above the floor: read as a replay reads the lake (LakeSource.read).
    return floor <= min ? -Infinity : floor;
  } catch (err) {
    throw new InfrastructureError(`cannot read the lake (partition ${partition} below offset ${to}): ${errorMessage(err)}`, { cause: err });
  } finally {
    range.conn.closeSync();
  }
}

const BACKSLASH = 0x5c;
const LOWER_X = 0x78;

/**
 * The lake's events of `partition` with offsets in [from, min(from + chunkOffsets, to)), in
 * offset order, packed for the state threads: those with event time at or above `floor` with
 * their values (and keys when `withKeys`), the others narrow (event time and id fingerprint).
 * One query returns the range as a few lists and two concatenated texts, as LakeSource.read does.
 */
export async function readWarmUp(
  source: LakeSource,
  partition: number,
  from: number,
  to: number,
  floor: number,
  mapping: EventMapping,
  chunkOffsets: number,
  withKeys: boolean,
): Promise<LakeChunk> {
  const end = Math.min(to, from + chunkOffsets);
  if (end <= from) return { partition, packed: emptyPack(partition, Math.max(from, to)), nextOffset: Math.max(from, to) };
  const range = await source.rangeQuery(partition, from, end);
  if (range === null) return { partition, packed: emptyPack(partition, end), nextOffset: end };
  const included = Number.isFinite(floor) ? `e.ts >= ${Math.trunc(floor)}` : floor > 0 ? 'FALSE' : 'TRUE';
  const keys = withKeys
    ? `, list(CASE WHEN inc THEN octet_length(kafka_key)::INTEGER END ORDER BY o), coalesce(string_agg(CASE WHEN inc THEN hex(kafka_key) END, '' ORDER BY o), '')`
    : '';
  let row: unknown[];
  try {
    const reader = await range.conn.runAndReadAll(
      `SELECT list(o ORDER BY o), list(t ORDER BY o), list(ts ORDER BY o),
              list(CASE WHEN inc THEN strlen(raw)::INTEGER ELSE -1 END ORDER BY o), coalesce(string_agg(CASE WHEN inc THEN raw END, '' ORDER BY o), ''),
              list(CASE WHEN inc THEN -1 ELSE strlen(id)::INTEGER END ORDER BY o), coalesce(string_agg(CASE WHEN inc THEN NULL ELSE id END, '' ORDER BY o), '')${keys}
       FROM (SELECT kafka_offset::DOUBLE AS o, kafka_timestamp::DOUBLE AS t, e.ts::DOUBLE AS ts, e.id AS id, raw, kafka_key, ${included} AS inc
             FROM (SELECT *, ${lakeEventSql(mapping)} AS e FROM ${range.sql}
                   WHERE kafka_partition = ${partition} AND kafka_offset >= ${from} AND kafka_offset < ${end})
             WHERE e IS NOT NULL)`,
    );
    row = reader.getRows()[0]!;
  } catch (err) {
    throw new InfrastructureError(`cannot read the lake (partition ${partition}, offsets ${from}-${end}): ${errorMessage(err)}`, {
      cause: err,
    });
  } finally {
    range.conn.closeSync();
  }
  const list = (i: number) => ((row[i] as { items?: unknown[] } | null)?.items ?? []) as number[];
  const offsets = list(0);
  const count = offsets.length;
  const rawLengths = list(3);
  const idLengths = list(5);
  const text = row[4] as string;
  const ids = Buffer.from(row[6] as string, 'utf8');
  // Fresh buffers of their own: they are transferred to a state thread.
  const values = new Uint8Array(Buffer.byteLength(text, 'utf8'));
  Buffer.from(values.buffer, values.byteOffset, values.byteLength).write(text, 'utf8');
  const packed: PackedBatch = {
    partition,
    nextOffset: end,
    count,
    offsets: Float64Array.from(offsets),
    timestamps: Float64Array.from(list(1)),
    valueEnds: new Int32Array(count),
    values,
    narrow: { eventTimes: Float64Array.from(list(2)), fingerprints: new Int32Array(4 * count) },
  };
  const fp = packed.narrow!.fingerprints;
  let at = 0;
  let idAt = 0;
  let previous = from - 1;
  for (let i = 0; i < count; i++) {
    if (offsets[i]! <= previous)
      throw new InfrastructureError(
        `the lake holds offset ${offsets[i]} of partition ${partition} twice (after ${previous}): the lake is damaged`,
      );
    previous = offsets[i]!;
    const n = rawLengths[i]!;
    if (n >= 0) {
      at += n;
      packed.valueEnds[i] = at;
      continue;
    }
    packed.valueEnds[i] = NARROW_RECORD;
    // The id's text (fieldSemantics.ts `idText`) back to its bytes: `\x` and hex, else its UTF-8.
    const idEnd = idAt + idLengths[i]!;
    const out = fp.subarray(4 * i, 4 * i + 4);
    if (idEnd - idAt >= 2 && ids[idAt] === BACKSLASH && ids[idAt + 1] === LOWER_X) {
      const bytes = Buffer.from(ids.toString('latin1', idAt + 2, idEnd), 'hex');
      fingerprintBytes(bytes, 0, bytes.length, out);
    } else fingerprintBytes(ids, idAt, idEnd, out);
    idAt = idEnd;
  }
  if (at !== values.length || idAt !== ids.length)
    throw new InfrastructureError(`the lake's values of partition ${partition}, offsets ${from}-${end}, do not add up`);
  if (withKeys) {
    const keyLengths = ((row[7] as { items?: unknown[] } | null)?.items ?? []) as (number | null)[];
    packed.keys = Uint8Array.from(Buffer.from(row[8] as string, 'hex'));
    packed.keyEnds = new Int32Array(count);
    let k = 0;
    for (let i = 0; i < count; i++) {
      const n = keyLengths[i];
      if (n === null || n === undefined) packed.keyEnds[i] = -1;
      else packed.keyEnds[i] = k += n;
    }
  }
  return { partition, packed, nextOffset: end };
}
