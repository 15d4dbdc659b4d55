/**
 * The Delta log of one table: reading snapshots, and committing the legal kinds of commit with the
 * protocol's optimistic concurrency. Every rule cites the section of the Delta Transaction Log
 * Protocol (PROTOCOL.md in delta-io/delta) it follows; the conflict rules carry the names of
 * Delta's own conflict exceptions (delta-rs `kernel/transaction/conflict_checker.rs`, Spark's
 * `ConflictChecker`).
 *
 * Reading ("Checkpoints", "Last Checkpoint File", "Action Reconciliation"): `_last_checkpoint`
 * names a recent checkpoint; the log is listed from there (a newer checkpoint found by the
 * listing wins); the newest complete checkpoint is read, then the JSON commits after it, in
 * order, without gaps. A snapshot is then: the latest protocol and metaData, the latest txn
 * version per appId, the newest add or remove per path (adds are the table's files, removes its
 * tombstones).
 *
 * Committing ("Creation of New Log Entries": writers never overwrite a log entry): a commit is a
 * create-only put of `_delta_log/<version + 1>.json` (`ifAbsent`: `If-None-Match: *` on S3,
 * link(2) on a local disk). When another writer created that version first, the committer reads
 * what won and decides by the rules of its commit kind (COMMIT_KINDS): retry at the next version,
 * commit less (an append whose offsets another commit already covers), or abort.
 *
 * Checkpoints are written every `delta.checkpointInterval` commits (V1 spec, classic name), by
 * whoever made the commit, after it ("Checkpoints for a given version must only be created after
 * the associated delta file has been successfully written").
 */
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { IllegalStateError, InfrastructureError, assert, errorMessage } from '../../errors.ts';
import { crashPoint } from '../../faults/crashPoints.ts';
import type { Logger } from '../../observability/logger.ts';
import { getText, listAll, type ObjectStore } from '../../storage/objectStore.ts';
import {
  DELTA_LOG_DIR,
  LAST_CHECKPOINT,
  checkpointKey,
  commitKey,
  lastCheckpointSchema,
  parseCommit,
  parseLogFileName,
  parseTableSchema,
  serializeCommit,
  versionName,
  type Action,
  type AddAction,
  type CommitInfoAction,
  type MetaDataAction,
  type ProtocolAction,
  type RemoveAction,
  type TableSchema,
  type TxnAction,
} from './actions.ts';

/** Spark's default `delta.checkpointInterval` (delta-rs defaults to 100). */
export const DEFAULT_CHECKPOINT_INTERVAL = 10;
/** Delta's default `delta.deletedFileRetentionDuration`: one week. */
export const DEFAULT_DELETED_FILE_RETENTION_MS = 7 * 24 * 3_600_000;
/** Who wrote a commit, in `commitInfo.engineInfo` (as Spark and delta-rs say who they are). */
export const ENGINE_INFO = 'lambda-kappa';

// ------------------------------------------------------------------------------ snapshots

/** One version of the table, reconciled ("Action Reconciliation"). */
export class DeltaSnapshot {
  protocol: ProtocolAction | undefined;
  metadata: MetaDataAction | undefined;
  schema: TableSchema | undefined;
  /** The table's logical files: the newest add of each path. */
  readonly files = new Map<string, AddAction>();
  /** Files removed and not yet expired: the newest remove of each path ("tombstones", for VACUUM). */
  readonly tombstones = new Map<string, RemoveAction>();
  /** "For txn actions, the latest version seen for a given appId wins". */
  readonly txns = new Map<string, TxnAction>();
  /** "Only the commitInfo from the commit at the snapshot version is included in the snapshot." */
  commitInfo: CommitInfoAction | undefined;

  constructor(public version: number = -1) {}

  /** Applies the actions of commit `version` (the next one) in reconciliation order. */
  apply(version: number, actions: readonly Action[], where: string): void {
    assert(version === this.version + 1, `${where}: version ${version} follows ${this.version}`);
    this.commitInfo = undefined;
    for (const a of actions) {
      if ('protocol' in a) this.protocol = a.protocol;
      else if ('metaData' in a) {
        this.metadata = a.metaData;
        this.schema = parseTableSchema(a.metaData.schemaString, where);
      } else if ('add' in a) {
        // "The intersection of the primary keys in the add collection and remove collection must be empty."
        this.files.set(a.add.path, a.add);
        this.tombstones.delete(a.add.path);
      } else if ('remove' in a) {
        this.files.delete(a.remove.path);
        this.tombstones.set(a.remove.path, a.remove);
      } else if ('txn' in a) this.txns.set(a.txn.appId, a.txn);
      else if ('commitInfo' in a) this.commitInfo = a.commitInfo;
    }
    this.version = version;
    if (this.protocol === undefined || this.metadata === undefined)
      // "The first version of a table must contain a metaData action" (and a protocol).
      throw new InfrastructureError(`${where}: the table has no ${this.protocol === undefined ? 'protocol' : 'metaData'} action`);
  }

