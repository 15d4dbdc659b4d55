/** Shared test helpers: the broker under test, unique names, temporary data dirs. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject } from 'vitest';
import { randomBytes } from 'node:crypto';

/** Bootstrap servers of the real Kafka broker started by test/global-setup.ts (or KAFKA_BROKERS). */
export function testBrokers(): string {
  const brokers = process.env.KAFKA_BROKERS ?? inject('kafkaBrokers');
  if (!brokers) throw new Error('no Kafka broker: the global setup did not provide one');
  return brokers;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export function tempDir(prefix = 'lk-test-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Polls `check` until it returns a value other than undefined (no timed assertions: a deadline only bounds the wait). */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// freePort lives in ports.ts, which does not import vitest, so that benchmarks can use it too.
export { freePort } from './ports.ts';
