/// <reference lib="dom" />
/**
 * The merged series chart (uPlot): one bar per window, coloured by the view that answered it
 * (batch or speed), provisional windows marked with a dot above their bar. It draws the columns of
 * `seriesColumns` as they are, and applies `windowUpdated` pushes in place (a window updated, or a
 * new one inserted in order).
 *
 * What is drawn is also written on the chart's element as data attributes (points per source,
 * provisional points, windows, the sum of the drawn values, live updates applied), so that a test
 * or a curious user can compare the picture with what GraphQL answers.
 */
import uPlot from 'uplot';
import { h } from './dom.ts';
import { fmtCompact, fmtDateTime, fmtNumber, fmtTime } from './format.ts';
import {
  windowMsOf,
  type GranularityName,
  type Measure,
  type SeriesColumnsAnswer,
  type Source,
  type WindowRow,
  type WindowValue,
} from './operations.ts';

export type { Measure } from './operations.ts';

export const COLORS = { batch: '#5b9cff', speed: '#ffb547', provisional: '#ff5c8a' };

export interface ChartRange {
  from: number;
  to: number;
  granularity: GranularityName;
}

export interface DrawnSummary {
  windows: number;
  batch: number;
  speed: number;
  provisional: number;
  /** Sum of the drawn values (of the chosen measure) over all windows. */
  total: number;
  /** Smallest and largest drawn value (null without any). */
  lowest: number | null;
  highest: number | null;
  latestProcessingTime: number | null;
}

/** What the chart holds: the windows of the range on display, oldest first. */
interface Columns {
  key: string;
  windowStart: number[];
  count: number[];
  /** The measure on display (the count itself for 'count'). */
  value: (number | null)[];
  source: Source[];
  provisional: boolean[];
  latestProcessingTime: number | null;
}

/** The answer's columns as the chart holds them (window starts from their small-integer form). */
export function columnsOf(answer: SeriesColumnsAnswer | null, measure: Measure): Columns {
  if (!answer) return { key: '', windowStart: [], count: [], value: [], source: [], provisional: [], latestProcessingTime: null };
  const windowStart = answer.windowIndex.map((i) => answer.windowBase + i * answer.windowMs);
  const column = measure === 'count' ? answer.count : (answer as unknown as Record<string, (number | null)[] | undefined>)[measure];
  const value = [...(column ?? answer.count.map(() => null))];
  const latest = answer.latestProcessingTime === null ? null : Date.parse(answer.latestProcessingTime);
  return {
    key: answer.key,
    windowStart,
    count: [...answer.count],
    value,
    source: [...answer.source],
    provisional: [...answer.provisional],
    latestProcessingTime: latest,
  };
}

/** Windows answered as objects (series for percentiles, hopping), their measure aliased `value`. */
export function columnsOfRows(rows: WindowRow[], measure: Measure, key: string): Columns {
  let latest: number | null = null;
  for (const r of rows) {
    const p = Date.parse(r.processingTime);
    if (latest === null || p > latest) latest = p;
  }
  return {
    key: rows[0]?.key ?? key,
    windowStart: rows.map((r) => Date.parse(r.windowStart)),
    count: rows.map((r) => r.count),
    value: rows.map((r) => (measure === 'count' ? r.count : (r.value ?? null))),
    source: rows.map((r) => r.source),
    provisional: rows.map((r) => r.provisional),
    latestProcessingTime: latest,
  };
}

export class SeriesChart {
  private plot: uPlot | undefined;
  private columns: Columns = columnsOf(null, 'count');
  private range: ChartRange = { from: 0, to: 1, granularity: 'MINUTE' };
  private measure: Measure = 'count';
  /** Tumbling windows, or hopping windows (drawn one bar per advance, at the window's start). */
  private kind: 'tumbling' | 'hopping' = 'tumbling';
  private liveUpdates = 0;
  readonly element: HTMLDivElement;
  private readonly canvasHost: HTMLDivElement;
  private readonly emptyNote: HTMLDivElement;
  private readonly resize: ResizeObserver;