  clone(): DeltaSnapshot {
    const s = new DeltaSnapshot(this.version);
    s.protocol = this.protocol;
    s.metadata = this.metadata;
    s.schema = this.schema;
    s.commitInfo = this.commitInfo;
    for (const [k, v] of this.files) s.files.set(k, v);
    for (const [k, v] of this.tombstones) s.tombstones.set(k, v);
    for (const [k, v] of this.txns) s.txns.set(k, v);
    return s;
  }

  /** The table's configuration (`metaData.configuration`). */
  get configuration(): Record<string, string> {
    return this.metadata?.configuration ?? {};
  }

  /** The txn version of `appId` ("Transaction Identifiers"), undefined when it never committed. */
  txnVersion(appId: string): number | undefined {
    return this.txns.get(appId)?.version;
  }

  /**
   * The actions a checkpoint of this version holds ("Checkpoints": protocol, metadata, live files,
   * unexpired tombstones, transaction identifiers; never commitInfo).
   */
  checkpointActions(now: number): Action[] {
    assert(this.protocol !== undefined && this.metadata !== undefined, 'a checkpoint needs a protocol and metadata');
    const retention = deletedFileRetentionMs(this.configuration);
    const out: Action[] = [{ protocol: this.protocol }, { metaData: this.metadata }];
    for (const txn of this.txns.values()) out.push({ txn });
    for (const add of this.files.values()) out.push({ add });
    // "A tombstone expires when current time exceeds the expiration threshold added to the remove
    // action timestamp."
    for (const remove of this.tombstones.values()) if ((remove.deletionTimestamp ?? 0) + retention > now) out.push({ remove });
    return out;
  }
}

/** `interval <n> <unit>` as Delta's table properties spell durations (e.g. `interval 7 days`). */
export function parseDeltaInterval(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^\s*interval\s+(\d+)\s+(millisecond|second|minute|hour|day|week)s?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = { millisecond: 1, second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000, week: 604_800_000 }[
    m[2]!.toLowerCase() as 'second'
  ];
  return Number(m[1]) * unit;
}

/** `delta.deletedFileRetentionDuration`: how long tombstones (and their files) are kept. */
export function deletedFileRetentionMs(configuration: Record<string, string>): number {
  return parseDeltaInterval(configuration['delta.deletedFileRetentionDuration']) ?? DEFAULT_DELETED_FILE_RETENTION_MS;
}

export function checkpointInterval(configuration: Record<string, string>): number {
  const n = Number(configuration['delta.checkpointInterval']);
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_CHECKPOINT_INTERVAL;
}

// ------------------------------------------------------------------------------ protocol support

/** Writer features whose rules this platform follows ("Table Features", "Valid Feature Names"). */
const SUPPORTED_WRITER_FEATURES = new Set(['appendOnly', 'invariants']);

/**
 * "Reader Version Requirements" / "Writer Version Requirements": what a client must implement.
 * This platform reads reader version 1 (and 2 or 3 when nothing they add is in use) and writes
 * writer version 2 (append-only tables and column invariants: it never changes data, and refuses a
 * table that declares invariants, which it does not evaluate), or 7 with only those features.
 * Returns why a table cannot be read or written, or undefined.
 */
export function unsupportedProtocol(snapshot: DeltaSnapshot, mode: 'read' | 'write'): string | undefined {
  const p = snapshot.protocol;
  if (!p) return 'the table has no protocol action';
  const mapping = snapshot.configuration['delta.columnMapping.mode'];
  if (p.minReaderVersion === 2 && mapping !== undefined && mapping !== 'none')
    return `the table uses column mapping (mode ${mapping}), which this platform does not read`;
  if (p.minReaderVersion === 3 && (p.readerFeatures?.length ?? 0) > 0)
    return `the table needs reader features ${JSON.stringify(p.readerFeatures)}, which this platform does not implement`;
  if (p.minReaderVersion > 3) return `the table needs Delta reader version ${p.minReaderVersion} (this platform reads up to 1)`;
  if (mode === 'read') return undefined;
  if (p.minWriterVersion === 7) {
    const missing = (p.writerFeatures ?? []).filter((f) => !SUPPORTED_WRITER_FEATURES.has(f));
    if (missing.length > 0) return `the table needs writer features ${JSON.stringify(missing)}, which this platform does not implement`;
  } else if (p.minWriterVersion > 2) {
    return `the table needs Delta writer version ${p.minWriterVersion} (this platform writes version 2: no CHECK constraints, change data feed, generated or identity columns)`;
  }
  const withInvariants = snapshot.schema?.fields.filter((f) => f.metadata['delta.invariants'] !== undefined) ?? [];
  if (withInvariants.length > 0)
    return `columns ${withInvariants.map((f) => f.name).join(', ')} declare invariants, which this platform does not evaluate`;
  return undefined;
}

