/// <reference lib="dom" />
/**
 * The live dashboard `lk serve` serves at /: pick a metric, a key (the top keys are offered) and a
 * range; see the merged series with the view that answered each window (batch or speed) and the
 * provisional ones, as tumbling windows of any declared size or as hopping windows (a size every
 * advance), of any measure (count, sum, avg, min, max, distinct, the percentiles p50 / p95 / p99
 * with a table of the range's p50 ... p99), for a one-field or a composite key (one box per
 * part), the top keys, the pipeline (lag and watermark per partition, checkpoints,
 * batch runs), dead letters by reason, reconciliation, and the job versions with promotion and
 * rollback.
 *
 * Data: GraphQL on the same origin. The chart reads `seriesColumns`; `windowUpdated` (graphql-ws)
 * pushes the windows the speed layer changes, applied in place; the pipeline and versions are
 * polled every few seconds, the series again whenever a new batch run is installed and as the
 * range moves on; hopping windows are asked again when a pushed window changes one of their
 * tumbling windows. The selection lives in the address
 * (?metric=&key=[&key=...]&range=&g=&measure=&window=hopping&size=).
 */
import type { Client } from 'graphql-ws';
import { readTokenFromFragment } from './auth.ts';
import { COLORS, SeriesChart, columnsOf, columnsOfRows, type DrawnSummary, type Measure } from './chart.ts';
import { GraphQLRequestError, gql, liveClient, type LiveState } from './client.ts';
import { byId, fill, h } from './dom.ts';
import { fmtDuration, fmtInt, fmtNumber, fmtTime } from './format.ts';
import {
  INIT,
  PERCENTILE_MEASURES,
  PROMOTE,
  RANGE_PERCENTILES,
  SESSIONS,
  ROLLBACK,
  RECONCILIATION,
  STATUS,
  TOP_KEYS,
  WINDOW_UPDATED,
  seriesQuery,
  hoppingQuery,
  keyVariables,
  percentileSeriesQuery,
  granularityLabel,
  windowMsOf,
  windowOriginOf,
  type GranularityName,
  type HoppingAnswer,
  type InitAnswer,
  type PercentileSeriesAnswer,
  type RangePercentilesAnswer,
  type SessionsAnswer,
  type KeyTotal,
  type MetricDefinition,
  type PromoteAnswer,
  type RollbackAnswer,
  type ReconciliationAnswer,
  type SeriesAnswer,
  type StatusAnswer,
  type TopKeysAnswer,
  type WindowValue,
} from './operations.ts';
import {
  ago,
  emptyState,
  errorState,
  renderDeadLetters,
  renderPipeline,
  renderRangePercentiles,
  renderSessions,
  renderReconciliation,
  renderTopKeys,
  renderVersions,
  tickRelativeTimes,
} from './panels.ts';

const STATUS_POLL_MS = 5_000;
const SELECTION_REFRESH_MS = 30_000;
const HOUR = 3_600_000;
const RANGES = [
  { label: '1 h', ms: HOUR },
  { label: '6 h', ms: 6 * HOUR },
  { label: '24 h', ms: 24 * HOUR },
  { label: '7 d', ms: 7 * 24 * HOUR },
  { label: '30 d', ms: 30 * 24 * HOUR },
];
/**
 * Ranges a granularity is offered for: the server's default --max-range-minute is 7 d, -hour
 * 92 d; another size may span as many windows as the named size below it (granularityScalar.ts).
 */
function maxRange(g: GranularityName): number {
  const ms = windowMsOf(g);
  return ms >= 24 * HOUR ? Infinity : ms >= HOUR ? 92 * 24 * ms : 7 * 24 * 60 * ms;
}
function minRange(g: GranularityName): number {
  const ms = windowMsOf(g);
  return ms >= 24 * HOUR ? 7 * ms : ms >= HOUR ? 6 * ms : 0;
}

/** Hopping window sizes offered: those that are a multiple of the advance, 2 to 1,000 times it. */
const HOP_SIZES = ['2m', '5m', '10m', '15m', '30m', '1h', '2h', '3h', '6h', '12h', '1d', '2d', '7d'];
function hopSizesFor(advance: GranularityName): GranularityName[] {
  const step = windowMsOf(advance);
  return HOP_SIZES.filter((size) => {
    const ms = windowMsOf(size);
    return ms > step && ms % step === 0 && ms / step <= 1000;
  });
}
/** A hopping size as people say it: 1h, 1d (the controls and the title). */
function sizeLabel(size: GranularityName): string {
  return granularityLabel(size);
}

type WindowKind = 'tumbling' | 'hopping';

interface Selection {
  metric: string;
  /** The key's parts (one for a one-field key), or null before one is known. */
  key: string[] | null;
  /** The user chose the key (else it follows the top key). */
  keyPinned: boolean;
  rangeMs: number;
  /** The tumbling windows' size; for hopping windows, their advance. */
  granularity: GranularityName;
  kind: WindowKind;
  /** The hopping windows' size (a multiple of granularity). */
  hopSize: GranularityName;
  measure: Measure;
}

