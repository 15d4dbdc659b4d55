/**
 * The GraphQL operations the dashboard sends, and the shapes of their answers (only the fields
 * asked for). Each poll is one request; the chart reads `seriesColumns` (arrays, not objects).
 */

/** MINUTE, HOUR, DAY, or the duration of another declared size (5m, 15m, 6h, 7d). */
export type GranularityName = string;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const NAMED_MS: Record<string, number> = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 };

/** A granularity's window length, ms (services/metrics/definitions.ts states the sizes). */
export function windowMsOf(g: GranularityName): number {
  const named = NAMED_MS[g];
  if (named !== undefined) return named;
  const m = /^(\d+)(s|m|h|d)$/.exec(g);
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : 60_000;
}

/** Where its windows are aligned: the epoch, or Monday 1970-01-05 for whole weeks (windowStart.ts). */
export function windowOriginOf(g: GranularityName): number {
  return windowMsOf(g) % (7 * 86_400_000) === 0 ? 4 * 86_400_000 : 0;
}

/** The label of a granularity in the controls: minute, hour, day, 5m ... */
export function granularityLabel(g: GranularityName): string {
  return NAMED_MS[g] !== undefined ? g.toLowerCase() : g;
}
export type Source = 'BATCH' | 'SPEED';

export interface MetricDefinition {
  name: string;
  description: string | null;
  key: string;
  /** A composite key's fields, in order (null for a one-field key). */
  keyParts: string[] | null;
  value: string | null;
  distinct: string | null;
  /** The percentiles' relative accuracy (null: the metric keeps none). */
  percentileAccuracy: number | null;
  granularities: GranularityName[];
  /** A session metric's gap (ms); null for tumbling windows. */
  sessionGapMs: number | null;
}

export const INIT = /* GraphQL */ `
  query DashboardInit {
    metrics {
      name
      description
      key
      keyParts
      value
      distinct
      percentileAccuracy
      granularities
      sessionGapMs
    }
  }
`;
export interface InitAnswer {
  metrics: MetricDefinition[];
}

export const TOP_KEYS = /* GraphQL */ `
  query DashboardTopKeys($metric: String!, $granularity: Granularity!, $from: DateTime!, $to: DateTime!) {
    topKeys(metric: $metric, granularity: $granularity, from: $from, to: $to, limit: 10) {
      key
      keyParts
      count
      sum
      windows
      provisionalWindows
    }
  }
`;
export interface KeyTotal {
  key: string;
  keyParts: string[];
  count: number;
  sum: number | null;
  windows: number;
  provisionalWindows: number;
}
export interface TopKeysAnswer {
  topKeys: KeyTotal[];
}

export type Measure = 'count' | 'sum' | 'avg' | 'min' | 'max' | 'distinct' | 'p50' | 'p95' | 'p99';

/** The percentile measures: answered by series and hopping (sketches), not by seriesColumns. */
export const PERCENTILE_MEASURES: readonly Measure[] = ['p50', 'p95', 'p99'];

/**
 * A key as queries name it: `key` for a one-field key, `keyParts` for a composite one (the server
 * joins the parts; the dashboard never writes the joined text itself).
 */
export function keyVariables(def: { keyParts: string[] | null }, parts: string[]): { key: string | null; keyParts: string[] | null } {
  return def.keyParts === null ? { key: parts[0] ?? '', keyParts: null } : { key: null, keyParts: parts };
}

/**
 * The chart's query: the window starts as small integers (windowIndex from windowBase), the count,
 * the measure on display, the source and the provisional flag: what is drawn, nothing more.
 */
export function seriesQuery(measure: Measure): string {
  return /* GraphQL */ `
    query DashboardSeries($metric: String!, $key: String, $keyParts: [String!], $granularity: Granularity!, $from: DateTime!, $to: DateTime!) {
      seriesColumns(metric: $metric, key: $key, keyParts: $keyParts, granularity: $granularity, from: $from, to: $to) {
        version key batchRunId windows windowBase windowMs windowIndex count ${measure === 'count' ? '' : measure} source provisional latestProcessingTime
      }
    }
  `;
}

/** A window as series and hopping answer it (for the measures seriesColumns has no column for). */
export interface WindowRow {
  key: string;
  windowStart: string;
  count: number;
  value?: number | null;
  source: Source;
  provisional: boolean;
  processingTime: string;
}

/** The chart's query for a percentile measure of tumbling windows: series, the measure aliased as value. */
export function percentileSeriesQuery(measure: Measure): string {
  return /* GraphQL */ `
    query DashboardPercentiles($metric: String!, $key: String, $keyParts: [String!], $granularity: Granularity!, $from: DateTime!, $to: DateTime!) {
      series(metric: $metric, key: $key, keyParts: $keyParts, granularity: $granularity, from: $from, to: $to) {
        key windowStart count value: ${measure} source provisional processingTime
      }
    }
  `;
}
export interface PercentileSeriesAnswer {
  series: WindowRow[];
}

