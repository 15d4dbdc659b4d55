/**
 * The lake's commit protocol: a Delta-Lake-style manifest log that is the only source of truth
 * for which Parquet files make up the lake and how far each source partition has been read.
 *
 *   <lake>/<topic>/_lake_log/00000000000000000001.json   one commit per file, numbered
 *   <lake>/<topic>/_lake_log/_checkpoint.json            the state at some version (a cache)
 *   <lake>/<topic>/_tmp/                                  files being written (never listed)
 *
 * Two-phase commit of the lake writer (and of compaction):
 *   1. prepare: write the Parquet file under `_tmp/`, fsync it, rename it into its `dt=/hr=`
 *      directory. It is still invisible: readers list files from the manifest, never by globbing.
 *   2. commit: create the next numbered manifest entry, atomically and exclusively (write a temp
 *      file, fsync, hard-link it to the numbered name: link(2) fails if the name exists, and the
 *      name appears with its full content or not at all). The entry lists the files added and,
 *      for the writer, the next offset of every partition it covers.
 *
 * A crash before step 2 leaves only orphans (in `_tmp/` or unlisted part files): invisible to
 * readers and deleted by the next writer at startup. A crash after step 2 loses nothing: the
 * restarted writer resumes from the manifest's offsets (returned from onAssignment), so every
 * record lands in the lake exactly once: never twice, never skipped.
 *
 * Concurrency is optimistic, as in Delta: a committer reads the latest version, validates its
 * action against it (an append must continue each partition exactly where the manifest says; a
 * compaction's removed files must all still be live) and tries to create version + 1; if another
 * process won that number, it re-reads and re-validates. Removed files are deleted from disk only
 * after a grace period, because a reader that resolved the previous version may still read them.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { IllegalStateError, InfrastructureError, assert } from '../errors.ts';
import { createFileExclusiveSync, placeFileSync, writeFileAtomicSync } from '../storage/atomicFile.ts';

export const LAKE_LOG_DIR = '_lake_log';
export const LAKE_TMP_DIR = '_tmp';
/** Held by the one lake writer (pid inside), in the manifest log directory. */
export const WRITER_LOCK = 'writer.lock';
const CHECKPOINT_FILE = '_checkpoint.json';
/** A checkpoint every this many commits keeps opening the lake O(1) in its history. */
const CHECKPOINT_EVERY = 50;
export const DEFAULT_REMOVED_FILE_GRACE_MS = 10 * 60_000;

const lakeFileSchema = z
  .object({
    /** Relative to the topic's lake root, with forward slashes: `dt=2026-01-01/hr=00/part-...parquet`. */
    path: z.string().regex(/^dt=\d{4}-\d{2}-\d{2}\/hr=\d{2}\/part-[^/]+\.parquet$/, 'must be dt=YYYY-MM-DD/hr=HH/part-*.parquet'),
    partition: z.number().int().nonnegative(),
    /** Smallest and largest Kafka offset of the rows in the file (inclusive). */
    fromOffset: z.number().int().nonnegative(),
    toOffset: z.number().int().nonnegative(),
    rows: z.number().int().positive(),
    bytes: z.number().int().nonnegative(),
    dt: z.string(),
    hr: z.string(),
    minTsMs: z.number(),
    maxTsMs: z.number(),
  })
  .strict();
export type LakeFile = z.infer<typeof lakeFileSchema>;

const positionSchema = z
  .object({
    /** Next offset to read: the lake holds every valid record of the partition below it. */
    nextOffset: z.number().int().nonnegative(),
    /** Log-append time of the last record below nextOffset (0 when none was read yet). */
    lastTimestamp: z.number(),
  })
  .strict();
export type PartitionPosition = z.infer<typeof positionSchema>;

