/**
 * Delta Lake actions, declared once: every action the lake reads or writes, as a zod schema beside
 * its type, following the Delta Transaction Log Protocol (PROTOCOL.md in delta-io/delta, section
 * "Actions"). A commit (`_delta_log/<version>.json`) is newline-delimited JSON, one action per
 * line, each line an object with exactly one key naming the action.
 *
 * Reading follows the protocol's forward-compatibility rule ("Protocol Evolution": clients must
 * ignore unrecognized actions and fields): unknown actions (`cdc`, `domainMetadata`, ...) are kept
 * as `unknown` and play no part in the snapshot, unknown fields pass through. What this platform
 * cannot honour (deletion vectors, column mapping, any reader feature) is refused by the protocol
 * check in deltaLog.ts, never silently misread.
 */
import { z } from 'zod';
import { InfrastructureError } from '../../errors.ts';

const long = z.number().int();
const stringMap = z.record(z.string(), z.string());

/** "Protocol Evolution": the versions (and, from reader 3 / writer 7, the features) a client needs. */
export const protocolSchema = z.looseObject({
  minReaderVersion: long.min(1),
  minWriterVersion: long.min(1),
  readerFeatures: z.array(z.string()).nullish(),
  writerFeatures: z.array(z.string()).nullish(),
});
export type ProtocolAction = z.infer<typeof protocolSchema>;

/** "Change Metadata": the table's id, schema, partition columns and configuration. */
export const metaDataSchema = z.looseObject({
  id: z.string().min(1),
  name: z.string().nullish(),
  description: z.string().nullish(),
  format: z.looseObject({ provider: z.string(), options: stringMap.nullish() }),
  schemaString: z.string(),
  partitionColumns: z.array(z.string()),
  createdTime: long.nullish(),
  configuration: stringMap.nullish().transform((c) => c ?? {}),
});
export type MetaDataAction = z.infer<typeof metaDataSchema>;

/**
 * "Partition Value Serialization": partition values are strings, and null (or, by the protocol,
 * an empty string) is the null partition.
 */
const partitionValues = z.record(z.string(), z.string().nullable());

/** "Add File and Remove File": a logical file entering the table. */
export const addSchema = z.looseObject({
  path: z.string().min(1),
  partitionValues,
  size: long.nonnegative(),
  modificationTime: long,
  dataChange: z.boolean(),
  /** "Per-file Statistics", as a JSON string (see `statsSchema`). */
  stats: z.string().nullish(),
  tags: stringMap.nullish(),
  /** Deletion vectors need a reader feature this platform does not implement (refused earlier). */
  deletionVector: z.unknown().nullish(),
});
export type AddAction = z.infer<typeof addSchema>;

/** "Add File and Remove File": a logical file leaving the table; a tombstone until it expires. */
export const removeSchema = z.looseObject({
  path: z.string().min(1),
  deletionTimestamp: long.nullish(),
  dataChange: z.boolean(),
  extendedFileMetadata: z.boolean().nullish(),
  partitionValues: partitionValues.nullish(),
  size: long.nonnegative().nullish(),
  stats: z.string().nullish(),
  tags: stringMap.nullish(),
  deletionVector: z.unknown().nullish(),
});
export type RemoveAction = z.infer<typeof removeSchema>;

/** "Transaction Identifiers": how far an application has written, recorded atomically with its data. */
export const txnSchema = z.looseObject({
  appId: z.string().min(1),
  version: long,
  lastUpdated: long.nullish(),
});
export type TxnAction = z.infer<typeof txnSchema>;

/** "Commit Provenance Information": free-form JSON; only `operation` is read (for messages). */
export const commitInfoSchema = z.looseObject({
  timestamp: long.nullish(),
  operation: z.string().nullish(),
  operationParameters: z.record(z.string(), z.unknown()).nullish(),
  isBlindAppend: z.boolean().nullish(),
  engineInfo: z.string().nullish(),
});
export type CommitInfoAction = z.infer<typeof commitInfoSchema>;

export type Action =
  | { protocol: ProtocolAction }
  | { metaData: MetaDataAction }
  | { add: AddAction }
  | { remove: RemoveAction }
  | { txn: TxnAction }
  | { commitInfo: CommitInfoAction }
  /** An action this platform does not know: ignored, per "Protocol Evolution". */
  | { unknown: string };

const KNOWN = {
  protocol: protocolSchema,
  metaData: metaDataSchema,
  add: addSchema,
  remove: removeSchema,
  txn: txnSchema,
  commitInfo: commitInfoSchema,
} as const;

