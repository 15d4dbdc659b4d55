/**
 * The lease that replaces one-host locks (services/storage/lease.ts), on a local folder and a real
 * S3 server: one holder at a time with a fencing token that grows; a released lease is taken at
 * once; a lease whose holder stopped renewing is taken over after its time to live (of several
 * waiters exactly one); a holder whose lease was taken learns it from its next renewal.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, tempDir } from '../../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../../test/s3.ts';
import { acquireLease } from '../lease.ts';
import { LocalObjectStore } from '../localObjectStore.ts';
import type { ObjectStore } from '../objectStore.ts';
import { openObjectStore } from '../storageLocation.ts';

let s3: TestS3;
const local = tempDir('lk-lease-');

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

describe.each(stores)('lease on shared state: %s', (_name, open) => {
  it('one holder at a time; released, the next waiter takes it at once with a larger token', async () => {
    const store = await open();
    const first = (await acquireLease(store, 'job/lake.lease', { ttlMs: 60_000 }))!;
    expect(first.token).toBe(1);
    let second: Awaited<ReturnType<typeof acquireLease>>;
    const waiting = acquireLease(store, 'job/lake.lease', { ttlMs: 60_000 }).then((l) => (second = l));
    // The waiter cannot have it while the first holds it (it renews well within the ttl).
    await new Promise((r) => setTimeout(r, 300));
    expect(second).toBeUndefined();
    await first.release();
    await waiting;
    expect(second!.token).toBe(2);
    expect(second!.lost.aborted).toBe(false);
    await second!.release();
  });

  it('a lease its holder stopped renewing is taken over after its ttl, by exactly one of several waiters', async () => {
    const store = await open();
    // A holder that died: its lease, never renewed again.
    await store.put('job/lake.lease', JSON.stringify({ holder: 'dead-host 1234', token: 5, released: false }));
    let holding = 0;
    let most = 0;
    const tokens = await Promise.all(
      [1, 2, 3].map(async () => {
        const lease = (await acquireLease(store, 'job/lake.lease', { ttlMs: 300 }))!;
        most = Math.max(most, ++holding);
        await new Promise((r) => setTimeout(r, 50));
        holding--;
        await lease.release();
        return lease.token;
      }),
    );
    // One at a time: the first took it over from the dead holder, the others each after a release.
    expect(most).toBe(1);
    expect(tokens.sort()).toEqual([6, 7, 8]);
  });

  it('a holder whose lease was taken over learns it from its next renewal', async () => {
    const store = await open();
    const holder = (await acquireLease(store, 'job/lake.lease', { ttlMs: 300 }))!;
    // Another process took it (as after a pause of the holder longer than the ttl).
    await store.put('job/lake.lease', JSON.stringify({ holder: 'other', token: holder.token + 1, released: false }));
    await eventually(() => (holder.lost.aborted ? true : undefined), 'the holder to learn it lost the lease');
    await holder.release();
    // Its release does not touch the new holder's lease.
    expect(JSON.parse((await store.get('job/lake.lease'))!.bytes.toString())).toMatchObject({ holder: 'other', released: false });
  });

  it('a waiter that is stopping gives up', async () => {
    const store = await open();
    const holder = (await acquireLease(store, 'job/lake.lease', { ttlMs: 60_000 }))!;
    let stop = false;
    const waiting = acquireLease(store, 'job/lake.lease', { ttlMs: 60_000, stopped: () => stop });
    stop = true;
    expect(await waiting).toBeUndefined();
    await holder.release();
  });
});
