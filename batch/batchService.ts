/**
 * `lk batch` in service mode: the lake writer runs continuously; the views are recomputed on a
 * schedule (first as soon as the lake has caught up with the log's end at startup); the lake is
 * compacted and vacuumed after each recompute. Status goes to `batch/status.json` in the shared
 * state (the contract is services/status/batchStatus.ts), to /healthz, /readyz and Prometheus /metrics.
 *
 * SIGTERM: stop consuming, commit what is buffered, let a running recompute finish, exit 0.
 *
 * A broker outage: the lake writer waits for the broker and goes on where it was; recomputes and
 * compaction need only the lake and go on meanwhile. /readyz is false while the broker is
 * unreachable (`lk_kafka_reachable` 0); the service stops only on what retrying cannot fix
 * (services/log/outages.ts).
 */
import { createServer, type Server } from 'node:http';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { errorMessage } from '../services/errors.ts';
import { readCurrentBatchRun, type BatchRunManifest } from '../services/views/batchSnapshots.ts';
import { BATCH_STATUS_KEY, type BatchStatus } from '../services/status/batchStatus.ts';
import { lakeFiles, lakePositions } from '../services/lake/lakeTable.ts';
import type { DeltaSnapshot } from '../services/lake/delta/deltaLog.ts';
import { compactLake } from './lake/compaction.ts';
import { expireLake } from './lake/lakeRetention.ts';
import { LakeWriter } from './lake/lakeWriter.ts';
import { recomputeViews } from './engines/batchEngine.ts';
import { homePartitionsOf, type BatchJobOptions } from './batchCycle.ts';
import type { MetricDefinitions } from '../services/metrics/definitions.ts';
import { listVersionRecords, readVersionDefinitions } from '../services/versions/versionRecord.ts';
import { registerLogHealthMetrics } from '../services/log/outages.ts';

export interface BatchServiceOptions extends BatchJobOptions {
  intervalMs: number;
  targetFileSize: number;
  statusPort: number;
  /** Where in the shared state the status is written (default `batch/status.json`, which serving reads). */
  statusKey?: string;
  /** Vacuum deletes removed and unlisted files older than this (default: the table's retention). */
  vacuumRetentionMs?: number;
  /** Lake retention (batch/lake/lakeRetention.ts); undefined: the lake keeps everything. */
  lakeRetentionMs?: number;
}

export class BatchService {
  private writer: LakeWriter | undefined;
  private server: Server | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private runTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private nextRunAt: number | null = null;
  private stopping = false;
  private ready = false;
  private boundPort: number | undefined;
  private homePartitions = 1;
  private lastError: string | undefined;
  /** The service version's current run, as last read (the status reports it every second). */
  private lastRun: BatchRunManifest | undefined;
  /** A status write in flight (one at a time: a slow store skips a beat rather than queue writes). */
  private statusWrite: Promise<void> | undefined;
  private readonly registry = new Registry();

  constructor(private readonly options: BatchServiceOptions) {}

  /** The lake's latest snapshot this process knows (refreshed by every roll and compaction). */
  private snapshot(): DeltaSnapshot | undefined {
    return this.writer?.table.current;
  }

  /** Starts everything; resolves once the HTTP port is bound and the writer consumes. */
  async start(): Promise<{ port: number }> {
    const o = this.options;
    this.homePartitions = await homePartitionsOf(o.log, o.state, o.version, o.topic, o.metrics);
    this.lastRun = (await readCurrentBatchRun(o.state, o.version))?.manifest;
    // Reachable at the start (a wrong address shows at once); from here on an outage is waited through.
    o.log.health.watch();
    this.writer = await LakeWriter.open({
      log: o.log,
      topic: o.topic,
      lake: o.lake,
      groupId: o.groupId,
      rollBytes: o.rollBytes,
      rollIntervalMs: o.rollIntervalMs,
      logger: o.logger,
      mapping: o.metrics.event,
    });
    this.registerMetrics();
    const port = await this.listen();
    this.boundPort = port;
    const ends = await o.log.endOffsets(o.topic);
    await this.writer.start();
    void this.writeStatus();
    this.statusTimer = setInterval(() => void this.writeStatus(), 1000);
    // The first views as soon as the lake holds what the log held at startup.
    this.running = this.writer
      .catchUp(ends)
      .then((caughtUp) => {
        if (!caughtUp) return;
        this.ready = true;
        return this.cycle();
      })
      .catch((err) => this.fail(err));
    return { port };
  }

