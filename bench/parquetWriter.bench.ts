/**
 * `npm run bench:parquet`: why the lake is written with DuckDB and not parquetjs-lite.
 *
 * The same LK_BENCH_ROWS (default 200,000) generated events, as the lake's eight columns, written
 * to one snappy-compressed Parquet file by
 *   (a) parquetjs-lite (the baseline the user named): ParquetWriter.appendRow per row;
 *   (b) DuckDB through its appender, the lake writer's former path: each record validated (the
 *       event scanner) and turned into a string, data chunks into a staging table, then
 *       `COPY ... (FORMAT parquet)` with `id` and `type` extracted from the raw JSON;
 *   (c) DuckDB the way the lake writer does it now: the rows staged as a delimited file
 *       (batch/lake/stagingBuffer.ts, bytes copied from the records, id and type located by the
 *       event scanner), read by DuckDB's CSV reader and written with `COPY`.
 * (b) and (c) start from the records' bytes and include their validation, as the writer does.
 * All files are read back with DuckDB and must hold every row with identical content, so the
 * comparison is between correct writers. No broker needed. One DuckDB roll runs on DuckDB's own
 * threads; in the lake writer what matters most is the time it takes from the consuming thread
 * (bench:batch measures the whole).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOUBLE, DuckDBDataChunk, DuckDBInstance, INTEGER, VARCHAR } from '@duckdb/node-api';
import { sqlQuote } from '../services/storage/sql.ts';
import { StagingBuffer, stagingSelectSql } from '../batch/lake/stagingBuffer.ts';
import { EventScanner, LOGGED_EVENT_SCAN_LIMITS } from '../services/events/eventScanner.ts';
import { createEventDecoder } from '../services/events/decoders/eventDecoder.ts';
import { LOGGED_RECORD_LIMITS } from '../services/events/event.ts';
import { FLAT_EVENT_MAPPING } from '../services/metrics/fieldSemantics.ts';
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
  values: Buffer[];
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
  const rows: LakeRows = { values: [], raw: [], id: [], type: [], ts: [], partition: [], offset: [], timestamp: [], ingest: [] };
  const now = Date.now();
  let i = 0;
  for (const line of generateEventLines({ seed: 7, count: ROWS, eventsPerSecond: 1000 })) {
    const event = JSON.parse(line) as { id: string; type: string; ts: string | number };
    rows.raw.push(line);
    rows.values.push(Buffer.from(line));
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

const CHUNK_ROWS = 2048; // DuckDB's vector size: the largest data chunk

async function writeWithAppender(rows: LakeRows, path: string): Promise<number> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    await conn.run(
      'CREATE TABLE staging (raw VARCHAR, ts_ms DOUBLE, kafka_partition INTEGER, kafka_offset DOUBLE, kafka_timestamp DOUBLE, ingest_time DOUBLE)',
    );
    const types = [VARCHAR, DOUBLE, INTEGER, DOUBLE, DOUBLE, DOUBLE];
    // What the former writer did per record: validate (the scanner), then the text as a string.
    const started = performance.now();
    const scanner = new EventScanner();
    const raw: string[] = [];
    const ts: number[] = [];
    for (const v of rows.values) {
      if (!scanner.scan(v, LOGGED_EVENT_SCAN_LIMITS)) throw new Error('generated line is not an event');
      raw.push(v.toString('utf8'));
      ts.push(scanner.ts);
    }
    const appender = await conn.createAppender('staging');
    for (let start = 0; start < raw.length; start += CHUNK_ROWS) {
      const end = Math.min(start + CHUNK_ROWS, raw.length);
      const chunk = DuckDBDataChunk.create(types, end - start);
      chunk.setColumnValues(0, raw.slice(start, end));
      chunk.setColumnValues(1, ts.slice(start, end));
      chunk.setColumnValues(2, rows.partition.slice(start, end));
      chunk.setColumnValues(3, rows.offset.slice(start, end));
      chunk.setColumnValues(4, rows.timestamp.slice(start, end));
      chunk.setColumnValues(5, rows.ingest.slice(start, end));
      appender.appendDataChunk(chunk);
    }
    appender.closeSync();
    const jsThreadMs = performance.now() - started;
    await conn.run(
      `COPY (SELECT json_extract_string(raw, '$.id') AS id, json_extract_string(raw, '$.type') AS type, ts_ms::BIGINT AS ts_ms, raw,
         kafka_partition, kafka_offset::BIGINT AS kafka_offset, kafka_timestamp::BIGINT AS kafka_timestamp, ingest_time::BIGINT AS ingest_time
       FROM staging) TO ${sqlQuote(path)} (FORMAT parquet, COMPRESSION snappy)`,
    );
    return jsThreadMs;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

async function writeWithStagingFile(rows: LakeRows, path: string): Promise<number> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const started = performance.now();
    const decoder = createEventDecoder(FLAT_EVENT_MAPPING, []);
    const staging = new StagingBuffer();
    for (let i = 0; i < rows.values.length; i++) {
      const v = rows.values[i]!;
      if (!decoder.decode(v, 0, v.length, null, rows.timestamp[i]!, LOGGED_RECORD_LIMITS))
        throw new Error(`generated line ${i} is not an event`);
      staging.addEvent(v, rows.partition[i]!, rows.offset[i]!, rows.timestamp[i]!, null, decoder);
    }
    const stagingPath = `${path}.staging`;
    const jsThreadMs = performance.now() - started; // writeTo below runs on libuv's threads
    await staging.writeTo(stagingPath);
    await conn.run(`SET TimeZone = 'UTC'`);
    // The columns of the other writers (the lake's layout when this benchmark was written).
    await conn.run(
      `COPY (SELECT id, type, ts_ms, raw, kafka_partition, kafka_offset, epoch_ms(record_timestamp) AS kafka_timestamp FROM (${stagingSelectSql(stagingPath, 'flat')}))
       TO ${sqlQuote(path)} (FORMAT parquet, COMPRESSION snappy)`,
    );
    rmSync(stagingPath);
    return jsThreadMs;
  } finally {
    conn.closeSync();
    instance.closeSync();
  }
}

/**
 * Row count and an order-independent content digest of a lake-shaped Parquet file, by DuckDB
 * (without ingest_time, which the lake no longer keeps and the staging file no longer carries).
 */
