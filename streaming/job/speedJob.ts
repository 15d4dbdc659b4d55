/**
 * The speed job: consumes the events topic in a consumer group, keeps one PartitionTask per
 * assigned partition, checkpoints each on a timer (and after batches once the interval passed),
 * and reports its status. The partitions' states live in state threads (stateHost.ts) so that
 * consuming and processing use two cores. Instances of one job version, on one host or many,
 * share partitions through the group (Kafka decides who owns which) and share the checkpoint
 * store in the shared state (`--state-uri`), so a partition's state moves with the partition on
 * a rebalance or a takeover: the new owner restores exactly the snapshot the group's committed
 * offset names.
 *
 * Broker outages of any length are waited through (services/log/outages.ts; the argument is in
 * docs/speed-layer.md, "Broker outages"): a checkpoint retries its transaction, an assignment
 * retries opening its partitions, the consumer rejoins its group. The job fails only on what
 * retrying cannot fix: refused credentials, a deleted topic, a fence by a newer owner.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, InfrastructureError, errorMessage } from '../../services/errors.ts';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import type {
  AssignmentContext,
  CommittedOffset,
  EventLog,
  LogConsumer,
  PartitionOffset,
  RecordBatch,
  TopicPartition,
} from '../../services/log/eventLog.ts';
import { FatalLogError, checkTopics, retryWhileUnavailable } from '../../services/log/outages.ts';
import { viewTopicSpec } from '../../services/log/topics.ts';
import { logger } from '../../services/observability/logger.ts';
import { eventMappingOf, maxWindowPlusLatenessMs, type MetricDefinitions } from '../../services/metrics/definitions.ts';
import { RECORD_KEY } from '../../services/metrics/fieldSemantics.ts';
import { formatDuration } from '../../services/config/durations.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import {
  LIVE_ORIGIN,
  checkVersionMatches,
  ensureVersionRecord,
  readVersionRecord,
  type VersionOrigin,
  type VersionRecord,
} from '../../services/versions/versionRecord.ts';
import { checkpointsPrefix } from '../../services/config/dataDir.ts';
import { acquireLease } from '../../services/storage/lease.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { replayFromLake } from '../replay/lakeReplay.ts';
import { planWarmUp, type WarmUpPart } from '../replay/warmUpSource.ts';
import { RateLimiter, sliceBatch } from './rateLimiter.ts';
import { CheckpointStore, MissingCheckpointError, checkpointMetadata, committedCheckpoint } from '../checkpoints/checkpointStore.ts';
import { createStateHost, defaultStateThreads, lakeReplayStateThreads, type StateHost } from '../threads/stateHost.ts';
import { compareDefinitions, compareSemantics, metricsFingerprint } from '../../services/versions/metricChanges.ts';
import { readJobMetadata, updateJobMetadata, type JobMetadata } from '../checkpoints/jobMetadata.ts';
import type { Placement, SpeedSemantics } from '../state/partitionState.ts';
import { PartitionTask, openFencingProducer } from './partitionTask.ts';
import { restoreFromSavepoint } from '../checkpoints/savepoints.ts';
import { combinedWatermark, isIdle } from '../state/watermarks.ts';
import { StatusReporter } from './statusReporter.ts';
import { speedStatusKey, type SpeedStatus } from '../../services/status/speedStatus.ts';

/**
 * Largest fetch per partition. Batches queue between the consumer and the state threads, and a
 * fetch's decoded records live in the main thread's heap until handed over: 1 MiB (not 4) took
 * the benchmark's peak RSS with a million window-keys from 1.33 GB to 1.05 GB.
 */
const FETCH_BYTES_PER_PARTITION = 1024 * 1024;
/** Rows a checkpoint may publish before processing of the partition waits for it. */
const MAX_ROWS_PER_CHECKPOINT = 20_000;
/** The lease that lets one instance at a time replay the lake, in the version's checkpoints. */
const LAKE_REPLAY_LEASE = 'lake-replay.lease';

export interface SpeedJobConfig {
  topic: string;
  version: string;
  groupId: string;
  checkpointIntervalMs: number;
  outOfOrdernessMs: number;
  idleTimeoutMs: number;
  /** Undefined: the largest window plus allowed lateness of the metric definitions. */
  dedupHorizonMs?: number;
  statusPort: number;
  /** The address the status port listens on (default every address). */
  statusHost?: string;
  instanceId: string;
  fromSavepoint?: string;
  /** This host's data dir. */
  dataDir: string;
  /** The shared state (`--state-uri`): checkpoints, savepoints, the version record, status. */
  state: ObjectStore;
  /** State threads (0: states in the main thread); undefined: one per spare core, at most one per partition. */
  threads?: number;
  definitions: MetricDefinitions;
  /**
   * Where a new version starts reading (`lk replay --from`): kept in its record when the version
   * is created, ignored afterwards (a version resumes from its own checkpoints). Default: live.
   */
  origin?: VersionOrigin;
  /** Events per second at most (`--max-rate`): a replay must not starve the live version. */
  maxRate?: number;
  /** Where the lake is (`--lake-uri`; default `<data-dir>/lake`), read by versions replayed `--from lake`. */
  lakeUri?: string;
  /** Offsets per lake read (default streaming/replay/lakeSource.ts DEFAULT_CHUNK_OFFSETS). */
  lakeChunkOffsets?: number;
}

