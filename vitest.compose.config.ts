import { defineConfig } from 'vitest/config';

// `npm run test:compose` (scripts/compose-ci.sh): the docker-compose stack test alone. Not part of
// `npm test` (vitest.config.ts includes only *.spec.ts); it needs dockerd and the locally built
// images, and brings up its own Kafka in a container, so there is no global setup here.
export default defineConfig({
  test: {
    include: ['test/compose/**/*.compose.ts'],
    // The host-side `lk generate` that computes the expected events runs the sources.
    env: { LK_FROM_SOURCE: '1' },
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    testTimeout: 20 * 60_000,
    hookTimeout: 10 * 60_000,
  },
});
