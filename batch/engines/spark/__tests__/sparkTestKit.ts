/**
 * Test kit of the Spark engine: a lake written by the real lake writer from generated lines (over
 * the embedded log, so that the differential test needs no broker), generated metric files, and
 * the view rows of a published run read back for an exact comparison.
 */
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { EmbeddedLog } from '../../../../services/log/embedded/embeddedLog.ts';
import { eventTopicSpecs } from '../../../../services/log/topics.ts';
import type { Logger } from '../../../../services/observability/logger.ts';
import { dataDirLayout } from '../../../../services/config/dataDir.ts';
import { resolveLake, type LakeHandle } from '../../../../services/lake/lakeLocation.ts';
import type { ObjectStore } from '../../../../services/storage/objectStore.ts';
import { readCurrentBatchRun, type BatchRunManifest } from '../../../../services/views/batchSnapshots.ts';
import { catchUpLake } from '../../../batchCycle.ts';
import type { EventMapping } from '../../../../services/metrics/fieldSemantics.ts';

export type Rand = () => number;

/** mulberry32, as the suite's generators. */
export function seeded(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

/** A record to produce: the line, its Kafka key (the id, or another key: a misplaced record). */
export interface TestRecord {
  key: string | null;
  line: string;
}

/**
 * Writes `records` into topic `topic` of an embedded log under `dataDir`, then brings the lake
 * (`<dataDir>/lake/<topic>`) up to the log's end with the real lake writer, in several rolls,
 * typing events under `mapping` (the flat model by default). Called again, it appends.
 */
export async function lakeFromRecords(
  dataDir: string,
  topic: string,
  partitions: number,
  records: readonly TestRecord[],
  logger: Logger,
  mapping?: EventMapping,
): Promise<LakeHandle> {
  const log = new EmbeddedLog({ root: join(dataDir, 'log') });
  try {
    await log.createTopics(eventTopicSpecs(topic, partitions));
    const producer = await log.producer();
    for (let i = 0; i < records.length; i += 2000) {
      await producer.send(
        topic,
        records.slice(i, i + 2000).map((r) => ({ key: r.key, value: r.line })),
      );
    }
    await producer.close();
    const lake = await resolveLake(undefined, dataDirLayout(dataDir), topic);
    await catchUpLake({
      log,
      topic,
      groupId: `lk-batch-${topic}`,
      lake,
      rollBytes: 256 * 1024,
      rollIntervalMs: 60_000,
      logger,
      ...(mapping !== undefined ? { mapping } : {}),
    });
    return lake;
  } finally {
    await log.close();
  }
}

/** The current run's rows in the shared state `state` (a local folder), in one order, every column as read (bigint counts as numbers). */
export async function currentRows(
  state: ObjectStore,
  version: string,
): Promise<{ manifest: BatchRunManifest; rows: Record<string, unknown>[] }> {
  const run = await readCurrentBatchRun(state, version);
  if (!run?.rowsPath) throw new Error(`no batch run of version ${version} published in ${state.location} (a local folder)`);
  return { manifest: run.manifest, rows: await readRunRows(run.rowsPath) };
}

/** A run's rows.parquet, in one order, every column as read (bigint counts as numbers). */
export async function readRunRows(rowsPath: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  try {
    const reader = await conn.runAndReadAll(
      `SELECT * FROM read_parquet('${rowsPath.replace(/'/g, "''")}') ORDER BY metric, granularity, key, window_start, partition`,
    );
    return reader
      .getRowObjects()
      .map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])));
  } finally {
    conn.closeSync();
    db.closeSync();
  }
}

/**
 * The first difference between two row lists (exact: Object.is per column), or undefined. The
 * sums of the metrics in `roundedSums` are compared up to rounding (a relative 1e-12): their
 * values are any doubles, which the engines add in different orders.
 */
export function firstDifference(
  a: readonly Record<string, unknown>[],
  b: readonly Record<string, unknown>[],
  roundedSums: ReadonlySet<string> = new Set(),
): string | undefined {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y) return `row ${i}: only one side has it: ${JSON.stringify(x ?? y)}`;
    for (const col of new Set([...Object.keys(x), ...Object.keys(y)])) {
      const u = x[col];
      const v = y[col];
      if (col === 'sum' && roundedSums.has(String(x.metric)) && typeof u === 'number' && typeof v === 'number') {
        if (Math.abs(u - v) <= 1e-12 * Math.max(1, Math.abs(u), Math.abs(v))) continue;
      }
      if (!Object.is(u, v))
        return `row ${i} (${String(x.metric)} ${String(x.granularity)} key ${JSON.stringify(x.key)} window ${String(x.window_start)} partition ${String(x.partition)}): ${col} ${JSON.stringify(x[col])} vs ${JSON.stringify(y[col])}`;
    }
  }
  return a.length === b.length ? undefined : `row counts differ: ${a.length} vs ${b.length}`;
}
