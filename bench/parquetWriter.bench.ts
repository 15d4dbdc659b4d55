/**
 * `npm run bench:parquet`: why the lake is written with DuckDB and not parquetjs-lite.
 *
 * The same LK_BENCH_ROWS (default 200,000) generated events, as the lake's eight columns, written
 * to one snappy-compressed Parquet file by
 *   (a) parquetjs-lite (the baseline the user named): ParquetWriter.appendRow per row;
 *   (b) DuckDB, the way the lake writer does it: data chunks into a staging table through the
 *       appender, then `COPY ... (FORMAT parquet)` with the lake's projection.
 * Both files are read back with DuckDB and must hold every row with identical content, so the
 * comparison is between two correct writers. No broker needed.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBDataChunk, DuckDBInstance } from '@duckdb/node-api';
import { CHUNK_ROWS, LAKE_SELECT, STAGING_COLUMNS, STAGING_TYPES } from '../batch/lake/lakeWriter.ts';
import { sqlQuote } from '../batch/lake/lakeSchema.ts';
import { generateEventLines } from '../services/ingest/generator.ts';
import { machineLine, printTable, timed, trackPeakRss } from './lib.ts';

const ROWS = Number(process.env.LK_BENCH_ROWS ?? 200_000);

/** parquetjs-lite ships no types; this is the part of its API the baseline uses. */
interface ParquetJs {
  ParquetSchema: new (fields: Record<string, { type: string; compression?: string }>) => unknown;
  ParquetWriter: { openFile(schema: unknown, path: string): Promise<{ appendRow(row: object): Promise<void>; close(): Promise<void> }> };
}
const parquetjs = createRequire(import.meta.url)('parquetjs-lite') as ParquetJs;

interface LakeRows {
  raw: string[];
  id: string[];
  type: string[];
  ts: number[];
  partition: number[];
  offset: number[];
  timestamp: number[];
  ingest: number[];
}

function generateRows(): LakeRows {
  const rows: LakeRows = { raw: [], id: [], type: [], ts: [], partition: [], offset: [], timestamp: [], ingest: [] };
  const now = Date.now();
  let i = 0;
  for (const line of generateEventLines({ seed: 7, count: ROWS, eventsPerSecond: 1000 })) {
    const event = JSON.parse(line) as { id: string; type: string; ts: string | number };
    rows.raw.push(line);
    rows.id.push(event.id);
    rows.type.push(event.type);
    rows.ts.push(typeof event.ts === 'number' ? event.ts : Date.parse(event.ts));
    rows.partition.push(i % 6);
    rows.offset.push(Math.floor(i / 6));
    rows.timestamp.push(now + i);
    rows.ingest.push(now + i);
    i++;
  }
  return rows;
}

async function writeWithParquetJs(rows: LakeRows, path: string): Promise<void> {
  const utf8 = { type: 'UTF8', compression: 'SNAPPY' };
  const int64 = { type: 'INT64', compression: 'SNAPPY' };
  const schema = new parquetjs.ParquetSchema({
    id: utf8,
    type: utf8,
    ts_ms: int64,
    raw: utf8,
    kafka_partition: { type: 'INT32', compression: 'SNAPPY' },
    kafka_offset: int64,
    kafka_timestamp: int64,
    ingest_time: int64,
  });
  const writer = await parquetjs.ParquetWriter.openFile(schema, path);
  for (let i = 0; i < rows.raw.length; i++) {
    await writer.appendRow({
      id: rows.id[i],
      type: rows.type[i],
      ts_ms: rows.ts[i],
      raw: rows.raw[i],
      kafka_partition: rows.partition[i],
      kafka_offset: rows.offset[i],
      kafka_timestamp: rows.timestamp[i],
      ingest_time: rows.ingest[i],
    });
  }
  await writer.close();
}