const sameKey = (a: readonly string[] | null, b: readonly string[] | null) =>
  a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]);
/**
 * A key's text from its parts, as `sessions` takes it (it has no keyParts): the parts joined by
 * |, each | and \ in a part escaped (services/metrics/fieldSemantics.ts compositeKeyText, the
 * wire format restated for the browser).
 */
const keyText = (parts: readonly string[]) =>
  parts.length === 1 ? parts[0]! : parts.map((p) => p.replace(/\\/g, '\\\\').replace(/\|/g, '\\|')).join('|');
/** A key's parts as one line of text (titles, notes): the parts joined by " · ". */
const keyLabel = (parts: readonly string[] | null) => (parts === null ? 'no key' : parts.join(' · '));

function errorText(err: unknown): string {
  if (err instanceof GraphQLRequestError) return err.code ? `${err.message} (${err.code})` : err.message;
  return err instanceof Error ? err.message : String(err);
}

/** [from, to): whole windows, ending with the current one (so the newest window shows as it fills). */
function rangeOf(s: Selection, now = Date.now()): { from: number; to: number } {
  const g = windowMsOf(s.granularity);
  const origin = windowOriginOf(s.granularity);
  const to = (Math.floor((now - origin) / g) + 1) * g + origin;
  return { from: to - Math.max(1, Math.ceil(s.rangeMs / g)) * g, to };
}

class Dashboard {
  private metrics: MetricDefinition[] = [];
  private sel!: Selection;
  private chart!: SeriesChart;
  private live: Client | undefined;
  private unsubscribe: (() => void) | undefined;
  private liveState: LiveState = 'connecting';
  private topKeys: KeyTotal[] = [];
  private lastBatchRun: string | null | undefined;
  private seq = { series: 0, top: 0, recon: 0, pct: 0 };
  /** Hopping windows: a pushed tumbling window asks them again, at most once a second. */
  private hoppingRefresh = 0;
  private promoting = { confirming: null as string | null, busy: false, timer: 0 };
  private status: StatusAnswer | undefined;
  private renderedVersions = '';

  async start(): Promise<void> {
    readTokenFromFragment();
    this.layout();
    let init: InitAnswer;
    try {
      init = await gql<InitAnswer>(INIT);
    } catch (err) {
      fill(byId('chart-note'), errorState(`cannot load the metric definitions: ${errorText(err)}`));
      return;
    }
    this.metrics = init.metrics;
    if (this.metrics.length === 0) {
      this.chart.setEmptyNote(emptyState('No metric is defined.', 'Add metrics to metrics.yaml (docs/metrics.md) and restart lk serve.'));
      return;
    }
    this.sel = this.initialSelection();
    this.renderControls();
    this.live = liveClient((state) => this.setLiveState(state));
    await Promise.all([this.refreshSelection(), this.pollStatus()]);
    setInterval(() => void this.pollStatus(), STATUS_POLL_MS);
    setInterval(() => void this.refreshSelection(), SELECTION_REFRESH_MS);
    // Relative times ("12 s ago") move on between polls, in place.
    setInterval(() => tickRelativeTimes(), 1000);
  }

  // -------------------------------------------------------------------------------------------
  // Layout and controls

