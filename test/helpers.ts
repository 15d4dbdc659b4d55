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

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, and whose successor was too (a Kafka broker
 * of a test's own takes `port` and its controller `port + 1`). Tests that start servers of their
 * own take their ports here instead of fixing them, so that test files running side by side, and
 * several checkouts testing on one machine, never collide.
 */
export async function freePort(consecutive = 1): Promise<number> {
  const { createServer } = await import('node:net');
  const listen = (port: number) =>
    new Promise<import('node:net').Server | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  for (let attempt = 0; attempt < 200; attempt++) {
    // A random start in the range Linux never hands out as an ephemeral port (32768-60999).
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    const servers: import('node:net').Server[] = [];
    let ok = true;
    for (let i = 0; i < consecutive && ok; i++) {
      const s = await listen(base + i);
      if (s) servers.push(s);
      else ok = false;
    }
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    if (ok) return base;
  }
  throw new Error('no free TCP port found on 127.0.0.1');
}