  /** Resolves when the writer stops (rejects when it failed). */
  async done(): Promise<void> {
    await this.writer?.done();
  }

  private fail(err: unknown): void {
    this.lastError = errorMessage(err);
    this.options.logger.error({ err: this.lastError }, 'batch service cycle failed');
  }

  private schedule(): void {
    if (this.stopping) return;
    this.nextRunAt = Date.now() + this.options.intervalMs;
    this.runTimer = setTimeout(() => {
      this.running = this.cycle().catch((err) => this.fail(err));
    }, this.options.intervalMs);
    this.runTimer.unref();
  }

  /** Recompute, then compact and vacuum the lake; then schedule the next cycle. */
  private async cycle(): Promise<void> {
    const o = this.options;
    this.nextRunAt = null;
    try {
      const failures: string[] = [];
      for (const job of await this.versionsToRecompute()) {
        if (this.stopping && job.version !== o.version) break;
        try {
          const result = await recomputeViews({
            lake: o.lake,
            state: o.state,
            scratchDir: o.scratchDir,
            cacheDir: o.cacheDir,
            logger: o.logger,
            ...(o.engine ? { engine: o.engine } : {}),
            ...job,
          });
          if (job.version === o.version) this.lastRun = (await readCurrentBatchRun(o.state, o.version))?.manifest ?? result.manifest;
        } catch (err) {
          // One version's failure (its stored file unreadable, say) must not hold back the others.
          failures.push(`${job.version}: ${errorMessage(err)}`);
          o.logger.error({ version: job.version, err: errorMessage(err) }, 'batch recompute of a version failed');
        }
      }
      this.lastError = failures.length > 0 ? failures.join('; ') : undefined;
      if (!this.stopping) {
        const table = this.writer!.table;
        if (o.lakeRetentionMs !== undefined)
          await expireLake({ table, topic: o.lake.topic, retentionMs: o.lakeRetentionMs, logger: o.logger });
        await compactLake({ table, lake: o.lake, targetFileSize: o.targetFileSize, logger: o.logger });
        await table.vacuum(o.vacuumRetentionMs !== undefined ? { retentionMs: o.vacuumRetentionMs } : {});
      }
    } finally {
      void this.writeStatus();
      this.schedule();
    }
  }

  /**
   * The service's own version first, then every other version of the topic that is not retired,
   * each with its own stored metric file and home partition count: the one shared lake gives
   * every version its batch view, so the merge works per version (Kappa reprocessing).
   */
  private async versionsToRecompute(): Promise<{ version: string; metrics: MetricDefinitions; homePartitions: number }[]> {
    const o = this.options;
    const jobs = [{ version: o.version, metrics: o.metrics, homePartitions: this.homePartitions }];
    for (const record of await listVersionRecords(o.state)) {
      if (record.version === o.version || record.topic !== o.topic || record.retiredAt !== null) continue;
      try {
        const metrics = await readVersionDefinitions(o.state, record.version);
        if (metrics) jobs.push({ version: record.version, metrics, homePartitions: record.homePartitions });
      } catch (err) {
        o.logger.error(
          { version: record.version, err: errorMessage(err) },
          'cannot read the metric file of a version; its batch view is not recomputed',
        );
      }
    }
    return jobs;
  }

  status(): BatchStatus {
    const snap = this.snapshot();
    const files = lakeFiles(snap);
    let lastRun: BatchStatus['lastRun'] = null;
    if (this.lastRun) {
      const { metricsSource: _source, ...summary } = this.lastRun;
      lastRun = summary;
    }
    return {
      version: this.options.version,
      lastRun,
      nextRunAt: this.nextRunAt,
      lakeFiles: files.length,
      lakeBytes: files.reduce((n, f) => n + f.size, 0),
      writer: {
        partitions: [...lakePositions(snap, this.options.topic)].map(([partition, pos]) => ({
          partition,
          committedOffset: pos.nextOffset,
        })),
      },
      updatedAt: Date.now(),
      statusPort: this.boundPort ?? null,
    };
  }