/**
 * The chart's query for hopping windows: [s, s + size) for every s on the advance's boundaries,
 * merged at query time from the advance's tumbling windows (docs/metrics.md, Hopping windows).
 */
export function hoppingQuery(measure: Measure): string {
  return /* GraphQL */ `
    query DashboardHopping($metric: String!, $key: String, $keyParts: [String!], $size: Granularity!, $advance: Granularity!, $from: DateTime!, $to: DateTime!) {
      hopping(metric: $metric, key: $key, keyParts: $keyParts, size: $size, advance: $advance, from: $from, to: $to) {
        key windowStart count ${measure === 'count' ? '' : `value: ${measure}`} source provisional processingTime
      }
    }
  `;
}
export interface HoppingAnswer {
  hopping: WindowRow[];
}

/** A session metric's sessions of one key starting in the range (docs/metrics.md, Sessions in GraphQL). */
export const SESSIONS = /* GraphQL */ `
  query DashboardSessions($metric: String!, $key: String!, $from: DateTime!, $to: DateTime!) {
    sessions(metric: $metric, key: $key, from: $from, to: $to) {
      key
      start
      end
      count
      sum
      avg
      min
      max
      distinct
      source
      provisional
      processingTime
      partials
    }
  }
`;
export interface Session {
  key: string;
  start: string;
  end: string;
  count: number;
  sum: number | null;
  avg: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  source: 'BATCH' | 'SPEED' | 'MIXED';
  provisional: boolean;
  processingTime: string;
  partials: number;
}
export interface SessionsAnswer {
  sessions: Session[];
}

/** Percentiles of the key's values over the whole range (the windows' sketches added). */
export const RANGE_PERCENTILES = /* GraphQL */ `
  query DashboardRangePercentiles(
    $metric: String!
    $key: String
    $keyParts: [String!]
    $granularity: Granularity
    $from: DateTime!
    $to: DateTime!
  ) {
    total(metric: $metric, key: $key, keyParts: $keyParts, granularity: $granularity, from: $from, to: $to) {
      count
      p50
      p90
      p95
      p99
    }
  }
`;
export interface RangePercentilesAnswer {
  total: { count: number; p50: number | null; p90: number | null; p95: number | null; p99: number | null };
}
export interface SeriesColumnsAnswer {
  version: string;
  key: string;
  batchRunId: string | null;
  windows: number;
  windowBase: number;
  windowMs: number;
  windowIndex: number[];
  count: number[];
  sum?: (number | null)[];
  avg?: (number | null)[];
  min?: (number | null)[];
  max?: (number | null)[];
  distinct?: (number | null)[];
  source: Source[];
  provisional: boolean[];
  latestProcessingTime: string | null;
}
export interface SeriesAnswer {
  seriesColumns: SeriesColumnsAnswer;
}

export const WINDOW_UPDATED = /* GraphQL */ `
  subscription DashboardLive($metric: String!, $key: String, $keyParts: [String!], $granularity: Granularity!) {
    windowUpdated(metric: $metric, key: $key, keyParts: $keyParts, granularity: $granularity) {
      key
      keyParts
      granularity
      windowStart
      count
      sum
      avg
      min
      max
      distinct
      p50
      p95
      p99
      source
      provisional
      processingTime
    }
  }
`;
export interface WindowValue {
  key: string;
  keyParts: string[];
  granularity: GranularityName;
  windowStart: string;
  count: number;
  sum: number | null;
  avg: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  source: Source;
  provisional: boolean;
  processingTime: string;
}

