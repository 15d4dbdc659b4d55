/**
 * The progress of a replay as `lk replay` shows it: events done since the version's start
 * offsets, events per second, lag, percent and ETA, on one line of a TTY (services/observability/
 * progress.ts), and one message when the version has caught up with the log.
 *
 * Figures come from the job's own status (the partitions this instance holds); a partition it
 * does not hold right now (still waiting in the lake half, or held by another instance) counts
 * with what was last seen of it.
 */
import type { SpeedStatus } from '../../services/status/speedStatus.ts';
import { progress, type Progress } from '../../services/observability/progress.ts';

/** Rates are measured over this window: the ETA follows the current rate, not the average since the start. */
const RATE_WINDOW_MS = 10_000;

interface PartitionSeen {
  start: number;
  position: number;
  end: number;
}

export interface ReplayFigures {
  done: number;
  total: number;
  lag: number;
  percent: number;
  eventsPerSecond: number;
  etaSeconds: number | null;
  caughtUp: boolean;
}

export class ReplayProgress {
  private readonly partitions = new Map<number, PartitionSeen>();
  private readonly samples: { at: number; done: number }[] = [];
  private readonly bar: Progress;
  private caughtUpAnnounced = false;

  constructor(
    label: string,
    /** Per partition: where the version started and where it stands now (committed), and the log's end. */
    initial: { start: number; position: number; end: number }[],
    private readonly onCaughtUp: (f: ReplayFigures) => void,
  ) {
    initial.forEach((p, partition) => this.partitions.set(partition, { ...p }));
    this.bar = progress(label, undefined, 'events');
  }

  /** Folds in the job's status; returns the figures now. */
  update(status: SpeedStatus, now = Date.now()): ReplayFigures {
    for (const p of status.partitions) {
      const seen = this.partitions.get(p.partition) ?? { start: p.position, position: p.position, end: p.endOffset };
      seen.position = Math.max(seen.position, p.position);
      seen.end = Math.max(seen.end, p.endOffset);
      this.partitions.set(p.partition, seen);
    }
    let done = 0;
    let total = 0;
    let lag = 0;
    for (const p of this.partitions.values()) {
      done += Math.max(0, p.position - p.start);
      total += Math.max(0, p.end - p.start);
      lag += Math.max(0, p.end - p.position);
    }
    this.samples.push({ at: now, done });
    while (this.samples.length > 2 && now - this.samples[0]!.at > RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const seconds = (now - first.at) / 1000;
    const eventsPerSecond = seconds > 0 ? (done - first.done) / seconds : 0;
    const figures: ReplayFigures = {
      done,
      total,
      lag,
      percent: total === 0 ? 100 : (100 * done) / total,
      eventsPerSecond,
      etaSeconds: lag === 0 ? 0 : eventsPerSecond > 0 ? lag / eventsPerSecond : null,
      caughtUp: lag === 0 && status.ready,
    };
    this.bar.update(done, describe(figures));
    if (figures.caughtUp && !this.caughtUpAnnounced) {
      this.caughtUpAnnounced = true;
      this.onCaughtUp(figures);
    }
    return figures;
  }

  finish(): void {
    this.bar.finish();
  }
}

function human(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function duration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${s}s`;
}

/** "lag 12,345 · 45.2% · ETA 1m05s" (what follows the count and rate on the progress line). */
export function describe(f: ReplayFigures): string {
  return `· lag ${human(f.lag)} · ${f.percent.toFixed(1)}% of ${human(f.total)} · ${human(f.eventsPerSecond)}/s now · ETA ${duration(f.etaSeconds)}`;
}
