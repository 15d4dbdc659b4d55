/**
 * The example queries the demo prints, as curl commands that work as printed (the same queries
 * the README shows and the GraphQL explorer preloads), over the demo's data: campaigns c0..c19
 * with ads c<n>-a<m>, events around now; and the rides of the foreign-shaped topic (ridesTopic.ts).
 */
function hour(ms: number): string {
  return new Date(Math.floor(ms / 3_600_000) * 3_600_000).toISOString().replace('.000Z', 'Z');
}

function curl(url: string, query: string): string {
  const body = JSON.stringify({ query: query.replace(/\s+/g, ' ').trim() });
  return `curl -s ${url}/graphql -H 'content-type: application/json' -d '${body.replaceAll("'", "'\\''")}'`;
}

export function exampleQueries(url: string, now: number): string[] {
  const from = hour(now - 3_600_000);
  const to = hour(now + 2 * 3_600_000);
  const dayFrom = hour(now - 24 * 3_600_000);
  return [
    `# one ad's minute windows of the last hour, each saying which view (BATCH or SPEED) answered\n  ${curl(
      url,
      `{ series(metric: "clicks_by_ad", key: "c1-a1", granularity: MINUTE, from: "${from}", to: "${to}") { windowStart count sum source } }`,
    )}`,
    `# the top campaigns by impressions, and unique users reached\n  ${curl(
      url,
      `{ topKeys(metric: "impressions_by_campaign", granularity: HOUR, from: "${dayFrom}", to: "${to}", limit: 5) { key count }
         total(metric: "impressions_by_campaign", from: "${dayFrom}", to: "${to}") { count distinct } }`,
    )}`,
    `# the pipeline, and batch vs speed per key with the duplicate share before and after dedup\n  ${curl(
      url,
      `{ pipeline { speed { partitions { partition lag watermark } } batch { lastRun { runId finishedAt } } }
         reconciliation(metric: "impressions_by_campaign", granularity: MINUTE, from: "${from}", to: "${to}") {
           keysCompared disagreeingKeys duplicates { rangeBeforeDedup batchAfterDedup speedAfterDedup } } }`,
    )}`,
    `# the rides topic (nested JSON, its own event: section): fares in Paris per minute, and the top cities\n  ${curl(
      url,
      `{ series(version: "rides-v1", metric: "fares_by_city", key: "Paris", granularity: MINUTE, from: "${from}", to: "${to}") { windowStart count sum distinct source }
         topKeys(version: "rides-v1", metric: "fares_by_city", granularity: HOUR, from: "${from}", to: "${to}", limit: 3) { key count } }`,
    )}`,
  ];
}
