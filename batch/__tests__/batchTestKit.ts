/**
 * Test kit of the batch layer: producing generated events, reading the lake back through its
 * Delta log with DuckDB and with an independent Parquet reader (hyparquet), and an oracle of the
 * batch views computed with plain code from the input lines (never with the code under test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { DuckDBInstance } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import type { EventLog } from '../../services/log/eventLog.ts';
import { KafkaLog } from '../../services/log/kafka/kafkaLog.ts';
import { parseBrokers } from '../../services/log/openLog.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { HLL_M } from '../../services/metrics/hll.ts';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import { LakeFileAccess } from '../../services/lake/lakeFileCache.ts';
import { lakeRowsSql } from '../../services/lake/lakeLayout.ts';
import { resolveLake, type LakeHandle } from '../../services/lake/lakeLocation.ts';
import { lakeFiles, lakePositions, openLakeForReading, type LakeFile, type PartitionPosition } from '../../services/lake/lakeTable.ts';
import { testBrokers } from '../../test/helpers.ts';

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;

export function kafkaLog(clientId = 'lk-batch-test'): EventLog {
  return new KafkaLog({ brokers: parseBrokers(testBrokers()), clientId });
}

export async function createTopic(log: EventLog, topic: string, partitions: number): Promise<void> {
  await log.createTopics(eventTopicSpecs(topic, partitions));
}

/** Produces JSON lines with key = event id (what ingest does), in order. */
export async function produceLines(log: EventLog, topic: string, lines: readonly string[]): Promise<void> {
  const producer = await log.producer();
  try {
    for (let i = 0; i < lines.length; i += 5000) {
      await producer.send(
        topic,
        lines.slice(i, i + 5000).map((line) => ({ key: (JSON.parse(line) as { id: string }).id, value: line })),
      );
    }
  } finally {
    await producer.close();
  }
}

export { readTopic } from '../../test/logReader.ts';

export interface LakeRow {
  /** The event under the lake writer's mapping: null for a record that is no event under it. */
  id: string | null;
  type: string | null;
  ts_ms: number | null;
  raw: string;
  kafka_partition: number;
  kafka_offset: number;
  kafka_timestamp: number;
  /** The record key's bytes, as hex (null: no key). */
  kafka_key: string | null;
  event_mapping: string;
}

/** The lake of `topic` under `dataDir` (or at `lakeUri`), as the CLI resolves it. */
export function testLake(dataDir: string, topic: string, lakeUri?: string): Promise<LakeHandle> {
  return resolveLake(lakeUri, dataDirLayout(dataDir), topic);
}

export interface LakeState {
  version: number;
  files: LakeFile[];
  positions: Map<number, PartitionPosition>;
}

/** The lake's latest (or `version`'s) files and positions, read through its Delta log. */
export async function lakeState(lake: LakeHandle, version?: number): Promise<LakeState> {
  const table = await openLakeForReading(lake, { missingOk: true });
  const snap = table && version !== undefined ? await table.snapshotAt(version) : table?.current;
  return { version: snap?.version ?? -1, files: lakeFiles(snap), positions: lakePositions(snap, lake.topic) };
}

/** Local paths of the lake's files at its latest version (or `version`). */
export async function lakeFilePaths(lake: LakeHandle, version?: number): Promise<string[]> {
  const { files } = await lakeState(lake, version);
  return new LakeFileAccess(lake.store, lake.cacheDir).localPaths(files.map((f) => ({ key: f.key, size: f.size })));
}

