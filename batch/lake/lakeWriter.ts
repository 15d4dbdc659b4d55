/**
 * The lake writer: consumes the events topic and appends every record that is a readable JSON
 * object (services/events/event.ts `readableObject`), duplicates included, to the topic's Delta
 * table (services/lake/lakeTable.ts), committing files and
 * positions together: each roll is one Delta commit whose transaction identifiers say, per
 * source partition, the offset the table now holds every record below (deltaLog.ts,
 * COMMIT_KINDS.append).
 *
 * Exclusivity comes from the commit, not from a lock: versions are created only if absent, and
 * each partition's claim must continue exactly where the table's transaction identifier stands.
 * The consumer group decides which writer reads which partition; when two writers did read the
 * same records anyway (a rebalance hands a partition over while the previous owner still rolls
 * it, or two writers run with different groups), the second commit finds the partition already
 * covered (it drops those files: a no-op) or covered in part (it drops them and continues from
 * where the table stands: a rewind). A record is never in the table twice, none is skipped.
 *
 * Positions live in the table, not in the consumer group: on every assignment the writer returns
 * the table's offsets (or the log's beginning), so the group's committed offsets are
 * informational only (lag monitoring) and a restart resumes exactly.
 *
 * Records are staged as lines of a delimited file (stagingBuffer.ts: bytes copied from the
 * records, no JavaScript string per event) and rolled when the buffer reaches `rollBytes` or gets
 * `rollIntervalMs` old. A roll has DuckDB read the staging file and write it with one
 * partitioned `COPY ... (FORMAT parquet, PARTITION_BY ...)` into a local scratch folder: one file
 * per (source partition, dt, hr). Then the files are uploaded to the table's folders (still
 * invisible: no log version lists them), and one commit adds them. Both run beside consumption
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
 * itself is files or objects: nothing of it depends on the broker being there.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { createEventDecoder } from '../../services/events/decoders/eventDecoder.ts';
import { LOGGED_RECORD_LIMITS } from '../../services/events/event.ts';
import { deadLetterRecord } from '../../services/ingest/deadLetter.ts';
import type { EventLog, LogConsumer, LogProducer, OutgoingRecord, PartitionOffset, RecordBatch } from '../../services/log/eventLog.ts';
import { checkTopics, classifyLogError, retryWhileUnavailable } from '../../services/log/outages.ts';
import { deadLetterTopic } from '../../services/log/topics.ts';
import { crashPoint } from '../../services/faults/crashPoints.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { AddAction } from '../../services/lake/delta/actions.ts';
import { encodePath, type AppendClaim, type DeltaLog } from '../../services/lake/delta/deltaLog.ts';
import { LAKE_COLUMNS, NULL_PARTITION, lakeMappingName, partFileName, partitionFolder } from '../../services/lake/lakeLayout.ts';
import { FLAT_EVENT_MAPPING, type EventMapping } from '../../services/metrics/fieldSemantics.ts';
import { sweepScratch, type LakeHandle } from '../../services/lake/lakeLocation.ts';
import {
  lakeIncompatibility,
  lakePositions,
  logTimeAppId,
  openLakeForWriting,
  writerAppId,
  type PartitionPosition,
} from '../../services/lake/lakeTable.ts';
import { sqlQuote } from '../../services/storage/sql.ts';
import { StagingBuffer, stagingSelectSql } from './stagingBuffer.ts';

export interface LakeWriterOptions {
  log: EventLog;
  topic: string;
  /** The topic's lake table (services/lake/lakeLocation.ts). */
  lake: LakeHandle;
  groupId: string;
  rollBytes: number;
  rollIntervalMs: number;
  logger: Logger;
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
  /** Commit latency of each roll (ms): from the first attempt to the created version. */
  commitMs: number[];
  /** Partitions another writer had covered, in whole or in part, when this one committed. */
  rewinds: number;
}

/** Where the writer stands in one partition; `epoch` changes when it starts over from the table. */
interface Position extends PartitionPosition {
  epoch: number;
  /** The table's txn version the next claim builds on (undefined: the table has none yet). */
  base: number | undefined;
}

/** One partition's records in one roll: the claim it becomes. */
interface Span {
  epoch: number;
  from: number | undefined;
  to: number;
  lastTimestamp: number;
}

