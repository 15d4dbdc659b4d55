/** Test harness for the speed layer: real broker, real `lk speed` child processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventLog } from '../../../services/log/eventLog.ts';
import { KafkaLog } from '../../../services/log/kafka/kafkaLog.ts';
import { eventTopicSpecs } from '../../../services/log/topics.ts';
import { viewRowSchema, type ViewRow } from '../../../services/views/viewRow.ts';
import { TEST_METRICS_YAML, rowId, type OracleResult } from './oracle.ts';

export const LK_BIN = fileURLToPath(new URL('../../../bin/lk.js', import.meta.url));

export function kafkaLog(brokers: string, clientId = 'speed-test'): KafkaLog {
  return new KafkaLog({ brokers: brokers.split(','), clientId });
}

export function writeTestMetrics(dir: string): string {
  const path = join(dir, 'metrics.yaml');
  writeFileSync(path, TEST_METRICS_YAML);
  return path;
}

export async function createEventsTopic(log: EventLog, topic: string, partitions = 6): Promise<void> {
  await log.createTopics(eventTopicSpecs(topic, partitions));
}

/** Produces lines in order with key = event id (so per-partition order = line order). */
export async function produceLines(log: EventLog, topic: string, lines: readonly string[], chunk = 5000, pauseMs = 0): Promise<void> {
  const producer = await log.producer();
  try {
    for (let i = 0; i < lines.length; i += chunk) {
      const records = lines.slice(i, i + chunk).map((line) => ({ key: (JSON.parse(line) as { id: string }).id, value: line }));
      await producer.send(topic, records);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  } finally {
    await producer.close();
  }
}

export interface SpeedProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

/** Every child still running: killed by `killAllSpeed()` so that a failed test leaves none behind. */
const running = new Set<ChildProcess>();

export function killAllSpeed(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

export function spawnSpeed(args: string[], env: Record<string, string>): SpeedProcess {
  const child = spawn(process.execPath, [LK_BIN, 'speed', ...args], {
    env: { ...process.env, LK_LOG_LEVEL: 'warn', LK_NO_PROGRESS: '1', ...env },
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

/** True once the group's committed offsets reach the end of every partition. */
export async function caughtUp(log: EventLog, group: string, topic: string): Promise<boolean> {
  const [ends, committed] = await Promise.all([log.endOffsets(topic), log.committedOffsets(group, topic)]);
  return ends.every((end, p) => (committed[p] ?? 0) >= end);
}

/** Reads a view topic to its end (read_committed) and keeps the latest row per record key. */
export async function readView(log: EventLog, topic: string): Promise<Map<string, ViewRow>> {
  const ends = await log.endOffsets(topic);
  const rows = new Map<string, ViewRow>();
  const positions = ends.map(() => 0);
  const done = () => positions.every((pos, p) => pos >= ends[p]!);
  if (done()) return rows;
  const consumer = log.consumer({ groupId: `view-reader-${Date.now()}-${Math.random()}`, fromBeginning: true });
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => (resolveDone = r));
  await consumer.subscribe([topic]);
  await consumer.run({
    eachBatch: async (batch) => {
      for (const r of batch.records) {
        const row = viewRowSchema.parse(JSON.parse(r.value!.toString('utf8')));
        rows.set(rowId(row), row);
      }
      positions[batch.partition] = Math.max(positions[batch.partition]!, batch.nextOffset);
      if (done()) resolveDone();
    },
    onProgress: (p) => {
      positions[p.partition] = Math.max(positions[p.partition]!, p.nextOffset);
      if (done()) resolveDone();
    },
  });
  await finished;
  await consumer.stop();
  return rows;
}

/** Differences between the view and the oracle (empty = exact). */
export function compareWithOracle(view: Map<string, ViewRow>, oracle: OracleResult): string[] {
  const problems: string[] = [];
  for (const [id, want] of oracle.rows) {
    const got = view.get(id);
    if (!got) {
      problems.push(`missing row ${id} (want count ${want.count})`);
      continue;
    }
    const distinct = got.distinctSketch === null ? null : estimateOf(got.distinctSketch);
    const same =
      got.count === want.count && got.sum === want.sum && got.min === want.min && got.max === want.max && distinct === want.distinct;
    if (!same) {
      problems.push(
        `row ${id}: got count=${got.count} sum=${got.sum} min=${got.min} max=${got.max} distinct=${distinct}, want count=${want.count} sum=${want.sum} min=${want.min} max=${want.max} distinct=${want.distinct}`,
      );
    }
    if (want.closedThrough !== undefined && got.throughOffset > want.closedThrough) {
      problems.push(`row ${id}: emitted with throughOffset ${got.throughOffset} after its window closed at ${want.closedThrough}`);
    }
  }
  for (const id of view.keys()) if (!oracle.rows.has(id)) problems.push(`unexpected row ${id}`);
  return problems;
}

import { HyperLogLog } from '../../../services/metrics/hll.ts';
function estimateOf(base64: string): number {
  return HyperLogLog.fromBase64(base64).estimate();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