async function writeWithDuckDb(rows: LakeRows, path: string): Promise<void> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    await conn.run(`CREATE TABLE staging (${STAGING_COLUMNS})`);
    const appender = await conn.createAppender('staging');
    for (let start = 0; start < rows.raw.length; start += CHUNK_ROWS) {
      const end = Math.min(start + CHUNK_ROWS, rows.raw.length);
      const chunk = DuckDBDataChunk.create(STAGING_TYPES, end - start);
      chunk.setColumnValues(0, rows.raw.slice(start, end));
      chunk.setColumnValues(1, rows.ts.slice(start, end));
      chunk.setColumnValues(2, rows.partition.slice(start, end));
      chunk.setColumnValues(3, rows.offset.slice(start, end));
      chunk.setColumnValues(4, rows.timestamp.slice(start, end));
      chunk.setColumnValues(5, rows.ingest.slice(start, end));
      appender.appendDataChunk(chunk);
    }
    appender.closeSync();
    await conn.run(`COPY (SELECT ${LAKE_SELECT} FROM staging) TO ${sqlQuote(path)} (FORMAT parquet, COMPRESSION snappy)`);
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/** Row count and an order-independent content digest of a lake-shaped Parquet file, by DuckDB. */
async function digest(path: string): Promise<string> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const reader = await conn.runAndReadAll(
      `SELECT count(*)::BIGINT, bit_xor(hash(id, type, ts_ms::BIGINT, raw, kafka_partition::INTEGER, kafka_offset::BIGINT, kafka_timestamp::BIGINT, ingest_time::BIGINT))::VARCHAR
       FROM read_parquet(${sqlQuote(path)})`,
    );
    const [count, hash] = reader.getRows()[0]! as [bigint, string];
    return `${count} rows, digest ${hash}`;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

async function main(): Promise<void> {
  console.log(machineLine());
  const dir = mkdtempSync(join(tmpdir(), 'lk-bench-parquet-'));
  const rss = trackPeakRss();
  try {
    const rows = generateRows();
    const n = rows.raw.length; // the generator adds its duplicates on top of ROWS events
    const jsPath = join(dir, 'parquetjs.parquet');
    const duckPath = join(dir, 'duckdb.parquet');
    process.stderr.write(`writing ${n.toLocaleString('en-US')} rows with parquetjs-lite...\n`);
    const js = await timed(() => writeWithParquetJs(rows, jsPath));
    process.stderr.write('writing the same rows with DuckDB...\n');
    const duck = await timed(() => writeWithDuckDb(rows, duckPath));
    const [jsDigest, duckDigest] = [await digest(jsPath), await digest(duckPath)];
    if (jsDigest !== duckDigest) throw new Error(`the two files differ: parquetjs-lite ${jsDigest}, DuckDB ${duckDigest}`);
    const jsRate = n / js.seconds;
    const duckRate = n / duck.seconds;
    console.log(
      `bench:parquet — ${n.toLocaleString('en-US')} lake rows (8 columns, snappy), one file each; read back identical (${duckDigest})`,
    );
    printTable([
      [
        'parquetjs-lite (baseline)',
        `${Math.round(jsRate).toLocaleString('en-US')} rows/s, ${(statSync(jsPath).size / n).toFixed(1)} B/row`,
      ],
      [
        'DuckDB appender + COPY',
        `${Math.round(duckRate).toLocaleString('en-US')} rows/s, ${(statSync(duckPath).size / n).toFixed(1)} B/row`,
      ],
      ['ratio DuckDB / parquetjs-lite', `${(duckRate / jsRate).toFixed(1)}x`],
      ['peak RSS', `${(rss.peak() / 2 ** 20).toFixed(0)} MiB`],
    ]);
    console.log(
      JSON.stringify({
        bench: 'parquet',
        rows: n,
        parquetjsRowsPerSec: Math.round(jsRate),
        duckdbRowsPerSec: Math.round(duckRate),
        ratio: duckRate / jsRate,
      }),
    );
  } finally {
    rss.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
