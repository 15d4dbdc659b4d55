/**
 * `lk generate`: deterministic ad-engagement events (see services/ingest/generator.ts) to
 * stdout, a file, or straight to the log through the same validating ingest path as
 * `lk produce`.
 */
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { Option } from 'commander';
import { InfrastructureError } from '../../services/errors.ts';
import { DEFAULT_EVENT_LIMITS } from '../../services/events/event.ts';
import { DEFAULT_GENERATOR_OPTIONS, generateEventLines } from '../../services/ingest/generator.ts';
import { DEFAULT_EVENTS_TOPIC } from '../../services/log/topics.ts';
import { progress } from '../../services/observability/progress.ts';
import {
  addCommonOptions,
  context,
  fraction,
  nonNegativeInt,
  positiveInt,
  timestamp,
  topicName,
  type CommonOptions,
} from '../../services/config/cliOptions.ts';
import { printSummary, produceStream } from './produce.ts';

interface GenerateOptions extends CommonOptions {
  count?: number;
  rate?: number;
  seed: number;
  eventRate?: number;
  start?: number;
  duplicates: number;
  outOfOrder: number;
  late: number;
  campaigns: number;
  users: number;
  output?: string;
  toLog: boolean;
  topic: string;
}

/** Paces an iterator to `rate` items per second (in slices of 100 ms), or passes it through. */
async function* paced(lines: Iterable<string>, rate: number | undefined): AsyncGenerator<string> {
  if (rate === undefined) {
    yield* lines;
    return;
  }
  const started = Date.now();
  let sent = 0;
  for (const line of lines) {
    yield line;
    sent++;
    const due = started + (sent / rate) * 1000;
    const wait = due - Date.now();
    if (wait > 20) await sleep(wait);
  }
}

export function registerGenerateCommand(program: Command): void {
  addCommonOptions(
    program
      .command('generate')
      .description('generate seeded ad-engagement events (impression, click, conversion) with duplicates, out-of-order and late events')
      .addOption(
        new Option('--count <n>', 'number of distinct events (default 10000; unbounded with --rate)')
          .env('LK_GEN_COUNT')
          .argParser(positiveInt),
      )
      .addOption(
        new Option('--rate <n>', 'send at this many events per second of wall-clock time').env('LK_GEN_RATE').argParser(positiveInt),
      )
      .addOption(
        new Option('--seed <n>', 'random seed: the same seed gives the same events')
          .env('LK_GEN_SEED')
          .default(DEFAULT_GENERATOR_OPTIONS.seed)
          .argParser(nonNegativeInt),
      )
      .addOption(
        new Option('--event-rate <n>', 'events per second of event time (default: --rate, else 100)')
          .env('LK_GEN_EVENT_RATE')
          .argParser(positiveInt),
      )
      .addOption(
        new Option('--start <time>', 'event time of the first event (default: so that the last event is about now)')
          .env('LK_GEN_START')
          .argParser(timestamp),
      )
      .addOption(
        new Option('--duplicates <share>', 'share of events redelivered as exact duplicates')
          .env('LK_GEN_DUPLICATES')
          .default(DEFAULT_GENERATOR_OPTIONS.duplicateRate)
          .argParser(fraction),
      )
      .addOption(
        new Option('--out-of-order <share>', 'share of events up to 5 s out of order')
          .env('LK_GEN_OUT_OF_ORDER')
          .default(DEFAULT_GENERATOR_OPTIONS.outOfOrderRate)
          .argParser(fraction),
      )
      .addOption(
        new Option('--late <share>', 'share of events 2 to 6 hours late')
          .env('LK_GEN_LATE')
          .default(DEFAULT_GENERATOR_OPTIONS.lateRate)
          .argParser(fraction),
      )
      .addOption(
        new Option('--campaigns <n>', 'number of campaigns')
          .env('LK_GEN_CAMPAIGNS')
          .default(DEFAULT_GENERATOR_OPTIONS.campaigns)
          .argParser(positiveInt),
      )
      .addOption(
        new Option('--users <n>', 'number of users').env('LK_GEN_USERS').default(DEFAULT_GENERATOR_OPTIONS.users).argParser(positiveInt),
      )
      .addOption(new Option('--output <file>', 'write JSON Lines to this file (default: stdout)').env('LK_GEN_OUTPUT').conflicts('toLog'))
      .addOption(new Option('--to-log', 'send straight to the events topic (validated, like lk produce)').env('LK_GEN_TO_LOG'))
      .addOption(
        new Option('--topic <name>', 'events topic for --to-log').env('LK_TOPIC').default(DEFAULT_EVENTS_TOPIC).argParser(topicName),
      ),
  ).action(async (opts: GenerateOptions) => {
    const count = opts.count ?? (opts.rate !== undefined ? Infinity : 10_000);
    const eventRate = opts.eventRate ?? opts.rate ?? 100;
    const start = opts.start ?? (Number.isFinite(count) ? Date.now() - Math.ceil((count / eventRate) * 1000) : Date.now());
    const lines = generateEventLines({
      seed: opts.seed,
      count,
      startTime: start,
      eventsPerSecond: eventRate,
      duplicateRate: opts.duplicates,
      outOfOrderRate: opts.outOfOrder,
      lateRate: opts.late,
      campaigns: opts.campaigns,
      users: opts.users,
    });
    let stopping = false;
    const stop = () => {
      stopping = true;
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const source = (async function* () {
      for await (const line of paced(lines, opts.rate)) {
        if (stopping) return;
        yield `${line}\n`;
      }
    })();

    if (opts.toLog) {
      const log = context(opts).openLog('lk-generate');
      try {
        const summary = await produceStream(log, Readable.from(source, { objectMode: false }), {
          topic: opts.topic,
          source: `generator(seed=${opts.seed})`,
          batchSize: opts.rate !== undefined ? Math.max(1, Math.min(5000, Math.ceil(opts.rate / 10))) : 5000,
          maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes,
        });
        printSummary(summary, opts.topic);
      } finally {
        await log.close();
      }
      return;
    }

    const out = opts.output !== undefined ? createWriteStream(opts.output) : process.stdout;
    const bar = opts.output !== undefined ? progress('generate', Number.isFinite(count) ? count : undefined, 'events') : undefined;
    let written = 0;
    try {
      for await (const line of source) {
        if (!out.write(line)) await once(out, 'drain');
        written++;
        if (written % 10_000 === 0) bar?.update(written);
      }
    } catch (err) {
      throw new InfrastructureError(`cannot write ${opts.output ?? 'stdout'}: ${(err as Error).message}`);
    }
    bar?.update(written);
    bar?.finish();
    if (opts.output !== undefined) {
      out.end();
      await once(out, 'finish');
      console.error(`wrote ${written} line(s) to ${opts.output}`);
    }
  });
}
