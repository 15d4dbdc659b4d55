/**
 * The test oracle: what the speed view must contain, computed from the input lines with plain
 * code written from the documented rules (docs/speed-layer.md), never with streaming code.
 * Per partition (partitionForKey(id), in the order the lines were produced = offset order):
 * watermark before a record = max event time so far - outOfOrderness; first copy of an id
 * counts; a window is closed once the watermark > start + size + allowedLateness, and events
 * for closed windows are dropped.
 */
import { partitionForKey } from '../../../services/log/partitioner.ts';
import { HyperLogLog } from '../../../services/metrics/hll.ts';

export interface OracleMetric {
  name: string;
  types: string[];
  key: string;
  value?: string;
  distinct?: string;
  granularities: { name: 'minute' | 'hour' | 'day'; ms: number }[];
  latenessMs: number;
}

export interface OracleRow {
  metric: string;
  granularity: string;
  key: string;
  windowStart: number;
  partition: number;
  count: number;
  sum: number | null;
  min: number | null;
  max: number | null;
  distinct: number | null;
  /** Offset after the record that closed the window (undefined: still open at the end). */
  closedThrough: number | undefined;
}

export interface OracleResult {
  rows: Map<string, OracleRow>;
  duplicates: number;
  droppedLate: number;
  /** Lines per partition, in offset order. */
  partitionLines: string[][];
}

export const rowId = (r: { metric: string; granularity: string; windowStart: number; partition: number; key: string }): string =>
  `${r.metric}|${r.granularity}|${r.windowStart}|${r.partition}|${r.key}`;

/** The metrics of the test metric file (test/metrics in each spec), described by hand. */
export const ORACLE_METRICS: OracleMetric[] = [
  {
    name: 'impressions_by_campaign',
    types: ['impression'],
    key: 'campaign_id',
    distinct: 'user_id',
    granularities: [
      { name: 'minute', ms: 60_000 },
      { name: 'hour', ms: 3_600_000 },
      { name: 'day', ms: 86_400_000 },
    ],
    latenessMs: 600_000,
  },
  {
    name: 'clicks_by_ad',
    types: ['click'],
    key: 'ad_id',
    value: 'cost',
    granularities: [
      { name: 'minute', ms: 60_000 },
      { name: 'hour', ms: 3_600_000 },
    ],
    latenessMs: 600_000,
  },
  {
    name: 'spend_by_campaign',
    types: ['click', 'conversion'],
    key: 'campaign_id',
    value: 'cost',
    granularities: [
      { name: 'hour', ms: 3_600_000 },
      { name: 'day', ms: 86_400_000 },
    ],
    latenessMs: 3_600_000,
  },
];

export const TEST_METRICS_YAML = `version: 1
metrics:
  - name: impressions_by_campaign
    filter: { type: impression }
    key: campaign_id
    distinct: user_id
    granularities: [minute, hour, day]
    allowedLateness: 10m
  - name: clicks_by_ad
    filter: { type: click }
    key: ad_id
    value: cost
    granularities: [minute, hour]
    allowedLateness: 10m
  - name: spend_by_campaign
    filter: { type: [click, conversion] }
    key: campaign_id
    value: cost
    granularities: [hour, day]
    allowedLateness: 1h
`;

interface Acc {
  row: OracleRow;
  hll: HyperLogLog | null;
  closesAt: number;
}

export function computeOracle(
  lines: readonly string[],
  partitions: number,
  outOfOrdernessMs: number,
  metrics: OracleMetric[] = ORACLE_METRICS,
): OracleResult {
  const partitionLines: string[][] = Array.from({ length: partitions }, () => []);
  for (const line of lines) {
    const id = (JSON.parse(line) as { id: string }).id;
    partitionLines[partitionForKey(id, partitions)]!.push(line);
  }
  const rows = new Map<string, OracleRow>();
  let duplicates = 0;
  let droppedLate = 0;
  for (let p = 0; p < partitions; p++) {
    let maxTs = -Infinity;
    const seen = new Set<string>();
    const accs = new Map<string, Acc>();
    /** (offset after the record, watermark after it) at every watermark increase. */
    const steps: { through: number; watermark: number }[] = [];
    partitionLines[p]!.forEach((line, offset) => {
      const ev = JSON.parse(line) as Record<string, string | number>;
      const ts = Date.parse(String(ev.ts));
      const watermark = maxTs - outOfOrdernessMs;
      const id = String(ev.id);
      if (seen.has(id)) {
        duplicates++;
      } else {
        seen.add(id);
        for (const m of metrics) {
          if (!m.types.includes(String(ev.type)) || ev[m.key] === undefined) continue;
          const key = String(ev[m.key]);
          for (const g of m.granularities) {
            const windowStart = Math.floor(ts / g.ms) * g.ms;
            const closesAt = windowStart + g.ms + m.latenessMs;
            if (watermark > closesAt) {
              droppedLate++;
              continue;
            }
            const id = rowId({ metric: m.name, granularity: g.name, windowStart, partition: p, key });
            let acc = accs.get(id);
            if (!acc) {
              acc = {
                row: {
                  metric: m.name,
                  granularity: g.name,
                  key,
                  windowStart,
                  partition: p,
                  count: 0,
                  sum: null,
                  min: null,
                  max: null,
                  distinct: null,
                  closedThrough: undefined,
                },
                hll: m.distinct ? new HyperLogLog() : null,
                closesAt,
              };
              accs.set(id, acc);
            }
            acc.row.count++;
            const v = m.value ? ev[m.value] : undefined;
            if (typeof v === 'number') {
              acc.row.sum = (acc.row.sum ?? 0) + v;
              acc.row.min = acc.row.min === null ? v : Math.min(acc.row.min, v);
              acc.row.max = acc.row.max === null ? v : Math.max(acc.row.max, v);
            }
            if (m.distinct && ev[m.distinct] !== undefined) acc.hll!.add(String(ev[m.distinct]));
          }
        }
      }
      if (ts > maxTs) {
        maxTs = ts;
        steps.push({ through: offset + 1, watermark: maxTs - outOfOrdernessMs });
      }
    });
    for (const [id, acc] of accs) {
      // Watermark steps increase: binary search for the first one past the window's close.
      let lo = 0;
      let hi = steps.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (steps[mid]!.watermark > acc.closesAt) hi = mid;
        else lo = mid + 1;
      }
      acc.row.closedThrough = steps[lo]?.through;
      if (acc.hll) acc.row.distinct = acc.hll.estimate();
      rows.set(id, acc.row);
    }
  }
  return { rows, duplicates, droppedLate, partitionLines };
}