export class SpeedJob {
  private readonly tasks = new Map<number, PartitionTask>();
  /** Revoked tasks still closing (their state is released last), by partition. */
  private readonly closing = new Map<number, Promise<void>>();
  private consumer: LogConsumer | undefined;
  private host: StateHost | undefined;
  private readonly store: CheckpointStore;
  private readonly semantics: SpeedSemantics;
  private readonly viewTopic: string;
  private readonly fingerprint: string;
  private readonly status: StatusReporter;
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  /** Aborted when the stop begins: ends the waits between a start's retries at once. */
  private readonly stopRequest = new AbortController();
  /** The start in progress or done (stop() waits for it to settle before it checkpoints). */
  private starting: Promise<void> | undefined;
  /** Where the stop is, for the line a stop that ran out of time logs. */
  private phase = 'running';
  private ready = false;
  private processed = 0;
  /** remeasureQuietPartitions: per partition, its position at the last look and at its last measure. */
  private readonly quietWatch = new Map<number, { seen: number; measured?: number }>();
  private lastRemeasure = 0;
  private lastRate = { at: Date.now(), processed: 0, perSecond: 0 };
  private partitionCount = 0;
  private placement: Placement = { homePartitions: 1 };
  private record: VersionRecord | undefined;
  private readonly limiter: RateLimiter | undefined;
  /** A replay's lake half, while it runs (start() returns before it ends). */
  private lakePhase: Promise<void> | undefined;
  /**
   * Per partition, the warm-up of a version that starts mid-log and has not reached its start
   * yet (streaming/replay/warmUpSource.ts; null: none).
   */
  private warmPlan: (WarmUpPart | null)[] = [];
  private failWith!: (err: unknown) => void;
  private readonly failed: Promise<never>;
  statusPort: number | undefined;

  constructor(
    private readonly log: EventLog,
    private readonly cfg: SpeedJobConfig,
  ) {
    const minHorizon = maxWindowPlusLatenessMs(cfg.definitions);
    const horizon = cfg.dedupHorizonMs ?? minHorizon;
    if (horizon < minHorizon) {
      throw new ConfigError(
        `--dedup-horizon ${formatDuration(horizon)} is shorter than the largest window plus allowed lateness (${formatDuration(minHorizon)}); a duplicate could then be counted twice`,
      );
    }
    this.semantics = { outOfOrdernessMs: cfg.outOfOrdernessMs, dedupHorizonMs: horizon };
    this.store = new CheckpointStore(cfg.state.child(checkpointsPrefix(cfg.version)));
    this.viewTopic = speedViewTopic(cfg.version);
    this.fingerprint = metricsFingerprint(cfg.definitions.metrics);
    this.status = new StatusReporter(cfg.state, speedStatusKey(cfg.version, cfg.instanceId), log.health);
    this.limiter = cfg.maxRate !== undefined ? new RateLimiter(cfg.maxRate) : undefined;
    this.failed = new Promise<never>((_, reject) => (this.failWith = reject));
    this.failed.catch(() => undefined);
  }

  /** Rejects when the job fails (a checkpoint that cannot commit, a consumer crash). */
  failure(): Promise<never> {
    return this.failed;
  }

  /**
   * Starts the job. A stop() meanwhile ends the start's waits (it then resolves or rejects with
   * the last error; either way stop() goes on and closes what it had opened).
   */
  start(): Promise<void> {
    this.starting ??= this.startJob();
    return this.starting;
  }

