/**
 * A lake of the former format (Parquet files under dt=/hr= and a `_lake_log/` manifest of our
 * own, built here as the former writer wrote it) becomes a Delta table without a data file
 * rewritten: `lk batch migrate-lake` converts it in place, also when killed right after its
 * commit (crash point `lake.migration.converted`: run again, it finishes), and again and again
 * (repeatable); delta-rs then reads every record once (the old files' event_time is null: the
 * legacy columns carry their times); `lk batch run` goes on from the old positions, with views
 * equal to the oracle, and compaction turns old files into the current layout. A lake whose
 * former writer still runs, or a Delta log that was not made from the old manifest, is refused.
 */
import { existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEventLines } from '../../services/ingest/generator.ts';
import type { EventLog, LogRecord } from '../../services/log/eventLog.ts';
import { idHash } from '../../services/log/partitioner.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import { tempDir, uniqueName } from '../../test/helpers.ts';
import { deltaRsRead } from '../../test/deltaRs.ts';
import { currentBatchRun } from '../../test/sharedState.ts';
import {
  closeTo,
  createTopic,
  kafkaLog,
  lakeState,
  oracleViews,
  produceLines,
  readLakeWithDuckDb,
  readSnapshotRows,
  readTopic,
  spawnLk,
  testLake,
} from './batchTestKit.ts';

const PARTITIONS = 3;

/**
 * Writes the lake of `records` as the former lake writer did: one file per (partition, dt, hr)
 * and commit, `_lake_log/<n>.json` appends, a `_checkpoint.json` after the first, and a file a
 * compaction had removed (still stored, listed nowhere).
 */
async function writeLegacyLake(root: string, topic: string, records: LogRecord[]): Promise<void> {
  mkdirSync(join(root, '_lake_log'), { recursive: true });
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  await conn.run(
    `CREATE TABLE r (id VARCHAR, type VARCHAR, ts_ms BIGINT, raw VARCHAR, kafka_partition INTEGER, kafka_offset BIGINT, kafka_timestamp BIGINT, ingest_time BIGINT, id_hash INTEGER)`,
  );
  const positions: Record<string, { nextOffset: number; lastTimestamp: number }> = {};
  let version = 0;
  const allFiles: object[] = [];
  // Commit 1: each partition's first half of offsets; commit 2: the rest.
  for (const part of [0, 1]) {
    const add: object[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      const mine = records.filter((r) => r.partition === p);
      const cut = Math.floor(mine.length / 2);
      const slice = part === 0 ? mine.slice(0, cut) : mine.slice(cut);
      const groups = new Map<string, LogRecord[]>();
      for (const r of slice) {
        const e = JSON.parse(r.value!.toString()) as { ts: string };
        const iso = new Date(Date.parse(e.ts)).toISOString();
        const key = `dt=${iso.slice(0, 10)}/hr=${iso.slice(11, 13)}`;
        groups.set(key, [...(groups.get(key) ?? []), r]);
      }
      for (const [folder, rs] of groups) {
        await conn.run('DELETE FROM r');
        for (const r of rs) {
          const e = JSON.parse(r.value!.toString()) as { id: string; type: string; ts: string };
          await conn.run(
            `INSERT INTO r VALUES (${sqlQuote(e.id)}, ${sqlQuote(e.type)}, ${Date.parse(e.ts)}, ${sqlQuote(r.value!.toString())}, ${p}, ${r.offset}, ${r.timestamp}, ${Date.now()}, ${idHash(Buffer.from(e.id))})`,
          );
        }
        const from = rs[0]!.offset;
        const to = rs.at(-1)!.offset;
        const path = `${folder}/part-p${String(p).padStart(3, '0')}-o${String(from).padStart(12, '0')}-o${String(to).padStart(12, '0')}-v${part}.parquet`;
        mkdirSync(join(root, folder), { recursive: true });
        await conn.run(
          `COPY (SELECT * FROM r ORDER BY kafka_offset) TO ${sqlQuote(join(root, path))} (FORMAT parquet, COMPRESSION snappy)`,
        );
        const ts = rs.map((r) => Date.parse((JSON.parse(r.value!.toString()) as { ts: string }).ts));
        const [dt, hr] = folder.split('/').map((x) => x.split('=')[1]!);
        add.push({
          path,
          partition: p,
          fromOffset: from,
          toOffset: to,
          rows: rs.length,
          bytes: statSync(join(root, path)).size,
          dt,
          hr,
          minTsMs: Math.min(...ts),
          maxTsMs: Math.max(...ts),
        });
      }
      if (slice.length > 0) positions[String(p)] = { nextOffset: slice.at(-1)!.offset + 1, lastTimestamp: slice.at(-1)!.timestamp };
    }
    version++;
    const commit = {
      op: 'append',
      version,
      committedAt: Date.now(),
      topic,
      partitionCount: PARTITIONS,
      add,
      positions: { ...positions },
      rejected: {},
    };
    writeFileSync(join(root, '_lake_log', `${String(version).padStart(20, '0')}.json`), JSON.stringify(commit));
    allFiles.push(...add);
    if (version === 1)
      writeFileSync(
        join(root, '_lake_log', '_checkpoint.json'),
        JSON.stringify({ version: 1, topic, partitionCount: PARTITIONS, files: add, positions, removed: {}, rejected: {} }),
      );
  }
  // A file an old compaction replaced, in its grace period: stored, in no commit.
  mkdirSync(join(root, 'dt=2020-01-01', 'hr=00'), { recursive: true });
  writeFileSync(join(root, 'dt=2020-01-01', 'hr=00', 'part-p000-o000000000000-o000000000000-old.parquet'), 'replaced');
  conn.closeSync();
  db.closeSync();
}

