/**
 * The GraphQL schema: the contract (types and arguments there may be added to, never
 * removed), plus the detail types it leaves open. Field docs show up in introspection.
 */
export const typeDefs = /* GraphQL */ `
  """
  An instant as ISO-8601 text with a timezone, e.g. 2026-01-01T00:00:00Z (always returned in UTC).
  """
  scalar DateTime

  """
  A column of a SeriesColumns answer: a JSON array with one number per window, in the windows'
  order; null where a window has no value (sum, min and max of windows without values). Output only.
  """
  scalar FloatColumn
  """
  A column of a SeriesColumns answer: a JSON array with one integer per window (null where a window
  has none: distinct of a metric without distinct). Output only.
  """
  scalar IntColumn
  """
  A column of a SeriesColumns answer: a JSON array with one boolean per window. Output only.
  """
  scalar BooleanColumn
  """
  A column of a SeriesColumns answer: a JSON array with one ViewSource name ("BATCH" or "SPEED")
  per window. Output only.
  """
  scalar SourceColumn

  """
  A tumbling window size: MINUTE, HOUR, DAY (written bare, as the enum it once was, or as a
  string), or the duration of any size a metric declares, as a string: "5m", "15m", "6h", "7d"
  ("60m" is HOUR). Windows align to the UTC epoch; whole weeks start on Monday 00:00 UTC.
  Answers name MINUTE, HOUR and DAY so, other sizes by their duration.
  """
  scalar Granularity

  """
  Which view a merged answer came from (see docs/serving-layer.md, the merge rule).
  """
  enum ViewSource {
    BATCH
    SPEED
  }

  type Query {
    """
    The metric definitions of a version (its own stored metric file); default: the default version.
    """
    metrics(version: String): [MetricDefinition!]!
    """
    Merged windows of one key whose start is in [from, to), oldest first.
    """
    series(
      metric: String!
      """
      The key's text. For a composite key, give keyParts instead (or the parts' text joined by |,
      each | and \\ in a part written \\| and \\\\).
      """
      key: String
      """
      A composite key's parts, in the order the metric's key lists its fields.
      """
      keyParts: [String!]
      granularity: Granularity!
      from: DateTime!
      to: DateTime!
      version: String
    ): [WindowValue!]!
    """
    The same merged windows as series, as columns (one array per field, index i = window i): the
    compact form for charts and bulk reads. Same arguments, same validation.
    """
    seriesColumns(
      metric: String!
      key: String
      keyParts: [String!]
      granularity: Granularity!
      from: DateTime!
      to: DateTime!
      version: String
    ): SeriesColumns!
    """
    Hopping windows of one key: [start, start + size) for every start in [from, to) on the
    boundaries of advance, a granularity of the metric whose size divides size (1 h windows every
    5 minutes: size "1h", advance "5m"). Computed at query time from the advance's tumbling
    windows: exact for every measure (counts and sums add, min and max take the extremes, distinct
    and percentiles merge sketches). Windows without events are left out.
    """
    hopping(
      metric: String!
      key: String
      keyParts: [String!]
      size: Granularity!
      advance: Granularity!
      from: DateTime!
      to: DateTime!
      version: String
    ): [HoppingWindow!]!
    """
    Session windows of one key (metrics declaring session: { gap }) whose start is in [from, to),
    oldest first: the true sessions, merged from both views' partial sessions (per input
    partition the batch or the speed rows, by the merge rule; then chained across partitions:
    docs/merge-rule.md, "Hard case: sessions across partitions"). A session's start and end are its
    first and last event times. key is the key's text (a composite key's parts joined by |, each |
    and \\ in a part written \\| and \\\\). The range may span as many gaps as
    --max-range-minute, -hour or -day allows windows of the gap's size.
    """
    sessions(metric: String!, key: String!, from: DateTime!, to: DateTime!, version: String): [Session!]!
    """
    Keys ranked by count over the windows whose start is in [from, to); ties by key.
    """
    topKeys(metric: String!, granularity: Granularity!, from: DateTime!, to: DateTime!, limit: Int = 10, version: String): [KeyTotal!]!
    """
    Roll-up of the windows in [from, to) of one key (or all keys): counts and sums add, distinct
    merges sketches. granularity defaults to the coarsest one whose windows tile [from, to).
    """
    total(
      metric: String!
      key: String
      keyParts: [String!]
      from: DateTime!
      to: DateTime!
      version: String
      granularity: Granularity
    ): Total!
    pipeline(version: String): PipelineStatus!
    """
    Batch count vs speed count per key over closed windows, and duplicate rates.
    """
    reconciliation(
      metric: String!
      granularity: Granularity!
      from: DateTime!
      to: DateTime!
      version: String
      onlyDisagreeing: Boolean = false
    ): Reconciliation!
    """
    Every job version: its state, progress, lag and watermark per partition, last batch run.
    """
    versions: Versions!
    """
    The caller as this server sees it: its name, its role and what the role may do.
    """
    viewer: Viewer!
    """
    Two versions window by window over [from, to): windows equal, differing, in one only, and
    the keys that differ most. Check a replayed version with it before promoting it.
    """
    versionDiff(
      a: String!
      b: String!
      metric: String!
      granularity: Granularity!
      from: DateTime!
      to: DateTime!
      limit: Int = 10
    ): VersionDiff!
  }

  type Mutation {
    """
    Makes a version the default, atomically: every query that names no version answers from it
    from the next request on. Refused with the reasons when the version is not caught up (lag
    above the threshold on a partition, watermark behind the live version, no batch view of its
    metric file) unless force is true. Promoting the previous version back is the rollback.
    """
    promote(version: String!, force: Boolean = false): Promotion!
    """
    Promotes the version that was the default before the current one (the pointer's previous),
    with the same checks as promote. Needs the admin role.
    """
    rollback(force: Boolean = false): Promotion!
    """
    Deletes a version's speed view topic, its consumer group (group, default lk-speed-<version>),
    checkpoints and batch views; its record stays, marked retired. Refused for the default version
    and while a speed instance of it runs. Needs the admin role.
    """
    retire(version: String!, group: String): Retirement!
  }

  enum Role {
    """
    Queries and subscriptions.
    """
    READER
    """
    Also promote, rollback and retire.
    """
    ADMIN
  }

  type Viewer {
    """
    The token's name (tokens file), the JWT's name claim, "auth-token", or "anonymous" when the
    server needs no token.
    """
    name: String!
    role: Role!
    authenticated: Boolean!
    """
    How the caller was recognised: anonymous, auth-token, tokens-file or jwt.
    """
    via: String!
    """
    The operations the role may run: query, subscribe, metrics, promote, rollback, retire.
    """
    permissions: [String!]!
  }

  type Retirement {
    version: String!
    retiredAt: DateTime!
    """
    What was deleted (topic, consumer group, checkpoint and view folders).
    """
    deleted: [String!]!
  }

  enum VersionState {
    """
    The default version.
    """
    LIVE
    """
    A speed instance runs it; some partition lags by more than the promotion threshold.
    """
    REPLAYING
    CAUGHT_UP
    """
    No speed instance has reported for 15 s; its state and views stay.
    """
    STOPPED
    RETIRED
  }

  type Versions {
    """
    The version answering queries that name none.
    """
    default: String!
    """
    The version that was the default before (where a rollback goes).
    """
    previous: String
    """
    Promotions so far (0: none; the default is serving's --version).
    """
    promotion: Int!
    promotedAt: DateTime
    versions: [JobVersion!]!
  }

  type JobVersion {
    name: String!
    state: VersionState!
    topic: String!
    createdAt: DateTime!
    """
    SHA-256 of the version's metric file (kept with the version).
    """
    metricsSha256: String
    """
    Where its speed job started: live, earliest, time, offsets or lake.
    """
    origin: String!
    startOffsets: [Float!]
    retiredAt: DateTime
    isDefault: Boolean!
    runningInstances: Int!
    partitions: [VersionPartition!]!
    maxLag: Float
    eventsPerSecond: Float!
    """
    Offsets read since the start offsets, of all to read (null without start offsets).
    """
    done: Float
    total: Float
    percentDone: Float
    etaSeconds: Float
    lastBatchRun: BatchRun
    """
    Metric names of the version's definitions.
    """
    metrics: [String!]!
  }

  type VersionPartition {
    partition: Int!
    position: Float
    endOffset: Float
    lag: Float
    watermark: DateTime
  }

  type Promotion {
    version: String!
    previous: String
    promotion: Int!
    promotedAt: DateTime!
    """
    False when the version already was the default.
    """
    changed: Boolean!
    """
    With force: the checks that failed and were skipped.
    """
    skippedChecks: [String!]!
  }

  type VersionDiff {
    metric: String!
    granularity: Granularity!
    from: DateTime!
    to: DateTime!
    a: String!
    b: String!
    windowsCompared: Int!
    windowsEqual: Int!
    windowsDiffering: Int!
    onlyInA: Int!
    onlyInB: Int!
    keysCompared: Int!
    keysDiffering: Int!
    topKeys: [KeyDifference!]!
  }

  type KeyDifference {
    key: String!
    windowsDiffering: Int!
    countA: Float!
    countB: Float!
    """
    |countB - countA| summed over the key's windows (a window in one version only counts whole).
    """
    countDifference: Float!
  }

  type Subscription {
    """
    Merged window values, pushed as the speed view changes them (latest value per window).
    """
    windowUpdated(metric: String!, key: String, keyParts: [String!], granularity: Granularity, version: String): WindowValue!
  }

  type MetricDefinition {
    name: String!
    description: String
    """
    The key field, or a composite key's fields as the file lists them: [payload.city, payload.vehicle].
    """
    key: String!
    """
    A composite key's fields, in order (null for a one-field key).
    """
    keyParts: [String!]
    value: String
    distinct: String
    """
    The relative accuracy of the metric's percentiles (0.01 is 1 %); null when it keeps none.
    """
    percentileAccuracy: Float
    """
    The tumbling window sizes (empty for a session metric).
    """
    granularities: [Granularity!]!
    """
    A session metric's gap in milliseconds (session: { gap }); null for a metric with tumbling windows.
    """
    sessionGapMs: Float
    allowedLatenessMs: Float!
    """
    How long the windows of each granularity are kept, and the oldest one answered now (a range
    that holds an older window is refused with OUTSIDE_RETENTION; docs/metrics.md, "Retention").
    """
    retention: [WindowRetention!]!
  }

  type WindowRetention {
    granularity: Granularity!
    retentionMs: Float!
    """
    Start of the oldest window still answered, under the view's event-time watermark (null before
    the view has one: nothing has expired).
    """
    oldestWindowStart: DateTime
  }

  type WindowValue {
    """
    The job version that answered.
    """
    version: String!
    key: String!
    """
    The key's parts: one for a one-field key, each field's text for a composite key.
    """
    keyParts: [String!]!
    windowStart: DateTime!
    windowEnd: DateTime!
    count: Int!
    sum: Float
    """
    sum / count: the mean per event counted (null without a sum). Events without a numeric value
    count but add nothing; filter on exists for the mean of the values only.
    """
    avg: Float
    min: Float
    max: Float
    """
    Approximate distinct count (HyperLogLog, standard error 1.625 %).
    """
    distinct: Int
    """
    Percentiles of the value (metrics declaring percentiles): each within the metric's relative
    accuracy (percentileAccuracy, 1 % by default) of the exact value of rank floor(p (n - 1)) among
    the n values, for magnitudes in [1e-9, 1e15]. Null for a metric without percentiles or a window
    without values.
    """
    p50: Float
    p90: Float
    p95: Float
    p99: Float
    """
    Any percentile, p in [0, 1] (0.5 is the median); another p is refused with INVALID_PERCENTILE.
    """
    percentile(p: Float!): Float
    """
    SPEED when at least one partition's chosen row is a speed row, else BATCH.
    """
    source: ViewSource!
    """
    True when a speed row meets a row that counted misplaced events (events outside their home
    partition: unkeyed or foreign-keyed producers, a raised partition count): a copy of such an
    event may be counted in another partition too, so the answer may change when the next batch
    run covers the window. Every other answer is exact for the part of the log it reflects.
    """
    provisional: Boolean!
    """
    The latest processing time among the rows that make up the window.
    """
    processingTime: DateTime!
    granularity: Granularity!
    """
    The batch run the batch rows came from (null when no batch view is loaded).
    """
    batchRunId: String
    """
    Per input partition: which view's row was chosen and why.
    """
    partitions: [PartitionSource!]!
  }

  """
  Merged windows of one key as columns: element i of every column describes window i (oldest
  first), exactly as series(...)[i] does. Columns are JSON arrays (the *Column scalars): a
  column is sent as one value, not as a list of 1,440 values each completed on its own.
  """
  type SeriesColumns {
    """
    The job version that answered.
    """
    version: String!
    metric: String!
    key: String!
    granularity: Granularity!
    from: DateTime!
    to: DateTime!
    """
    The batch run the batch rows came from (null when no batch view is loaded).
    """
    batchRunId: String
    """
    Number of windows: the length of every column.
    """
    windows: Int!
    """
    Window length in milliseconds.
    """
    windowMs: Float!
    """
    Start of the range's first window (from, rounded up to a window boundary), epoch milliseconds.
    """
    windowBase: Float!
    """
    Window starts, epoch milliseconds (windowEnd = windowStart + windowMs).
    """
    windowStart: FloatColumn!
    """
    Window starts as (windowStart - windowBase) / windowMs: small integers, the cheapest way to
    send the times (a 13-digit number costs several times as much to write as a small one).
    """
    windowIndex: IntColumn!
    count: IntColumn!
    sum: FloatColumn!
    """
    sum / count per window (null where sum is).
    """
    avg: FloatColumn!
    min: FloatColumn!
    max: FloatColumn!
    """
    Approximate distinct counts (HyperLogLog); null elements for metrics without distinct.
    """
    distinct: IntColumn!
    source: SourceColumn!
    provisional: BooleanColumn!
    """
    Latest processing time among each window's rows, epoch milliseconds.
    """
    processingTime: FloatColumn!
    """
    The latest of processingTime (null without windows).
    """
    latestProcessingTime: DateTime
  }

  type HoppingWindow {
    version: String!
    key: String!
    keyParts: [String!]!
    windowStart: DateTime!
    windowEnd: DateTime!
    count: Int!
    sum: Float
    avg: Float
    min: Float
    max: Float
    """
    Approximate distinct count of the window: the merge of its tumbling windows' sketches.
    """
    distinct: Int
    """
    Percentiles of the value over the hopping window (metrics declaring percentiles): its tumbling
    windows' sketches added bucket by bucket, which is the sketch of the window's own values, so
    each is within the metric's relative accuracy (percentileAccuracy) of the exact value of rank
    floor(p (n - 1)) among the window's n values, for magnitudes in [1e-9, 1e15]. Null for a
    metric without percentiles or a window without values.
    """
    p50: Float
    p90: Float
    p95: Float
    p99: Float
    """
    Any percentile, p in [0, 1]; another p is refused with INVALID_PERCENTILE.
    """
    percentile(p: Float!): Float
    """
    Tumbling windows of the advance size merged into this one (those with events).
    """
    windows: Int!
    """
    SPEED when one of the merged windows is SPEED, else BATCH.
    """
    source: ViewSource!
    provisional: Boolean!
    processingTime: DateTime!
  }

  """
  Which views a session was merged from.
  """
  enum SessionSource {
    BATCH
    SPEED
    """
    Batch partials in some partitions, speed partials in others (a session spanning the batch cut).
    """
    MIXED
  }

  """
  One session of a key: its events' times differ by less than the metric's gap along a chain.
  """
  type Session {
    version: String!
    metric: String!
    key: String!
    keyParts: [String!]!
    """
    The first event's time.
    """
    start: DateTime!
    """
    The last event's time (the session closes gap + allowed lateness after it, in event time).
    """
    end: DateTime!
    count: Int!
    sum: Float
    """
    sum / count (null without a sum).
    """
    avg: Float
    min: Float
    max: Float
    """
    Approximate distinct count (HyperLogLog merge of the partials' sketches).
    """
    distinct: Int
    source: SessionSource!
    """
    True when a speed partial is chosen and some chosen partial counted misplaced events.
    """
    provisional: Boolean!
    """
    The latest processing time among the chosen partials.
    """
    processingTime: DateTime!
    """
    Partial sessions (per input partition and view) merged into this one.
    """
    partials: Int!
  }

  type PartitionSource {
    partition: Int!
    source: ViewSource!
    throughOffset: Float!
    processingTime: DateTime!
    count: Int!
    """
    Events counted in the chosen row that are not in their home partition.
    """
    misplaced: Int!
  }

  type KeyTotal {
    """
    The job version that answered.
    """
    version: String!
    key: String!
    keyParts: [String!]!
    count: Int!
    sum: Float
    """
    sum / count over the range.
    """
    avg: Float
    windows: Int!
    """
    Windows of the key in the range whose answer is provisional (see WindowValue.provisional).
    """
    provisionalWindows: Int!
  }

  type Total {
    """
    The job version that answered.
    """
    version: String!
    metric: String!
    key: String
    granularity: Granularity!
    from: DateTime!
    to: DateTime!
    count: Int!
    sum: Float
    """
    sum / count over the range (sums and counts add, so the mean of merged windows is exact).
    """
    avg: Float
    min: Float
    max: Float
    """
    Distinct over the whole range: the merge of the windows' sketches, never a sum of estimates.
    """
    distinct: Int
    """
    Percentiles of the value over the whole range (the windows' sketches added bucket by bucket;
    metrics declaring percentiles): each within the metric's relative
    accuracy (percentileAccuracy, 1 % by default) of the exact value of rank floor(p (n - 1)) among
    the n values, for magnitudes in [1e-9, 1e15]. Null for a metric without percentiles or a window
    without values.
    """
    p50: Float
    p90: Float
    p95: Float
    p99: Float
    """
    Any percentile, p in [0, 1] (0.5 is the median); another p is refused with INVALID_PERCENTILE.
    """
    percentile(p: Float!): Float
    windows: Int!
    batchWindows: Int!
    speedWindows: Int!
    """
    Windows whose answer is provisional (see WindowValue.provisional).
    """
    provisionalWindows: Int!
    keys: Int!
    latestProcessingTime: DateTime
  }

  type PipelineStatus {
    version: String!
    speed: SpeedStatus!
    batch: BatchStatus!
    serving: ServingStatus!
    """
    Records of the events topic's dead-letter topic (<topic>.dlq), counted by reason since the
    topic began (serving reads it from the beginning).
    """
    deadLetters: DeadLetters!
  }

  type DeadLetters {
    """
    The dead-letter topic read (lk serve --topic NAME reads NAME.dlq).
    """
    topic: String!
    topicExists: Boolean!
    """
    True once every record the topic held when serving started has been counted.
    """
    caughtUp: Boolean!
    total: Float!
    """
    Per reason (the lk.reason header: invalid_json, invalid_ts, missing_field, ...), most frequent
    first. Records without a readable reason count as "unreadable".
    """
    byReason: [DeadLetterReason!]!
    """
    When the latest dead letter was written (its lk.ingested-at header, else its log timestamp).
    """
    lastAt: DateTime
    lastError: String
  }

  type DeadLetterReason {
    reason: String!
    count: Float!
    lastAt: DateTime
    """
    The lk.message of the latest dead letter with this reason.
    """
    lastMessage: String
  }

  type SpeedStatus {
    instances: [SpeedInstance!]!
    partitions: [SpeedPartition!]!
    eventsPerSecond: Float
    duplicates: Float
    """
    Valid records the speed instances read that are not in their home partition.
    """
    misplaced: Float
    droppedLate: [MetricCount!]!
    lastCheckpoint: Checkpoint
    """
    Status files that could not be read, with the reason.
    """
    unreadable: [String!]!
  }

  type SpeedInstance {
    instanceId: String!
    pid: Int
    updatedAt: DateTime!
    ageMs: Float!
  }
  type SpeedPartition {
    partition: Int!
    instanceId: String!
    committedOffset: Float
    endOffset: Float
    lag: Float
    watermark: DateTime
    """
    Valid records of the partition that are not in their home partition.
    """
    misplaced: Float
  }
  type MetricCount {
    metric: String!
    count: Float!
  }
  type Checkpoint {
    at: DateTime!
    bytes: Float
    durationMs: Float
  }

  type BatchStatus {
    lastRun: BatchRun
    nextRunAt: DateTime
    lakeFiles: Float
    lakeBytes: Float
    updatedAt: DateTime
    unreadable: String
  }

  type BatchRun {
    runId: String!
    cut: [Float!]!
    processingTimes: [Float!]!
    startedAt: DateTime!
    finishedAt: DateTime!
    durationMs: Float!
    rows: Float!
    rawEvents: Float!
    uniqueEvents: Float!
    """
    Records in the lake up to the cut that are not in their home partition (duplicates included).
    """
    misplacedEvents: Float!
    """
    The version's home partition count: an event's home is its id's partition among these.
    """
    homePartitions: Int
    lakeFiles: Float!
    lakeBytes: Float!
    full: Boolean!
  }

  type ServingStatus {
    ready: Boolean!
    speedView: SpeedViewStatus!
    batchView: BatchViewStatus
    subscriptions: Int!
  }

  type SpeedViewStatus {
    topic: String!
    topicExists: Boolean!
    caughtUp: Boolean!
    rows: Float!
    rejectedRows: Float!
    partitions: [ViewPartition!]!
    """
    Milliseconds since the last speed row arrived (null before the first).
    """
    ageMs: Float
    """
    Milliseconds between now and the latest processing time in the speed view.
    """
    freshnessMs: Float
    lastError: String
  }

  type ViewPartition {
    partition: Int!
    nextOffset: Float!
    highWatermark: Float!
    lag: Float!
  }

  type BatchViewStatus {
    runId: String!
    rows: Float!
    loadedAt: DateTime!
    """
    Milliseconds since the run finished.
    """
    ageMs: Float!
    cut: [Float!]!
    lastError: String
  }

  type Reconciliation {
    """
    The job version that answered.
    """
    version: String!
    metric: String!
    granularity: Granularity!
    from: DateTime!
    to: DateTime!
    batchRunId: String
    """
    min over input partitions of the speed watermark; null when the speed layer reports none.
    """
    speedWatermark: DateTime
    """
    Windows are closed when windowEnd < closedBefore (= speedWatermark - allowed lateness): the watermark is past windowEnd + allowed lateness.
    """
    closedBefore: DateTime
    windowsCompared: Int!
    """
    Closed windows whose speed rows are ahead of the batch cut: compared after the next run.
    """
    windowsPending: Int!
    keysCompared: Int!
    disagreeingKeys: Int!
    batchCount: Float!
    speedCount: Float!
    keys: [KeyReconciliation!]!
    duplicates: DuplicateRates!
    misplaced: MisplacedCounts!
  }

  """
  Events found outside their home partition (written unkeyed, by another key, or after the
  topic's partitions were raised): per-partition dedup cannot see their copies in other
  partitions, so windows that mix them with speed rows are provisional until a batch run.
  """
  type MisplacedCounts {
    """
    Misplaced events counted in the batch rows of the range.
    """
    batchRows: Float!
    """
    Misplaced events counted in the speed rows of the range.
    """
    speedRows: Float!
    """
    Misplaced records in the batch run (whole lake up to the cut, duplicates included).
    """
    runMisplacedEvents: Float
    """
    Misplaced records the speed instances have read (all partitions, since they started).
    """
    speedRecords: Float
    """
    Merged windows in the range whose answer is provisional.
    """
    provisionalWindows: Int!
  }

  type KeyReconciliation {
    key: String!
    batchCount: Float!
    speedCount: Float!
    """
    speedCount - batchCount.
    """
    difference: Float!
    windows: Int!
    disagreeingWindows: Int!
  }

  type DuplicateRates {
    runRawEvents: Float
    runUniqueEvents: Float
    """
    (raw - unique) / raw over the whole batch run.
    """
    runBeforeDedup: Float
    rangeRawCount: Float!
    rangeCount: Float!
    """
    (raw_count - count) / raw_count over the batch rows in the range.
    """
    rangeBeforeDedup: Float
    """
    Events the speed view counted beyond the deduplicated batch count, over the batch count.
    """
    speedAfterDedup: Float
    batchAfterDedup: Float!
    speedDuplicatesDropped: Float
  }
`;