export type ActionKind = keyof typeof KNOWN;

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.join('.') || '(action)'}: ${i.message}`).join('; ');
}

/**
 * One action from its JSON object (a commit line or a checkpoint row). Throws with `where` (the
 * file) and the reason when the action is malformed: a log that cannot be read is never guessed.
 */
export function parseAction(value: unknown, where: string): Action {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InfrastructureError(`${where}: an action must be a JSON object, got ${JSON.stringify(value)?.slice(0, 80)}`);
  const keys = Object.keys(value);
  if (keys.length !== 1) throw new InfrastructureError(`${where}: an action has exactly one key, got ${JSON.stringify(keys)}`);
  const kind = keys[0]!;
  if (!(kind in KNOWN)) return { unknown: kind };
  const parsed = KNOWN[kind as ActionKind].safeParse((value as Record<string, unknown>)[kind]);
  if (!parsed.success) throw new InfrastructureError(`${where}: invalid ${kind} action: ${describeIssues(parsed.error)}`);
  return { [kind]: parsed.data } as Action;
}

/** "Delta Log Entries": newline-delimited JSON, one action a line. */
export function parseCommit(text: string, where: string): Action[] {
  const actions: Action[] = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      throw new InfrastructureError(`${where}, line ${i + 1}: not JSON (${(err as Error).message})`);
    }
    actions.push(parseAction(value, `${where}, line ${i + 1}`));
  }
  return actions;
}

/** A commit's bytes: one JSON line per action (commitInfo first, as Spark and delta-rs write it). */
export function serializeCommit(actions: readonly Action[]): string {
  const ordered = [...actions].sort((a, b) => Number('commitInfo' in b) - Number('commitInfo' in a));
  return ordered
    .filter((a) => !('unknown' in a))
    .map((a) => JSON.stringify(a))
    .join('\n')
    .concat('\n');
}

// ------------------------------------------------------------------------------ statistics

/**
 * "Per-file Statistics": `numRecords`, and per column `minValues`, `maxValues`, `nullCount`
 * mirroring the schema. Timestamps are ISO-8601 strings in UTC (as Spark and delta-rs write them).
 */
export const statsSchema = z.looseObject({
  numRecords: long.nonnegative().nullish(),
  minValues: z.record(z.string(), z.unknown()).nullish(),
  maxValues: z.record(z.string(), z.unknown()).nullish(),
  nullCount: z.record(z.string(), z.unknown()).nullish(),
  tightBounds: z.boolean().nullish(),
});
export type FileStats = z.infer<typeof statsSchema>;

/** The stats of an add, or undefined when it has none or they cannot be read (then nothing is pruned). */
export function parseStats(add: Pick<AddAction, 'stats'>): FileStats | undefined {
  if (add.stats === undefined || add.stats === null || add.stats === '') return undefined;
  try {
    const parsed = statsSchema.safeParse(JSON.parse(add.stats));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------ table schema

/** "Schema Serialization Format": a struct field; nested types are kept as JSON. */
export const structFieldSchema = z.looseObject({
  name: z.string().min(1),
  type: z.union([z.string(), z.looseObject({ type: z.string() })]),
  nullable: z.boolean(),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type StructField = z.infer<typeof structFieldSchema>;

export const tableSchemaSchema = z.looseObject({
  type: z.literal('struct'),
  fields: z.array(structFieldSchema),
});
export type TableSchema = z.infer<typeof tableSchemaSchema>;

export function parseTableSchema(schemaString: string, where: string): TableSchema {
  let value: unknown;
  try {
    value = JSON.parse(schemaString);
  } catch (err) {
    throw new InfrastructureError(`${where}: metaData.schemaString is not JSON (${(err as Error).message})`);
  }
  const parsed = tableSchemaSchema.safeParse(value);
  if (!parsed.success) throw new InfrastructureError(`${where}: metaData.schemaString: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

// ------------------------------------------------------------------------------ names

/** `_delta_log/`, the log's folder at the table's root ("Delta Log Entries"). */
export const DELTA_LOG_DIR = '_delta_log';
/** "Last Checkpoint File". */
export const LAST_CHECKPOINT = `${DELTA_LOG_DIR}/_last_checkpoint`;

/** A version zero-padded to 20 digits, as every log file name spells it. */
export function versionName(version: number): string {
  return String(version).padStart(20, '0');
}

export function commitKey(version: number): string {
  return `${DELTA_LOG_DIR}/${versionName(version)}.json`;
}

/** "Classic checkpoint": `<version>.checkpoint.parquet`. */
export function checkpointKey(version: number): string {
  return `${DELTA_LOG_DIR}/${versionName(version)}.checkpoint.parquet`;
}

export type LogFile =
  { kind: 'commit'; version: number } | { kind: 'checkpoint'; version: number; part: number; parts: number } | { kind: 'other' };

/**
 * What a `_delta_log/` name is: a commit, a classic or multi-part V1 checkpoint ("Checkpoint
 * Naming Scheme"), or something else (`_last_checkpoint`, `.crc` files, UUID-named V2 checkpoints,
 * which need the v2Checkpoint reader feature and are refused with it).
 */
export function parseLogFileName(name: string): LogFile {
  let m = /^(\d{20})\.json$/.exec(name);
  if (m) return { kind: 'commit', version: Number(m[1]) };
  m = /^(\d{20})\.checkpoint\.parquet$/.exec(name);
  if (m) return { kind: 'checkpoint', version: Number(m[1]), part: 1, parts: 1 };
  m = /^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/.exec(name);
  if (m) return { kind: 'checkpoint', version: Number(m[1]), part: Number(m[2]), parts: Number(m[3]) };
  return { kind: 'other' };
}

/** "Last Checkpoint File Schema" (only `version` and `parts` are needed to find the checkpoint). */
export const lastCheckpointSchema = z.looseObject({
  version: long.nonnegative(),
  size: long.nonnegative().nullish(),
  parts: long.positive().nullish(),
  sizeInBytes: long.nonnegative().nullish(),
  numOfAddFiles: long.nonnegative().nullish(),
});
export type LastCheckpoint = z.infer<typeof lastCheckpointSchema>;
