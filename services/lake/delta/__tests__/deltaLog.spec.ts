/**
 * The Delta log module against its protocol, on a local folder and on a real S3 server
 * (versitygw): actions read and written as PROTOCOL.md spells them, snapshot reconciliation,
 * checkpoints (read back without the JSON commits they cover, a stale `_last_checkpoint`), time
 * travel, the conflict rule of every commit kind with writers racing for versions, vacuum, and the
 * protocol versions and features it refuses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalObjectStore } from '../../../storage/localObjectStore.ts';
import { listAll, type ObjectStore } from '../../../storage/objectStore.ts';
import { openObjectStore } from '../../../storage/storageLocation.ts';
import { startTestS3, type TestS3 } from '../../../../test/s3.ts';
import { tempDir } from '../../../../test/helpers.ts';
import { checkpointKey, commitKey, LAST_CHECKPOINT, parseCommit, serializeCommit, type AddAction } from '../actions.ts';
import { DeltaConflictError, DeltaLog, unsupportedProtocol, type AppendClaim } from '../deltaLog.ts';

const PROTOCOL = { minReaderVersion: 1, minWriterVersion: 2 };
const SCHEMA = JSON.stringify({
  type: 'struct',
  fields: [
    { name: 'v', type: 'long', nullable: true, metadata: {} },
    { name: 'dt', type: 'date', nullable: true, metadata: {} },
  ],
});
const METADATA = {
  id: '00000000-0000-4000-8000-000000000001',
  format: { provider: 'parquet', options: {} },
  schemaString: SCHEMA,
  partitionColumns: ['dt'],
  configuration: { 'delta.checkpointInterval': '10', 'delta.deletedFileRetentionDuration': 'interval 1 hours' },
};
const ok = () => undefined;

function add(path: string, size = 10): AddAction {
  return { path, partitionValues: { dt: '2026-01-01' }, size, modificationTime: 1, dataChange: true };
}

function claim(appId: string, from: number | undefined, to: number, paths: string[] = []): AppendClaim {
  return { appId, from, to, adds: paths.map((p) => add(p)), companions: [] };
}

const dir = tempDir('lk-delta-log-');
let s3: TestS3;

beforeAll(async () => {
  s3 = await startTestS3(['delta-test']);
});
afterAll(async () => {
  await s3?.stop();
  dir.remove();
});

let tables = 0;
const stores: [string, () => Promise<ObjectStore>][] = [
  ['local folder', async () => new LocalObjectStore(`${dir.path}/t${++tables}`)],
  ['S3 server', async () => openObjectStore(`s3://delta-test/t${++tables}`, 'test', { ...process.env, ...s3.env })],
];

async function newTable(store: ObjectStore): Promise<DeltaLog> {
  const log = await DeltaLog.open({ store, scratch: `${dir.path}/scratch` });
  await log.commit({ kind: 'create', protocol: PROTOCOL, metaData: METADATA });
  return log;
}

describe('actions as PROTOCOL.md spells them', () => {
  it('reads a delta-rs commit, ignores unknown actions and fields, writes one action a line with commitInfo first', () => {
    const text = [
      '{"commitInfo":{"timestamp":1,"operation":"WRITE","engineInfo":"delta-rs:py-1.6.6"}}',
      '{"add":{"path":"dt=2026-01-01/a.parquet","partitionValues":{"dt":"2026-01-01"},"size":3,"modificationTime":2,"dataChange":true,"stats":null,"tags":null,"baseRowId":null}}',
      '{"domainMetadata":{"domain":"x","configuration":"{}","removed":false}}',
      '{"txn":{"appId":"a","version":7}}',
    ].join('\n');
    const actions = parseCommit(text, 'v.json');
    expect(actions.map((a) => Object.keys(a)[0])).toEqual(['commitInfo', 'add', 'unknown', 'txn']);
    const again = parseCommit(serializeCommit([...actions].reverse()), 'again');
    expect(Object.keys(again[0]!)[0]).toBe('commitInfo');
    expect(again).toHaveLength(3);
  });

  it('refuses a malformed action and names the file and line', () => {
    expect(() => parseCommit('{"add":{"path":"x","size":-1}}', '_delta_log/00000000000000000003.json')).toThrow(
      /_delta_log\/00000000000000000003\.json, line 1: invalid add action/,
    );
    expect(() => parseCommit('{"add":{},"txn":{}}', 'f')).toThrow(/exactly one key/);
  });
});

describe.each(stores)('the Delta log on a %s', (_name, makeStore) => {
  it('creates a table once; a second create finds it and commits nothing', async () => {
    const store = await makeStore();
    const a = await newTable(store);
    const b = await DeltaLog.open({ store, scratch: `${dir.path}/scratch` });
    const again = await b.commit({ kind: 'create', protocol: PROTOCOL, metaData: { ...METADATA, id: 'other' } });
    expect(again.version).toBeUndefined();
    expect(a.current!.version).toBe(0);
    expect(b.current!.metadata!.id).toBe(METADATA.id);
    const zero = parseCommit((await store.get(commitKey(0)))!.bytes.toString(), 'v0');
    expect(zero.map((x) => Object.keys(x)[0])).toEqual(['commitInfo', 'protocol', 'metaData']);
  });

  it('an append continues, is covered, overlaps or finds the table gone back, by its txn (ConcurrentTransaction)', async () => {
    const store = await makeStore();
    const log = await newTable(store);
    const first = await log.commit({
      kind: 'append',
      claims: [claim('p0', undefined, 100, ['a']), claim('p1', undefined, 50, ['b'])],
      compatible: ok,
    });
    expect(first.version).toBe(1);
    expect(first.kept).toHaveLength(2);
    // A retried append of the same range: already covered, nothing committed.
    const retried = await log.commit({ kind: 'append', claims: [claim('p0', undefined, 100, ['a2'])], compatible: ok });
    expect(retried.version).toBeUndefined();
    expect(retried.covered.map((c) => c.appId)).toEqual(['p0']);
    // One claim continues, one overlaps in part (built on 0, the table is at 50 already).
    const mixed = await log.commit({
      kind: 'append',
      claims: [claim('p0', 100, 150, ['c']), claim('p1', undefined, 80, ['d'])],
      compatible: ok,
    });
    expect(mixed.version).toBe(2);
    expect(mixed.kept.map((c) => c.appId)).toEqual(['p0']);
    expect(mixed.overlapped.map((o) => [o.claim.appId, o.at])).toEqual([['p1', 50]]);
    expect([...log.current!.files.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect(log.current!.txnVersion('p0')).toBe(150);
    // Built on 200 while the table says 150: the table went back under the writer.
    await expect(log.commit({ kind: 'append', claims: [claim('p0', 200, 300, ['e'])], compatible: ok })).rejects.toThrow(/went back/);
  });

  it('racing writers: every commit lands once (no lost commit), each on its own version', async () => {
    const store = await makeStore();
    await newTable(store);
    const writers = await Promise.all(Array.from({ length: 6 }, () => DeltaLog.open({ store, scratch: `${dir.path}/scratch` })));
    // Each writer appends 4 times to its own source; all race for the same versions.
    const outcomes = await Promise.all(
      writers.map(async (w, i) => {
        const done = [];
        for (let k = 0; k < 4; k++)
          done.push(
            await w.commit({
              kind: 'append',
              claims: [claim(`w${i}`, k === 0 ? undefined : k * 10, (k + 1) * 10, [`w${i}-${k}`])],
              compatible: ok,
            }),
          );
        return done;
      }),
    );
    const versions = outcomes.flat().map((o) => o.version);
    expect(new Set(versions).size).toBe(24);
    const reader = await DeltaLog.open({ store, scratch: `${dir.path}/scratch` });
    expect(reader.current!.files.size).toBe(24);
    for (let i = 0; i < 6; i++) expect(reader.current!.txnVersion(`w${i}`)).toBe(40);
    // Two writers on the same source and range: one commits, the other finds it covered.
    const [x, y] = await Promise.all([
      writers[0]!.commit({ kind: 'append', claims: [claim('shared', undefined, 10, ['s1'])], compatible: ok }),
      writers[1]!.commit({ kind: 'append', claims: [claim('shared', undefined, 10, ['s2'])], compatible: ok }),
    ]);
    expect([x.kept.length, y.kept.length].sort()).toEqual([0, 1]);
    expect([x.covered.length, y.covered.length].sort()).toEqual([0, 1]);
    const files = [...(await reader.refresh())!.files.keys()];
    expect(files.filter((f) => f.startsWith('s'))).toHaveLength(1);
  });

  it('compaction swaps files with dataChange false and aborts when an input is already removed (ConcurrentDeleteRead)', async () => {
    const store = await makeStore();
    const log = await newTable(store);
    await log.commit({ kind: 'append', claims: [claim('p', undefined, 3, ['f1', 'f2', 'f3'])], compatible: ok });
    const other = await DeltaLog.open({ store, scratch: `${dir.path}/scratch` });
    const done = await log.commit({ kind: 'compact', remove: ['f1', 'f2'], add: [add('m12', 20)], compatible: ok });
    const actions = parseCommit((await store.get(commitKey(done.version!)))!.bytes.toString(), 'c');
    expect(actions.filter((a) => 'remove' in a).every((a) => 'remove' in a && a.remove.dataChange === false)).toBe(true);
    expect(actions.filter((a) => 'add' in a).every((a) => 'add' in a && a.add.dataChange === false)).toBe(true);
    // `other` planned from version 1, where f2 was still live.
    const err = await other
      .commit({ kind: 'compact', remove: ['f2', 'f3'], add: [add('m23', 20)], compatible: ok })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeltaConflictError);
    expect((err as DeltaConflictError).conflict).toBe('ConcurrentDeleteRead');
    expect([...(await other.refresh())!.files.keys()].sort()).toEqual(['f3', 'm12']);
    expect([...other.current!.tombstones.keys()].sort()).toEqual(['f1', 'f2']);
    // A commit whose table changed incompatibly is refused (MetadataChanged).
    await expect(log.commit({ kind: 'compact', remove: ['f3'], add: [add('z')], compatible: () => 'schema changed' })).rejects.toThrow(
      /schema changed/,
    );
  });

  it('checkpoints every 10 commits; a reader needs only the checkpoint and the commits after it', async () => {
    const store = await makeStore();
    const log = await newTable(store);
    for (let k = 0; k < 23; k++)
      await log.commit({ kind: 'append', claims: [claim('p', k === 0 ? undefined : k, k + 1, [`f${k}`])], compatible: ok });
    expect(log.current!.version).toBe(23);
    expect(await store.head(checkpointKey(10))).toBeDefined();
    expect(await store.head(checkpointKey(20))).toBeDefined();
    expect(JSON.parse((await store.get(LAST_CHECKPOINT))!.bytes.toString()).version).toBe(20);
    // Metadata cleanup as the protocol allows it: the commits before the checkpoint go.
    for (let v = 0; v < 20; v++) await store.delete(commitKey(v));
    const reader = await DeltaLog.open({ store, scratch: `${dir.path}/scratch` });
    expect(reader.current!.version).toBe(23);
    expect(reader.current!.files.size).toBe(23);
    expect(reader.current!.txnVersion('p')).toBe(23);
    expect(reader.current!.metadata!.id).toBe(METADATA.id);
    // A stale _last_checkpoint (pointing at 10) is only a hint: the newer checkpoint is found.
    await store.put(LAST_CHECKPOINT, JSON.stringify({ version: 10, size: 1 }));
    expect((await DeltaLog.open({ store, scratch: `${dir.path}/scratch` })).current!.files.size).toBe(23);
  });

  it('time travel gives an earlier version exactly', async () => {
    const store = await makeStore();
    const log = await newTable(store);
    for (let k = 0; k < 12; k++)
      await log.commit({ kind: 'append', claims: [claim('p', k === 0 ? undefined : k, k + 1, [`f${k}`])], compatible: ok });
    await log.commit({ kind: 'compact', remove: ['f0', 'f1'], add: [add('m')], compatible: ok });
    const at5 = await log.snapshotAt(5);
    expect([...at5.files.keys()].sort()).toEqual(['f0', 'f1', 'f2', 'f3', 'f4']);
    expect(at5.txnVersion('p')).toBe(5);
    const at11 = await log.snapshotAt(11); // from the checkpoint at 10, then commit 11
    expect(at11.files.size).toBe(11);
    await expect(log.snapshotAt(99)).rejects.toThrow(/no version 99/);
  });

  it('vacuum deletes expired tombstones and old orphans, never a live file, and records it', async () => {
    const store = await makeStore();
    const log = await newTable(store);
    for (const name of ['dt=2026-01-01/live.parquet', 'dt=2026-01-01/old.parquet', 'dt=2026-01-01/orphan.parquet'])
      await store.put(name, 'x');
    await log.commit({
      kind: 'append',
      claims: [claim('p', undefined, 2, ['dt=2026-01-01/live.parquet', 'dt=2026-01-01/old.parquet'])],
      compatible: ok,
    });
    await log.commit({ kind: 'compact', remove: ['dt=2026-01-01/old.parquet'], add: [], compatible: ok });
    // Within the retention nothing goes.
    expect((await log.vacuum({ now: Date.now() + 60_000 })).deleted).toEqual([]);
    const later = Date.now() + 2 * 3_600_000;
    const { deleted } = await log.vacuum({ now: later });
    expect(deleted.sort()).toEqual(['dt=2026-01-01/old.parquet', 'dt=2026-01-01/orphan.parquet']);
    expect((await listAll(store, 'dt=')).map((i) => i.key)).toEqual(['dt=2026-01-01/live.parquet']);
    expect(log.current!.commitInfo?.operation).toBe('VACUUM END');
  });

  it('refuses what it cannot honour: reader features, newer writer versions, invariants', async () => {
    const store = await makeStore();
    const log = await newTable(store);
    const snap = log.current!.clone();
    snap.protocol = { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: ['deletionVectors'], writerFeatures: ['deletionVectors'] };
    expect(unsupportedProtocol(snap, 'read')).toMatch(/reader features \["deletionVectors"\]/);
    snap.protocol = { minReaderVersion: 1, minWriterVersion: 4 };
    expect(unsupportedProtocol(snap, 'read')).toBeUndefined();
    expect(unsupportedProtocol(snap, 'write')).toMatch(/writer version 4/);
    snap.protocol = { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly'] };
    expect(unsupportedProtocol(snap, 'write')).toBeUndefined();
  });
});
