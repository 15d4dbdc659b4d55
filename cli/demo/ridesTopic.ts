/**
 * The demo's second topic, in a shape that is not ours: ride events as a ride-hailing backend
 * might publish them, nested JSON with the id at `meta.eventId`, the time at `meta.occurredAt` in
 * epoch seconds (with a fraction, sometimes as a string), the fields under `payload`. Its own
 * metric file (RIDES_METRICS, with an `event:` section) and version, its own speed job and batch
 * layer (lake writer and recompute), served by the same GraphQL endpoint. Now and then a ride
 * misses its id or carries a time that is no epoch-s: the dead-letter topic says which path.
 */
import { BatchService } from '../../batch/batchService.ts';
import { lakeWriterGroup } from '../../batch/batchConfig.ts';
import type { DataDirLayout } from '../../services/config/dataDir.ts';
import { seededRandom } from '../../services/ingest/generator.ts';
import { ingestLines } from '../../services/ingest/ingest.ts';
import type { RawLine } from '../../services/ingest/lineReader.ts';
import { resolveLake } from '../../services/lake/lakeLocation.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { eventTopicSpecs } from '../../services/log/topics.ts';
import { parseMetricDefinitions, type MetricDefinitions } from '../../services/metrics/definitions.ts';
import { logger } from '../../services/observability/logger.ts';
import { readVersionDefinitions } from '../../services/versions/versionRecord.ts';
import { SpeedJob } from '../../streaming/job/speedJob.ts';
import { defaultSpeedJobConfig } from '../../streaming/cli.ts';
import { paced } from '../commands/generate.ts';

export const RIDES_TOPIC = 'rides';
export const RIDES_VERSION = 'rides-v1';
const PARTITIONS = 3;

/** The rides' metric file (README "Your topic's own event shape" shows the same). */
export const RIDES_METRICS = `# Rides: nested JSON, the id and the time where the producer put them.
event: { id: meta.eventId, time: meta.occurredAt, timeFormat: epoch-s, type: meta.kind }
metrics:
  - name: fares_by_city
    filter: { meta.kind: trip_completed }
    key: payload.city
    value: payload.fare
    distinct: payload.rider.id
    granularities: [minute, hour]
    allowedLateness: 10m
  - name: rides_by_kind
    key: meta.kind
    granularities: [minute, hour]
    allowedLateness: 10m
`;

const CITIES = ['Paris', 'Lyon', 'Zürich', 'São Paulo', 'Ōsaka', 'Nairobi'];
const KINDS = ['trip_completed', 'trip_completed', 'trip_completed', 'trip_cancelled', 'driver_arrived'];
/** One line in this many is no event under the mapping, on purpose. */
const BAD_EVERY = 499;

/** One ride event at `timeMs`, as JSON text. */
function rideLine(r: () => number, seed: number, i: number, timeMs: number): string {
  const seconds = (timeMs / 1000).toFixed(3);
  const bad = i % BAD_EVERY === BAD_EVERY - 1;
  return JSON.stringify({
    meta: {
      ...(bad && i % 2 === 0 ? {} : { eventId: `ride-${seed}-${i}` }),
      occurredAt: bad && i % 2 === 1 ? 'soon' : r() < 0.2 ? seconds : Number(seconds),
      kind: KINDS[Math.floor(r() * KINDS.length)],
      source: 'dispatch',
    },
    payload: {
      city: CITIES[Math.floor(r() * CITIES.length)],
      fare: Math.round(r() * 6000) / 100,
      rider: { id: `rider-${Math.floor(r() * 2000)}`, tier: r() < 0.2 ? 'gold' : 'basic' },
      route: { km: Math.round(r() * 300) / 10, stops: [{ lat: 48.85, lon: 2.35 }] },
    },
  });
}

/** Lines with a redelivered copy now and then (at-least-once). */
async function* withDuplicates(lines: AsyncIterable<string> | Iterable<string>, r: () => number): AsyncGenerator<RawLine> {
  let n = 0;
  for await (const line of lines) {
    yield { number: ++n, bytes: Buffer.from(line) };
    if (r() < 0.05) yield { number: ++n, bytes: Buffer.from(line) };
  }
}

