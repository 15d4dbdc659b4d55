/// <reference lib="dom" />
/**
 * The panels around the chart, each rendered from one GraphQL answer: top keys, the pipeline
 * (speed partitions, checkpoints, batch runs, serving's views), dead letters by reason,
 * reconciliation and the job versions. Empty states say what to run.
 */
import { h, type Child } from './dom.ts';
import { DASH, fmtAgo, fmtBytes, fmtDuration, fmtInt, fmtNumber, fmtShare, fmtTime, parseTime } from './format.ts';
import type { DeadLetters, JobVersion, KeyTotal, PipelineStatus, Reconciliation, Session, Versions } from './operations.ts';

/** A relative time ("12 s ago") that the page's clock keeps current (main.ts tickRelativeTimes). */
export function ago(epochMs: number | null, now = Date.now()): HTMLElement {
  return h('span', { 'data-ago': epochMs ?? undefined }, fmtAgo(epochMs, now));
}

/** Moves every relative time on the page on, without rebuilding anything (selections and clicks survive). */
export function tickRelativeTimes(now = Date.now()): void {
  document.querySelectorAll<HTMLElement>('[data-ago]').forEach((el) => (el.textContent = fmtAgo(Number(el.dataset.ago), now)));
}

function code(text: string): HTMLElement {
  return h('code', null, text);
}

/** A message in place of a panel's content: what is missing and what to do about it. */
export function emptyState(title: string, ...hint: Child[]): HTMLElement {
  return h('div', { class: 'empty-state' }, h('strong', null, title), hint.length ? h('p', null, ...hint) : null);
}

export function errorState(message: string): HTMLElement {
  return h('div', { class: 'error-state', role: 'alert' }, message);
}

function stat(label: string, value: Child, sub?: Child, tone?: 'ok' | 'warn' | 'bad'): HTMLElement {
  return h(
    'div',
    { class: `stat${tone ? ` stat-${tone}` : ''}` },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: 'stat-value' }, value),
    sub ? h('div', { class: 'stat-sub' }, sub) : null,
  );
}

function bar(share: number, color?: string): HTMLElement {
  const pct = Math.max(0, Math.min(1, Number.isFinite(share) ? share : 0)) * 100;
  return h(
    'div',
    { class: 'bar' },
    h('div', { class: 'bar-fill', style: `width:${pct.toFixed(1)}%${color ? `;background:${color}` : ''}` }),
  );
}

// ---------------------------------------------------------------------------------------------
// Top keys

/**
 * The top keys; a composite key shows one column per part, headed by its field. `selected` and
 * the picked key are the key's parts.
 */
