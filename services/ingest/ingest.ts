/**
 * The ingest path: raw lines -> validated events on the events topic, everything else to the
 * dead-letter topic. Lines are decoded under the metric file's event mapping (the flat model
 * without an `event:` section) through the decoding seam (services/events/decoders/). Valid
 * events are keyed by id (or by the key the line carries, with a key separator), so every copy of
 * an event lands in the same partition (where the speed layer deduplicates it), and sent in
 * batches by the idempotent producer. Validation of the next batch overlaps with the sending of
 * the previous one.
 */
import { createEventDecoder } from '../events/decoders/eventDecoder.ts';
import { DEFAULT_EVENT_LIMITS, type EventLimits, type RecordLimits, type RejectCode, type Rejection } from '../events/event.ts';
import { FLAT_EVENT_MAPPING, RECORD_TIMESTAMP, type EventMapping } from '../metrics/fieldSemantics.ts';
import { isUtf8 } from 'node:buffer';
import type { EventLog, OutgoingRecord } from '../log/eventLog.ts';
import { deadLetterTopic } from '../log/topics.ts';
import { deadLetterRecord } from './deadLetter.ts';
import { checkTopics, retryWhileUnavailable } from '../log/outages.ts';
import type { RawLine } from './lineReader.ts';

export interface IngestOptions {
  topic: string;
  /** Name of the source in dead letters: a file path or `stdin`. */
  source: string;
  limits?: EventLimits;
  /** Records per producer batch. */
  batchSize?: number;
  onProgress?: (summary: IngestSummary) => void;
  /**
   * Wait through broker outages (a long-running stream: the demo) instead of failing after the
   * producer's bounded retries (`lk produce`). A batch sent again after an outage may be
   * delivered twice: duplicates are removed downstream by event id. `stopped` ends the wait.
   */
  waitThroughOutages?: { stopped(): boolean };
  /** Where events keep their id, time and type (the metric file's `event:` section); default: flat events. */
  mapping?: EventMapping;
  /**
   * Each line is `key<separator>value` (as Kafka's console producer with parse.key=true): the
   * record is sent with that key, which `event.id: $key` reads. A line without the separator has
   * no key.
   */
  keySeparator?: Buffer;
}

export interface IngestSummary {
  lines: number;
  accepted: number;
  rejected: number;
  rejectedByReason: Partial<Record<RejectCode, number>>;
  /** The first refused line of each reason and why (the path that failed): what `lk produce` prints. */
  firstRejection: Partial<Record<RejectCode, { line: number; message: string }>>;
}

export async function ingestLines(log: EventLog, lines: AsyncIterable<RawLine>, options: IngestOptions): Promise<IngestSummary> {
  const limits = options.limits ?? DEFAULT_EVENT_LIMITS;
  const batchSize = options.batchSize ?? 5_000;
  const dlq = deadLetterTopic(options.topic);
  // Fail fast, before reading any input, when the topics are missing or the log is unreachable.
  await log.partitionCount(options.topic);
  await log.partitionCount(dlq);
  const producer = await log.producer();
  const send = (topic: string, records: OutgoingRecord[]): Promise<void> =>
    options.waitThroughOutages
      ? retryWhileUnavailable(() => producer.send(topic, records), {
          what: `send ${records.length} records to ${topic}`,
          health: log.health,
          stopped: options.waitThroughOutages.stopped,
          check: checkTopics(log, [topic]),
        })
      : producer.send(topic, records);
  const summary: IngestSummary = { lines: 0, accepted: 0, rejected: 0, rejectedByReason: {}, firstRejection: {} };
  let events: OutgoingRecord[] = [];
  let dead: OutgoingRecord[] = [];
  let inFlight: Promise<void> = Promise.resolve();
  const flush = async () => {
    const batch = events;
    const letters = dead;
    events = [];
    dead = [];
    await inFlight;
    inFlight = (async () => {
      if (batch.length > 0) await send(options.topic, batch);
      if (letters.length > 0) await send(dlq, letters);
    })();
    // Surface a failure of this send at the next await, not as an unhandled rejection.
    inFlight.catch(() => undefined);
    options.onProgress?.(summary);
  };
  // Most lines take the decoder's fast path; it accepts exactly what the validator accepts, and
  // everything else (including every rejection, with its reason) is the validator's.
  const mapping = options.mapping ?? FLAT_EVENT_MAPPING;
  const decoder = createEventDecoder(mapping, []);
  const recordLimits: RecordLimits = { maxEventBytes: limits.maxEventBytes, minTs: limits.minTs, maxTs: 0, now: 0 };
  const separator = options.keySeparator;
  // With $timestamp the event time is the record's: sent with the time it was validated at.
  const stampRecords = mapping.time === RECORD_TIMESTAMP;
  try {
    for await (const line of lines) {
      summary.lines++;
      const now = Date.now();
      recordLimits.maxTs = now + limits.maxFutureMs;
      recordLimits.now = now;
      let value = line.bytes;
      let key: Buffer | null = null;
      let rejection: Rejection | undefined;
      if (separator !== undefined) {
        const at = value.indexOf(separator);
        if (at >= 0) {
          key = value.subarray(0, at);
          value = value.subarray(at + separator.length);
          // Keys travel as text (the log's records take string keys).
          if (!isUtf8(key)) rejection = { code: 'invalid_utf8', field: '$key', message: 'the key before the separator is not valid UTF-8' };
        }
      }
      if (line.truncatedFrom !== undefined)
        rejection = {
          code: 'too_large',
          message: `event is ${line.truncatedFrom} bytes, the limit is ${limits.maxEventBytes}`,
          expected: `<= ${limits.maxEventBytes} bytes`,
          got: `${line.truncatedFrom} bytes`,
        };
      if (rejection === undefined) {
        if (decoder.decode(value, 0, value.length, key, now, recordLimits)) {
          summary.accepted++;
          // Keyed by the id's bytes (Kafka's partitioner then puts the record in its id's home
          // partition); an id from a path is UTF-8, and its text is the key.
          const d = decoder;
          const id = d.idIsText()
            ? d.idText()
            : Buffer.from(d.idBuf.buffer, d.idBuf.byteOffset + d.idStart, d.idEnd - d.idStart).toString('utf8');
          events.push({
            key: key !== null ? key.toString('utf8') : id,
            value,
            ...(stampRecords ? { timestamp: now } : {}),
          });
          if (events.length + dead.length >= batchSize) await flush();
          continue;
        }
        rejection = decoder.rejection;
      }
      summary.rejected++;
      summary.rejectedByReason[rejection.code] = (summary.rejectedByReason[rejection.code] ?? 0) + 1;
      summary.firstRejection[rejection.code] ??= { line: line.number, message: rejection.message };
      dead.push(
        deadLetterRecord(line.bytes, rejection, { source: options.source, line: line.number }, line.truncatedFrom ?? line.bytes.length),
      );
      if (events.length + dead.length >= batchSize) await flush();
    }
    await flush();
    await inFlight;
  } finally {
    await producer.close();
  }
  return summary;
}
