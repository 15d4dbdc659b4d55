/**
 * npm run bench:ingest — 1,000,000 generated events:
 *   validate only (CPU baseline, no I/O): the full validator, and what ingest does (the event
 *   decoder: its scanner, the validator for what it leaves), for the flat events and for the same
 *   events in a nested shape under a metric file's event: section (bench/lib.ts; aim: within 15 %
 *   of flat)
 *   ingest into Kafka (validate + key + idempotent produce, what `lk produce` does), flat and nested
 *   raw consume through the Kafka adapter (read_committed consumer group)
 *   the same two through the embedded adapter
 * Sizes: LK_BENCH_EVENTS (default 1000000).
 */
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEventDecoder } from '../services/events/decoders/eventDecoder.ts';
import { DEFAULT_EVENT_LIMITS, validateEventLine, type RecordLimits } from '../services/events/event.ts';
import { generateEventLines } from '../services/ingest/generator.ts';
import { parseMetricDefinitions } from '../services/metrics/definitions.ts';
import { FLAT_EVENT_MAPPING, type EventMapping } from '../services/metrics/fieldSemantics.ts';
import { ingestLines } from '../services/ingest/ingest.ts';
import type { RawLine } from '../services/ingest/lineReader.ts';
import { EmbeddedLog } from '../services/log/embedded/embeddedLog.ts';
import type { EventLog } from '../services/log/eventLog.ts';
import { KafkaLog } from '../services/log/kafka/kafkaLog.ts';
import { eventTopicSpecs } from '../services/log/topics.ts';
import {
  NESTED_EVENT_SECTION,
  benchBrokers,
  fmtMiB,
  fmtRate,
  machineLine,
  nestedEventLine,
  printTable,
  timed,
  trackPeakRss,
} from './lib.ts';

/** The nested shape's mapping (what `lk produce --metrics` takes from the event: section). */
const NESTED_MAPPING: EventMapping = parseMetricDefinitions(
  `${NESTED_EVENT_SECTION}\nmetrics: [{ name: m, key: ad.campaign, granularities: [minute], allowedLateness: 1m }]`,
).event;

const EVENTS = Number(process.env.LK_BENCH_EVENTS ?? 1_000_000);

/** `timed`, with the process's CPU time over the same span. */
async function timedCpu<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number; cpuSeconds: number }> {
  const cpu = process.cpuUsage();
  const { value, seconds } = await timed(fn);
  const used = process.cpuUsage(cpu);
  return { value, seconds, cpuSeconds: (used.user + used.system) / 1e6 };
}

async function* asLines(buffers: Buffer[]): AsyncGenerator<RawLine> {
  for (let i = 0; i < buffers.length; i++) yield { number: i + 1, bytes: buffers[i]! };
}

async function consumeAll(log: EventLog, topic: string): Promise<number> {
  const total = (await log.endOffsets(topic)).reduce((a, b) => a + b, 0);
  const consumer = log.consumer({ groupId: `bench-${Date.now()}`, fromBeginning: true, maxBytesPerPartition: 8 * 1024 * 1024 });
  let seen = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  await consumer.subscribe([topic]);
  await consumer.run({
    eachBatch: async (batch) => {
      seen += batch.records.length;
      if (seen >= total) resolveDone();
    },
  });
  await done;
  await consumer.stop();
  return seen;
}

