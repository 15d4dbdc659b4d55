/**
 * What the Spark engine does not compute yet is refused before Spark starts (no Spark install, no
 * staged run, nothing published), with a message naming --engine duckdb: a metric file without
 * an event: section over a lake holding records the lake writer wrote under an event: section's
 * mapping (DuckDB derives flat events from their raw text; the Spark engine does not yet). In
 * `npm test`: no Spark is needed to refuse.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../services/errors.ts';
import { parseMetricDefinitions } from '../../../../services/metrics/definitions.ts';
import { logger } from '../../../../services/observability/logger.ts';
import { tempDir } from '../../../../test/helpers.ts';
import { currentBatchRun, localStateOptions } from '../../../../test/sharedState.ts';
import { recomputeWithSpark } from '../sparkViews.ts';
import { lakeFromRecords } from './sparkTestKit.ts';

const quiet = logger.child({}, { level: 'warn' });

describe('the Spark engine refuses what it does not compute yet', () => {
  const dir = tempDir('lk-spark-refuse-');
  afterAll(() => dir.remove());

  it('a flat metric file over a lake with records of an event: mapping: a message naming --engine duckdb, nothing staged or published', async () => {
    const mapped = parseMetricDefinitions(
      `{"version": 1, "event": {"id": "meta.id", "time": "meta.at"}, "metrics": [{"name": "m", "key": "payload.user", "granularities": ["hour"], "allowedLateness": "1h"}]}`,
      'mapped.json',
    );
    const line = (i: number) => `{"meta": {"id": "e${i}", "at": "2026-01-01T10:00:00Z"}, "payload": {"user": "u${i % 3}"}}`;
    const lake = await lakeFromRecords(
      dir.path,
      'events',
      1,
      Array.from({ length: 5 }, (_, i) => ({ key: `e${i}`, line: line(i) })),
      quiet,
      mapped.event,
    );
    const flat = parseMetricDefinitions(
      `{"version": 1, "metrics": [{"name": "m", "key": "type", "granularities": ["hour"], "allowedLateness": "1h"}]}`,
      'flat.json',
    );
    const state = localStateOptions(dir.path);
    const run = recomputeWithSpark({
      lake,
      ...state,
      version: 'v1',
      metrics: flat,
      homePartitions: 1,
      logger: quiet,
      spark: { master: 'local[1]' },
    });
    await expect(run).rejects.toThrow(ConfigError);
    await expect(run).rejects.toThrow(/holds 5 record\(s\) written under an event: section's mapping.*--engine duckdb/);
    expect(await currentBatchRun(dir.path, 'v1')).toBeUndefined();
    expect(existsSync(join(state.scratchDir, 'views', 'v1'))).toBe(false);
  });
});
