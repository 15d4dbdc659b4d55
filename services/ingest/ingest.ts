/**
 * The ingest path: raw lines -> validated events on the events topic, everything else to the
 * dead-letter topic. Valid events are keyed by id, so every copy of an event lands in the same
 * partition (where the speed layer deduplicates it), and sent in batches by the idempotent
 * producer. Validation of the next batch overlaps with the sending of the previous one.
 */
import { DEFAULT_EVENT_LIMITS, validateEventLine, type EventLimits, type RejectCode, type Validation } from '../events/event.ts';
import { EventScanner } from '../events/eventScanner.ts';
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
}

export interface IngestSummary {
  lines: number;
  accepted: number;
  rejected: number;
  rejectedByReason: Partial<Record<RejectCode, number>>;
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
  const summary: IngestSummary = { lines: 0, accepted: 0, rejected: 0, rejectedByReason: {} };
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
  // Most lines take the scanner's fast path; it accepts exactly what the validator accepts, and
  // everything else (including every rejection, with its reason) is the validator's.
  const scanner = new EventScanner();
  const scanLimits = { maxEventBytes: limits.maxEventBytes, minTs: limits.minTs, maxTs: 0 };
  try {
    for await (const line of lines) {
      summary.lines++;
      const now = Date.now();
      scanLimits.maxTs = now + limits.maxFutureMs;
      if (line.truncatedFrom === undefined && scanner.scan(line.bytes, scanLimits)) {
        summary.accepted++;
        events.push({ key: scanner.id, value: line.bytes });
        if (events.length + dead.length >= batchSize) await flush();
        continue;
      }
      const result: Validation =
        line.truncatedFrom !== undefined
          ? ({
              ok: false,
              rejection: {
                code: 'too_large',
                message: `event is ${line.truncatedFrom} bytes, the limit is ${limits.maxEventBytes}`,
                expected: `<= ${limits.maxEventBytes} bytes`,
                got: `${line.truncatedFrom} bytes`,
              },
            } as const)
          : validateEventLine(line.bytes, limits, now);
      if (result.ok) {
        summary.accepted++;
        events.push({ key: result.event.id, value: line.bytes });
      } else {
        summary.rejected++;
        summary.rejectedByReason[result.rejection.code] = (summary.rejectedByReason[result.rejection.code] ?? 0) + 1;
        dead.push(
          deadLetterRecord(
            line.bytes,
            result.rejection,
            { source: options.source, line: line.number },
            line.truncatedFrom ?? line.bytes.length,
          ),
        );
      }
      if (events.length + dead.length >= batchSize) await flush();
    }
    await flush();
    await inFlight;
  } finally {
    await producer.close();
  }
  return summary;
}
