/**
 * delta-rs, an engine that is not ours, on the platform's lake: reads a table (at its latest or an
 * earlier version), appends rows, compacts and checkpoints it with its own code
 * (test/deltaRs.py), in a Python venv that scripts/deltars.mjs creates once in a cache.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDeltaRs } from '../scripts/deltars.mjs';

const SCRIPT = join(import.meta.dirname, 'deltaRs.py');

export interface DeltaRsRead {
  version: number;
  rows: number;
  /** Distinct event ids, sorted. */
  ids: string[];
  /** `partition:offset` of every row, sorted (repeats kept). */
  keys: string[];
  types: Record<string, number>;
  nullEventTimes: number;
}

/** The table's URI as delta-rs takes it: a local folder, or `s3://bucket/prefix/topic`. */
async function deltaRs(args: string[], env: Record<string, string> = {}): Promise<unknown> {
  const { python } = ensureDeltaRs();
  return new Promise((resolve, reject) => {
    const child = spawn(python, [SCRIPT, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`delta-rs ${args[0]} ${args[1]} failed (exit ${code}):\n${err.slice(-3000)}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1)!));
    });
  });
}

export function deltaRsRead(uri: string, env: Record<string, string> = {}, version?: number): Promise<DeltaRsRead> {
  return deltaRs(['read', uri, ...(version !== undefined ? [String(version)] : [])], env) as Promise<DeltaRsRead>;
}

export interface AppendRow {
  id: string;
  type: string;
  ts: number;
  partition: number;
  offset: number;
  raw: string;
  idHash: number;
}

/** Appends `rows` with delta-rs's write_deltalake; returns the version it committed. */
export async function deltaRsAppend(uri: string, rows: AppendRow[], scratch: string, env: Record<string, string> = {}): Promise<number> {
  const file = join(scratch, `append-${process.pid}-${Date.now()}.json`);
  writeFileSync(file, JSON.stringify(rows));
  return ((await deltaRs(['append', uri, file], env)) as { version: number }).version;
}

/** delta-rs's own compaction (OPTIMIZE: remove + add with dataChange false). */
export async function deltaRsOptimize(uri: string, env: Record<string, string> = {}): Promise<number> {
  return ((await deltaRs(['optimize', uri], env)) as { version: number }).version;
}

export async function deltaRsCheckpoint(uri: string, env: Record<string, string> = {}): Promise<void> {
  await deltaRs(['checkpoint', uri], env);
}
