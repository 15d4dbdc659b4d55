/* eslint-disable @typescript-eslint/no-explicit-any -- status files and GraphQL answers are untyped JSON here. */
/**
 * The whole platform for end-to-end tests, run the way a user runs it: the real `lk` commands as
 * child processes (`lk speed`, `lk batch run`, `lk produce`) on the real broker, serving in
 * process over real HTTP, and helpers that wait for each layer to have caught up (no timed
 * assertions: a deadline only bounds the wait).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { EventLog } from '../../services/log/eventLog.ts';
import { KafkaLog, type KafkaLogOptions } from '../../services/log/kafka/kafkaLog.ts';
import { parseBrokers } from '../../services/log/openLog.ts';
import { speedViewTopic } from '../../services/views/viewRow.ts';
import { LocalObjectStore } from '../../services/storage/localObjectStore.ts';
import type { ObjectStore } from '../../services/storage/objectStore.ts';
import { openObjectStore } from '../../services/storage/storageLocation.ts';
import { readSpeedStatuses } from '../../services/status/speedStatus.ts';
import { dataDirLayout } from '../../services/config/dataDir.ts';
import { loadMetricDefinitions } from '../../services/metrics/definitions.ts';
import { parseServeConfig, type ServeConfigInput } from '../../serving/config.ts';
import { startServe } from '../../serving/http/server.ts';
import { pino } from 'pino';
import { gqlData } from '../../serving/__tests__/fixtures/testServer.ts';
import { LK_BIN } from '../cli.ts';
import { eventually, testBrokers } from '../helpers.ts';

export interface LkProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Every child still running, so that a failing test leaves none behind (`killAll`). */
const running = new Set<ChildProcess>();

export function killAll(): void {
  for (const c of running) c.kill('SIGKILL');
  running.clear();
}

export class Pipeline {
  readonly log: EventLog;
  /** The brokers the `lk` commands are given (KAFKA_BROKERS): the test's reader's. */
  readonly brokers: string;
  private stateStore: Promise<ObjectStore> | undefined;

  constructor(
    readonly dataDir: string,
    readonly metricsFile: string,
    readonly topic: string,
    readonly version: string,
    private readonly env: Record<string, string> = {},
    /** The test's own reader of the log: the suite's broker unless given (a secured broker, say). */
    kafka: KafkaLogOptions = { brokers: parseBrokers(testBrokers()) },
  ) {
    this.log = new KafkaLog({ clientId: 'lk-e2e', ...kafka });
    this.brokers = kafka.brokers.join(',');
  }

  /** The options every command takes. */
  common(): string[] {
    return ['--data-dir', this.dataDir, '--metrics', this.metricsFile];
  }