// ------------------------------------------------------------------------------ commit kinds

/**
 * One source's progress in an append, guarded by a transaction identifier ("Transaction
 * Identifiers"): the files it adds hold exactly the source's records from `from` (the appId's
 * version the claim was built on; undefined when it had none) up to `to`, and committing moves
 * the appId to `to`. Companion txns (other appIds, such as the log time of the last record) are
 * committed with it.
 */
export interface AppendClaim {
  appId: string;
  from: number | undefined;
  to: number;
  adds: AddAction[];
  companions: { appId: string; version: number }[];
}

export type CommitIntent =
  /** Version 0 of a new table: protocol and metadata. */
  | { kind: 'create'; protocol: ProtocolAction; metaData: MetaDataAction }
  /** Version 0 of a table made from existing data files (a migration), with their positions. */
  | {
      kind: 'convert';
      protocol: ProtocolAction;
      metaData: MetaDataAction;
      adds: AddAction[];
      txns: { appId: string; version: number }[];
      source: Record<string, string>;
    }
  /** New data, exactly once per claim; `compatible` says why a (changed) table cannot take it. */
  | { kind: 'append'; claims: AppendClaim[]; compatible: (snapshot: DeltaSnapshot) => string | undefined; operation?: string }
  /** The same rows in other files: removes and adds with dataChange false. */
  | { kind: 'compact'; remove: string[]; add: AddAction[]; compatible: (snapshot: DeltaSnapshot) => string | undefined }
  /**
   * New nullable columns added to the schema (schema evolution): a metaData action, built on the
   * metadata `basedOn` (its schemaString) that the caller read.
   */
  | { kind: 'metadata'; metaData: MetaDataAction; basedOn: string }
  /** Files of expired tombstones and orphans deleted: a commitInfo only, for the table's history. */
  | { kind: 'vacuum'; deletedFiles: number; deletedBytes: number; retentionMs: number }
  /** Table properties set (`metaData.configuration`), on the latest metadata of each attempt. */
  | { kind: 'properties'; set: Record<string, string> }
  /**
   * Data removed for good (retention): files whose rows are all past the horizon, with the txns
   * that record where the table now starts; `horizon` names the event time it removed below.
   */
  | {
      kind: 'expire';
      remove: string[];
      txns: { appId: string; version: number }[];
      horizon: number;
      compatible: (snapshot: DeltaSnapshot) => string | undefined;
    };

export type CommitKind = CommitIntent['kind'];

/** A commit lost to a concurrent one and must not be retried as it is. */
export class DeltaConflictError extends Error {
  override name = 'DeltaConflictError';
  constructor(
    /** Delta's name for the conflict (ConcurrentDeleteRead, MetadataChanged, ProtocolChanged, ...). */
    readonly conflict: string,
    message: string,
  ) {
    super(message);
  }
}

export interface CommitOutcome {
  /** The version created, or undefined when nothing was left to commit (every claim covered). */
  version: number | undefined;
  /** The snapshot after the commit (or the latest one when nothing was committed). */
  snapshot: DeltaSnapshot;
  /** Claims committed. */
  kept: AppendClaim[];
  /** Claims whose range another commit already covers: a retried append, a no-op. */
  covered: AppendClaim[];
  /** Claims another commit overlapped in part: the source must continue from `at`. */
  overlapped: { claim: AppendClaim; at: number }[];
  /** Versions another writer won before this commit landed. */
  retries: number;
}

/** What one attempt of a commit puts in its version, decided against the latest snapshot. */
interface Plan {
  actions: Action[];
  kept: AppendClaim[];
  covered: AppendClaim[];
  overlapped: { claim: AppendClaim; at: number }[];
  empty: boolean;
}

/**
 * The legal kinds of commit, in one place: for each, the `operation` its commitInfo names (the
 * names Spark and delta-rs use), the actions it may hold, and its conflict rule, applied to the
 * latest snapshot on every attempt (so a rule sees every commit that won since the intent was
 * built).
 */
