/* eslint-disable @typescript-eslint/no-explicit-any -- GraphQL answers are untyped JSON here; the comparisons with the oracle check their content. */
/**
 * Serving's answers over HTTP held to an oracle computed from the input alone, for every metric
 * and granularity of the suite's metric file: each key's series (window starts, counts, distinct
 * counts, sums), the top keys, and the total (count, distinct count from the merged sketches).
 * Used by the pipeline tests of the Spark engine (sparkPipeline.spark.ts, sparkOnS3.spark.ts).
 */
import { expect } from 'vitest';
import type { Granularity } from '../../services/metrics/definitions.ts';
import { compileMetric } from '../../services/metrics/compile.ts';
import { hllOf, oracleWindows, type LoggedEvent } from '../../serving/__tests__/fixtures/viewFixtures.ts';
import { METRICS, gqlData } from '../../serving/__tests__/fixtures/testServer.ts';

export async function checkServingAgainstOracle(
  url: string,
  input: readonly LoggedEvent[],
  expectSource: 'BATCH' | 'SPEED' | undefined,
  stage: string,
): Promise<void> {
  const times = input.map((e) => e.ts);
  const from = new Date(Math.floor(Math.min(...times) / 86_400_000) * 86_400_000).toISOString();
  const to = new Date(Math.ceil((Math.max(...times) + 1) / 86_400_000) * 86_400_000 + 86_400_000).toISOString();
  for (const def of METRICS.metrics) {
    const c = compileMetric(def);
    const keys = [...new Set(input.filter((e) => c.matches(e.values)).map((e) => c.keyOf(e.values)!))].sort();
    for (const g of def.granularities as Granularity[]) {
      const where = `${stage} ${def.name}/${g}`;
      const q = `{ ${keys.map((k, i) => `k${i}: series(metric: "${def.name}", key: "${k}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}") { windowStart count sum distinct source }`).join(' ')}
        top: topKeys(metric: "${def.name}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}", limit: 1000) { key count }
        total(metric: "${def.name}", granularity: ${g.toUpperCase()}, from: "${from}", to: "${to}") { count distinct sum } }`;
      const d = await gqlData<any>(url, q);
      const ranking: { key: string; count: number }[] = [];
      keys.forEach((key, i) => {
        const oracle = oracleWindows(input, def, g, key);
        const got = d[`k${i}`] as any[];
        expect(
          got.map((w) => [Date.parse(w.windowStart), w.count, w.distinct]),
          `${where} ${key}`,
        ).toEqual([...oracle].sort((a, b) => a[0] - b[0]).map(([s, w]) => [s, w.count, w.distinct]));
        for (const w of got) {
          const o = oracle.get(Date.parse(w.windowStart))!;
          if (o.sum === null) expect(w.sum).toBeNull();
          else expect(w.sum, where).toBeCloseTo(o.sum, 6);
          if (expectSource !== undefined) expect(w.source, where).toBe(expectSource);
        }
        ranking.push({ key, count: [...oracle.values()].reduce((a, w) => a + w.count, 0) });
      });
      ranking.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
      expect(d.top, where).toEqual(ranking);
      const all = oracleWindows(input, def, g, null);
      expect(d.total.count, where).toBe([...all.values()].reduce((a, w) => a + w.count, 0));
      if (def.distinct) {
        const users = new Set<string>();
        for (const w of all.values()) for (const u of w.users) users.add(u);
        expect(d.total.distinct, where).toBe(hllOf(users));
      }
    }
  }
}
