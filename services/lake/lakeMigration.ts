/**
 * Converting a lake of the former format (a `_lake_log/` manifest of our own, before the lake
 * was a Delta table) into a Delta table, in place, without rewriting a data file: the old
 * manifest is read (its checkpoint, then its commits), and one Delta commit, version 0 of kind
 * `convert` (deltaLog.ts COMMIT_KINDS; Spark names the same operation CONVERT), adds every live
 * file with its partition values and statistics, and records each partition's position as the
 * writer's transaction identifiers. Files the old log had removed and not yet deleted are left
 * to vacuum (orphans past the retention).
 *
 * The commit is the only step that changes anything, and it is atomic: interrupted before it,
 * nothing happened and the next run starts over; after it, the next run finds version 0 made from
 * this `_lake_log/` (the table's `lk.convertedFrom` property) and only finishes what follows (the
 * checkpoint, a marker file in the old folder). A Delta table that was not made from the old
 * manifest next to it is refused, and so is a lake whose former-format writer still runs.
 *
 * Old files keep their columns: no `event_time`, `kafka_key` or `record_timestamp`, but
 * `ts_ms`, `kafka_timestamp` and `ingest_time` (epoch ms), which the converted table's schema
 * lists as nullable legacy columns (docs/lake.md says what other engines see).
 */
import { z } from 'zod';
import { InfrastructureError } from '../errors.ts';
import { crashPoint } from '../faults/crashPoints.ts';
import type { Logger } from '../observability/logger.ts';
import { progress } from '../observability/progress.ts';
import { getText, listAll, type ObjectStore } from '../storage/objectStore.ts';
import { commitKey, type AddAction } from './delta/actions.ts';
import { DeltaLog, encodePath } from './delta/deltaLog.ts';
import type { LakeHandle } from './lakeLocation.ts';
import { LAKE_PROTOCOL, lakeMetadata, logTimeAppId, writerAppId } from './lakeTable.ts';

/** The former manifest's folder, its checkpoint and its writer's lock. */
export const LEGACY_LOG_DIR = '_lake_log';
const LEGACY_CHECKPOINT = `${LEGACY_LOG_DIR}/_checkpoint.json`;
const LEGACY_LOCK = `${LEGACY_LOG_DIR}/writer.lock`;
/** Written into the old folder once converted (informational: nothing reads the old log again). */
const MIGRATED_MARKER = `${LEGACY_LOG_DIR}/MIGRATED_TO_DELTA.json`;
/** The old writer touched its lock every 10 s: younger than this, it may still run. */
const LIVE_LOCK_MS = 60_000;

// The former format, as services/lake/commitProtocol.ts wrote it (read only).
const legacyFileSchema = z.object({
  path: z.string().regex(/^dt=\d{4}-\d{2}-\d{2}\/hr=\d{2}\/part-[^/]+\.parquet$/),
  partition: z.number().int().nonnegative(),
  fromOffset: z.number().int().nonnegative(),
  toOffset: z.number().int().nonnegative(),
  rows: z.number().int().positive(),
  bytes: z.number().int().nonnegative(),
  dt: z.string(),
  hr: z.string(),
  minTsMs: z.number(),
  maxTsMs: z.number(),
});
type LegacyFile = z.infer<typeof legacyFileSchema>;
const legacyPositionSchema = z.object({ nextOffset: z.number().int().nonnegative(), lastTimestamp: z.number() });
const legacyCommitSchema = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('append'),
    version: z.number().int().positive(),
    committedAt: z.number(),
    topic: z.string(),
    add: z.array(legacyFileSchema),
    positions: z.record(z.string().regex(/^\d+$/), legacyPositionSchema),
  }),
  z.object({
    op: z.literal('compact'),
    version: z.number().int().positive(),
    committedAt: z.number(),
    add: z.array(legacyFileSchema),
    remove: z.array(z.string()),
  }),
  z.object({ op: z.literal('vacuum'), version: z.number().int().positive(), committedAt: z.number(), purged: z.array(z.string()) }),
]);
const legacyCheckpointSchema = z.object({
  version: z.number().int().nonnegative(),
  topic: z.string().optional(),
  files: z.array(legacyFileSchema),
  positions: z.record(z.string(), legacyPositionSchema),
});