export const COMMIT_KINDS: {
  [K in CommitKind]: { operation: string; actions: string; rule: string };
} = {
  create: {
    operation: 'CREATE TABLE',
    actions: 'protocol, metaData',
    rule: 'only as version 0; if another writer created the table first, nothing is committed and the caller checks that the table it found is compatible',
  },
  convert: {
    operation: 'CONVERT',
    actions: 'protocol, metaData, add (dataChange true), txn',
    rule: 'only as version 0; a table that exists already is a conflict (TableAlreadyExists)',
  },
  append: {
    operation: 'STREAMING UPDATE',
    actions: 'add (dataChange true), txn per source',
    rule:
      'blind append: files others added or removed do not conflict (delta-rs: no read predicate). Per claim, the txn of its appId decides ' +
      '(ConcurrentTransaction): at `from` the claim is committed; at or past `to` it is already covered (a retried append is a no-op, ' +
      '"Transaction Identifiers": "If this value is greater than or equal to the batch being written, then this data has already been ' +
      'added"); in between, its files would repeat rows, so it is dropped and the source continues from there; below `from` the ' +
      'table went back under the writer and it aborts. A protocol or metadata change aborts unless the new table still takes the rows ' +
      '(ProtocolChanged, MetadataChanged)',
  },
  compact: {
    operation: 'OPTIMIZE',
    actions: 'remove + add, dataChange false',
    rule:
      'every file it removes must still be live: if a concurrent commit removed one, it aborts (ConcurrentDeleteRead, ' +
      'ConcurrentDeleteDelete); concurrent appends do not conflict ("dataChange false: rearranges existing data"); a protocol or ' +
      'metadata change aborts unless compatible',
  },
  metadata: {
    operation: 'ADD COLUMNS',
    actions: 'metaData (the same id and partition columns, columns only added)',
    rule:
      'the metadata must still be the one it was built on: a concurrent metadata change aborts it (MetadataChanged) and the caller ' +
      'decides again from the new table; appends and compactions do not conflict with it ("Change Metadata": at most one metaData per version)',
  },
  vacuum: {
    operation: 'VACUUM END',
    actions: 'commitInfo only',
    rule: 'never conflicts: retried at the next version',
  },
  properties: {
    operation: 'SET TBLPROPERTIES',
    actions: 'metaData (the latest one, with the properties set)',
    rule: 'built on the latest metadata at every attempt, so a concurrent metadata change is kept, never undone; retried at the next version',
  },
  expire: {
    operation: 'DELETE',
    actions: 'remove (dataChange true) of whole files, txn (where the table now starts)',
    rule:
      'refused on an append-only table ("Append-only Tables": no remove with dataChange true; set delta.appendOnly false first, a ' +
      'properties commit); every file it removes must still be live: if a concurrent commit removed one (a compaction that merged it), ' +
      'it aborts (ConcurrentDeleteRead) and the caller plans again from the new table; concurrent appends do not conflict (they add ' +
      'newer rows); a protocol or metadata change aborts unless compatible. The files stay stored until vacuum deletes them after ' +
      'delta.deletedFileRetentionDuration, so a reader of an older version is never cut short',
  },
};

function commitInfo(kind: CommitKind, parameters: Record<string, unknown>, extra: Partial<CommitInfoAction>, now: number): Action {
  return {
    commitInfo: {
      timestamp: now,
      operation: COMMIT_KINDS[kind].operation,
      operationParameters: parameters,
      engineInfo: ENGINE_INFO,
      ...extra,
    },
  };
}

