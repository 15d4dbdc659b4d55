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
import { InfrastructureError } from '../../services/errors.ts';
import { DEFAULT_EVENT_LIMITS } from '../../services/events/event.ts';
import { DEFAULT_GENERATOR_OPTIONS, generateEventLines } from '../../services/ingest/generator.ts';
import { DEFAULT_EVENTS_TOPIC } from '../../services/log/topics.ts';
import { progress } from '../../services/observability/progress.ts';
import {
  addCommonOptions,
  addOptions,
  context,
  fraction,
  nonNegativeInt,
  positiveInt,
  timestamp,
  topicName,
  type CommonOptions,
  type OptionSpec,
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
export async function* paced(lines: Iterable<string>, rate: number | undefined): AsyncGenerator<string> {
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

const D = DEFAULT_GENERATOR_OPTIONS;

const GENERATE_OPTIONS: OptionSpec[] = [
  {
    flags: '--count <n>',
    description: 'number of distinct events (default 10000; unbounded with --rate)',
    env: 'LK_GEN_COUNT',
    parse: positiveInt,
  },
  { flags: '--rate <n>', description: 'send at this many events per second of wall-clock time', env: 'LK_GEN_RATE', parse: positiveInt },
  {
    flags: '--seed <n>',
    description: 'random seed: the same seed gives the same events',
    env: 'LK_GEN_SEED',
    default: D.seed,
    parse: nonNegativeInt,
  },
  {
    flags: '--event-rate <n>',
    description: 'events per second of event time (default: --rate, else 100)',
    env: 'LK_GEN_EVENT_RATE',
    parse: positiveInt,
  },
  {
    flags: '--start <time>',
    description: 'event time of the first event (default: so that the last event is about now)',
    env: 'LK_GEN_START',
    parse: timestamp,
  },
  {
    flags: '--duplicates <share>',
    description: 'share of events redelivered as exact duplicates',
    env: 'LK_GEN_DUPLICATES',
    default: D.duplicateRate,
    parse: fraction,
  },
  {
    flags: '--out-of-order <share>',
    description: 'share of events up to 5 s out of order',
    env: 'LK_GEN_OUT_OF_ORDER',
    default: D.outOfOrderRate,
    parse: fraction,
  },
  { flags: '--late <share>', description: 'share of events 2 to 6 hours late', env: 'LK_GEN_LATE', default: D.lateRate, parse: fraction },
  { flags: '--campaigns <n>', description: 'number of campaigns', env: 'LK_GEN_CAMPAIGNS', default: D.campaigns, parse: positiveInt },
  { flags: '--users <n>', description: 'number of users', env: 'LK_GEN_USERS', default: D.users, parse: positiveInt },
  { flags: '--output <file>', description: 'write JSON Lines to this file (default: stdout)', env: 'LK_GEN_OUTPUT', conflicts: 'toLog' },
  { flags: '--to-log', description: 'send straight to the events topic (validated, like lk produce)', env: 'LK_GEN_TO_LOG' },
  { flags: '--topic <name>', description: 'events topic for --to-log', env: 'LK_TOPIC', default: DEFAULT_EVENTS_TOPIC, parse: topicName },
];

/** The generated lines, paced by --rate, as text lines; stops early on SIGINT/SIGTERM. */
function generatedLines(opts: GenerateOptions): { lines: AsyncGenerator<string>; count: number } {
  const count = opts.count ?? (opts.rate !== undefined ? Infinity : 10_000);
  const eventRate = opts.eventRate ?? opts.rate ?? 100;
  const start = opts.start ?? (Number.isFinite(count) ? Date.now() - Math.ceil((count / eventRate) * 1000) : Date.now());
  const events = generateEventLines({
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
  const lines = (async function* () {
    for await (const line of paced(events, opts.rate)) {
      if (stopping) return;
      yield `${line}\n`;
    }
  })();
  return { lines, count };
}

/** --to-log: through the validating ingest path, like `lk produce`. */
async function sendToLog(opts: GenerateOptions, lines: AsyncGenerator<string>): Promise<void> {
  const log = context(opts).openLog('lk-generate');
  try {
    const summary = await produceStream(log, Readable.from(lines, { objectMode: false }), {
      topic: opts.topic,
      source: `generator(seed=${opts.seed})`,
      batchSize: opts.rate !== undefined ? Math.max(1, Math.min(5000, Math.ceil(opts.rate / 10))) : 5000,
      maxEventBytes: DEFAULT_EVENT_LIMITS.maxEventBytes,
    });
    printSummary(summary, opts.topic);
  } finally {
    await log.close();
  }
}

/** To --output (with a progress bar) or stdout. */
async function writeLines(opts: GenerateOptions, lines: AsyncGenerator<string>, count: number): Promise<void> {
  const out = opts.output !== undefined ? createWriteStream(opts.output) : process.stdout;
  const bar = opts.output !== undefined ? progress('generate', Number.isFinite(count) ? count : undefined, 'events') : undefined;
  let written = 0;
  try {
    for await (const line of lines) {
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
}

async function generate(opts: GenerateOptions): Promise<void> {
  const { lines, count } = generatedLines(opts);
  if (opts.toLog) await sendToLog(opts, lines);
  else await writeLines(opts, lines, count);
}

export function registerGenerateCommand(program: Command): void {
  const cmd = program
    .command('generate')
    .description('generate seeded ad-engagement events (impression, click, conversion) with duplicates, out-of-order and late events');
  addCommonOptions(addOptions(cmd, GENERATE_OPTIONS)).action(generate);
}
