/**
 * Options of the `lk batch` commands, each with its environment variable, validated at the
 * boundary (commander parsers refuse bad values in one line; zod checks the assembled config).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { z } from 'zod';
import { addCommonOptions, addOptions, duration, port, topicName, versionName, type CommonOptions } from '../services/config/cliOptions.ts';
import { LAKE_URI_OPTION } from '../services/lake/lakeLocation.ts';
import { DEFAULT_EVENTS_TOPIC } from '../services/log/topics.ts';
import { versionNameSchema } from '../services/versions/versionName.ts';
import { BATCH_ENGINES, DEFAULT_SPARK_MASTER, sparkMaster, type BatchEngine, type BatchEngineName } from './engines/engineChoice.ts';

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i;
const UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Byte sizes like 134217728, 64k, 128MB, 1GiB (binary units). */
export function byteSize(value: string): number {
  const m = SIZE.exec(value.trim());
  const n = m ? Math.round(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()]!) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a size like 65536, 64k, 128MB or 1GB.');
  return n;
}

export const batchConfigSchema = z.object({
  topic: z.string().min(1),
  version: versionNameSchema,
  group: z.string().min(1, 'must not be empty').optional(),
  interval: z.number().int().positive(),
  rollSize: z.number().int().positive(),
  rollInterval: z.number().int().positive(),
  targetFileSize: z.number().int().positive(),
  statusPort: z.number().int().min(0).max(65535),
  lakeUri: z.string().min(1, 'must not be empty').optional(),
  vacuumRetention: z.number().int().nonnegative().optional(),
  lakeRetention: z.number().int().positive().optional(),
  engine: z.enum(BATCH_ENGINES),
  sparkMaster: z.string().min(1),
});

export interface BatchOptions extends CommonOptions {
  topic: string;
  version: string;
  /** Undefined: lakeWriterGroup(topic). */
  group?: string;
  interval: number;
  rollSize: number;
  rollInterval: number;
  targetFileSize: number;
  statusPort: number;
  /** Undefined: `<data-dir>/lake`. */
  lakeUri?: string;
  /** Undefined: the table's `delta.deletedFileRetentionDuration`. */
  vacuumRetention?: number;
  /** Undefined: the lake keeps everything (batch/lake/lakeRetention.ts). */
  lakeRetention?: number;
  /** The engine that recomputes the views. */
  engine: BatchEngineName;
  /** Spark's master URL when the engine is spark. */
  sparkMaster: string;
}

export function addBatchOptions(cmd: Command): Command {
  return addOptions(addCommonOptions(cmd), [LAKE_URI_OPTION])
    .addOption(
      new Option('--topic <name>', 'events topic to read').env('LK_BATCH_TOPIC').default(DEFAULT_EVENTS_TOPIC).argParser(topicName),
    )
    .addOption(
      new Option('--version <name>', 'job version: batch views are published under views/<version>')
        .env('LK_BATCH_VERSION')
        .default('v1')
        .argParser(versionName),
    )
    .addOption(
      new Option(
        '--group <id>',
        "consumer group of the lake writers (it shares the partitions among them; the lake's log holds the positions)",
      )
        .env('LK_BATCH_GROUP')
        .default(undefined, 'lk-batch-<topic>'),
    )
    .addOption(
      new Option('--interval <duration>', 'service mode: recompute the views this often')
        .env('LK_BATCH_INTERVAL')
        .default(15 * 60_000, '15m')
        .argParser(duration),
    )
    .addOption(
      new Option('--roll-size <bytes>', 'roll lake files when this much is buffered')
        .env('LK_BATCH_ROLL_SIZE')
        .default(128 * 1024 ** 2, '128MB')
        .argParser(byteSize),
    )
    .addOption(
      new Option('--roll-interval <duration>', 'roll lake files at least this often')
        .env('LK_BATCH_ROLL_INTERVAL')
        .default(60_000, '1m')
        .argParser(duration),
    )
    .addOption(
      new Option('--target-file-size <bytes>', 'compaction merges small files into files of about this size')
        .env('LK_BATCH_TARGET_FILE_SIZE')
        .default(128 * 1024 ** 2, '128MB')
        .argParser(byteSize),
    )
    .addOption(
      new Option(
        '--vacuum-retention <duration>',
        "vacuum deletes removed and unlisted lake files older than this (default: the table's delta.deletedFileRetentionDuration, 1 day)",
      )
        .env('LK_BATCH_VACUUM_RETENTION')
        .argParser(duration),
    )
    .addOption(
      new Option(
        '--lake-retention <duration>',
        "remove lake files whose events are all older than this, in event time, through the lake's commit protocol (default: off, the lake keeps everything); at least the metrics' longest window plus its retention",
      )
        .env('LK_BATCH_LAKE_RETENTION')
        .argParser(duration),
    )
    .addOption(
      new Option('--engine <name>', 'the engine that recomputes the batch views: duckdb (this machine) or spark (docs/spark.md)')
        .env('LK_BATCH_ENGINE')
        .choices(BATCH_ENGINES)
        .default('duckdb'),
    )
    .addOption(
      new Option('--spark-master <url>', 'with --engine spark: local[*], local[N] or a cluster URL (spark://host:7077, yarn, k8s://...)')
        .env('LK_SPARK_MASTER')
        .default(DEFAULT_SPARK_MASTER)
        .argParser((v: string) => {
          try {
            return sparkMaster(v);
          } catch (e) {
            throw new InvalidArgumentError(`${(e as Error).message}.`);
          }
        }),
    )
    .addOption(
      new Option('--status-port <port>', 'service mode: HTTP port for /healthz, /readyz, /metrics (0 = any free port)')
        .env('LK_BATCH_STATUS_PORT')
        .default(9403)
        .argParser(port),
    );
}

export function validateBatchOptions(opts: BatchOptions): BatchOptions {
  batchConfigSchema.parse(opts);
  return opts;
}

/** The engine the options choose, with its settings. */
export function batchEngineOf(opts: BatchOptions): BatchEngine {
  return opts.engine === 'spark' ? { name: 'spark', spark: { master: opts.sparkMaster } } : { name: 'duckdb' };
}

/**
 * The lake writer's consumer group when --group is not given: one per topic. A group shared by
 * the lake writers of several topics (or of several platforms on one cluster) rebalances all of
 * them whenever one starts, stops or dies, and a writer killed without leaving holds every other
 * one back until its session times out.
 */
export function lakeWriterGroup(topic: string): string {
  return `lk-batch-${topic}`;
}
