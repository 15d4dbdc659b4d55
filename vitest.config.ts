import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{cli,services,streaming,batch,serving,test}/**/*.spec.ts'],
    globalSetup: ['./test/global-setup.ts'],
    // Child processes (`lk ...`) run the sources under test, never an older dist/ build.
    // `lk serve` answers on every core by default (--workers); the suite's many servers each run
    // one process (the test of several workers asks for them), so that a CI machine's two cores
    // are not shared by twice as many serving processes as tests.
    env: { LK_FROM_SOURCE: '1', LK_SERVE_WORKERS: '1' },
    // kafkajs and DuckDB's native binding are happiest in child processes.
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Print which test is slow; no timed assertions anywhere.
    slowTestThreshold: 10_000,
  },
});