async function main(): Promise<void> {
  console.log(`bench:ingest — ${EVENTS.toLocaleString('en-US')} events`);
  console.log(machineLine());
  const rss = trackPeakRss();
  const start = Date.now() - 3_600_000;
  const buffers = [...generateEventLines({ count: Math.round(EVENTS / 1.05), seed: 1, startTime: start, eventsPerSecond: 1000 })]
    .slice(0, EVENTS)
    .map((l) => Buffer.from(l));
  const bytes = buffers.reduce((a, b) => a + b.length, 0);
  console.log(`input: ${buffers.length.toLocaleString('en-US')} lines, ${fmtMiB(bytes)} (${(bytes / buffers.length).toFixed(0)} B/event)`);

  const nested = buffers.map((b) => Buffer.from(nestedEventLine(b.toString('utf8'))));
  const nestedBytes = nested.reduce((a, b) => a + b.length, 0);
  console.log(
    `nested: the same events, ${fmtMiB(nestedBytes)} (${(nestedBytes / nested.length).toFixed(0)} B/event), ${NESTED_EVENT_SECTION}`,
  );

  const validate = await timed(async () => {
    let ok = 0;
    const now = Date.now();
    for (const b of buffers) if (validateEventLine(b, DEFAULT_EVENT_LIMITS, now).ok) ok++;
    return ok;
  });
  const validateRate = buffers.length / validate.seconds;
  // What ingest does per line: the decoder's fast path (the validator only for lines it leaves).
  const asIngest = (lines: Buffer[], mapping: EventMapping) =>
    timedCpu(async () => {
      const decoder = createEventDecoder(mapping, []);
      const now = Date.now();
      const limits: RecordLimits = {
        maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes,
        minTs: DEFAULT_EVENT_LIMITS.minTs,
        maxTs: now + DEFAULT_EVENT_LIMITS.maxFutureMs,
        now,
      };
      let ok = 0;
      for (const b of lines) if (decoder.decode(b, 0, b.length, null, now, limits)) ok++;
      if (ok !== lines.length) throw new Error(`${lines.length - ok} generated lines refused`);
      return ok;
    });
  // Flat and nested twice each, interleaved: the machine may be shared; the better of two counts.
  const flatRuns = [await asIngest(buffers, FLAT_EVENT_MAPPING)];
  const nestedRuns = [await asIngest(nested, NESTED_MAPPING)];
  flatRuns.push(await asIngest(buffers, FLAT_EVENT_MAPPING));
  nestedRuns.push(await asIngest(nested, NESTED_MAPPING));
  const scanRate = buffers.length / Math.min(...flatRuns.map((r) => r.seconds));
  const nestedScanRate = nested.length / Math.min(...nestedRuns.map((r) => r.seconds));
  // CPU time per event: steadier than wall time on a shared machine.
  const flatCpu = Math.min(...flatRuns.map((r) => r.cpuSeconds)) / buffers.length;
  const nestedCpu = Math.min(...nestedRuns.map((r) => r.cpuSeconds)) / nested.length;

  const brokers = await benchBrokers();
  const kafka = new KafkaLog({ brokers: brokers.split(','), clientId: 'bench-ingest' });
  const topic = `bench-ingest-${Date.now()}`;
  await kafka.createTopics(eventTopicSpecs(topic, 6));
  const kProduce = await timed(() => ingestLines(kafka, asLines(buffers), { topic, source: 'bench', batchSize: 10_000 }));
  const kConsume = await timed(() => consumeAll(kafka, topic));
  await kafka.deleteTopics([topic, `${topic}.dlq`]);
  const nestedTopic = `${topic}-nested`;
  await kafka.createTopics(eventTopicSpecs(nestedTopic, 6));
  const kNested = await timed(() =>
    ingestLines(kafka, asLines(nested), { topic: nestedTopic, source: 'bench', batchSize: 10_000, mapping: NESTED_MAPPING }),
  );
  await kafka.deleteTopics([nestedTopic, `${nestedTopic}.dlq`]);
  await kafka.close();

  const dir = mkdtempSync(join(tmpdir(), 'lk-bench-'));
  const embedded = new EmbeddedLog({ root: dir });
  await embedded.createTopics(eventTopicSpecs(topic, 6));
  const eProduce = await timed(() => ingestLines(embedded, asLines(buffers), { topic, source: 'bench', batchSize: 10_000 }));
  const eConsume = await timed(() => consumeAll(embedded, topic));
  await embedded.close();
  rmSync(dir, { recursive: true, force: true });
  rss.stop();

  if (
    kProduce.value.accepted !== buffers.length ||
    kNested.value.accepted !== nested.length ||
    kConsume.value !== buffers.length ||
    eConsume.value !== buffers.length
  ) {
    throw new Error(`count mismatch: produced ${kProduce.value.accepted}, consumed kafka ${kConsume.value}, embedded ${eConsume.value}`);
  }
  const kp = buffers.length / kProduce.seconds;
  const kn = nested.length / kNested.seconds;
  const kc = buffers.length / kConsume.seconds;
  const ep = buffers.length / eProduce.seconds;
  const ec = buffers.length / eConsume.seconds;
  printTable([
    ['validate only, full validator', fmtRate(validateRate)],
    [
      'validate only, as ingest does (baseline)',
      `${fmtRate(scanRate)}  (runs: ${flatRuns.map((r) => fmtRate(buffers.length / r.seconds)).join(', ')})`,
    ],
    [
      'validate only, as ingest does, nested shape',
      `${fmtRate(nestedScanRate)}  (${(nestedScanRate / scanRate).toFixed(2)}x flat; aim >= 0.85; runs: ${nestedRuns.map((r) => fmtRate(nested.length / r.seconds)).join(', ')})`,
    ],
    [
      'validate only, CPU per event, flat / nested',
      `${(flatCpu * 1e6).toFixed(3)} us / ${(nestedCpu * 1e6).toFixed(3)} us  (${(flatCpu / nestedCpu).toFixed(2)}x flat's events per CPU second)`,
    ],
    ['kafka ingest (validate+produce)', `${fmtRate(kp)}  (${(kp / scanRate).toFixed(2)}x baseline; aim >= 100,000)`],
    [
      'kafka ingest, nested shape',
      `${fmtRate(kn)}  (${(kn / kp).toFixed(2)}x flat; in bytes ${fmtMiB((kn * nestedBytes) / nested.length)}/s vs ${fmtMiB((kp * bytes) / buffers.length)}/s: ${((kn * nestedBytes) / nested.length / ((kp * bytes) / buffers.length)).toFixed(2)}x)`,
    ],
    ['kafka raw consume', `${fmtRate(kc)}  (aim >= 150,000)`],
    ['embedded ingest', `${fmtRate(ep)}  (${(ep / scanRate).toFixed(2)}x baseline)`],
    ['embedded raw consume', fmtRate(ec)],
    ['kafka consume / embedded consume', `${(kc / ec).toFixed(2)}`],
    ['peak RSS', fmtMiB(rss.peak())],
  ]);
}

await main();