  private writeStatus(): Promise<void> {
    this.statusWrite ??= this.options.state
      .put(this.options.statusKey ?? BATCH_STATUS_KEY, JSON.stringify(this.status(), null, 2))
      .then(() => undefined)
      .catch((err: unknown) => this.options.logger.warn({ err: errorMessage(err) }, 'could not write the status file'))
      .finally(() => (this.statusWrite = undefined));
    return this.statusWrite;
  }

  private registerMetrics(): void {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'lk_batch_' });
    registerLogHealthMetrics(r, this.options.log.health);
    const writer = this.writer!;
    const snapshot = () => this.snapshot();
    const topic = this.options.topic;
    new Gauge({
      name: 'lk_batch_lake_records_read_total',
      help: 'Records read from the events topic by the lake writer',
      registers: [r],
      collect() {
        this.set(writer.stats.records);
      },
    });
    new Gauge({
      name: 'lk_batch_lake_commits_total',
      help: 'Lake commits (Delta log versions) by the writer',
      registers: [r],
      collect() {
        this.set(writer.stats.commits);
      },
    });
    new Gauge({
      name: 'lk_batch_lake_bytes_written_total',
      help: 'Parquet bytes written by the writer',
      registers: [r],
      collect() {
        this.set(writer.stats.bytesWritten);
      },
    });
    new Gauge({
      name: 'lk_batch_lake_rejected_total',
      help: 'Invalid records sent to the dead-letter topic, by reason',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        for (const [reason, n] of Object.entries(writer.stats.rejected)) this.set({ reason }, n);
      },
    });
    new Gauge({
      name: 'lk_batch_lake_files',
      help: 'Live files in the lake',
      registers: [r],
      collect() {
        this.set(snapshot()?.files.size ?? 0);
      },
    });
    new Gauge({
      name: 'lk_batch_lake_bytes',
      help: 'Bytes of the live files in the lake',
      registers: [r],
      collect() {
        this.set(lakeFiles(snapshot()).reduce((n, f) => n + f.size, 0));
      },
    });
    new Gauge({
      name: 'lk_batch_lake_committed_offset',
      help: 'Next offset committed to the lake, per input partition',
      labelNames: ['partition'],
      registers: [r],
      collect() {
        for (const [p, pos] of lakePositions(snapshot(), topic)) this.set({ partition: String(p) }, pos.nextOffset);
      },
    });
    const lastRun = () => this.lastRun;
    new Gauge({
      name: 'lk_batch_last_run_duration_seconds',
      help: 'Duration of the latest published batch run',
      registers: [r],
      collect() {
        const run = lastRun();
        if (run) this.set(run.durationMs / 1000);
      },
    });
    new Gauge({
      name: 'lk_batch_last_run_finished_seconds',
      help: 'Unix time the latest published batch run finished',
      registers: [r],
      collect() {
        const run = lastRun();
        if (run) this.set(run.finishedAt / 1000);
      },
    });
  }

  private listen(): Promise<number> {
    const server = createServer((req, res) => {
      const url = req.url ?? '/';
      if (url === '/healthz') {
        const ok = this.writer !== undefined && !this.stopping;
        res
          .writeHead(ok ? 200 : 503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ok, lastError: this.lastError ?? null }));
      } else if (url === '/readyz') {
        const kafkaReachable = this.options.log.health.reachable;
        const ready = this.ready && kafkaReachable;
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, kafkaReachable }));
      } else if (url === '/metrics') {
        this.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
          (err) => res.writeHead(500).end(errorMessage(err)),
        );
      } else if (url === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.status()));
      } else {
        res.writeHead(404).end('not found\n');
      }
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.statusPort, () => {
        const addr = server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : this.options.statusPort);
      });
    });
  }

  /**
   * Recomputes every version's views now, after the cycle in progress if any, instead of at the
   * next scheduled time (the schedule then restarts from this run).
   */
  async recomputeNow(): Promise<void> {
    await this.running;
    if (this.stopping || !this.ready) return;
    if (this.runTimer) clearTimeout(this.runTimer);
    this.running = this.cycle().catch((err) => this.fail(err));
    await this.running;
  }

  /** Graceful stop: commit what the writer buffered, let a running recompute finish. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.runTimer) clearTimeout(this.runTimer);
    await this.writer?.close({ commitPending: true });
    await this.running;
    if (this.statusTimer) clearInterval(this.statusTimer);
    await this.statusWrite;
    await this.writeStatus();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
