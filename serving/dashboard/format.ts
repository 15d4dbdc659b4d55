/// <reference lib="dom" />
/** Numbers and times as people read them (en-US digits, local times, "3 min ago"). */

const INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const DEC = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const COMPACT = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

export const DASH = '—';

export function fmtInt(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? DASH : INT.format(n);
}

export function fmtNumber(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return DASH;
  return Math.abs(n) >= 100 ? INT.format(n) : DEC.format(n);
}

export function fmtCompact(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return DASH;
  return Math.abs(n) < 10_000 ? fmtNumber(n) : COMPACT.format(n);
}

/** A share (0..1) as a percentage with enough digits to tell 0 from "almost 0". */
export function fmtShare(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return DASH;
  const p = x * 100;
  if (p === 0) return '0 %';
  return `${p < 0.1 ? p.toFixed(3) : p < 10 ? p.toFixed(2) : p.toFixed(1)} %`;
}

export function fmtDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return DASH;
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${(ms / 1000).toFixed(a < 10_000 ? 1 : 0)} s`;
  if (a < 3_600_000) {
    const m = Math.floor(a / 60_000);
    const s = Math.round((a % 60_000) / 1000);
    return `${m} min${s ? ` ${s} s` : ''}`;
  }
  if (a < 86_400_000) {
    const hrs = Math.floor(a / 3_600_000);
    const m = Math.round((a % 3_600_000) / 60_000);
    return `${hrs} h${m ? ` ${m} min` : ''}`;
  }
  return `${(a / 86_400_000).toFixed(1)} d`;
}

export function fmtAgo(epochMs: number | null | undefined, now = Date.now()): string {
  if (epochMs === null || epochMs === undefined || !Number.isFinite(epochMs)) return DASH;
  const d = now - epochMs;
  if (d < -1000) return `in ${fmtDuration(-d)}`;
  if (d < 2000) return 'just now';
  return `${fmtDuration(d)} ago`;
}

const TIME = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const DATE_TIME = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

export function fmtTime(epochMs: number | null | undefined): string {
  return epochMs === null || epochMs === undefined || !Number.isFinite(epochMs) ? DASH : TIME.format(epochMs);
}

export function fmtDateTime(epochMs: number | null | undefined): string {
  return epochMs === null || epochMs === undefined || !Number.isFinite(epochMs) ? DASH : DATE_TIME.format(epochMs);
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 && u > 0 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** ISO-8601 text (as GraphQL's DateTime) to epoch ms; null stays null. */
export function parseTime(text: string | null | undefined): number | null {
  if (!text) return null;
  const t = Date.parse(text);
  return Number.isNaN(t) ? null : t;
}
