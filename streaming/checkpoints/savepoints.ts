/**
 * Savepoints: `speed/savepoints/<name>/savepoint.json` in the shared state, with the partitions'
 * snapshots beside it (`<name>/<take>/p<k>.arrow`), named and kept until deleted. Any host can
 * take one and any other restore it.
 *
 * A savepoint is taken from the checkpoint store, not from a running process: for each
 * partition, the group's committed offset N and the snapshot chain it names form a committed,
 * consistent state (the 2PC guarantees it), which is materialised as one full snapshot. So
 * `lk speed savepoint` works whether the job runs or not, needs no coordination with running
 * instances, and can never capture uncommitted state. If a running job prunes the chain while it
 * is read, the committed offsets are read again. The partitions are written under a folder of
 * their own take, and the manifest is created last, create-only: of two takes of one name at
 * once, exactly one is published, with its own partitions; the other fails and removes its own.
 *
 * Starting from a savepoint (`lk speed --from-savepoint NAME`) checks the metric definitions
 * (services/versions/metricChanges.ts), then for each partition writes the savepoint's state as the checkpoint at
 * its offset and commits that offset, naming that snapshot, for the group in a transaction of the
 * partition's producer (which fences any running owner). The job then starts normally and
 * restores exactly that. The savepoint's name is recorded in job.json, so that a restart of a
 * process started with the same flag resumes from its latest checkpoint instead of rewinding again.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { z } from 'zod';
import { STATE_KEYS } from '../../services/config/dataDir.ts';
import { ConfigError, InfrastructureError } from '../../services/errors.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import { readStoredJson } from '../../services/storage/jsonFile.ts';
import { listAll, type ObjectStore } from '../../services/storage/objectStore.ts';
import type { CheckpointStore } from './checkpointStore.ts';
import { MissingCheckpointError, committedCheckpoint, restoreState, restoredSnapshotName } from './checkpointStore.ts';
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
  /** The folder of this take's partition snapshots under the savepoint's (absent: beside the manifest, as older savepoints have them). */
  files?: string;
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
  files: z
    .string()
    .regex(/^[a-z0-9-]+$/)
    .optional(),
});

function manifestKey(name: string): string {
  return `${STATE_KEYS.savepoints}/${name}/savepoint.json`;
}

function partitionKey(name: string, files: string | undefined, partition: number): string {
  return `${STATE_KEYS.savepoints}/${name}/${files ? `${files}/` : ''}p${partition}.arrow`;
}

/** Where a savepoint is, for messages. */
export function savepointLocation(state: ObjectStore, name: string): string {
  return `${state.location}/${STATE_KEYS.savepoints}/${name}`;
}