const commitSchema = z.discriminatedUnion('op', [
  z
    .object({
      op: z.literal('append'),
      version: z.number().int().positive(),
      committedAt: z.number(),
      topic: z.string(),
      partitionCount: z.number().int().positive(),
      add: z.array(lakeFileSchema),
      /** Partition (as a decimal string) -> position after this commit. */
      positions: z.record(z.string().regex(/^\d+$/), positionSchema),
      /** Records sent to the dead-letter topic by this commit, per reason. */
      rejected: z.record(z.string(), z.number().int().nonnegative()).default({}),
    })
    .strict(),
  z
    .object({
      op: z.literal('compact'),
      version: z.number().int().positive(),
      committedAt: z.number(),
      add: z.array(lakeFileSchema),
      remove: z.array(z.string()).min(1),
    })
    .strict(),
  z
    .object({
      op: z.literal('vacuum'),
      version: z.number().int().positive(),
      committedAt: z.number(),
      /** Removed files now deleted from disk: no longer tracked. */
      purged: z.array(z.string()).min(1),
    })
    .strict(),
]);
export type LakeCommit = z.infer<typeof commitSchema>;
export type LakeAction = LakeCommit extends infer C ? (C extends LakeCommit ? Omit<C, 'version' | 'committedAt'> : never) : never;

export interface LakeState {
  version: number;
  topic: string | undefined;
  partitionCount: number;
  /** Live files by path. */
  files: Map<string, LakeFile>;
  positions: Map<number, PartitionPosition>;
  /** Files removed by a compaction and not yet deleted from disk, with the removal time. */
  removed: Map<string, number>;
  rejected: Record<string, number>;
}

const checkpointSchema = z.object({
  version: z.number().int().nonnegative(),
  topic: z.string().optional(),
  partitionCount: z.number().int().nonnegative(),
  files: z.array(lakeFileSchema),
  positions: z.record(z.string(), positionSchema),
  removed: z.record(z.string(), z.number()),
  rejected: z.record(z.string(), z.number()),
});

export function emptyLakeState(): LakeState {
  return { version: 0, topic: undefined, partitionCount: 0, files: new Map(), positions: new Map(), removed: new Map(), rejected: {} };
}

function entryName(version: number): string {
  return `${String(version).padStart(20, '0')}.json`;
}

/** Checks an action against the state it would follow; a refusal is a bug or a second writer. */
function validate(state: LakeState, action: LakeAction): void {
  if (action.op === 'append') {
    if (state.topic !== undefined && state.topic !== action.topic) {
      throw new IllegalStateError(`this lake holds topic "${state.topic}", not "${action.topic}"`);
    }
    for (const [p, pos] of Object.entries(action.positions)) {
      const before = state.positions.get(Number(p))?.nextOffset ?? 0;
      if (pos.nextOffset < before) {
        throw new IllegalStateError(`append moves partition ${p} back from ${before} to ${pos.nextOffset} (another lake writer?)`);
      }
    }
    for (const f of action.add) {
      const before = state.positions.get(f.partition)?.nextOffset ?? 0;
      const after = action.positions[String(f.partition)]?.nextOffset;
      // Exactly once, checked at the commit point: new rows continue the partition.
      if (f.fromOffset < before)
        throw new IllegalStateError(
          `file ${f.path} starts at offset ${f.fromOffset}, partition ${f.partition} is already committed up to ${before}`,
        );
      if (after === undefined || f.toOffset >= after)
        throw new IllegalStateError(`file ${f.path} ends at ${f.toOffset}, beyond the committed position of partition ${f.partition}`);
      if (state.files.has(f.path)) throw new IllegalStateError(`file ${f.path} is already in the lake`);
    }
  } else if (action.op === 'compact') {
    for (const path of action.remove) {
      if (!state.files.has(path)) throw new ConcurrentCompactionError(`file ${path} is no longer live (compacted concurrently)`);
    }
  }
}

/** A compaction lost a race with another one: its output is discarded, nothing is lost. */
export class ConcurrentCompactionError extends Error {
  override name = 'ConcurrentCompactionError';
}