describe('a lake of the former format becomes a Delta table (lk batch migrate-lake)', () => {
  const dir = tempDir('lk-migrate-');
  const topic = uniqueName('migrate');
  const root = join(dir.path, 'lake', topic);
  let log: EventLog;
  let oldRecords: LogRecord[];
  const args = (command: string) => ['batch', command, '--topic', topic, '--data-dir', dir.path, '--group', `${topic}-g`];
  const run = async (command: string, env: Record<string, string> = {}) => {
    const proc = spawnLk(args(command), env);
    let out = '';
    proc.child.stdout!.removeAllListeners('data');
    proc.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const code = await proc.exited;
    return { code, signal: proc.child.signalCode, out, err: proc.stderr() };
  };

  beforeAll(async () => {
    log = kafkaLog();
    await createTopic(log, topic, PARTITIONS);
    await produceLines(log, topic, [...generateEventLines({ seed: 31, count: 900, duplicateRate: 0.05 })]);
    oldRecords = (await readTopic(log, topic)).flat();
    await writeLegacyLake(root, topic, oldRecords);
  });
  afterAll(async () => {
    await log?.deleteTopics([topic, `${topic}.dlq`]).catch(() => undefined);
    await log?.close();
    dir.remove();
  });

  it('refuses while the former writer holds its lock, and a Delta log not made from the old manifest', async () => {
    const lock = join(root, '_lake_log', 'writer.lock');
    writeFileSync(lock, JSON.stringify({ pid: 1, hostname: 'elsewhere' }));
    const refused = await run('migrate-lake');
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/a lake writer of the former format holds .*writer\.lock/);
    const old = new Date(Date.now() - 10 * 60_000);
    utimesSync(lock, old, old); // untouched for 10 minutes: its writer is gone
    const other = join(dir.path, 'other', topic);
    mkdirSync(join(other, '_lake_log'), { recursive: true });
    mkdirSync(join(other, '_delta_log'), { recursive: true });
    writeFileSync(join(other, '_lake_log', `${'1'.padStart(20, '0')}.json`), '{}');
    writeFileSync(
      join(other, '_delta_log', `${'0'.padStart(20, '0')}.json`),
      '{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}\n{"metaData":{"id":"x","format":{"provider":"parquet"},"schemaString":"{\\"type\\":\\"struct\\",\\"fields\\":[]}","partitionColumns":[],"configuration":{}}}\n',
    );
    const mixed = spawnLk(['batch', 'migrate-lake', '--topic', topic, '--data-dir', dir.path, '--lake-uri', join(dir.path, 'other')]);
    expect(await mixed.exited).not.toBe(0);
    expect(mixed.stderr()).toMatch(/has a Delta log that was not converted from the _lake_log/);
  });

  it('converts in place, killed after its commit or not, repeatably; delta-rs reads every record once', async () => {
    const before = readdirSync(root, { recursive: true })
      .map(String)
      .filter((f) => f.endsWith('.parquet'))
      .sort();
    const killed = await run('migrate-lake', { LK_CRASH_AT: 'lake.migration.converted' });
    expect(killed.signal, killed.err).toBe('SIGKILL');
    expect(existsSync(join(root, '_delta_log', '_last_checkpoint'))).toBe(false);
    // Readable already: version 0 is the conversion.
    const rows = await deltaRsRead(root);
    expect(rows.rows).toBe(oldRecords.length);
    expect(rows.nullEventTimes).toBe(oldRecords.length);
    const finished = await run('migrate-lake');
    expect(finished.code, finished.err).toBe(0);
    expect(finished.out).toMatch(/was converted to a Delta table already .* nothing left to do/);
    expect(existsSync(join(root, '_delta_log', '_last_checkpoint'))).toBe(true);
    expect(existsSync(join(root, '_lake_log', 'MIGRATED_TO_DELTA.json'))).toBe(true);
    expect((await run('migrate-lake')).out).toMatch(/already/);
    // No data file was rewritten or moved.
    expect(
      readdirSync(root, { recursive: true })
        .map(String)
        .filter((f) => f.endsWith('.parquet') && !f.startsWith('_delta_log'))
        .sort(),
    ).toEqual(before);
    const lake = await testLake(dir.path, topic);
    const state = await lakeState(lake);
    expect(state.version).toBe(0);
    expect(state.files.length).toBe(before.length - 1); // the replaced file is not in the table
    const read = await deltaRsRead(root);
    expect(read.keys).toEqual(oldRecords.map((r) => `${r.partition}:${r.offset}`).sort());
  });

  it('lk batch goes on from the old positions: views equal the oracle, compaction rewrites old files into the current layout', async () => {
    const more = [...generateEventLines({ seed: 32, count: 500, duplicateRate: 0.05 })];
    await produceLines(log, topic, more);
    const r = await run('run');
    expect(r.code, r.err).toBe(0);
    const all = (await readTopic(log, topic)).flat();
    const lake = await testLake(dir.path, topic);
    const rows = await readLakeWithDuckDb(lake);
    expect(rows.map((x) => `${x.kafka_partition}:${x.kafka_offset}`).sort()).toEqual(all.map((x) => `${x.partition}:${x.offset}`).sort());
    // The old rows' times come from their legacy columns.
    const byKey = new Map(rows.map((x) => [`${x.kafka_partition}:${x.kafka_offset}`, x]));
    for (const rec of oldRecords.slice(0, 50)) {
      const row = byKey.get(`${rec.partition}:${rec.offset}`)!;
      expect(row.ts_ms).toBe(Date.parse((JSON.parse(rec.value!.toString()) as { ts: string }).ts));
      expect(row.kafka_timestamp).toBe(rec.timestamp);
    }
    const oracle = oracleViews(all.map((x) => ({ partition: x.partition, offset: x.offset, line: x.value!.toString() })));
    const check = async () => {
      const got = await readSnapshotRows((await currentBatchRun(dir.path, 'v1'))!.rowsPath!);
      expect(got.length).toBe(oracle.size);
      for (const g of got) {
        const want = oracle.get(`${g.metric}|${g.granularity}|${g.key}|${g.window_start}|${g.partition}`)!;
        expect(want, `${g.metric} ${g.key} ${g.window_start}`).toBeDefined();
        expect([g.count, g.raw_count, closeTo(g.sum, want.sum)]).toEqual([want.count, want.rawCount, true]);
      }
    };
    await check();
    const compacted = spawnLk([...args('compact'), '--target-file-size', '1MB']);
    expect(await compacted.exited, compacted.stderr()).toBe(0);
    const after = await lakeState(lake);
    expect(after.files.length).toBeLessThan((await lakeState(lake, 1)).files.length);
    const read = await deltaRsRead(root);
    expect(read.rows).toBe(all.length);
    expect(read.nullEventTimes).toBeLessThan(oldRecords.length); // merged old rows now have event_time
    expect((await run('run')).code).toBe(0);
    await check();
  });
});