export const STATUS = /* GraphQL */ `
  query DashboardStatus {
    viewer {
      name
      role
      permissions
    }
    pipeline {
      version
      speed {
        instances {
          instanceId
          ageMs
        }
        partitions {
          partition
          committedOffset
          endOffset
          lag
          watermark
        }
        eventsPerSecond
        duplicates
        misplaced
        droppedLate {
          metric
          count
        }
        lastCheckpoint {
          at
          bytes
          durationMs
        }
        unreadable
      }
      batch {
        lastRun {
          runId
          finishedAt
          durationMs
          rows
          rawEvents
          uniqueEvents
          lakeFiles
          lakeBytes
        }
        nextRunAt
        lakeFiles
        lakeBytes
        unreadable
      }
      serving {
        ready
        subscriptions
        speedView {
          topic
          caughtUp
          rows
          freshnessMs
          ageMs
          lastError
        }
        batchView {
          runId
          rows
          ageMs
          lastError
        }
      }
      deadLetters {
        topic
        topicExists
        caughtUp
        total
        lastAt
        lastError
        byReason {
          reason
          count
          lastAt
          lastMessage
        }
      }
    }
    versions {
      default
      previous
      promotion
      promotedAt
      versions {
        name
        state
        isDefault
        runningInstances
        maxLag
        percentDone
        etaSeconds
        eventsPerSecond
        origin
        createdAt
        retiredAt
        lastBatchRun {
          runId
          finishedAt
        }
      }
    }
  }
`;
export interface PipelineStatus {
  version: string;
  speed: {
    instances: { instanceId: string; ageMs: number }[];
    partitions: {
      partition: number;
      committedOffset: number | null;
      endOffset: number | null;
      lag: number | null;
      watermark: string | null;
    }[];
    eventsPerSecond: number | null;
    duplicates: number | null;
    misplaced: number | null;
    droppedLate: { metric: string; count: number }[];
    lastCheckpoint: { at: string; bytes: number | null; durationMs: number | null } | null;
    unreadable: string[];
  };
  batch: {
    lastRun: {
      runId: string;
      finishedAt: string;
      durationMs: number;
      rows: number;
      rawEvents: number;
      uniqueEvents: number;
      lakeFiles: number;
      lakeBytes: number;
    } | null;
    nextRunAt: string | null;
    lakeFiles: number | null;
    lakeBytes: number | null;
    unreadable: string | null;
  };
  serving: {
    ready: boolean;
    subscriptions: number;
    speedView: {
      topic: string;
      caughtUp: boolean;
      rows: number;
      freshnessMs: number | null;
      ageMs: number | null;
      lastError: string | null;
    };
    batchView: { runId: string; rows: number; ageMs: number; lastError: string | null } | null;
  };
  deadLetters: DeadLetters;
}
export interface DeadLetters {
  topic: string;
  topicExists: boolean;
  caughtUp: boolean;
  total: number;
  lastAt: string | null;
  lastError: string | null;
  byReason: { reason: string; count: number; lastAt: string | null; lastMessage: string | null }[];
}
export type VersionState = 'LIVE' | 'REPLAYING' | 'CAUGHT_UP' | 'STOPPED' | 'RETIRED';
export interface JobVersion {
  name: string;
  state: VersionState;
  isDefault: boolean;
  runningInstances: number;
  maxLag: number | null;
  percentDone: number | null;
  etaSeconds: number | null;
  eventsPerSecond: number;
  origin: string;
  createdAt: string;
  retiredAt: string | null;
  lastBatchRun: { runId: string; finishedAt: string } | null;
}
export interface Versions {
  default: string;
  previous: string | null;
  promotion: number;
  promotedAt: string | null;
  versions: JobVersion[];
}
/** The caller as the server sees it: the page offers only what its role may do. */
export interface Viewer {
  name: string;
  role: 'READER' | 'ADMIN';
  permissions: string[];
}
export interface StatusAnswer {
  viewer: Viewer;
  pipeline: PipelineStatus;
  versions: Versions;
}

export const RECONCILIATION = /* GraphQL */ `
  query DashboardReconciliation($metric: String!, $granularity: Granularity!, $from: DateTime!, $to: DateTime!) {
    reconciliation(metric: $metric, granularity: $granularity, from: $from, to: $to) {
      batchRunId
      speedWatermark
      closedBefore
      windowsCompared
      windowsPending
      keysCompared
      disagreeingKeys
      batchCount
      speedCount
      keys {
        key
        batchCount
        speedCount
        difference
        windows
        disagreeingWindows
      }
      duplicates {
        runBeforeDedup
        rangeRawCount
        rangeCount
        rangeBeforeDedup
        speedAfterDedup
        batchAfterDedup
        speedDuplicatesDropped
      }
      misplaced {
        provisionalWindows
      }
    }
  }
`;
export interface Reconciliation {
  batchRunId: string | null;
  speedWatermark: string | null;
  closedBefore: string | null;
  windowsCompared: number;
  windowsPending: number;
  keysCompared: number;
  disagreeingKeys: number;
  batchCount: number;
  speedCount: number;
  keys: { key: string; batchCount: number; speedCount: number; difference: number; windows: number; disagreeingWindows: number }[];
  duplicates: {
    runBeforeDedup: number | null;
    rangeRawCount: number;
    rangeCount: number;
    rangeBeforeDedup: number | null;
    speedAfterDedup: number | null;
    batchAfterDedup: number;
    speedDuplicatesDropped: number | null;
  };
  misplaced: { provisionalWindows: number };
}
export interface ReconciliationAnswer {
  reconciliation: Reconciliation;
}

export const PROMOTE = /* GraphQL */ `
  mutation DashboardPromote($version: String!, $force: Boolean) {
    promote(version: $version, force: $force) {
      version
      previous
      promotion
      changed
      skippedChecks
    }
  }
`;
export interface PromoteAnswer {
  promote: { version: string; previous: string | null; promotion: number; changed: boolean; skippedChecks: string[] };
}

export const ROLLBACK = /* GraphQL */ `
  mutation DashboardRollback($force: Boolean) {
    rollback(force: $force) {
      version
      previous
      promotion
      changed
      skippedChecks
    }
  }
`;
export interface RollbackAnswer {
  rollback: PromoteAnswer['promote'];
}