/** Records read since the last roll: the staged rows, the dead letters, each partition's span. */
class RollBuffer {
  readonly staging = new StagingBuffer();
  readonly startedAt = Date.now();
  readonly spans = new Map<number, Span>();
  deadLetters: OutgoingRecord[] = [];
  rejected: Record<string, number> = {};
  get rows(): number {
    return this.staging.rows;
  }
  get bytes(): number {
    return this.staging.bytes;
  }
}

/** A file of a roll: where it is written locally, its key in the table, and its add action. */
interface RolledFile {
  partition: number;
  local: string;
  key: string;
  add: AddAction;
}

export class LakeWriter {
  private buffer = new RollBuffer();
  private readonly positions = new Map<number, Position>();
  /** Positions reported by fetches (also past transaction markers): used to detect catch-up. */
  private readonly fetched = new Map<number, number>();
  private rolling: Promise<void> = Promise.resolve();
  private consumer: LogConsumer | undefined;
  private dlqProducer: LogProducer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failure: unknown;
  private closed = false;
  /** The consumer has joined its group (its offsets can be committed). */
  private running = false;
  readonly stats: LakeWriterStats = {
    records: 0,
    rejected: {},
    commits: 0,
    filesWritten: 0,
    bytesWritten: 0,
    lastRollMs: 0,
    commitMs: [],
    rewinds: 0,
  };
  private readonly decoder;
  private readonly mappingName: string;

  private constructor(
    private readonly options: LakeWriterOptions,
    /** The table's Delta log: the position of record. */
    readonly table: DeltaLog,
    private readonly db: DuckDBInstance,
    private readonly conn: DuckDBConnection,
  ) {
    const mapping = options.mapping ?? FLAT_EVENT_MAPPING;
    this.decoder = createEventDecoder(mapping, []);
    this.mappingName = lakeMappingName(mapping);
  }

  /** Opens the table (creating or converting it when needed) and prepares DuckDB. */
  static async open(options: LakeWriterOptions): Promise<LakeWriter> {
    const table = await openLakeForWriting(options.lake, options.logger);
    const db = await DuckDBInstance.create(':memory:', { threads: '2' });
    const conn = await db.connect();
    // Epoch milliseconds become UTC instants, and dt/hr are UTC dates and hours.
    await conn.run(`SET TimeZone = 'UTC'`);
    mkdirSync(options.lake.scratch, { recursive: true });
    const swept = sweepScratch(options.lake.scratch);
    if (swept > 0) options.logger.info({ entries: swept }, 'removed what interrupted rolls left in the scratch folder');
    return new LakeWriter(options, table, db, conn);
  }

  /** Committed position per partition (from the table). */
  committedPositions(): Map<number, PartitionPosition> {
    return lakePositions(this.table.current, this.options.topic);
  }

