/**
 * The checkpoint store: `<checkpoints>/<version>/p<partition>/<position>.arrow`, shared by all
 * speed instances of a job version (they must share the data dir, as Flink jobs share their
 * checkpoint storage), plus `job.json` with the metric definitions the state was built with.
 *
 * A snapshot is written through services/storage/atomicFile.ts (temporary file, fsync, rename,
 * fsync of the directory): a crash mid-write leaves either no file or a complete one (and the CRC
 * catches the rest).
 * Snapshots are full or delta (changes since a base snapshot); restoring position N reads the
 * chain back to its full base. The file named N always describes the same state whoever wrote it
 * (the state is a function of the partition's records before N), so a zombie writer can only
 * rename an equivalent file over it.
 */
import { readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import type { MetricDefinition } from '../../services/metrics/definitions.ts';
import { isStaleTempName, writeFileAtomic } from '../../services/storage/atomicFile.ts';
import { PartitionState, type Placement, type SpeedSemantics } from '../state/partitionState.ts';
import { decodeSnapshot, type SnapshotContent } from './snapshotCodec.ts';

const SNAPSHOT = /^(\d+)\.arrow$/;

export class MissingCheckpointError extends InfrastructureError {
  override name = 'MissingCheckpointError';
}

export class CheckpointStore {
  constructor(readonly root: string) {}

  partitionDir(partition: number): string {
    return join(this.root, `p${partition}`);
  }

  pathOf(partition: number, position: number): string {
    return join(this.partitionDir(partition), `${position}.arrow`);
  }

  async write(partition: number, position: number, bytes: Uint8Array): Promise<void> {
    await writeFileAtomic(this.pathOf(partition, position), bytes, 'speed.checkpoint.before-snapshot-rename');
  }

  positions(partition: number): number[] {
    let names: string[] = [];
    try {
      names = readdirSync(this.partitionDir(partition));
    } catch {
      return [];
    }
    return names
      .map((n) => SNAPSHOT.exec(n)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
  }

  read(partition: number, position: number): SnapshotContent {
    const path = this.pathOf(partition, position);
    let bytes: Buffer;
    try {
      bytes = readFileSync(path);
    } catch (err) {
      throw new MissingCheckpointError(`checkpoint ${path} is missing (${errorMessage(err)})`);
    }
    return decodeSnapshot(bytes, path);
  }

  /** The snapshots that describe `position`, oldest (the full base) first. */
  readChain(partition: number, position: number): SnapshotContent[] {
    const chain: SnapshotContent[] = [];
    let at: number | null = position;
    while (at !== null) {
      const snap = this.read(partition, at);
      chain.unshift(snap);
      at = snap.header.kind === 'delta' ? snap.header.base : null;
      if (chain.length > 10_000)
        throw new InfrastructureError(`checkpoint chain of partition ${partition} does not end in a full snapshot`);
    }
    return chain;
  }

  /** Deletes snapshots below `below` that are not in `keep`, and stale temp files. */
  prune(partition: number, keep: ReadonlySet<number>, below: number): void {
    const dir = this.partitionDir(partition);
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const m = SNAPSHOT.exec(name);
      if (m) {
        const n = Number(m[1]);
        if (n < below && !keep.has(n)) unlinkSync(join(dir, name));
      } else if (isStaleTempName(name)) {
        // A temp file of a process that died mid-write.
        rmSync(join(dir, name), { force: true });
      }
    }
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