  private layout(): void {
    const app = byId('app');
    fill(
      app,
      h(
        'header',
        { class: 'topbar' },
        h(
          'div',
          { class: 'brand' },
          h('img', { src: 'assets/favicon.svg', alt: '', width: 28, height: 28 }),
          h(
            'div',
            null,
            h('div', { class: 'brand-name' }, 'lambda-kappa'),
            h('div', { class: 'brand-sub' }, 'real-time + batch analytics over one log'),
          ),
        ),
        h(
          'div',
          { class: 'topbar-right' },
          h('span', { id: 'viewer', class: 'pill pill-muted', 'data-testid': 'viewer', title: 'who this page is signed in as' }),
          h('span', { id: 'default-version', class: 'pill pill-muted', title: 'the job version answering queries' }, 'version …'),
          h('span', { id: 'live-state', class: 'pill pill-warn', 'data-state': 'connecting' }, 'connecting…'),
          h(
            'a',
            { class: 'btn btn-link', href: 'graphql', target: '_blank', rel: 'noopener', 'data-testid': 'explorer-link' },
            'GraphQL explorer ↗',
          ),
        ),
      ),
      h('section', { class: 'controls', id: 'controls' }),
      h(
        'main',
        { class: 'grid' },
        h(
          'section',
          { class: 'panel span-9', id: 'chart-panel' },
          h(
            'div',
            { class: 'panel-head' },
            h('h2', { id: 'chart-title' }, 'Merged series'),
            h(
              'div',
              { class: 'legend' },
              h('span', null, h('i', { class: 'swatch', style: `background:${COLORS.batch}` }), 'batch view'),
              h('span', null, h('i', { class: 'swatch', style: `background:${COLORS.speed}` }), 'speed view'),
              h('span', null, h('i', { class: 'swatch swatch-dot', style: `border-color:${COLORS.provisional}` }), 'provisional'),
            ),
          ),
          h('div', { class: 'summary', id: 'chart-summary' }),
          h('div', { id: 'chart-host' }),
          h('div', { id: 'chart-note' }),
          h('div', { id: 'range-percentiles', hidden: true }),
          h('div', { id: 'sessions' }),
        ),
        h(
          'section',
          { class: 'panel span-3', id: 'top-keys-panel' },
          h('div', { class: 'panel-head' }, h('h2', null, 'Top keys')),
          h('div', { id: 'top-keys' }),
        ),
        h(
          'section',
          { class: 'panel span-7', id: 'pipeline-panel', 'data-testid': 'pipeline-panel' },
          h('div', { class: 'panel-head' }, h('h2', null, 'Pipeline'), h('span', { class: 'muted small', id: 'pipeline-updated' })),
          h('div', { id: 'pipeline' }, h('div', { class: 'loading' }, 'loading…')),
        ),
        h(
          'section',
          { class: 'panel span-5', id: 'dead-letters-panel', 'data-testid': 'dead-letters-panel' },
          h('div', { class: 'panel-head' }, h('h2', null, 'Dead letters by reason')),
          h('div', { id: 'dead-letters' }, h('div', { class: 'loading' }, 'loading…')),
        ),
        h(
          'section',
          { class: 'panel span-6', id: 'reconciliation-panel' },
          h(
            'div',
            { class: 'panel-head' },
            h('h2', null, 'Reconciliation'),
            h('span', { class: 'muted small', id: 'reconciliation-scope' }),
          ),
          h('div', { id: 'reconciliation' }, h('div', { class: 'loading' }, 'loading…')),
        ),
        h(
          'section',
          { class: 'panel span-6', id: 'versions-panel', 'data-testid': 'versions-panel' },
          h('div', { class: 'panel-head' }, h('h2', null, 'Job versions'), h('span', { class: 'muted small', id: 'versions-note' })),
          h('div', { id: 'promote-message', 'data-testid': 'promote-message' }),
          h('div', { id: 'versions' }, h('div', { class: 'loading' }, 'loading…')),
        ),
      ),
      h(
        'footer',
        { class: 'footer' },
        'GraphQL at ',
        h('a', { href: 'graphql' }, '/graphql'),
        ' · subscriptions over WebSocket on the same path · ',
        h('a', { href: 'metrics' }, '/metrics'),
        ' · ',
        h('a', { href: 'readyz' }, '/readyz'),
      ),
    );
    this.chart = new SeriesChart(byId('chart-host'), (s) => this.renderSummary(s));
  }

  private initialSelection(): Selection {
    const q = new URLSearchParams(location.search);
    const metric = this.metrics.find((m) => m.name === q.get('metric')) ?? this.metrics[0]!;
    const gq = q.get('g') as GranularityName | null;
    // A session metric has no window sizes: its range is counted in minutes.
    const granularity = gq && metric.granularities.includes(gq) ? gq : (metric.granularities[0] ?? 'MINUTE');
    const rangeQ = Number(q.get('range'));
    const size = windowMsOf(granularity);
    const rangeMs = RANGES.some((r) => r.ms === rangeQ) ? rangeQ : size >= 24 * HOUR ? 7 * 24 * HOUR : size >= HOUR ? 24 * HOUR : HOUR;
    const measureQ = q.get('measure') as Measure | null;
    const parts = q.getAll('key');
    const key = parts.length === (metric.keyParts?.length ?? 1) ? parts : null;
    const sizes = hopSizesFor(granularity);
    const sizeQ = q.get('size');
    const kind: WindowKind = q.get('window') === 'hopping' && sizes.length > 0 ? 'hopping' : 'tumbling';
    const hopSize =
      sizeQ && sizes.includes(sizeQ) ? sizeQ : (sizes.find((x) => windowMsOf(x) >= 12 * windowMsOf(granularity)) ?? sizes[0] ?? '');
    const sel: Selection = {
      metric: metric.name,
      key,
      keyPinned: key !== null,
      rangeMs,
      granularity,
      kind,
      hopSize,
      measure: 'count',
    };
    sel.measure = measureQ && this.measures(metric).includes(measureQ) ? measureQ : 'count';
    this.fitRange(sel);
    return sel;
  }

  private measures(def: MetricDefinition): Measure[] {
    return [
      'count',
      ...(def.value ? (['sum', 'avg', 'min', 'max'] as Measure[]) : []),
      ...(def.distinct ? (['distinct'] as Measure[]) : []),
      ...(def.percentileAccuracy !== null ? PERCENTILE_MEASURES : []),
    ];
  }