/** Decides an attempt of `intent` against `latest` (the conflict rules of COMMIT_KINDS). */
function plan(intent: CommitIntent, latest: DeltaSnapshot | undefined, now: number): Plan {
  const empty = { kept: [], covered: [], overlapped: [], empty: false };
  if (intent.kind === 'create' || intent.kind === 'convert') {
    if (latest !== undefined) {
      if (intent.kind === 'create') return { actions: [], ...empty, empty: true };
      throw new DeltaConflictError('TableAlreadyExists', `the table already exists (version ${latest.version}): nothing to convert`);
    }
    if (intent.kind === 'create')
      return {
        actions: [commitInfo('create', {}, {}, now), { protocol: intent.protocol }, { metaData: intent.metaData }],
        ...empty,
      };
    return {
      actions: [
        commitInfo('convert', intent.source, {}, now),
        { protocol: intent.protocol },
        { metaData: intent.metaData },
        ...intent.adds.map((add) => ({ add })),
        ...intent.txns.map((t) => ({ txn: { appId: t.appId, version: t.version, lastUpdated: now } })),
      ],
      ...empty,
    };
  }
  if (latest === undefined) throw new IllegalStateError(`a ${intent.kind} commit needs an existing table`);
  const refused = unsupportedProtocol(latest, 'write');
  if (refused) throw new DeltaConflictError('ProtocolChanged', `cannot write the table: ${refused}`);
  if (intent.kind === 'metadata') {
    if (latest.metadata?.schemaString !== intent.basedOn)
      throw new DeltaConflictError('MetadataChanged', 'the table metadata changed since this schema change was planned');
    if (intent.metaData.id !== latest.metadata.id) throw new IllegalStateError('a schema change keeps the table id');
    return { actions: [commitInfo('metadata', {}, {}, now), { metaData: intent.metaData }], ...empty };
  }
  if (intent.kind === 'properties') {
    const metaData = latest.metadata;
    if (!metaData) throw new IllegalStateError('a properties commit needs the table metadata');
    return {
      actions: [
        commitInfo('properties', { properties: JSON.stringify(intent.set) }, {}, now),
        { metaData: { ...metaData, configuration: { ...metaData.configuration, ...intent.set } } },
      ],
      ...empty,
    };
  }
  if (intent.kind === 'vacuum')
    return {
      actions: [
        commitInfo(
          'vacuum',
          { status: 'COMPLETED' },
          { operationMetrics: { numDeletedFiles: intent.deletedFiles, numDeletedBytes: intent.deletedBytes } } as Partial<CommitInfoAction>,
          now,
        ),
      ],
      ...empty,
    };
  const incompatible = intent.compatible(latest);
  if (incompatible) throw new DeltaConflictError('MetadataChanged', `the table changed under this commit: ${incompatible}`);
  if (intent.kind === 'expire') {
    if (latest.configuration['delta.appendOnly'] === 'true')
      throw new IllegalStateError('the table is append-only (delta.appendOnly): set it to false before removing data');
    const gone = intent.remove.filter((p) => !latest.files.has(p));
    if (gone.length > 0)
      throw new DeltaConflictError(
        'ConcurrentDeleteRead',
        `${gone.length} file(s) this expiry removes are no longer in the table (removed by a concurrent commit), e.g. ${gone[0]}`,
      );
    return {
      actions: [
        commitInfo(
          'expire',
          { predicate: JSON.stringify([`event_time < ${new Date(intent.horizon).toISOString()}`]) },
          { isBlindAppend: false },
          now,
        ),
        ...intent.remove.map((path) => {
          const add = latest.files.get(path)!;
          return {
            remove: {
              path,
              deletionTimestamp: now,
              dataChange: true,
              extendedFileMetadata: true,
              partitionValues: add.partitionValues,
              size: add.size,
            },
          };
        }),
        ...intent.txns.map((t) => ({ txn: { appId: t.appId, version: t.version, lastUpdated: now } })),
      ],
      ...empty,
    };
  }
  if (intent.kind === 'compact') {
    const gone = intent.remove.filter((p) => !latest.files.has(p));
    if (gone.length > 0)
      throw new DeltaConflictError(
        'ConcurrentDeleteRead',
        `${gone.length} file(s) this compaction replaces are no longer in the table (removed by a concurrent commit), e.g. ${gone[0]}`,
      );
    return {
      actions: [
        commitInfo('compact', { predicate: '[]', targetSize: null }, { isBlindAppend: false }, now),
        ...intent.remove.map((path) => {
          const add = latest.files.get(path)!;
          return {
            remove: {
              path,
              deletionTimestamp: now,
              dataChange: false,
              extendedFileMetadata: true,
              partitionValues: add.partitionValues,
              size: add.size,
            },
          };
        }),
        ...intent.add.map((add) => ({ add: { ...add, dataChange: false } })),
      ],
      ...empty,
    };
  }
  const kept: AppendClaim[] = [];
  const covered: AppendClaim[] = [];
  const overlapped: { claim: AppendClaim; at: number }[] = [];
  for (const claim of intent.claims) {
    const at = latest.txnVersion(claim.appId);
    if (at === claim.from) kept.push(claim);
    else if (at !== undefined && at >= claim.to) covered.push(claim);
    else if (at !== undefined && (claim.from === undefined || at > claim.from)) overlapped.push({ claim, at });
    else
      throw new IllegalStateError(
        `txn ${claim.appId} is at ${at ?? 'none'} in version ${latest.version}, below ${claim.from} where this writer continued: the table went back under it`,
      );
  }
  const actions: Action[] = [commitInfo('append', { mode: 'Append' }, { isBlindAppend: true }, now)];
  for (const claim of kept) {
    for (const add of claim.adds) actions.push({ add: { ...add, dataChange: true } });
    actions.push({ txn: { appId: claim.appId, version: claim.to, lastUpdated: now } });
    for (const c of claim.companions) actions.push({ txn: { appId: c.appId, version: c.version, lastUpdated: now } });
  }
  return { actions, kept, covered, overlapped, empty: kept.length === 0 };
}

