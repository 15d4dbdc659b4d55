/**
 * The checkpoint store's rules (streaming/checkpoints/checkpointStore.ts, argued in
 * docs/speed-layer.md), on a local folder and a real S3 server:
 * - a name fixes its chain: the same name is created once and a second create changes nothing;
 *   a delta over another base gets another name;
 * - a restore reads exactly the chain the committed offset's metadata names (no listing), also
 *   the names of snapshots written before names carried their chain;
 * - the sweep deletes only job-written orphans below the committed offset, outside the kept chain
 *   and older than the committed snapshot: never a savepoint restore's snapshot, never one written
 *   after the committed snapshot (a new owner's, after a savepoint rewound the group), never one
 *   at or above the committed offset.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../test/s3.ts';
import { LocalObjectStore } from '../../services/storage/localObjectStore.ts';
import { listAll, type ObjectStore } from '../../services/storage/objectStore.ts';
import { openObjectStore } from '../../services/storage/storageLocation.ts';
import {
  CheckpointStore,
  MissingCheckpointError,
  checkpointMetadata,
  committedCheckpoint,
  restoredSnapshotName,
  snapshotName,
} from '../checkpoints/checkpointStore.ts';
import { encodeSnapshot, type SnapshotHeader } from '../checkpoints/snapshotCodec.ts';

let s3: TestS3;
const local = tempDir('lk-ckpt-store-');

beforeAll(async () => {
  s3 = await startTestS3(['state']);
});

afterAll(async () => {
  await s3?.stop();
  local.remove();
});

const stores: [string, () => Promise<ObjectStore>][] = [
  ['local folder', async () => new LocalObjectStore(join(local.path, randomBytes(4).toString('hex')))],
  [
    'S3 (versitygw)',
    async () => openObjectStore(`s3://state/run-${randomBytes(4).toString('hex')}`, 'test', { ...process.env, ...s3.env }),
  ],
];

const semantics = { outOfOrdernessMs: 0, dedupHorizonMs: 60_000 };

/** A snapshot of no windows at `position` (the store never looks inside but for the header). */
function snapshot(position: number, base: { position: number; name: string } | null, chain?: string[]): { name: string; bytes: Buffer } {
  const header: SnapshotHeader = {
    partition: 0,
    position,
    lastTimestamp: 0,
    maxTs: 0,
    counters: { events: 0, duplicates: 0, invalid: 0, misplaced: 0, droppedLate: {} },
    format: 3,
    kind: base ? 'delta' : 'full',
    base: base?.position ?? null,
    baseName: base?.name ?? null,
    ...(chain ? { chain } : {}),
    chainLength: 1,
    chainRows: 0,
    metricsFingerprint: 'x',
    semantics,
  };
  const bytes = encodeSnapshot({ header, windows: [], dedup: { length: 0, fingerprints: new Int32Array(0), ts: new Float64Array(0) } });
  return { name: snapshotName(position, header), bytes };
}

/** Object stores stamp writes to the second (S3): a pause that puts later writes in a later second. */
const nextSecond = () => new Promise((r) => setTimeout(r, 1100));

