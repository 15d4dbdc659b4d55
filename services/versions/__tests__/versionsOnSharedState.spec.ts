/**
 * Version records and the DEFAULT pointer on shared state, a local folder and a real S3 server
 * (versitygw): what hosts that share only a bucket rely on.
 * - Promotions at once, from any number of processes: exactly one wins each round (compare-and-
 *   swap on the pointer's ETag), the others fail with PromotionConflictError and change nothing;
 *   the generations follow one another and `previous` is always the version that really was the
 *   default. Checked against a sequential oracle built from the winners alone.
 * - Creating one version at once with two metric files: one record wins (create-only), every
 *   creator with the winner's file gets that record, every creator with the other is refused.
 * - Retirement is a compare-and-swap on the record; a retired version cannot be promoted.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../../test/s3.ts';
import { parseMetricDefinitions } from '../../metrics/definitions.ts';
import { LocalObjectStore } from '../../storage/localObjectStore.ts';
import type { ObjectStore } from '../../storage/objectStore.ts';
import { openObjectStore } from '../../storage/storageLocation.ts';
import { PromotionConflictError, readDefaultVersion } from '../defaultVersion.ts';
import { PromotionRefusedError, promoteVersion } from '../promotion.ts';
import { ensureVersionRecord, listVersionRecords, markRetired, readVersionDefinitions, readVersionRecord } from '../versionRecord.ts';

const METRICS_A = `version: 1
metrics:
  - name: clicks
    filter: { type: click }
    key: ad_id
    granularities: [minute]
    allowedLateness: 1m
`;
const METRICS_B = METRICS_A.replace('key: ad_id', 'key: campaign_id');
const defsA = parseMetricDefinitions(METRICS_A, 'a.yaml');
const defsB = parseMetricDefinitions(METRICS_B, 'b.yaml');

let s3: TestS3;
const local = tempDir('lk-versions-state-');

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

const VERSIONS = ['v1', 'v2', 'v3', 'v4', 'v5', 'v6'];

describe.each(stores)('versions on shared state: %s', (_name, open) => {
  it('of promotions at once exactly one wins each round; the others change nothing; previous and generation stay true', async () => {
    const state = await open();
    for (const v of VERSIONS) await ensureVersionRecord(state, { version: v, topic: 'events', homePartitions: 3, metrics: defsA });
    // The oracle: the pointer a sequence of the winning promotions alone would leave.
    let expected = { version: 'v1', previous: null as string | null, generation: 0 };
    for (let round = 0; round < 6; round++) {
      // Every version but the current default, promoted at once (as from six hosts).
      const candidates = VERSIONS.filter((v) => v !== expected.version);
      const results = await Promise.allSettled(
        candidates.map((version) => promoteVersion({ state, version, force: true, fallbackDefault: 'v1' })),
      );
      const winners = results.flatMap((r, i) => (r.status === 'fulfilled' ? [candidates[i]!] : []));
      expect(winners, `round ${round}`).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PromotionConflictError);
      expected = { version: winners[0]!, previous: expected.version, generation: expected.generation + 1 };
      const pointer = await readDefaultVersion(state);
      expect({ version: pointer?.version, previous: pointer?.previous, generation: pointer?.generation }, `round ${round}`).toEqual(
        expected,
      );
      // The losers say who won.
      for (const r of results)
        if (r.status === 'rejected')
          expect((r.reason as Error).message).toContain(`now "${expected.version}", promotion ${expected.generation}`);
    }
  });

  it('promoting the default again changes nothing, also when two do it at once', async () => {
    const state = await open();
    for (const v of ['v1', 'v2']) await ensureVersionRecord(state, { version: v, topic: 'events', homePartitions: 1, metrics: defsA });
    const [a, b] = await Promise.all(
      [1, 2].map(() => promoteVersion({ state, version: 'v2', force: true, fallbackDefault: 'v1' }).catch((e: unknown) => e)),
    );
    // Both asked for v2: one wrote it, the other finds the outcome it asked for.
    for (const r of [a, b]) expect(r).not.toBeInstanceOf(Error);
    expect((await readDefaultVersion(state))?.generation).toBe(1);
    const again = await promoteVersion({ state, version: 'v2', force: true, fallbackDefault: 'v1' });
    expect(again.changed).toBe(false);
    expect(again.pointer.generation).toBe(1);
  });

  it('one version created at once with two metric files: one record, the other file refused', async () => {
    const state = await open();
    const attempts = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? defsA : defsB));
    const results = await Promise.allSettled(
      attempts.map((metrics) => ensureVersionRecord(state, { version: 'v9', topic: 'events', homePartitions: 2, metrics })),
    );
    const record = (await readVersionRecord(state, 'v9'))!;
    const winner = record.metricsSha256 === defsA.sha256 ? defsA : defsB;
    results.forEach((r, i) => {
      if (attempts[i] === winner) expect(r.status === 'fulfilled' && r.value.metricsSha256, `creator ${i}`).toBe(winner.sha256);
      else expect(r.status === 'rejected' && (r.reason as Error).message, `creator ${i}`).toMatch(/is not the metric file of version "v9"/);
    });
    // The record names a metric file that exists and is the winner's.
    expect((await readVersionDefinitions(state, 'v9'))?.sha256).toBe(winner.sha256);
    expect((await listVersionRecords(state)).map((r) => r.version)).toEqual(['v9']);
  });

  it('retirement is a compare-and-swap on the record; a retired version cannot be promoted', async () => {
    const state = await open();
    await ensureVersionRecord(state, { version: 'v1', topic: 'events', homePartitions: 1, metrics: defsA });
    await ensureVersionRecord(state, { version: 'v2', topic: 'events', homePartitions: 1, metrics: defsA });
    const [a, b] = await Promise.all([markRetired(state, 'v2'), markRetired(state, 'v2')]);
    expect(a.retiredAt).toBe(b.retiredAt);
    expect((await readVersionRecord(state, 'v2'))?.retiredAt).toBe(a.retiredAt);
    await expect(promoteVersion({ state, version: 'v2', force: true, fallbackDefault: 'v1' })).rejects.toBeInstanceOf(
      PromotionRefusedError,
    );
    await expect(ensureVersionRecord(state, { version: 'v2', topic: 'events', homePartitions: 1, metrics: defsA })).rejects.toThrow(
      /retired/,
    );
  });
});