interface LegacyState {
  version: number;
  topic: string | undefined;
  files: Map<string, LegacyFile>;
  positions: Map<number, z.infer<typeof legacyPositionSchema>>;
}

/** Whether the store holds a lake of the former format. */
export async function legacyLakeExists(store: ObjectStore): Promise<boolean> {
  for await (const info of store.list(`${LEGACY_LOG_DIR}/`)) if (/\/(\d{20}\.json|_checkpoint\.json)$/.test(info.key)) return true;
  return false;
}

function parseJson<T>(schema: z.ZodType<T>, text: string, where: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new InfrastructureError(`${where} is not JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success)
    throw new InfrastructureError(`${where} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** The old manifest's state at its latest version (its checkpoint, then the commits after it). */
async function readLegacyState(store: ObjectStore, onCommit: (version: number) => void): Promise<LegacyState> {
  const state: LegacyState = { version: 0, topic: undefined, files: new Map(), positions: new Map() };
  const cpText = await getText(store, LEGACY_CHECKPOINT);
  if (cpText !== undefined) {
    const cp = parseJson(legacyCheckpointSchema, cpText, `${store.location}/${LEGACY_CHECKPOINT}`);
    state.version = cp.version;
    state.topic = cp.topic;
    for (const f of cp.files) state.files.set(f.path, f);
    for (const [p, pos] of Object.entries(cp.positions)) state.positions.set(Number(p), pos);
  }
  for (;;) {
    const key = `${LEGACY_LOG_DIR}/${String(state.version + 1).padStart(20, '0')}.json`;
    const text = await getText(store, key);
    if (text === undefined) break;
    const c = parseJson(legacyCommitSchema, text, `${store.location}/${key}`);
    if (c.version !== state.version + 1) throw new InfrastructureError(`${store.location}/${key} says version ${c.version}`);
    if (c.op === 'append') {
      state.topic = c.topic;
      for (const f of c.add) state.files.set(f.path, f);
      for (const [p, pos] of Object.entries(c.positions)) state.positions.set(Number(p), pos);
    } else if (c.op === 'compact') {
      for (const path of c.remove) state.files.delete(path);
      for (const f of c.add) state.files.set(f.path, f);
    }
    state.version = c.version;
    onCommit(c.version);
  }
  return state;
}

function addOf(f: LegacyFile, now: number): AddAction {
  return {
    path: encodePath(f.path),
    partitionValues: { dt: f.dt, hr: String(Number(f.hr)) },
    size: f.bytes,
    modificationTime: now,
    dataChange: true,
    // The old files have no event_time or record_timestamp: every row is null there.
    stats: JSON.stringify({
      numRecords: f.rows,
      minValues: { kafka_partition: f.partition, kafka_offset: f.fromOffset, ts_ms: f.minTsMs },
      maxValues: { kafka_partition: f.partition, kafka_offset: f.toOffset, ts_ms: f.maxTsMs },
      nullCount: { kafka_partition: 0, kafka_offset: 0, event_time: f.rows, record_timestamp: f.rows },
    }),
  };
}

export interface MigrationResult {
  /** True when an earlier run had converted it already (this one only finished its last steps). */
  already: boolean;
  legacyVersion: number;
  files: number;
  partitions: number;
}

/**
 * Converts the lake at `lake` (see the file comment). Repeatable: a converted lake is left as it
 * is. Prints one progress line on a terminal and logs the result.
 */
export async function migrateLake(lake: LakeHandle, options: { logger?: Logger; now?: number } = {}): Promise<MigrationResult> {
  const { store } = lake;
  const now = options.now ?? Date.now();
  const log = await DeltaLog.open({ store, scratch: lake.scratch, ...(options.logger ? { logger: options.logger } : {}) });
  const existing = log.current;
  if (existing) {
    const from = existing.configuration['lk.convertedFrom'];
    if (from === undefined || !from.startsWith(`${LEGACY_LOG_DIR}@`))
      throw new InfrastructureError(
        `${lake.uri} has a Delta log that was not converted from the ${LEGACY_LOG_DIR}/ beside it: refusing to mix them (move one away)`,
      );
    await finish(log, store, from);
    return { already: true, legacyVersion: Number(from.split('@')[1]), files: existing.files.size, partitions: 0 };
  }
  const lock = await store.head(LEGACY_LOCK);
  if (lock !== undefined && now - lock.lastModified < LIVE_LOCK_MS)
    throw new InfrastructureError(
      `a lake writer of the former format holds ${lake.uri}/${LEGACY_LOCK} (touched ${Math.round((now - lock.lastModified) / 1000)} s ago): stop that lk batch, then convert the lake`,
    );
  const bar = progress(`converting the lake ${lake.uri} to Delta`, undefined, 'old commits');
  let state: LegacyState;
  try {
    state = await readLegacyState(store, (v) => bar.update(v));
  } finally {
    bar.finish();
  }
  if (state.topic !== undefined && state.topic !== lake.topic)
    throw new InfrastructureError(`${lake.uri} is the lake of topic "${state.topic}", not "${lake.topic}"`);
  // Every file the old manifest lists must exist: a table never lists a missing file.
  const stored = new Set((await listAll(store, 'dt=')).map((i) => i.key));
  const missing = [...state.files.keys()].filter((p) => !stored.has(p));
  if (missing.length > 0)
    throw new InfrastructureError(`the old manifest of ${lake.uri} lists ${missing.length} file(s) that do not exist, e.g. ${missing[0]}`);
  const source = `${LEGACY_LOG_DIR}@${state.version}`;
  const metaData = lakeMetadata(lake.topic, { legacy: true, now });
  metaData.configuration = { ...metaData.configuration, 'lk.convertedFrom': source };
  await log.commit({
    kind: 'convert',
    protocol: LAKE_PROTOCOL,
    metaData,
    adds: [...state.files.values()].map((f) => addOf(f, now)),
    txns: [...state.positions].flatMap(([p, pos]) => [
      { appId: writerAppId(lake.topic, p), version: pos.nextOffset },
      { appId: logTimeAppId(lake.topic, p), version: pos.lastTimestamp },
    ]),
    source: { sourceFormat: LEGACY_LOG_DIR, sourceVersion: String(state.version) },
  });
  crashPoint('lake.migration.converted');
  await finish(log, store, source);
  const result = { already: false, legacyVersion: state.version, files: state.files.size, partitions: state.positions.size };
  options.logger?.info({ lake: lake.uri, ...result }, 'converted the lake to a Delta table (no data file rewritten)');
  if (process.stderr.isTTY && process.env.LK_NO_PROGRESS === undefined)
    process.stderr.write(
      `converted the lake ${lake.uri} to a Delta table: ${result.files} file(s), ${result.partitions} partition position(s), from ${source}\n`,
    );
  return result;
}

/** What follows the conversion commit: a checkpoint of version 0, and the marker in the old folder. */
async function finish(log: DeltaLog, store: ObjectStore, source: string): Promise<void> {
  if ((await store.head('_delta_log/_last_checkpoint')) === undefined) await log.checkpoint(await log.snapshotAt(0));
  if ((await store.head(MIGRATED_MARKER)) === undefined)
    await store.put(
      MIGRATED_MARKER,
      JSON.stringify({ convertedTo: commitKey(0), from: source, note: 'this folder is history: the lake is the Delta table beside it' }),
    );
}