/** All rows of the lake's latest version (or `version`), read with DuckDB. */
export async function readLakeWithDuckDb(lake: LakeHandle, version?: number): Promise<LakeRow[]> {
  const files = await lakeFilePaths(lake, version);
  if (files.length === 0) return [];
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(
      `SELECT id, type, ts_ms::DOUBLE, raw, kafka_partition, kafka_offset::DOUBLE, kafka_timestamp::DOUBLE, lower(hex(kafka_key)), event_mapping
       FROM ${lakeRowsSql(files)}`,
    );
    return reader.getRows().map(([id, type, ts, raw, p, o, kt, key, mapping]) => ({
      id: id as string | null,
      type: type as string | null,
      ts_ms: ts as number | null,
      raw: raw as string,
      kafka_partition: p as number,
      kafka_offset: o as number,
      kafka_timestamp: kt as number,
      kafka_key: key as string | null,
      event_mapping: mapping as string,
    }));
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/** The same, with hyparquet: an independent Parquet implementation. */
export async function readLakeWithHyparquet(lake: LakeHandle): Promise<LakeRow[]> {
  const out: LakeRow[] = [];
  for (const file of await lakeFilePaths(lake)) {
    const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(file) })) as Record<string, unknown>[];
    for (const r of rows) {
      out.push({
        id: (r.id as string | undefined) ?? null,
        type: (r.type as string | undefined) ?? null,
        ts_ms: r.event_time instanceof Date ? r.event_time.getTime() : r.ts_ms === null || r.ts_ms === undefined ? null : Number(r.ts_ms),
        raw: r.raw as string,
        kafka_partition: Number(r.kafka_partition),
        kafka_offset: Number(r.kafka_offset),
        kafka_timestamp: r.record_timestamp instanceof Date ? r.record_timestamp.getTime() : Number(r.kafka_timestamp),
        kafka_key: r.kafka_key === null || r.kafka_key === undefined ? null : Buffer.from(r.kafka_key as Uint8Array).toString('hex'),
        event_mapping: r.event_mapping as string,
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------- oracle

export interface OracleMetric {
  name: string;
  types: string[];
  key: string;
  value?: string;
  distinct?: string;
  granularities: ('minute' | 'hour' | 'day')[];
}

/** metrics.yaml, restated by hand: the oracle must not share the compiler under test. */
export const DEMO_METRICS: OracleMetric[] = [
  {
    name: 'impressions_by_campaign',
    types: ['impression'],
    key: 'campaign_id',
    distinct: 'user_id',
    granularities: ['minute', 'hour', 'day'],
  },
  { name: 'clicks_by_ad', types: ['click'], key: 'ad_id', value: 'cost', granularities: ['minute', 'hour'] },
  { name: 'spend_by_campaign', types: ['click', 'conversion'], key: 'campaign_id', value: 'cost', granularities: ['hour', 'day'] },
];
const SIZE = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

export interface OracleRow {
  count: number;
  rawCount: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  distinctValues: Set<string>;
}

export interface OracleInput {
  partition: number;
  offset: number;
  line: string;
}

/** Expected view rows keyed `metric|granularity|key|windowStart|partition`. */
export function oracleViews(inputs: readonly OracleInput[], metrics = DEMO_METRICS): Map<string, OracleRow> {
  const ordered = [...inputs].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  const seen = new Set<string>();
  const rows = new Map<string, OracleRow>();
  for (const input of ordered) {
    const e = JSON.parse(input.line) as Record<string, string | number>;
    const first = !seen.has(e.id as string);
    seen.add(e.id as string);
    const ts = typeof e.ts === 'number' ? e.ts : Date.parse(e.ts as string);
    for (const m of metrics) {
      if (!m.types.includes(e.type as string) || e[m.key] === undefined) continue;
      for (const g of m.granularities) {
        const w = Math.floor(ts / SIZE[g]) * SIZE[g];
        const k = `${m.name}|${g}|${String(e[m.key])}|${w}|${input.partition}`;
        let row = rows.get(k);
        if (!row) rows.set(k, (row = { count: 0, rawCount: 0, sum: null, min: null, max: null, distinctValues: new Set() }));
        row.rawCount++;
        if (!first) continue;
        row.count++;
        const v = m.value === undefined ? undefined : e[m.value];
        if (typeof v === 'number') {
          row.sum = (row.sum ?? 0) + v;
          row.min = row.min === null ? v : Math.min(row.min, v);
          row.max = row.max === null ? v : Math.max(row.max, v);
        }
        if (m.distinct !== undefined && e[m.distinct] !== undefined) row.distinctValues.add(String(e[m.distinct]));
      }
    }
  }
  for (const [k, row] of rows) if (row.count === 0) rows.delete(k);
  return rows;
}

export interface SnapshotRow {
  metric: string;
  granularity: string;
  key: string;
  window_start: number;
  partition: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  distinct_sketch: string | null;
  value_sketch: string | null;
  raw_count: number;
  through_offset: number;
  processing_time: number;
}

/** Reads a published rows.parquet with DuckDB (what serving does, in its own instance). */
export async function readSnapshotRows(rowsPath: string): Promise<SnapshotRow[]> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(
      `SELECT metric, granularity, key, window_start::DOUBLE AS window_start, partition, count::DOUBLE AS count, sum, min, max, distinct_sketch, value_sketch,
              raw_count::DOUBLE AS raw_count, through_offset::DOUBLE AS through_offset, processing_time::DOUBLE AS processing_time
       FROM read_parquet('${rowsPath}')`,
    );
    return reader.getRowObjectsJS().map((r) => ({
      metric: r.metric as string,
      granularity: r.granularity as string,
      key: r.key as string,
      window_start: r.window_start as number,
      partition: r.partition as number,
      count: r.count as number,
      sum: r.sum as number | null,
      min: r.min as number | null,
      max: r.max as number | null,
      distinct_sketch: r.distinct_sketch as string | null,
      value_sketch: r.value_sketch as string | null,
      raw_count: r.raw_count as number,
      through_offset: r.through_offset as number,
      processing_time: r.processing_time as number,
    }));
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/** Registers of a serialized sketch (format of services/metrics/hll.ts), for exact comparison. */
export function sketchRegisters(base64: string): Uint8Array {
  const buf = Buffer.from(base64, 'base64');
  const regs = new Uint8Array(HLL_M);
  if (buf[0] === 2) regs.set(buf.subarray(1));
  else for (let i = 1; i < buf.length; i += 3) regs[buf.readUInt16BE(i)] = Math.max(regs[buf.readUInt16BE(i)]!, buf[i + 2]!);
  return regs;
}

export function closeTo(a: number | null, b: number | null): boolean {
  if (a === null || b === null) return a === b;
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

// ---------------------------------------------------------------- child processes

export interface LkProcess {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<number | null>;
}

/** Starts `node bin/lk.js ...` (the real CLI) with the test broker. */
export function spawnLk(args: string[], env: Record<string, string> = {}): LkProcess {
  const child = spawn(process.execPath, ['bin/lk.js', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, KAFKA_BROKERS: testBrokers(), LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}
