/**
 * Session windows through the whole pipeline on the real broker, with the DuckDB batch engine:
 * the scenario and its oracle are in sessionsScenario.ts (sessionsPipeline.spark.ts runs the same
 * with the Spark engine).
 */
import { describeSessionsPipeline } from './sessionsScenario.ts';

describeSessionsPipeline({
  engine: 'duckdb',
  batchRunArgs: [],
  rerunCommand: 'npx vitest run test/e2e/sessionsPipeline.spec.ts',
});
