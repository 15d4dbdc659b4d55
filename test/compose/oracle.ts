/**
 * The compose test's oracle: the exact answers for a set of generated events, computed with plain
 * loops from the events and the metric file, never with the platform's code (only its
 * HyperLogLog, whose registers the answer must reproduce bit for bit). Written for the shapes the
 * demo's metrics.yaml uses (a `type` filter, a string key, a numeric value, a string distinct
 * field); anything else is refused, so a changed metric file fails loudly instead of being
 * checked wrongly.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { HyperLogLog } from '../../services/metrics/hll.ts';

export type Granularity = 'minute' | 'hour' | 'day';
export const GRANULARITY_MS: Record<Granularity, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

export interface OracleMetricDef {
  name: string;
  types: string[];
  key: string;
  value?: string;
  distinct?: string;
  granularities: Granularity[];
}

export interface Aggregate {
  count: number;
  sum: number | null;
  /** HLL estimate of the distinct values (null when the metric has no distinct field). */
  distinct: number | null;
}

export interface MetricAnswer {
  def: OracleMetricDef;
  total: Aggregate;
  keys: Map<string, Aggregate>;
  /** Per key, per window start (epoch ms), per granularity. */
  windows: Map<Granularity, Map<string, Map<number, Aggregate>>>;
}

export interface GeneratedEvent {
  id: string;
  type: string;
  ts: number;
  fields: Record<string, unknown>;
}

/** Reads metrics.yaml as the oracle understands it. */
export function readMetricDefs(path: string): OracleMetricDef[] {
  const doc = parse(readFileSync(path, 'utf8')) as { metrics?: Record<string, unknown>[] };
  if (!Array.isArray(doc.metrics)) throw new Error(`${path}: no metrics list`);
  return doc.metrics.map((m) => {
    const name = String(m.name);
    const filter = m.filter as Record<string, unknown> | undefined;
    const keys = Object.keys(filter ?? {});
    if (!filter || keys.length !== 1 || keys[0] !== 'type') {
      throw new Error(`oracle: metric ${name} has filter ${JSON.stringify(filter)}; only { type: ... } is understood here`);
    }
    const types = Array.isArray(filter.type) ? filter.type.map(String) : [String(filter.type)];
    if (typeof m.key !== 'string')
      throw new Error(`oracle: metric ${name} has key ${JSON.stringify(m.key)}; only one field name is understood`);
    const granularities = (m.granularities as string[]).map((g) => {
      if (!(g in GRANULARITY_MS)) throw new Error(`oracle: metric ${name} has granularity ${g}`);
      return g as Granularity;
    });
    return {
      name,
      types,
      key: m.key,
      ...(typeof m.value === 'string' ? { value: m.value } : {}),
      ...(typeof m.distinct === 'string' ? { distinct: m.distinct } : {}),
      granularities,
    };
  });
}

/** The JSON Lines `lk generate --output` wrote, in order (duplicates included). */
export function readEvents(path: string): GeneratedEvent[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      const raw = JSON.parse(line) as Record<string, unknown>;
      const ts = Date.parse(String(raw.ts));
      if (typeof raw.id !== 'string' || typeof raw.type !== 'string' || !Number.isFinite(ts)) {
        throw new Error(`${path}:${i + 1}: not an event the oracle understands: ${line.slice(0, 200)}`);
      }
      return { id: raw.id, type: raw.type, ts, fields: raw };
    });
}

class Acc {
  count = 0;
  sum: number | null = null;
  readonly values = new Set<string>();
  add(value: unknown, distinct: unknown): void {
    this.count++;
    if (typeof value === 'number') this.sum = (this.sum ?? 0) + value;
    if (distinct !== undefined) this.values.add(String(distinct));
  }
  result(withDistinct: boolean): Aggregate {
    if (!withDistinct) return { count: this.count, sum: this.sum, distinct: null };
    const h = new HyperLogLog();
    for (const v of this.values) h.add(v);
    return { count: this.count, sum: this.sum, distinct: h.estimate() };
  }
}

/**
 * Every metric's answers over the events whose time is in [from, to): each id counts once (its
 * first copy), an event matches when its type is in the filter, its key is the key field's text.
 */
export function computeAnswers(
  events: readonly GeneratedEvent[],
  defs: readonly OracleMetricDef[],
  from: number,
  to: number,
): MetricAnswer[] {
  const seen = new Set<string>();
  const unique = events.filter((e) => !seen.has(e.id) && seen.add(e.id));
  return defs.map((def) => {
    const total = new Acc();
    const keys = new Map<string, Acc>();
    const windows = new Map<Granularity, Map<string, Map<number, Acc>>>(def.granularities.map((g) => [g, new Map()]));
    for (const e of unique) {
      if (!def.types.includes(e.type) || e.ts < from || e.ts >= to) continue;
      const key = e.fields[def.key];
      if (typeof key !== 'string')
        throw new Error(`oracle: event ${e.id} has ${def.key}=${JSON.stringify(key)}; only strings are understood`);
      const value = def.value ? e.fields[def.value] : undefined;
      const distinct = def.distinct ? e.fields[def.distinct] : undefined;
      total.add(value, distinct);
      let k = keys.get(key);
      if (!k) keys.set(key, (k = new Acc()));
      k.add(value, distinct);
      for (const g of def.granularities) {
        const start = Math.floor(e.ts / GRANULARITY_MS[g]) * GRANULARITY_MS[g];
        const perKey = windows.get(g)!;
        let w = perKey.get(key);
        if (!w) perKey.set(key, (w = new Map()));
        let acc = w.get(start);
        if (!acc) w.set(start, (acc = new Acc()));
        acc.add(value, distinct);
      }
    }
    const withDistinct = def.distinct !== undefined;
    return {
      def,
      total: total.result(withDistinct),
      keys: new Map([...keys].map(([k, a]) => [k, a.result(withDistinct)])),
      windows: new Map(
        [...windows].map(([g, perKey]) => [
          g,
          new Map([...perKey].map(([k, w]) => [k, new Map([...w].map(([start, a]) => [start, a.result(withDistinct)]))])),
        ]),
      ),
    };
  });
}