  private get def(): MetricDefinition {
    return this.metrics.find((m) => m.name === this.sel.metric)!;
  }

  /** Keeps the range within what the granularity is offered for. */
  private fitRange(s: Selection): void {
    const fits = (ms: number) => ms <= maxRange(s.granularity) && ms >= minRange(s.granularity);
    if (!fits(s.rangeMs)) s.rangeMs = RANGES.find((r) => fits(r.ms))?.ms ?? s.rangeMs;
  }

  private writeAddress(): void {
    const q = new URLSearchParams();
    q.set('metric', this.sel.metric);
    if (this.sel.key !== null && this.sel.keyPinned) for (const part of this.sel.key) q.append('key', part);
    q.set('range', String(this.sel.rangeMs));
    q.set('g', this.sel.granularity);
    if (this.sel.kind === 'hopping') {
      q.set('window', 'hopping');
      q.set('size', this.sel.hopSize);
    }
    if (this.sel.measure !== 'count') q.set('measure', this.sel.measure);
    history.replaceState(null, '', `${location.pathname}?${q}${location.hash}`);
  }

  private change(update: Partial<Selection>): void {
    Object.assign(this.sel, update);
    const def = this.def;
    if (!def.granularities.includes(this.sel.granularity)) this.sel.granularity = def.granularities[0] ?? 'MINUTE';
    if (!this.measures(def).includes(this.sel.measure)) this.sel.measure = 'count';
    // A hopping size stays a multiple of the advance (else the one nearest an hour's worth).
    const sizes = hopSizesFor(this.sel.granularity);
    if (!sizes.includes(this.sel.hopSize))
      this.sel.hopSize = sizes.find((x) => windowMsOf(x) >= 12 * windowMsOf(this.sel.granularity)) ?? sizes[0] ?? '';
    if (sizes.length === 0) this.sel.kind = 'tumbling';
    this.fitRange(this.sel);
    this.writeAddress();
    this.renderControls();
    void this.refreshSelection();
  }