async function digest(path: string): Promise<string> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  try {
    const reader = await conn.runAndReadAll(
      `SELECT count(*)::BIGINT, bit_xor(hash(id, type, ts_ms::BIGINT, raw, kafka_partition::INTEGER, kafka_offset::BIGINT, kafka_timestamp::BIGINT))::VARCHAR
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
    const appenderPath = join(dir, 'appender.parquet');
    const duckPath = join(dir, 'duckdb.parquet');
    process.stderr.write(`writing ${n.toLocaleString('en-US')} rows with parquetjs-lite...\n`);
    const js = await timed(() => writeWithParquetJs(rows, jsPath));
    process.stderr.write('writing the same rows with DuckDB through the appender...\n');
    const appender = await timed(() => writeWithAppender(rows, appenderPath));
    process.stderr.write('writing the same rows with DuckDB from a staging file (the lake writer)...\n');
    const duck = await timed(() => writeWithStagingFile(rows, duckPath));
    const [jsDigest, appenderDigest, duckDigest] = [await digest(jsPath), await digest(appenderPath), await digest(duckPath)];
    if (jsDigest !== duckDigest || appenderDigest !== duckDigest)
      throw new Error(`the files differ: parquetjs-lite ${jsDigest}, appender ${appenderDigest}, staging file ${duckDigest}`);
    const jsRate = n / js.seconds;
    const appenderRate = n / appender.seconds;
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
        'DuckDB appender + COPY (former)',
        `${Math.round(appenderRate).toLocaleString('en-US')} rows/s, ${(statSync(appenderPath).size / n).toFixed(1)} B/row, ${((appender.value * 1000) / n).toFixed(2)} us/row on the JS thread`,
      ],
      [
        'DuckDB staging file + COPY (lake writer)',
        `${Math.round(duckRate).toLocaleString('en-US')} rows/s, ${(statSync(duckPath).size / n).toFixed(1)} B/row, ${((duck.value * 1000) / n).toFixed(2)} us/row on the JS thread`,
      ],
      ['ratio lake writer / parquetjs-lite', `${(duckRate / jsRate).toFixed(1)}x`],
      ['ratio lake writer / appender', `${(duckRate / appenderRate).toFixed(1)}x`],
      ['peak RSS', `${(rss.peak() / 2 ** 20).toFixed(0)} MiB`],
    ]);
    console.log(
      JSON.stringify({
        bench: 'parquet',
        rows: n,
        parquetjsRowsPerSec: Math.round(jsRate),
        appenderRowsPerSec: Math.round(appenderRate),
        appenderJsThreadUsPerRow: (appender.value * 1000) / n,
        stagingJsThreadUsPerRow: (duck.value * 1000) / n,
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
