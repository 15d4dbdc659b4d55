/**
 * The job versions serving answers for. The default version is opened at start; a query naming
 * another version (Kappa: a replay job writing `views.speed.v2` next to v1) opens it on first use
 * and waits for it to catch up, up to `maxVersions` open at once.
 *
 * During a broker outage every version keeps answering from memory, but none is ready (/readyz),
 * and none is opened (a query naming a closed one is told it is unavailable). A version whose
 * view topic was deleted while the broker answers is closed, unless it was retired (its topic
 * goes with it); `onFatal` tells serving, which stops if it was the default version.
 */
import { InfrastructureError, errorMessage } from '../../services/errors.ts';
import { classifyLogError } from '../../services/log/outages.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { Logger } from '../../services/observability/logger.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { VERSION_NAME_RULE, isVersionName } from '../../services/versions/versionName.ts';
import { readVersionDefinitions, readVersionRecord } from '../../services/versions/versionRecord.ts';
import type { MetricDefinitions } from '../../services/metrics/definitions.ts';
import { ErrorCode, userError } from '../graphql/errors.ts';
import { BatchFollower } from './batchLoader.ts';
import { SpeedMaterializer } from './speedMaterializer.ts';
import { VersionView, type BatchView } from './versionView.ts';
import { ViewRetention } from './viewRetention.ts';
import { readSpeedStatuses } from '../../services/status/speedStatus.ts';

export interface VersionRuntime {
  version: string;
  topic: string;
  view: VersionView;
  materializer: SpeedMaterializer;
  follower: BatchFollower;
  /** The version's own metric definitions (its stored copy), else serving's --metrics. */
  definitions: MetricDefinitions;
  /** Resolves once the consumer runs and the first batch check is done (rejects on failure). */
  started: Promise<void>;
  /** Reads the speed layer's status watermarks into the view's retention (viewRetention.ts). */
  retentionTimer: NodeJS.Timeout;
}

export interface VersionRegistryOptions {
  log: EventLog;
  /** The shared state: version records, metric files, batch views. */
  state: ObjectStore;
  /** Where batch view files read from S3 are kept on this host. */
  cacheDir: string;
  /** For versions that have no stored metric file (never started, or created before copies were kept). */
  fallbackMetrics: MetricDefinitions;
  batchPollMs: number;
  maxVersions: number;
  logger: Logger;
  onBatchInstalled?: (version: string, batch: BatchView) => void;
  /** A version's view hit what retrying cannot fix (after it was closed), and the version is not retired. */
  onFatal?: (version: string, err: unknown) => void;
}

export class VersionRegistry {
  private readonly runtimes = new Map<string, VersionRuntime>();
  /** Versions whose record is being read (two queries naming a new version open it once). */
  private readonly opening = new Map<string, Promise<VersionRuntime>>();

  constructor(private readonly options: VersionRegistryOptions) {}

  /** The runtime of a version, opening it if needed (rejects with a client error for bad names). */
  async open(version: string): Promise<VersionRuntime> {
    const existing = this.runtimes.get(version);
    if (existing) return existing;
    let opening = this.opening.get(version);
    if (!opening) {
      opening = this.openNew(version).finally(() => this.opening.delete(version));
      this.opening.set(version, opening);
    }
    return opening;
  }