  private renderControls(): void {
    const s = this.sel;
    const def = this.def;
    const segmented = <T extends string | number>(
      name: string,
      options: { label: string; value: T; disabled?: boolean }[],
      current: T,
      pick: (v: T) => void,
    ) =>
      h(
        'div',
        { class: 'segmented', role: 'group', 'aria-label': name, 'data-control': name },
        options.map((o) =>
          h(
            'button',
            {
              type: 'button',
              class: o.value === current ? 'seg active' : 'seg',
              'aria-pressed': o.value === current ? 'true' : 'false',
              disabled: o.disabled,
              'data-value': o.value,
              onclick: () => pick(o.value),
            },
            o.label,
          ),
        ),
      );
    // One box per part of the key (one for a one-field key), each named by its field.
    const fields = def.keyParts ?? [def.key];
    const keyInputs = fields.map((field, i) =>
      h('input', {
        id: fields.length === 1 ? 'key-input' : `key-input-${i}`,
        list: fields.length === 1 ? 'key-options' : undefined,
        class: 'key-part',
        value: s.key?.[i] ?? '',
        placeholder: fields.length === 1 ? 'a key, e.g. the top one' : field,
        spellcheck: 'false',
        autocomplete: 'off',
        'aria-label': fields.length === 1 ? 'key' : `key part ${field}`,
        'data-testid': 'key-part',
        'data-field': field,
      }),
    );
    const commitKey = () => {
      const parts = keyInputs.map((input) => input.value.trim());
      if (parts.every((p) => p !== '')) {
        if (!sameKey(parts, this.sel.key)) this.change({ key: parts, keyPinned: true });
      } else if (parts.every((p) => p === '') && this.sel.keyPinned) this.change({ key: null, keyPinned: false });
    };
    for (const input of keyInputs) {
      input.addEventListener('change', commitKey);
      input.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') commitKey();
      });
    }
    const hopSizes = hopSizesFor(s.granularity);
    const measureLabel = (m: Measure) =>
      m === 'distinct'
        ? `distinct ${def.distinct}`
        : m === 'count'
          ? 'count'
          : PERCENTILE_MEASURES.includes(m)
            ? `${m} of ${def.value} (±${((def.percentileAccuracy ?? 0) * 100).toFixed(1)} %)`
            : `${m} of ${def.value}`;
    fill(
      byId('controls'),
      h(
        'label',
        { class: 'control' },
        h('span', null, 'metric'),
        h(
          'select',
          {
            id: 'metric-select',
            'aria-label': 'metric',
            onchange: (e: Event) => this.change({ metric: (e.target as HTMLSelectElement).value, key: null, keyPinned: false }),
          },
          this.metrics.map((m) => h('option', { value: m.name, selected: m.name === s.metric }, m.name)),
        ),
      ),
      h(
        'label',
        { class: 'control control-key', 'data-testid': 'key-control' },
        h('span', null, fields.length === 1 ? 'key' : `key (${fields.join(', ')})`),
        h('div', { class: 'key-parts' }, keyInputs),
        h(
          'datalist',
          { id: 'key-options' },
          fields.length === 1 ? this.topKeys.map((k) => h('option', { value: k.keyParts[0] ?? k.key })) : null,
        ),
      ),
      h(
        'div',
        { class: 'control' },
        h('span', null, 'range'),
        segmented(
          'range',
          RANGES.map((r) => ({
            label: r.label,
            value: r.ms,
            disabled: r.ms > maxRange(s.granularity) || r.ms < minRange(s.granularity),
          })),
          s.rangeMs,
          (ms) => this.change({ rangeMs: ms }),
        ),
      ),
      def.sessionGapMs !== null
        ? h(
            'div',
            { class: 'control', 'data-control': 'sessions' },
            h('span', null, 'windows'),
            h('div', { class: 'control-static' }, `sessions, gap ${fmtDuration(def.sessionGapMs)}`),
          )
        : null,
      def.sessionGapMs !== null
        ? null
        : h(
            'div',
            { class: 'control' },
            h('span', null, 'windows'),
            segmented(
              'granularity',
              // minute, hour and day always (greyed when the metric has none), then its other sizes.
              [...new Set(['MINUTE', 'HOUR', 'DAY', ...def.granularities])].map((g) => ({
                label: granularityLabel(g),
                value: g,
                disabled: !def.granularities.includes(g),
              })),
              s.granularity,
              (g) => this.change({ granularity: g }),
            ),
          ),
      def.sessionGapMs !== null
        ? null
        : h(
            'div',
            { class: 'control' },
            h('span', null, 'kind'),
            segmented(
              'kind',
              [
                { label: 'tumbling', value: 'tumbling' as WindowKind },
                {
                  label: `hopping, every ${granularityLabel(s.granularity)}`,
                  value: 'hopping' as WindowKind,
                  disabled: hopSizes.length === 0,
                },
              ],
              s.kind,
              (kind) => this.change({ kind }),
            ),
          ),
      s.kind === 'hopping' && def.sessionGapMs === null
        ? h(
            'div',
            { class: 'control' },
            h('span', null, 'size'),
            segmented(
              'hop-size',
              hopSizes.map((size) => ({ label: sizeLabel(size), value: size })),
              s.hopSize,
              (hopSize) => this.change({ hopSize }),
            ),
          )
        : null,
      h(
        'label',
        { class: 'control' },
        h('span', null, 'measure'),
        h(
          'select',
          {
            id: 'measure-select',
            'aria-label': 'measure',
            onchange: (e: Event) => this.change({ measure: (e.target as HTMLSelectElement).value as Measure }),
          },
          this.measures(def).map((m) => h('option', { value: m, selected: m === s.measure }, measureLabel(m))),
        ),
      ),
      h(
        'div',
        { class: 'control-note muted small' },
        def.description ?? '',
        def.description ? ' · ' : '',
        'key: ',
        h('code', null, def.key),
      ),
    );
  }

  // -------------------------------------------------------------------------------------------
  // The selection: top keys, chart, subscription, reconciliation

  private async refreshSelection(): Promise<void> {
    await this.refreshTopKeys();
    await Promise.all([this.refreshSeries(), this.refreshReconciliation()]);
  }

  private async refreshTopKeys(): Promise<void> {
    const seq = ++this.seq.top;
    const s = this.sel;
    const { from, to } = rangeOf(s);
    if (this.def.sessionGapMs !== null) {
      // topKeys ranks windows; a session metric has none: its key is typed.
      this.topKeys = [];
      fill(
        byId('top-keys'),
        emptyState(`Top keys rank windows; ${s.metric} has sessions.`, 'Type a key (', h('code', null, this.def.key), ') above.'),
      );
      return;
    }
    try {
      const d = await gql<TopKeysAnswer>(TOP_KEYS, {
        metric: s.metric,
        granularity: s.granularity,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
      });
      if (seq !== this.seq.top) return;
      this.topKeys = d.topKeys;
      if (!s.keyPinned) {
        const key = this.topKeys[0]?.keyParts ?? null;
        if (!sameKey(key, s.key)) {
          s.key = key;
          document.querySelectorAll<HTMLInputElement>('input.key-part').forEach((input, i) => (input.value = key?.[i] ?? ''));
        }
      }
      const def = this.def;
      fill(byId('key-options'), def.keyParts === null ? this.topKeys.map((k) => h('option', { value: k.keyParts[0] ?? k.key })) : null);
      fill(
        byId('top-keys'),
        renderTopKeys(this.topKeys, s.key, (key) => this.change({ key, keyPinned: true }), s.metric, def.keyParts),
      );
    } catch (err) {
      if (seq === this.seq.top) fill(byId('top-keys'), errorState(errorText(err)));
    }
  }

  private async refreshSeries(): Promise<void> {
    const seq = ++this.seq.series;
    const s = { ...this.sel };
    const def = this.def;
    const range = rangeOf(s);
    const rangeLabel = RANGES.find((r) => r.ms === s.rangeMs)?.label ?? '';
    fill(byId('sessions'));
    const per =
      def.sessionGapMs !== null
        ? `per session (gap ${fmtDuration(def.sessionGapMs)})`
        : s.kind === 'hopping'
          ? `per ${sizeLabel(s.hopSize)} window every ${granularityLabel(s.granularity)} (hopping)`
          : `per ${granularityLabel(s.granularity)}`;
    fill(
      byId('chart-title'),
      h('span', null, s.metric),
      h('span', { class: 'title-sep' }, ' · '),
      h('span', { class: 'title-key' }, keyLabel(s.key)),
      h('span', { class: 'muted title-range' }, ` · ${s.measure} ${per}, last ${rangeLabel}`),
    );
    this.subscribe(s);
    void this.refreshRangePercentiles(s);
    const chartRange = { ...range, granularity: s.granularity };
    if (s.key === null) {
      this.chart.setData(columnsOf(null, s.measure), chartRange, s.measure, s.kind);
      this.chart.setEmptyNote(
        emptyState(
          `No data yet for ${s.metric} in the last ${rangeLabel}.`,
          'Is ',
          h('code', null, 'lk generate --to-log'),
          ' running, with ',
          h('code', null, 'lk speed'),
          '? Events appear here within a second of the speed layer’s checkpoint.',
        ),
      );
      return;
    }
    const vars = {
      metric: s.metric,
      ...keyVariables(def, s.key),
      granularity: s.granularity,
      from: new Date(range.from).toISOString(),
      to: new Date(range.to).toISOString(),
    };
    try {
      let columns;
      if (def.sessionGapMs !== null) {
        // Sessions: one bar per session at its start, and the table of sessions below the chart.
        const { granularity: _g, key: _k, keyParts: _p, ...rest } = vars;
        const d = await gql<SessionsAnswer>(SESSIONS, { ...rest, key: keyText(s.key) });
        if (seq !== this.seq.series) return;
        fill(byId('sessions'), renderSessions(d.sessions, def.value, def.distinct));
        columns = columnsOfRows(
          d.sessions.map((x) => ({
            key: x.key,
            windowStart: x.start,
            count: x.count,
            value: s.measure === 'count' ? x.count : (x as unknown as Record<string, number | null>)[s.measure],
            // A MIXED session is drawn as speed: some of it came from the speed view.
            source: x.source === 'BATCH' ? 'BATCH' : 'SPEED',
            provisional: x.provisional,
            processingTime: x.processingTime,
          })),
          s.measure,
          keyLabel(s.key),
        );
      } else if (s.kind === 'hopping') {
        // Hopping windows: merged at query time from the advance's tumbling windows.
        const { granularity, ...rest } = vars;
        const d = await gql<HoppingAnswer>(hoppingQuery(s.measure), { ...rest, size: s.hopSize, advance: granularity });
        columns = columnsOfRows(d.hopping, s.measure, keyLabel(s.key));
      } else if (PERCENTILE_MEASURES.includes(s.measure)) {
        const d = await gql<PercentileSeriesAnswer>(percentileSeriesQuery(s.measure), vars);
        columns = columnsOfRows(d.series, s.measure, keyLabel(s.key));
      } else {
        const d = await gql<SeriesAnswer>(seriesQuery(s.measure), vars);
        columns = columnsOf(d.seriesColumns, s.measure);
      }
      if (seq !== this.seq.series) return;
      this.chart.setData(columns, chartRange, s.measure, s.kind);
      this.chart.setEmptyNote(
        columns.windowStart.length === 0
          ? emptyState(`No windows for ${keyLabel(s.key)} in the last ${rangeLabel}.`, 'Pick a key from the top keys, or a longer range.')
          : null,
      );
      fill(byId('chart-note'));
    } catch (err) {
      if (seq === this.seq.series) this.chart.setEmptyNote(errorState(errorText(err)));
    }
  }

  /** The key's p50 ... p99 over the whole range (metrics with percentiles), beside the chart. */
  private async refreshRangePercentiles(s: Selection): Promise<void> {
    const seq = ++this.seq.pct;
    const def = this.def;
    const host = byId('range-percentiles');
    if (def.percentileAccuracy === null || s.key === null) {
      fill(host);
      host.hidden = true;
      return;
    }
    const { from, to } = rangeOf(s);
    try {
      const d = await gql<RangePercentilesAnswer>(RANGE_PERCENTILES, {
        metric: s.metric,
        ...keyVariables(def, s.key),
        granularity: s.granularity,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
      });
      if (seq !== this.seq.pct) return;
      fill(host, renderRangePercentiles(d.total, def.value ?? '', def.percentileAccuracy));
      host.hidden = false;
    } catch (err) {
      if (seq === this.seq.pct) fill(host, errorState(errorText(err)));
    }
  }

  /** One live subscription, for the key on display (resubscribed when the selection changes). */
  private subscribe(s: Selection): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    // Sessions are read again every 30 s and after each batch run (windowUpdated pushes windows).
    if (!this.live || s.key === null || this.def.sessionGapMs !== null) return;
    this.unsubscribe = this.live.subscribe<{ windowUpdated: WindowValue }>(
      { query: WINDOW_UPDATED, variables: { metric: s.metric, ...keyVariables(this.def, s.key), granularity: s.granularity } },
      {
        next: (msg) => {
          const w = msg.data?.windowUpdated;
          if (!w || !sameKey(w.keyParts, this.sel.key) || w.granularity !== this.sel.granularity) return;
          if (this.sel.kind === 'hopping') {
            // A tumbling window changed: the hopping windows holding it are asked again (at most once a second).
            if (this.hoppingRefresh === 0)
              this.hoppingRefresh = window.setTimeout(() => {
                this.hoppingRefresh = 0;
                this.chart.countLiveUpdate();
                void this.refreshSeries();
              }, 1000);
            return;
          }
          if (this.chart.applyUpdate(w)) this.setLiveState(this.liveState);
        },
        error: (err) => fill(byId('chart-note'), errorState(`live updates stopped: ${errorText(err)}`)),
        complete: () => undefined,
      },
    );
  }

  private async refreshReconciliation(): Promise<void> {
    const seq = ++this.seq.recon;
    const s = this.sel;
    const { from, to } = rangeOf(s);
    const rangeLabel = RANGES.find((r) => r.ms === s.rangeMs)?.label ?? '';
    if (this.def.sessionGapMs !== null) {
      fill(byId('reconciliation-scope'), `${s.metric} · sessions`);
      fill(
        byId('reconciliation'),
        emptyState(
          'Reconciliation compares windows.',
          `${s.metric} has sessions; its batch and speed partials meet in each session's source.`,
        ),
      );
      return;
    }
    fill(byId('reconciliation-scope'), `${s.metric} · ${granularityLabel(s.granularity)} windows · last ${rangeLabel}`);
    try {
      const d = await gql<ReconciliationAnswer>(RECONCILIATION, {
        metric: s.metric,
        granularity: s.granularity,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
      });
      if (seq === this.seq.recon) fill(byId('reconciliation'), renderReconciliation(d.reconciliation, s.metric));
    } catch (err) {
      if (seq === this.seq.recon) fill(byId('reconciliation'), errorState(errorText(err)));
    }
  }

  private renderSummary(d: DrawnSummary): void {
    const s = this.sel;
    // What adds up is summed; a distinct count or an extreme does not add across windows.
    // Hopping windows overlap: their counts and sums do not add up either.
    const measure = s?.measure ?? 'count';
    const adds = (measure === 'count' || measure === 'sum') && s?.kind !== 'hopping';
    const headline: [string, number | null] = adds
      ? [`Σ ${measure}`, d.total]
      : measure === 'min'
        ? ['lowest min', d.lowest]
        : measure === 'distinct'
          ? ['peak distinct / window', d.highest]
          : [`highest ${measure}${s?.kind === 'hopping' ? ' / window' : ''}`, d.highest];
    fill(
      byId('chart-summary'),
      h('div', { class: 'kpi' }, h('span', null, headline[0]), h('strong', null, fmtNumber(headline[1]))),
      h('div', { class: 'kpi' }, h('span', null, 'windows'), h('strong', null, fmtInt(d.windows))),
      h(
        'div',
        { class: 'kpi' },
        h('span', null, h('i', { class: 'swatch', style: `background:${COLORS.batch}` }), 'from batch'),
        h('strong', null, fmtInt(d.batch)),
      ),
      h(
        'div',
        { class: 'kpi' },
        h('span', null, h('i', { class: 'swatch', style: `background:${COLORS.speed}` }), 'from speed'),
        h('strong', null, fmtInt(d.speed)),
      ),
      h(
        'div',
        { class: 'kpi' },
        h('span', null, h('i', { class: 'swatch swatch-dot', style: `border-color:${COLORS.provisional}` }), 'provisional'),
        h('strong', null, fmtInt(d.provisional)),
      ),
      h(
        'div',
        { class: 'kpi' },
        h('span', null, 'latest processing'),
        h('strong', null, d.latestProcessingTime === null ? '—' : fmtTime(d.latestProcessingTime)),
      ),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Pipeline, dead letters and versions (polled)

  private async pollStatus(): Promise<void> {
    try {
      this.status = await gql<StatusAnswer>(STATUS);
      this.renderStatus();
      // A new batch run changes which view answers: draw the series again.
      const run = this.status.pipeline.serving.batchView?.runId ?? null;
      if (this.lastBatchRun !== undefined && run !== this.lastBatchRun) void this.refreshSelection();
      this.lastBatchRun = run;
    } catch (err) {
      const msg = errorState(`cannot read the pipeline: ${errorText(err)}`);
      fill(byId('pipeline'), msg);
      fill(byId('pipeline-updated'), 'update failed');
    }
  }

  private renderStatus(): void {
    const st = this.status;
    if (!st) return;
    const now = Date.now();
    fill(byId('pipeline'), renderPipeline(st.pipeline, now));
    fill(byId('pipeline-updated'), `version ${st.pipeline.version} · updated ${fmtTime(now)}`);
    fill(byId('dead-letters'), renderDeadLetters(st.pipeline.deadLetters, now));
    const vs = st.versions;
    const viewer = st.viewer;
    const canPromote = viewer.permissions.includes('promote');
    const canRollback = viewer.permissions.includes('rollback');
    const viewerEl = byId('viewer');
    viewerEl.dataset.role = viewer.role;
    fill(viewerEl, `${viewer.name} · ${viewer.role.toLowerCase()}`);
    fill(byId('default-version'), `version ${vs.default}`);
    fill(
      byId('versions-note'),
      vs.promotion > 0
        ? [`promotion #${vs.promotion}`, vs.promotedAt ? [', ', ago(Date.parse(vs.promotedAt), now)] : '']
        : 'no promotion yet',
      vs.previous ? ` · rollback = promote ${vs.previous}` : '',
      canPromote ? '' : h('span', { 'data-testid': 'read-only' }, ` · read-only: promoting and rolling back need the admin role`),
    );
    // The table holds buttons: rebuilt only when something in it changed, so that a click in
    // progress never lands on a row that was replaced under the pointer.
    const versionsState = JSON.stringify([vs, this.promoting.confirming, this.promoting.busy, canPromote, canRollback]);
    if (versionsState !== this.renderedVersions) {
      this.renderedVersions = versionsState;
      fill(
        byId('versions'),
        renderVersions(vs, {
          confirming: this.promoting.confirming,
          busy: this.promoting.busy,
          promote: (v, force) => void this.promote(v, force, false),
          rollback: (v, force) => void this.promote(v, force, true),
          canPromote,
          canRollback,
        }),
      );
    }
  }

  /** Promotes a version, or rolls back to it (the rollback mutation: the previous default). */
  private async promote(version: string, force: boolean, rollback: boolean): Promise<void> {
    const msg = byId('promote-message');
    if (!force && this.promoting.confirming !== version) {
      // Two clicks: the first one arms the button for a few seconds.
      this.promoting.confirming = version;
      clearTimeout(this.promoting.timer);
      this.promoting.timer = window.setTimeout(() => {
        this.promoting.confirming = null;
        this.renderStatus();
      }, 6000);
      this.renderStatus();
      return;
    }
    this.promoting = { confirming: null, busy: true, timer: 0 };
    this.renderStatus();
    fill(msg, h('div', { class: 'note' }, `promoting ${version}…`));
    try {
      const p = rollback
        ? (await gql<RollbackAnswer>(ROLLBACK, { force })).rollback
        : (await gql<PromoteAnswer>(PROMOTE, { version, force })).promote;
      fill(
        msg,
        h(
          'div',
          { class: 'note note-ok', 'data-outcome': 'promoted' },
          p.changed
            ? `${p.version} is now the default version (promotion #${p.promotion}).`
            : `${p.version} already was the default version.`,
          p.skippedChecks.length ? ` Checks skipped with force: ${p.skippedChecks.join('; ')}.` : '',
          p.previous && p.changed ? ` Roll back by promoting ${p.previous}.` : '',
        ),
      );
      void this.refreshSelection();
    } catch (err) {
      const refused = err instanceof GraphQLRequestError && err.code === 'PROMOTION_REFUSED';
      fill(
        msg,
        h(
          'div',
          { class: 'note note-bad', role: 'alert', 'data-outcome': refused ? 'refused' : 'failed' },
          h('strong', null, refused ? `Promotion of ${version} refused. ` : `Promotion of ${version} failed. `),
          errorText(err),
          refused
            ? h(
                'button',
                { class: 'btn btn-danger btn-small', onclick: () => void this.promote(version, true, rollback) },
                'Promote anyway (force)',
              )
            : null,
        ),
      );
    } finally {
      this.promoting.busy = false;
      await this.pollStatus();
    }
  }

  private setLiveState(state: LiveState): void {
    this.liveState = state;
    const el = byId('live-state');
    el.dataset.state = state;
    el.className = `pill ${state === 'live' ? 'pill-live' : state === 'connecting' ? 'pill-warn' : 'pill-bad'}`;
    const n = this.chart?.liveUpdateCount ?? 0;
    el.textContent =
      state === 'live'
        ? `● live${n ? ` · ${fmtInt(n)} update${n === 1 ? '' : 's'}` : ''}`
        : state === 'connecting'
          ? 'connecting…'
          : 'offline · retrying';
  }
}

void new Dashboard().start();
