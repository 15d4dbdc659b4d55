/**
 * npm run bench:ingest — 1,000,000 generated events:
 *   validate only (CPU baseline, no I/O): the full validator, and what ingest does (the event
 *   scanner, the validator for what it leaves)
 *   ingest into Kafka (validate + key + idempotent produce, what `lk produce` does)
 *   raw consume through the Kafka adapter (read_committed consumer group)
 *   the same two through the embedded adapter
 * Sizes: LK_BENCH_EVENTS (default 1000000).
 */
import { rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_EVENT_LIMITS, validateEventLine } from '../services/events/event.ts';
import { EventScanner } from '../services/events/eventScanner.ts';
import { generateEventLines } from '../services/ingest/generator.ts';
import { ingestLines } from '../services/ingest/ingest.ts';
import type { RawLine } from '../services/ingest/lineReader.ts';
import { EmbeddedLog } from '../services/log/embedded/embeddedLog.ts';
import type { EventLog } from '../services/log/eventLog.ts';
import { KafkaLog } from '../services/log/kafka/kafkaLog.ts';
import { eventTopicSpecs } from '../services/log/topics.ts';
import { benchBrokers, fmtMiB, fmtRate, machineLine, printTable, timed, trackPeakRss } from './lib.ts';

const EVENTS = Number(process.env.LK_BENCH_EVENTS ?? 1_000_000);

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

  const validate = await timed(async () => {
    let ok = 0;
    const now = Date.now();
    for (const b of buffers) if (validateEventLine(b, DEFAULT_EVENT_LIMITS, now).ok) ok++;
    return ok;
  });
  const validateRate = buffers.length / validate.seconds;
  // What ingest does per line: the scanner's fast path (the validator only for lines it leaves).
  const scanned = await timed(async () => {
    const scanner = new EventScanner();
    const now = Date.now();
    const limits = {
      maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes,
      minTs: DEFAULT_EVENT_LIMITS.minTs,
      maxTs: now + DEFAULT_EVENT_LIMITS.maxFutureMs,
    };
    let ok = 0;
    for (const b of buffers) if (scanner.scan(b, limits) || validateEventLine(b, DEFAULT_EVENT_LIMITS, now).ok) ok++;
    return ok;
  });
  const scanRate = buffers.length / scanned.seconds;

  const brokers = await benchBrokers();
  const kafka = new KafkaLog({ brokers: brokers.split(','), clientId: 'bench-ingest' });
  const topic = `bench-ingest-${Date.now()}`;
  await kafka.createTopics(eventTopicSpecs(topic, 6));
  const kProduce = await timed(() => ingestLines(kafka, asLines(buffers), { topic, source: 'bench', batchSize: 10_000 }));
  const kConsume = await timed(() => consumeAll(kafka, topic));
  await kafka.deleteTopics([topic, `${topic}.dlq`]);
  await kafka.close();

  const dir = mkdtempSync(join(tmpdir(), 'lk-bench-'));
  const embedded = new EmbeddedLog({ root: dir });
  await embedded.createTopics(eventTopicSpecs(topic, 6));
  const eProduce = await timed(() => ingestLines(embedded, asLines(buffers), { topic, source: 'bench', batchSize: 10_000 }));
  const eConsume = await timed(() => consumeAll(embedded, topic));
  await embedded.close();
  rmSync(dir, { recursive: true, force: true });
  rss.stop();

  if (kProduce.value.accepted !== buffers.length || kConsume.value !== buffers.length || eConsume.value !== buffers.length) {
    throw new Error(`count mismatch: produced ${kProduce.value.accepted}, consumed kafka ${kConsume.value}, embedded ${eConsume.value}`);
  }
  const kp = buffers.length / kProduce.seconds;
  const kc = buffers.length / kConsume.seconds;
  const ep = buffers.length / eProduce.seconds;
  const ec = buffers.length / eConsume.seconds;
  printTable([
    ['validate only, full validator', fmtRate(validateRate)],
    ['validate only, as ingest does (baseline)', fmtRate(scanRate)],
    ['kafka ingest (validate+produce)', `${fmtRate(kp)}  (${(kp / scanRate).toFixed(2)}x baseline; aim >= 100,000)`],
    ['kafka raw consume', `${fmtRate(kc)}  (aim >= 150,000)`],
    ['embedded ingest', `${fmtRate(ep)}  (${(ep / scanRate).toFixed(2)}x baseline)`],
    ['embedded raw consume', fmtRate(ec)],
    ['kafka consume / embedded consume', `${(kc / ec).toFixed(2)}`],
    ['peak RSS', fmtMiB(rss.peak())],
  ]);
}

await main();
