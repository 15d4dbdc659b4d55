/**
 * The lake writer: consumes the events topic and appends every record that is a readable JSON
 * object (services/events/event.ts `readableObject`), duplicates included, to the Parquet lake, committing files and offsets together through the manifest
 * (commitProtocol.ts). Its position lives in the manifest, not in the consumer group: on every
 * assignment it returns the manifest's offsets (or the log's beginning), so the group's committed
 * offsets are informational only (lag monitoring) and a restart resumes exactly.
 *
 * Records are staged as lines of a delimited file (stagingBuffer.ts: bytes copied from the
 * records, no JavaScript string per event) and rolled into files when the buffer reaches
 * `rollBytes` or gets `rollIntervalMs` old. A roll has DuckDB read the staging file and write it
 * with one partitioned `COPY ... (FORMAT parquet, PARTITION_BY ...)`: one file per (source
 * partition, dt, hr). Both run on DuckDB's own threads, so the roll overlaps with consumption
 * (one roll in flight; the next waits for it: backpressure).
 *
 * Each record is decoded under the writer's event mapping (the metric file `lk batch` runs with):
 * an event fills the typed columns (id, time, type, id hash); a record that is no event under it
 * goes to `<topic>.dlq` with the reason (the path that failed), before the commit that moves past
 * it (a crash can repeat a dead letter, never lose one), and stays in the lake with NULL typed
 * columns when it is a readable JSON object, so that a version with another mapping can still
 * count it (services/lake/lakeLayout.ts). Records that are not readable JSON objects are dead
 * letters only.
 *
 * A broker outage stops the reading, not the writer: the consumer rejoins when the broker is
 * back and resumes at the positions read so far (what is buffered stays buffered), and a roll
 * waits with its dead letters until they are delivered (services/log/outages.ts). The lake
 * itself is files: nothing of it depends on the broker being there.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { createEventDecoder } from '../../services/events/decoders/eventDecoder.ts';
import { LOGGED_RECORD_LIMITS } from '../../services/events/event.ts';
import { deadLetterRecord } from '../../services/ingest/deadLetter.ts';
import type { EventLog, LogConsumer, LogProducer, OutgoingRecord, PartitionOffset, RecordBatch } from '../../services/log/eventLog.ts';
import { acquireLock, releaseLock } from '../../services/storage/fileLock.ts';
import { deadLetterTopic } from '../../services/log/topics.ts';
import { checkTopics, classifyLogError, retryWhileUnavailable } from '../../services/log/outages.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';
import type { Logger } from '../../services/observability/logger.ts';
import { LakeManifest, WRITER_LOCK, type LakeFile, type PartitionPosition } from '../../services/lake/commitProtocol.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import { FILING_TIME_SQL, HIVE_DT_SQL, HIVE_HR_SQL, lakeMappingName, partFileName } from '../../services/lake/lakeLayout.ts';
import { FLAT_EVENT_MAPPING, type EventMapping } from '../../services/metrics/fieldSemantics.ts';
import { StagingBuffer, stagingSelectSql } from './stagingBuffer.ts';

export interface LakeWriterOptions {
  log: EventLog;
  topic: string;
  /** The topic's lake directory (`<data>/lake/<topic>`). */
  root: string;
  groupId: string;
  rollBytes: number;
  rollIntervalMs: number;
  logger: Logger;
  /** Wait this long for another writer to release the lake (ms). */
  lockTimeoutMs?: number;
  /** The event mapping the typed columns and dead letters follow (the metric file's; default: flat events). */
  mapping?: EventMapping;
}

export interface LakeWriterStats {
  records: number;
  rejected: Record<string, number>;
  commits: number;
  filesWritten: number;
  bytesWritten: number;
  lastRollMs: number;
}

/** Records read since the last roll: the staged rows, and the dead letters of the invalid ones. */
class RollBuffer {
  readonly staging = new StagingBuffer();
  readonly startedAt = Date.now();
  deadLetters: OutgoingRecord[] = [];
  rejected: Record<string, number> = {};
  get rows(): number {
    return this.staging.rows;
  }
  get bytes(): number {
    return this.staging.bytes;
  }
}

export class LakeWriter {
  readonly manifest: LakeManifest;
  private buffer = new RollBuffer();
  /** Position after the records buffered so far, per partition (what the next commit records). */
  private readonly positions = new Map<number, PartitionPosition>();
  /** Positions reported by fetches (also past transaction markers): used to detect catch-up. */
  private readonly fetched = new Map<number, number>();
  private rolling: Promise<void> = Promise.resolve();
  private consumer: LogConsumer | undefined;
  private dlqProducer: LogProducer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;
  private closed = false;
  private partitionCount = 0;
  readonly stats: LakeWriterStats = { records: 0, rejected: {}, commits: 0, filesWritten: 0, bytesWritten: 0, lastRollMs: 0 };
  private readonly lockPath: string;
  private readonly decoder;
  private readonly mappingName: string;