function apply(state: LakeState, commit: LakeCommit): void {
  assert(commit.version === state.version + 1, `lake commit ${commit.version} follows ${state.version}`);
  state.version = commit.version;
  if (commit.op === 'append') {
    state.topic = commit.topic;
    state.partitionCount = Math.max(state.partitionCount, commit.partitionCount);
    for (const f of commit.add) state.files.set(f.path, f);
    for (const [p, pos] of Object.entries(commit.positions)) state.positions.set(Number(p), pos);
    for (const [reason, n] of Object.entries(commit.rejected)) state.rejected[reason] = (state.rejected[reason] ?? 0) + n;
  } else if (commit.op === 'compact') {
    for (const path of commit.remove) {
      state.files.delete(path);
      state.removed.set(path, commit.committedAt);
    }
    for (const f of commit.add) state.files.set(f.path, f);
  } else {
    for (const path of commit.purged) state.removed.delete(path);
  }
}

function cloneState(s: LakeState): LakeState {
  return { ...s, files: new Map(s.files), positions: new Map(s.positions), removed: new Map(s.removed), rejected: { ...s.rejected } };
}

/** A consistent view of the lake at one version: what readers query. */
export interface LakeSnapshot {
  root: string;
  version: number;
  partitionCount: number;
  files: LakeFile[];
  positions: Map<number, PartitionPosition>;
  /** Absolute paths of the live files, sorted (stable input order for readers). */
  absolutePaths(): string[];
}

export class LakeManifest {
  readonly logDir: string;
  readonly tmpDir: string;
  private state: LakeState = emptyLakeState();

  constructor(readonly root: string) {
    this.logDir = join(root, LAKE_LOG_DIR);
    this.tmpDir = join(root, LAKE_TMP_DIR);
  }

  /** Opens (creating the directories if needed) and reads the latest version. */
  static open(root: string): LakeManifest {
    const m = new LakeManifest(root);
    mkdirSync(m.logDir, { recursive: true });
    mkdirSync(m.tmpDir, { recursive: true });
    m.refresh();
    return m;
  }

  /** Reads commits newer than the state held (from the checkpoint when starting cold). */
  refresh(): LakeState {
    if (this.state.version === 0) {
      const cp = this.readCheckpoint();
      if (cp) this.state = cp;
    }
    for (;;) {
      const next = this.readEntry(this.state.version + 1);
      if (!next) break;
      apply(this.state, next);
    }
    return this.state;
  }

