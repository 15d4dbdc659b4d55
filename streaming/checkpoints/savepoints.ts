/**
 * Savepoints: `<savepoints>/<name>/{savepoint.json, p<k>.arrow}`, named and kept until deleted.
 *
 * A savepoint is taken from the checkpoint store, not from a running process: for each
 * partition, the group's committed offset N and the snapshot chain ending at N form a committed,
 * consistent state (the 2PC guarantees it), which is materialised as one full snapshot. So
 * `lk speed savepoint` works whether the job runs or not, needs no coordination with running
 * instances, and can never capture uncommitted state. If a running job prunes the chain while it
 * is read, the committed offsets are read again.
 *
 * Starting from a savepoint (`lk speed --from-savepoint NAME`) checks the metric definitions
 * (services/versions/metricChanges.ts), then for each partition writes the savepoint's state as the checkpoint at
 * its offset and commits that offset for the group in a transaction of the partition's producer
 * (which fences any running owner). The job then starts normally and restores exactly that. The
 * savepoint's name is recorded in job.json, so that a restart of a process started with the same
 * flag resumes from its latest checkpoint instead of rewinding again.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, InfrastructureError } from '../../services/errors.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import { fsyncDir, writeFileAtomic, writeFileAtomicSync } from '../../services/storage/atomicFile.ts';
import { CheckpointStore, MissingCheckpointError, restoreState } from './checkpointStore.ts';
import { compareDefinitions, compareSemantics, metricsFingerprint } from '../../services/versions/metricChanges.ts';
import { PartitionState, type Placement, type SpeedSemantics } from '../state/partitionState.ts';
import { logger } from '../../services/observability/logger.ts';
import { readJobMetadata } from './jobMetadata.ts';
import { encodeFullSnapshot, decodeSnapshot, type SnapshotContent } from './snapshotCodec.ts';

export const SAVEPOINT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface SavepointManifest {
  name: string;
  version: string;
  topic: string;
  groupId: string;
  partitions: { partition: number; offset: number | null; bytes: number }[];
  /** The home partition count its misplaced counts were computed with (absent before they were counted). */
  homePartitions?: number;
  metrics: MetricDefinition[];
  semantics: { outOfOrdernessMs: number; dedupHorizonMs: number };
  createdAt: string;
}

const manifestSchema = z.object({
  name: z.string(),
  version: z.string(),
  topic: z.string(),
  groupId: z.string(),
  partitions: z.array(
    z.object({ partition: z.number().int().nonnegative(), offset: z.number().int().nonnegative().nullable(), bytes: z.number() }),
  ),
  homePartitions: z.number().int().positive().optional(),
  metrics: z.array(z.any()),
  semantics: z.object({ outOfOrdernessMs: z.number(), dedupHorizonMs: z.number() }),
  createdAt: z.string(),
});

export function savepointDir(savepointsRoot: string, name: string): string {
  return join(savepointsRoot, name);
}

export function readSavepoint(savepointsRoot: string, name: string): SavepointManifest {
  const path = join(savepointDir(savepointsRoot, name), 'savepoint.json');
  if (!existsSync(path)) {
    const known = listSavepoints(savepointsRoot).map((s) => s.name);
    throw new ConfigError(
      `savepoint "${name}" not found in ${savepointsRoot}${known.length ? ` (known: ${known.join(', ')})` : ' (there are none)'}`,
    );
  }
  const parsed = manifestSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success) throw new ConfigError(`${path} is not a valid savepoint manifest: ${parsed.error.issues[0]?.message ?? 'unknown'}`);
  return parsed.data as SavepointManifest;
}

export function readSavepointPartition(savepointsRoot: string, name: string, partition: number): SnapshotContent {
  const path = join(savepointDir(savepointsRoot, name), `p${partition}.arrow`);
  return decodeSnapshot(readFileSync(path), path);
}