  private constructor(
    private readonly options: LakeWriterOptions,
    private readonly db: DuckDBInstance,
    private readonly conn: DuckDBConnection,
  ) {
    this.manifest = LakeManifest.open(options.root);
    this.lockPath = join(this.manifest.logDir, WRITER_LOCK);
    const mapping = options.mapping ?? FLAT_EVENT_MAPPING;
    this.decoder = createEventDecoder(mapping, []);
    this.mappingName = lakeMappingName(mapping);
  }

  /** Takes the lake's writer lock, cleans what a crash left behind and prepares DuckDB. */
  static async open(options: LakeWriterOptions): Promise<LakeWriter> {
    const manifest = LakeManifest.open(options.root);
    await acquireLock(join(manifest.logDir, WRITER_LOCK), options.lockTimeoutMs ?? 30_000).catch((err) => {
      throw new InfrastructureError(`the lake ${options.root} is locked by another writer (${errorMessage(err)})`);
    });
    try {
      const db = await DuckDBInstance.create(':memory:', { threads: '2' });
      const conn = await db.connect();
      const writer = new LakeWriter(options, db, conn);
      const swept = writer.manifest.sweepOrphans();
      if (swept.length > 0) options.logger.info({ files: swept.length }, 'removed files left by an interrupted commit');
      for (const [p, pos] of writer.manifest.current().positions) writer.positions.set(p, pos);
      return writer;
    } catch (err) {
      releaseLock(join(manifest.logDir, WRITER_LOCK));
      throw err;
    }
  }

  /** Committed position per partition (from the manifest). */
  committedPositions(): Map<number, PartitionPosition> {
    return new Map(this.manifest.current().positions);
  }