  private async startJob(): Promise<void> {
    const { topic } = this.cfg;
    // A broker that is away at the start is reported at once (a wrong address shows); from here
    // on, an outage is waited through.
    this.partitionCount = await this.log.partitionCount(topic);
    this.log.health.watch();
    const newVersion = {
      version: this.cfg.version,
      topic,
      homePartitions: this.partitionCount,
      metrics: this.cfg.definitions,
      origin: this.cfg.origin ?? LIVE_ORIGIN,
    };
    // Checked against the version's record (when it has one) before anything else, and created
    // only once the checkpoints and the savepoint have agreed: a refused start leaves no version.
    const { state } = this.cfg;
    const existing = await readVersionRecord(state, this.cfg.version);
    if (existing) await checkVersionMatches(state, existing, newVersion);
    this.placement = { homePartitions: existing?.homePartitions ?? this.partitionCount };
    // State from a savepoint replaces the checkpointed state, so only the savepoint's
    // definitions must be compatible; otherwise the checkpoints' ones.
    const savepoint = this.cfg.fromSavepoint;
    if (savepoint !== undefined && !(await readJobMetadata(this.store.store))?.appliedSavepoints.includes(savepoint))
      await this.applySavepoint(savepoint);
    else {
      if (savepoint !== undefined)
        logger.warn(
          { savepoint },
          'savepoint already applied to this job version; resuming from the latest checkpoint instead of rewinding again',
        );
      await this.checkJobMetadata();
    }
    this.record = await ensureVersionRecord(state, newVersion);
    await this.log.createTopics([viewTopicSpec(this.viewTopic)]);
    // The lake half of a replay leaves the main thread nearly idle (DuckDB decodes on threads of
    // its own): every core gets a state thread then, partitions are replayed side by side.
    const defaultThreads =
      this.record.origin.lakeEnds !== null ? lakeReplayStateThreads(this.partitionCount) : defaultStateThreads(this.partitionCount);
    const host = createStateHost(this.cfg.threads ?? defaultThreads, {
      definitions: this.cfg.definitions.metrics,
      semantics: this.semantics,
      placement: this.placement,
      metricsFingerprint: this.fingerprint,
    });
    this.host = host;
    host.failure().catch((err: unknown) => this.fail(err));
    this.statusPort = await this.status.listen(this.cfg.statusPort, this.cfg.statusHost);
    this.timers.push(setInterval(() => this.checkpointAll(), this.cfg.checkpointIntervalMs));
    this.timers.push(setInterval(() => this.publishStatus(), 1000));
    logger.info(
      {
        topic,
        version: this.cfg.version,
        group: this.cfg.groupId,
        view: this.viewTopic,
        semantics: this.semantics,
        stateThreads: host.threads,
        statusPort: this.statusPort,
        origin: this.record.origin.from,
        ...(this.limiter ? { maxRate: this.limiter.perSecond } : {}),
      },
      'speed job started',
    );
    const origin = this.record.origin;
    const committed = await this.retry('committed offsets', () => this.log.committedOffsets(this.cfg.groupId, topic));
    this.warmPlan = await this.planWarmUps(origin, committed);
    const lakeWarmUp = this.warmPlan.some((w, p) => w !== null && (committed[p] ?? 0) < w.lakeEnd);
    if (this.stopping) return;
    if (origin.lakeEnds === null && !lakeWarmUp) return this.startConsumer();
    // The lake half runs after start() resolved, so that a stop signal can interrupt it; the
    // log consumer starts once every partition has handed over.
    this.lakePhase = this.replayLake(origin)
      .then((handedOver) => (handedOver && !this.stopping ? this.startConsumer() : undefined))
      .catch((err: unknown) => this.fail(err));
  }

  /**
   * The warm-up of each partition of a version that starts mid-log and has not committed its
   * start yet: the lake's part of the history below the start, then the log's
   * (streaming/replay/warmUpSource.ts). Refused when neither holds it all.
   */
  private async planWarmUps(origin: VersionOrigin, committed: (number | null)[]): Promise<(WarmUpPart | null)[]> {
    const { cfg } = this;
    if (origin.startOffsets === null || origin.from === 'live' || origin.from === 'earliest') return [];
    const starts = origin.startOffsets.map((s, p) => ((committed[p] ?? 0) >= s ? 0 : s));
    if (starts.every((s) => s === 0)) return [];
    const beginnings = await this.retry('beginning offsets', () => this.log.beginningOffsets(cfg.topic));
    // DuckDB is loaded only by a job that reads the lake.
    const { lakeHoldings } = await import('../replay/lakeSource.ts');
    const { resolveLake } = await import('../../services/lake/lakeLocation.ts');
    const lake = await lakeHoldings(await resolveLake(cfg.lakeUri, dataDirLayout(cfg.dataDir), cfg.topic));
    const plan = planWarmUp(cfg.topic, starts, { beginnings, lake });
    if (plan.some((w) => w !== null))
      logger.info(
        {
          warmUp: plan.flatMap((w, partition) =>
            w ? [{ partition, start: w.start, fromLake: w.lakeEnd, fromLog: w.start - w.lakeEnd }] : [],
          ),
        },
        'the version starts mid-log: warming up its state from the history before the start (nothing is published before it)',
      );
    return plan;
  }

  /** Runs a broker operation until it succeeds (an outage is waited through) or the job stops or fails. */
  private retry<T>(what: string, attempt: () => Promise<T>, stopped: () => boolean = () => false): Promise<T> {
    return retryWhileUnavailable(attempt, {
      what,
      health: this.log.health,
      stopped: () => this.stopping || this.failedAlready || stopped(),
      signal: this.stopRequest.signal,
      check: checkTopics(this.log, [this.cfg.topic, this.viewTopic]),
    });
  }