  constructor(
    host: HTMLElement,
    private readonly onDrawn: (summary: DrawnSummary) => void,
  ) {
    this.canvasHost = h('div', { class: 'chart-canvas' });
    this.emptyNote = h('div', { class: 'chart-empty', hidden: true });
    this.element = h('div', { class: 'chart', id: 'chart', 'data-testid': 'chart' }, this.canvasHost, this.emptyNote);
    host.appendChild(this.element);
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(this.canvasHost);
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(320, this.canvasHost.clientWidth), height: 300 };
  }

  /** Shows a message instead of bars (no data yet, an error): says what to do. */
  setEmptyNote(note: Node | string | null): void {
    this.emptyNote.replaceChildren();
    if (note === null) {
      this.emptyNote.hidden = true;
      return;
    }
    this.emptyNote.append(note);
    this.emptyNote.hidden = false;
  }

  setData(columns: Columns, range: ChartRange, measure: Measure, kind: 'tumbling' | 'hopping' = 'tumbling'): void {
    this.columns = columns;
    const rebuild = !this.plot || range.granularity !== this.range.granularity || measure !== this.measure || kind !== this.kind;
    this.range = range;
    this.measure = measure;
    this.kind = kind;
    if (rebuild) this.build();
    this.draw();
  }

  /** A pushed window that made the page ask its hopping windows again (counted as a live update). */
  countLiveUpdate(): void {
    this.liveUpdates++;
  }

  /** Applies one pushed window; true when it belongs to the range on display. */
  applyUpdate(w: WindowValue): boolean {
    const start = Date.parse(w.windowStart);
    if (!(start >= this.range.from && start < this.range.to)) return false;
    const c = this.columns;
    let lo = 0;
    let hi = c.windowStart.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (c.windowStart[mid]! < start) lo = mid + 1;
      else hi = mid;
    }
    const value = (w[this.measure] as number | null | undefined) ?? null;
    if (c.windowStart[lo] !== start) {
      c.windowStart.splice(lo, 0, start);
      c.count.splice(lo, 0, w.count);
      c.value.splice(lo, 0, value);
      c.source.splice(lo, 0, w.source);
      c.provisional.splice(lo, 0, w.provisional);
    } else {
      c.count[lo] = w.count;
      c.value[lo] = value;
      c.source[lo] = w.source;
      c.provisional[lo] = w.provisional;
    }
    const proc = Date.parse(w.processingTime);
    if (c.latestProcessingTime === null || proc > c.latestProcessingTime) c.latestProcessingTime = proc;
    this.liveUpdates++;
    this.draw();
    return true;
  }

  private build(): void {
    this.plot?.destroy();
    const g = this.range.granularity;
    const measureLabel = this.kind === 'hopping' ? `${this.measure}, hopping` : this.measure;
    const valueText = (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : fmtNumber(v));
    const bars = uPlot.paths.bars!({ size: [0.86, 28, 1], align: 1 });
    const axisStyle = {
      stroke: '#8b98b0',
      grid: { stroke: 'rgba(139, 152, 176, 0.12)', width: 1 },
      ticks: { stroke: 'rgba(139, 152, 176, 0.25)', width: 1 },
      font: '12px ui-sans-serif, system-ui, sans-serif',
    };
    const opts: uPlot.Options = {
      ...this.size(),
      padding: [12, 28, 0, 4],
      cursor: { points: { show: false }, drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => [this.range.from / 1000, this.range.to / 1000] },
        y: {
          range: (_u, min, max) => {
            const top = Number.isFinite(max) && max > 0 ? max * 1.12 : 1;
            const bottom = Number.isFinite(min) && min < 0 ? min * 1.12 : 0;
            return [bottom, top];
          },
        },
      },
      axes: [
        { ...axisStyle, space: 70 },
        { ...axisStyle, size: 56, values: (_u, ticks) => ticks.map((t) => fmtCompact(t)) },
      ],
      legend: { show: true, live: true },
      series: [
        {
          label: 'window',
          value: (_u, v) => (v === null || v === undefined ? '—' : g === 'MINUTE' ? fmtTime(v * 1000) : fmtDateTime(v * 1000)),
        },
        {
          label: `batch view (${measureLabel})`,
          stroke: COLORS.batch,
          fill: 'rgba(91, 156, 255, 0.78)',
          width: 0,
          paths: bars,
          points: { show: false },
          value: valueText,
        },
        {
          label: `speed view (${measureLabel})`,
          stroke: COLORS.speed,
          fill: 'rgba(255, 181, 71, 0.85)',
          width: 0,
          paths: bars,
          points: { show: false },
          value: valueText,
        },
        {
          label: 'provisional',
          stroke: COLORS.provisional,
          width: 0,
          paths: () => null,
          points: { show: true, size: 7, width: 2, stroke: COLORS.provisional, fill: '#0b1120' },
          value: (_u, v) => (v === null || v === undefined ? '—' : 'may change at the next batch run'),
        },
      ],
    };
    this.canvasHost.replaceChildren();
    this.plot = new uPlot(opts, [[], [], [], []], this.canvasHost);
  }

  private draw(): void {
    const c = this.columns;
    const values = c.value;
    const n = c.windowStart.length;
    const xs = new Array<number>(n);
    const batch = new Array<number | null>(n);
    const speed = new Array<number | null>(n);
    const provisional = new Array<number | null>(n);
    const summary: DrawnSummary = {
      windows: n,
      batch: 0,
      speed: 0,
      provisional: 0,
      total: 0,
      lowest: null,
      highest: null,
      latestProcessingTime: c.latestProcessingTime,
    };
    // Provisional dots sit just above their bar.
    let top = 0;
    for (let i = 0; i < n; i++) if ((values[i] ?? 0) > top) top = values[i]!;
    for (let i = 0; i < n; i++) {
      xs[i] = c.windowStart[i]! / 1000;
      const v = values[i] ?? null;
      const isSpeed = c.source[i] === 'SPEED';
      batch[i] = !isSpeed ? v : null;
      speed[i] = isSpeed ? v : null;
      provisional[i] = c.provisional[i] ? (v ?? 0) + top * 0.05 : null;
      if (v !== null) {
        if (isSpeed) summary.speed++;
        else summary.batch++;
        summary.total += v;
        if (summary.lowest === null || v < summary.lowest) summary.lowest = v;
        if (summary.highest === null || v > summary.highest) summary.highest = v;
      }
      if (c.provisional[i]) summary.provisional++;
    }
    this.plot?.setData([xs, batch, speed, provisional]);
    const el = this.element;
    el.dataset.windows = String(n);
    el.dataset.pointsBatch = String(summary.batch);
    el.dataset.pointsSpeed = String(summary.speed);
    el.dataset.pointsProvisional = String(summary.provisional);
    el.dataset.total = String(summary.total);
    el.dataset.measure = this.measure;
    el.dataset.kind = this.kind;
    el.dataset.key = c.key;
    el.dataset.liveUpdates = String(this.liveUpdates);
    el.dataset.from = String(this.range.from);
    el.dataset.to = String(this.range.to);
    this.onDrawn(summary);
  }

  get windowMs(): number {
    return windowMsOf(this.range.granularity);
  }

  get liveUpdateCount(): number {
    return this.liveUpdates;
  }
}