// ------------------------------------------------------------------------------ the log

export interface DeltaLogOptions {
  /** The table's root: `_delta_log/` and the data files are keys under it. */
  store: ObjectStore;
  /** A local folder for checkpoint files on their way to or from the store. */
  scratch?: string;
  logger?: Logger;
  now?: () => number;
}

/** How many versions a commit may lose in a row before it gives up (a runaway, not contention). */
const MAX_COMMIT_ATTEMPTS = 1000;

export class DeltaLog {
  private latest: DeltaSnapshot | undefined;
  /** Commits of this process one at a time: each builds on the snapshot the previous one made. */
  private chain: Promise<unknown> = Promise.resolve();
  readonly store: ObjectStore;
  private readonly scratch: string;
  private readonly now: () => number;

  private constructor(private readonly options: DeltaLogOptions) {
    this.store = options.store;
    this.scratch = options.scratch ?? join(tmpdir(), 'lk-delta');
    this.now = options.now ?? Date.now;
  }

  /** Opens the log and reads the latest snapshot (none when the table does not exist yet). */
  static async open(options: DeltaLogOptions): Promise<DeltaLog> {
    const log = new DeltaLog(options);
    log.advance(await log.load(undefined));
    return log;
  }

  /** Where the table is, for messages. */
  get location(): string {
    return this.store.location;
  }

  /** The snapshot read last (undefined: no table). */
  get current(): DeltaSnapshot | undefined {
    return this.latest;
  }

  /**
   * Reads the commits made since the snapshot held (one GET per new version and one that finds
   * none), or the whole log when there was no table yet.
   */
  async refresh(): Promise<DeltaSnapshot | undefined> {
    const base = this.latest;
    if (base === undefined) {
      const loaded = await this.load(undefined);
      this.advance(loaded);
      return this.latest;
    }
    // Commits and refreshes of this process may interleave: this one builds on the snapshot it
    // started from, and replaces the held one only with a newer version.
    let next: DeltaSnapshot | undefined;
    for (;;) {
      const version = (next ?? base).version + 1;
      const text = await getText(this.store, commitKey(version));
      if (text === undefined) break;
      next ??= base.clone();
      next.apply(version, parseCommit(text, this.where(commitKey(version))), this.where(commitKey(version)));
    }
    this.advance(next);
    return this.latest;
  }

  private advance(snap: DeltaSnapshot | undefined): void {
    if (snap !== undefined && (this.latest === undefined || snap.version > this.latest.version)) this.latest = snap;
  }

  /** Time travel: the snapshot at `version` (from the newest checkpoint at or before it). */
  async snapshotAt(version: number): Promise<DeltaSnapshot> {
    const snap = await this.load(version);
    if (snap === undefined || snap.version !== version)
      throw new InfrastructureError(`${this.location} has no version ${version} (latest ${this.latest?.version ?? 'none'})`);
    return snap;
  }

  private where(key: string): string {
    return `${this.location}/${key}`;
  }

  /** The snapshot at `target` (the latest when undefined), or undefined when there is no table. */
  private async load(target: number | undefined): Promise<DeltaSnapshot | undefined> {
    let hint: number | undefined;
    const lastText = await getText(this.store, LAST_CHECKPOINT);
    if (lastText !== undefined) {
      const parsed = lastCheckpointSchema.safeParse(safeJson(lastText));
      // A stale or unreadable pointer only costs a longer listing: it is a hint, never trusted alone.
      if (parsed.success && (target === undefined || parsed.data.version <= target)) hint = parsed.data.version;
    }
    const listed = await this.listLog(hint);
    let snap = await this.fromListing(listed, target);
    if (snap === undefined && hint !== undefined) snap = await this.fromListing(await this.listLog(undefined), target);
    return snap;
  }

  /** The log's commits and checkpoint parts, from `from` on (the whole log when undefined). */
  private async listLog(
    from: number | undefined,
  ): Promise<{ commits: Map<number, string>; checkpoints: Map<number, Map<number, string>>; parts: Map<number, number> }> {
    const commits = new Map<number, string>();
    const checkpoints = new Map<number, Map<number, string>>();
    const parts = new Map<number, number>();
    const startAfter = from === undefined ? undefined : `${DELTA_LOG_DIR}/${versionName(from)}`;
    for (const info of await listAll(this.store, `${DELTA_LOG_DIR}/`, startAfter === undefined ? {} : { startAfter })) {
      const name = info.key.slice(DELTA_LOG_DIR.length + 1);
      if (name.includes('/')) continue;
      const f = parseLogFileName(name);
      if (f.kind === 'commit') commits.set(f.version, info.key);
      else if (f.kind === 'checkpoint') {
        const byPart = checkpoints.get(f.version) ?? new Map<number, string>();
        byPart.set(f.part, info.key);
        checkpoints.set(f.version, byPart);
        parts.set(f.version, f.parts);
      }
    }
    return { commits, checkpoints, parts };
  }

