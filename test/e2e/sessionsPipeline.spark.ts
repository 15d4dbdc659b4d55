/**
 * Session windows through the whole pipeline on the real broker, with the Spark batch engine: the
 * same scenario and oracle as sessionsPipeline.spec.ts (sessionsScenario.ts), so a session view
 * Spark computed is served by GraphQL `sessions` exactly: from the Spark run alone (every session
 * BATCH, deduplicated over the whole lake), and merged with the speed view's newer partial (MIXED).
 */
import { describeSessionsPipeline } from './sessionsScenario.ts';

describeSessionsPipeline({
  engine: 'spark',
  batchRunArgs: ['--engine', 'spark', '--spark-master', 'local[2]'],
  rerunCommand: 'npx vitest run --config vitest.spark.config.ts test/e2e/sessionsPipeline.spark.ts',
});