export async function readSavepoint(state: ObjectStore, name: string): Promise<SavepointManifest> {
  let read;
  try {
    read = await readStoredJson(state, manifestKey(name), manifestSchema, 'a savepoint manifest');
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (!read) {
    const known = (await listSavepoints(state)).map((s) => s.name);
    throw new ConfigError(
      `savepoint "${name}" not found in ${state.location}/${STATE_KEYS.savepoints}${known.length ? ` (known: ${known.join(', ')})` : ' (there are none)'}`,
    );
  }
  return read.value as SavepointManifest;
}

export async function readSavepointPartition(state: ObjectStore, sp: SavepointManifest, partition: number): Promise<SnapshotContent> {
  const key = partitionKey(sp.name, sp.files, partition);
  const object = await state.get(key);
  if (!object) throw new InfrastructureError(`savepoint "${sp.name}" lacks ${state.location}/${key}`);
  return decodeSnapshot(object.bytes, `${state.location}/${key}`);
}

export async function listSavepoints(state: ObjectStore): Promise<SavepointManifest[]> {
  const names = (await listAll(state, `${STATE_KEYS.savepoints}/`))
    .map((o) => o.key.slice(STATE_KEYS.savepoints.length + 1).split('/'))
    .filter((parts) => parts.length === 2 && parts[1] === 'savepoint.json')
    .map((parts) => parts[0]!);
  const out: SavepointManifest[] = [];
  for (const n of names) {
    try {
      out.push(await readSavepoint(state, n));
    } catch {
      // an unreadable savepoint is listed by `delete` errors, not here
    }
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** Deletes a savepoint: its manifest first (then it no longer exists for anyone), then its snapshots. */
export async function deleteSavepoint(state: ObjectStore, name: string): Promise<void> {
  const objects = await listAll(state, `${STATE_KEYS.savepoints}/${name}/`);
  if (objects.length === 0) throw new ConfigError(`savepoint "${name}" not found in ${state.location}/${STATE_KEYS.savepoints}`);
  await state.delete(manifestKey(name));
  for (const o of objects) if (o.key !== manifestKey(name)) await state.delete(o.key);
  // On a local folder, the savepoint's empty directories too.
  const folder = state.localPath(`${STATE_KEYS.savepoints}/${name}`);
  if (folder !== undefined) rmSync(folder, { recursive: true, force: true });
}

export interface TakeSavepointOptions {
  log: EventLog;
  name: string;
  version: string;
  topic: string;
  groupId: string;
  /** The shared state (savepoints are kept there). */
  state: ObjectStore;
  /** The version's checkpoints. */
  checkpoints: CheckpointStore;
}

/** Materialises the committed state of every partition into a new savepoint. */
export async function takeSavepoint(o: TakeSavepointOptions): Promise<SavepointManifest> {
  if (!SAVEPOINT_NAME.test(o.name)) throw new ConfigError(`savepoint name "${o.name}" must match ${SAVEPOINT_NAME.source}`);
  const { state } = o;
  if (await state.head(manifestKey(o.name)))
    throw new ConfigError(
      `savepoint "${o.name}" already exists in ${savepointLocation(state, o.name)}; delete it first or choose another name`,
    );
  const job = await readJobMetadata(o.checkpoints.store);
  if (!job)
    throw new ConfigError(
      `no checkpoints for job version "${o.version}" in ${o.checkpoints.location}: has \`lk speed --version ${o.version}\` run with this --state-uri?`,
    );
  const partitions = await o.log.partitionCount(o.topic);
  // This take's own folder: a concurrent take of the same name never mixes its partitions with ours.
  const files = `take-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const written: string[] = [];
  const semantics = job.semantics;
  const entries: SavepointManifest['partitions'] = [];
  try {
    for (let p = 0; p < partitions; p++) {
      for (let attempt = 1; ; attempt++) {
        const committed = committedCheckpoint((await o.log.committedOffsetsWithMetadata(o.groupId, o.topic))[p] ?? null);
        if (committed === null) {
          entries.push({ partition: p, offset: null, bytes: 0 });
          break;
        }
        try {
          const chain = await o.checkpoints.readDecodedChain(p, committed);
          const restored = restoreState(p, job.metrics, semantics, { homePartitions: job.homePartitions }, chain);
          const bytes = encodeFullSnapshot(restored, metricsFingerprint(job.metrics), semantics);
          const key = partitionKey(o.name, files, p);
          await state.put(key, bytes);
          written.push(key);
          entries.push({ partition: p, offset: committed.offset, bytes: bytes.length });
          break;
        } catch (err) {
          // A running job pruned the chain between our two reads: read the newer commit.
          if (err instanceof MissingCheckpointError && attempt < 10) continue;
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
      files,
    };
    const published = await state.put(manifestKey(o.name), `${JSON.stringify(manifest, null, 2)}\n`, { ifAbsent: true });
    if (!published.ok)
      throw new ConfigError(
        `savepoint "${o.name}" was created meanwhile by another process (${savepointLocation(state, o.name)}); choose another name`,
      );
    return manifest;
  } catch (err) {
    for (const key of written) await state.delete(key).catch(() => undefined);
    throw err;
  }
}

export interface RestoreSavepointOptions {
  name: string;
  /** The shared state (where the savepoint is). */
  state: ObjectStore;
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
  /** Commits the group's offset for a partition, naming its snapshot (in the partition's transactional producer, which fences its owner). */
  commitOffset(partition: number, offset: number, snapshot: string): Promise<void>;
}

/**
 * Sets a job version's state from a savepoint: checks that it may (same topic, compatible metric
 * definitions and semantics, same home partitions), then per partition writes the savepoint's
 * state, re-encoded under the current definitions, as the checkpoint at its offset and commits
 * that offset for the group. The job then starts normally and restores exactly that. Returns the
 * offsets set, per partition of the savepoint.
 */
export async function restoreFromSavepoint(o: RestoreSavepointOptions): Promise<(number | null)[]> {
  const sp = await readSavepoint(o.state, o.name);
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
      state = restoreState(p, o.definitions, o.semantics, o.placement, [await readSavepointPartition(o.state, sp, p)]);
      position = entry.offset;
    }
    // A name of its own, which the owners' sweeps never delete (checkpointStore.ts); written
    // again by a second restore of the same savepoint, it holds the same state.
    const name = restoredSnapshotName(position, o.name);
    await o.store.write(p, name, encodeFullSnapshot(state, o.metricsFingerprint, o.semantics));
    await o.commitOffset(p, position, name);
  }
  return sp.partitions.map((e) => e.offset);
}