  /** Position of what has been read (committed or buffered) per partition. */
  readPositions(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [p, pos] of this.positions) out.set(p, Math.max(pos.nextOffset, this.fetched.get(p) ?? 0));
    return out;
  }

  async start(): Promise<void> {
    const { log, topic, groupId } = this.options;
    this.partitionCount = await log.partitionCount(topic);
    const beginnings = await log.beginningOffsets(topic);
    this.dlqProducer = await log.producer();
    const consumer = log.consumer({ groupId, fromBeginning: true });
    this.consumer = consumer;
    await consumer.subscribe([topic]);
    await consumer.run({
      onAssignment: async (assigned) => {
        // The manifest is the position of record: the group's offsets are never trusted.
        const committed = this.manifest.refresh().positions;
        return assigned.map<PartitionOffset>((tp) => {
          const pos = this.positions.get(tp.partition) ?? committed.get(tp.partition);
          return { topic: tp.topic, partition: tp.partition, offset: pos?.nextOffset ?? beginnings[tp.partition] ?? 0 };
        });
      },
      eachBatch: (batch) => this.onBatch(batch),
      onProgress: (p) => {
        if (p.nextOffset > (this.fetched.get(p.partition) ?? 0)) this.fetched.set(p.partition, p.nextOffset);
      },
    });
    consumer.done().catch((err: unknown) => {
      this.failure ??= err instanceof Error ? err : new Error(String(err));
    });
    this.timer = setInterval(
      () => {
        if (this.buffer.rows > 0 && Date.now() - this.buffer.startedAt >= this.options.rollIntervalMs) this.triggerRoll();
      },
      Math.max(50, Math.min(1000, this.options.rollIntervalMs / 4)),
    );
    this.timer.unref();
  }

  private async onBatch(batch: RecordBatch): Promise<void> {
    this.throwIfFailed();
    const now = Date.now();
    const p = batch.partition;
    let lastTimestamp = this.positions.get(p)?.lastTimestamp ?? 0;
    for (const r of batch.records) {
      const buf = this.buffer;
      lastTimestamp = r.timestamp;
      // The decoder's fast path where it decides (exactly the validator's), the validator's
      // otherwise: only a record it cannot decide pays for the full validation.
      const value = r.value;
      const d = this.decoder;
      if (d.decode(value, 0, value === null ? 0 : value.length, r.key, r.timestamp, LOGGED_RECORD_LIMITS))
        buf.staging.addEvent(value!, p, r.offset, r.timestamp, now, r.key, d);
      else {
        const rejection = d.rejection;
        buf.rejected[rejection.code] = (buf.rejected[rejection.code] ?? 0) + 1;
        buf.deadLetters.push(deadLetterRecord(value ?? Buffer.alloc(0), rejection, { source: `${batch.topic}/${p}`, line: r.offset }));
        // Readable, but no event under this mapping: kept for a version whose mapping reads it.
        if (value !== null && d.readable()) buf.staging.addRecord(value, p, r.offset, r.timestamp, now, r.key);
      }
      this.stats.records++;
      if (buf.bytes >= this.options.rollBytes) {
        // Roll inside the batch so that files stay near the roll size whatever the fetch size.
        this.positions.set(p, { nextOffset: r.offset + 1, lastTimestamp });
        // Backpressure: at most one roll in flight; this batch waits for the previous one.
        await this.rolling;
        this.throwIfFailed();
        void this.triggerRoll().catch(() => undefined);
      }
    }
    this.positions.set(p, { nextOffset: batch.nextOffset, lastTimestamp });
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Swaps the buffer and chains its roll after the previous one (commits stay in order). */
  private triggerRoll(): Promise<void> {
    const buf = this.buffer;
    const positions = new Map(this.positions);
    this.buffer = new RollBuffer();
    const previous = this.rolling;
    this.rolling = previous.then(() => (this.failure === undefined ? this.roll(buf, positions) : undefined));
    return this.rolling;
  }

  /** Rolls what is buffered now and waits until it is committed. */
  async flush(): Promise<void> {
    await this.triggerRoll();
    this.throwIfFailed();
  }

  private async roll(buf: RollBuffer, positions: Map<number, PartitionPosition>): Promise<void> {
    const started = Date.now();
    try {
      const committed = this.manifest.refresh().positions;
      const moved = [...positions].filter(([p, pos]) => pos.nextOffset > (committed.get(p)?.nextOffset ?? -1) || !committed.has(p));
      if (moved.length === 0 && buf.rows === 0) return;
      const files = buf.rows > 0 ? await this.writeFiles(buf) : [];
      if (files.length > 0) crashPoint('lake.roll.files-placed');
      if (buf.deadLetters.length > 0) {
        const dlq = deadLetterTopic(this.options.topic);
        const { log } = this.options;
        // Through an outage: the roll (and the rolls queued behind it) wait. A writer that is
        // closing gives up instead: nothing is committed, the next start reads the records again.
        await retryWhileUnavailable(() => this.dlqProducer!.send(dlq, buf.deadLetters), {
          what: `send ${buf.deadLetters.length} dead letters`,
          health: log.health,
          stopped: () => this.closed,
          check: checkTopics(log, [dlq]),
        });
        crashPoint('lake.roll.dead-letters-sent');
      }
      this.manifest.commit({
        op: 'append',
        topic: this.options.topic,
        partitionCount: Math.max(this.partitionCount, 1),
        add: files,
        positions: Object.fromEntries(moved.map(([p, pos]) => [String(p), pos])),
        rejected: buf.rejected,
      });
      crashPoint('lake.roll.committed');
      this.stats.commits++;
      this.stats.filesWritten += files.length;
      for (const f of files) this.stats.bytesWritten += f.bytes;
      for (const [code, n] of Object.entries(buf.rejected)) this.stats.rejected[code] = (this.stats.rejected[code] ?? 0) + n;
      this.stats.lastRollMs = Date.now() - started;
      // Informational only (lag dashboards): the manifest is the position of record.
      await this.consumer
        ?.commit(moved.map(([p, pos]) => ({ topic: this.options.topic, partition: p, offset: pos.nextOffset })))
        .catch((err) =>
          this.options.logger[classifyLogError(err) === 'retry' ? 'debug' : 'warn'](
            { err: errorMessage(err) },
            'could not commit group offsets (informational only)',
          ),
        );
      this.options.logger.debug({ rows: buf.rows, files: files.length, ms: this.stats.lastRollMs }, 'lake commit');
    } catch (err) {
      this.failure ??= err instanceof Error ? err : new Error(String(err));
      this.options.logger.error({ err: errorMessage(err) }, 'lake roll failed; the writer stops (a restart resumes from the manifest)');
      throw this.failure;
    }
  }

  /** Phase 1 of the commit: writes the buffer as Parquet files and places them, unlisted. */
  private async writeFiles(buf: RollBuffer): Promise<LakeFile[]> {
    const rollId = randomBytes(4).toString('hex');
    const outDir = this.manifest.tmpPath(`roll-${rollId}`);
    const stagingPath = this.manifest.tmpPath(`roll-${rollId}.staging`);
    const t0 = performance.now();
    try {
      await buf.staging.writeTo(stagingPath);
      const t1 = performance.now();
      // Straight from the staging file into the partitioned Parquet files (no table in between).
      await this.conn.run(
        `COPY (SELECT *, kafka_partition AS __p, ${HIVE_DT_SQL} AS dt, ${HIVE_HR_SQL} AS hr FROM (${stagingSelectSql(stagingPath, this.mappingName)}) ORDER BY kafka_partition, kafka_offset)
         TO ${sqlQuote(outDir)} (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (__p, dt, hr))`,
      );
      const t2 = performance.now();
      crashPoint('lake.roll.files-written');
      // What each produced file holds, read back from the files themselves (three small columns):
      // the manifest entry then describes exactly what a reader will find.
      const reader = await this.conn.runAndReadAll(
        `SELECT filename, count(*)::BIGINT, min(kafka_partition), min(kafka_offset)::BIGINT, max(kafka_offset)::BIGINT, min(${FILING_TIME_SQL})::BIGINT, max(${FILING_TIME_SQL})::BIGINT
         FROM read_parquet(${sqlQuote(join(outDir, '**', '*.parquet'))}, filename = true, hive_partitioning = false) GROUP BY filename`,
      );
      // LK_BATCH_PROFILE=1: where a roll's time goes (the staging file is written from this
      // thread; DuckDB's threads read it, write the Parquet files and read their columns back).
      if (process.env.LK_BATCH_PROFILE)
        process.stderr.write(
          `lake roll: ${buf.rows} rows, staging file ${(t1 - t0).toFixed(0)} ms, copy ${(t2 - t1).toFixed(0)} ms, stats ${(performance.now() - t2).toFixed(0)} ms\n`,
        );
      const files: LakeFile[] = [];
      let rowsInFiles = 0;
      for (const row of reader.getRows()) {
        const [file, rows, p, from, to, minTs, maxTs] = row as [string, bigint, number, bigint, bigint, bigint, bigint];
        // .../__p=<p>/dt=<dt>/hr=<hr>/<file>: the Hive values are the directory names DuckDB chose.
        const leaf = file.slice(0, file.lastIndexOf('/'));
        const hr = leaf.slice(leaf.lastIndexOf('/hr=') + 4);
        const dtDir = leaf.slice(0, leaf.lastIndexOf('/hr='));
        const dt = dtDir.slice(dtDir.lastIndexOf('/dt=') + 4);
        // DuckDB writes one file per partition directory unless a file size limit is set.
        const produced = readdirSync(leaf);
        if (produced.length !== 1) throw new InfrastructureError(`expected one Parquet file in ${leaf}, found ${produced.length}`);
        const name = partFileName(p, Number(from), Number(to), rollId);
        const rel = `dt=${dt}/hr=${hr}/${name}`;
        const placed = this.manifest.placeFile(file, rel);
        rowsInFiles += Number(rows);
        files.push({
          path: rel,
          partition: p,
          fromOffset: Number(from),
          toOffset: Number(to),
          rows: Number(rows),
          bytes: statSync(placed).size,
          dt,
          hr,
          minTsMs: Number(minTs),
          maxTsMs: Number(maxTs),
        });
      }
      if (rowsInFiles !== buf.rows) throw new InfrastructureError(`the roll staged ${buf.rows} rows but its files hold ${rowsInFiles}`);
      return files;
    } finally {
      rmSync(outDir, { recursive: true, force: true });
      rmSync(stagingPath, { force: true });
    }
  }

  /**
   * Resolves once every partition has been read up to `ends` (the log's end offsets read by the
   * caller) and committed; false when the writer was closed first. `onProgress` gets the
   * position read so far per partition.
   */
  async catchUp(ends: number[], onProgress?: (read: Map<number, number>) => void): Promise<boolean> {
    for (;;) {
      this.throwIfFailed();
      if (this.closed) return false;
      const read = this.readPositions();
      onProgress?.(read);
      if (ends.every((end, p) => end === 0 || (read.get(p) ?? 0) >= end)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.flush();
    return true;
  }

  /** Graceful stop: stops consuming, commits what is buffered, releases the lake. */
  async close(options: { commitPending: boolean } = { commitPending: true }): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.consumer?.stop();
    try {
      if (options.commitPending && this.failure === undefined) await this.flush();
      else await this.rolling.catch(() => undefined);
    } finally {
      await this.dlqProducer?.close();
      this.conn.closeSync();
      this.db.closeSync();
      releaseLock(this.lockPath);
    }
  }

  /** Resolves/rejects when the consumer stops (a failure of the writer rejects). */
  async done(): Promise<void> {
    await this.consumer?.done();
    this.throwIfFailed();
  }
}
