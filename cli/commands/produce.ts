/**
 * `lk produce`: JSON Lines from a file or standard input into the events topic, like Kafka's
 * console producer, with validation and dead letters. Lines are validated under the metric
 * file's `event:` section (--metrics, else ./metrics.yaml when it exists; without either, or
 * without the section, the flat model). Exits non-zero only when the infrastructure fails; bad
 * lines are reported in the summary (per reason, with the first line's message naming the path
 * that failed), not as a failure.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { ConfigError, InfrastructureError } from '../../services/errors.ts';
import { DEFAULT_EVENT_LIMITS } from '../../services/events/event.ts';
import { loadMetricDefinitions } from '../../services/metrics/definitions.ts';
import { FLAT_EVENT_MAPPING, RECORD_KEY, type EventMapping } from '../../services/metrics/fieldSemantics.ts';
import { ingestLines, type IngestSummary } from '../../services/ingest/ingest.ts';
import { readLines } from '../../services/ingest/lineReader.ts';
import type { EventLog } from '../../services/log/eventLog.ts';
import { DEFAULT_EVENTS_TOPIC, deadLetterTopic } from '../../services/log/topics.ts';
import { progress } from '../../services/observability/progress.ts';
import { addCommonOptions, context, positiveInt, topicName, type CommonOptions } from '../../services/config/cliOptions.ts';
import type { Readable } from 'node:stream';

export interface ProduceOptions extends CommonOptions {
  topic: string;
  file?: string;
  batchSize: number;
  maxEventBytes: number;
  keySeparator?: string;
}

export function printSummary(summary: IngestSummary, topic: string, out: (line: string) => void = console.log): void {
  out(`accepted ${summary.accepted} event(s) into ${topic}`);
  if (summary.rejected === 0) {
    out('rejected 0 line(s)');
    return;
  }
  out(`rejected ${summary.rejected} line(s) into ${deadLetterTopic(topic)}:`);
  const reasons = Object.entries(summary.rejectedByReason).sort((a, b) => b[1] - a[1]);
  for (const [reason, n] of reasons) {
    const first = summary.firstRejection[reason as keyof typeof summary.firstRejection];
    out(`  ${reason.padEnd(20)} ${String(n).padStart(6)}${first ? `  first at line ${first.line}: ${first.message}` : ''}`);
  }
}

/** Ingests a readable stream with a progress line; shared by `produce` and `generate --to-log`. */
export async function produceStream(
  log: EventLog,
  input: Readable,
  opts: {
    topic: string;
    source: string;
    batchSize: number;
    maxEventBytes: number;
    totalBytes?: number;
    mapping?: EventMapping;
    keySeparator?: string;
  },
): Promise<IngestSummary> {
  const bar = progress('produce', opts.totalBytes, 'B');
  let bytes = 0;
  const summary = await ingestLines(
    log,
    readLines(input, opts.maxEventBytes, (n) => (bytes += n)),
    {
      topic: opts.topic,
      source: opts.source,
      limits: { ...DEFAULT_EVENT_LIMITS, maxEventBytes: opts.maxEventBytes },
      batchSize: opts.batchSize,
      onProgress: (s) => bar.update(bytes, `accepted=${s.accepted} rejected=${s.rejected}`),
      ...(opts.mapping !== undefined ? { mapping: opts.mapping } : {}),
      ...(opts.keySeparator !== undefined ? { keySeparator: Buffer.from(opts.keySeparator, 'utf8') } : {}),
    },
  );
  bar.finish();
  return summary;
}

/** A separator as typed (`\t` may be written as the two characters, as shells make typing a tab awkward). */
function keySeparator(value: string): string {
  const text = value === '\\t' ? '\t' : value;
  if (text === '') throw new InvalidArgumentError('must not be empty.');
  return text;
}

/**
 * The event mapping lines are validated under: the metric file's (--metrics, else ./metrics.yaml
 * when it exists), or the flat model without one.
 */
function eventMappingForProduce(metrics: string | undefined): EventMapping {
  const file = metrics ?? (existsSync(DEFAULT_METRICS_FILE) ? DEFAULT_METRICS_FILE : undefined);
  return file === undefined ? FLAT_EVENT_MAPPING : loadMetricDefinitions(file).event;
}

/** With event.id: $key, a line has no key unless --key-separator says where it ends. */
function checkKeyed(mapping: EventMapping, keySeparator: string | undefined): void {
  if (mapping.id === RECORD_KEY && keySeparator === undefined)
    throw new ConfigError(
      'the metric file reads the event id from the record key (event.id: $key), and lines have no key: give --key-separator (for example --key-separator "\\t" for lines "<key><TAB><JSON>")',
    );
}

const DEFAULT_METRICS_FILE = './metrics.yaml';

export function registerProduceCommand(program: Command): void {
  addCommonOptions(
    program
      .command('produce')
      .description('send JSON Lines events from a file or stdin; invalid lines go to <topic>.dlq with the reason')
      .addOption(new Option('--topic <name>', 'events topic').env('LK_TOPIC').default(DEFAULT_EVENTS_TOPIC).argParser(topicName))
      .addOption(new Option('--file <path>', 'JSON Lines file (default: standard input)').env('LK_PRODUCE_FILE'))
      .addOption(
        new Option('--batch-size <n>', 'records per producer batch').env('LK_PRODUCE_BATCH_SIZE').default(5000).argParser(positiveInt),
      )
      .addOption(
        new Option('--max-event-bytes <n>', 'largest accepted event in bytes')
          .env('LK_MAX_EVENT_BYTES')
          .default(DEFAULT_EVENT_LIMITS.maxEventBytes)
          .argParser(positiveInt),
      )
      .addOption(
        new Option(
          '--key-separator <text>',
          'each line is <key><text><JSON>: records are sent with that key (what event.id: $key reads); a line without it has no key',
        )
          .env('LK_PRODUCE_KEY_SEPARATOR')
          .argParser(keySeparator),
      ),
  ).action(async (opts: ProduceOptions) => {
    const mapping = eventMappingForProduce(opts.metrics);
    checkKeyed(mapping, opts.keySeparator);
    let input: Readable = process.stdin;
    let totalBytes: number | undefined;
    if (opts.file !== undefined) {
      try {
        const stat = statSync(opts.file);
        if (!stat.isFile()) throw new ConfigError(`--file ${opts.file} is not a regular file`);
        totalBytes = stat.size;
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw new InfrastructureError(`cannot read ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      input = createReadStream(opts.file, { highWaterMark: 1024 * 1024 });
    }
    const log = context(opts).openLog('lk-produce');
    try {
      const summary = await produceStream(log, input, {
        topic: opts.topic,
        source: opts.file ?? 'stdin',
        batchSize: opts.batchSize,
        maxEventBytes: opts.maxEventBytes,
        ...(totalBytes !== undefined ? { totalBytes } : {}),
        mapping,
        ...(opts.keySeparator !== undefined ? { keySeparator: opts.keySeparator } : {}),
      });
      printSummary(summary, opts.topic);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== undefined && !(err instanceof InfrastructureError)) {
        throw new InfrastructureError(`cannot read ${opts.file ?? 'stdin'}: ${(err as NodeJS.ErrnoException).code}`);
      }
      throw err;
    } finally {
      await log.close();
    }
  });
}
