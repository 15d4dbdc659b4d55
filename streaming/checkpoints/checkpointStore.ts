/**
 * The checkpoint store of one job version: `speed/checkpoints/<version>/` in the shared state
 * (`--state-uri`: a local folder or an S3 bucket), shared by the version's instances on every
 * host, as Flink jobs share their checkpoint storage. Its rules, argued in docs/speed-layer.md
 * ("Checkpoints on shared storage"), are all here:
 *
 *   p<k>/<position>-f.arrow                a full snapshot of partition k's state at <position>
 *   p<k>/<position>-d<hash>.arrow          a delta on the snapshot whose name hashes to <hash>
 *   p<k>/<position>-s<hash>.arrow          a full snapshot written by a savepoint restore
 *   p<k>/<position>.arrow                  written before names carried their chain (read only)
 *   job.json                               what the state was built with (jobMetadata.ts)
 *
 * - A snapshot is written create-only before the Kafka transaction that commits its offset, and
 *   that commit carries the snapshot's name as the offset's metadata. What a restart or a
 *   takeover reads is exactly what Kafka committed: the name in the metadata, then each delta's
 *   base by the name in its header. Nothing is listed to find it.
 * - A name fixes the whole chain under it (a delta's name hashes its base's name, which hashes
 *   its own base's...). The state at a position is a function of the partition's records before
 *   it, so two writers of one name wrote the same state over the same base files: the second
 *   create finds the name taken and changes nothing. Deltas whose bases differ have different
 *   names, so a delta never lands on a chain that is not its own.
 * - Pruning: after its own commit, an owner deletes what its previous chain held and its new one
 *   does not (nobody else can need those: every later chain extends the committed one). Now and
 *   then it also sweeps the orphans of crashed or fenced writers, but only after reading the
 *   group's committed offset afresh and finding its own, and only snapshots written by the job
 *   (not by a savepoint restore) that are below that offset, not in its chain, and older than
 *   the committed snapshot itself. docs/speed-layer.md argues why no committed chain, and no
 *   chain a later owner builds, loses a file to it, even when the sweeper is a zombie.
 */
import { createHash } from 'node:crypto';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import type { CommittedOffset } from '../../services/log/eventLog.ts';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { PartitionState, type Placement, type SpeedSemantics } from '../state/partitionState.ts';
import { decodeSnapshot, readSnapshotHeader, type SnapshotContent, type SnapshotHeader } from './snapshotCodec.ts';

/** A snapshot's name: its position, then f (full), d<hash of its base's name> (delta), s<hash> (restored from a savepoint). */
const SNAPSHOT_NAME = /^(\d+)(?:-(f|d[0-9a-f]{16}|s[0-9a-f]{16}))?$/;
/** Snapshots of one chain read at once by a restore. */
const CHAIN_READS_AT_ONCE = 8;

/** `fn` over `items`, at most `limit` at a time, results in order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}
const METADATA_PREFIX = 'snapshot=';

export class MissingCheckpointError extends InfrastructureError {
  override name = 'MissingCheckpointError';
}

/** The snapshot a committed offset names. */
export interface CommittedCheckpoint {
  offset: number;
  name: string;
}

