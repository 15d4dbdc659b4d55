import { defineConfig } from 'vitest/config';

// `npm run test:spark`: the Spark engine's tests (batch/engines/spark/__tests__/*.spark.ts and
// test/e2e/*.spark.ts). Not part of `npm test` (vitest.config.ts includes only *.spec.ts): the
// first run installs Spark into a cache (about a minute, scripts/spark.mjs), and every Spark job
// starts a JVM (10-40 s on two cores). The pipeline tests use the suite's Kafka broker.
export default defineConfig({
  test: {
    include: ['{batch,test}/**/*.spark.ts'],
    globalSetup: ['./test/global-setup.ts'],
    env: { LK_FROM_SOURCE: '1', LK_SERVE_WORKERS: '1' },
    pool: 'forks',
    // One Spark JVM at a time (the machine has two cores), each test file in a process of its own:
    // kafkajs must be loaded after its load-time patches (services/log/kafka/kafkajsPatches.ts),
    // which a second file importing the Kafka adapter in the same process cannot do.
    poolOptions: { forks: { minForks: 1, maxForks: 1 } },
    testTimeout: 20 * 60_000,
    hookTimeout: 10 * 60_000,
    slowTestThreshold: 60_000,
  },
});
