/**
 * The explorer's preloaded tabs: the README's "GraphQL examples", as written there (their dates
 * are the README's; change them to a range your data covers), then the live subscription, the
 * columnar series the dashboard's chart reads and the pipeline's dead letters. GraphiQL opens
 * them on the first visit; after that it restores the tabs the user left. Each operation is named
 * (the README's are anonymous) because GraphiQL titles a tab with its operation's name.
 */
export interface ExampleTab {
  query: string;
  variables?: string;
}

export const EXAMPLE_TABS: ExampleTab[] = [
  {
    query: `# One key's minute windows, each saying which view it came from
query OneKeyWindows { series(metric: "clicks_by_ad", key: "c1-a3", granularity: MINUTE,
         from: "2026-11-21T10:00:00Z", to: "2026-11-21T11:00:00Z") {
    windowStart count sum min max source processingTime } }
`,
  },
  {
    query: `# The ten campaigns with the most impressions today, and unique users over the day
query TopCampaigns { topKeys(metric: "impressions_by_campaign", granularity: HOUR,
          from: "2026-11-21T00:00:00Z", to: "2026-11-22T00:00:00Z", limit: 10) { key count }
  total(metric: "impressions_by_campaign", key: "c0",
        from: "2026-11-21T00:00:00Z", to: "2026-11-22T00:00:00Z") { count distinct } }
`,
  },
  {
    query: `# Is the pipeline healthy, and do batch and speed agree on closed windows?
query PipelineHealth { pipeline { speed { partitions { partition lag watermark } } batch { lastRun { runId } } }
  reconciliation(metric: "clicks_by_ad", granularity: HOUR,
                 from: "2026-11-21T00:00:00Z", to: "2026-11-22T00:00:00Z") {
    keysCompared disagreeingKeys duplicates { rangeBeforeDedup batchAfterDedup speedAfterDedup } } }
`,
  },
  {
    query: `# Live updates over WebSocket (graphql-ws): merged windows as the speed view changes them.
# Run it, then produce events for the key (lk generate --to-log).
subscription LiveWindows { windowUpdated(metric: "clicks_by_ad", key: "c1-a3", granularity: MINUTE) {
    windowStart count sum source provisional processingTime } }
`,
  },
  {
    query: `# The same windows as series, as columns (what the dashboard's chart reads),
# and the dead letters of the events topic by reason.
query Columns($from: DateTime!, $to: DateTime!) {
  seriesColumns(metric: "clicks_by_ad", key: "c1-a3", granularity: MINUTE, from: $from, to: $to) {
    windowStart count sum source provisional }
  pipeline { deadLetters { topic total byReason { reason count lastMessage } } } }
`,
    variables: `{ "from": "2026-11-21T10:00:00Z", "to": "2026-11-21T11:00:00Z" }`,
  },
];
