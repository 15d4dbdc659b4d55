/**
 * What the Spark engine does not compute yet is refused before anything runs (no Spark install,
 * no staged run, nothing published), with a message naming --engine duckdb: a metric file with
 * an event: section (the Spark engine reads the flat events the lake writer typed) or session
 * windows. In `npm test`: no Spark is needed to refuse.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../services/errors.ts';
import { parseMetricDefinitions } from '../../../../services/metrics/definitions.ts';
import { logger } from '../../../../services/observability/logger.ts';
import { resolveLake } from '../../../../services/lake/lakeLocation.ts';
import { dataDirLayout } from '../../../../services/config/dataDir.ts';
import { tempDir } from '../../../../test/helpers.ts';
import { currentBatchRun, localStateOptions } from '../../../../test/sharedState.ts';
import { recomputeWithSpark } from '../sparkViews.ts';

const quiet = logger.child({}, { level: 'warn' });

/** What is refused, the metric file, and what the message must say. */
const FILES: [string, string, RegExp][] = [
  [
    'an event: section',
    `{"version": 1, "event": {"id": "meta.id", "time": "meta.at"}, "metrics": [{"name": "m", "key": "payload.user", "granularities": ["hour"], "allowedLateness": "1h"}]}`,
    /without an event: section.*--engine duckdb/,
  ],
  [
    'session windows',
    `{"version": 1, "metrics": [{"name": "m", "key": "user", "session": {"gap": "30m"}, "allowedLateness": "1h"}]}`,
    /uses session windows.*--engine duckdb/,
  ],
];

describe('the Spark engine refuses what it does not compute yet', () => {
  const dir = tempDir('lk-spark-refuse-');
  afterAll(() => dir.remove());

  it.each(FILES)('a metric file with %s: a message naming --engine duckdb, nothing staged or published', async (_what, file, message) => {
    const metrics = parseMetricDefinitions(file, 'refused.json');
    const lake = await resolveLake(undefined, dataDirLayout(dir.path), 'events');
    const state = localStateOptions(dir.path);
    const run = recomputeWithSpark({
      lake,
      ...state,
      version: 'v1',
      metrics,
      homePartitions: 1,
      logger: quiet,
      spark: { master: 'local[1]' },
    });
    await expect(run).rejects.toThrow(ConfigError);
    await expect(run).rejects.toThrow(message);
    expect(await currentBatchRun(dir.path, 'v1')).toBeUndefined();
    expect(existsSync(join(state.scratchDir, 'views', 'v1'))).toBe(false);
  });
});