export interface Rides {
  /** Ride events sent and refused so far. */
  readonly counter: { accepted: number; rejected: number };
  definitions: MetricDefinitions;
  speed: SpeedJob;
  batch: BatchService;
  stop(): Promise<void>;
}

/**
 * Starts the rides: the topic (20 minutes of history on its first start), the speed job and
 * the batch layer of RIDES_VERSION, and a live stream at `rate` rides per second.
 */
export async function startRides(
  openLog: (clientId: string) => EventLog,
  layout: DataDirLayout,
  /** The shared state (the data dir unless --state-uri). */
  state: ObjectStore,
  seed: number,
  rate: number,
  batchIntervalMs: number,
  /** The demo's --lake-uri (the rides' table sits beside the events' one); undefined: `<data-dir>/lake`. */
  lakeUri: string | undefined,
): Promise<Rides> {
  const definitions = (await readVersionDefinitions(state, RIDES_VERSION)) ?? parseMetricDefinitions(RIDES_METRICS, 'rides.metrics.yaml');
  const log = openLog('lk-demo-rides');
  const { created } = await log.createTopics(eventTopicSpecs(RIDES_TOPIC, PARTITIONS));
  const counter = { accepted: 0, rejected: 0 };
  const r = seededRandom(seed + 7);
  let stopping = false;
  const ingest = async (lines: AsyncIterable<string> | Iterable<string>, batchSize: number) => {
    const s = await ingestLines(log, withDuplicates(lines, r), {
      topic: RIDES_TOPIC,
      source: `demo rides (seed ${seed})`,
      batchSize,
      mapping: definitions.event,
      // The stream goes on after a broker outage, as the layers do.
      waitThroughOutages: { stopped: () => stopping },
      onProgress: (p) => {
        counter.accepted = p.accepted;
        counter.rejected = p.rejected;
      },
    });
    counter.accepted = s.accepted;
    counter.rejected = s.rejected;
  };
  if (created.includes(RIDES_TOPIC) || (await log.endOffsets(RIDES_TOPIC)).every((e) => e === 0)) {
    const from = Date.now() - 20 * 60_000;
    await ingest(
      (function* () {
        for (let i = 0; i < 20 * 60 * 4; i++) yield rideLine(r, seed, i, from + i * 250 + Math.floor(r() * 200));
      })(),
      5_000,
    );
  }
  const speed = new SpeedJob(
    openLog('lk-demo-rides-speed'),
    defaultSpeedJobConfig({
      topic: RIDES_TOPIC,
      version: RIDES_VERSION,
      instanceId: 'demo',
      dataDir: layout.root,
      state,
      definitions,
      ...(lakeUri !== undefined ? { lakeUri } : {}),
    }),
  );
  await speed.start();
  const batch = new BatchService({
    log: openLog('lk-demo-rides-batch'),
    topic: RIDES_TOPIC,
    groupId: lakeWriterGroup(RIDES_TOPIC),
    state,
    scratchDir: layout.scratch,
    cacheDir: layout.cache,
    lake: await resolveLake(lakeUri, layout, RIDES_TOPIC),
    version: RIDES_VERSION,
    metrics: definitions,
    rollBytes: 16 * 1024 ** 2,
    rollIntervalMs: 10_000,
    logger,
    intervalMs: batchIntervalMs,
    targetFileSize: 64 * 1024 ** 2,
    // Beside the events' batch status (batch/status.json, which serving reads).
    statusKey: `batch/status-${RIDES_TOPIC}.json`,
    statusPort: 0,
  });
  await batch.start();
  // Live rides, paced at `rate` a second; an id stream of its own (the live ids never repeat the history's).
  let i = 1_000_000;
  const live = (async function* () {
    for await (const line of paced(
      (function* () {
        for (;;) yield rideLine(r, seed, i++, Date.now());
      })(),
      rate,
    )) {
      if (stopping) return;
      yield line;
    }
  })();
  const streaming = ingest(live, Math.max(1, Math.ceil(rate / 10)));
  streaming.catch(() => undefined);
  return {
    counter,
    definitions,
    speed,
    batch,
    async stop() {
      stopping = true;
      await streaming.catch(() => undefined);
      await speed.stop();
      await batch.stop();
    },
  };
}
