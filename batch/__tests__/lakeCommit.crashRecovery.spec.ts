/**
 * The lake's Delta commits survive SIGKILL: the real CLI (`lk batch serve` and `lk batch run`)
 * is killed with kill -9 at random moments while it consumes, ten times; after every kill the
 * lake (read through its Delta log) holds each record at most once and exactly the records below
 * its committed offsets, with no missing file listed. After the restarts it holds every record
 * exactly once, and vacuum leaves no file the log does not list. Finally SIGTERM commits what is
 * pending and exits 0.
 *
 * Each life uses a fresh consumer group with no committed offsets: the resume position can only
 * come from the table's transaction identifiers, which is the point.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines, seededRandom } from '../../services/ingest/generator.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { currentBatchRun } from '../../test/sharedState.ts';
import { eventually, tempDir, uniqueName } from '../../test/helpers.ts';
import type { LakeHandle } from '../../services/lake/lakeLocation.ts';
import { openLakeForReading } from '../../services/lake/lakeTable.ts';
import { createTopic, kafkaLog, lakeState, produceLines, readLakeWithDuckDb, spawnLk, testLake } from './batchTestKit.ts';

const SEED = Number(process.env.LK_TEST_SEED ?? 7);
const KILLS = 10;

describe('lake commits survive SIGKILL (crash recovery)', () => {
  const dir = tempDir('lk-batch-crash-');
  const topic = uniqueName('batch-crash');
  let lake: LakeHandle;
  let log: EventLog;
  let produced = 0;

  beforeAll(async () => {
    log = kafkaLog();
    lake = await testLake(dir.path, topic);
    await createTopic(log, topic, 3);
    const lines = [...generateEventLines({ seed: SEED, count: 60_000, duplicateRate: 0.05 })];
    await produceLines(log, topic, lines);
    produced = lines.length;
  });

  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  const args = (command: string, life: string, rollSize = '8k') => [
    'batch',
    command,
    '--topic',
    topic,
    '--data-dir',
    dir.path,
    '--group',
    `${topic}-${life}`,
    '--roll-size',
    rollSize,
    '--roll-interval',
    '200ms',
    '--interval',
    '1h',
    '--status-port',
    '0',
  ];

  /** The invariant after any crash: the table's files hold exactly offsets [0, committed) once. */
  async function checkLake(): Promise<{ rows: number; committed: number[] }> {
    const snapshot = await lakeState(lake);
    for (const f of snapshot.files) expect(existsSync(lake.store.localPath(f.key)!), `listed file ${f.key} exists`).toBe(true);
    const rows = await readLakeWithDuckDb(lake);
    const committed = [0, 1, 2].map((p) => snapshot.positions.get(p)?.nextOffset ?? 0);
    const byPartition = [0, 1, 2].map((p) =>
      rows
        .filter((r) => r.kafka_partition === p)
        .map((r) => r.kafka_offset)
        .sort((a, b) => a - b),
    );
    byPartition.forEach((offsets, p) => {
      // never twice, never skipped: exactly 0 .. committed - 1 (every produced record is valid)
      expect(offsets.length, `partition ${p}`).toBe(committed[p]);
      offsets.forEach((o, i) => {
        if (o !== i) expect.fail(`partition ${p}: offset ${o} at position ${i} (duplicate or gap)`);
      });
    });
    return { rows: rows.length, committed };
  }

  it(`holds every record exactly once after ${KILLS} kill -9 at random moments`, async () => {
    const rand = seededRandom(SEED);
    let killedWhileConsuming = 0;
    for (let life = 0; life < KILLS; life++) {
      const before = (await lakeState(lake)).version;
      const proc = spawnLk(args(life % 2 === 0 ? 'serve' : 'run', `life${life}`));
      // Kill once the process is committing: right after a commit or in the middle of the next roll.
      const reached = await eventually(
        async () => {
          if (proc.child.exitCode !== null) return 'exited';
          return (await lakeState(lake)).version > Math.max(before, 0) ? 'committing' : undefined;
        },
        `life ${life} to commit`,
        60_000,
      );
      await new Promise((r) => setTimeout(r, Math.floor(rand() * 80)));
      if (reached === 'committing' && proc.child.exitCode === null) killedWhileConsuming++;
      proc.child.kill('SIGKILL');
      await proc.exited;
      const { rows } = await checkLake();
      if (rows === produced) break; // the lake is complete: nothing left to interrupt
    }
    expect(killedWhileConsuming, `seed ${SEED}`).toBeGreaterThanOrEqual(KILLS);

    // Restart to completion with the one-shot command.
    const final = spawnLk(args('run', 'final', '1MB'));
    expect(await final.exited, final.stderr()).toBe(0);
    const { rows, committed } = await checkLake();
    expect(rows).toBe(produced);
    expect(committed.reduce((a, b) => a + b, 0)).toBe(produced);
    expect((await currentBatchRun(dir.path, 'v1'))!.manifest.cut).toEqual(committed);
    // Files the crashes left unlisted are vacuum's (past the retention; here at once): afterwards
    // every data file stored is one the log lists, and the writer's scratch folder holds nothing
    // of a dead process.
    await (await openLakeForReading(lake))!.vacuum({ retentionMs: 0 });
    const listed = new Set((await lakeState(lake)).files.map((f) => f.key));
    const root = lake.store.localPath('x')!.slice(0, -2);
    const stored = readdirSync(root, { recursive: true })
      .map(String)
      .filter((p) => p.endsWith('.parquet') && !p.startsWith('_delta_log'));
    expect(stored.filter((p) => !listed.has(p))).toEqual([]);
    expect(readdirSync(lake.scratch)).toEqual([]);
  });

  it('SIGTERM commits what is pending and exits 0', async () => {
    const more = [...generateEventLines({ seed: SEED + 1, count: 5000 })];
    await produceLines(log, topic, more);
    produced += more.length;
    const proc = spawnLk(args('serve', 'sigterm', '1MB'));
    const statusPath = join(dir.path, 'batch', 'status.json');
    await eventually(() => {
      if (proc.child.exitCode !== null) throw new Error(`serve exited early: ${proc.stderr()}`);
      if (!existsSync(statusPath)) return undefined;
      const status = JSON.parse(readFileSync(statusPath, 'utf8')) as { lastRun: { cut: number[] } | null };
      const total = status.lastRun?.cut.reduce((a, b) => a + b, 0) ?? 0;
      return total === produced ? true : undefined;
    }, 'the service to publish a run over every record');
    const { statusPort } = JSON.parse(readFileSync(statusPath, 'utf8')) as { statusPort: number };
    const get = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${statusPort}${path}`);
      return { status: res.status, text: await res.text() };
    };
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/readyz')).status).toBe(200);
    const metricsText = (await get('/metrics')).text;
    expect(metricsText).toMatch(/lk_batch_lake_committed_offset\{partition="0"\} \d+/);
    expect(metricsText).toContain('lk_batch_last_run_duration_seconds');
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr()).toBe(0);
    const { rows } = await checkLake();
    expect(rows).toBe(produced);
  });
});