  /** Joins the group and consumes the log from the committed offsets (or the version's start). */
  private async startConsumer(): Promise<void> {
    const consumer = await this.retry('join the consumer group', async () => {
      const consumer = this.log.consumer({
        groupId: this.cfg.groupId,
        fromBeginning: true,
        maxBytesPerPartition: FETCH_BYTES_PER_PARTITION,
      });
      try {
        await consumer.subscribe([this.cfg.topic]);
        await consumer.run({
          onAssignment: (assigned, context) => this.onAssignment(assigned, context),
          eachBatch: (batch) => this.onBatch(batch),
          onProgress: (p) => {
            const task = this.tasks.get(p.partition);
            if (task) task.highWatermark = Math.max(task.highWatermark, p.highWatermark);
          },
        });
        return consumer;
      } catch (err) {
        await consumer.stop();
        throw err;
      }
    });
    this.consumer = consumer;
    consumer.done().catch((err: unknown) => {
      if (!this.stopping) this.fail(err);
    });
    this.publishStatus();
  }

  /** Graceful stop: final checkpoint of every owned partition (while still in the group), then leave. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopRequest.abort();
    // A start still in progress ends its waits now; what it opened is checkpointed and closed below.
    this.phase = 'the start to end';
    await this.starting?.catch((err: unknown) => logger.info({ err: errorMessage(err) }, 'stopped while starting'));
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // The lake half notices the stop after the range in hand; its tasks are checkpointed below.
    this.phase = 'the lake replay to stop';
    await this.lakePhase;
    const tasks = [...this.tasks.values()];
    this.phase = `the final checkpoint of partitions ${tasks.map((t) => t.partition).join(',') || '(none)'}`;
    const results = await Promise.allSettled(tasks.map((t) => t.checkpoint()));
    results.forEach((r, i) => {
      if (r.status === 'rejected')
        logger.warn(
          { partition: tasks[i]!.partition, err: errorMessage(r.reason) },
          'final checkpoint failed; the partition resumes from its previous checkpoint',
        );
    });
    this.phase = 'leaving the consumer group';
    await this.consumer?.stop();
    this.phase = 'closing the partitions';
    await Promise.allSettled(tasks.map((t) => t.close()));
    this.phase = 'closing the state threads';
    await this.host?.close();
    this.ready = false;
    this.phase = 'writing the final status';
    // The final status (not ready) is written whatever write was in flight.
    await this.status.flush();
    this.publishStatus();
    await this.status.flush();
    await this.status.close();
    logger.info({ partitions: tasks.map((t) => t.partition) }, 'speed job stopped after a final checkpoint');
  }

  /** What the stop is waiting for (the line a stop that ran out of time logs names it). */
  stopPhase(): string {
    return this.phase;
  }

  private failedAlready = false;

  private fail(err: unknown): void {
    if (this.stopping || this.failedAlready) return;
    this.failedAlready = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    logger.error({ err: errorMessage(err) }, 'speed job failed');
    this.failWith(err);
  }

  // ------------------------------------------------------------------ metadata and savepoints

  private jobMetadata(appliedSavepoints: string[]): JobMetadata {
    return {
      version: this.cfg.version,
      topic: this.cfg.topic,
      partitions: this.partitionCount,
      homePartitions: this.placement.homePartitions,
      metrics: [...this.cfg.definitions.metrics],
      semantics: this.semantics,
      appliedSavepoints,
      updatedAt: new Date().toISOString(),
    };
  }

  /** Refuses to meet checkpointed state with incompatible definitions; records compatible changes. */
  private async checkJobMetadata(): Promise<void> {
    const existing = await readJobMetadata(this.store.store);
    if (!existing) {
      await updateJobMetadata(this.store.store, (current) => this.jobMetadata(current?.appliedSavepoints ?? []));
      return;
    }
    if (existing.topic !== this.cfg.topic) {
      throw new ConfigError(
        `job version "${this.cfg.version}" consumed topic "${existing.topic}", not "${this.cfg.topic}"; use another --version for another topic`,
      );
    }
    // Kafka can add partitions, never remove them. State is per partition, so new partitions
    // simply start empty; events in them are misplaced (not in their home partition) and their
    // windows provisional until a batch run covers them (docs/guarantees.md).
    if (this.partitionCount < existing.partitions) {
      throw new ConfigError(
        `topic "${this.cfg.topic}" now has ${this.partitionCount} partitions, the checkpoints of version "${this.cfg.version}" were taken with ${existing.partitions}: was the topic deleted and created again? Start a new --version`,
      );
    }
    if (existing.homePartitions !== this.placement.homePartitions) {
      throw new ConfigError(
        `the checkpoints of version "${this.cfg.version}" counted misplaced events among ${existing.homePartitions} home partitions, the version record says ${this.placement.homePartitions}; start a new --version`,
      );
    }
    const label = `checkpointed state of version "${this.cfg.version}"`;
    const compat = compareDefinitions(existing.metrics, this.cfg.definitions.metrics, label);
    const problems = [...compat.problems, ...compareSemantics(existing.semantics, this.semantics, label)];
    if (problems.length > 0) throw new ConfigError(`cannot resume: ${problems.join('; ')}`);
    for (const note of compat.notes) logger.warn({ note }, 'metric definitions changed compatibly');
    await updateJobMetadata(this.store.store, (current) => this.jobMetadata(current?.appliedSavepoints ?? existing.appliedSavepoints));
  }

