/* eslint-disable @typescript-eslint/no-explicit-any -- Delta log actions are untyped JSON here. */
/**
 * Lake retention on the real broker (`lk batch compact --lake-retention`, the service does the
 * same every cycle): the lake's files whose events are all older than the retention (event time,
 * from the newest event in the lake) leave the table in one Delta commit (a DELETE: removes with
 * dataChange true, and the txns saying where each partition now starts), never behind a reader's
 * back: the files stay stored until vacuum's retention. A replay `--from lake` that needs the
 * removed history is refused with where the lake now starts; a retention shorter than the metric
 * windows need is refused; without the flag nothing is removed.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { tempDir, uniqueName } from '../helpers.ts';
import { Pipeline, killAll, testVersion } from './pipeline.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 2, 1);
const METRICS = `version: 1
retention: { minute: 1h, hour: 1d, day: 1d }
metrics:
  - name: views
    key: page
    granularities: [minute, hour, day]
    allowedLateness: 1m
`;

describe('lake retention removes old files through the Delta log', () => {
  const dir = tempDir('lk-lake-retention-');
  const metricsFile = join(dir.path, 'metrics.yaml');
  writeFileSync(metricsFile, METRICS);
  const topic = uniqueName('lakeret');
  const p = new Pipeline(dir.path, metricsFile, topic, testVersion('lr'));
  const common = () => ['--topic', topic, '--data-dir', dir.path, '--metrics', metricsFile];

  afterAll(async () => {
    killAll();
    await p.close();
    dir.remove();
  });

  async function produce(day: number, n: number): Promise<void> {
    const producer = await p.log.producer();
    try {
      await producer.send(
        topic,
        Array.from({ length: n }, (_, i) => {
          const id = `d${day}-${i}`;
          return {
            key: id,
            value: JSON.stringify({ id, type: 'view', ts: new Date(T0 + day * DAY + i * 1000).toISOString(), page: `p${i % 3}` }),
          };
        }),
      );
    } finally {
      await producer.close();
    }
  }

  const deltaLog = () => join(dir.path, 'lake', topic, '_delta_log');
  const commits = () =>
    readdirSync(deltaLog())
      .filter((n) => n.endsWith('.json') && !n.startsWith('_'))
      .sort()
      .map((n) =>
        readFileSync(join(deltaLog(), n), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, any>),
      );

  it('removes whole old files in a DELETE commit, keeps them stored, and refuses a replay that needs them', async () => {
    await p.log.createTopics(eventTopicSpecs(topic, 2));
    await produce(0, 40);
    await p.batchRun();
    await produce(10, 40);
    await p.batchRun();

    // Too short for the hour windows (1h + 1d).
    await expect(p.run(['batch', 'compact', '--lake-retention', '1d', ...common()])).rejects.toThrow(
      /--lake-retention 1d is shorter than hour windows of metric "views" need \(25h/,
    );
    // Without the flag nothing is removed.
    await p.run(['batch', 'compact', ...common()]);
    expect(
      commits()
        .flat()
        .some((a) => a.commitInfo?.operation === 'DELETE'),
    ).toBe(false);

    const out = await p.run(['batch', 'compact', '--lake-retention', '3d', ...common()]);
    expect(out).toMatch(/lake retention removed \d+ file\(s\) with events before 2026-03-08T00:00:39\.000Z/);
    const del = commits().find((c) => c.some((a) => a.commitInfo?.operation === 'DELETE'))!;
    const removes = del.filter((a) => a.remove).map((a) => a.remove);
    expect(removes.length).toBeGreaterThan(0);
    expect(removes.every((r) => r.dataChange === true)).toBe(true);
    // Removed, not deleted: a reader of the version before still finds every file.
    for (const r of removes) expect(readFileSync(join(dir.path, 'lake', topic, decodeURIComponent(r.path))).length).toBe(r.size);
    const starts = del.filter((a) => a.txn?.appId?.startsWith(`lk-lake-start:${topic}:`) && /:\d+$/.test(a.txn.appId));
    // Each partition now starts past its day-0 records (keys spread the 40 over both partitions).
    expect(starts.reduce((n, a) => n + (a.txn.version as number), 0)).toBe(40);

    const refused = p.spawn(['replay', '--version', testVersion('lr2'), '--from', 'lake', '--dry-run', ...common()]);
    const { code } = await refused.exited;
    expect(code).not.toBe(0);
    expect(refused.output()).toMatch(
      /no longer holds the history this replay needs: lk batch --lake-retention removed the files of events before 2026-03-08T00:00:39\.000Z \(records logged up to [^)]+\); the lake now starts at partition \d offset \d+/,
    );
    // The later start it names is accepted, and reads the lake from where it now starts.
    const later = /--from-time (\S+) or later/.exec(refused.output())![1]!;
    const dry = await p.run(['replay', '--version', testVersion('lr3'), '--from', 'lake', '--from-time', later, '--dry-run', ...common()]);
    expect(dry).toMatch(/replay of topic .* from lake/);
    // The lake still takes new data after its first removal.
    await produce(11, 10);
    await p.batchRun();
  }, 240_000);
});