  private async openNew(version: string): Promise<VersionRuntime> {
    if (!isVersionName(version)) {
      throw userError(ErrorCode.INVALID_VERSION, `version "${version}" is not ${VERSION_NAME_RULE}`);
    }
    if (this.runtimes.size >= this.options.maxVersions) {
      throw userError(
        ErrorCode.TOO_MANY_VERSIONS,
        `serving already holds ${this.runtimes.size} versions (${[...this.runtimes.keys()].join(', ')}); the limit is --max-versions`,
      );
    }
    const { log, state, cacheDir, batchPollMs, logger } = this.options;
    const record = await readVersionRecord(state, version);
    if (record?.retiredAt) {
      throw userError(ErrorCode.INVALID_VERSION, `version "${version}" was retired at ${record.retiredAt}: its views are deleted`);
    }
    const definitions = (await readVersionDefinitions(state, version)) ?? this.options.fallbackMetrics;
    const view = new VersionView(version, new ViewRetention(definitions.metrics));
    const topic = speedViewTopic(version);
    const materializer = new SpeedMaterializer({
      log,
      view,
      topic,
      logger,
      retryMs: 2000,
      onFatal: (err) => void this.fatal(version, err),
    });
    const follower = new BatchFollower({
      state,
      cacheDir,
      view,
      pollMs: batchPollMs,
      logger,
      onInstalled: (batch) => this.options.onBatchInstalled?.(version, batch),
    });
    const started = Promise.all([materializer.start(), follower.start()]).then(() => undefined);
    const retentionTimer = setInterval(() => this.followStatusWatermark(view), batchPollMs);
    retentionTimer.unref();
    this.followStatusWatermark(view);
    const runtime: VersionRuntime = { version, topic, view, materializer, follower, started, definitions, retentionTimer };
    this.runtimes.set(version, runtime);
    started.catch((err) => {
      logger[classifyLogError(err) === 'retry' ? 'debug' : 'error']({ version, err: errorMessage(err) }, 'cannot open version');
      // Forget it so that the next query tries again.
      if (this.runtimes.get(version) === runtime) this.runtimes.delete(version);
      clearInterval(retentionTimer);
      void materializer.stop();
      void follower.stop();
    });
    return runtime;
  }

  /** Resolves when the version can answer: speed view caught up, batch view loaded if published. */
  async whenReady(version: string): Promise<VersionRuntime> {
    const runtime = await this.open(version);
    try {
      await runtime.started;
    } catch (err) {
      throw new InfrastructureError(`version ${version} is unavailable: ${errorMessage(err)}`, { cause: err });
    }
    await runtime.materializer.whenCaughtUp();
    return runtime;
  }

  /**
   * The retention watermark from the speed layer's status files (the largest partition
   * watermark): it survives a restart of serving after compaction removed the tombstones that
   * carried it. Files serving cannot read are reported by the pipeline query, not here.
   */
  private followStatusWatermark(view: VersionView): void {
    readSpeedStatuses(this.options.state, view.version)
      .then((statuses) => {
        let max = -Infinity;
        for (const { status } of statuses)
          for (const p of status?.partitions ?? []) if (p.watermark !== null && p.watermark > max) max = p.watermark;
        if (max === -Infinity) return;
        view.retention.observeWatermark(max);
        view.evictExpired();
      })
      .catch(() => undefined);
  }

  /** Whether the log answers now (a broker outage: nothing is ready, every view answers from memory). */
  get logReachable(): boolean {
    return this.options.log.health.reachable;
  }

  private async fatal(version: string, err: unknown): Promise<void> {
    const retired = (await readVersionRecord(this.options.state, version).catch(() => undefined))?.retiredAt;
    await this.close(version);
    if (retired) return;
    this.options.logger.error({ version, err: errorMessage(err) }, 'version closed: its view cannot go on');
    this.options.onFatal?.(version, err);
  }

  isReady(version: string): boolean {
    const r = this.runtimes.get(version);
    if (!r || !this.logReachable) return false;
    const batchOk = r.follower.checkedOnce && (!r.follower.published || r.view.batch !== undefined);
    return batchOk && r.materializer.caughtUp && r.materializer.lastError === null;
  }

  get(version: string): VersionRuntime | undefined {
    return this.runtimes.get(version);
  }

  /** Closes a version's runtime (it was retired): the next query naming it opens it afresh. */
  async close(version: string): Promise<void> {
    const r = this.runtimes.get(version);
    if (!r) return;
    this.runtimes.delete(version);
    clearInterval(r.retentionTimer);
    await Promise.allSettled([r.materializer.stop(), r.follower.stop()]);
  }

  /** Closes the runtimes of versions retired since they were opened (their topic and views are gone). */
  async closeRetired(): Promise<string[]> {
    const open = this.all().map((r) => r.version);
    const records = await Promise.all(open.map((v) => readVersionRecord(this.options.state, v)));
    const retired = open.filter((_, i) => records[i]?.retiredAt);
    await Promise.all(retired.map((v) => this.close(v)));
    return retired;
  }

  all(): VersionRuntime[] {
    return [...this.runtimes.values()];
  }

  async stop(): Promise<void> {
    for (const r of this.runtimes.values()) clearInterval(r.retentionTimer);
    await Promise.allSettled(this.all().flatMap((r) => [r.materializer.stop(), r.follower.stop()]));
    this.runtimes.clear();
  }
}
