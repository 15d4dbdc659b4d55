/**
 * The lake of one topic as a Delta table (services/lake/delta/ is the protocol): its protocol and
 * metadata, what this platform keeps in the log beside the files, and what its readers take from
 * a snapshot.
 *
 * - Positions: for each source partition, a transaction identifier ("Transaction Identifiers")
 *   `lk-lake-writer:<topic>:<partition>` whose version is the partition's next offset: the table
 *   holds every valid record of the partition below it, exactly once. A second one,
 *   `...:<partition>:log-time`, holds the log-append time of the record before that offset (the
 *   processing-time stamp of the batch views). Both are committed with the files they cover, so
 *   a retried or raced append is recognized by its offsets (deltaLog.ts, COMMIT_KINDS.append).
 * - Files: each add says its partition values (`dt`, `hr`) and statistics ("Per-file
 *   Statistics": row count, and min, max and null count of the source partition, offset, event
 *   time and record time), from which readers prune by offset range or time. Files appended by
 *   another engine may lack statistics: they are then read for every range.
 *
 * The table is created on the first write (version 0: protocol and metadata) and, when a lake of
 * the former format is found at its place, converted first (lakeMigration.ts).
 */
import { randomUUID } from 'node:crypto';
import { InfrastructureError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { LakeHandle } from './lakeLocation.ts';
import { parseStats, type AddAction, type MetaDataAction, type ProtocolAction } from './delta/actions.ts';
import { DeltaConflictError, DeltaLog, decodePath, unsupportedProtocol, type DeltaSnapshot } from './delta/deltaLog.ts';
import { LAKE_COLUMNS, LAKE_PARTITION_COLUMNS, LEGACY_LAKE_COLUMNS, type LakeColumn } from './lakeLayout.ts';

/** Reader 1, writer 2 (append-only tables, column invariants): no table features needed. */
export const LAKE_PROTOCOL: ProtocolAction = { minReaderVersion: 1, minWriterVersion: 2 };

/** How long removed and unlisted files are kept before vacuum deletes them (a table property). */
export const LAKE_FILE_RETENTION = 'interval 1 days';

/** Columns with statistics: what readers prune by. */
export const LAKE_STATS_COLUMNS = ['kafka_partition', 'kafka_offset', 'event_time', 'record_timestamp'] as const;

/** The table's metadata for `topic` (with the legacy columns for a converted lake). */
export function lakeMetadata(topic: string, options: { legacy?: boolean; now?: number } = {}): MetaDataAction {
  const field = ([name, c]: [string, LakeColumn]) => ({ name, type: c.delta, nullable: true, metadata: {} });
  const fields = [
    ...Object.entries(LAKE_COLUMNS).map(field),
    ...(options.legacy ? Object.entries(LEGACY_LAKE_COLUMNS).map(field) : []),
    ...Object.entries(LAKE_PARTITION_COLUMNS).map(field),
  ];
  return {
    id: randomUUID(),
    name: topic,
    description: `lambda-kappa lake of the events topic "${topic}": one row per valid record, duplicates included (docs/lake.md)`,
    format: { provider: 'parquet', options: {} },
    schemaString: JSON.stringify({ type: 'struct', fields }),
    partitionColumns: Object.keys(LAKE_PARTITION_COLUMNS),
    createdTime: options.now ?? Date.now(),
    configuration: {
      // The lake is the immutable history: data is only ever added (compaction rearranges it).
      'delta.appendOnly': 'true',
      'delta.checkpointInterval': '10',
      'delta.deletedFileRetentionDuration': LAKE_FILE_RETENTION,
      'delta.dataSkippingStatsColumns': LAKE_STATS_COLUMNS.join(','),
      'lk.topic': topic,
    },
  };
}

/**
 * Why the table cannot take the lake writer's rows, or undefined: every column it writes must be
 * there with its type, the partition columns must be `dt`, `hr`, and any other column must be
 * nullable (the writer leaves it null). The protocol check is deltaLog.ts's.
 */
export function lakeIncompatibility(snapshot: DeltaSnapshot): string | undefined {
  const refused = unsupportedProtocol(snapshot, 'write');
  if (refused) return refused;
  const fields = new Map((snapshot.schema?.fields ?? []).map((f) => [f.name, f]));
  for (const [name, c] of Object.entries({ ...LAKE_COLUMNS, ...LAKE_PARTITION_COLUMNS })) {
    const f = fields.get(name);
    if (!f) return `the table has no column ${name}`;
    if (f.type !== c.delta) return `column ${name} is ${JSON.stringify(f.type)}, not ${c.delta}`;
  }
  const partitions = snapshot.metadata?.partitionColumns ?? [];
  if (partitions.join(',') !== Object.keys(LAKE_PARTITION_COLUMNS).join(','))
    return `the table is partitioned by ${JSON.stringify(partitions)}, not ["dt","hr"]`;
  for (const f of fields.values())
    if (!(f.name in LAKE_COLUMNS) && !(f.name in LAKE_PARTITION_COLUMNS) && !f.nullable)
      return `column ${f.name} is not nullable, and the lake writer does not fill it`;
  return undefined;
}

// ------------------------------------------------------------------------------ positions

export function writerAppId(topic: string, partition: number): string {
  return `lk-lake-writer:${topic}:${partition}`;
}

export function logTimeAppId(topic: string, partition: number): string {
  return `lk-lake-writer:${topic}:${partition}:log-time`;
}

/**
 * Where the lake of a partition starts once retention removed files (`lk batch --lake-retention`,
 * batch/lake/lakeRetention.ts): the table holds every valid record of the partition from this
 * offset on, and maybe some before it, but not all. Absent: the partition's history is whole.
 */
export function lakeStartAppId(topic: string, partition: number): string {
  return `lk-lake-start:${topic}:${partition}`;
}

/** The topic's retention starts per partition (none: nothing was ever removed). */
export function lakeStarts(snapshot: DeltaSnapshot | undefined, topic: string): Map<number, number> {
  const out = new Map<number, number>();
  if (!snapshot) return out;
  const prefix = `lk-lake-start:${topic}:`;
  for (const [appId, txn] of snapshot.txns)
    if (appId.startsWith(prefix) && /^\d+$/.test(appId.slice(prefix.length))) out.set(Number(appId.slice(prefix.length)), txn.version);
  return out;
}

/** The event time below which retention removed the lake's files, as a txn version (atomic with the removal). */
export function lakeHorizonAppId(topic: string): string {
  return `lk-lake-start:${topic}:horizon`;
}

/** The latest log-append time of a record retention removed, as a txn version (a replay --from-time must start after it). */
export function lakeRemovedLogTimeAppId(topic: string): string {
  return `lk-lake-start:${topic}:log-time`;
}

export interface PartitionPosition {
  /** Next offset to read: the lake holds every valid record of the partition below it. */
  nextOffset: number;
  /** Log-append time of the record before nextOffset (0 when none was read yet). */
  lastTimestamp: number;
}

/** Per source partition, the position the lake holds (from the writer's transaction identifiers). */
export function lakePositions(snapshot: DeltaSnapshot | undefined, topic: string): Map<number, PartitionPosition> {
  const out = new Map<number, PartitionPosition>();
  if (!snapshot) return out;
  const prefix = `lk-lake-writer:${topic}:`;
  for (const [appId, txn] of snapshot.txns) {
    if (!appId.startsWith(prefix)) continue;
    const rest = appId.slice(prefix.length);
    if (!/^\d+$/.test(rest)) continue;
    const p = Number(rest);
    out.set(p, { nextOffset: txn.version, lastTimestamp: snapshot.txnVersion(logTimeAppId(topic, p)) ?? 0 });
  }
  return new Map([...out].sort((a, b) => a[0] - b[0]));
}

// ------------------------------------------------------------------------------ files

/** A data file of a snapshot, with what its partition values and statistics say. */
export interface LakeFile {
  /** The add's path, as the log spells it. */
  path: string;
  /** The object key under the table's root (the path decoded). */
  key: string;
  size: number;
  dt: string | null;
  hr: number | null;
  /** Rows, when the statistics say. */
  rows: number | undefined;
  /** The source partition when every row has the same one (and the statistics say so). */
  partition: number | undefined;
  /** Smallest and largest source offset, inclusive, when the statistics say. */
  fromOffset: number | undefined;
  toOffset: number | undefined;
  minTsMs: number | undefined;
  maxTsMs: number | undefined;
  modificationTime: number;
}

function statNumber(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function statTime(v: unknown): number | undefined {
  if (typeof v !== 'string') return undefined;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? undefined : ms;
}

export function lakeFileOf(add: AddAction): LakeFile {
  const stats = parseStats(add);
  const min = stats?.minValues ?? {};
  const max = stats?.maxValues ?? {};
  const minP = statNumber(min.kafka_partition);
  const maxP = statNumber(max.kafka_partition);
  const dt = add.partitionValues.dt;
  const hr = add.partitionValues.hr;
  return {
    path: add.path,
    key: decodePath(add.path),
    size: add.size,
    dt: dt === undefined || dt === null || dt === '' ? null : dt,
    hr: hr === undefined || hr === null || hr === '' ? null : Number(hr),
    rows: statNumber(stats?.numRecords),
    partition: minP !== undefined && minP === maxP ? minP : undefined,
    fromOffset: statNumber(min.kafka_offset),
    toOffset: statNumber(max.kafka_offset),
    minTsMs: statTime(min.event_time) ?? statNumber(min.ts_ms),
    maxTsMs: statTime(max.event_time) ?? statNumber(max.ts_ms),
    modificationTime: add.modificationTime,
  };
}

/** The snapshot's files, sorted by path (a stable input order for readers). */
export function lakeFiles(snapshot: DeltaSnapshot | undefined): LakeFile[] {
  if (!snapshot) return [];
  return [...snapshot.files.values()].map(lakeFileOf).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

// ------------------------------------------------------------------------------ opening

/** Why the table is not `topic`'s lake, or undefined. */
function otherTopic(snapshot: DeltaSnapshot, topic: string): string | undefined {
  const own = snapshot.configuration['lk.topic'];
  return own !== undefined && own !== topic ? `it is the lake of topic "${own}", not "${topic}"` : undefined;
}

/**
 * The topic's lake table for reading: its Delta log, or a clear refusal when the table does not
 * exist (undefined when `missingOk`) or uses what this platform cannot read. A lake of the former
 * format (`_lake_log/`) is converted first when `migrate` is set (lakeMigration.ts), else refused
 * with the command that converts it.
 */
export async function openLakeForReading(
  lake: LakeHandle,
  options: { missingOk?: boolean; migrate?: boolean; logger?: Logger } = {},
): Promise<DeltaLog | undefined> {
  const log = await openAndConvert(lake, options.migrate ?? false, options.logger);
  const snap = log.current;
  if (!snap) {
    if (options.missingOk) return undefined;
    throw new InfrastructureError(`no lake at ${lake.uri}: lk batch writes it (lk batch run)`);
  }
  const refused = unsupportedProtocol(snap, 'read') ?? otherTopic(snap, lake.topic);
  if (refused) throw new InfrastructureError(`cannot read the lake at ${lake.uri}: ${refused}`);
  return log;
}

async function openAndConvert(lake: LakeHandle, migrate: boolean, logger: Logger | undefined): Promise<DeltaLog> {
  const log = await DeltaLog.open({ store: lake.store, scratch: lake.scratch, ...(logger ? { logger } : {}) });
  if (log.current) return log;
  const { legacyLakeExists, migrateLake } = await import('./lakeMigration.ts');
  if (!(await legacyLakeExists(lake.store))) return log;
  if (!migrate)
    throw new InfrastructureError(
      `the lake at ${lake.uri} is in the format before Delta Lake (_lake_log/): convert it with \`lk batch migrate-lake\` (lk batch does it at start)`,
    );
  await migrateLake(lake, logger ? { logger } : {});
  await log.refresh();
  return log;
}

/**
 * Schema evolution: a table written by an earlier version of the platform lacks the columns added
 * since (all nullable: its files read them as null); one ADD COLUMNS commit adds them, so that
 * the writer's files, which have them, match the table's schema ("Consistency Between Table
 * Metadata and Data Files": every column of a data file must be in the schema). Another writer
 * doing the same first is fine: the next attempt finds nothing missing.
 */
async function addMissingColumns(log: DeltaLog, logger: Logger | undefined): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const snap = (await log.refresh())!;
    const schema = snap.schema;
    if (!schema || !snap.metadata || unsupportedProtocol(snap, 'write')) return;
    const present = new Set(schema.fields.map((f) => f.name));
    const missing = Object.entries(LAKE_COLUMNS).filter(([name]) => !present.has(name));
    if (missing.length === 0) return;
    const fields = [...schema.fields, ...missing.map(([name, c]) => ({ name, type: c.delta, nullable: true, metadata: {} }))];
    try {
      await log.commit({
        kind: 'metadata',
        metaData: { ...snap.metadata, schemaString: JSON.stringify({ ...schema, fields }) },
        basedOn: snap.metadata.schemaString,
      });
      logger?.info({ lake: log.location, columns: missing.map(([n]) => n) }, 'added the new lake columns to the table (nullable)');
      return;
    } catch (err) {
      if (!(err instanceof DeltaConflictError)) throw err;
    }
  }
}

/**
 * The topic's lake table for writing: created (version 0) when absent, converted first when a
 * lake of the former format is there, and refused when it cannot take the writer's rows.
 */
export async function openLakeForWriting(lake: LakeHandle, logger?: Logger): Promise<DeltaLog> {
  const log = await openAndConvert(lake, true, logger);
  if (!log.current) {
    // A concurrent creator may win version 0: then this commit is empty and its table is checked below.
    await log.commit({ kind: 'create', protocol: LAKE_PROTOCOL, metaData: lakeMetadata(lake.topic) });
    await log.refresh();
  }
  await addMissingColumns(log, logger);
  const snap = log.current!;
  const reason = unsupportedProtocol(snap, 'read') ?? otherTopic(snap, lake.topic) ?? lakeIncompatibility(snap);
  if (reason) throw new InfrastructureError(`the lake at ${lake.uri} cannot take the lake writer's rows: ${reason}`);
  return log;
}