export function renderTopKeys(
  keys: KeyTotal[],
  selected: readonly string[] | null,
  onPick: (key: string[]) => void,
  metric: string,
  fields: readonly string[] | null = null,
): Child {
  if (keys.length === 0)
    return emptyState(
      `No data yet for ${metric} in this range.`,
      'Is ',
      code('lk generate --to-log'),
      ' (or ',
      code('lk produce'),
      ') sending events, and ',
      code('lk speed'),
      ' running? Try a longer range.',
    );
  const max = keys[0]!.count || 1;
  const isSelected = (k: KeyTotal) =>
    selected !== null && k.keyParts.length === selected.length && k.keyParts.every((p, i) => p === selected[i]);
  const dot = (k: KeyTotal) =>
    k.provisionalWindows > 0 ? h('span', { class: 'dot-provisional', title: 'has provisional windows' }) : null;
  return h(
    'table',
    { class: 'table top-keys', 'data-testid': 'top-keys' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, '#'),
        fields === null ? h('th', null, 'key') : fields.map((f) => h('th', { 'data-field': f }, f)),
        h('th', { class: 'num' }, 'count'),
        h('th', null, ''),
      ),
    ),
    h(
      'tbody',
      null,
      keys.map((k, i) =>
        h(
          'tr',
          {
            class: isSelected(k) ? 'selected clickable' : 'clickable',
            'data-key': k.key,
            title: `show ${k.keyParts.join(' · ')} on the chart`,
            onclick: () => onPick([...k.keyParts]),
          },
          h('td', { class: 'muted' }, String(i + 1)),
          fields === null
            ? h('td', { class: 'key' }, k.key, dot(k))
            : k.keyParts.map((part, j) => h('td', { class: 'key', 'data-part': j }, part, j === k.keyParts.length - 1 ? dot(k) : null)),
          h('td', { class: 'num' }, fmtInt(k.count)),
          h('td', { class: 'bar-cell' }, bar(k.count / max)),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Sessions

/** A session metric's sessions of the key on display: one row each, newest first. */
export function renderSessions(sessions: Session[], value: string | null, distinct: string | null): Child {
  if (sessions.length === 0) return emptyState('No sessions of this key in the range.', 'Try a longer range, or another key.');
  return h(
    'table',
    { class: 'table sessions', 'data-testid': 'sessions' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, 'start'),
        h('th', null, 'end'),
        h('th', { class: 'num' }, 'length'),
        h('th', { class: 'num' }, 'count'),
        value ? [h('th', { class: 'num' }, `sum ${value}`), h('th', { class: 'num' }, 'avg')] : null,
        distinct ? h('th', { class: 'num' }, `distinct ${distinct}`) : null,
        h('th', null, 'source'),
      ),
    ),
    h(
      'tbody',
      null,
      [...sessions].reverse().map((x) =>
        h(
          'tr',
          {
            'data-start': Date.parse(x.start),
            'data-end': Date.parse(x.end),
            'data-count': x.count,
            'data-source': x.source,
            title: `${x.partials} partial session${x.partials === 1 ? '' : 's'} merged`,
          },
          h('td', null, fmtTime(Date.parse(x.start))),
          h('td', null, fmtTime(Date.parse(x.end))),
          h('td', { class: 'num' }, fmtDuration(Date.parse(x.end) - Date.parse(x.start))),
          h('td', { class: 'num' }, fmtInt(x.count)),
          value ? [h('td', { class: 'num' }, fmtNumber(x.sum)), h('td', { class: 'num' }, fmtNumber(x.avg))] : null,
          distinct ? h('td', { class: 'num' }, fmtInt(x.distinct)) : null,
          h(
            'td',
            null,
            h('span', { class: `badge badge-${x.source.toLowerCase()}` }, x.source.toLowerCase()),
            x.provisional ? h('span', { class: 'dot-provisional', title: 'provisional: may change at the next batch run' }) : null,
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Percentiles over the range

/** The key's p50 ... p99 over the range on display (the windows' sketches added), and the accuracy. */
export function renderRangePercentiles(
  t: { count: number; p50: number | null; p90: number | null; p95: number | null; p99: number | null },
  value: string,
  accuracy: number | null,
): Child {
  const cells = (['p50', 'p90', 'p95', 'p99'] as const).map((p) => [p, t[p]] as const);
  return h(
    'table',
    { class: 'table percentiles', 'data-testid': 'range-percentiles' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, `${value} over the range`),
        cells.map(([p]) => h('th', { class: 'num' }, p)),
      ),
    ),
    h(
      'tbody',
      null,
      h(
        'tr',
        null,
        h('td', { class: 'muted' }, `${fmtInt(t.count)} events, each within ±${fmtNumber((accuracy ?? 0) * 100)} %`),
        cells.map(([p, v]) => h('td', { class: 'num', 'data-percentile': p, 'data-value': v ?? '' }, v === null ? DASH : fmtNumber(v))),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Pipeline

export function renderPipeline(p: PipelineStatus, now = Date.now()): Child {
  const { speed, batch, serving } = p;
  const lastRun = batch.lastRun;
  const checkpointAt = parseTime(speed.lastCheckpoint?.at);
  const maxLag = speed.partitions.reduce<number | null>((m, x) => (x.lag === null ? m : Math.max(m ?? 0, x.lag)), null);
  const freshness = serving.speedView.freshnessMs;
  const stats = h(
    'div',
    { class: 'stats stats-3' },
    stat(
      'speed layer',
      speed.eventsPerSecond === null ? DASH : `${fmtNumber(speed.eventsPerSecond)}/s`,
      `${speed.instances.length} instance${speed.instances.length === 1 ? '' : 's'}`,
      speed.instances.length === 0 ? 'warn' : undefined,
    ),
    stat(
      'max lag',
      maxLag === null ? DASH : fmtInt(maxLag),
      'records behind the log',
      maxLag !== null && maxLag > 10_000 ? 'warn' : undefined,
    ),
    stat(
      'freshness',
      freshness === null ? DASH : fmtDuration(freshness),
      'now − latest processing time',
      freshness !== null && freshness > 60_000 ? 'warn' : undefined,
    ),
    stat(
      'last checkpoint',
      ago(checkpointAt, now),
      speed.lastCheckpoint ? `${fmtBytes(speed.lastCheckpoint.bytes)} in ${fmtDuration(speed.lastCheckpoint.durationMs)}` : 'none yet',
    ),
    stat(
      'last batch run',
      lastRun ? ago(parseTime(lastRun.finishedAt), now) : 'none yet',
      lastRun
        ? `${fmtDuration(lastRun.durationMs)} · ${fmtInt(lastRun.uniqueEvents)} events`
        : h('span', null, 'run ', code('lk batch run')),
      lastRun ? undefined : 'warn',
    ),
    stat(
      'next batch run',
      batch.nextRunAt ? ago(parseTime(batch.nextRunAt), now) : DASH,
      batch.lakeFiles !== null ? `lake: ${fmtInt(batch.lakeFiles)} files, ${fmtBytes(batch.lakeBytes)}` : undefined,
    ),
  );
  const problems = [
    ...speed.unreadable.map((u) => `speed status: ${u}`),
    ...(batch.unreadable ? [`batch status: ${batch.unreadable}`] : []),
    ...(serving.speedView.lastError ? [`speed view: ${serving.speedView.lastError}`] : []),
    ...(serving.batchView?.lastError ? [`batch view: ${serving.batchView.lastError}`] : []),
  ];
  const partitions =
    speed.partitions.length === 0
      ? emptyState(
          'No speed instance has reported yet.',
          'Start ',
          code('lk speed'),
          ' with the same ',
          code('--data-dir'),
          ' as ',
          code('lk serve'),
          ': it writes a status file every checkpoint.',
        )
      : h(
          'table',
          { class: 'table', 'data-testid': 'partitions' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              h('th', null, 'partition'),
              h('th', { class: 'num' }, 'committed'),
              h('th', { class: 'num' }, 'end'),
              h('th', { class: 'num' }, 'lag'),
              h('th', null, 'watermark'),
            ),
          ),
          h(
            'tbody',
            null,
            speed.partitions.map((x) => {
              const wm = parseTime(x.watermark);
              return h(
                'tr',
                { 'data-partition': x.partition },
                h('td', null, String(x.partition)),
                h('td', { class: 'num' }, fmtInt(x.committedOffset)),
                h('td', { class: 'num' }, fmtInt(x.endOffset)),
                h('td', { class: `num${x.lag !== null && x.lag > 0 ? ' warn-text' : ''}` }, fmtInt(x.lag)),
                h(
                  'td',
                  null,
                  wm === null ? DASH : `${fmtTime(wm)}`,
                  wm === null ? null : h('span', { class: 'muted' }, ' · ', ago(wm, now)),
                ),
              );
            }),
          ),
        );
  const views = h(
    'div',
    { class: 'view-line' },
    h('span', { class: `pill ${serving.ready ? 'pill-ok' : 'pill-warn'}` }, serving.ready ? 'serving ready' : 'serving catching up'),
    h('span', null, 'speed view ', code(serving.speedView.topic), ` · ${fmtInt(serving.speedView.rows)} rows`),
    h(
      'span',
      null,
      'batch view ',
      serving.batchView ? code(serving.batchView.runId) : 'none',
      serving.batchView ? [` · ${fmtInt(serving.batchView.rows)} rows, `, ago(now - serving.batchView.ageMs, now)] : '',
    ),
    h('span', null, `${fmtInt(serving.subscriptions)} live subscription${serving.subscriptions === 1 ? '' : 's'}`),
  );
  return [
    stats,
    views,
    problems.length
      ? h(
          'ul',
          { class: 'problems' },
          problems.map((t) => h('li', null, t)),
        )
      : null,
    partitions,
  ];
}

// ---------------------------------------------------------------------------------------------
// Dead letters

export function renderDeadLetters(d: DeadLetters, now = Date.now()): Child {
  const head = h(
    'div',
    { class: 'dlq-head' },
    h('div', { class: 'dlq-total', 'data-testid': 'dead-letters-total' }, fmtInt(d.total)),
    h(
      'div',
      { class: 'muted' },
      'in ',
      code(d.topic),
      h('br'),
      d.lastAt ? ['latest ', ago(parseTime(d.lastAt), now)] : d.caughtUp ? 'none so far' : 'reading the topic…',
    ),
  );
  if (d.lastError && !d.topicExists) return [head, errorState(`cannot read ${d.topic}: ${d.lastError}`)];
  if (!d.topicExists)
    return [
      head,
      emptyState(
        `No dead-letter topic ${d.topic} yet.`,
        code('lk topics create'),
        ' creates it next to the events topic; ',
        code('lk serve --topic NAME'),
        ' picks another events topic.',
      ),
    ];
  if (d.total === 0) return [head, emptyState('No dead letters.', 'Every line ingested so far was a valid event.')];
  const max = d.byReason[0]?.count || 1;
  const note = h(
    'p',
    { class: 'dlq-note' },
    'Lines that were not valid events, kept whole with the reason: written by ',
    code('lk produce'),
    ' / ',
    code('lk generate --to-log'),
    ' and by the batch layer’s lake writer. Nothing is dropped silently.',
  );
  return [
    head,
    h(
      'ul',
      { class: 'reasons', 'data-testid': 'dead-letter-reasons' },
      d.byReason.map((r) =>
        h(
          'li',
          { 'data-reason': r.reason, 'data-count': r.count, title: r.lastMessage ?? r.reason },
          h('div', { class: 'reason-line' }, h('span', { class: 'reason' }, r.reason), h('span', { class: 'num' }, fmtInt(r.count))),
          bar(r.count / max, r.reason === 'unreadable' ? '#ff6b6b' : '#b88cff'),
          r.lastMessage ? h('div', { class: 'reason-msg' }, r.lastMessage) : null,
        ),
      ),
    ),
    note,
  ];
}

// ---------------------------------------------------------------------------------------------
// Reconciliation

export function renderReconciliation(r: Reconciliation, metric: string): Child {
  const closedBefore = parseTime(r.closedBefore);
  const agree = r.disagreeingKeys === 0;
  const d = r.duplicates;
  const stats = h(
    'div',
    { class: 'stats' },
    stat(
      'keys compared',
      fmtInt(r.keysCompared),
      `${fmtInt(r.windowsCompared)} closed windows${r.windowsPending ? `, ${fmtInt(r.windowsPending)} pending` : ''}`,
    ),
    stat(
      'disagreeing keys',
      fmtInt(r.disagreeingKeys),
      agree ? 'batch = speed' : 'speed − batch ≠ 0',
      r.keysCompared === 0 ? undefined : agree ? 'ok' : 'bad',
    ),
    stat('batch count', fmtInt(r.batchCount), 'closed windows, batch rows'),
    stat('speed count', fmtInt(r.speedCount), 'closed windows, speed rows'),
  );
  const dupes = h(
    'div',
    { class: 'dupes', 'data-testid': 'duplicates' },
    h('div', { class: 'dupes-title' }, 'duplicate share'),
    h(
      'div',
      { class: 'dupes-grid' },
      h('span', null, 'before dedup (range)'),
      h('strong', null, fmtShare(d.rangeBeforeDedup)),
      h('span', null, 'before dedup (whole run)'),
      h('strong', null, fmtShare(d.runBeforeDedup)),
      h('span', null, 'after dedup: batch'),
      h('strong', { class: 'ok-text' }, fmtShare(d.batchAfterDedup)),
      h('span', null, 'after dedup: speed'),
      h('strong', { class: d.speedAfterDedup ? 'bad-text' : 'ok-text' }, fmtShare(d.speedAfterDedup)),
    ),
    d.speedDuplicatesDropped !== null
      ? h('div', { class: 'muted small' }, `${fmtInt(d.speedDuplicatesDropped)} duplicates dropped by the speed layer`)
      : null,
  );
  let detail: Child;
  if (!r.batchRunId)
    detail = emptyState('No batch run yet.', 'Reconciliation compares the speed view with a batch run: run ', code('lk batch run'), '.');
  else if (closedBefore === null)
    detail = emptyState(
      'No closed window yet.',
      'A window is compared once every partition’s speed watermark has passed its end plus the allowed lateness.',
    );
  else if (r.keysCompared === 0)
    detail = emptyState('No key with closed windows in this range yet.', 'Pick a longer range, or wait for the speed watermark to pass.');
  else {
    // Batch vs speed per key: the disagreeing keys first (largest difference), then the busiest.
    const keys = [...r.keys]
      .sort((a, b) => Math.abs(b.difference) - Math.abs(a.difference) || b.batchCount - a.batchCount || (a.key < b.key ? -1 : 1))
      .slice(0, 8);
    detail = [
      agree
        ? h(
            'div',
            { class: 'agree' },
            `✓ Batch and speed agree on every key of ${metric} over ${fmtInt(r.windowsCompared)} closed windows (before ${fmtTime(closedBefore)}).`,
          )
        : null,
      h(
        'table',
        { class: 'table', 'data-testid': 'reconciliation-keys' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', null, 'key'),
            h('th', { class: 'num' }, 'batch'),
            h('th', { class: 'num' }, 'speed'),
            h('th', { class: 'num' }, 'speed − batch'),
            h('th', { class: 'num' }, 'windows differing'),
          ),
        ),
        h(
          'tbody',
          null,
          keys.map((k) =>
            h(
              'tr',
              { 'data-key': k.key },
              h('td', { class: 'key' }, k.key),
              h('td', { class: 'num' }, fmtInt(k.batchCount)),
              h('td', { class: 'num' }, fmtInt(k.speedCount)),
              h(
                'td',
                { class: `num ${k.difference === 0 ? 'ok-text' : 'bad-text'}` },
                `${k.difference > 0 ? '+' : ''}${fmtInt(k.difference)}`,
              ),
              h('td', { class: 'num muted' }, `${fmtInt(k.disagreeingWindows)} of ${fmtInt(k.windows)}`),
            ),
          ),
        ),
      ),
      r.keys.length > keys.length
        ? h('div', { class: 'muted small table-more' }, `${fmtInt(r.keys.length - keys.length)} more keys`)
        : null,
    ];
  }
  return [stats, dupes, detail];
}

// ---------------------------------------------------------------------------------------------
// Versions

export interface VersionActions {
  promote(version: string, force: boolean): void;
  /** The previous default's button: the rollback mutation. */
  rollback(version: string, force: boolean): void;
  /** What the caller's role may do (viewer.permissions): the other buttons are not shown. */
  canPromote: boolean;
  canRollback: boolean;
  /** A promotion waiting for its confirmation click. */
  confirming: string | null;
  busy: boolean;
}

const STATE_TONE: Record<string, string> = { LIVE: 'ok', CAUGHT_UP: 'ok', REPLAYING: 'info', STOPPED: 'warn', RETIRED: 'muted' };

function progress(v: JobVersion): Child {
  if (v.percentDone === null) return h('span', { class: 'muted' }, v.origin === 'live' ? 'from the live end' : DASH);
  const eta = v.etaSeconds === null ? null : fmtDuration(v.etaSeconds * 1000);
  return h(
    'div',
    { class: 'progress' },
    bar(v.percentDone / 100, v.percentDone >= 100 ? '#3ecf8e' : '#5b9cff'),
    h('span', { class: 'small' }, `${v.percentDone.toFixed(1)} %${eta && v.percentDone < 100 ? ` · ETA ${eta}` : ''}`),
  );
}

export function renderVersions(vs: Versions, actions: VersionActions): Child {
  if (vs.versions.length === 0)
    return emptyState(
      'No job version yet.',
      code('lk speed'),
      ' creates ',
      code('v1'),
      '; a replay creates the next one (see ',
      code('lk versions'),
      ').',
    );
  return h(
    'table',
    { class: 'table versions', 'data-testid': 'versions' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, 'version'),
        h('th', null, 'state'),
        h('th', null, 'replay'),
        h('th', { class: 'num' }, 'max lag'),
        h('th', { class: 'num' }, 'events/s'),
        h('th', null, 'batch run'),
        h('th', null, ''),
      ),
    ),
    h(
      'tbody',
      null,
      vs.versions.map((v) => {
        let action: Child = null;
        const isRollback = v.name === vs.previous;
        const allowed = isRollback ? actions.canRollback : actions.canPromote;
        if (v.state !== 'RETIRED' && v.name !== vs.default && allowed) {
          const confirming = actions.confirming === v.name;
          action = h(
            'button',
            {
              class: confirming ? 'btn btn-danger' : 'btn',
              'data-promote': v.name,
              disabled: actions.busy,
              onclick: () => (isRollback ? actions.rollback(v.name, false) : actions.promote(v.name, false)),
            },
            confirming ? `Confirm: make ${v.name} the default` : isRollback ? 'Roll back to this' : 'Promote',
          );
        }
        return h(
          'tr',
          { 'data-version': v.name, 'data-state': v.state },
          h('td', { class: 'key' }, v.name, v.name === vs.default ? h('span', { class: 'badge badge-default' }, 'default') : null),
          h('td', null, h('span', { class: `state state-${STATE_TONE[v.state] ?? 'muted'}` }, v.state.replace('_', ' ').toLowerCase())),
          h('td', null, progress(v)),
          h('td', { class: 'num' }, fmtInt(v.maxLag)),
          h('td', { class: 'num' }, fmtNumber(v.eventsPerSecond)),
          h('td', { class: 'small' }, v.lastBatchRun ? ago(parseTime(v.lastBatchRun.finishedAt)) : h('span', { class: 'muted' }, 'none')),
          h('td', { class: 'actions' }, action),
        );
      }),
    ),
  );
}