export function listSavepoints(savepointsRoot: string): SavepointManifest[] {
  let names: string[] = [];
  try {
    names = readdirSync(savepointsRoot);
  } catch {
    return [];
  }
  const out: SavepointManifest[] = [];
  for (const n of names) {
    if (!existsSync(join(savepointsRoot, n, 'savepoint.json'))) continue;
    try {
      out.push(readSavepoint(savepointsRoot, n));
    } catch {
      // an unreadable savepoint is listed by `delete` errors, not here
    }
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export function deleteSavepoint(savepointsRoot: string, name: string): void {
  const dir = savepointDir(savepointsRoot, name);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`savepoint "${name}" not found in ${savepointsRoot}`);
  rmSync(dir, { recursive: true, force: true });
}

export interface TakeSavepointOptions {
  log: EventLog;
  name: string;
  version: string;
  topic: string;
  groupId: string;
  checkpointRoot: string;
  savepointsRoot: string;
}

/** Materialises the committed state of every partition into a new savepoint. */
export async function takeSavepoint(o: TakeSavepointOptions): Promise<SavepointManifest> {
  if (!SAVEPOINT_NAME.test(o.name)) throw new ConfigError(`savepoint name "${o.name}" must match ${SAVEPOINT_NAME.source}`);
  const finalDir = savepointDir(o.savepointsRoot, o.name);
  if (existsSync(finalDir))
    throw new ConfigError(`savepoint "${o.name}" already exists in ${o.savepointsRoot}; delete it first or choose another name`);
  const job = readJobMetadata(o.checkpointRoot);
  if (!job)
    throw new ConfigError(
      `no checkpoints for job version "${o.version}" in ${o.checkpointRoot}: has \`lk speed --version ${o.version}\` run with this data dir?`,
    );
  const store = new CheckpointStore(o.checkpointRoot);
  const partitions = await o.log.partitionCount(o.topic);
  const tmpDir = `${finalDir}.tmp-${process.pid}`;
  rmSync(tmpDir, { recursive: true, force: true });
  mkdirSync(tmpDir, { recursive: true });
  const semantics = job.semantics;
  const entries: SavepointManifest['partitions'] = [];
  for (let p = 0; p < partitions; p++) {
    for (let attempt = 1; ; attempt++) {
      const committed = (await o.log.committedOffsets(o.groupId, o.topic))[p] ?? null;
      if (committed === null) {
        entries.push({ partition: p, offset: null, bytes: 0 });
        break;
      }
      try {
        const state = restoreState(p, job.metrics, semantics, { homePartitions: job.homePartitions }, store.readChain(p, committed));
        const bytes = encodeFullSnapshot(state, metricsFingerprint(job.metrics), semantics);
        await writeFileAtomic(join(tmpDir, `p${p}.arrow`), bytes);
        entries.push({ partition: p, offset: committed, bytes: bytes.length });
        break;
      } catch (err) {
        // A running job pruned the chain between our two reads: read the newer commit.
        if (err instanceof MissingCheckpointError && attempt < 10) continue;
        rmSync(tmpDir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const manifest: SavepointManifest = {
    name: o.name,
    version: o.version,
    topic: o.topic,
    groupId: o.groupId,
    partitions: entries,
    homePartitions: job.homePartitions,
    metrics: job.metrics,
    semantics,
    createdAt: new Date().toISOString(),
  };
  writeFileAtomicSync(join(tmpDir, 'savepoint.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  try {
    renameSync(tmpDir, finalDir);
    fsyncDir(o.savepointsRoot);
  } catch (err) {
    rmSync(tmpDir, { recursive: true, force: true });
    throw new InfrastructureError(`cannot publish savepoint ${finalDir}: ${(err as Error).message}`);
  }
  return manifest;
}

export interface RestoreSavepointOptions {
  name: string;
  savepointsRoot: string;
  topic: string;
  version: string;
  /** The topic's partition count now. */
  partitionCount: number;
  definitions: readonly MetricDefinition[];
  semantics: SpeedSemantics;
  placement: Placement;
  metricsFingerprint: string;
  /** The topic's first offsets now (a partition the savepoint has no offset for starts there). */
  beginnings: readonly number[];
  store: CheckpointStore;
  /** Commits the group's offset for a partition (in the partition's transactional producer, which fences its owner). */
  commitOffset(partition: number, offset: number): Promise<void>;
}

/**
 * Sets a job version's state from a savepoint: checks that it may (same topic, compatible metric
 * definitions and semantics, same home partitions), then per partition writes the savepoint's
 * state, re-encoded under the current definitions, as the checkpoint at its offset and commits
 * that offset for the group. The job then starts normally and restores exactly that. Returns the
 * offsets set, per partition of the savepoint.
 */
export async function restoreFromSavepoint(o: RestoreSavepointOptions): Promise<(number | null)[]> {
  const sp = readSavepoint(o.savepointsRoot, o.name);
  if (sp.topic !== o.topic) throw new ConfigError(`savepoint "${o.name}" was taken on topic "${sp.topic}", not "${o.topic}"`);
  if (sp.partitions.length > o.partitionCount) {
    throw new ConfigError(
      `savepoint "${o.name}" holds ${sp.partitions.length} partitions, topic "${o.topic}" has ${o.partitionCount}; state is per partition`,
    );
  }
  if (sp.homePartitions !== undefined && sp.homePartitions !== o.placement.homePartitions) {
    throw new ConfigError(
      `savepoint "${o.name}" counted misplaced events among ${sp.homePartitions} home partitions, version "${o.version}" among ${o.placement.homePartitions}; start it into a version created with the same partition count`,
    );
  }
  const label = `savepoint "${o.name}"`;
  const compat = compareDefinitions(sp.metrics, o.definitions, label);
  const problems = [...compat.problems, ...compareSemantics(sp.semantics, o.semantics, label)];
  if (problems.length > 0) throw new ConfigError(`cannot start from savepoint: ${problems.join('; ')}`);
  for (const note of compat.notes) logger.warn({ note, savepoint: o.name }, 'metric definitions changed compatibly since the savepoint');
  for (const entry of sp.partitions) {
    const p = entry.partition;
    let state: PartitionState;
    let position: number;
    if (entry.offset === null) {
      position = o.beginnings[p] ?? 0;
      state = new PartitionState(p, o.definitions, o.semantics, o.placement);
      state.position = position;
    } else {
      // Re-encoded under the current definitions: dropped metrics and granularities go away here.
      state = restoreState(p, o.definitions, o.semantics, o.placement, [readSavepointPartition(o.savepointsRoot, o.name, p)]);
      position = entry.offset;
    }
    await o.store.write(p, position, encodeFullSnapshot(state, o.metricsFingerprint, o.semantics));
    await o.commitOffset(p, position);
  }
  return sp.partitions.map((e) => e.offset);
}