function hash16(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** The name of a snapshot the job writes at `position`: full, or a delta on `baseName`. */
export function snapshotName(position: number, header: Pick<SnapshotHeader, 'kind' | 'baseName'>): string {
  if (header.kind === 'full') return `${position}-f`;
  if (!header.baseName) throw new InfrastructureError(`a delta snapshot at ${position} has no base name`);
  return `${position}-d${hash16(header.baseName)}`;
}

/** The name of the full snapshot a savepoint restore writes at `position` (two restores of one savepoint write the same). */
export function restoredSnapshotName(position: number, savepoint: string): string {
  return `${position}-s${hash16(savepoint)}`;
}

export function positionOfName(name: string): number {
  const m = SNAPSHOT_NAME.exec(name);
  if (!m) throw new InfrastructureError(`"${name}" is not a checkpoint snapshot name`);
  return Number(m[1]);
}

/** The offset's metadata in the commit of a checkpoint. */
export function checkpointMetadata(name: string): string {
  return `${METADATA_PREFIX}${name}`;
}

/** The snapshot a committed offset names (a commit without metadata, of an older release: the snapshot named by the offset). */
export function committedCheckpoint(committed: CommittedOffset | null): CommittedCheckpoint | null {
  if (committed === null) return null;
  const { offset, metadata } = committed;
  if (!metadata.startsWith(METADATA_PREFIX)) return { offset, name: String(offset) };
  const name = metadata.slice(METADATA_PREFIX.length);
  if (!SNAPSHOT_NAME.test(name) || positionOfName(name) !== offset)
    throw new InfrastructureError(`the committed offset ${offset} names "${name}", which is not a checkpoint of that offset`);
  return { offset, name };
}

/** The name of a snapshot's base (the header's name, or for older snapshots its position). */
function baseNameOf(header: SnapshotHeader): string | null {
  if (header.kind !== 'delta') return null;
  return header.baseName ?? String(header.base);
}

export interface StoredChain {
  /** Snapshot names, the full base first. */
  names: string[];
  /** Their bytes, in the same order (decoded where the state is restored). */
  buffers: Buffer[];
}

export class CheckpointStore {
  /** `store`: the version's folder of checkpoints (`speed/checkpoints/<version>` of the shared state). */
  constructor(readonly store: ObjectStore) {}

  get location(): string {
    return this.store.location;
  }

  keyOf(partition: number, name: string): string {
    return `p${partition}/${name}.arrow`;
  }

  /** Creates the snapshot `name` (create-only). False when the name was taken: by the argument above, by the same state. */
  async write(partition: number, name: string, bytes: Uint8Array): Promise<boolean> {
    return (await this.store.put(this.keyOf(partition, name), bytes, { ifAbsent: true })).ok;
  }

  async exists(partition: number, name: string): Promise<boolean> {
    return (await this.store.head(this.keyOf(partition, name))) !== undefined;
  }

  async readBytes(partition: number, name: string): Promise<Buffer> {
    const key = this.keyOf(partition, name);
    const object = await this.store.get(key).catch((err: unknown) => {
      throw new InfrastructureError(`cannot read checkpoint ${this.location}/${key}: ${errorMessage(err)}`, { cause: err });
    });
    if (!object) throw new MissingCheckpointError(`checkpoint ${this.location}/${key} is missing`);
    return object.bytes;
  }

  /**
   * The snapshots that describe the committed offset, read by name (the full base first): the
   * head, then every base its header lists, read side by side (older snapshots name only their
   * base: then one after another).
   */
  async readChain(partition: number, head: CommittedCheckpoint): Promise<StoredChain> {
    const headBytes = await this.readBytes(partition, head.name);
    const header = readSnapshotHeader(headBytes, `${this.location}/${this.keyOf(partition, head.name)}`);
    if (header.kind === 'delta' && header.chain !== undefined && header.chain.length > 0 && header.chain.at(-1) === header.baseName) {
      const bases = await mapLimited(header.chain, CHAIN_READS_AT_ONCE, (name) => this.readBytes(partition, name));
      // Each base must stand on the one before it, as its name says (a name fixes its chain).
      bases.forEach((bytes, i) => {
        const h = readSnapshotHeader(bytes, `${this.location}/${this.keyOf(partition, header.chain![i]!)}`);
        if ((i === 0 ? null : header.chain![i - 1]!) !== baseNameOf(h))
          throw new InfrastructureError(`checkpoint chain of ${head.name} (partition ${partition}) is inconsistent at ${header.chain![i]}`);
      });
      return { names: [...header.chain, head.name], buffers: [...bases, headBytes] };
    }
    const names: string[] = [head.name];
    const buffers: Buffer[] = [headBytes];
    let name: string | null = baseNameOf(header);
    while (name !== null) {
      const bytes = await this.readBytes(partition, name);
      names.unshift(name);
      buffers.unshift(bytes);
      name = baseNameOf(readSnapshotHeader(bytes, `${this.location}/${this.keyOf(partition, name)}`));
      if (names.length > 10_000)
        throw new InfrastructureError(`checkpoint chain of partition ${partition} does not end in a full snapshot`);
    }
    return { names, buffers };
  }

  /** The chain decoded (savepoints read it in the main thread). */
  async readDecodedChain(partition: number, head: CommittedCheckpoint): Promise<SnapshotContent[]> {
    const chain = await this.readChain(partition, head);
    return chain.buffers.map((b, i) => decodeSnapshot(b, `${this.location}/${this.keyOf(partition, chain.names[i]!)}`));
  }

  /** Deletes snapshots known to be in no chain any more (see the file comment). */
  async deleteSnapshots(partition: number, names: Iterable<string>): Promise<void> {
    for (const name of names) await this.store.delete(this.keyOf(partition, name));
  }

  /**
   * Sweeps the orphans of partition `partition` below the committed snapshot `committed`, which
   * the caller has just read afresh from the group and found to be its own: snapshots the job
   * wrote (not restored from a savepoint), below its position, not in `keep`, and older than it.
   * Returns the names deleted.
   */
  async sweep(partition: number, committed: CommittedCheckpoint, keep: ReadonlySet<string>): Promise<string[]> {
    const prefix = `p${partition}/`;
    const listed = [];
    for await (const o of this.store.list(prefix)) listed.push(o);
    const head = listed.find((o) => o.key === this.keyOf(partition, committed.name));
    if (!head) return [];
    const deleted: string[] = [];
    for (const o of listed) {
      const name = o.key.slice(prefix.length).replace(/\.arrow$/, '');
      const m = SNAPSHOT_NAME.exec(name);
      if (!m || !o.key.endsWith('.arrow')) continue;
      const restored = m[2]?.startsWith('s') === true;
      if (restored || keep.has(name) || Number(m[1]) >= committed.offset || o.lastModified >= head.lastModified) continue;
      await this.store.delete(o.key);
      deleted.push(name);
    }
    return deleted;
  }
}

/** Rebuilds a partition's state from a snapshot chain under (possibly changed, compatible) definitions. */
export function restoreState(
  partition: number,
  defs: readonly MetricDefinition[],
  semantics: SpeedSemantics,
  placement: Placement,
  chain: readonly SnapshotContent[],
): PartitionState {
  const state = new PartitionState(partition, defs, semantics, placement);
  const slots = state.slotIndex();
  for (const snap of chain) {
    for (const w of snap.windows) state.restoreWindow(w, slots);
    state.dedup.restore(snap.dedup);
    state.restoreMeta(snap.header);
  }
  state.finishRestore();
  return state;
}
