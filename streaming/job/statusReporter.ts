/**
 * Operational view of a speed instance: the status object that serving, `lk versions` and
 * promotion read on any host (the contract is services/status/speedStatus.ts; replaced whole every
 * second in the shared state), Prometheus metrics, and an HTTP endpoint with /healthz, /readyz,
 * /metrics and /status. /readyz is false while the job is not assigned and running, and while the
 * log is unreachable (a broker outage: the job waits for it, keeping its state;
 * `lk_kafka_reachable` says so too).
 */
import { createServer, type Server } from 'node:http';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { errorMessage } from '../../services/errors.ts';
import { logger } from '../../services/observability/logger.ts';
import { registerLogHealthMetrics, type LogHealth } from '../../services/log/outages.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import type { SpeedStatus } from '../../services/status/speedStatus.ts';

export class StatusReporter {
  readonly registry = new Registry();
  private server: Server | undefined;
  private latest: SpeedStatus | undefined;
  private readonly g: Record<string, Gauge>;
  /** The status write in flight: one at a time (a slow store skips a beat rather than queue writes). */
  private writing: Promise<void> | undefined;

  constructor(
    private readonly state: ObjectStore,
    private readonly key: string,
    private readonly health: LogHealth,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: 'lk_speed_process_' });
    registerLogHealthMetrics(this.registry, health);
    const gauge = (name: string, help: string, labelNames: string[] = []) =>
      new Gauge({ name, help, labelNames, registers: [this.registry] });
    this.g = {
      lag: gauge('lk_speed_partition_lag', 'Records between the instance position and the end of the partition', ['partition']),
      watermark: gauge('lk_speed_partition_watermark_ms', 'Event-time watermark of the partition (epoch ms)', ['partition']),
      idle: gauge('lk_speed_partition_idle', '1 when the partition is idle (excluded from the watermark)', ['partition']),
      checkpointAt: gauge('lk_speed_last_checkpoint_timestamp_ms', 'Wall time of the last committed checkpoint'),
      checkpointBytes: gauge('lk_speed_last_checkpoint_bytes', 'Size of the last snapshot written'),
      checkpointMs: gauge('lk_speed_last_checkpoint_duration_ms', 'Duration of the last checkpoint (snapshot + transaction)'),
      eps: gauge('lk_speed_events_per_second', 'Records processed per second by this instance'),
      duplicates: gauge('lk_speed_duplicates', 'Duplicate events not counted again (assigned partitions, since the job started)'),
      invalid: gauge('lk_speed_invalid_records', 'Records that are not valid events (skipped)'),
      misplaced: gauge(
        'lk_speed_misplaced_records',
        'Valid records not in their home partition (unkeyed or foreign-keyed producers, raised partition counts); their windows are provisional until a batch run covers them',
        ['partition'],
      ),
      late: gauge('lk_speed_dropped_late', 'Events not applied because their window was closed', ['metric', 'granularity']),
      windows: gauge('lk_speed_state_windows', 'Live window-keys held in memory'),
      bytes: gauge('lk_speed_state_bytes', 'Approximate bytes of state held in memory'),
      dedup: gauge('lk_speed_dedup_entries', 'Event ids held in the dedup sets'),
    };
  }

  publish(status: SpeedStatus): void {
    this.latest = status;
    const g = this.g;
    g.lag!.reset();
    g.watermark!.reset();
    g.idle!.reset();
    g.misplaced!.reset();
    for (const p of status.partitions) {
      g.lag!.set({ partition: String(p.partition) }, p.lag);
      if (p.watermark !== null) g.watermark!.set({ partition: String(p.partition) }, p.watermark);
      g.idle!.set({ partition: String(p.partition) }, p.idle ? 1 : 0);
      g.misplaced!.set({ partition: String(p.partition) }, p.misplaced);
    }
    if (status.lastCheckpoint) {
      g.checkpointAt!.set(status.lastCheckpoint.at);
      g.checkpointBytes!.set(status.lastCheckpoint.bytes);
      g.checkpointMs!.set(status.lastCheckpoint.durationMs);
    }
    g.eps!.set(status.eventsPerSecond);
    g.duplicates!.set(status.duplicates);
    g.invalid!.set(status.invalid);
    for (const [slot, n] of Object.entries(status.droppedLateByGranularity)) {
      const [metric, granularity] = slot.split('/');
      g.late!.set({ metric: metric!, granularity: granularity! }, n);
    }
    g.windows!.set(status.stateWindows);
    g.bytes!.set(status.stateBytes);
    g.dedup!.set(status.dedupEntries);
    this.writing ??= this.state
      .put(this.key, `${JSON.stringify(status)}\n`)
      .then(() => undefined)
      .catch((err: unknown) => logger.warn({ err: errorMessage(err), key: this.key }, 'could not write the status file'))
      .finally(() => (this.writing = undefined));
  }

  /** Waits for the status write in flight (the final status of a stopping job). */
  async flush(): Promise<void> {
    await this.writing;
  }

  /** Serves /healthz, /readyz, /metrics, /status on `port` (0 = off). Resolves with the bound port. */
  async listen(port: number, host = '0.0.0.0'): Promise<number | undefined> {
    if (port === 0) return undefined;
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const ready = this.latest?.ready === true && this.health.reachable;
        res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
      } else if (path === '/metrics') {
        this.registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text))
          .catch((err: unknown) => res.writeHead(500).end(String(err)));
      } else if (path === '/status') {
        res.writeHead(this.latest ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(this.latest ?? { ready: false }));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz /readyz /metrics /status\n');
      }
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const addr = server.address();
    return typeof addr === 'object' && addr ? addr.port : port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
