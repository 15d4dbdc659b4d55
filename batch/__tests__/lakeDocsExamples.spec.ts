/**
 * docs/lake.md's Python examples are copy-paste: each ```python block runs as written (with
 * delta-rs, pyarrow and duckdb from the test venv, scripts/deltars.mjs) from a folder holding
 * `data/lake/events` written by `lk batch run`, and the S3 one against the same lake on a real S3
 * server (bucket `lake`, prefix `lakes`, the AWS settings in the environment). What they print
 * is checked against the records produced: counts per type, the number of events and distinct ids.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDeltaRs } from '../../scripts/deltars.mjs';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { startTestS3, type TestS3 } from '../../test/s3.ts';
import { REPO_ROOT, createTopic, kafkaLog, produceLines, spawnLk } from './batchTestKit.ts';

/** The ```python blocks of docs/lake.md, in order. */
function pythonExamples(): string[] {
  const text = readFileSync(join(REPO_ROOT, 'docs', 'lake.md'), 'utf8');
  return [...text.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

describe("docs/lake.md's examples run on a real lake and print the right answers", () => {
  const dir = tempDir('lk-lake-docs-');
  // The examples name the topic `events`: a topic of that name of its own in the test broker
  // would collide with other test files, so the lake is written from a unique topic into a
  // folder named `events` (--lake-uri points at a parent whose child is the table).
  const topic = uniqueName('docs-events');
  let log: EventLog;
  let s3: TestS3;
  let lines: string[];

  beforeAll(async () => {
    s3 = await startTestS3(['lake']);
    log = kafkaLog();
    await createTopic(log, topic, 3);
    lines = [...generateEventLines({ seed: 5, count: 2000 })];
    await produceLines(log, topic, lines);
    for (const lakeUri of [join(dir.path, 'lakes'), 's3://lake/lakes']) {
      const proc = spawnLk(
        ['batch', 'run', '--topic', topic, '--data-dir', dir.path, '--group', `${topic}-${lakeUri.length}`, '--lake-uri', lakeUri],
        s3.env,
      );
      expect(await proc.exited, proc.stderr()).toBe(0);
    }
    // The examples' paths: data/lake/events and s3://lake/lakes/events.
    const { renameSync, mkdirSync } = await import('node:fs');
    mkdirSync(join(dir.path, 'data', 'lake'), { recursive: true });
    renameSync(join(dir.path, 'lakes', topic), join(dir.path, 'data', 'lake', 'events'));
    renameSync(join(s3.server.dataDir, 'lake', 'lakes', topic), join(s3.server.dataDir, 'lake', 'lakes', 'events'));
  });
  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    await s3?.stop();
    dir.remove();
  });

  const countsByType = () => {
    const counts = new Map<string, number>();
    for (const l of lines) {
      const type = (JSON.parse(l) as { type: string }).type;
      counts.set(type, (counts.get(type) ?? 0) + 1);
    }
    return [...counts].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([t, n]) => `${t} ${n}`);
  };

  it('every example prints what the records say', () => {
    const { python } = ensureDeltaRs();
    const examples = pythonExamples();
    expect(examples.length).toBeGreaterThanOrEqual(4);
    const ids = new Set(lines.map((l) => (JSON.parse(l) as { id: string }).id));
    for (const code of examples) {
      // delta-rs's native threads sometimes abort the interpreter as it exits ("terminate called
      // without an active exception", SIGABRT) after the example has run; that abort alone is
      // asked again, at most twice. Any other failure, and a third abort, fail the test.
      let res = spawnSync(python, ['-c', code], { cwd: dir.path, env: { ...process.env, ...s3.env }, encoding: 'utf8' });
      for (
        let retry = 0;
        retry < 2 && res.signal === 'SIGABRT' && res.stderr.includes('terminate called without an active exception');
        retry++
      )
        res = spawnSync(python, ['-c', code], { cwd: dir.path, env: { ...process.env, ...s3.env }, encoding: 'utf8' });
      expect(res.status, `${code}\n${res.stderr}`).toBe(0);
      const out = res.stdout.trim().split('\n');
      if (code.includes('distinct ids')) expect(out).toEqual([`events ${lines.length} distinct ids ${ids.size}`]);
      else
        expect(
          out.filter((l) => !l.startsWith('version ')),
          code,
        ).toEqual(countsByType());
    }
  });
});