  private async applySavepoint(name: string): Promise<void> {
    const { cfg } = this;
    const offsets = await restoreFromSavepoint({
      name,
      state: cfg.state,
      topic: cfg.topic,
      version: cfg.version,
      partitionCount: this.partitionCount,
      definitions: cfg.definitions.metrics,
      semantics: this.semantics,
      placement: this.placement,
      metricsFingerprint: this.fingerprint,
      beginnings: await this.log.beginningOffsets(cfg.topic),
      store: this.store,
      commitOffset: async (partition, offset, snapshot) => {
        // The partition's own transactional producer: this also fences a running owner.
        const producer = await openFencingProducer(this.log, cfg.version, partition);
        try {
          const tx = await producer.transaction();
          await tx.sendOffsets(cfg.groupId, [{ topic: cfg.topic, partition, offset, metadata: checkpointMetadata(snapshot) }]);
          await tx.commit();
        } finally {
          await producer.close();
        }
      },
    });
    await updateJobMetadata(this.store.store, (current) => this.jobMetadata([...(current?.appliedSavepoints ?? []), name]));
    logger.info({ savepoint: name, offsets }, 'job state set from savepoint');
  }

  // ------------------------------------------------------------------ assignment and processing

  private async onAssignment(assigned: TopicPartition[], context?: AssignmentContext): Promise<PartitionOffset[]> {
    const { topic } = this.cfg;
    const superseded = () => context?.superseded() ?? false;
    const wanted = new Set(assigned.filter((tp) => tp.topic === topic).map((tp) => tp.partition));
    for (const [p, task] of this.tasks) {
      if (wanted.has(p)) continue;
      // Revoked: the new owner restores from the last committed checkpoint; whatever this
      // instance processed since is simply recomputed there.
      task.revoke();
      this.tasks.delete(p);
      const closed = task
        .close()
        .catch((err: unknown) => logger.debug({ partition: p, err: errorMessage(err) }, 'closing a revoked partition'))
        .finally(() => {
          if (this.closing.get(p) === closed) this.closing.delete(p);
        });
      this.closing.set(p, closed);
    }
    const fresh = [...wanted].filter((p) => !this.tasks.has(p));
    // Each task is kept as soon as it is open: an assignment that a newer one supersedes while
    // the broker is away leaves its opened tasks to the next, which revokes what it does not want.
    // Settled, not all: the next assignment must not start while an open of this one still runs.
    const results = await Promise.allSettled(
      fresh.map(async (p) => {
        const task = await this.retry(`open partition ${p}`, () => this.openTask(p), superseded);
        this.tasks.set(p, task);
        return task;
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const opened = results.map((r) => (r as PromiseFulfilledResult<PartitionTask>).value);
    this.ready = true;
    const positionOf = (p: number) => this.host!.stats(p)!.position;
    logger.info(
      {
        assigned: [...wanted].sort((a, b) => a - b),
        restored: opened.map((t) => ({ partition: t.partition, position: positionOf(t.partition) })),
      },
      'partitions assigned',
    );
    return [...wanted].map((p) => ({ topic, partition: p, offset: positionOf(p) }));
  }

  /**
   * Opens a partition's task at the group's committed offset (its checkpoint holds the state
   * there), else at `start`: the version's start offset when it was replayed from a point,
   * else the log's first offset. `fromLog`: the log must still hold that offset, or the records
   * between were deleted unread and the view would silently miss them.
   */
  private async openTask(partition: number, start?: number, fromLog = true): Promise<PartitionTask> {
    const warm = this.warmPlan[partition] ?? null;
    const { log, cfg } = this;
    // A revoked task of this partition must have released its state before a new one is opened.
    await this.closing.get(partition);
    // Fence first, then read the committed offset: after the fence no older owner can commit.
    const producer = await openFencingProducer(log, cfg.version, partition);
    let committedOffsets: (CommittedOffset | null)[], beginnings: number[], ends: number[];
    try {
      [committedOffsets, beginnings, ends] = await Promise.all([
        log.committedOffsetsWithMetadata(cfg.groupId, cfg.topic),
        log.beginningOffsets(cfg.topic),
        log.endOffsets(cfg.topic),
      ]);
    } catch (err) {
      await producer.close();
      throw err;
    }
    // The committed offset names its snapshot: the takeover reads exactly that, nothing listed.
    const head = committedCheckpoint(committedOffsets[partition] ?? null);
    const committed = head?.offset ?? null;
    const ctx = {
      log,
      topic: cfg.topic,
      viewTopic: this.viewTopic,
      groupId: cfg.groupId,
      version: cfg.version,
      store: this.store,
      active: () => !this.stopping && !this.failedAlready,
      settled: (revoked: () => boolean) => this.groupSettled(revoked),
    };
    const logStart = beginnings[partition] ?? 0;
    // A warm-up not yet begun on the lake begins on the log at the lake's part's end (0 without one).
    const beginning = start ?? (warm ? warm.lakeEnd : (this.record?.origin.startOffsets?.[partition] ?? logStart));
    const from = committed ?? beginning;
    if (fromLog && from < logStart) {
      await producer.close();
      throw new InfrastructureError(
        `partition ${partition} of topic "${cfg.topic}" now starts at offset ${logStart}, but version "${cfg.version}" must read on from offset ${from}: ` +
          `retention deleted records it had not read. Its view would miss them: replay into a new version --from lake (the lake keeps every record)`,
      );
    }
    let opened;
    try {
      const chain = head ? await this.store.readChain(partition, head) : undefined;
      opened = await this.host!.open(
        partition,
        head && chain ? { offset: head.offset, names: chain.names, buffers: chain.buffers, location: this.store.location } : null,
        beginning,
        warm?.start ?? null,
      );
    } catch (err) {
      await producer.close();
      if (err instanceof MissingCheckpointError) {
        throw new InfrastructureError(
          `group "${cfg.groupId}" committed offset ${committed} for partition ${partition} but its checkpoint is missing: ${err.message}. All instances of version "${cfg.version}" must share the state (--state-uri); to rebuild the state, start a new --version`,
        );
      }
      throw new InfrastructureError(`cannot restore partition ${partition}: ${errorMessage(err)}`, { cause: err });
    }
    const task = new PartitionTask(partition, this.host!, producer, ctx, opened.chain);
    // The lag is known from the start, not only once the first batch has been applied.
    task.highWatermark = ends[partition] ?? 0;
    return task;
  }

  /** Resolves once the consumer's assignment is settled (at once before the consumer runs: the lake half of a replay), or the task is revoked. */
  private async groupSettled(revoked: () => boolean): Promise<void> {
    while (this.consumer?.isRebalancing() && !revoked() && !this.stopping && !this.failedAlready) await sleep(100);
  }

  private async onBatch(batch: RecordBatch): Promise<void> {
    if (this.stopping || this.failedAlready || batch.topic !== this.cfg.topic) return;
    const task = this.tasks.get(batch.partition);
    if (!task || task.revoked) return;
    task.highWatermark = Math.max(task.highWatermark, batch.highWatermark);
    for (const part of this.rateSlices(batch)) {
      if (this.stopping || this.failedAlready || task.revoked) return;
      await this.throttle(part);
      // Waits only when the state thread is several batches behind (back-pressure).
      await this.host!.apply(part);
      this.processed += part.records.length;
      const now = Date.now();
      task.lastRecordAt = now;
      if ((this.host!.stats(batch.partition)?.pendingRows ?? 0) >= MAX_ROWS_PER_CHECKPOINT) {
        // Back-pressure: a checkpoint's transaction must stay small (the broker aborts transactions
        // older than the producer's transaction timeout), so a partition that has changed this many
        // rows waits for the checkpoint in flight and starts the next one at once. The wait can
        // last a broker outage: the group membership is kept alive meanwhile.
        await this.settleKeepingMembership(task, batch);
        if (task.revoked || this.stopping || this.failedAlready) return;
        this.checkpoint(task);
      } else if (!task.checkpointInFlight && now - (task.lastCheckpoint?.at ?? 0) >= this.cfg.checkpointIntervalMs) {
        // Under load the timer may fire late: checkpoint from the batch path as well.
        this.checkpoint(task);
      }
    }
  }

  /** Waits for the task's checkpoint in flight, heartbeating every second (the consumer's loop waits for this batch). */
  private async settleKeepingMembership(task: PartitionTask, batch: RecordBatch): Promise<void> {
    let settled = false;
    const done = task.settle().then(() => (settled = true));
    while (!settled && !task.revoked && !this.stopping && !this.failedAlready) {
      await Promise.race([done, sleep(1000)]);
      if (!settled) await batch.heartbeat?.();
    }
  }

  /** With --max-rate, a batch in slices of a tenth of a second's events: the state (and the lag) move smoothly, not in bursts. */
  private rateSlices(batch: RecordBatch): RecordBatch[] {
    return this.limiter ? sliceBatch(batch, Math.ceil(this.limiter.perSecond / 10)) : [batch];
  }

  /** --max-rate: waits (heartbeating) until the batch fits the rate. */
  private async throttle(batch: RecordBatch): Promise<void> {
    if (this.limiter) await this.limiter.take(batch.records.length, batch.heartbeat, () => this.stopping || this.failedAlready);
  }

  // ------------------------------------------------------------------ replay from the lake

  /**
   * The lake half of a version replayed `--from lake` (streaming/replay/lakeReplay.ts), before
   * the log consumer starts: every partition whose committed offset is below its hand-over
   * offset reads the lake up to it. One instance at a time, on any host, does this: it holds a
   * lease in the version's checkpoints (services/storage/lease.ts), renewed while it reads; an
   * instance that waited finds the partitions handed over, and one whose holder died takes the
   * lease over once it was not renewed for its time to live. Each partition's commits stay fenced
   * by its transactional producer whatever the lease says. False when the job stopped meanwhile.
   */
  private async replayLake(origin: VersionOrigin): Promise<boolean> {
    const { cfg, log } = this;
    // The hand-over to the log: a replay from the lake hands over at the lake's end when the
    // version was created; a warm-up's lake part at its end (still warming when the lake ends
    // before the start: the log then warms up the rest).
    const lakeEnds = Array.from({ length: this.partitionCount }, (_, p) => origin.lakeEnds?.[p] ?? this.warmPlan[p]?.lakeEnd ?? 0);
    const lease = await acquireLease(this.store.store, LAKE_REPLAY_LEASE, {
      holder: cfg.instanceId,
      stopped: () => this.stopping || this.failedAlready,
    });
    if (!lease) return false;
    try {
      const committed = await this.retry('committed offsets', () => log.committedOffsets(cfg.groupId, cfg.topic));
      const partitions = lakeEnds
        .map((end, partition) => {
          const warm = this.warmPlan[partition] ?? null;
          const start = warm ? 0 : (origin.startOffsets?.[partition] ?? 0);
          return { partition, end, start, warmEnd: warm?.lakeEnd ?? start, at: committed[partition] ?? null };
        })
        .filter((p) => (p.at ?? p.start) < p.end);
      if (partitions.length === 0) return true;
      const logEnds = await this.retry('end offsets', () => log.endOffsets(cfg.topic));
      // DuckDB is loaded only by a job that reads the lake.
      const { LakeSource, DEFAULT_CHUNK_OFFSETS } = await import('../replay/lakeSource.ts');
      const mapping = eventMappingOf(cfg.definitions.metrics);
      const { resolveLake } = await import('../../services/lake/lakeLocation.ts');
      const source = await LakeSource.open(await resolveLake(cfg.lakeUri, dataDirLayout(cfg.dataDir), cfg.topic), {
        withKeys: mapping.id === RECORD_KEY,
      });
      logger.info(
        { partitions: partitions.map((p) => ({ partition: p.partition, from: p.at ?? p.start, handOver: p.end })) },
        'replaying from the lake',
      );
      this.ready = true;
      try {
        const done = await replayFromLake({
          source,
          partitions,
          mapping,
          semantics: this.semantics,
          withKeys: mapping.id === RECORD_KEY,
          // Throttled, a lake read holds a tenth of a second's events, as the log's batches are sliced.
          lanes: Math.max(1, this.host!.threads),
          chunkOffsets: Math.min(
            cfg.lakeChunkOffsets ?? DEFAULT_CHUNK_OFFSETS,
            this.limiter ? Math.ceil(this.limiter.perSecond / 10) : Infinity,
          ),
          openTask: async (partition, start) => {
            const task = await this.retry(`open partition ${partition}`, () => this.openTask(partition, start, false));
            task.highWatermark = Math.max(logEnds[partition] ?? 0, lakeEnds[partition] ?? 0);
            this.tasks.set(partition, task);
            return task;
          },
          apply: async (packed) => {
            if (this.limiter) await this.limiter.take(packed.count, undefined, () => this.stopping || this.failedAlready);
            await this.host!.applyPacked(packed);
            this.processed += packed.count;
            const task = this.tasks.get(packed.partition);
            if (task) task.lastRecordAt = Date.now();
          },
          pendingRows: (partition) => this.host!.stats(partition)?.pendingRows ?? 0,
          maxRowsPerCheckpoint: MAX_ROWS_PER_CHECKPOINT,
          checkpointIntervalMs: cfg.checkpointIntervalMs,
          checkpoint: (task) => this.checkpoint(task),
          closeTask: async (task) => {
            this.tasks.delete(task.partition);
            await task.close();
          },
          // A lease lost (this instance paused past its time to live) stops the lake half at the next range.
          stopped: () => this.stopping || this.failedAlready || lease.lost.aborted,
        });
        if (lease.lost.aborted)
          throw new InfrastructureError('another instance took over the lake replay while this one paused; restarting it');
        if (done) logger.info({ handOver: lakeEnds }, 'lake replayed: the log takes over at the lake end of every partition');
        return done;
      } finally {
        source.close();
      }
    } finally {
      await lease.release();
    }
  }

  /**
   * Starts a checkpoint of the task; a failure fails the job (a checkpoint waits through broker
   * outages by itself: what reaches here is fatal, or not the log's). Resolves when it ended.
   */
  private checkpoint(task: PartitionTask): Promise<void> {
    const run = task.checkpoint();
    run.catch((err: unknown) => {
      if (task.revoked || this.stopping) {
        logger.debug({ partition: task.partition, err: errorMessage(err) }, 'checkpoint of a revoked partition failed');
        return;
      }
      this.fail(
        err instanceof FatalLogError
          ? err
          : new InfrastructureError(`checkpoint of partition ${task.partition} failed: ${errorMessage(err)}`, { cause: err }),
      );
    });
    return run;
  }

  private checkpointAll(): void {
    if (this.stopping || this.failedAlready) return;
    for (const task of this.tasks.values()) if (!task.checkpointInFlight) this.checkpoint(task);
  }

  // ------------------------------------------------------------------ status

  /** The status with the state's bytes measured now (rather than the figure of the last 10 s). */
  async measuredStatus(): Promise<SpeedStatus> {
    await Promise.all([...this.tasks.keys()].map((p) => this.host?.measure(p)));
    return this.snapshotStatus();
  }

  /** The status as the state threads last reported it. */
  snapshotStatus(): SpeedStatus {
    const now = Date.now();
    const dt = (now - this.lastRate.at) / 1000;
    if (dt >= 0.5) this.lastRate = { at: now, processed: this.processed, perSecond: (this.processed - this.lastRate.processed) / dt };
    const tasks = [...this.tasks.values()].sort((a, b) => a.partition - b.partition);
    const droppedLateByGranularity: Record<string, number> = {};
    const droppedLate: Record<string, number> = {};
    let duplicates = 0;
    let invalid = 0;
    let misplaced = 0;
    let windows = 0;
    let bytes = 0;
    let dedup = 0;
    let last: PartitionTask['lastCheckpoint'];
    const partitions = tasks.map((t) => {
      const s = this.host?.stats(t.partition);
      const position = s?.position ?? t.committedPosition ?? 0;
      if (s) {
        duplicates += s.counters.duplicates;
        invalid += s.counters.invalid;
        misplaced += s.counters.misplaced;
        for (const [slot, n] of Object.entries(s.counters.droppedLate)) {
          droppedLateByGranularity[slot] = (droppedLateByGranularity[slot] ?? 0) + n;
          const metric = slot.split('/')[0]!;
          droppedLate[metric] = (droppedLate[metric] ?? 0) + n;
        }
        windows += s.windows;
        dedup += s.dedupEntries;
        bytes += s.bytes;
      }
      if (t.lastCheckpoint && (!last || t.lastCheckpoint.at > last.at)) last = t.lastCheckpoint;
      const endOffset = Math.max(t.highWatermark, position);
      const idle = isIdle(endOffset - position, t.lastRecordAt, now, this.cfg.idleTimeoutMs);
      return {
        partition: t.partition,
        committedOffset: t.committedPosition,
        position,
        endOffset,
        lag: endOffset - position,
        watermark: s?.watermark ?? null,
        idle,
        misplaced: s?.counters.misplaced ?? 0,
      };
    });
    const watermark = combinedWatermark(partitions);
    return {
      version: this.cfg.version,
      instanceId: this.cfg.instanceId,
      pid: process.pid,
      updatedAt: now,
      topic: this.cfg.topic,
      viewTopic: this.viewTopic,
      ready: this.ready && !this.stopping,
      partitions,
      watermark,
      lastCheckpoint: last ? { at: last.at, bytes: last.bytes, durationMs: last.durationMs } : null,
      eventsPerSecond: Math.round(this.lastRate.perSecond),
      duplicates,
      invalid,
      misplaced,
      droppedLate,
      droppedLateByGranularity,
      stateWindows: windows,
      stateBytes: bytes,
      dedupEntries: dedup,
    };
  }

  private publishStatus(): void {
    try {
      this.remeasureQuietPartitions(Date.now());
      this.status.publish(this.snapshotStatus());
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'status update failed');
    }
  }

  /**
   * A state thread refreshes a partition's byte count at most every 10 s, and only when it answers
   * a batch (partitionState.ts approxBytes): a partition that went quiet soon after its last figure
   * would report that figure for as long as it stays quiet (a few KiB for one that caught up on a
   * million keys within 10 s of its first batch). So every 10 s, a partition that has not moved
   * since the last look and was not measured at this position is measured once. Busy partitions
   * are left to the threads' own refresh: measuring walks every window.
   */
  private remeasureQuietPartitions(now: number): void {
    const host = this.host;
    if (!host || this.stopping || now - this.lastRemeasure < 10_000) return;
    this.lastRemeasure = now;
    for (const p of [...this.quietWatch.keys()]) if (!this.tasks.has(p)) this.quietWatch.delete(p);
    for (const p of this.tasks.keys()) {
      const position = host.stats(p)?.position;
      if (position === undefined) continue;
      const watch = this.quietWatch.get(p);
      if (!watch) {
        this.quietWatch.set(p, { seen: position });
        continue;
      }
      const quiet = watch.seen === position;
      watch.seen = position;
      if (!quiet || watch.measured === position) continue;
      watch.measured = position;
      // A partition revoked or a thread stopping meanwhile: the figure simply stays as it was.
      host.measure(p).catch(() => undefined);
    }
  }
}
