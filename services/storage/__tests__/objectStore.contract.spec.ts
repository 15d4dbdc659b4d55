/**
 * The object store contract, run against both implementations: a local folder and a real S3
 * server (versitygw, started by this file). The protocols built on the store (the Delta log's
 * create-only commits, the DEFAULT pointer's compare-and-swap, checkpoint snapshots under
 * create-only names) rely on exactly these answers, so they are proven here of the server the
 * tests and the compose stack use, including under concurrency.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../../test/s3.ts';
import { LocalObjectStore } from '../localObjectStore.ts';
import { listAll, type ObjectStore } from '../objectStore.ts';
import { openObjectStore, parseStorageLocation, s3SettingsFromEnv } from '../storageLocation.ts';

let s3: TestS3;
const local = tempDir('lk-store-');

beforeAll(async () => {
  s3 = await startTestS3(['contract']);
});

afterAll(async () => {
  await s3?.stop();
  local.remove();
});

const stores: [string, () => Promise<ObjectStore>][] = [
  ['local folder', async () => new LocalObjectStore(join(local.path, randomBytes(4).toString('hex')))],
  [
    'S3 (versitygw)',
    async () => openObjectStore(`s3://contract/run-${randomBytes(4).toString('hex')}`, 'test', { ...process.env, ...s3.env }),
  ],
];

describe.each(stores)('object store contract: %s', (_name, open) => {
  it('puts, gets and heads an object; a replacement changes its etag', async () => {
    const store = await open();
    expect(await store.get('a/b.json')).toBeUndefined();
    expect(await store.head('a/b.json')).toBeUndefined();
    const first = await store.put('a/b.json', '{"v":1}');
    expect(first.ok).toBe(true);
    const got = await store.get('a/b.json');
    expect(got?.bytes.toString()).toBe('{"v":1}');
    expect(got?.size).toBe(7);
    const head = await store.head('a/b.json');
    expect(head?.etag).toBe(got?.etag);
    expect(first.ok && first.etag).toBe(got?.etag);
    const second = await store.put('a/b.json', '{"v":22}');
    expect(second.ok && second.etag).not.toBe(got?.etag);
    expect((await store.get('a/b.json'))?.bytes.toString()).toBe('{"v":22}');
  });

  it('create-only (If-None-Match: *) refuses a key that exists and leaves it untouched', async () => {
    const store = await open();
    expect(await store.put('log/00001.json', 'first', { ifAbsent: true })).toMatchObject({ ok: true });
    expect(await store.put('log/00001.json', 'second', { ifAbsent: true })).toEqual({ ok: false, reason: 'exists' });
    expect((await store.get('log/00001.json'))?.bytes.toString()).toBe('first');
  });

  it('of 16 concurrent creates of one key exactly one wins, and its content is the one stored', async () => {
    const store = await open();
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) => store.put('race/commit.json', `writer-${i}`, { ifAbsent: true })),
    );
    const winners = results.flatMap((r, i) => (r.ok ? [i] : []));
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.reason === 'exists')).toBe(true);
    expect((await store.get('race/commit.json'))?.bytes.toString()).toBe(`writer-${winners[0]}`);
  });

  it('compare-and-swap (If-Match) replaces only the version read', async () => {
    const store = await open();
    const v1 = await store.put('DEFAULT', 'v1');
    if (!v1.ok) throw new Error('unconditional put failed');
    const v2 = await store.put('DEFAULT', 'v2', { ifMatch: v1.etag });
    expect(v2.ok).toBe(true);
    // A writer that read v1 and is late loses.
    expect(await store.put('DEFAULT', 'stale', { ifMatch: v1.etag })).toEqual({ ok: false, reason: 'changed' });
    expect((await store.get('DEFAULT'))?.bytes.toString()).toBe('v2');
    // A key that does not exist matches no tag.
    expect(await store.put('missing', 'x', { ifMatch: v1.etag })).toEqual({ ok: false, reason: 'changed' });
    expect(await store.get('missing')).toBeUndefined();
  });

  it('of 16 concurrent swaps from the same version exactly one wins', async () => {
    const store = await open();
    const base = await store.put('pointer', 'base');
    if (!base.ok) throw new Error('unconditional put failed');
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => store.put('pointer', `promoter-${i}`, { ifMatch: base.etag })));
    const winners = results.flatMap((r, i) => (r.ok ? [i] : []));
    expect(winners).toHaveLength(1);
    expect((await store.get('pointer'))?.bytes.toString()).toBe(`promoter-${winners[0]}`);
  });

  it('lists by prefix in key order, across pages, after a given key', async () => {
    const store = await open();
    const keys = Array.from({ length: 1010 }, (_, i) => `many/${String(i).padStart(5, '0')}.json`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, k)));
    await store.put('manyother/x', 'x');
    await store.put('other/y', 'y');
    const listed = (await listAll(store, 'many/')).map((o) => o.key);
    expect(listed).toEqual(keys);
    const after = (await listAll(store, 'many/', { startAfter: 'many/01000.json' })).map((o) => o.key);
    expect(after).toEqual(keys.slice(1001));
    expect((await listAll(store, 'many')).length).toBe(1011);
    expect((await listAll(store, 'nothing-here/')).length).toBe(0);
    const all = await listAll(store, '');
    expect(all.map((o) => o.key)).toContain('other/y');
    expect(all.every((o) => o.size > 0 && o.etag !== '')).toBe(true);
  });

  it('uploads and downloads files whole; deletes are idempotent', async () => {
    const store = await open();
    const dir = tempDir('lk-store-files-');
    try {
      const bytes = randomBytes(5 * 1024 * 1024 + 17);
      const src = join(dir.path, 'src.bin');
      writeFileSync(src, bytes);
      expect(await store.putFile('files/big.bin', src, { ifAbsent: true })).toMatchObject({ ok: true });
      expect(await store.putFile('files/big.bin', src, { ifAbsent: true })).toEqual({ ok: false, reason: 'exists' });
      const dst = join(dir.path, 'out', 'big.bin');
      expect(await store.download('files/big.bin', dst)).toBe(true);
      expect(readFileSync(dst).equals(bytes)).toBe(true);
      expect(await store.download('files/none.bin', join(dir.path, 'none.bin'))).toBe(false);
      await store.delete('files/big.bin');
      await store.delete('files/big.bin');
      expect(await store.head('files/big.bin')).toBeUndefined();
    } finally {
      dir.remove();
    }
  });

  it('a child store sees only its prefix', async () => {
    const store = await open();
    await store.put('lake/events/_delta_log/0.json', '{}');
    await store.put('lake/other/x', 'x');
    const child = store.child('lake/events');
    expect((await listAll(child, '')).map((o) => o.key)).toEqual(['_delta_log/0.json']);
    expect((await child.get('_delta_log/0.json'))?.bytes.toString()).toBe('{}');
  });

  it('refuses keys that could escape its root', async () => {
    const store = await open();
    for (const bad of ['', '/abs', 'a/../b', 'a//b', './a', 'a\\b', 'x.cas-lock', 'y.tmp-12-deadbeef']) {
      await expect(store.put(bad, 'x'), bad).rejects.toThrow(/invalid object key/);
    }
  });
});

describe('the S3 server itself', () => {
  it('answers 412 to a second PutObject with If-None-Match: * (the commit protocols depend on it)', async () => {
    const settings = s3SettingsFromEnv({ ...s3.env });
    const client = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint!,
      forcePathStyle: true,
      credentials: { accessKeyId: settings.accessKeyId!, secretAccessKey: settings.secretAccessKey! },
    });
    const put = () => client.send(new PutObjectCommand({ Bucket: 'contract', Key: 'raw/once', Body: 'x', IfNoneMatch: '*' }));
    await put();
    const err = await put().then(
      () => undefined,
      (e: { $metadata?: { httpStatusCode?: number } }) => e,
    );
    expect(err?.$metadata?.httpStatusCode).toBe(412);
    client.destroy();
  });

  it('names the bucket, not the secret, when the bucket is missing or the credentials are wrong', async () => {
    const missing = await openObjectStore('s3://no-such-bucket/x', 'test', { ...process.env, ...s3.env });
    await expect(missing.put('k', 'v')).rejects.toThrow(/bucket "no-such-bucket" does not exist/);
    const wrong = await openObjectStore('s3://contract/x', 'test', {
      ...process.env,
      ...s3.env,
      AWS_SECRET_ACCESS_KEY: 'definitely-wrong-secret',
    });
    const err = await wrong.put('k', 'v').catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/refused the credentials/);
    expect((err as Error).message).not.toContain('definitely-wrong-secret');
    expect((err as Error).message).not.toContain(s3.env.AWS_SECRET_ACCESS_KEY!);
  });
});

describe('storage locations', () => {
  it('parses local paths, file:// URLs and s3://bucket/prefix, and refuses the rest with the flag named', () => {
    expect(parseStorageLocation('s3://my-bucket/some/prefix/', '--lake-uri')).toEqual({
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'some/prefix',
    });
    expect(parseStorageLocation('s3://my-bucket', '--lake-uri')).toEqual({ kind: 's3', bucket: 'my-bucket', prefix: '' });
    expect(parseStorageLocation('file:///tmp/lake', '--lake-uri')).toEqual({ kind: 'local', path: '/tmp/lake' });
    expect(parseStorageLocation('/data/lake', '--lake-uri')).toEqual({ kind: 'local', path: '/data/lake' });
    expect(() => parseStorageLocation('gs://b/x', '--lake-uri')).toThrow(/--lake-uri .*only local paths, file:\/\/ and s3:\/\//);
    expect(() => parseStorageLocation('s3://Bad_Bucket/x', '--state-uri')).toThrow(/--state-uri .*not a valid bucket name/);
    expect(() => parseStorageLocation('s3://bucket/a/../b', '--state-uri')).toThrow(/segment/);
  });

  it('reads the standard AWS settings, path-style for an endpoint, and refuses half credentials', () => {
    const s = s3SettingsFromEnv({ AWS_ENDPOINT_URL: 'http://127.0.0.1:9000/', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' });
    expect(s).toMatchObject({ endpoint: 'http://127.0.0.1:9000', region: 'us-east-1', pathStyle: true, maxAttempts: 3 });
    expect(s3SettingsFromEnv({ AWS_REGION: 'eu-west-1' })).toMatchObject({ endpoint: undefined, region: 'eu-west-1', pathStyle: false });
    expect(() => s3SettingsFromEnv({ AWS_ACCESS_KEY_ID: 'a' })).toThrow(/both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
    expect(() => s3SettingsFromEnv({ AWS_ENDPOINT_URL: 'ftp://x' })).toThrow(/AWS_ENDPOINT_URL/);
    expect(() => s3SettingsFromEnv({ AWS_SECRET_ACCESS_KEY: 'very-secret', AWS_ACCESS_KEY_ID: 'k', AWS_MAX_ATTEMPTS: 'lots' })).not.toThrow(
      /very-secret/,
    );
  });

  it('the local store never lists its own temporary and lock files', async () => {
    const dir = tempDir('lk-store-reserved-');
    try {
      const store = new LocalObjectStore(dir.path);
      await store.put('d/real', 'r');
      mkdirSync(join(dir.path, 'd'), { recursive: true });
      writeFileSync(join(dir.path, 'd', 'real.tmp-123-abcdef01'), 'partial');
      writeFileSync(join(dir.path, 'd', 'real.cas-lock'), '1 host token');
      expect((await listAll(store, 'd/')).map((o) => o.key)).toEqual(['d/real']);
    } finally {
      dir.remove();
    }
  });
});
