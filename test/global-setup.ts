// Vitest globalSetup: gives every test a REAL Kafka broker, never a mock and never a skip.
//
// - KAFKA_BROKERS set  -> use that broker; fail fast if it is unreachable.
// - otherwise          -> start a throwaway single-node KRaft broker with scripts/kafka.mjs
//                         on 127.0.0.1:${LK_TEST_KAFKA_PORT:-19092} (controller port + 1),
//                         state in .lk/kafka-test (LK_TEST_KAFKA_HOME), data wiped first,
//                         stopped again in teardown.
//
// Tests read the address with `inject('kafkaBrokers')` (from 'vitest') or process.env.KAFKA_BROKERS.
//
// Several test runs on one machine may share the test broker: each run holds a
// lease file (<home>/leases/<pid>); the broker is wiped only when nobody runs it
// and stopped only by the last run that leaves.

import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
// brings 'vitest' into the program so the ProvidedContext augmentation below resolves
import type {} from 'vitest';
import type { TestProject } from 'vitest/node';
import { KafkaScriptError, kafkaStatus, startKafka, stopKafka } from '../scripts/kafka.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** 'host:port[,host:port]' of the broker under test (same value as process.env.KAFKA_BROKERS). */
    kafkaBrokers: string;
  }
}

const { Kafka, logLevel } = kafkajs;
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REACHABLE_TIMEOUT_MS = 15_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lease files of test runs that are still alive (stale ones are removed). */
function liveLeases(dir: string): number[] {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const live: number[] = [];
  for (const name of names) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) live.push(pid);
    else rmSync(join(dir, name), { force: true });
  }
  return live;
}

async function assertReachable(brokers: string): Promise<void> {
  const kafka = new Kafka({
    clientId: 'lk-test-setup',
    brokers: brokers
      .split(',')
      .map((b) => b.trim())
      .filter(Boolean),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 5000,
    requestTimeout: 10_000,
    retry: { retries: 3, initialRetryTime: 300, maxRetryTime: 3000 },
  });
  const admin = kafka.admin();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        await admin.connect();
        await admin.listTopics();
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${REACHABLE_TIMEOUT_MS / 1000}s`)), REACHABLE_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    throw new Error(
      `Kafka broker at KAFKA_BROKERS=${brokers} is unreachable (${(e as Error).message}). ` +
        'Start one (`npm run kafka -- start`, then KAFKA_BROKERS=127.0.0.1:9092) or unset KAFKA_BROKERS so the tests start their own.',
    );
  } finally {
    clearTimeout(timer);
    await admin.disconnect().catch(() => {});
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const fromEnv = process.env.KAFKA_BROKERS?.trim();
  if (fromEnv) {
    await assertReachable(fromEnv);
    project.provide('kafkaBrokers', fromEnv);
    return async () => {};
  }

  const port = Number(process.env.LK_TEST_KAFKA_PORT ?? 19092);
  const home = resolve(process.env.LK_TEST_KAFKA_HOME ?? join(REPO_ROOT, '.lk', 'kafka-test'));
  const opts = { port, home };
  const leases = join(home, 'leases');
  const lease = join(leases, String(process.pid));
  mkdirSync(leases, { recursive: true });
  writeFileSync(lease, `${new Date().toISOString()}\n`);

  let brokers: string;
  try {
    // A broker nobody uses any more (left over by a killed run): restart it clean.
    const status = await kafkaStatus(opts);
    const others = liveLeases(leases).filter((pid) => pid !== process.pid);
    if (others.length === 0 && (status.running || status.pid)) await stopKafka({ ...opts, quiet: true });
    // Starts a fresh broker (data wiped under the start lock), or shares the one
    // another live test run on this machine started.
    const started = await startKafka({ ...opts, fresh: true });
    brokers = started.brokers;
    if (started.alreadyRunning) {
      process.stderr.write(`[kafka] sharing the test broker at ${brokers} with another test run\n`);
    }
  } catch (e) {
    rmSync(lease, { force: true });
    const message = e instanceof Error ? e.message : String(e);
    const details = e instanceof KafkaScriptError && e.details ? `\n${e.details}` : '';
    // never skip: tests need a real broker
    throw new Error(`Kafka for tests could not be started: ${message}${details}`);
  }

  process.env.KAFKA_BROKERS = brokers;
  project.provide('kafkaBrokers', brokers);

  return async () => {
    rmSync(lease, { force: true });
    // checked under the start/stop lock, so a run that is just starting keeps its broker
    await stopKafka({ ...opts, quiet: true, onlyIf: () => liveLeases(leases).length === 0 });
    if (process.env.KAFKA_BROKERS === brokers) delete process.env.KAFKA_BROKERS;
  };
}
