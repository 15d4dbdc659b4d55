/**
 * Options every `lk` command shares, each with its environment variable, and parsers that
 * refuse invalid values with a one-line reason (commander prints it and exits).
 */
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { dataDirLayout, describeState, openSharedState, type DataDirLayout } from './dataDir.ts';
import { parseDuration } from './durations.ts';
import type { EventLog } from '../log/eventLog.ts';
import { openLog } from '../log/openLog.ts';
import { loadMetricDefinitions, type MetricDefinitions } from '../metrics/definitions.ts';
import type { ObjectStore } from '../storage/objectStore.ts';
import { VERSION_NAME_RULE, isVersionName } from '../versions/versionName.ts';
import { readVersionDefinitions } from '../versions/versionRecord.ts';

export interface CommonOptions {
  brokers?: string;
  /** A Java client properties file: TLS, SASL, bootstrap.servers, client.id (services/log/kafka/kafkaClientConfig.ts). */
  kafkaConfig?: string;
  /** Undefined: the job version's own copy when it has one, else ./metrics.yaml. */
  metrics?: string;
  dataDir: string;
  /** Where instances share state (services/config/dataDir.ts); undefined: the data dir. */
  stateUri?: string;
}

const DEFAULT_METRICS_FILE = './metrics.yaml';

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--brokers <host:port,...>', 'Kafka bootstrap servers; when absent the embedded log in the data dir is used').env(
        'KAFKA_BROKERS',
      ),
    )
    .addOption(
      new Option(
        '--kafka-config <file>',
        "Kafka client properties (Java format, as for Kafka's own tools' --command-config): security.protocol, sasl.*, ssl.*, bootstrap.servers, client.id",
      ).env('LK_KAFKA_CONFIG'),
    )
    .addOption(
      new Option('--metrics <file>', 'metric definitions (YAML or JSON)')
        .env('LK_METRICS')
        .default(undefined, `the job version's own copy, else ${DEFAULT_METRICS_FILE}`),
    )
    .addOption(
      new Option(
        '--data-dir <dir>',
        "this host's own files: the embedded log, scratch files, caches; and the shared state and the lake unless --state-uri and --lake-uri say otherwise",
      )
        .env('LK_DATA_DIR')
        .default('./data'),
    )
    .addOption(
      new Option(
        '--state-uri <uri>',
        'where instances on every host share state (checkpoints, savepoints, versions, batch views, status): a local folder or s3://bucket/prefix (S3 settings: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)',
      )
        .env('LK_STATE_URI')
        .default(undefined, 'the data dir'),
    );
}

export interface Context {
  options: CommonOptions;
  layout: DataDirLayout;
  /** The shared state (`--state-uri`, else the data dir), opened once. */
  state(): Promise<ObjectStore>;
  /** Where the shared state is, for messages. */
  stateLocation: string;
  openLog(clientId?: string): EventLog;
  /**
   * The metric definitions: --metrics when given (a job version then refuses a file that is not
   * its own, services/versions/versionRecord.ts); else the version's own copy, kept since it was
   * created; else ./metrics.yaml.
   */
  loadMetrics(version?: string): Promise<MetricDefinitions>;
}

export function context(options: CommonOptions): Context {
  const layout = dataDirLayout(options.dataDir);
  const stateLocation = describeState(options.stateUri, layout);
  let state: Promise<ObjectStore> | undefined;
  const openState = () => (state ??= openSharedState(options.stateUri, layout));
  return {
    options,
    layout,
    state: openState,
    stateLocation,
    openLog: (clientId) =>
      openLog({ brokers: options.brokers, kafkaConfig: options.kafkaConfig, embeddedDir: layout.log, ...(clientId ? { clientId } : {}) }),
    loadMetrics: async (version) => {
      if (options.metrics !== undefined) return loadMetricDefinitions(options.metrics);
      const own = version === undefined ? undefined : await readVersionDefinitions(await openState(), version);
      return own ?? loadMetricDefinitions(DEFAULT_METRICS_FILE);
    },
  };
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer.');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('must be a non-negative integer.');
  return n;
}

export function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('must be a number between 0 and 1.');
  return n;
}

export function duration(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new InvalidArgumentError('must be a duration like 500ms, 30s, 5m, 2h or 1d.');
  return ms;
}

export function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a TCP port (0-65535).');
  return n;
}

export function timestamp(value: string): number {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (Number.isNaN(ms)) throw new InvalidArgumentError('must be an ISO-8601 date-time or epoch milliseconds.');
  return ms;
}

export function versionName(value: string): string {
  if (!isVersionName(value)) throw new InvalidArgumentError(`must be ${VERSION_NAME_RULE}.`);
  return value;
}

export function topicName(value: string): string {
  if (!/^[A-Za-z0-9._-]{1,200}$/.test(value)) throw new InvalidArgumentError('must be a topic name (letters, digits, . _ -).');
  return value;
}

/** One flag of a command, declared as data: its environment variable, default and parser. */
export interface OptionSpec {
  flags: string;
  description: string;
  env?: string;
  default?: unknown;
  /** How the default is shown in --help (e.g. '1s' for 1000). */
  defaultText?: string;
  parse?: (value: string) => unknown;
  mandatory?: boolean;
  /** Another option (by its attribute name) this one cannot be used with. */
  conflicts?: string;
}

/** Adds a table of options to a command (commands declare their flags as data, not code). */
export function addOptions(cmd: Command, specs: readonly OptionSpec[]): Command {
  for (const s of specs) {
    const option = new Option(s.flags, s.description);
    if (s.env) option.env(s.env);
    if (s.default !== undefined) option.default(s.default, s.defaultText);
    if (s.parse) option.argParser(s.parse);
    if (s.mandatory) option.makeOptionMandatory();
    if (s.conflicts) option.conflicts(s.conflicts);
    cmd.addOption(option);
  }
  return cmd;
}

export function positiveDuration(value: string): number {
  const ms = duration(value);
  if (ms <= 0) throw new InvalidArgumentError('must be a positive duration.');
  return ms;
}

/**
 * Resolves on the first SIGTERM/SIGINT (graceful stop: the command finishes what it must);
 * a second signal exits at once.
 */
export function onShutdownSignal(onFirst: (signal: NodeJS.Signals) => void = () => undefined): AbortSignal {
  const controller = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    onFirst(signal);
    controller.abort();
  };
  process.on('SIGTERM', handler).on('SIGINT', handler);
  return controller.signal;
}

/** A promise that resolves when `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
}

/** What promotion checks (`lk promote` and `lk serve`'s `promote` mutation take the same flags). */
export interface PromotionOptions {
  promoteMaxLag: number;
  promoteMaxWatermarkLag: number;
}

export const PROMOTION_OPTIONS: OptionSpec[] = [
  {
    flags: '--promote-max-lag <records>',
    description: 'promotion: largest lag on any partition of a version that counts as caught up',
    env: 'LK_PROMOTE_MAX_LAG',
    default: 1000,
    parse: nonNegativeInt,
  },
  {
    flags: '--promote-max-watermark-lag <duration>',
    description: "promotion: how far a partition's watermark may trail the live version's",
    env: 'LK_PROMOTE_MAX_WATERMARK_LAG',
    default: 60_000,
    defaultText: '1m',
    parse: duration,
  },
];
