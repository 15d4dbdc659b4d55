/**
 * Where a replay starts (`lk replay --from ...`), resolved once to an offset per partition and
 * kept in the new version's record (services/versions/versionRecord.ts, `origin`), so that a
 * restart resumes from the version's own checkpoints and never resolves the start again.
 *
 *   --from earliest              the log's first offsets (refused when retention has deleted
 *                                the log's start: the replay would silently miss that history)
 *   --from 2026-11-20T00:00:00Z  the first offset whose record time is at or after the instant
 *   --from 6h | "6h ago"         the same, that long before now
 *   --from 0:1200,1:1180,...     explicit offsets, one per partition
 *   --from lake [--from-time T]  the Parquet lake first (from its start, or from T), then the log
 *                                from exactly the offset where the lake ends (Kappa+)
 *
 * Every refusal says what the log or the lake holds and what to run instead.
 */
import { ConfigError } from '../../services/errors.ts';
import { parseDuration } from '../../services/config/durations.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { VersionOrigin } from '../../services/versions/versionRecord.ts';
import type { LakeSource } from './lakeSource.ts';
import type { WarmUpPart } from './warmUpSource.ts';

export type ReplayFrom =
  | { kind: 'earliest' }
  | { kind: 'time'; at: number }
  | { kind: 'offsets'; offsets: Map<number, number> }
  | { kind: 'lake'; fromTime: number | null };

export const REPLAY_FROM_FORMS =
  'earliest, lake, an ISO-8601 time, a duration ago (6h, 2d, "30m ago") or partition:offset pairs (0:1200,1:1180)';

const OFFSETS = /^\d+:\d+(,\d+:\d+)*$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** Parses `--from` (and `--from-time`, which only `lake` takes). `now` fixes "ago". */
export function parseReplayFrom(text: string, fromTime: string | undefined, now: number): ReplayFrom {
  const value = text.trim();
  const time = fromTime === undefined ? null : parseInstant(fromTime, now, '--from-time');
  if (time !== null && value !== 'lake')
    throw new ConfigError('--from-time goes with --from lake (for the log, give the time to --from itself)');
  if (value === 'earliest') return { kind: 'earliest' };
  if (value === 'lake') return { kind: 'lake', fromTime: time };
  if (OFFSETS.test(value)) {
    const offsets = new Map<number, number>();
    for (const pair of value.split(',')) {
      const [p, o] = pair.split(':').map(Number) as [number, number];
      if (!Number.isSafeInteger(o)) throw new ConfigError(`--from ${value}: offset ${o} is too large`);
      if (offsets.has(p)) throw new ConfigError(`--from ${value}: partition ${p} is given twice`);
      offsets.set(p, o);
    }
    return { kind: 'offsets', offsets };
  }
  return { kind: 'time', at: parseInstant(value, now, '--from') };
}

function parseInstant(text: string, now: number, flag: string): number {
  const value = text.trim();
  const ago = parseDuration(value.replace(/\s+ago$/, ''));
  if (ago !== undefined) return now - ago;
  if (/^\d{10,}$/.test(value)) return Number(value);
  if (ISO_TIME.test(value)) {
    const ms = Date.parse(value);
    if (!Number.isNaN(ms)) return ms;
  }
  throw new ConfigError(`${flag} "${text}" is not one of: ${REPLAY_FROM_FORMS}`);
}