  spawn(args: string[], env: Record<string, string> = {}): LkProcess {
    const child = spawn(process.execPath, [LK_BIN, ...args], {
      env: { ...process.env, KAFKA_BROKERS: this.brokers, LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1', ...this.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    running.add(child);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      }),
    );
    return { child, exited, output: () => out };
  }

  /** Runs an `lk` command to its end; throws with its output unless it exits 0. */
  async run(args: string[], env: Record<string, string> = {}): Promise<string> {
    const p = this.spawn(args, env);
    const { code, signal } = await p.exited;
    if (code !== 0) throw new Error(`lk ${args.join(' ')} exited with ${code ?? signal}:\n${p.output().slice(-3000)}`);
    return p.output();
  }

  startSpeed(instanceId = 'a', extra: string[] = [], env: Record<string, string> = {}): LkProcess {
    return this.spawn(
      [
        'speed',
        '--topic',
        this.topic,
        '--version',
        this.version,
        '--checkpoint-interval',
        '300ms',
        '--instance-id',
        instanceId,
        ...extra,
        ...this.common(),
      ],
      env,
    );
  }

  async stop(p: LkProcess | undefined): Promise<void> {
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGTERM');
    await p.exited;
  }

  /** `lk batch run` of the pipeline's topic and version; `extra` adds flags (e.g. `--engine spark`). */
  batchRun(env: Record<string, string> = {}, extra: string[] = []): Promise<string> {
    return this.run(['batch', 'run', '--topic', this.topic, '--version', this.version, ...extra, ...this.common()], env);
  }

  /** The shared state the commands use: LK_STATE_URI of the pipeline's environment (with its S3 settings), else the data dir. */
  state(): Promise<ObjectStore> {
    const uri = this.env.LK_STATE_URI;
    this.stateStore ??= uri
      ? openObjectStore(uri, 'LK_STATE_URI', { ...process.env, ...this.env })
      : Promise.resolve(new LocalObjectStore(this.dataDir));
    return this.stateStore;
  }

  /** The speed instances' status files, merged per partition (the most recent file speaks). */
  async speedStatus(): Promise<{ partitions: Map<number, any>; files: any[] }> {
    const files = (await readSpeedStatuses(await this.state(), this.version)).flatMap((r) => (r.status ? [r.status as any] : []));
    const partitions = new Map<number, any>();
    const at = (f: any) => (typeof f.updatedAt === 'number' ? f.updatedAt : Date.parse(f.updatedAt));
    for (const f of files.sort((a, b) => at(a) - at(b))) for (const p of f.partitions) partitions.set(p.partition, p);
    return { partitions, files };
  }

  /** Waits until the speed job has committed every partition's end offset (as the log has it now). */
  async speedCaughtUp(what = 'speed job caught up', timeoutMs = 120_000): Promise<void> {
    const ends = await this.log.endOffsets(this.topic);
    await eventually(
      async () => {
        const { partitions } = await this.speedStatus();
        return ends.every((end, p) => end === 0 || partitions.get(p)?.committedOffset === end) ? true : undefined;
      },
      what,
      timeoutMs,
    );
  }

  /** Waits until serving at `url` has read every committed row of the speed view topic. */
  async servingCaughtUp(url: string): Promise<void> {
    const viewEnds = await this.log.endOffsets(speedViewTopic(this.version));
    await eventually(async () => {
      const d = await gqlData<any>(
        url,
        `{ pipeline(version: "${this.version}") { serving { speedView { partitions { partition nextOffset } } } } }`,
      );
      const parts: { partition: number; nextOffset: number }[] = d.pipeline.serving.speedView.partitions;
      return viewEnds.every((end, p) => (parts.find((x) => x.partition === p)?.nextOffset ?? 0) >= end) ? true : undefined;
    }, 'serving caught up with the speed view');
  }

  /** Waits until serving has installed the version's current batch run. */
  async batchInstalled(url: string, runId: string): Promise<void> {
    await eventually(async () => {
      const d = await gqlData<any>(url, `{ pipeline(version: "${this.version}") { serving { batchView { runId } } } }`);
      return d.pipeline.serving.batchView?.runId === runId ? true : undefined;
    }, `batch run ${runId} installed`);
  }

  async close(): Promise<void> {
    await this.log.close();
  }
}

/** A version name unique to one test run (lowercase, at most 32 characters). */
export function testVersion(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`.toLowerCase().slice(0, 32);
}

export interface Serving {
  url: string;
  close(): Promise<void>;
}

/** `lk serve` in process (real HTTP, real broker) over the pipeline's data dir and metric file. */
export async function startServing(p: Pipeline, overrides: Partial<ServeConfigInput> = {}): Promise<Serving> {
  const layout = dataDirLayout(p.dataDir);
  const config = parseServeConfig(
    {
      port: 0,
      dataDir: layout.root,
      batchPollMs: 100,
      defaultVersion: p.version,
      // The tests compare whole answers with oracles from one address: no per-client limits on work.
      maxCost: 100_000_000,
      maxAliases: 10_000,
      maxRootFields: 10_000,
      rateLimit: 0,
      ...overrides,
    },
    loadMetricDefinitions(p.metricsFile),
  );
  const log = new KafkaLog({ brokers: parseBrokers(testBrokers()), clientId: 'lk-e2e-serve' });
  const handle = await startServe({ config, log, logger: pino({ level: process.env.LK_LOG_LEVEL ?? 'warn' }) });
  return {
    url: handle.url,
    async close() {
      await handle.close();
      await log.close();
    },
  };
}
