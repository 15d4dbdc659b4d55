/**
 * `lk demo` (`npm run demo`): the whole platform in one process, for a first look. On the
 * embedded log when no broker is given (KAFKA_BROKERS unset), on that broker otherwise:
 *
 *   events (demoEvents.ts) -> the events topic -> the speed layer (v1) and the batch layer
 *   (lake + views every --batch-interval) -> serving: GraphQL, the dashboard, the explorer
 *
 * and beside it a topic in a shape that is not ours (ridesTopic.ts): nested rides with their own
 * metric file (an `event:` section) and version `rides-v1`, through their own speed and batch
 * layers into the same GraphQL endpoint.
 *
 * Each layer runs its own production code with its own connection to the log, exactly as the
 * separate `lk speed`, `lk batch` and `lk serve` processes do; only the process is shared. It
 * prints the URLs and three example queries, keeps one status line up to date, and stops cleanly
 * on Ctrl-C (final checkpoint, the lake's pending files committed). Started again, it finds its
 * data where it left it and goes on. `--tour` then walks through reprocessing (tour.ts).
 */
import { BatchService } from '../../batch/batchService.ts';
import { lakeWriterGroup } from '../../batch/batchConfig.ts';
import { aborted, context, onShutdownSignal } from '../../services/config/cliOptions.ts';
import type { DemoOptions } from './demoCommand.ts';
import { errorMessage } from '../../services/errors.ts';
import { resolveLake, type LakeHandle } from '../../services/lake/lakeLocation.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { DEFAULT_EVENTS_PARTITIONS, DEFAULT_EVENTS_TOPIC, eventTopicSpecs } from '../../services/log/topics.ts';
import { logger } from '../../services/observability/logger.ts';
import { parseServeConfig } from '../../serving/config.ts';
import { startServe, type ServeHandle } from '../../serving/http/server.ts';
import { SpeedJob } from '../../streaming/job/speedJob.ts';
import { defaultSpeedJobConfig } from '../../streaming/cli.ts';
import { nextDemoRun, sendHistory, startLiveStream, type LiveStream } from './demoEvents.ts';
import { exampleQueries } from './examples.ts';
import { StatusLine } from './statusLine.ts';
import { runTour } from './tour.ts';
import { RIDES_TOPIC, RIDES_VERSION, startRides } from './ridesTopic.ts';

export const DEMO_VERSION = 'v1';
const TOPIC = DEFAULT_EVENTS_TOPIC;

export interface DemoRuntime {
  dataDir: string;
  /** The shared state (the data dir unless --state-uri). */
  state: ObjectStore;
  topic: string;
  lake: LakeHandle;
  openLog(clientId: string): EventLog;
  serve: ServeHandle;
  batch: BatchService;
  speed: SpeedJob;
  stopping(): boolean;
}