  private readCheckpoint(): LakeState | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.logDir, CHECKPOINT_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new InfrastructureError(`cannot read lake checkpoint in ${this.logDir}: ${String(err)}`);
    }
    const cp = checkpointSchema.parse(JSON.parse(text));
    return {
      version: cp.version,
      topic: cp.topic,
      partitionCount: cp.partitionCount,
      files: new Map(cp.files.map((f) => [f.path, f])),
      positions: new Map(Object.entries(cp.positions).map(([p, pos]) => [Number(p), pos])),
      removed: new Map(Object.entries(cp.removed)),
      rejected: cp.rejected,
    };
  }

  private readEntry(version: number): LakeCommit | undefined {
    let text: string;
    try {
      text = readFileSync(join(this.logDir, entryName(version)), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new InfrastructureError(`cannot read lake commit ${version} in ${this.logDir}: ${String(err)}`);
    }
    const parsed = commitSchema.safeParse(JSON.parse(text));
    if (!parsed.success) {
      throw new InfrastructureError(
        `lake commit ${entryName(version)} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    }
    if (parsed.data.version !== version)
      throw new InfrastructureError(`lake commit ${entryName(version)} says version ${parsed.data.version}`);
    return parsed.data;
  }

  current(): LakeState {
    return this.state;
  }

  snapshot(): LakeSnapshot {
    const s = this.refresh();
    const files = [...s.files.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const root = this.root;
    return {
      root,
      version: s.version,
      partitionCount: s.partitionCount,
      files,
      positions: new Map(s.positions),
      absolutePaths: () => files.map((f) => join(root, f.path)),
    };
  }

  /**
   * Commits an action as the next version: validated against the latest state, created
   * exclusively. Retries when another process committed first (optimistic concurrency).
   */
  commit(action: LakeAction): LakeCommit {
    for (;;) {
      const state = this.refresh();
      validate(state, action);
      const commit = commitSchema.parse({ ...action, version: state.version + 1, committedAt: Date.now() });
      let created: boolean;
      try {
        created = createFileExclusiveSync(
          join(this.logDir, entryName(commit.version)),
          JSON.stringify(commit),
          'lake.manifest.entry-written',
        );
      } catch (err) {
        throw new InfrastructureError(`cannot commit to the lake manifest ${this.logDir}: ${String(err)}`);
      }
      if (!created) continue; // lost the race: re-read, re-validate
      apply(this.state, commit);
      if (commit.version % CHECKPOINT_EVERY === 0) this.writeCheckpoint();
      return commit;
    }
  }

  private writeCheckpoint(): void {
    const s = cloneState(this.state);
    writeFileAtomicSync(
      join(this.logDir, CHECKPOINT_FILE),
      JSON.stringify({
        version: s.version,
        ...(s.topic !== undefined ? { topic: s.topic } : {}),
        partitionCount: s.partitionCount,
        files: [...s.files.values()],
        positions: Object.fromEntries(s.positions),
        removed: Object.fromEntries(s.removed),
        rejected: s.rejected,
      }),
    );
  }

  /** A fresh path under `_tmp/` for phase 1. */
  tmpPath(name: string): string {
    return join(this.tmpDir, name);
  }

  /**
   * Phase 1, second half: moves a finished file from `_tmp/` to its final place (still invisible
   * until committed). fsyncs the file so that a committed entry never points at lost data.
   */
  placeFile(tmpFile: string, relativePath: string): string {
    const dest = join(this.root, relativePath);
    placeFileSync(tmpFile, dest);
    return dest;
  }

  /**
   * Deletes everything a crash can leave behind: files in `_tmp/` and part files that no
   * committed version lists. Only safe for the process that holds the writer lock (no commit of
   * another process can be in flight); removed-but-in-grace files are kept.
   */
  sweepOrphans(): string[] {
    const s = this.refresh();
    const deleted: string[] = [];
    for (const name of safeReaddir(this.tmpDir)) {
      rmSync(join(this.tmpDir, name), { recursive: true, force: true });
      deleted.push(`${LAKE_TMP_DIR}/${name}`);
    }
    for (const name of safeReaddir(this.logDir)) {
      if (name.includes('.tmp')) rmSync(join(this.logDir, name), { force: true });
    }
    for (const dt of safeReaddir(this.root).filter((n) => n.startsWith('dt='))) {
      for (const hr of safeReaddir(join(this.root, dt)).filter((n) => n.startsWith('hr='))) {
        for (const name of safeReaddir(join(this.root, dt, hr))) {
          const rel = `${dt}/${hr}/${name}`;
          if (!s.files.has(rel) && !s.removed.has(rel)) {
            rmSync(join(this.root, dt, hr, name), { force: true });
            deleted.push(rel);
          }
        }
      }
    }
    return deleted;
  }

  /** Deletes removed files whose grace period is over and records it (a `vacuum` commit). */
  vacuum(graceMs = DEFAULT_REMOVED_FILE_GRACE_MS, now = Date.now()): string[] {
    const s = this.refresh();
    const due = [...s.removed].filter(([, at]) => now - at >= graceMs).map(([path]) => path);
    if (due.length === 0) return [];
    for (const path of due) rmSync(join(this.root, path), { force: true });
    this.commit({ op: 'vacuum', purged: due });
    return due;
  }

  /** Bytes of the live files (from the manifest, no stat calls). */
  liveBytes(): number {
    let n = 0;
    for (const f of this.state.files.values()) n += f.bytes;
    return n;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export function lakeExists(root: string): boolean {
  return existsSync(join(root, LAKE_LOG_DIR));
}