  private async fromListing(
    listed: { commits: Map<number, string>; checkpoints: Map<number, Map<number, string>>; parts: Map<number, number> },
    target: number | undefined,
  ): Promise<DeltaSnapshot | undefined> {
    // "Readers must ignore multi-part checkpoints with missing parts"; the newest usable one wins.
    const complete = [...listed.checkpoints.entries()]
      .filter(([v, byPart]) => byPart.size === listed.parts.get(v) && (target === undefined || v <= target))
      .map(([v]) => v)
      .sort((a, b) => b - a);
    let snap: DeltaSnapshot | undefined;
    if (complete.length > 0) snap = await this.readCheckpoint(complete[0]!, [...listed.checkpoints.get(complete[0]!)!.values()].sort());
    else if (!listed.commits.has(0)) return undefined;
    else snap = new DeltaSnapshot(-1);
    const last = target ?? Math.max(snap.version, ...listed.commits.keys());
    for (let v = snap.version + 1; v <= last; v++) {
      const key = listed.commits.get(v);
      if (key === undefined) {
        // A version created after the listing is read by the next refresh; a hole is damage.
        const newest = Math.max(snap.version, ...listed.commits.keys());
        if (v > newest) {
          if (target === undefined) break;
          throw new InfrastructureError(`${this.location} has no version ${target} (latest ${newest})`);
        }
        throw new InfrastructureError(`${this.where(commitKey(v))} is missing: the Delta log has a gap before version ${last}`);
      }
      const text = await getText(this.store, key);
      if (text === undefined) throw new InfrastructureError(`${this.where(key)} disappeared while the log was read`);
      snap.apply(v, parseCommit(text, this.where(key)), this.where(key));
    }
    return snap.version < 0 ? undefined : snap;
  }

  private async readCheckpoint(version: number, keys: string[]): Promise<DeltaSnapshot> {
    const { readCheckpointFiles } = await import('./checkpointCodec.ts');
    const local: string[] = [];
    const downloaded: string[] = [];
    try {
      for (const key of keys) {
        const inPlace = this.store.localPath(key);
        if (inPlace !== undefined) local.push(inPlace);
        else {
          const path = this.scratchFile(`cp-${versionName(version)}.parquet`);
          if (!(await this.store.download(key, path)))
            throw new InfrastructureError(`${this.where(key)} disappeared while the log was read`);
          local.push(path);
          downloaded.push(path);
        }
      }
      const where = this.where(keys[0]!);
      const snap = new DeltaSnapshot(version - 1);
      snap.apply(version, await readCheckpointFiles(local, where), where);
      return snap;
    } finally {
      for (const p of downloaded) rmSync(p, { force: true });
    }
  }

  private scratchFile(name: string): string {
    mkdirSync(this.scratch, { recursive: true });
    return join(this.scratch, `${process.pid}-${randomBytes(4).toString('hex')}-${name}`);
  }