export interface ResolvedStart {
  origin: VersionOrigin;
  /** The log's first and end offsets when resolved, for --dry-run and messages. */
  beginnings: number[];
  ends: number[];
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * Partitions whose history before `starts` the log no longer holds: the log's start was
 * deleted (retention, deleteRecords) and the replay would begin at it rather than where asked.
 */
function deletedBefore(starts: number[], beginnings: number[]): number[] {
  return beginnings.flatMap((b, p) => (b > 0 && (starts[p] ?? 0) <= b ? [p] : []));
}

function startsOf(beginnings: number[]): string {
  return beginnings.map((b, p) => `partition ${p} at offset ${b}`).join(', ');
}

/**
 * Resolves `from` against the log (and the lake for `lake`). Throws ConfigError when the start
 * cannot be honoured exactly.
 */
export async function resolveReplayStart(
  log: EventLog,
  topic: string,
  from: ReplayFrom,
  openLake: () => Promise<LakeSource>,
): Promise<ResolvedStart> {
  const [beginnings, ends] = await Promise.all([log.beginningOffsets(topic), log.endOffsets(topic)]);
  const base = { beginnings, ends };
  switch (from.kind) {
    case 'earliest': {
      const gone = deletedBefore(beginnings, beginnings);
      if (gone.length > 0) {
        throw new ConfigError(
          `the log of topic "${topic}" no longer starts at offset 0 (retention deleted its start): it now starts at ${startsOf(beginnings)}; ` +
            `a replay --from earliest would miss what was deleted. Replay from the Parquet lake, which keeps all history: --from lake`,
        );
      }
      return { ...base, origin: { from: 'earliest', startOffsets: beginnings, fromTime: null, lakeEnds: null } };
    }
    case 'time': {
      const starts = await log.offsetsForTimestamp(topic, from.at);
      const gone = deletedBefore(starts, beginnings).filter((p) => (starts[p] ?? 0) < (ends[p] ?? 0));
      if (gone.length > 0) {
        throw new ConfigError(
          `the log of topic "${topic}" may no longer hold the events since ${iso(from.at)}: ` +
            gone.map((p) => `partition ${p} now starts at offset ${beginnings[p]} with a record at or after that time`).join(', ') +
            `; retention deleted what came before. Replay from the lake instead: --from lake --from-time ${iso(from.at)}`,
        );
      }
      return { ...base, origin: { from: 'time', startOffsets: starts, fromTime: from.at, lakeEnds: null } };
    }
    case 'offsets': {
      const missing = beginnings.map((_, p) => p).filter((p) => !from.offsets.has(p));
      const unknown = [...from.offsets.keys()].filter((p) => p >= beginnings.length);
      if (unknown.length > 0)
        throw new ConfigError(`topic "${topic}" has ${beginnings.length} partitions; there is no partition ${unknown.join(', ')}`);
      if (missing.length > 0)
        throw new ConfigError(
          `--from gives no offset for partition ${missing.join(', ')}: give one for every partition (0 to ${beginnings.length - 1})`,
        );
      const starts = beginnings.map((_, p) => from.offsets.get(p)!);
      const out = starts.flatMap((o, p) =>
        o < beginnings[p]! || o > ends[p]! ? [`partition ${p} offset ${o} is outside ${beginnings[p]}..${ends[p]}`] : [],
      );
      if (out.length > 0)
        throw new ConfigError(`--from: ${out.join('; ')} (the log's first and end offsets; earlier history is in the lake: --from lake)`);
      return { ...base, origin: { from: 'offsets', startOffsets: starts, fromTime: null, lakeEnds: null } };
    }
    case 'lake': {
      const lake = await openLake();
      try {
        const held = await lake.ends();
        const lakeEnds = beginnings.map((_, p) => held.get(p) ?? 0);
        // The lake must reach at least where the log now starts, or the records between are in neither.
        const gaps = lakeEnds.flatMap((e, p) =>
          e < beginnings[p]! ? [`partition ${p}: the lake ends at ${e}, the log starts at ${beginnings[p]}`] : [],
        );
        if (gaps.length > 0) {
          throw new ConfigError(
            `neither the lake nor the log of topic "${topic}" holds every record: ${gaps.join('; ')}. The batch layer's lake writer did not read them before retention deleted them`,
          );
        }
        const firsts = from.fromTime === null ? await lake.starts() : await lake.offsetsForTime(from.fromTime);
        const startOffsets = lakeEnds.map((end, p) => Math.min(firsts.get(p) ?? end, end));
        // Lake retention removed history: a start that needs it is refused, never shortened.
        // From the lake's beginning it needs every partition whole; from a time, every record logged
        // since, and retention removed records logged up to kept.removedLogTime.
        const kept = await lake.retention();
        if (kept && (from.fromTime === null || from.fromTime <= kept.removedLogTime))
          throw new ConfigError(
            `the lake of topic "${topic}" no longer holds the history this replay needs: lk batch --lake-retention removed the files of events before ${iso(kept.horizon)} ` +
              `(records logged up to ${iso(kept.removedLogTime)}); the lake now starts at ${[...kept.starts].map(([p, s]) => `partition ${p} offset ${s}`).join(', ')}. ` +
              `Replay from a later time: --from lake --from-time ${iso(kept.removedLogTime + 1)} or later`,
          );
        return { ...base, origin: { from: 'lake', startOffsets, fromTime: from.fromTime, lakeEnds } };
      } finally {
        lake.close();
      }
    }
  }
}

/** The start as `--dry-run` prints it: one line per partition. */
export function describeStart(topic: string, start: ResolvedStart, warmUp: readonly (WarmUpPart | null)[] = []): string[] {
  const { origin, beginnings, ends } = start;
  const lines = [
    `replay of topic "${topic}" from ${origin.from}${origin.fromTime !== null ? ` (${iso(origin.fromTime)})` : ''}: ${beginnings.length} partitions`,
  ];
  let events = 0;
  for (let p = 0; p < beginnings.length; p++) {
    const from = origin.startOffsets?.[p] ?? beginnings[p]!;
    const lakeEnd = origin.lakeEnds?.[p];
    events += Math.max(0, ends[p]! - from);
    const source =
      lakeEnd === undefined
        ? `log ${from}..${ends[p]}`
        : `lake ${from}..${lakeEnd}, then log ${lakeEnd}..${ends[p]}${lakeEnd >= ends[p]! ? ' (the lake holds it all)' : ''}`;
    lines.push(`  partition ${p}: start offset ${from}  (${source}; the log holds ${beginnings[p]}..${ends[p]})`);
    const warm = warmUp[p];
    if (warm) {
      const parts = [
        ...(warm.lakeEnd > 0
          ? [`lake 0..${warm.lakeEnd} (records that fall only in windows closed at the start read without their values)`]
          : []),
        ...(warm.lakeEnd < warm.start ? [`log ${warm.lakeEnd}..${warm.start}`] : []),
      ];
      lines.push(`    warm-up first, publishing nothing before offset ${warm.start}: ${parts.join(', then ')}`);
    }
  }
  lines.push(`  ${events} offsets to read before it is caught up with the log's end as of now`);
  return lines;
}