  /** Position of what has been read (committed or buffered) per partition. */
  readPositions(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [p, pos] of this.positions) out.set(p, Math.max(pos.nextOffset, this.fetched.get(p) ?? 0));
    return out;
  }

  async start(): Promise<void> {
    const { log, topic, groupId } = this.options;
    const beginnings = await log.beginningOffsets(topic);
    this.dlqProducer = await log.producer();
    const consumer = log.consumer({ groupId, fromBeginning: true });
    this.consumer = consumer;
    await consumer.subscribe([topic]);
    await consumer.run({
      onAssignment: async (assigned) => {
        // The table is the position of record: the group's offsets are never trusted. A partition
        // (re)assigned starts over from the table: what this writer buffered of it before is
        // dropped (its rolls find the partition's epoch changed).
        const committed = lakePositions(await this.table.refresh(), topic);
        for (const tp of assigned) {
          const c = committed.get(tp.partition);
          const next = c?.nextOffset ?? beginnings[tp.partition] ?? 0;
          this.restart(tp.partition, { nextOffset: next, lastTimestamp: c?.lastTimestamp ?? 0, base: c?.nextOffset });
          this.fetched.set(tp.partition, next);
        }
        if (assigned.some((tp) => this.buffer.spans.has(tp.partition))) void this.triggerRoll().catch(() => undefined);
        // A partition the table has no position for yet is registered by the next commit.
        for (const tp of assigned) if (!committed.has(tp.partition)) this.openSpan(this.buffer, tp.partition);
        return assigned.map<PartitionOffset>((tp) => ({ ...tp, offset: this.positions.get(tp.partition)!.nextOffset }));
      },
      eachBatch: (batch) => this.onBatch(batch),
      onProgress: (p) => {
        if (p.nextOffset > (this.fetched.get(p.partition) ?? 0)) this.fetched.set(p.partition, p.nextOffset);
      },
    });
    this.running = true;
    consumer.done().catch((err: unknown) => {
      this.failure ??= err instanceof Error ? err : new Error(String(err));
    });
    this.timer = setInterval(
      () => {
        if (this.buffer.spans.size > 0 && Date.now() - this.buffer.startedAt >= this.options.rollIntervalMs)
          void this.triggerRoll().catch(() => undefined);
      },
      Math.max(50, Math.min(1000, this.options.rollIntervalMs / 4)),
    );
    this.timer.unref();
  }

  /**
   * Starts partition `p` over at `at` in a new epoch. The position object is changed in place: a
   * batch of `p` held in onBatch across an await sees the new epoch and stops.
   */
  private restart(p: number, at: Omit<Position, 'epoch'>): void {
    const pos = this.positions.get(p);
    if (pos === undefined) this.positions.set(p, { ...at, epoch: 1 });
    else Object.assign(pos, at, { epoch: pos.epoch + 1 });
  }

  /** The buffer's span of `p`, opened at the partition's current position when it has none. */
  private openSpan(buf: RollBuffer, p: number): Span {
    let span = buf.spans.get(p);
    if (span === undefined) {
      const pos = this.positions.get(p)!;
      span = { epoch: pos.epoch, from: pos.base, to: pos.nextOffset, lastTimestamp: pos.lastTimestamp };
      buf.spans.set(p, span);
    }
    return span;
  }

  private async onBatch(batch: RecordBatch): Promise<void> {
    this.throwIfFailed();
    const p = batch.partition;
    const pos = this.positions.get(p);
    if (pos === undefined) return; // not assigned through onAssignment: nothing to continue from
    const epoch = pos.epoch;
    for (const r of batch.records) {
      // A record before the position was read already (a fetch from before a rewind).
      if (r.offset < pos.nextOffset) continue;
      const buf = this.buffer;
      const span = this.openSpan(buf, p);
      // The decoder's fast path where it decides (exactly the validator's), the validator's
      // otherwise: only a record it cannot decide pays for the full validation.
      const value = r.value;
      const d = this.decoder;
      if (d.decode(value, 0, value === null ? 0 : value.length, r.key, r.timestamp, LOGGED_RECORD_LIMITS))
        buf.staging.addEvent(value!, p, r.offset, r.timestamp, r.key, d);
      else {
        const rejection = d.rejection;
        buf.rejected[rejection.code] = (buf.rejected[rejection.code] ?? 0) + 1;
        buf.deadLetters.push(deadLetterRecord(value ?? Buffer.alloc(0), rejection, { source: `${batch.topic}/${p}`, line: r.offset }));
        // Readable, but no event under this mapping: kept for a version whose mapping reads it.
        if (value !== null && d.readable()) buf.staging.addRecord(value, p, r.offset, r.timestamp, r.key);
      }
      this.stats.records++;
      pos.nextOffset = span.to = r.offset + 1;
      pos.lastTimestamp = span.lastTimestamp = r.timestamp;
      if (buf.bytes >= this.options.rollBytes) {
        // Roll inside the batch so that files stay near the roll size whatever the fetch size.
        // Backpressure: at most one roll in flight; this batch waits for the previous one.
        await this.rolling;
        this.throwIfFailed();
        // The partition started over from the table meanwhile: the rest of this batch is stale.
        if (pos.epoch !== epoch) return;
        void this.triggerRoll().catch(() => undefined);
      }
    }
    if (pos.epoch !== epoch || batch.nextOffset <= pos.nextOffset) return;
    // Past transaction markers or aborted records: the position moves without a record.
    pos.nextOffset = batch.nextOffset;
    this.openSpan(this.buffer, p).to = batch.nextOffset;
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /** Swaps the buffer and chains its roll after the previous one (commits stay in order). */
  private triggerRoll(): Promise<void> {
    const buf = this.buffer;
    this.buffer = new RollBuffer();
    // The next claims of these partitions build on this roll's.
    for (const [p, span] of buf.spans) {
      const pos = this.positions.get(p)!;
      if (pos.epoch === span.epoch) pos.base = span.to;
    }
    const previous = this.rolling;
    this.rolling = previous.then(() => (this.failure === undefined ? this.roll(buf) : undefined));
    return this.rolling;
  }

  /** Rolls what is buffered now and waits until it is committed. */
  async flush(): Promise<void> {
    await this.triggerRoll();
    this.throwIfFailed();
  }

  private async roll(buf: RollBuffer): Promise<void> {
    const started = Date.now();
    const { topic } = this.options;
    try {
      // Spans of a partition that started over since (a rewind or a new assignment) are dropped.
      const spans = [...buf.spans].filter(([p, s]) => this.positions.get(p)?.epoch === s.epoch && (s.from === undefined || s.to > s.from));
      if (spans.length === 0 && buf.deadLetters.length === 0) return;
      const live = new Set(spans.map(([p]) => p));
      const files = buf.rows > 0 ? await this.writeFiles(buf, live) : [];
      try {
        // Upload only the files of partitions the table still expects from this writer.
        const table = await this.table.refresh();
        const expected = (p: number) => table?.txnVersion(writerAppId(topic, p)) === spans.find(([q]) => q === p)![1].from;
        const upload = files.filter((f) => expected(f.partition));
        const uploadStarted = performance.now();
        await this.upload(upload);
        if (process.env.LK_BATCH_PROFILE)
          process.stderr.write(
            `lake roll: uploaded ${upload.length} files (${upload.reduce((n, f) => n + f.add.size, 0)} bytes) in ${(performance.now() - uploadStarted).toFixed(0)} ms\n`,
          );
        if (upload.length > 0) crashPoint('lake.roll.files-uploaded');
        if (buf.deadLetters.length > 0) {
          const dlq = deadLetterTopic(topic);
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
        const claims: AppendClaim[] = spans.map(([p, s]) => ({
          appId: writerAppId(topic, p),
          from: s.from,
          to: s.to,
          adds: upload.filter((f) => f.partition === p).map((f) => f.add),
          companions: [{ appId: logTimeAppId(topic, p), version: s.lastTimestamp }],
        }));
        const commitStarted = performance.now();
        const outcome =
          claims.length > 0
            ? await this.table.commit({
                kind: 'append',
                claims,
                compatible: lakeIncompatibility,
                operation: 'STREAMING UPDATE',
              })
            : undefined;
        if (outcome?.version !== undefined) {
          this.stats.commitMs.push(performance.now() - commitStarted);
          this.stats.commits++;
        }
        const kept = new Set((outcome?.kept ?? []).map((c) => c.appId));
        const keptFiles = upload.filter((f) => kept.has(writerAppId(topic, f.partition)));
        this.stats.filesWritten += keptFiles.length;
        for (const f of keptFiles) this.stats.bytesWritten += f.add.size;
        // Files of claims another writer covered are nobody's: delete them (vacuum would, later).
        const dropped = upload.filter((f) => !kept.has(writerAppId(topic, f.partition)));
        await Promise.all(dropped.map((f) => this.options.lake.store.delete(f.key).catch(() => undefined)));
        for (const c of [...(outcome?.covered ?? []), ...(outcome?.overlapped ?? []).map((o) => o.claim)])
          this.rewind(Number(c.appId.slice(c.appId.lastIndexOf(':') + 1)));
      } finally {
        // The roll's local folder (`roll-<pid>-<id>/__p=.../...`): every file is uploaded or dropped.
        for (const f of files) rmSync(f.local.slice(0, f.local.indexOf('/__p=')), { recursive: true, force: true });
      }
      for (const [code, n] of Object.entries(buf.rejected)) this.stats.rejected[code] = (this.stats.rejected[code] ?? 0) + n;
      this.stats.lastRollMs = Date.now() - started;
      // Informational only (lag dashboards): the table is the position of record.
      const moved = spans.map(([p]) => ({ topic, partition: p, offset: lakePositions(this.table.current, topic).get(p)?.nextOffset ?? 0 }));
      if (this.running)
        await this.consumer
          ?.commit(moved.filter((m) => m.offset > 0))
          .catch((err) =>
            this.options.logger[classifyLogError(err) === 'retry' ? 'debug' : 'warn'](
              { err: errorMessage(err) },
              'could not commit group offsets (informational only)',
            ),
          );
      this.options.logger.debug({ rows: buf.rows, files: files.length, ms: this.stats.lastRollMs }, 'lake commit');
    } catch (err) {
      this.failure ??= err instanceof Error ? err : new Error(String(err));
      this.options.logger.error({ err: errorMessage(err) }, 'lake roll failed; the writer stops (a restart resumes from the table)');
      throw this.failure;
    }
  }

  /**
   * Another commit moved partition `p` (in whole or in part over this writer's records): continue
   * from where the table stands. Everything this writer holds of `p` is dropped (a new epoch), and
   * the consumer goes back or forward to the table's offset.
   */
  private rewind(p: number): void {
    const { topic } = this.options;
    const at = lakePositions(this.table.current, topic).get(p);
    const pos = this.positions.get(p);
    if (at === undefined || pos === undefined) return;
    this.stats.rewinds++;
    this.options.logger.info(
      { partition: p, table: at.nextOffset, writer: pos.nextOffset },
      'another writer committed this partition first: continuing from the table',
    );
    this.restart(p, { nextOffset: at.nextOffset, lastTimestamp: at.lastTimestamp, base: at.nextOffset });
    this.fetched.set(p, at.nextOffset);
    if (this.buffer.spans.has(p)) void this.triggerRoll().catch(() => undefined);
    if (!this.closed && this.consumer?.assignment().some((tp) => tp.partition === p))
      this.consumer.seek({ topic, partition: p, offset: at.nextOffset });
  }

  private async upload(files: RolledFile[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const f = files[next++]!;
        const put = await this.options.lake.store.putFile(f.key, f.local, { ifAbsent: true });
        if (!put.ok) throw new InfrastructureError(`${this.options.lake.uri}/${f.key} exists already: data file names are unique`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, files.length) }, worker));
  }

  /** Phase 1 of the commit: writes the buffer's rows of `partitions` as Parquet files, locally. */
  private async writeFiles(buf: RollBuffer, partitions: Set<number>): Promise<RolledFile[]> {
    const rollId = randomBytes(4).toString('hex');
    const scratch = this.options.lake.scratch;
    const outDir = join(scratch, `roll-${process.pid}-${rollId}`);
    const stagingPath = join(scratch, `roll-${process.pid}-${rollId}.staging`);
    const t0 = performance.now();
    const columns = Object.keys(LAKE_COLUMNS).join(', ');
    try {
      await buf.staging.writeTo(stagingPath);
      const t1 = performance.now();
      // Straight from the staging file into the partitioned Parquet files (no table in between).
      // The partition columns name the folders and are not repeated inside the files.
      await this.conn.run(
        `COPY (SELECT ${columns}, kafka_partition AS __p, CAST(event_time AS DATE) AS dt, hour(event_time) AS hr
               FROM (${stagingSelectSql(stagingPath, this.mappingName)}) WHERE kafka_partition IN (${[...partitions].join(', ') || 'NULL'}) ORDER BY kafka_partition, kafka_offset)
         TO ${sqlQuote(outDir)} (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (__p, dt, hr))`,
      );
      const t2 = performance.now();
      crashPoint('lake.roll.files-written');
      // What each file holds, read back from the files themselves: the add's statistics then
      // describe exactly what a reader will find.
      const reader = await this.conn.runAndReadAll(
        `SELECT filename, count(*)::BIGINT, min(kafka_partition), max(kafka_partition), min(kafka_offset)::BIGINT, max(kafka_offset)::BIGINT,
                epoch_ms(min(event_time))::BIGINT, epoch_ms(max(event_time))::BIGINT, (count(*) - count(event_time))::BIGINT,
                epoch_ms(min(record_timestamp))::BIGINT, epoch_ms(max(record_timestamp))::BIGINT, (count(*) - count(record_timestamp))::BIGINT
         FROM read_parquet(${sqlQuote(join(outDir, '**', '*.parquet'))}, filename = true, hive_partitioning = false) GROUP BY filename`,
      );
      // LK_BATCH_PROFILE=1: where a roll's time goes (the staging file is written from this
      // thread; DuckDB's threads read it, write the Parquet files and read their columns back).
      if (process.env.LK_BATCH_PROFILE)
        process.stderr.write(
          `lake roll: ${buf.rows} rows, staging file ${(t1 - t0).toFixed(0)} ms, copy ${(t2 - t1).toFixed(0)} ms, stats ${(performance.now() - t2).toFixed(0)} ms\n`,
        );
      const files: RolledFile[] = [];
      const unique = randomUUID();
      const now = Date.now();
      for (const row of reader.getRows()) {
        const [file, rows, minP, maxP, from, to, minTs, maxTs, tsNulls, minRec, maxRec, recNulls] = row as [
          string,
          bigint,
          number,
          number,
          bigint,
          bigint,
          bigint | null,
          bigint | null,
          bigint,
          bigint | null,
          bigint | null,
          bigint,
        ];
        // .../__p=<p>/dt=<dt>/hr=<hr>/<file>: the partition values are the folder names DuckDB chose.
        const leaf = file.slice(0, file.lastIndexOf('/'));
        const hrText = leaf.slice(leaf.lastIndexOf('/hr=') + 4);
        const dtDir = leaf.slice(0, leaf.lastIndexOf('/hr='));
        const dtText = dtDir.slice(dtDir.lastIndexOf('/dt=') + 4);
        // DuckDB writes one file per partition folder unless a file size limit is set.
        const produced = readdirSync(leaf);
        if (produced.length !== 1) throw new InfrastructureError(`expected one Parquet file in ${leaf}, found ${produced.length}`);
        const dt = dtText === NULL_PARTITION ? null : dtText;
        const hr = hrText === NULL_PARTITION ? null : Number(hrText);
        const p = Number(minP);
        const key = `${partitionFolder(dt, hr)}/${partFileName(p, Number(from), Number(to), unique)}`;
        const iso = (ms: bigint | null) => (ms === null ? undefined : new Date(Number(ms)).toISOString());
        const minValues: Record<string, unknown> = { kafka_partition: minP, kafka_offset: Number(from) };
        const maxValues: Record<string, unknown> = { kafka_partition: maxP, kafka_offset: Number(to) };
        if (minTs !== null) [minValues.event_time, maxValues.event_time] = [iso(minTs), iso(maxTs)];
        if (minRec !== null) [minValues.record_timestamp, maxValues.record_timestamp] = [iso(minRec), iso(maxRec)];
        files.push({
          partition: p,
          local: file,
          key,
          add: {
            path: encodePath(key),
            partitionValues: { dt, hr: hr === null ? null : String(hr) },
            size: statSync(file).size,
            modificationTime: now,
            dataChange: true,
            stats: JSON.stringify({
              numRecords: Number(rows),
              minValues,
              maxValues,
              nullCount: { kafka_partition: 0, kafka_offset: 0, event_time: Number(tsNulls), record_timestamp: Number(recNulls) },
            }),
          },
        });
      }
      return files;
    } catch (err) {
      rmSync(outDir, { recursive: true, force: true });
      throw err;
    } finally {
      rmSync(stagingPath, { force: true });
    }
  }

  /**
   * Resolves once every partition has been read up to `ends` (the log's end offsets read by the
   * caller) and committed; false when the writer was closed first. `onProgress` gets the
   * position read so far per partition.
   */
  async catchUp(ends: number[], onProgress?: (read: Map<number, number>) => void): Promise<boolean> {
    // Caught up when every partition is either committed up to its end (by this writer or by
    // another one of the group) or held by this writer and read up to its end (the records past
    // the last one may be transaction markers, which no commit can cover).
    const done = () => {
      const committed = this.committedPositions();
      const read = this.readPositions();
      const held = new Set(this.consumer?.assignment().map((tp) => tp.partition) ?? []);
      return (
        this.positions.size > 0 &&
        ends.every((end, p) => end === 0 || (committed.get(p)?.nextOffset ?? 0) >= end || (held.has(p) && (read.get(p) ?? 0) >= end))
      );
    };
    for (;;) {
      this.throwIfFailed();
      if (this.closed) return false;
      await this.table.refresh();
      const read = this.readPositions();
      for (const [p, pos] of this.committedPositions()) if (!read.has(p) || read.get(p)! < pos.nextOffset) read.set(p, pos.nextOffset);
      onProgress?.(read);
      if (done()) {
        await this.flush();
        // A rewind during the flush (another writer was ahead) moves a partition: check again.
        if (done()) return true;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Graceful stop: stops consuming, commits what is buffered. */
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
    }
  }

  /** Resolves/rejects when the consumer stops (a failure of the writer rejects). */
  async done(): Promise<void> {
    await this.consumer?.done();
    this.throwIfFailed();
  }
}