/** Runs the demo until Ctrl-C (or until a part of it fails). */
export async function runDemo(opts: DemoOptions): Promise<void> {
  // A calm console: the status line and the narration; warnings and errors still show.
  if (process.env.LK_LOG_LEVEL === undefined) logger.level = 'warn';
  const ctx = context(opts);
  const metrics = await ctx.loadMetrics(DEMO_VERSION);
  const state = await ctx.state();
  const logs: EventLog[] = [];
  const openLog = (clientId: string) => {
    const log = ctx.openLog(clientId);
    logs.push(log);
    return log;
  };
  const stop = onShutdownSignal(() => process.stderr.write('\nstopping (Ctrl-C again to quit at once)...\n'));
  const parts: { name: string; stop: () => Promise<unknown> }[] = [];
  let stream: LiveStream | undefined;
  let status: StatusLine | undefined;
  try {
    const log = openLog('lk-demo');
    const { created } = await log.createTopics(eventTopicSpecs(TOPIC, DEFAULT_EVENTS_PARTITIONS));
    const { run, seed } = nextDemoRun(ctx.layout.root);
    const where = log.kind === 'kafka' ? `Kafka at ${log.location}` : `the embedded log in ${ctx.layout.log}`;
    console.log(`lambda-kappa demo (run ${run}) on ${where}, data in ${ctx.layout.root}`);
    if (created.includes(TOPIC) || (await log.endOffsets(TOPIC)).every((e) => e === 0)) {
      const history = await sendHistory(log, TOPIC, seed);
      console.log(
        `sent an hour of history: ${history.accepted.toLocaleString('en-US')} events (${history.rejected} broken lines to ${TOPIC}.dlq)`,
      );
    }

    const lake = await resolveLake(opts.lakeUri, ctx.layout, TOPIC);
    const speed = new SpeedJob(
      openLog('lk-demo-speed'),
      defaultSpeedJobConfig({
        topic: TOPIC,
        version: DEMO_VERSION,
        instanceId: 'demo',
        dataDir: ctx.layout.root,
        state,
        definitions: metrics,
        ...(opts.lakeUri !== undefined ? { lakeUri: opts.lakeUri } : {}),
      }),
    );
    await speed.start();
    parts.push({ name: 'speed layer', stop: () => speed.stop() });

    const batch = new BatchService({
      log: openLog('lk-demo-batch'),
      topic: TOPIC,
      groupId: lakeWriterGroup(TOPIC),
      state,
      scratchDir: ctx.layout.scratch,
      cacheDir: ctx.layout.cache,
      lake,
      version: DEMO_VERSION,
      metrics,
      rollBytes: 32 * 1024 ** 2,
      rollIntervalMs: 10_000,
      logger,
      intervalMs: opts.batchInterval,
      targetFileSize: 64 * 1024 ** 2,
      statusPort: 0,
    });
    await batch.start();
    parts.push({ name: 'batch layer', stop: () => batch.stop() });

    const serve = await startServe({
      config: parseServeConfig(
        {
          port: opts.port,
          host: opts.host,
          dataDir: ctx.layout.root,
          ...(opts.stateUri !== undefined ? { stateUri: opts.stateUri } : {}),
          defaultVersion: DEMO_VERSION,
          eventsTopic: TOPIC,
        },
        metrics,
      ),
      log: openLog('lk-demo-serve'),
      logger,
    });
    parts.push({ name: 'serving', stop: () => serve.close() });

    stream = startLiveStream(openLog('lk-demo-events'), TOPIC, seed, opts.rate);
    const live = stream;
    parts.push({ name: 'event stream', stop: () => live.stop() });

    console.log(`\n  dashboard         ${serve.url}/`);
    console.log(`  GraphQL           ${serve.url}/graphql   (open it in a browser for the explorer)`);
    console.log(`  live events       ${opts.rate}/s, with duplicates, late events and a few broken lines`);
    console.log(`  batch views       recomputed every ${Math.round(opts.batchInterval / 1000)} s (the first once the lake has caught up)`);
    console.log(
      `  a foreign shape   topic "${RIDES_TOPIC}": nested JSON, ids at meta.eventId, epoch-s times at meta.occurredAt (version ${RIDES_VERSION}, its metric file's event: section)\n`,
    );
    console.log('Try:');
    for (const q of exampleQueries(serve.url, Date.now())) console.log(`  ${q}\n`);
    console.log(
      opts.tour
        ? 'The tour starts once the first batch run is published.'
        : 'Ctrl-C stops the demo; start it again to go on where it stopped. npm run demo -- --tour walks through reprocessing.',
    );

    status = new StatusLine({ speed, batch, stream: live, serve, dataDir: ctx.layout.root });
    status.start();
    // The rides start once the main pipeline runs: they do not delay its first answers.
    const rides = startRides(openLog, ctx.layout, state, seed, Math.max(1, Math.round(opts.rate / 10)), opts.batchInterval, opts.lakeUri);
    parts.push({ name: 'rides', stop: async () => (await rides).stop() });
    // Broker outages are waited through by every part; only what retrying cannot fix ends the demo.
    const failed = Promise.race([
      speed.failure(),
      serve.failure(),
      batch.done().then(() => Promise.reject(new Error('the lake writer stopped'))),
      rides.then((r) =>
        Promise.race([r.speed.failure(), r.batch.done().then(() => Promise.reject(new Error("the rides' lake writer stopped")))]),
      ),
    ]);
    failed.catch(() => undefined);
    const runtime: DemoRuntime = {
      dataDir: ctx.layout.root,
      state,
      topic: TOPIC,
      lake,
      openLog,
      serve,
      batch,
      speed,
      stopping: () => stop.aborted,
    };
    const tour = opts.tour ? runTour(runtime, status, parts) : undefined;
    await Promise.race([aborted(stop), failed, ...(tour ? [tour.then(() => aborted(stop))] : [])]);
  } finally {
    status?.stop();
    // Newest first: the stream stops before the layers that read it, serving last but one.
    for (const part of parts.reverse()) {
      try {
        await part.stop();
      } catch (err) {
        process.stderr.write(`${part.name} did not stop cleanly: ${errorMessage(err)}\n`);
      }
    }
    await Promise.allSettled(logs.map((l) => l.close()));
  }
  console.log(`stopped; the data stays in ${ctx.layout.root} (npm run demo goes on from there)`);
}