describe.each(stores)('checkpoint store on shared state: %s', (_name, open) => {
  it('a name fixes its chain: created once, a second create changes nothing, another base is another name', async () => {
    const store = new CheckpointStore((await open()).child('speed/checkpoints/v1'));
    const full = snapshot(100, null);
    expect(full.name).toBe('100-f');
    expect(await store.write(0, full.name, full.bytes)).toBe(true);
    expect(await store.write(0, full.name, full.bytes)).toBe(false);
    const delta = snapshot(200, { position: 100, name: full.name });
    const otherFull = snapshot(150, null);
    const deltaOnOther = snapshot(200, { position: 150, name: otherFull.name });
    expect(delta.name).toMatch(/^200-d[0-9a-f]{16}$/);
    expect(deltaOnOther.name).not.toBe(delta.name);
    // Concurrent creates of one name: exactly one writes it.
    const created = await Promise.all(Array.from({ length: 8 }, () => store.write(0, delta.name, delta.bytes)));
    expect(created.filter(Boolean)).toHaveLength(1);
  });

  it('a restore reads the chain the committed metadata names, and older snapshots named by their position', async () => {
    const store = new CheckpointStore((await open()).child('speed/checkpoints/v1'));
    const full = snapshot(100, null);
    const d1 = snapshot(200, { position: 100, name: full.name });
    const d2 = snapshot(300, { position: 200, name: d1.name });
    for (const s of [full, d1, d2]) await store.write(1, s.name, s.bytes);
    const head = committedCheckpoint({ offset: 300, metadata: checkpointMetadata(d2.name) })!;
    expect((await store.readChain(1, head)).names).toEqual([full.name, d1.name, d2.name]);
    // A head that lists its whole chain: read side by side, checked link by link.
    const d3 = snapshot(400, { position: 300, name: d2.name }, [full.name, d1.name, d2.name]);
    await store.write(1, d3.name, d3.bytes);
    const chain = await store.readChain(1, { offset: 400, name: d3.name });
    expect(chain.names).toEqual([full.name, d1.name, d2.name, d3.name]);
    expect(chain.buffers[1]!.equals(d1.bytes)).toBe(true);
    const lying = snapshot(500, { position: 400, name: d3.name }, [full.name, d2.name, d3.name]);
    await store.write(1, lying.name, lying.bytes);
    await expect(store.readChain(1, { offset: 500, name: lying.name })).rejects.toThrow(/inconsistent/);
    // Committed without metadata (an older release): the snapshot is named by the offset, a delta's base by its position.
    const legacyFull = snapshot(100, null);
    const legacyDelta = snapshot(200, { position: 100, name: '100' });
    await store.write(2, '100', legacyFull.bytes);
    await store.write(2, '200', legacyDelta.bytes);
    expect((await store.readChain(2, committedCheckpoint({ offset: 200, metadata: '' })!)).names).toEqual(['100', '200']);
    // A committed offset whose snapshot is gone says so.
    await expect(store.readChain(1, { offset: 400, name: '400-f' })).rejects.toBeInstanceOf(MissingCheckpointError);
    // Metadata that names another offset's snapshot is refused.
    expect(() => committedCheckpoint({ offset: 301, metadata: checkpointMetadata(d2.name) })).toThrow(/not a checkpoint of that offset/);
  });

  it("the sweep deletes only older job-written orphans below the committed offset, outside the owner's chain", async () => {
    const state = await open();
    const store = new CheckpointStore(state.child('speed/checkpoints/v1'));
    const orphan = snapshot(50, null); // a crashed writer's, before the committed chain
    const base = snapshot(100, null);
    const restored = { name: restoredSnapshotName(60, 'sp1'), bytes: snapshot(60, null).bytes }; // a savepoint restore's
    for (const s of [orphan, base, restored]) await store.write(0, s.name, s.bytes);
    await nextSecond();
    const head = snapshot(200, { position: 100, name: base.name });
    await store.write(0, head.name, head.bytes);
    await nextSecond();
    const afterHead = snapshot(150, null); // below the offset but written after it: a new lineage's
    const above = snapshot(250, { position: 200, name: head.name }); // a write in flight
    for (const s of [afterHead, above]) await store.write(0, s.name, s.bytes);
    const deleted = await store.sweep(0, { offset: 200, name: head.name }, new Set([base.name, head.name]));
    expect(deleted).toEqual([orphan.name]);
    const left = (await listAll(state, 'speed/checkpoints/v1/p0/')).map((o) => o.key.split('/').pop()).sort();
    expect(left).toEqual([base, head, restored, afterHead, above].map((s) => `${s.name}.arrow`).sort());
  });
});
