/**
 * The demo's events: an hour of history on the first start (so that the charts and the first
 * batch run have something to show at once), then a live stream at a visible rate, with what real
 * traffic has: duplicates (at-least-once redelivery), out-of-order and late events, and now and
 * then a line no validator would accept (it lands in the dead-letter topic with its reason).
 *
 * Every start of the demo draws from a seed of its own (a run counter kept in the data dir), so
 * that a restarted demo sends new events, never the ids of an earlier run again.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateEventLines } from '../../services/ingest/generator.ts';
import { ingestLines } from '../../services/ingest/ingest.ts';
import type { RawLine } from '../../services/ingest/lineReader.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { writeFileAtomicSync } from '../../services/storage/atomicFile.ts';
import { paced } from '../commands/generate.ts';

/** Events per second of event time in the first start's history, and how far back it goes. */
const HISTORY_RATE = 25;
const HISTORY_MS = 60 * 60_000;
/** One line in this many is broken on purpose. */
const BAD_LINE_EVERY = 997;
const BAD_LINES = [
  'not json at all',
  '{"id":"demo-bad","type":"click"}',
  '{"id":"demo-bad","type":"click","ts":"yesterday"}',
  '{"id":42,"type":"impression","ts":"2026-01-01T00:00:00Z"}',
];

export interface DemoRun {
  /** 1 for the first start of the demo in this data dir. */
  run: number;
  seed: number;
}

/** Counts this start in `<data-dir>/demo/demo.json` and returns its seed. */
export function nextDemoRun(dataDir: string): DemoRun {
  const path = join(dataDir, 'demo', 'demo.json');
  let runs = 0;
  try {
    runs = (JSON.parse(readFileSync(path, 'utf8')) as { runs: number }).runs;
  } catch {
    runs = 0;
  }
  const run = runs + 1;
  writeFileAtomicSync(path, `${JSON.stringify({ runs: run })}\n`);
  return { run, seed: 1000 + run };
}

async function* rawLines(
  lines: AsyncIterable<string> | Iterable<string>,
  counter: { lines: number; bad: number },
): AsyncGenerator<RawLine> {
  for await (const line of lines) {
    counter.lines++;
    yield { number: counter.lines, bytes: Buffer.from(line) };
    if (counter.lines % BAD_LINE_EVERY === 0) {
      counter.lines++;
      counter.bad++;
      yield { number: counter.lines, bytes: Buffer.from(BAD_LINES[counter.bad % BAD_LINES.length]!) };
    }
  }
}

/** The last hour, at once (first start only). */
export async function sendHistory(log: EventLog, topic: string, seed: number): Promise<{ accepted: number; rejected: number }> {
  const counter = { lines: 0, bad: 0 };
  const count = Math.floor((HISTORY_MS / 1000) * HISTORY_RATE);
  const lines = generateEventLines({
    seed,
    count,
    startTime: Date.now() - HISTORY_MS,
    eventsPerSecond: HISTORY_RATE,
    lateRate: 0.01,
    lateMinMs: 20 * 60_000,
    lateMaxMs: 50 * 60_000,
  });
  const summary = await ingestLines(log, rawLines(lines, counter), { topic, source: `demo history (seed ${seed})`, batchSize: 10_000 });
  return { accepted: summary.accepted, rejected: summary.rejected };
}

export interface LiveStream {
  /** Lines sent so far (events and broken lines). */
  readonly counter: { lines: number; bad: number };
  /** Ends the stream; resolves once the last batch is delivered. */
  stop(): Promise<void>;
}

/** The live stream, paced at `rate` events per second of wall-clock time (event time = now). */
export function startLiveStream(log: EventLog, topic: string, seed: number, rate: number): LiveStream {
  const counter = { lines: 0, bad: 0 };
  let stopping = false;
  const events = generateEventLines({
    // Another stream than the history's (which used `seed`): its ids never repeat the history's.
    seed: seed + 500_000,
    count: Number.MAX_SAFE_INTEGER,
    startTime: Date.now(),
    eventsPerSecond: rate,
    // Late events are an hour or two late: beyond allowedLateness, so only the batch layer counts
    // them, which the reconciliation panel then shows.
    lateRate: 0.005,
    lateMinMs: 60 * 60_000,
    lateMaxMs: 2 * 60 * 60_000,
  });
  const lines = (async function* () {
    for await (const line of paced(events, rate)) {
      if (stopping) return;
      yield line;
    }
  })();
  const done = ingestLines(log, rawLines(lines, counter), {
    topic,
    source: `demo (seed ${seed})`,
    batchSize: Math.max(1, Math.ceil(rate / 10)),
    // The stream goes on after a broker outage, as the layers do.
    waitThroughOutages: { stopped: () => stopping },
  });
  done.catch(() => undefined);
  return {
    counter,
    async stop() {
      stopping = true;
      await done;
    },
  };
}
