import { defineConfig } from 'vitest/config';

// `npm run test:outages`: the broker-outage scenario of issue 16 alone (several minutes: the
// broker is SIGKILLed three times, once for 3 minutes, while lk speed, lk batch serve and lk serve
// run). Not part of `npm test` (vitest.config.ts includes only *.spec.ts); it starts a broker of
// its own, so there is no global setup here. The seconds-long core of it is in `npm test`:
// test/e2e/brokerOutageDuringCheckpoint.spec.ts.
export default defineConfig({
  test: {
    include: ['test/outages/**/*.outage.ts'],
    // Child processes (`lk ...`) run the sources under test, never an older dist/ build.
    env: { LK_FROM_SOURCE: '1' },
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    testTimeout: 30 * 60_000,
    hookTimeout: 5 * 60_000,
  },
});
