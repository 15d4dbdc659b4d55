/** Shared pieces of the benchmarks: the broker, the machine line, peak memory, and a table. */
import { spawn } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { generateEventLines, type GeneratorOptions } from '../services/ingest/generator.ts';
import type { RawLine } from '../services/ingest/lineReader.ts';
import { startKafka } from '../scripts/kafka.mjs';

/** KAFKA_BROKERS, or the project's local broker (started if needed, left running for the next bench). */
export async function benchBrokers(): Promise<string> {
  if (process.env.KAFKA_BROKERS) return process.env.KAFKA_BROKERS;
  const started = await startKafka({ quiet: false });
  return started.brokers;
}

export function machineLine(): string {
  const c = cpus();
  return `machine: ${c.length} cores (${c[0]?.model.trim() ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

/** Samples RSS every 50 ms; `peak()` returns the highest value seen in bytes. */
export function trackPeakRss(): { peak(): number; stop(): void } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 50);
  timer.unref();
  return {
    peak: () => Math.max(peak, process.memoryUsage.rss()),
    stop: () => clearInterval(timer),
  };
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { value, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

export function printTable(rows: [string, string][]): void {
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
}

export const fmtRate = (n: number): string => `${Math.round(n).toLocaleString('en-US')} events/s`;
export const fmtMiB = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;

/**
 * Runs `benchFile --worker ...args` in a child process of its own (so that its peak RSS and its
 * cores are its own) and returns the JSON of the last line it prints. LK_BENCH_CPU_PROF=DIR
 * writes a V8 CPU profile of the worker (and of its threads) into DIR.
 */
export function runBenchWorker<T>(benchFile: string, args: string[], what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const runTs = fileURLToPath(new URL('../bin/run-ts.js', import.meta.url));
    const prof = process.env.LK_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LK_BENCH_CPU_PROF}`] : [];
    const child = spawn(process.execPath, [...prof, runTs, benchFile, '--worker', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, LK_LOG_LEVEL: process.env.LK_LOG_LEVEL ?? 'warn' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').at(-1);
      if (code !== 0 || !line) reject(new Error(`${what} exited with ${code}: ${out}`));
      else resolve(JSON.parse(line) as T);
    });
  });
}

/**
 * The benchmarks' foreign shape (a metric file's `event:` section and how it reads the generated
 * events): the same information as the flat events, nested, the id and the type under `meta`, the
 * time in epoch seconds with milliseconds as a fraction. Runs with it measure what paths and time
 * formats cost beside the flat events (bench:ingest, bench:speed).
 */
export const NESTED_EVENT_SECTION = 'event: { id: meta.eventId, time: meta.occurredAt, timeFormat: epoch-s, type: meta.kind }';

/** A generated flat event line in the nested shape. */
export function nestedEventLine(flat: string): string {
  const e = JSON.parse(flat) as {
    id: string;
    type: string;
    ts: string;
    campaign_id: string;
    ad_id: string;
    user_id: string;
    cost?: number;
  };
  return JSON.stringify({
    meta: { eventId: e.id, occurredAt: Date.parse(e.ts) / 1000, kind: e.type, source: 'bench' },
    ad: { campaign: e.campaign_id, id: e.ad_id },
    user: { id: e.user_id },
    ...(e.cost !== undefined ? { cost: e.cost } : {}),
  });
}

/** A flat metric file for the nested shape: the event: section, and the fields as paths. */
export function nestedMetrics(flatYaml: string): string {
  const paths: Record<string, string> = { type: 'meta.kind', campaign_id: 'ad.campaign', ad_id: 'ad.id', user_id: 'user.id' };
  return flatYaml
    .replace(/^version: 1$/m, `version: 1\n${NESTED_EVENT_SECTION}`)
    .replace(/\b(filter: \{ )(type)(:)/g, '$1meta.kind$3')
    .replace(/\b(key|distinct): (campaign_id|ad_id|user_id)$/gm, (_, k: string, f: string) => `${k}: ${paths[f]}`);
}

/**
 * Exactly `count` generated events as raw lines for ingest (duplicates included): an event time
 * rate of 1,000/s from 2026-01-05, 1 % late by 1 to 30 minutes, and whatever `options` adds;
 * with `nested`, in the nested shape (nestedEventLine).
 */
export async function* benchEvents(
  count: number,
  options: Partial<GeneratorOptions> & { seed: number; nested?: boolean },
): AsyncGenerator<RawLine> {
  let n = 0;
  for (const line of generateEventLines({
    count: Math.ceil(count / 1.05) + 1000,
    startTime: Date.UTC(2026, 0, 5),
    eventsPerSecond: 1000,
    lateRate: 0.01,
    lateMinMs: 60_000,
    lateMaxMs: 1_800_000,
    ...options,
  })) {
    if (n >= count) return;
    yield { number: ++n, bytes: Buffer.from(options.nested ? nestedEventLine(line) : line) };
  }
}