  /**
   * Commits `intent` as the next version (see COMMIT_KINDS): decided against the latest snapshot,
   * created only if absent, decided again after every version another writer won.
   */
  commit(intent: CommitIntent): Promise<CommitOutcome> {
    const run = this.chain.then(() => this.commitNow(intent));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async commitNow(intent: CommitIntent): Promise<CommitOutcome> {
    for (let attempt = 0; attempt < MAX_COMMIT_ATTEMPTS; attempt++) {
      const latest = await this.refresh();
      const now = this.now();
      const p = plan(intent, latest, now);
      if (p.empty) {
        return { version: undefined, snapshot: latest!, kept: [], covered: p.covered, overlapped: p.overlapped, retries: attempt };
      }
      const version = (latest?.version ?? -1) + 1;
      const put = await this.store.put(commitKey(version), serializeCommit(p.actions), { ifAbsent: true });
      if (!put.ok) continue; // another writer won this version: read it and decide again
      const snap = latest?.clone() ?? new DeltaSnapshot(-1);
      snap.apply(version, p.actions, this.where(commitKey(version)));
      this.advance(snap);
      crashPoint('lake.commit.written');
      if (version > 0 && version % checkpointInterval(snap.configuration) === 0) {
        await this.checkpoint(snap).catch((err: unknown) =>
          this.options.logger?.warn({ err: errorMessage(err), version }, 'could not write a Delta checkpoint (the next one will)'),
        );
      }
      return { version, snapshot: snap, kept: p.kept, covered: p.covered, overlapped: p.overlapped, retries: attempt };
    }
    throw new InfrastructureError(`${this.location}: gave up committing after ${MAX_COMMIT_ATTEMPTS} versions won by other writers`);
  }

  /**
   * Writes the checkpoint of `snap` (the latest by default) and points `_last_checkpoint` at it,
   * never backwards: it is replaced only if it names an older version (compare-and-swap).
   */
  async checkpoint(snap: DeltaSnapshot | undefined = this.latest): Promise<void> {
    if (snap === undefined) return;
    const { writeCheckpointFile } = await import('./checkpointCodec.ts');
    const key = checkpointKey(snap.version);
    const local = this.scratchFile('checkpoint.parquet');
    let rows: number;
    let size: number;
    try {
      ({ rows } = await writeCheckpointFile(snap.checkpointActions(this.now()), local, this.scratch));
      // "If two checkpoint writers race to create the same classic checkpoint ... either one" is fine.
      const put = await this.store.putFile(key, local, { ifAbsent: true });
      size = put.ok ? ((await this.store.head(key))?.size ?? 0) : 0;
    } finally {
      rmSync(local, { force: true });
    }
    crashPoint('lake.checkpoint.written');
    const body = JSON.stringify({ version: snap.version, size: rows, sizeInBytes: size, numOfAddFiles: snap.files.size });
    for (let attempt = 0; attempt < 10; attempt++) {
      const current = await this.store.get(LAST_CHECKPOINT);
      if (current !== undefined) {
        const parsed = lastCheckpointSchema.safeParse(safeJson(current.bytes.toString('utf8')));
        if (parsed.success && parsed.data.version >= snap.version) return;
      }
      const put = await this.store.put(LAST_CHECKPOINT, body, current === undefined ? { ifAbsent: true } : { ifMatch: current.etag });
      if (put.ok) return;
    }
  }

  /**
   * VACUUM: deletes the files no longer needed by any snapshot within the retention period, and
   * records it in a `VACUUM END` commit when it deleted anything. A file goes when it is
   * - a tombstone older than the retention ("Physical deletion of physical files can happen
   *   lazily after some user-specified expiration time threshold"), and not added again; or
   * - unknown to the log (no add, no tombstone: what a crash left before its commit) and older
   *   than the retention by its modification time, so that a writer's file between upload and
   *   commit is never taken. Files of the live snapshot are never deleted.
   * Keys under folders starting with `_` or `.` (`_delta_log/`, "Data Files": data files live in
   * non-hidden folders) are left alone.
   */
  async vacuum(options: { retentionMs?: number; now?: number } = {}): Promise<{ deleted: string[]; bytes: number }> {
    const snap = await this.refresh();
    if (snap === undefined) return { deleted: [], bytes: 0 };
    const now = options.now ?? this.now();
    const retention = options.retentionMs ?? deletedFileRetentionMs(snap.configuration);
    const deleted: string[] = [];
    let bytes = 0;
    const live = new Set([...snap.files.keys()].map(decodePath));
    const tombstones = new Map([...snap.tombstones.values()].map((r) => [decodePath(r.path), r]));
    for (const info of await listAll(this.store, '')) {
      if (info.key.split('/').some((segment) => segment.startsWith('_') || segment.startsWith('.'))) continue;
      if (live.has(info.key)) continue;
      const tombstone = tombstones.get(info.key);
      const since = tombstone !== undefined ? (tombstone.deletionTimestamp ?? info.lastModified) : info.lastModified;
      if (now - since < retention) continue;
      await this.store.delete(info.key);
      deleted.push(info.key);
      bytes += info.size;
    }
    if (deleted.length > 0) {
      crashPoint('lake.vacuum.deleted');
      await this.commit({ kind: 'vacuum', deletedFiles: deleted.length, deletedBytes: bytes, retentionMs: retention });
    }
    return { deleted, bytes };
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * An add's or remove's `path` as an object key: "a relative path ... from the root of the table
 * ... a URI ... which needs to be decoded to get the data file path". Absolute URIs are refused:
 * this platform reads only files inside the table.
 */
export function decodePath(path: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(path) || path.startsWith('/'))
    throw new InfrastructureError(`data file path ${JSON.stringify(path)} is absolute: only files inside the table are read`);
  try {
    return path.split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new InfrastructureError(`data file path ${JSON.stringify(path)} is not a valid URI path`);
  }
}

/** A relative object key as an add's `path` (percent-encoding what a URI path may not hold). */
export function encodePath(key: string): string {
  return key
    .split('/')
    .map((s) => encodeURIComponent(s).replace(/%3D/g, '='))
    .join('/');
}
